/* admin_snapshot.c - the event loop's side of the admin endpoint: the daemon's state copied into one JSON object. */
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin_internal.h"
#include "config.h"
#include "conn.h"
#include "generation.h"
#include "listener.h"
#include "net.h"
#include "registry.h"
#include "relay.h"
#include "route.h"
#include "server.h"
#include "stats.h"
#include "tcp_target.h"
#include "upstream_internal.h"
#include "workers.h"

/* json_object_set_new and json_array_append_new take their value even on
 * failure, so a NULL from an exhausted allocator only loses that field. */
#define SET(obj, key, value) json_object_set_new((obj), (key), (value))

static json_t *
outcome_counts(const uint64_t counts[OUTCOME_COUNT])
{
	json_t *o = json_object();
	for (int i = 0; i < OUTCOME_COUNT; i++)
		SET(o, outcome_name((enum outcome)i), json_integer((json_int_t)counts[i]));
	return o;
}

static json_t *
histogram(const struct stats_histogram *h)
{
	json_t *o = json_object(), *buckets = json_array();
	uint64_t cumulative = 0;
	for (size_t i = 0; i <= STATS_BUCKETS; i++) {
		cumulative += h->counts[i];
		json_t *b = json_object();
		SET(b, "le_us", i < STATS_BUCKETS ? json_integer((json_int_t)stats_bucket_us[i]) : json_null());
		SET(b, "count", json_integer((json_int_t)cumulative));
		json_array_append_new(buckets, b);
	}
	SET(o, "buckets", buckets);
	SET(o, "sum_us", json_integer((json_int_t)h->sum_us));
	SET(o, "count", json_integer((json_int_t)h->count));
	return o;
}

static const char *
protocol_name(int proto)
{
	return proto == PROTO_TLS ? "tls" : proto == PROTO_HTTP ? "http" : proto == PROTO_SSH ? "ssh"
		: proto == PROTO_SILENT ? "silent" : NULL;
}

static const char *
listener_protocol_name(enum listener_proto proto)
{
	return proto == LISTENER_TLS ? "tls" : proto == LISTENER_HTTP ? "http" : proto == LISTENER_DETECT ? "detect" : NULL;
}

static const char *
family_name(int family)
{
	return family == AF_INET ? "ipv4" : family == AF_INET6 ? "ipv6" : NULL;
}

static json_t *
listeners_json(void)
{
	json_t *a = json_array();
	/* The current generation's listeners; a kept address's counters
	 * continue across reloads (listener.h). */
	for (size_t i = 0; server.gen != NULL && i < server.gen->n_listeners; i++) {
		const struct config_listener *l = server.gen->listeners[i].cfg;
		const struct listener_stats *st = server.gen->listeners[i].stats;
		json_t *o = json_object();
		SET(o, "address", json_string(l->text));
		SET(o, "protocol", json_string(listener_protocol_name(l->proto)));
		SET(o, "line", json_integer(l->line));
		SET(o, "default", l->default_name[0] ? json_string(l->default_name) : json_null());
		if (l->proto == LISTENER_DETECT)
			SET(o, "detect_timeout_ms", json_integer(l->detect_timeout_ms));
		if (st != NULL) {
			SET(o, "accepted", json_integer((json_int_t)st->accepted));
			SET(o, "peeking", json_integer(st->peeking));
			SET(o, "outcomes", outcome_counts(st->outcomes));
			SET(o, "peek_time", histogram(&st->peek));
			SET(o, "handoff_time", histogram(&st->handoff));
		}
		json_array_append_new(a, o);
	}
	return a;
}

static const char *
target_state(const struct target *t, uint64_t now_ms)
{
	if (t->down_until_ms > now_ms)
		return "down";
	if (t->busy)
		return "busy";
	return "up";
}

struct routes_ctx {
	json_t *routes;
	size_t skipped;
	uint64_t now_ms;
};

