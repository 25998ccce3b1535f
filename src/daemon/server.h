/* server.h - the daemon's process-wide state: configuration, loop, counters. */
#ifndef HANDOFF_SERVER_H
#define HANDOFF_SERVER_H

#include <stdint.h>

#include "config.h"
#include "loop.h"

/* How a connection's life ended; each has an access-log word and a counter. */
enum outcome {
	OUTCOME_HANDOFF = 0,	/* passed to a local upstream */
	OUTCOME_NO_ROUTE,	/* no upstream serves the name */
	OUTCOME_INVALID,	/* the first bytes were not a valid hello/request */
	OUTCOME_TIMEOUT,	/* no name before the peek deadline */
	OUTCOME_REFUSED,	/* a limit or a busy upstream turned it away */
	OUTCOME_CLOSED,		/* the client went away before a decision */
	OUTCOME_RELAYED,	/* relayed over TCP to a target, now finished */
	OUTCOME_FAILED,		/* every target of the name failed (connect errors) */
	OUTCOME_COUNT
};

const char *outcome_name(enum outcome outcome);

struct config_gen;

struct server {
	struct config cfg;		/* the current configuration's settings */
	struct config_gen *gen;		/* ... and its generation (generation.h) */
	struct loop *loop;
	unsigned n_peeking;		/* connections in the peek phase */
	unsigned n_waiting;		/* connections queued at busy upstreams */
	unsigned n_connecting;		/* connections waiting for a TCP connect */
	uint64_t bytes_relayed;		/* both directions, finished relays */
	uint64_t accepted;		/* connections accepted since start */
	uint64_t outcomes[OUTCOME_COUNT];
};

extern struct server server;

#endif
