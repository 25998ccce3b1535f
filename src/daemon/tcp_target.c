/* tcp_target.c - relay targets: relay limits, non-blocking connect with a deadline, PROXY header, hand the pair to relay.c; active TCP checks. */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "conn.h"
#include "iplimit.h"
#include "log.h"
#include "net.h"
#include "proxy_proto.h"
#include "relay.h"
#include "route.h"
#include "server.h"
#include "tcp_target.h"

struct tcp_target {
	struct target target;
	const struct config_route *route;
	const struct config_target *cfg;
	struct loop_timer check_timer;	/* next check, or the running check's deadline */
	struct loop_io check_io;	/* fd -1 unless a check is connecting */
};

static enum deliver_result deliver_tcp(struct target *t, struct conn *c);

static const struct target_ops tcp_target_ops = {
	.kind = "tcp",
	.deliver = deliver_tcp,
	.enqueue = NULL,
};

static void on_check_timer(struct loop_timer *timer);
static void on_check_event(struct loop_io *io, uint32_t revents);

#define REFUSAL_LOG_INTERVAL_MS 1000	/* at most one "relay refused" line per interval */

/* Connections connecting to or relayed to a TCP target: each holds two
 * descriptors for as long as idle-timeout allows, so they are bounded in
 * number, per client address, and in descriptors (relay.c's budget). */
static unsigned n_relays;
static uint64_t n_refused;		/* relays refused by those bounds */
static uint64_t refused_unlogged;	/* ... since the last log line */
static uint64_t refusal_logged_ms;
static bool refusal_logged;

uint64_t
tcp_relays_refused(void)
{
	return n_refused;
}

static void
log_refusal(struct conn *c, const char *why)
{
	uint64_t now = loop_now_ms();
	if (refusal_logged && now - refusal_logged_ms < REFUSAL_LOG_INTERVAL_MS) {
		refused_unlogged++;
		return;
	}
	log_warnx("relay for %s refused: %s (%llu more refused since the last such line)", conn_peer_text(c), why,
		  (unsigned long long)refused_unlogged);
	refused_unlogged = 0;
	refusal_logged_ms = now;
	refusal_logged = true;
}

/* Take a relay's place: NULL, or why there is none. */
static const char *
relay_admit(struct conn *c)
{
	if (n_relays >= server.cfg.max_relays)
		return "max-relays reached";
	if (!relay_fds_claim(2))
		return "relays hold every descriptor outside the reserve";
	c->relay_ip_slot = iplimit_acquire_kind(IPLIMIT_RELAYS, &c->peer, server.cfg.max_relays_per_ip);
	if (c->relay_ip_slot == NULL) {
		relay_fds_release(2);
		return "max-relays-per-ip reached for this client address";
	}
	n_relays++;
	return NULL;
}

/* Give the place back. The descriptor claim goes with it unless a running
 * relay owns it (relay.c releases it then). */
static void
relay_leave(struct conn *c, bool release_fds)
{
	iplimit_release_kind(IPLIMIT_RELAYS, c->relay_ip_slot);
	c->relay_ip_slot = NULL;
	n_relays--;
	if (release_fds)
		relay_fds_release(2);
}

static void
relay_done(void *arg, const char *why, const struct relay_stats *stats)
{
	struct conn *c = arg;
	relay_leave(c, false);
	conn_relay_done(c, why, stats);
}

struct target *
tcp_target_new(const struct config_route *route, const struct config_target *ct)
{
	struct tcp_target *tt = calloc(1, sizeof(*tt));
	if (tt == NULL)
		return NULL;
	char addr[80];
	net_addr_text(&ct->addr, addr, sizeof(addr));
	tt->target.ops = &tcp_target_ops;
	tt->target.weight = ct->weight;
	if (strcmp(ct->text + 4, addr) == 0)
		snprintf(tt->target.label, sizeof(tt->target.label), "%s", ct->text);
	else
		snprintf(tt->target.label, sizeof(tt->target.label), "%s(%s)", ct->text, addr);
	tt->route = route;
	tt->cfg = ct;
	tt->check_io.fd = -1;
	tt->check_io.cb = on_check_event;
	tt->check_timer.cb = on_check_timer;
	if (route->check_interval_ms > 0)
		loop_timer_arm(server.loop, &tt->check_timer, 0);
	return &tt->target;
}