static void
add_route(const struct route *r, void *arg)
{
	struct routes_ctx *ctx = arg;
	if (json_array_size(ctx->routes) >= ADMIN_MAX_ROUTES) {
		ctx->skipped++;
		return;
	}
	json_t *o = json_object(), *targets = json_array();
	uint64_t delivered = 0, failures = 0;
	size_t healthy = 0;
	SET(o, "name", json_string(r->key));
	SET(o, "alpn", r->alpn[0] ? json_string(r->alpn) : json_null());
	SET(o, "configured", json_boolean(r->cfg != NULL));
	if (r->cfg != NULL) {
		SET(o, "line", json_integer(r->cfg->line));
		SET(o, "balance", json_string(r->cfg->balance == BALANCE_LEAST_CONN ? "least-conn" : "round-robin"));
	}
	for (size_t i = 0; i < r->n; i++) {
		const struct target *t = r->targets[i];
		bool up = t->down_until_ms <= ctx->now_ms;
		delivered += t->delivered;
		failures += t->failures;
		healthy += up;
		if (i >= ADMIN_MAX_TARGETS)
			continue;
		json_t *to = json_object();
		bool local = strcmp(t->ops->kind, "tcp") != 0;
		SET(to, "target", json_string(t->label));
		SET(to, "kind", json_string(local ? "local" : "tcp"));
		SET(to, "state", json_string(target_state(t, ctx->now_ms)));
		SET(to, "healthy", json_boolean(up));
		SET(to, "weight", json_integer(t->weight));
		SET(to, "active", json_integer(t->active));
		SET(to, "waiting", json_integer(t->n_waiting));
		SET(to, "delivered", json_integer((json_int_t)t->delivered));
		SET(to, "failures", json_integer((json_int_t)t->failures));
		SET(to, "consecutive_failures", json_integer(t->fails));
		json_array_append_new(targets, to);
	}
	SET(o, "targets", targets);
	SET(o, "targets_total", json_integer((json_int_t)r->n));
	SET(o, "targets_healthy", json_integer((json_int_t)healthy));
	SET(o, "delivered", json_integer((json_int_t)delivered));
	SET(o, "failures", json_integer((json_int_t)failures));
	json_array_append_new(ctx->routes, o);
}

struct upstreams_ctx {
	json_t *upstreams;
	size_t skipped;
	uint64_t now_ms;
};

static void
add_upstream(const struct upstream *up, void *arg)
{
	struct upstreams_ctx *ctx = arg;
	if (up->dead)
		return;
	if (json_array_size(ctx->upstreams) >= ADMIN_MAX_UPSTREAMS) {
		ctx->skipped++;
		return;
	}
	json_t *o = json_object(), *names = json_array();
	SET(o, "id", json_string(up->id));
	/* A datagram socket carries no peer credentials: the daemon cannot
	 * know the process behind it. */
	SET(o, "pid", json_null());
	SET(o, "uid", json_integer((json_int_t)up->uid));
	for (size_t i = 0; i < up->n_names; i++)
		json_array_append_new(names, json_string(up->names[i]));
	SET(o, "names", names);
	const char *proto = protocol_name(up->target.only_protocol), *family = family_name(up->target.only_family);
	SET(o, "protocol", proto ? json_string(proto) : json_null());
	SET(o, "family", family ? json_string(family) : json_null());
	SET(o, "queue_depth", json_integer(up->target.n_waiting));
	SET(o, "delivered", json_integer((json_int_t)up->target.delivered));
	SET(o, "failures", json_integer((json_int_t)up->target.failures));
	SET(o, "state", json_string(target_state(&up->target, ctx->now_ms)));
	SET(o, "age_seconds", json_integer((json_int_t)((ctx->now_ms - up->registered_ms) / 1000)));
	json_array_append_new(ctx->upstreams, o);
}

struct refusals_ctx {
	json_t *refusals;
	size_t skipped;
	uint64_t now_ms;
};

static void
add_refusal(const char *id, uid_t uid, const char *why, uint64_t when_ms, void *arg)
{
	struct refusals_ctx *ctx = arg;
	if (json_array_size(ctx->refusals) >= ADMIN_MAX_REFUSALS) {
		ctx->skipped++;
		return;
	}
	json_t *o = json_object();
	SET(o, "id", json_string(id));
	SET(o, "uid", json_integer((json_int_t)uid));
	SET(o, "reason", json_string(why));
	SET(o, "age_seconds", json_integer((json_int_t)((ctx->now_ms - when_ms) / 1000)));
	json_array_append_new(ctx->refusals, o);
}

