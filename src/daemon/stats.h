/* stats.h - per-listener counters, latency histograms and the ring of recent connections, kept by the event loop. */
#ifndef HANDOFF_STATS_H
#define HANDOFF_STATS_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "server.h"

struct conn;

/* Upper bounds of the latency histogram buckets, in microseconds; one more
 * bucket (+Inf) follows. Shared by the peek and the handoff histograms. */
#define STATS_BUCKETS 20
extern const uint64_t stats_bucket_us[STATS_BUCKETS];

struct stats_histogram {
	uint64_t counts[STATS_BUCKETS + 1];	/* per bucket, not cumulative; last is +Inf */
	uint64_t sum_us;
	uint64_t count;
};

/* One listening address's counters. Owned by the listeners that count
 * into it: a reload that keeps the address gives the new generation's
 * listener the same object, so its counters continue; the connections
 * still held by a retired generation keep counting into it; it is freed
 * with the last listener (of any generation) that refers to it. */
struct listener_stats {
	unsigned refs;
	uint64_t accepted;
	unsigned peeking;			/* in the peek phase now */
	uint64_t outcomes[OUTCOME_COUNT];
	struct stats_histogram peek;		/* accept to the parser's answer */
	struct stats_histogram handoff;		/* accept to handed off (local upstreams) */
};

/* The last STATS_RECENT connections, newest last: what their access-log
 * lines said. */
#define STATS_RECENT 64
struct stats_recent {
	uint64_t when_real_us;		/* wall clock when it ended */
	struct sockaddr_storage client;
	socklen_t client_len;
	char listener[80];
	enum client_proto proto;
	char name[256];
	char upstream[128];
	enum outcome outcome;
	uint64_t peek_us;
	uint64_t total_us;		/* accept to the end of our part */
	char why[128];
};

/* A listener's new, zeroed counters (refs 1), NULL when out of memory;
 * hold adds a listener, release drops one (NULL is fine). */
struct listener_stats *stats_listener_new(void);
struct listener_stats *stats_listener_hold(struct listener_stats *st);
void stats_listener_release(struct listener_stats *st);

/* Forget the recent connections (at shutdown). */
void stats_free(void);

/* The hooks conn.c calls. */
void stats_accepted(const struct conn *c);
void stats_peek_ended(const struct conn *c);
void stats_conn_ended(const struct conn *c, enum outcome outcome, const char *upstream_id, const char *why);

/* Recent connections, oldest first; returns how many were copied (<= max). */
size_t stats_recent(struct stats_recent *out, size_t max);

#endif
