/* conn.c - the peek phase of a client connection, its deadline and its single destructor. */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "conn.h"
#include "detect.h"
#include "generation.h"
#include "http_host.h"
#include "iplimit.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "proxy_proto.h"
#include "route.h"
#include "ssh_ident.h"
#include "stats.h"
#include "tcp_target.h"
#include "tls_hello.h"
#include "upstream.h"

/* Connections closed during a loop batch, freed after it (see loop.h). */
static TAILQ_HEAD(, conn) dead_conns = TAILQ_HEAD_INITIALIZER(dead_conns);
/* Every connection not yet closed, so shutdown can release them all. */
static TAILQ_HEAD(, conn) live_conns = TAILQ_HEAD_INITIALIZER(live_conns);
static size_t n_live;

/* Peeking never consumes, so the bytes stay in the kernel and one buffer
 * serves every connection: a peek copies the whole prefix again. So that
 * the work stays linear in the bytes however they arrive, a readable event
 * first asks the kernel how many bytes are queued (FIONREAD, no copy) and
 * peeks only once that reaches c->peek_due: for TLS the least length the
 * record and handshake headers allow (also set as SO_RCVLOWAT); for the
 * others, which any byte could complete, twice what the last peek
 * examined, so that these copies add up to at most twice the bytes. New
 * bytes short of that make the connection stop listening for bytes for a
 * short pause (PEEK_LATER_MS, then HTTP peeks anyway): trickled segments
 * cost a few looks in all, not one each. An HTTP head is parsed on from
 * where the last peek left it (c->http_progress). */
static uint8_t peek_buf[PEEK_MAX];

/* How long bytes short of c->peek_due wait at least to be examined: a
 * client that sends its head in one write never waits, one that sends it
 * in a few pieces at once waits this long at most. The pause grows to the
 * time since the first peek, so that a client trickling its bytes over the
 * whole peek-timeout (10 s) causes about log2(10 s / 15 ms) = 10 pauses
 * (and HTTP peeks), and waits at most as long again as it took. */
#define PEEK_LATER_MS 15

static const char *const outcome_names[OUTCOME_COUNT] = {
	[OUTCOME_HANDOFF] = "handoff",
	[OUTCOME_NO_ROUTE] = "no-route",
	[OUTCOME_INVALID] = "invalid",
	[OUTCOME_TIMEOUT] = "timeout",
	[OUTCOME_REFUSED] = "refused",
	[OUTCOME_CLOSED] = "closed",
	[OUTCOME_RELAYED] = "relayed",
	[OUTCOME_FAILED] = "failed",
};

const char *
outcome_name(enum outcome outcome)
{
	return outcome < OUTCOME_COUNT ? outcome_names[outcome] : "?";
}

/* "tls", "http", "ssh", "silent", or "-" before a detect listener knows. */
const char *
client_proto_name(enum client_proto proto)
{
	switch (proto) {
	case PROTO_TLS:
		return "tls";
	case PROTO_HTTP:
		return "http";
	case PROTO_SSH:
		return "ssh";
	case PROTO_SILENT:
		return "silent";
	}
	return "-";
}

/* Freed connections kept for the next ones: a struct conn is too large for
 * malloc's per-thread cache, and every connection needs one. Bounded, so a
 * burst does not keep its memory; the rest goes back to malloc. */
#define CONN_SPARES_MAX 128
static struct conn *conn_spares[CONN_SPARES_MAX];
static size_t n_conn_spares;

static struct conn *
conn_alloc(void)
{
	if (n_conn_spares == 0)
		return calloc(1, sizeof(struct conn));
	struct conn *c = conn_spares[--n_conn_spares];
	memset(c, 0, sizeof(*c));
	return c;
}

void
conns_reap(void)
{
	struct conn *c;
	while ((c = TAILQ_FIRST(&dead_conns)) != NULL) {
		TAILQ_REMOVE(&dead_conns, c, all_link);
		gen_release(c->gen);
		gen_release(c->route_gen);
		if (n_conn_spares < CONN_SPARES_MAX)
			conn_spares[n_conn_spares++] = c;
		else
			free(c);
	}
}

