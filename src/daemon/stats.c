/* stats.c - per-listener counters, latency histograms and the ring of recent connections, kept by the event loop. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "conn.h"
#include "listener.h"
#include "loop.h"
#include "stats.h"

/* 5 µs to 10 s: a handoff on an idle machine takes tens of microseconds
 * (the low buckets resolve a p99 against a 100 µs target), a peek is usually
 * well under a millisecond on loopback, a slow client or a busy upstream
 * takes seconds (peek-timeout, handoff-timeout). */
const uint64_t stats_bucket_us[STATS_BUCKETS] = {
	5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000, 25000, 50000,
	100000, 250000, 500000, 1000000, 2500000, 5000000, 10000000,
};

static struct stats_recent recent[STATS_RECENT];
static size_t recent_next, recent_count;

struct listener_stats *
stats_listener_new(void)
{
	struct listener_stats *st = calloc(1, sizeof(*st));
	if (st != NULL)
		st->refs = 1;
	return st;
}

struct listener_stats *
stats_listener_hold(struct listener_stats *st)
{
	if (st != NULL)
		st->refs++;
	return st;
}

void
stats_listener_release(struct listener_stats *st)
{
	if (st != NULL && --st->refs == 0)
		free(st);
}

void
stats_free(void)
{
	recent_next = recent_count = 0;
}

/* The counters of c's listener (NULL only if they could not be allocated). */
static struct listener_stats *
row_of(const struct conn *c)
{
	return c->listener != NULL ? c->listener->stats : NULL;
}

static void
observe(struct stats_histogram *h, uint64_t us)
{
	size_t b = 0;
	while (b < STATS_BUCKETS && us > stats_bucket_us[b])
		b++;
	h->counts[b]++;
	h->sum_us += us;
	h->count++;
}

void
stats_accepted(const struct conn *c)
{
	struct listener_stats *row = row_of(c);
	if (row == NULL)
		return;
	row->accepted++;
	row->peeking++;
}

void
stats_peek_ended(const struct conn *c)
{
	struct listener_stats *row = row_of(c);
	if (row == NULL)
		return;
	if (row->peeking > 0)
		row->peeking--;
	observe(&row->peek, c->peek_us ? c->peek_us : loop_now_us() - c->accepted_us);
}

/* src into dst, cut to fit and NUL-terminated. */
static void
copy_text(char *dst, size_t size, const char *src)
{
	size_t len = strnlen(src, size - 1);
	memcpy(dst, src, len);
	dst[len] = '\0';
}

void
stats_conn_ended(const struct conn *c, enum outcome outcome, const char *upstream_id, const char *why)
{
	uint64_t total_us = loop_now_us() - c->accepted_us;
	struct listener_stats *row = row_of(c);
	if (row != NULL) {
		row->outcomes[outcome]++;
		if (outcome == OUTCOME_HANDOFF)
			observe(&row->handoff, total_us);
	}
	/* Raw fields, turned into text only when someone reads the ring:
	 * this runs for every connection, the admin endpoint seldom. */
	struct stats_recent *r = &recent[recent_next];
	r->when_real_us = c->accepted_real_us + total_us;
	r->client = c->peer;
	r->client_len = c->peer_len;
	copy_text(r->listener, sizeof(r->listener),
		  c->listener != NULL && c->listener->cfg != NULL ? c->listener->cfg->text : "");
	r->proto = c->proto;
	copy_text(r->name, sizeof(r->name), c->has_name ? c->peek.name : "");
	copy_text(r->upstream, sizeof(r->upstream), upstream_id ? upstream_id : "");
	r->outcome = outcome;
	r->peek_us = c->peek_us;
	r->total_us = total_us;
	copy_text(r->why, sizeof(r->why), why ? why : "");
	recent_next = (recent_next + 1) % STATS_RECENT;
	if (recent_count < STATS_RECENT)
		recent_count++;
}

size_t
stats_recent(struct stats_recent *out, size_t max)
{
	size_t n = recent_count < max ? recent_count : max;
	/* The n newest, oldest of them first. */
	size_t start = (recent_next + STATS_RECENT - n) % STATS_RECENT;
	for (size_t i = 0; i < n; i++)
		out[i] = recent[(start + i) % STATS_RECENT];
	return n;
}
