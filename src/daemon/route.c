/* route.c - the route table (exact, wildcard, default) and target selection: weighted round robin or least connections, passive health. */
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <netinet/in.h>

#include "conn.h"
#include "generation.h"
#include "hostname.h"
#include "listener.h"
#include "log.h"
#include "nametable.h"
#include "route.h"
#include "server.h"
#include "tcp_target.h"

#define MAX_DISPATCH_ATTEMPTS 64	/* targets tried for one connection in one dispatch */

/* Routes for clients offering one ALPN protocol: one name table per id.
 * Ids come from the configuration and from registrations; their number
 * is bounded so that a client's list costs a bounded number of lookups. */
#define MAX_ALPN_TABLES 64
struct alpn_table {
	char alpn[ALPN_ID_MAX + 1];
	size_t len;
	struct nametable *routes;
};

/* Every table routing uses, built together from one configuration so that
 * a reload replaces them together: the plain table (key -> struct route,
 * for clients whatever their ALPN; protocol routes too) and one per ALPN id. */
struct route_set {
	struct nametable *plain;
	struct alpn_table alpn[MAX_ALPN_TABLES];
	size_t n_alpn;
};

static struct route_set *routes;	/* the current generation's */

static struct alpn_table *
alpn_table_find(struct route_set *set, const uint8_t *id, size_t len)
{
	for (size_t i = 0; i < set->n_alpn; i++)
		if (set->alpn[i].len == len && memcmp(set->alpn[i].alpn, id, len) == 0)
			return &set->alpn[i];
	return NULL;
}

/* The name table of set for alpn ("" = the plain one), created if create
 * is set; NULL when out of memory or when MAX_ALPN_TABLES ids exist. */
static struct nametable *
table_for(struct route_set *set, const char *alpn, bool create)
{
	if (alpn == NULL || alpn[0] == '\0')
		return set->plain;
	size_t len = strlen(alpn);
	struct alpn_table *at = alpn_table_find(set, (const uint8_t *)alpn, len);
	if (at != NULL || !create)
		return at != NULL ? at->routes : NULL;
	if (set->n_alpn == MAX_ALPN_TABLES || len > ALPN_ID_MAX)
		return NULL;
	at = &set->alpn[set->n_alpn];
	if ((at->routes = nametable_new()) == NULL)
		return NULL;
	memcpy(at->alpn, alpn, len + 1);
	at->len = len;
	set->n_alpn++;
	return at->routes;
}

/* Call fn with every route of set, the plain table first. */
static void
set_foreach(const struct route_set *set, void (*fn)(const char *key, void *value, void *arg), void *arg)
{
	nametable_foreach(set->plain, fn, arg);
	for (size_t i = 0; i < set->n_alpn; i++)
		nametable_foreach(set->alpn[i].routes, fn, arg);
}

static void set_free(struct route_set *set);

static struct route *
route_new(struct nametable *table, const char *key, const char *alpn, const struct config_route *cfg)
{
	struct route *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	snprintf(r->key, sizeof(r->key), "%s", key);
	snprintf(r->alpn, sizeof(r->alpn), "%s", alpn ? alpn : "");
	r->cfg = cfg;
	if (nametable_set(table, key, r) < 0) {
		free(r);
		return NULL;
	}
	return r;
}

static int
route_add_target(struct route *r, struct target *t)
{
	if (r->n == r->cap) {
		size_t cap = r->cap ? r->cap * 2 : 4;
		struct target **grown = realloc(r->targets, cap * sizeof(*grown));
		if (grown == NULL)
			return -1;
		r->targets = grown;
		r->cap = cap;
	}
	r->targets[r->n++] = t;
	return 0;
}

static void
route_free(struct route *r)
{
	free(r->targets);
	free(r);
}

/* The routes of cfg (name, ALPN and protocol routes) with their TCP
 * targets, in a new set of tables. */
static struct route_set *
routes_build(const struct config *cfg)
{
	struct route_set *set = calloc(1, sizeof(*set));
	if (set == NULL)
		return NULL;
	if ((set->plain = nametable_new()) == NULL)
		goto fail;
	for (size_t i = 0; i < cfg->n_routes; i++) {
		const struct config_route *cr = &cfg->routes[i];
		struct nametable *table = table_for(set, cr->alpn, true);
		struct route *r = table != NULL ? route_new(table, cr->pattern, cr->alpn, cr) : NULL;
		if (r == NULL)
			goto fail;
		for (size_t k = 0; k < cr->n_targets; k++) {
			struct target *t = tcp_target_new(cr, &cr->targets[k]);
			if (t == NULL || route_add_target(r, t) < 0) {
				tcp_target_free(t);
				goto fail;
			}
		}
	}
	return set;
fail:
	set_free(set);
	return NULL;
}