static void
check_finish(struct tcp_target *tt, const char *failure)
{
	loop_io_del(server.loop, &tt->check_io);
	close(tt->check_io.fd);
	tt->check_io.fd = -1;
	if (failure != NULL)
		target_failed(&tt->target, tt->route, failure);
	else
		target_succeeded(&tt->target);
	loop_timer_arm(server.loop, &tt->check_timer, tt->route->check_interval_ms);
}

void
tcp_target_stop_checks(struct target *t)
{
	if (t == NULL || t->ops != &tcp_target_ops)
		return;
	struct tcp_target *tt = container_of(t, struct tcp_target, target);
	loop_timer_cancel(server.loop, &tt->check_timer);
	if (tt->check_io.fd >= 0) {
		loop_io_del(server.loop, &tt->check_io);
		close(tt->check_io.fd);
		tt->check_io.fd = -1;
	}
}

bool
tcp_target_is(const struct target *t)
{
	return t != NULL && t->ops == &tcp_target_ops;
}

void
tcp_target_free(struct target *t)
{
	if (t == NULL)
		return;
	tcp_target_stop_checks(t);
	free(container_of(t, struct tcp_target, target));
}

/* Start a non-blocking connect; -1 with errno if it failed at once. */
static int
start_connect(const struct config_target *ct)
{
	int fd = socket(ct->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return -1;
	if (connect(fd, (const struct sockaddr *)&ct->addr, ct->addrlen) < 0 && errno != EINPROGRESS) {
		int saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return fd;
}

/* Active check: a TCP connect that must complete within connect-timeout
 * (or the check interval, if shorter). */
static void
on_check_timer(struct loop_timer *timer)
{
	struct tcp_target *tt = container_of(timer, struct tcp_target, check_timer);
	if (tt->check_io.fd >= 0) {
		check_finish(tt, "health check timed out");
		return;
	}
	int fd = start_connect(tt->cfg);
	if (fd < 0) {
		target_failed(&tt->target, tt->route, strerror(errno));
		loop_timer_arm(server.loop, &tt->check_timer, tt->route->check_interval_ms);
		return;
	}
	tt->check_io.fd = fd;
	if (loop_io_add(server.loop, &tt->check_io, EPOLLOUT) < 0) {
		check_finish(tt, "cannot watch health check");
		return;
	}
	unsigned limit = tt->route->connect_timeout_ms;
	if (limit > tt->route->check_interval_ms)
		limit = tt->route->check_interval_ms;
	loop_timer_arm(server.loop, &tt->check_timer, limit);
}

static void
on_check_event(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	struct tcp_target *tt = container_of(io, struct tcp_target, check_io);
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	check_finish(tt, err ? strerror(err) : NULL);
}

static void
close_server_socket(struct conn *c)
{
	loop_io_del(server.loop, &c->server_io);
	if (c->server_io.fd >= 0)
		close(c->server_io.fd);
	c->server_io.fd = -1;
}

/* Leave CONN_CONNECTING without a relay. */
static struct target *
leave_connecting(struct conn *c)
{
	struct target *t = c->target;
	close_server_socket(c);
	loop_timer_cancel(server.loop, &c->deadline);
	c->target = NULL;
	c->state = CONN_WAITING;
	server.n_connecting--;
	t->active--;
	relay_leave(c, true);
	return t;
}

void
tcp_target_connect_failed(struct conn *c, const char *why)
{
	const struct config_route *route = c->route_cfg;
	struct target *t = leave_connecting(c);
	log_info("connect to %s for %s failed: %s", t->label, conn_peer_text(c), why);
	target_failed(t, route, why);
	route_retry(c, t);
}

void
tcp_target_abandon(struct conn *c)
{
	leave_connecting(c);
}

/* Connected: send the PROXY header if the route wants one, then relay from
 * byte 0 of the client's stream (nothing was consumed while peeking). */
static void
connected(struct conn *c)
{
	struct target *t = c->target;
	const struct config_route *route = c->route_cfg;
	target_succeeded(t);
	if (route->proxy_version != 0) {
		uint8_t header[PROXY_ENCODED_MAX];
		const uint8_t *alpn = NULL;
		size_t alpn_len = 0;
		/* The first protocol the client offered: we do not negotiate. */
		if (c->peek.alpn_len > 1 && c->peek.alpn[0] > 0 && (size_t)c->peek.alpn[0] < c->peek.alpn_len) {
			alpn = c->peek.alpn + 1;
			alpn_len = c->peek.alpn[0];
		}
		struct proxy_tlvs tlvs = {
			.authority = c->has_name ? c->peek.name : NULL,
			.alpn = alpn,
			.alpn_len = alpn_len,
		};
		conn_local_address(c);
		size_t len = proxy_proto_encode(header, sizeof(header), route->proxy_version, &c->peer,
						&c->local, &tlvs);
		/* A fresh connection's send buffer is empty: a few hundred bytes fit. */
		if (len == 0 || send(c->server_io.fd, header, len, MSG_DONTWAIT | MSG_NOSIGNAL) != (ssize_t)len) {
			tcp_target_connect_failed(c, "cannot send the PROXY header");
			return;
		}
	}
	int server_fd = c->server_io.fd;
	loop_io_del(server.loop, &c->server_io);
	loop_timer_cancel(server.loop, &c->deadline);
	struct relay *r = relay_start(c->io.fd, server_fd, route->idle_timeout_ms, relay_done, c);
	if (r == NULL) {
		log_warn("cannot start a relay for %s", conn_peer_text(c));
		leave_connecting(c);
		conn_reject(c, OUTCOME_REFUSED, "out of resources for a relay");
		return;
	}
	/* Both sockets now belong to the relay. */
	c->io.fd = -1;
	c->server_io.fd = -1;
	c->relay = r;
	c->state = CONN_RELAYING;
	server.n_connecting--;
	t->delivered++;
}

static void
on_connect_event(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	struct conn *c = container_of(io, struct conn, server_io);
	if (c->state != CONN_CONNECTING)
		return;
	int err = 0;
	socklen_t len = sizeof(err);
	if (getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
		err = errno;
	if (err != 0)
		tcp_target_connect_failed(c, strerror(err));
	else
		connected(c);
}

static enum deliver_result
deliver_tcp(struct target *t, struct conn *c)
{
	struct tcp_target *tt = container_of(t, struct tcp_target, target);
	const char *refusal = relay_admit(c);
	if (refusal != NULL) {
		/* The answer a client gets when nothing can take it now. */
		n_refused++;
		log_refusal(c, refusal);
		conn_reject(c, OUTCOME_REFUSED, refusal);
		return DELIVER_DONE;
	}
	int fd = start_connect(tt->cfg);
	if (fd < 0) {
		int err = errno;
		relay_leave(c, true);
		log_info("connect to %s for %s failed: %s", t->label, conn_peer_text(c), strerror(err));
		target_failed(t, tt->route, strerror(err));
		return DELIVER_FAILED;
	}
	c->server_io.fd = fd;
	c->server_io.cb = on_connect_event;
	if (loop_io_add(server.loop, &c->server_io, EPOLLOUT) < 0) {
		close(fd);
		c->server_io.fd = -1;
		relay_leave(c, true);
		return DELIVER_FAILED;
	}
	c->state = CONN_CONNECTING;
	c->target = t;
	c->route_cfg = tt->route;
	t->active++;
	server.n_connecting++;
	loop_timer_arm(server.loop, &c->deadline, tt->route->connect_timeout_ms);
	return DELIVER_DONE;
}