static void
conns_free_spares(void)
{
	while (n_conn_spares > 0)
		free(conn_spares[--n_conn_spares]);
}

const char *
conn_peer_text(struct conn *c)
{
	/* Formatted on first use: most connections are handed off without
	 * anyone reading it (no log line, access log off). */
	if (c->peer_text[0] == '\0')
		net_addr_text(&c->peer, c->peer_text, sizeof(c->peer_text));
	return c->peer_text;
}

void
conn_local_address(struct conn *c)
{
	if (c->local_len != 0 || c->io.fd < 0)
		return;
	c->local_len = sizeof(c->local);
	if (getsockname(c->io.fd, (struct sockaddr *)&c->local, &c->local_len) < 0)
		c->local_len = 0;
}

static void
log_access(struct conn *c, enum outcome outcome, const char *upstream_id, const char *why)
{
	const struct config_listener *lc = c->listener->cfg;
	char relay_text[128] = "";
	if (!accesslog_enabled())
		return;
	if (outcome == OUTCOME_RELAYED)
		snprintf(relay_text, sizeof(relay_text), " bytes_up=%llu bytes_down=%llu duration_ms=%llu",
			 (unsigned long long)c->relayed.bytes_up, (unsigned long long)c->relayed.bytes_down,
			 (unsigned long long)(c->relayed.duration_us / 1000));
	accesslog_write("client=%s%s%s listener=%s proto=%s name=%s upstream=%s outcome=%s peek_us=%llu%s%s%s%s",
			conn_peer_text(c), c->via_text[0] ? " via=" : "", c->via_text, lc->text, client_proto_name(c->proto),
			c->has_name && c->peek.name[0] ? c->peek.name : "-",
			upstream_id ? upstream_id : "-", outcome_name(outcome),
			(unsigned long long)c->peek_us, relay_text,
			why ? " why=\"" : "", why ? why : "", why ? "\"" : "");
}

/* The counters of a new connection, and of one that ended with outcome. */
static void
count_accepted(const struct conn *c)
{
	server.accepted++;
	stats_accepted(c);
}

static void
count_ended(const struct conn *c, enum outcome outcome, const char *upstream_id, const char *why)
{
	server.outcomes[outcome]++;
	stats_conn_ended(c, outcome, upstream_id, why);
}

/* Leave the peek phase: give back the global and per-address slots. */
static void
end_peek_phase(struct conn *c)
{
	loop_timer_cancel(server.loop, &c->peek_later);
	if (c->state != CONN_PEEKING)
		return;
	server.n_peeking--;
	stats_peek_ended(c);
	iplimit_release(c->ip_slot);
	c->ip_slot = NULL;
	if (listeners_paused() && server.n_peeking < server.cfg.max_peeking)
		listeners_resume();
}

/* The one destructor. Stops watching, forgets timers and queues, closes
 * our descriptor (unless a handoff already did), logs, and defers free. */
static void
conn_destroy(struct conn *c, enum outcome outcome, const char *upstream_id, const char *why)
{
	if (c->state == CONN_DONE)
		return;
	if (c->relay != NULL) {
		/* relay_abort closes both sockets and comes back through
		 * conn_relay_done, which finishes the job. */
		relay_abort(c->relay, why);
		return;
	}
	if (c->peek_us == 0)
		c->peek_us = loop_now_us() - c->accepted_us;
	end_peek_phase(c);
	if (c->state == CONN_WAITING)
		upstream_unqueue(c);
	if (c->state == CONN_CONNECTING)
		tcp_target_abandon(c);
	loop_timer_cancel(server.loop, &c->deadline);
	loop_timer_cancel(server.loop, &c->silence);
	loop_io_del(server.loop, &c->io);
	if (c->io.fd >= 0) {
		close(c->io.fd);
		c->io.fd = -1;
	}
	c->state = CONN_DONE;
	count_ended(c, outcome, upstream_id, why);
	log_access(c, outcome, upstream_id, why);
	TAILQ_REMOVE(&live_conns, c, all_link);
	n_live--;
	TAILQ_INSERT_TAIL(&dead_conns, c, all_link);
}

