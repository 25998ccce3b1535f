/* upstream_id.h - which upstream ids (file names in RUNDIR/upstreams/) the daemon accepts. */
#ifndef HANDOFF_UPSTREAM_ID_H
#define HANDOFF_UPSTREAM_ID_H

#include <stdbool.h>

/* Longest id accepted, in bytes; libhandoff and handoff run make ids of 63 at most. */
#define UPSTREAM_ID_MAX 63

/* True when id is 1..UPSTREAM_ID_MAX bytes of [A-Za-z0-9._-] and does not
 * start with '.'. Pure: anyone may create files in the upstreams directory,
 * so every other name is never registered, written back or logged raw. */
bool upstream_id_valid(const char *id);

/* upstream_id_valid, and for a refused id one warning at most every
 * UPSTREAM_ID_LOG_INTERVAL_S seconds (counting the ones left unsaid), so
 * that a flood of odd file names cannot flood the log. */
bool upstream_id_accept(const char *id);

#define UPSTREAM_ID_LOG_INTERVAL_S 10

#endif
