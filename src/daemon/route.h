/* route.h - names to targets, and the choice of a target for each connection. */
#ifndef HANDOFF_ROUTE_H
#define HANDOFF_ROUTE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "config.h"

struct conn;
struct target;

enum deliver_result {
	DELIVER_DONE,	/* handed off, or owned by an asynchronous step (a connect) */
	DELIVER_BUSY,	/* no room now (a local upstream's queue is full); c untouched */
	DELIVER_FAILED,	/* this target cannot take c: try another; c untouched */
};

/* What a kind of target ("hand off to a local upstream", "relay over TCP")
 * must provide. */
struct target_ops {
	const char *kind;
	enum deliver_result (*deliver)(struct target *t, struct conn *c);
	/* Queue c until the target has room (NULL: this kind never queues). */
	void (*enqueue)(struct target *t, struct conn *c);
};

struct target {
	const struct target_ops *ops;
	char label[400];		/* upstream id or "tcp:HOST:PORT(address)" */
	unsigned weight;
	int only_protocol;		/* enum client_proto it accepts, 0 = any */
	int only_family;		/* AF_INET/AF_INET6: the only clients it takes, 0 = any */
	int64_t current;		/* smooth weighted round-robin state */
	unsigned active;		/* connections connecting or relayed through it */
	unsigned fails;			/* consecutive failures */
	uint64_t failures;		/* failures since start, for the admin endpoint */
	uint64_t down_until_ms;		/* passive health: skipped until then */
	bool busy;			/* its queue was full at the last attempt */
	unsigned n_waiting;		/* connections queued at it */
	uint64_t delivered;		/* connections handed off or relayed */
};

/* A name's targets: the route line's TCP targets (if any) plus the local
 * upstreams registered for exactly that name. */
struct route {
	const struct config_route *cfg;	/* NULL when only local upstreams serve it */
	char key[256];			/* name pattern or PROTOCOL_KEY_* */
	char alpn[ALPN_ID_MAX + 1];	/* only for clients offering this ALPN id; "" = any */
	struct target **targets;
	size_t n;
	size_t cap;
};

/* Build the routes of the configuration (their TCP targets). Returns 0 or
 * -1 with one line in err. */
int routes_init(char *err, size_t errlen);
void routes_close(void);

/* A local upstream serving key, for clients offering the ALPN id alpn
 * ("" or NULL: whatever they offer), joins or leaves the route. */
int route_attach(const char *key, const char *alpn, struct target *t);
void route_detach(const char *key, const char *alpn, struct target *t);

/* Whether the route of key (a name pattern or PROTOCOL_KEY_*, any ALPN)
 * has a target now. */
bool route_has_targets(const char *key);

/* A reload. prepare: every table routing uses (names, names per ALPN id,
 * protocol routes) built from cfg (DNS already resolved by the
 * configuration), not yet used; NULL when out of memory. commit: use it;
 * the local upstreams move over by key and ALPN id, the replaced TCP
 * targets stay with old (the retiring generation) while connections use
 * them. discard: free a prepared set that is not committed. */
struct route_set;
struct config_gen;
struct route_set *routes_prepare(const struct config *cfg);
void routes_commit(struct route_set *next, struct config_gen *old);
void routes_discard(struct route_set *prepared);

/* Route a connection whose name is known (or known to be absent): deliver
 * it to a target, queue it, or reject it. Called again after an
 * asynchronous failure; targets already tried by c are skipped. */
void route_dispatch(struct conn *c);

/* For an accepting thread (daemon lock held): the local upstream c's
 * route would take c to now, its round-robin turn taken; NULL when the
 * route has no target with room or relays (then the loop routes c). */
struct target *route_pick_at_once(struct conn *c);

/* An asynchronous delivery to t failed (a connect): remember t as tried
 * and route c again. */
void route_retry(struct conn *c, struct target *t);

/* Passive health: count a failure (take the target out for retry-after
 * once fail-after is reached) or a success (reset). */
void target_failed(struct target *t, const struct config_route *cfg, const char *why);
void target_succeeded(struct target *t);

/* Call fn for every route (for the dashboard and metrics). */
void routes_foreach(void (*fn)(const struct route *r, void *arg), void *arg);

#endif