int
routes_init(char *err, size_t errlen)
{
	if ((routes = routes_build(&server.cfg)) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* A route of the replaced set: its local upstreams join the new set under
 * the same key and ALPN id (the claims they registered with), its TCP
 * targets stay with the old generation for the connections still using
 * them. */
static void
move_route(const char *key, void *value, void *arg)
{
	struct route *r = value;
	struct config_gen *old = arg;
	for (size_t i = 0; i < r->n; i++) {
		struct target *t = r->targets[i];
		if (!tcp_target_is(t)) {
			if (route_attach(key, r->alpn, t) < 0)
				log_warnx("out of memory: upstream %s no longer serves %s%s%s", t->label, key,
					  r->alpn[0] ? " for ALPN " : "", r->alpn);
		} else if (gen_keep_target(old, t) < 0) {
			log_warnx("out of memory: dropping target %s early", t->label);
			tcp_target_free(t);
		}
	}
	route_free(r);
}

struct route_set *
routes_prepare(const struct config *cfg)
{
	return routes_build(cfg);
}

void
routes_commit(struct route_set *next, struct config_gen *old)
{
	struct route_set *was = routes;
	routes = next;
	set_foreach(was, move_route, old);
	nametable_free(was->plain);
	for (size_t i = 0; i < was->n_alpn; i++)
		nametable_free(was->alpn[i].routes);
	free(was);
}

void
routes_discard(struct route_set *prepared)
{
	set_free(prepared);
}

static void
free_config_route(const char *key, void *value, void *arg)
{
	(void)key;
	(void)arg;
	struct route *r = value;
	/* Local upstreams were detached (and freed) by upstreams_close(); a
	 * set that was never used holds TCP targets only. */
	for (size_t i = 0; i < r->n; i++)
		tcp_target_free(r->targets[i]);
	route_free(r);
}

static void
set_free(struct route_set *set)
{
	if (set == NULL)
		return;
	if (set->plain != NULL) {
		set_foreach(set, free_config_route, NULL);
		nametable_free(set->plain);
	}
	for (size_t i = 0; i < set->n_alpn; i++)
		nametable_free(set->alpn[i].routes);
	free(set);
}

void
routes_close(void)
{
	set_free(routes);
	routes = NULL;
}

int
route_attach(const char *key, const char *alpn, struct target *t)
{
	struct nametable *table = table_for(routes, alpn, true);
	if (table == NULL)
		return -1;
	struct route *r = nametable_get(table, key);
	if (r == NULL && (r = route_new(table, key, alpn, NULL)) == NULL)
		return -1;
	if (route_add_target(r, t) < 0) {
		if (r->n == 0 && r->cfg == NULL) {
			nametable_del(table, key);
			route_free(r);
		}
		return -1;
	}
	return 0;
}

void
route_detach(const char *key, const char *alpn, struct target *t)
{
	struct nametable *table = routes != NULL ? table_for(routes, alpn, false) : NULL;
	struct route *r = table != NULL ? nametable_get(table, key) : NULL;
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++) {
		if (r->targets[i] == t) {
			memmove(&r->targets[i], &r->targets[i + 1], (r->n - i - 1) * sizeof(*r->targets));
			r->n--;
			break;
		}
	}
	if (r->n == 0 && r->cfg == NULL) {
		nametable_del(table, key);
		route_free(r);
	}
}

bool
route_has_targets(const char *key)
{
	const struct route *r = routes != NULL ? nametable_get(routes->plain, key) : NULL;
	return r != NULL && r->n > 0;
}

struct foreach_ctx {
	void (*fn)(const struct route *r, void *arg);
	void *arg;
};

static void
foreach_trampoline(const char *key, void *value, void *arg)
{
	(void)key;
	const struct foreach_ctx *ctx = arg;
	ctx->fn(value, ctx->arg);
}

void
routes_foreach(void (*fn)(const struct route *r, void *arg), void *arg)
{
	struct foreach_ctx ctx = { fn, arg };
	if (routes != NULL)
		set_foreach(routes, foreach_trampoline, &ctx);
}

void
target_failed(struct target *t, const struct config_route *cfg, const char *why)
{
	unsigned fail_after = cfg ? cfg->fail_after : 1;
	unsigned retry_after_ms = cfg ? cfg->retry_after_ms : 30000;
	t->fails++;
	t->failures++;
	if (t->fails >= fail_after && t->down_until_ms <= loop_now_ms()) {
		log_warnx("target %s is down after %u failure%s (%s): skipped for %u ms", t->label, t->fails,
			  t->fails == 1 ? "" : "s", why, retry_after_ms);
		t->down_until_ms = loop_now_ms() + retry_after_ms;
	}
}

void
target_succeeded(struct target *t)
{
	if (t->down_until_ms > 0)
		log_info("target %s is up again", t->label);
	t->fails = 0;
	t->down_until_ms = 0;
}

/*
 * Whether the configuration gives name to someone: a grant or a route whose
 * pattern covers it. A catch-all "*" does not count: it lets its principals
 * claim names, it says nothing about whose site a name is.
 */
static bool
name_is_owned(const char *name)
{
	for (size_t i = 0; i < server.cfg.n_grants; i++) {
		const char *pattern = server.cfg.grants[i].pattern;
		if (strcmp(pattern, "*") != 0 && hostname_pattern_covers(pattern, name))
			return true;
	}
	for (size_t i = 0; i < server.cfg.n_routes; i++) {
		const char *pattern = server.cfg.routes[i].pattern;
		if (strcmp(pattern, "*") != 0 && hostname_pattern_covers(pattern, name))
			return true;
	}
	return false;
}

/*
 * The route for name as a client offering the ALPN list alpn (wire form)
 * sees it: for each protocol in the client's order of preference, the
 * most specific route for the name and that protocol (exact, wildcards,
 * "*"); the first that has targets wins. Else the name's route whatever
 * the ALPN. NULL if neither has targets.
 */
static struct route *
match_name(const char *name, const uint8_t *alpn, size_t alpn_len)
{
	for (size_t off = 0; routes->n_alpn > 0 && off < alpn_len;) {
		size_t len = alpn[off];
		if (len == 0 || off + 1 + len > alpn_len)
			break;
		const struct alpn_table *at = alpn_table_find(routes, alpn + off + 1, len);
		struct route *r = at != NULL ? nametable_match(at->routes, name, NULL) : NULL;
		if (r != NULL && r->n > 0)
			return r;
		off += 1 + len;
	}
	struct route *r = nametable_match(routes->plain, name, NULL);
	return r != NULL && r->n > 0 ? r : NULL;
}

/*
 * The route for c: its name's (by ALPN first, then exact, wildcards,
 * "*"), else the listener's default. Clients of a protocol without names
 * (SSH, silent ones) have exactly their protocol's route. The default serves only clients without a name and
 * names nobody owns: a client of an owned name whose upstream is away (a
 * restart) carries that site's cookies and credentials, which must never
 * reach whoever serves the default. It is refused instead.
 */
static struct route *
route_for(const struct conn *c, const char **why)
{
	struct route *r = NULL;
	if (c->proto == PROTO_SSH || c->proto == PROTO_SILENT) {
		r = nametable_get(routes->plain, c->proto == PROTO_SSH ? PROTOCOL_KEY_SSH : PROTOCOL_KEY_SILENT);
		if (r != NULL && r->n > 0)
			return r;
		*why = c->proto == PROTO_SSH ? "no upstream or route for ssh" : "no upstream or route for silent clients";
		return NULL;
	}
	if (c->has_name && (r = match_name(c->peek.name, c->peek.alpn, c->peek.alpn_len)) != NULL)
		return r;
	if (c->has_name && name_is_owned(c->peek.name)) {
		*why = "no upstream serves this name (it is granted or routed, so never sent to the default)";
		return NULL;
	}
	if (c->listener->cfg->default_name[0] != '\0')
		r = match_name(c->listener->cfg->default_name, c->peek.alpn, c->peek.alpn_len);
	if (r == NULL) {
		*why = c->has_name ? "no upstream serves this name" : "no name and no default route";
		return NULL;
	}
	return r;
}

/* The client's address family as a receiver sees it: a v4-mapped address
 * (an IPv4 client of a dual-stack listener) is IPv4. The client is the one
 * a PROXY header named, if the listener takes them. 0 for a client without
 * an IP address, which any receiver takes. */
static int
client_family(const struct conn *c)
{
	if (c->peer.ss_family == AF_INET)
		return AF_INET;
	if (c->peer.ss_family != AF_INET6)
		return 0;
	const struct sockaddr_in6 *in6 = (const struct sockaddr_in6 *)&c->peer;
	return IN6_IS_ADDR_V4MAPPED(&in6->sin6_addr) ? AF_INET : AF_INET6;
}

/* Targets c cannot go to: tried and failed already, registered for the
 * other protocol, or a receiver that cannot take a client of c's address
 * family (an IPv4 listener and an IPv6 client, say). */
static bool
excluded(const struct conn *c, const struct target *t)
{
	if (t->only_protocol != 0 && t->only_protocol != (int)c->proto)
		return true;
	if (t->only_family != 0 && client_family(c) != 0 && t->only_family != client_family(c))
		return true;
	for (unsigned i = 0; i < c->n_tried; i++)
		if (c->tried[i] == t)
			return true;
	return false;
}

static void
remember_tried(struct conn *c, const struct target *t)
{
	if (c->n_tried < CONN_MAX_TRIED)
		c->tried[c->n_tried++] = t;
}

/*
 * Choose the next target for c among those it has not tried and that have
 * room. Targets that failed recently (down) are used only when nothing
 * healthy is left. Round robin is the smooth weighted kind: each pick adds
 * every candidate's weight to its credit and takes the richest, which
 * interleaves a 3:1 pair as a,a,b,a rather than a,a,a,b. Least-conn picks
 * the fewest active connections per unit of weight.
 */
static struct target *
pick_target(struct route *r, struct conn *c, struct target **queue_at)
{
	uint64_t now = loop_now_ms();
	bool any_healthy = false;
	*queue_at = NULL;
	for (size_t i = 0; i < r->n; i++) {
		struct target *t = r->targets[i];
		if (excluded(c, t))
			continue;
		if (t->busy || t->n_waiting > 0) {
			if (t->ops->enqueue != NULL && (*queue_at == NULL || t->n_waiting < (*queue_at)->n_waiting))
				*queue_at = t;
			continue;
		}
		if (t->down_until_ms <= now)
			any_healthy = true;
	}
	struct target *best = NULL;
	int64_t total = 0;
	for (size_t i = 0; i < r->n; i++) {
		struct target *t = r->targets[i];
		if (excluded(c, t) || t->busy || t->n_waiting > 0)
			continue;
		if (any_healthy && t->down_until_ms > now)
			continue;
		if (r->cfg != NULL && r->cfg->balance == BALANCE_LEAST_CONN) {
			/* a/wa < b/wb without division */
			if (best == NULL || (uint64_t)t->active * best->weight < (uint64_t)best->active * t->weight)
				best = t;
			continue;
		}
		t->current += t->weight;
		total += t->weight;
		if (best == NULL || t->current > best->current)
			best = t;
	}
	if (best != NULL && (r->cfg == NULL || r->cfg->balance == BALANCE_ROUND_ROBIN))
		best->current -= total;
	return best;
}

void
route_dispatch(struct conn *c)
{
	conn_enter_current_routes(c);
	for (int attempt = 0; attempt < MAX_DISPATCH_ATTEMPTS; attempt++) {
		const char *why = NULL;
		/* Looked up afresh each time: a failed delivery may have removed
		 * a target, or the whole route. */
		struct route *r = route_for(c, &why);
		if (r == NULL) {
			conn_reject(c, c->n_tried > 0 ? OUTCOME_FAILED : OUTCOME_NO_ROUTE,
				    c->n_tried > 0 ? "every target failed" : why);
			return;
		}
		struct target *queue_at;
		struct target *t = pick_target(r, c, &queue_at);
		if (t == NULL) {
			if (queue_at != NULL && queue_at->n_waiting < server.cfg.max_pending) {
				queue_at->ops->enqueue(queue_at, c);
				return;
			}
			if (queue_at != NULL)
				conn_reject(c, OUTCOME_REFUSED, "every upstream of the name has max-pending connections waiting");
			else if (c->n_tried == 0)
				conn_reject(c, OUTCOME_NO_ROUTE, "no upstream of the name takes this protocol "
					    "and client address family");
			else
				conn_reject(c, OUTCOME_FAILED, "every target failed");
			return;
		}
		switch (t->ops->deliver(t, c)) {
		case DELIVER_DONE:
			return;
		case DELIVER_BUSY:
			continue;
		case DELIVER_FAILED:
			remember_tried(c, t);
			continue;
		}
	}
	conn_reject(c, OUTCOME_FAILED, "too many failed targets");
}

struct target *
route_pick_at_once(struct conn *c)
{
	const char *why = NULL;
	struct route *r = route_for(c, &why);
	if (r == NULL)
		return NULL;
	/* Relays and refusals are the loop's: its dispatch takes the whole
	 * route, so that no round-robin turn is taken twice. */
	for (size_t i = 0; i < r->n; i++)
		if (tcp_target_is(r->targets[i]))
			return NULL;
	struct target *queue_at;
	return pick_target(r, c, &queue_at);
}

void
route_retry(struct conn *c, struct target *t)
{
	remember_tried(c, t);
	route_dispatch(c);
}