static json_t *
connections_json(void)
{
	static struct stats_recent recent[STATS_RECENT];	/* loop thread only */
	size_t n = stats_recent(recent, STATS_RECENT);
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		const struct stats_recent *r = &recent[i];
		json_t *o = json_object();
		char client[64];
		net_addr_text(&r->client, client, sizeof(client));
		SET(o, "time", json_real((double)r->when_real_us / 1e6));
		SET(o, "client", json_string(client));
		SET(o, "listener", json_string(r->listener));
		SET(o, "protocol", json_string(client_proto_name(r->proto)));
		SET(o, "name", r->name[0] ? json_string(r->name) : json_null());
		SET(o, "upstream", r->upstream[0] ? json_string(r->upstream) : json_null());
		SET(o, "outcome", json_string(outcome_name(r->outcome)));
		SET(o, "peek_us", json_integer((json_int_t)r->peek_us));
		SET(o, "duration_us", json_integer((json_int_t)r->total_us));
		SET(o, "why", r->why[0] ? json_string(r->why) : json_null());
		json_array_append_new(a, o);
	}
	return a;
}

/* The accepting threads (workers.h), one element per slot used since start. */
static json_t *
workers_json(void)
{
	struct worker_counts counts[WORKERS_MAX];
	size_t n = workers_counts(counts, WORKERS_MAX);
	json_t *a = json_array();
	for (size_t i = 0; i < n; i++) {
		json_t *o = json_object();
		SET(o, "worker", json_integer((json_int_t)i + 1));
		SET(o, "running", json_boolean(counts[i].running));
		SET(o, "handed_off", json_integer((json_int_t)counts[i].handed_off));
		SET(o, "passed", json_integer((json_int_t)counts[i].passed));
		json_array_append_new(a, o);
	}
	return a;
}

json_t *
admin_snapshot_build(const char *version, uint64_t started_real_us, uint64_t started_ms)
{
	uint64_t now_ms = loop_now_ms();
	json_t *state = json_object();
	if (state == NULL)
		return NULL;

	json_t *daemon = json_object();
	SET(daemon, "version", json_string(version));
	SET(daemon, "pid", json_integer(getpid()));
	SET(daemon, "config", json_string(server.cfg.source));
	SET(daemon, "workers", json_integer(server.cfg.workers));
	SET(daemon, "generation", json_integer(server.gen != NULL ? server.gen->number : 0));
	SET(daemon, "runtime_dir", json_string(server.cfg.runtime_dir));
	SET(daemon, "start_time", json_real((double)started_real_us / 1e6));
	SET(daemon, "uptime_seconds", json_real((double)(now_ms - started_ms) / 1e3));
	SET(state, "daemon", daemon);

	json_t *totals = json_object();
	SET(totals, "accepted", json_integer((json_int_t)server.accepted));
	SET(totals, "outcomes", outcome_counts(server.outcomes));
	SET(totals, "peeking", json_integer(server.n_peeking));
	SET(totals, "waiting", json_integer(server.n_waiting));
	SET(totals, "connecting", json_integer(server.n_connecting));
	SET(totals, "relaying", json_integer(relays_active()));
	SET(totals, "bytes_relayed", json_integer((json_int_t)server.bytes_relayed));
	SET(totals, "relays_refused", json_integer((json_int_t)tcp_relays_refused()));
	SET(state, "totals", totals);

	SET(state, "listeners", listeners_json());
	SET(state, "workers", workers_json());

	struct routes_ctx rc = { .routes = json_array(), .now_ms = now_ms };
	routes_foreach(add_route, &rc);
	SET(state, "routes", rc.routes);
	SET(state, "routes_omitted", json_integer((json_int_t)rc.skipped));

	struct upstreams_ctx uc = { .upstreams = json_array(), .now_ms = now_ms };
	upstreams_foreach(add_upstream, &uc);
	SET(state, "upstreams", uc.upstreams);
	SET(state, "upstreams_omitted", json_integer((json_int_t)uc.skipped));

	struct refusals_ctx fc = { .refusals = json_array(), .now_ms = now_ms };
	refusals_foreach(add_refusal, &fc);
	SET(state, "refusals", fc.refusals);
	SET(state, "refusals_omitted", json_integer((json_int_t)fc.skipped));

	SET(state, "connections", connections_json());
	return state;
}