size_t
conns_live(void)
{
	return n_live;
}

void
conn_enter_current_routes(struct conn *c)
{
	if (c->route_gen == server.gen)
		return;
	/* Released only after the batch (conns_reap frees generations even
	 * later, in gens_reap), so a target of the old one stays valid for
	 * whoever is still on the stack. */
	gen_release(c->route_gen);
	c->route_gen = gen_hold(server.gen);
}

void
conn_handed_off(struct conn *c, const char *upstream_id)
{
	conn_destroy(c, OUTCOME_HANDOFF, upstream_id, NULL);
}

void
conn_count_handed_off_at_once(const struct conn *c, const char *upstream_id)
{
	/* What conn_start, end_peek_phase and conn_destroy count for a
	 * connection the loop hands off at its first look. */
	count_accepted(c);
	stats_peek_ended(c);
	count_ended(c, OUTCOME_HANDOFF, upstream_id, NULL);
}

void
conn_log_handed_off(struct conn *c, const char *upstream_id)
{
	log_access(c, OUTCOME_HANDOFF, upstream_id, NULL);
}

void
conn_relay_done(void *arg, const char *why, const struct relay_stats *stats)
{
	struct conn *c = arg;
	c->relay = NULL;
	c->relayed = *stats;
	server.bytes_relayed += stats->bytes_up + stats->bytes_down;
	struct target *t = c->target;
	c->target = NULL;
	if (t != NULL)
		t->active--;
	conn_destroy(c, OUTCOME_RELAYED, t ? t->label : NULL, why);
}

/* Fatal TLS alerts in a TLS 1.0 record header that every client version
 * accepts: unrecognized_name (112) when no upstream serves the name,
 * internal_error (80) when its targets failed. */
static const uint8_t tls_alert_unrecognized_name[] = { 0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x70 };
static const uint8_t tls_alert_internal_error[] = { 0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x50 };
static const char http_503[] =
	"HTTP/1.1 503 Service Unavailable\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Length: 20\r\n"
	"Connection: close\r\n"
	"\r\n"
	"no upstream for host\n";
static const char http_502[] =
	"HTTP/1.1 502 Bad Gateway\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Length: 20\r\n"
	"Connection: close\r\n"
	"\r\n"
	"upstream unreachable\n";
static const char http_400[] =
	"HTTP/1.1 400 Bad Request\r\n"
	"Content-Type: text/plain\r\n"
	"Content-Length: 12\r\n"
	"Connection: close\r\n"
	"\r\n"
	"bad request\n";

/* Tell the client why before closing. This happens only to connections that
 * were never handed off, so reading from the socket is ours to do: the bytes
 * already peeked are consumed first, so that close() sends FIN rather than
 * the RST the kernel sends when unread data is discarded. */
static void
send_refusal(struct conn *c, enum outcome outcome)
{
	const void *msg = NULL;
	size_t len = 0;
	bool tls = c->proto == PROTO_TLS;
	if (c->io.fd < 0)
		return;
	if (c->proto != PROTO_TLS && c->proto != PROTO_HTTP) {
		/* SSH, silent or unknown clients get no message, but a FIN all the same. */
		while (recv(c->io.fd, peek_buf, sizeof(peek_buf), MSG_DONTWAIT) > 0)
			;
		return;
	}
	if (outcome == OUTCOME_NO_ROUTE || outcome == OUTCOME_REFUSED) {
		msg = tls ? (const void *)tls_alert_unrecognized_name : (const void *)http_503;
		len = tls ? sizeof(tls_alert_unrecognized_name) : sizeof(http_503) - 1;
	} else if (outcome == OUTCOME_FAILED) {
		msg = tls ? (const void *)tls_alert_internal_error : (const void *)http_502;
		len = tls ? sizeof(tls_alert_internal_error) : sizeof(http_502) - 1;
	} else if (outcome == OUTCOME_INVALID && !tls) {
		msg = http_400;
		len = sizeof(http_400) - 1;
	}
	if (msg == NULL || c->io.fd < 0)
		return;
	while (recv(c->io.fd, peek_buf, sizeof(peek_buf), MSG_DONTWAIT) > 0)
		;
	/* Best effort and non-blocking: a few hundred bytes fit any send buffer. */
	(void)send(c->io.fd, msg, len, MSG_DONTWAIT | MSG_NOSIGNAL);
}

