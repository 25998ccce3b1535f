/* generation.h - generations of the configuration: what a connection started under lives until it ends. */
#ifndef HANDOFF_GENERATION_H
#define HANDOFF_GENERATION_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"

struct listener;
struct target;

/*
 * One applied configuration. The current one's settings are server.cfg
 * (read live for limits and timeouts); a reload moves them into the old
 * generation's cfg, where the connections accepted under it still find
 * their listener's settings (c->listener->cfg) and the route and TCP
 * targets they were dispatched to. A generation is freed once it is
 * retired and no connection holds it.
 */
struct config_gen {
	unsigned number;		/* 1 at start, +1 per reload */
	unsigned refs;			/* connections holding it, plus 1 while current */
	bool retired;
	struct config cfg;		/* its settings once retired; empty while current */
	struct listener *listeners;	/* its listeners; connections point into this array */
	size_t n_listeners;
	struct target **targets;	/* TCP targets of its routes, kept for their connections */
	size_t n_targets;
	size_t cap_targets;
	struct config_gen *next;	/* in the list of retired generations */
};

/* A new, empty generation numbered after the last one (refs 1: current). */
struct config_gen *gen_new(void);
/* Free a generation that never became current (a failed reload). */
void gen_discard(struct config_gen *g);

struct config_gen *gen_hold(struct config_gen *g);
void gen_release(struct config_gen *g);	/* NULL is fine */

/* Keep a TCP target of g's routes until g is freed (its checks stopped). */
int gen_keep_target(struct config_gen *g, struct target *t);

/* g stops being current: cfg (the settings it was applied with) moves in. */
void gen_retire(struct config_gen *g, struct config *cfg);

/* Free retired generations no connection holds any more (after a batch). */
void gens_reap(void);
/* How many retired generations are still held. */
size_t gens_retired(void);
/* At shutdown, once every connection is gone: free everything left,
 * the current generation included (not server.cfg itself). */
void gens_free_all(void);

#endif
