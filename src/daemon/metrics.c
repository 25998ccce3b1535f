/* metrics.c - the admin snapshot in the Prometheus text exposition format (version 0.0.4), for /metrics. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "admin_internal.h"

/* A label value: backslash, double quote and newline escaped as the format
 * requires; other bytes pass (the daemon's strings are already printable). */
static void
put_label(FILE *out, const char *name, const char *value)
{
	fprintf(out, "%s=\"", name);
	for (const char *c = value ? value : ""; *c; c++) {
		if (*c == '\\' || *c == '"')
			fprintf(out, "\\%c", *c);
		else if (*c == '\n')
			fputs("\\n", out);
		else
			fputc(*c, out);
	}
	fputc('"', out);
}

static void
family(FILE *out, const char *name, const char *type, const char *help)
{
	fprintf(out, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static long long
int_of(const json_t *o, const char *key)
{
	return json_integer_value(json_object_get(o, key));
}

static const char *
str_of(const json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s ? s : "";
}

/* A family of one series without labels. */
static void
scalar(FILE *out, const char *name, const char *type, const char *help, long long value)
{
	family(out, name, type, help);
	fprintf(out, "%s %lld\n", name, value);
}

/* A family with one series per element of array: its labels, then its
 * integer member key. */
static void
series_of(FILE *out, const json_t *array, const char *name, const char *type, const char *help,
	  void (*labels)(FILE *out, const json_t *element), const char *key)
{
	size_t i;
	const json_t *e;
	family(out, name, type, help);
	json_array_foreach(array, i, e) {
		fprintf(out, "%s{", name);
		labels(out, e);
		fprintf(out, "} %lld\n", int_of(e, key));
	}
}

static void
listener_labels(FILE *out, const json_t *l)
{
	put_label(out, "listener", str_of(l, "address"));
	fputc(',', out);
	put_label(out, "protocol", str_of(l, "protocol"));
}

static void
upstream_labels(FILE *out, const json_t *u)
{
	put_label(out, "upstream", str_of(u, "id"));
}

static void
histogram(FILE *out, const json_t *listeners, const char *member, const char *name, const char *help)
{
	family(out, name, "histogram", help);
	size_t i;
	const json_t *l;
	json_array_foreach(listeners, i, l) {
		const json_t *h = json_object_get(l, member), *b;
		size_t k;
		json_array_foreach(json_object_get(h, "buckets"), k, b) {
			const json_t *le = json_object_get(b, "le_us");
			fprintf(out, "%s_bucket{", name);
			listener_labels(out, l);
			if (json_is_integer(le))
				fprintf(out, ",le=\"%g\"} %lld\n", (double)json_integer_value(le) / 1e6, int_of(b, "count"));
			else
				fprintf(out, ",le=\"+Inf\"} %lld\n", int_of(b, "count"));
		}
		fprintf(out, "%s_sum{", name);
		listener_labels(out, l);
		fprintf(out, "} %.6f\n%s_count{", (double)int_of(h, "sum_us") / 1e6, name);
		listener_labels(out, l);
		fprintf(out, "} %lld\n", int_of(h, "count"));
	}
}

static void
listener_metrics(FILE *out, const json_t *listeners)
{
	size_t i;
	const json_t *l;
	series_of(out, listeners, "handoff_connections_accepted_total", "counter", "Connections accepted, per listener.",
		  listener_labels, "accepted");
	family(out, "handoff_connections_total", "counter",
	       "Connections ended, per listener and outcome (handoff, relayed, no-route, invalid, timeout, "
	       "refused, closed, failed).");
	json_array_foreach(listeners, i, l) {
		const char *outcome;
		const json_t *count;
		json_object_foreach((json_t *)(uintptr_t)json_object_get(l, "outcomes"), outcome, count) {
			fputs("handoff_connections_total{", out);
			listener_labels(out, l);
			fputc(',', out);
			put_label(out, "outcome", outcome);
			fprintf(out, "} %lld\n", json_integer_value(count));
		}
	}
	series_of(out, listeners, "handoff_peeking_connections", "gauge",
		  "Connections in the peek phase now (name not known yet), per listener.", listener_labels, "peeking");
	histogram(out, listeners, "peek_time", "handoff_peek_duration_seconds",
		  "Time from accept to the parser's answer (name found, no name, invalid) or the end of the peek phase.");
	histogram(out, listeners, "handoff_time", "handoff_handoff_duration_seconds",
		  "Time from accept to the descriptor handed to a local upstream.");
}

/* A route is its name and, for an ALPN route, its id: the same name may
 * have a route per ALPN id besides the plain one. */
static void
route_labels(FILE *out, const json_t *route)
{
	put_label(out, "route", str_of(route, "name"));
	if (json_is_string(json_object_get(route, "alpn"))) {
		fputc(',', out);
		put_label(out, "alpn", str_of(route, "alpn"));
	}
}

static void
target_labels(FILE *out, const json_t *route, const json_t *t)
{
	route_labels(out, route);
	fputc(',', out);
	put_label(out, "target", str_of(t, "target"));
	fputc(',', out);
	put_label(out, "kind", str_of(t, "kind"));
}

static void
target_family(FILE *out, const json_t *routes, const char *name, const char *type, const char *help,
	      const char *key)
{
	family(out, name, type, help);
	size_t i, k;
	const json_t *r, *t;
	json_array_foreach(routes, i, r) {
		json_array_foreach(json_object_get(r, "targets"), k, t) {
			fprintf(out, "%s{", name);
			target_labels(out, r, t);
			const json_t *v = json_object_get(t, key);
			fprintf(out, "} %lld\n", json_is_boolean(v) ? (long long)json_is_true(v) : json_integer_value(v));
		}
	}
}

static void
route_metrics(FILE *out, const json_t *routes)
{
	series_of(out, routes, "handoff_route_targets", "gauge",
		  "Targets of a route (its TCP targets and local upstreams).", route_labels, "targets_total");
	series_of(out, routes, "handoff_route_targets_healthy", "gauge",
		  "Targets of a route not taken out by health checks; 0 means the route's clients are refused.",
		  route_labels, "targets_healthy");
	target_family(out, routes, "handoff_target_delivered_total", "counter",
		      "Connections handed off to (local) or relayed to (tcp) a target.", "delivered");
	target_family(out, routes, "handoff_target_failures_total", "counter",
		      "Failed deliveries to a target (connect errors, timeouts, an upstream gone).", "failures");
	target_family(out, routes, "handoff_target_healthy", "gauge",
		      "1 if the target is in rotation, 0 while health checks keep it out.", "healthy");
	target_family(out, routes, "handoff_target_active_connections", "gauge",
		      "Connections connecting or relayed through a TCP target now.", "active");
	target_family(out, routes, "handoff_target_waiting_connections", "gauge",
		      "Connections queued at a busy local upstream now.", "waiting");
}

static void
upstream_metrics(FILE *out, const json_t *state)
{
	const json_t *upstreams = json_object_get(state, "upstreams");
	scalar(out, "handoff_upstreams", "gauge", "Local upstreams registered now.",
	       (long long)json_array_size(upstreams) + int_of(state, "upstreams_omitted"));
	series_of(out, upstreams, "handoff_upstream_queue_depth", "gauge",
		  "Connections waiting for room in a local upstream's socket queue.", upstream_labels, "queue_depth");
	scalar(out, "handoff_upstream_claims_refused", "gauge",
	       "Upstream registrations refused and still present (see /api/refusals for why).",
	       (long long)json_array_size(json_object_get(state, "refusals")) + int_of(state, "refusals_omitted"));
}

static void
daemon_metrics(FILE *out, const json_t *state)
{
	const json_t *d = json_object_get(state, "daemon"), *totals = json_object_get(state, "totals");
	family(out, "handoff_build_info", "gauge", "Always 1; the version is a label.");
	fputs("handoff_build_info{", out);
	put_label(out, "version", str_of(d, "version"));
	fputs("} 1\n", out);
	family(out, "handoff_start_time_seconds", "gauge", "When the daemon started, in seconds since the epoch.");
	fprintf(out, "handoff_start_time_seconds %.3f\n", json_real_value(json_object_get(d, "start_time")));
	family(out, "handoff_uptime_seconds", "gauge", "Seconds since the daemon started.");
	fprintf(out, "handoff_uptime_seconds %.3f\n", json_real_value(json_object_get(d, "uptime_seconds")));
	scalar(out, "handoff_open_fds", "gauge", "Descriptors the daemon holds open.", int_of(d, "open_fds"));
	scalar(out, "handoff_resident_memory_bytes", "gauge", "Resident memory of the daemon.", int_of(d, "rss_bytes"));
	family(out, "handoff_cpu_seconds_total", "counter",
	       "CPU time of the daemon, all its threads, user and system (a rate near 1, or near workers N, "
	       "means the daemon is what limits).");
	fprintf(out, "handoff_cpu_seconds_total %.3f\n", json_real_value(json_object_get(d, "cpu_seconds")));
	scalar(out, "handoff_waiting_connections", "gauge", "Connections queued at busy local upstreams now.",
	       int_of(totals, "waiting"));
	scalar(out, "handoff_connecting_connections", "gauge", "Connections connecting to TCP targets now.",
	       int_of(totals, "connecting"));
	scalar(out, "handoff_relays_active", "gauge", "Connections relayed to TCP targets now.",
	       int_of(totals, "relaying"));
	scalar(out, "handoff_relayed_bytes_total", "counter", "Bytes relayed both ways by finished relays.",
	       int_of(totals, "bytes_relayed"));
	scalar(out, "handoff_relays_refused_total", "counter",
	       "Relays refused by max-relays, max-relays-per-ip or the descriptor budget.", int_of(totals, "relays_refused"));
}

static void
worker_labels(FILE *out, const json_t *w)
{
	char number[24];
	snprintf(number, sizeof(number), "%lld", int_of(w, "worker"));
	put_label(out, "worker", number);
}

static void
worker_metrics(FILE *out, const json_t *workers)
{
	series_of(out, workers, "handoff_worker_handed_off_total", "counter",
		  "Connections an accepting thread handed off at its first look.", worker_labels, "handed_off");
	series_of(out, workers, "handoff_worker_passed_total", "counter",
		  "Connections an accepting thread passed to the event loop (bytes still to come, a refusal, "
		  "a relay, a busy upstream).", worker_labels, "passed");
}

char *
metrics_render(const json_t *state)
{
	char *text = NULL;
	size_t len = 0;
	FILE *out = open_memstream(&text, &len);
	if (out == NULL)
		return NULL;
	daemon_metrics(out, state);
	listener_metrics(out, json_object_get(state, "listeners"));
	route_metrics(out, json_object_get(state, "routes"));
	upstream_metrics(out, state);
	worker_metrics(out, json_object_get(state, "workers"));
	if (fclose(out) != 0) {
		free(text);
		return NULL;
	}
	return text;
}