void
conn_reject(struct conn *c, enum outcome outcome, const char *why)
{
	if (c->state == CONN_DONE)
		return;
	send_refusal(c, outcome);
	conn_destroy(c, outcome, NULL, why);
}

static void
on_deadline(struct loop_timer *timer)
{
	struct conn *c = container_of(timer, struct conn, deadline);
	if (c->state == CONN_CONNECTING)
		tcp_target_connect_failed(c, "connect timeout");
	else if (c->state == CONN_PEEKING)
		conn_reject(c, OUTCOME_TIMEOUT, "no complete hello/request before peek-timeout");
	else
		conn_reject(c, OUTCOME_REFUSED, "upstream busy past handoff-timeout");
}

void
conn_wait(struct conn *c, struct target *t)
{
	c->state = CONN_WAITING;
	c->waiting_at = t;
	loop_timer_arm(server.loop, &c->deadline, server.cfg.handoff_timeout_ms);
}

/*
 * A listener behind a load balancer: a connection from a trusted source
 * starts with a PROXY header naming the real client. The header is for us,
 * so it is consumed (read for real) before anything is handed off or
 * relayed; the client's own bytes stay unread. Returns 1 when done, 0 to
 * wait for more bytes, -1 after rejecting c.
 */
static int
consume_proxy_header(struct conn *c, size_t peeked)
{
	struct proxy_result pr;
	switch (proxy_proto_parse(peek_buf, peeked, &pr)) {
	case PEEK_NEED_MORE:
		return 0;
	case PEEK_FOUND:
		break;
	default:
		log_info("invalid PROXY header from %s on %s: %s", conn_peer_text(c), c->listener->cfg->text,
			 pr.why ? pr.why : "malformed");
		conn_reject(c, OUTCOME_INVALID, pr.why ? pr.why : "invalid PROXY header");
		return -1;
	}
	if (recv(c->io.fd, peek_buf, pr.header_len, MSG_DONTWAIT) != (ssize_t)pr.header_len) {
		conn_reject(c, OUTCOME_CLOSED, "cannot consume the PROXY header");
		return -1;
	}
	c->proxy_header_done = true;
	if (pr.is_local)
		return 1;	/* a health check of the balancer itself: keep our view */
	snprintf(c->via_text, sizeof(c->via_text), "%s", conn_peer_text(c));
	c->peer = pr.src;
	c->peer_len = pr.src.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	c->peer_text[0] = '\0';	/* the real client's, when asked */
	/* Limits apply to the real client, not to the balancer. */
	iplimit_release(c->ip_slot);
	c->ip_slot = iplimit_acquire(&c->peer, server.cfg.max_per_ip);
	if (c->ip_slot == NULL) {
		conn_reject(c, OUTCOME_REFUSED, "max-per-ip connections peeking from this address");
		return -1;
	}
	return 1;
}

/*
 * The least length a ClientHello starting with these n bytes can have: the
 * end of the record under way (or of the next record header), and at least
 * every record header so far plus the handshake message, whose length the
 * first four payload bytes announce (in whichever records they came). A
 * client that sends less can be waited for until the peek deadline: a real
 * hello is never shorter. Once the message length is known, each wait
 * covers all the payload still missing, so however small the client's
 * records, the peeks before the hello is whole are few.
 */
static size_t
tls_bytes_needed(const uint8_t *buf, size_t n)
{
	size_t off = 0, headers = 0, need;
	uint8_t handshake[4];
	size_t handshake_have = 0;

	for (;;) {
		if (off + 5 > n) {
			need = off + 5;
			headers++;	/* a record starts here */
			break;
		}
		headers++;
		size_t record_end = off + 5 + ((size_t)buf[off + 3] << 8 | buf[off + 4]);
		for (size_t i = off + 5; i < record_end && i < n && handshake_have < sizeof(handshake); i++)
			handshake[handshake_have++] = buf[i];
		if (record_end > n) {
			need = record_end;
			break;
		}
		off = record_end;
	}
	if (handshake_have == sizeof(handshake)) {
		size_t message = (size_t)handshake[1] << 16 | (size_t)handshake[2] << 8 | handshake[3];
		size_t least = 5 * headers + 4 + message;
		if (least > need)
			need = least;
	}
	return need < PEEK_MAX ? need : PEEK_MAX;
}

