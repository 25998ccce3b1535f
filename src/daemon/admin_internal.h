/* admin_internal.h - what the admin endpoint's parts share: the snapshot (loop side) and its renderings (admin thread). */
#ifndef HANDOFF_ADMIN_INTERNAL_H
#define HANDOFF_ADMIN_INTERNAL_H

#include <jansson.h>
#include <stdint.h>

/* Bounds of one snapshot, so that building it costs the loop a bounded time
 * however many names, upstreams or refusals there are. */
#define ADMIN_MAX_ROUTES	512
#define ADMIN_MAX_TARGETS	64	/* per route */
#define ADMIN_MAX_UPSTREAMS	512
#define ADMIN_MAX_REFUSALS	100

/* Event-loop thread only: the daemon's state as one JSON object
 * (listeners, routes, upstreams, refusals, connections, totals, daemon).
 * NULL when out of memory. */
json_t *admin_snapshot_build(const char *version, uint64_t started_real_us, uint64_t started_ms);

/* Admin thread: the Prometheus text exposition of a snapshot (with the
 * process figures filled in), malloc'd; NULL when out of memory. */
char *metrics_render(const json_t *state);

/* The embedded dashboard (generated from src/daemon/dashboard.html). */
extern const unsigned char admin_dashboard_html[];
extern const unsigned int admin_dashboard_html_len;

#endif
