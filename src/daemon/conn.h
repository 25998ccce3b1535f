/* conn.h - one client connection from accept to handoff or rejection. */
#ifndef HANDOFF_CONN_H
#define HANDOFF_CONN_H

#include <stdbool.h>
#include <stdint.h>
#include <sys/queue.h>
#include <sys/socket.h>

#include "http_host.h"
#include "loop.h"
#include "peek.h"
#include "relay.h"
#include "server.h"

struct listener;
struct target;
struct iplimit_entry;
struct config_route;
struct config_gen;

#define CONN_MAX_TRIED 16	/* targets remembered as failed for one connection */

enum conn_state {
	CONN_PEEKING,	/* reading the first bytes with MSG_PEEK */
	CONN_WAITING,	/* name known; being routed, or queued at a busy upstream */
	CONN_CONNECTING,	/* connecting to a TCP target */
	CONN_RELAYING,	/* bytes relayed to a TCP target (relay.c owns the sockets) */
	CONN_DONE,	/* closed or handed off; freed after the current batch */
};

struct conn {
	struct loop_io io;		/* io.fd is the client socket, -1 once released */
	struct loop_timer deadline;	/* peek, then handoff or connect deadline */
	struct loop_timer silence;	/* detect listener: detect-timeout, for silent clients */
	enum client_proto proto;	/* what the client speaks; 0 until a detect listener knows */
	enum conn_state state;
	struct listener *listener;	/* of c->gen, which it keeps alive */
	struct config_gen *gen;		/* held from accept to free: the rules the peek runs under */
	struct config_gen *route_gen;	/* held from dispatch: the routes and targets it went to */
	struct iplimit_entry *ip_slot;	/* held while peeking */
	struct sockaddr_storage peer;
	socklen_t peer_len;
	struct sockaddr_storage local;
	socklen_t local_len;
	char peer_text[64];
	char via_text[64];		/* accept-proxy: the balancer's address, else "" */
	uint64_t accepted_us;		/* monotonic */
	uint64_t accepted_real_us;	/* wall clock, for the handoff header */
	uint64_t peek_us;		/* time from accept to a parser's answer */
	bool has_name;
	struct peek_result peek;	/* name and ALPN once known */
	bool proxy_header_done;		/* accept-proxy: the PROXY header was consumed */
	struct http_progress http_progress;	/* HTTP listener: the parser's progress between events */
	int rcvlowat;			/* TLS listener: SO_RCVLOWAT we set while peeking; 0 if untouched */
	uint32_t peeked;		/* bytes the last peek examined; 0 before the first */
	uint32_t peek_due;		/* queued bytes that make the next peek worth its copy */
	uint64_t first_peek_ms;		/* monotonic: when the first peek found bytes */
	struct loop_timer peek_later;	/* ends a pause in listening for bytes short of peek_due */
	struct target *waiting_at;	/* CONN_WAITING: whose queue holds us */
	TAILQ_ENTRY(conn) queue;	/* link in that upstream's waiting queue */
	TAILQ_ENTRY(conn) all_link;	/* link in the live list, then the dead list */
	const struct target *tried[CONN_MAX_TRIED];	/* failed targets: compared, never dereferenced */
	unsigned n_tried;
	struct loop_io server_io;	/* CONN_CONNECTING: the socket to the target */
	struct target *target;		/* CONN_CONNECTING / CONN_RELAYING */
	const struct config_route *route_cfg;	/* the target's route */
	struct relay *relay;		/* CONN_RELAYING */
	struct iplimit_entry *relay_ip_slot;	/* CONN_CONNECTING / CONN_RELAYING: max-relays-per-ip */
	struct relay_stats relayed;
};

/* "tls", "http", "ssh", "silent", or "-" before a detect listener knows. */
const char *client_proto_name(enum client_proto proto);

/* c's client address as text ("192.0.2.1:5000", "[2001:db8::1]:5000"),
 * formatted on first use. */
const char *conn_peer_text(struct conn *c);

/* Fill c->local (the address the client reached) if not known yet: the
 * fast path leaves it to the receiver, which holds the same socket. */
void conn_local_address(struct conn *c);

/* Take ownership of a freshly accepted, non-blocking client socket. */
void conn_accepted(struct listener *listener, int fd,
		   const struct sockaddr_storage *peer, socklen_t peer_len);

/* The same, for a connection an accepting thread took (daemon lock
 * held): seen holds its listener, descriptor, peer and accept times, and
 * when decided also what its parser found (conn_parse), which then
 * stands; else the loop looks as for one it accepted. */
void conn_take_over(const struct conn *seen, bool decided);

/* Ask c's protocol parser about the n peeked bytes in buf: fills c->peek
 * and, once decided (PEEK_FOUND or PEEK_NO_NAME), c->has_name and
 * c->peek_us. Touches nothing but c. */
enum peek_status conn_parse(struct conn *c, const uint8_t *buf, size_t n);

/* A worker thread handed c off at its first look, outside the loop:
 * count it as the loop counts its own (daemon lock held), then write its
 * access-log line (any thread, no lock). */
void conn_count_handed_off_at_once(const struct conn *c, const char *upstream_id);
void conn_log_handed_off(struct conn *c, const char *upstream_id);

/* The connection was handed to upstream_id: our copy is closed, logged, freed. */
void conn_handed_off(struct conn *c, const char *upstream_id);

/* Refuse the connection with outcome: for NO_ROUTE the client is told
 * (TLS unrecognized_name alert, HTTP 503) before the close. Idempotent. */
void conn_reject(struct conn *c, enum outcome outcome, const char *why);

/* Start waiting at a busy upstream (arms the handoff deadline). */
void conn_wait(struct conn *c, struct target *t);

/* A relayed connection ended (relay.c's done callback; arg is the conn). */
void conn_relay_done(void *arg, const char *why, const struct relay_stats *stats);

/* Close every live connection (shutdown of the daemon). */
void conns_close_all(void);

/* Free connections closed during the last loop batch (some are kept for
 * reuse, up to a bound, until conns_close_all). */
void conns_reap(void);

/* Connections not yet closed (peeking, waiting, connecting or relayed). */
size_t conns_live(void);

/* Before routing: hold the current generation, whose routes c goes to. */
void conn_enter_current_routes(struct conn *c);

#endif