/* Wake for c only once need bytes are queued. Returns false if at least
 * that many are there already (or the option failed): peek again now. */
static bool
wait_for_bytes(struct conn *c, size_t need)
{
	int lowat = (int)need, queued = 0;

	if (lowat == c->rcvlowat)
		return true;
	if (setsockopt(c->io.fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) < 0)
		return true;	/* then every segment wakes us, as before */
	c->rcvlowat = lowat;
	/* Bytes that came before the new mark may have woken nobody. */
	return ioctl(c->io.fd, FIONREAD, &queued) < 0 || queued < lowat;
}

/* Put SO_RCVLOWAT back to the default before anyone else gets the socket. */
static void
restore_rcvlowat(struct conn *c)
{
	int lowat = 1;

	if (c->rcvlowat == 0 || c->io.fd < 0)
		return;
	if (setsockopt(c->io.fd, SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof(lowat)) < 0)
		log_warn("cannot restore SO_RCVLOWAT for %s", conn_peer_text(c));
	c->rcvlowat = 0;
}

/* The route is known: stop watching the client (an upstream may own the
 * socket within microseconds), leave the peek phase and dispatch. */
static void
leave_peek_and_dispatch(struct conn *c)
{
	restore_rcvlowat(c);
	end_peek_phase(c);
	loop_timer_cancel(server.loop, &c->deadline);
	loop_timer_cancel(server.loop, &c->silence);
	loop_io_del(server.loop, &c->io);
	c->state = CONN_WAITING;	/* until dispatch says otherwise */
	c->waiting_at = NULL;
	route_dispatch(c);
}

/*
 * A detect listener: tell from the first n peeked bytes which protocol the
 * client speaks, into c->proto. Returns 0 when known, -1 when c waits for
 * more bytes (a prefix of "SSH-") or was rejected. The protocol's own
 * parser then decides as on a listener of that protocol, with the same
 * deadline and the same caps.
 */
static int
detect_protocol(struct conn *c, size_t n, uint32_t revents)
{
	struct detect_result dr;
	switch (detect_parse(peek_buf, n, &dr)) {
	case PEEK_NEED_MORE:
	case PEEK_NO_NAME:
		if (revents & (EPOLLRDHUP | EPOLLHUP))
			conn_reject(c, OUTCOME_CLOSED, "client closed before its protocol was known");
		return -1;
	case PEEK_INVALID:
		c->peek_us = loop_now_us() - c->accepted_us;
		log_info("unknown protocol from %s on %s: %s", conn_peer_text(c), c->listener->cfg->text, dr.why);
		conn_reject(c, OUTCOME_INVALID, dr.why);
		return -1;
	case PEEK_FOUND:
		break;
	}
	c->proto = dr.proto == DETECTED_TLS ? PROTO_TLS : dr.proto == DETECTED_HTTP ? PROTO_HTTP : PROTO_SSH;
	loop_timer_cancel(server.loop, &c->silence);
	return 0;
}

/*
 * detect-timeout passed on a detect listener. A client that has sent
 * nothing at all (the PROXY header of a trusted balancer aside) waits for
 * the server to speak first, and goes to the silent route, if there is
 * one with targets. Otherwise nothing changes: a client that has begun,
 * or one with no silent route to go to, has the rest of peek-timeout.
 */
static void
on_silence(struct loop_timer *timer)
{
	struct conn *c = container_of(timer, struct conn, silence);
	if (c->state != CONN_PEEKING || c->proto != 0 || !route_has_targets(PROTOCOL_KEY_SILENT))
		return;
	if (c->listener->cfg->n_trusted > 0 && !c->proxy_header_done && config_is_trusted(c->listener->cfg, &c->peer))
		return;
	uint8_t byte;
	ssize_t got = recv(c->io.fd, &byte, 1, MSG_PEEK | MSG_DONTWAIT);
	if (got != -1 || (errno != EAGAIN && errno != EWOULDBLOCK))
		return;	/* bytes (or an end) are there: the client speaks, its event decides */
	c->proto = PROTO_SILENT;
	c->peek_us = loop_now_us() - c->accepted_us;
	leave_peek_and_dispatch(c);
}

static void peek_and_decide(struct conn *c, uint32_t revents);

/* What a peeking connection listens for: bytes and the client's end. */
#define PEEK_EVENTS (EPOLLIN | EPOLLRDHUP | EPOLLET)

/*
 * PEEK_LATER_MS after c stopped listening for bytes short of c->peek_due.
 * HTTP, SSH and unknown protocols: examine what came. Then listen again;
 * epoll reports at once what is ready then (for TLS: the bytes it needs,
 * or the memory pressure that woke it early), and only new bytes after.
 */
static void
on_peek_later(struct loop_timer *timer)
{
	struct conn *c = container_of(timer, struct conn, peek_later);
	if (c->state == CONN_PEEKING && c->proto != PROTO_TLS)
		peek_and_decide(c, 0);
	if (c->state == CONN_PEEKING && loop_io_mod(server.loop, &c->io, PEEK_EVENTS) < 0) {
		log_warn("cannot watch connection from %s", conn_peer_text(c));
		conn_reject(c, OUTCOME_REFUSED, "internal error");
	}
}

/*
 * Whether a readable event makes a peek worth its copy: the first one, an
 * end or error (the verdict cannot wait), or c->peek_due bytes queued.
 * Short of that, new bytes (TLS: which woke us below SO_RCVLOWAT, as the
 * kernel does when the socket's receive memory is under pressure, as many
 * tiny segments cause) make c stop listening for bytes for a pause of
 * PEEK_LATER_MS or more (see there): a client trickling its bytes costs a
 * few looks, not one per segment, and a head sent in one write is
 * examined at once.
 */
static bool
peek_is_due(struct conn *c, uint32_t revents)
{
	int queued = 0;

	if (c->peeked == 0 || (revents & (EPOLLRDHUP | EPOLLHUP | EPOLLERR)))
		return true;
	if (ioctl(c->io.fd, FIONREAD, &queued) < 0 || queued < 0 || (size_t)queued >= c->peek_due)
		return true;	/* (when the kernel cannot tell, peek as if every byte mattered) */
	if ((uint32_t)queued <= c->peeked)
		return false;	/* nothing new: what listening again reported */
	if (c->proto == PROTO_TLS)
		c->peeked = (uint32_t)queued;	/* counted: no parse before c->peek_due */
	uint64_t since_first_peek = loop_now_ms() - c->first_peek_ms;
	c->peek_later.cb = on_peek_later;
	if (loop_timer_arm(server.loop, &c->peek_later,
			   since_first_peek > PEEK_LATER_MS ? since_first_peek : PEEK_LATER_MS) < 0)
		return true;
	if (loop_io_mod(server.loop, &c->io, EPOLLRDHUP | EPOLLET) < 0) {
		loop_timer_cancel(server.loop, &c->peek_later);
		return true;
	}
	return false;
}

/* A readable event: the PROXY header if one is due, then peek when worth it. */
static void
conn_peek(struct conn *c, uint32_t revents)
{
	if (!c->proxy_header_done && c->listener->cfg->n_trusted > 0 &&
	    config_is_trusted(c->listener->cfg, &c->peer)) {
		ssize_t got = recv(c->io.fd, peek_buf, PROXY_V2_MAX, MSG_PEEK | MSG_DONTWAIT);
		if (got == 0) {
			conn_reject(c, OUTCOME_CLOSED, "client closed before sending a PROXY header");
			return;
		}
		if (got < 0) {
			if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR)
				conn_reject(c, OUTCOME_CLOSED, strerror(errno));
			return;
		}
		int rc = consume_proxy_header(c, (size_t)got);
		if (rc <= 0) {
			if (rc == 0 && (revents & (EPOLLRDHUP | EPOLLHUP)))
				conn_reject(c, OUTCOME_CLOSED, "client closed in the middle of its PROXY header");
			return;
		}
	}
	if (peek_is_due(c, revents))
		peek_and_decide(c, revents);
}

enum peek_status
conn_parse(struct conn *c, const uint8_t *buf, size_t n)
{
	enum peek_status st = PEEK_NEED_MORE;
	struct ssh_ident ident;
	memset(&c->peek, 0, sizeof(c->peek));
	switch (c->proto) {
	case PROTO_TLS:
		st = tls_hello_parse(buf, n, &c->peek);
		break;
	case PROTO_HTTP:
		st = http_host_parse_resume(buf, n, &c->http_progress, &c->peek);
		break;
	case PROTO_SSH:
		/* The line is checked whole, so that only SSH reaches SSH
		 * servers; it carries no name. */
		st = ssh_ident_parse(buf, n, &ident);
		c->peek.why = ident.why;
		if (st == PEEK_FOUND)
			st = PEEK_NO_NAME;
		break;
	case PROTO_SILENT:
		break;
	}
	if (st == PEEK_FOUND || st == PEEK_NO_NAME) {
		c->peek_us = loop_now_us() - c->accepted_us;
		c->has_name = st == PEEK_FOUND;
		if (!c->has_name)
			c->peek.name[0] = '\0';
	}
	return st;
}

/* Peek at everything the client sent so far and ask the listener's parser. */
static void
peek_and_decide(struct conn *c, uint32_t revents)
{
peek_again:;
	ssize_t n = recv(c->io.fd, peek_buf, sizeof(peek_buf), MSG_PEEK | MSG_DONTWAIT);
	if (n == 0) {
		conn_reject(c, OUTCOME_CLOSED, "client closed before sending a name");
		return;
	}
	if (n < 0) {
		if (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)
			return;	/* no data yet (or only a PROXY header so far); edge-triggered */
		conn_reject(c, OUTCOME_CLOSED, strerror(errno));
		return;
	}
	if (c->peeked == 0)
		c->first_peek_ms = loop_now_ms();
	c->peeked = (uint32_t)n;
	c->peek_due = (size_t)n < PEEK_MAX / 2 ? 2 * (uint32_t)n : PEEK_MAX;
	if (c->proto == 0 && detect_protocol(c, (size_t)n, revents) < 0)
		return;
	enum peek_status st = conn_parse(c, peek_buf, (size_t)n);
	switch (st) {
	case PEEK_NEED_MORE:
		if ((size_t)n >= sizeof(peek_buf)) {
			conn_reject(c, OUTCOME_INVALID, "no decision within 16 KiB");
		} else if (revents & (EPOLLRDHUP | EPOLLHUP)) {
			/* No more bytes can come: the deadline would only delay the end. */
			conn_reject(c, OUTCOME_CLOSED, "client closed in the middle of its hello/request");
		} else if (c->proto == PROTO_TLS) {
			c->peek_due = (uint32_t)tls_bytes_needed(peek_buf, (size_t)n);
			if (!wait_for_bytes(c, c->peek_due))
				goto peek_again;	/* bounded: each round needs more bytes, up to PEEK_MAX */
		}
		return;	/* edge-triggered: the next segment brings the next event */
	case PEEK_INVALID:
		c->peek_us = loop_now_us() - c->accepted_us;
		log_info("invalid %s from %s on %s: %s",
			 c->proto == PROTO_TLS ? "ClientHello" : c->proto == PROTO_SSH ? "SSH identification" : "request head",
			 conn_peer_text(c), c->listener->cfg->text, c->peek.why ? c->peek.why : "malformed");
		conn_reject(c, OUTCOME_INVALID, c->peek.why);
		return;
	case PEEK_FOUND:
	case PEEK_NO_NAME:
		break;
	}
	leave_peek_and_dispatch(c);
}

static void
on_client_event(struct loop_io *io, uint32_t revents)
{
	struct conn *c = container_of(io, struct conn, io);
	if (c->state == CONN_PEEKING)
		conn_peek(c, revents);
}

/* A new connection in the peek phase, counted; NULL (and fd closed) when
 * out of memory. */
static struct conn *
conn_start(struct listener *listener, int fd, const struct sockaddr_storage *peer, socklen_t peer_len,
	   uint64_t accepted_us, uint64_t accepted_real_us)
{
	struct conn *c = conn_alloc();
	if (c == NULL) {
		log_warnx("out of memory: closing a new connection");
		close(fd);
		return NULL;
	}
	c->io.fd = fd;
	c->io.cb = on_client_event;
	c->server_io.fd = -1;
	c->deadline.cb = on_deadline;
	c->silence.cb = on_silence;
	c->listener = listener;
	c->gen = gen_hold(listener->gen);
	/* A detect listener learns the protocol from the first bytes. */
	c->proto = listener->cfg->proto == LISTENER_DETECT ? 0 : (enum client_proto)listener->cfg->proto;
	c->state = CONN_PEEKING;
	c->peer = *peer;
	c->peer_len = peer_len;
	c->accepted_us = accepted_us;
	c->accepted_real_us = accepted_real_us;
	TAILQ_INSERT_TAIL(&live_conns, c, all_link);
	n_live++;
	server.n_peeking++;
	count_accepted(c);
	return c;
}

/* Look at c at once; watch it only if that does not decide it. */
static void
first_look(struct conn *c)
{
	/* Most clients send their hello or request with the handshake's last
	 * ACK, so it is usually queued already: look now, and a connection
	 * decided at once costs no epoll registration, no timers and no slot
	 * of max-per-ip, which counts the connections that wait. */
	conn_peek(c, 0);
	if (c->state != CONN_PEEKING)
		return;
	/* (A PROXY header already took the real client's slot.) */
	if (c->ip_slot == NULL && (c->ip_slot = iplimit_acquire(&c->peer, server.cfg.max_per_ip)) == NULL) {
		conn_reject(c, OUTCOME_REFUSED, "max-per-ip connections peeking from this address");
		return;
	}
	/* Edge-triggered: data that stays queued (we only peek) must not keep
	 * the socket readable in every epoll_wait. Adding reports data that
	 * arrived since the look above, so nothing is missed. */
	if (loop_io_add(server.loop, &c->io, EPOLLIN | EPOLLRDHUP | EPOLLET) < 0 ||
	    loop_timer_arm(server.loop, &c->deadline, server.cfg.peek_timeout_ms) < 0 ||
	    (c->proto == 0 && loop_timer_arm(server.loop, &c->silence, c->listener->cfg->detect_timeout_ms) < 0)) {
		log_warn("cannot watch connection from %s", conn_peer_text(c));
		conn_reject(c, OUTCOME_REFUSED, "internal error");
		return;
	}
	if (server.n_peeking >= server.cfg.max_peeking)
		listeners_pause("max-peeking reached", 0);
}

void
conn_accepted(struct listener *listener, int fd, const struct sockaddr_storage *peer, socklen_t peer_len)
{
	struct conn *c = conn_start(listener, fd, peer, peer_len, loop_now_us(), net_realtime_us());
	if (c != NULL)
		first_look(c);
}

void
conn_take_over(const struct conn *seen, bool decided)
{
	struct conn *c = conn_start(seen->listener, seen->io.fd, &seen->peer, seen->peer_len, seen->accepted_us,
				    seen->accepted_real_us);
	if (c == NULL)
		return;
	if (!decided) {
		first_look(c);
		return;
	}
	/* What the thread's parser found stands: the bytes are still queued
	 * (it only peeked), and the route is the loop's to take. */
	c->peek = seen->peek;
	c->has_name = seen->has_name;
	c->peek_us = seen->peek_us;
	leave_peek_and_dispatch(c);
}

void
conns_close_all(void)
{
	struct conn *c;
	while ((c = TAILQ_FIRST(&live_conns)) != NULL)
		conn_destroy(c, OUTCOME_CLOSED, NULL, "daemon stopping");
	conns_reap();
	conns_free_spares();
}
