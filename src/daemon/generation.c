/* generation.c - reference-counted generations of the configuration, freed when their last connection ends. */
#include <stdlib.h>
#include <string.h>

#include "generation.h"
#include "listener.h"
#include "log.h"
#include "server.h"
#include "stats.h"
#include "tcp_target.h"

static struct config_gen *retired;	/* retired generations not yet freed */
static unsigned last_number;

struct config_gen *
gen_new(void)
{
	struct config_gen *g = calloc(1, sizeof(*g));
	if (g == NULL)
		return NULL;
	g->number = ++last_number;
	g->refs = 1;
	return g;
}

static void
gen_free(struct config_gen *g)
{
	for (size_t i = 0; i < g->n_targets; i++)
		tcp_target_free(g->targets[i]);
	free(g->targets);
	for (size_t i = 0; g->listeners != NULL && i < g->n_listeners; i++)
		stats_listener_release(g->listeners[i].stats);
	free(g->listeners);
	config_free(&g->cfg);
	free(g);
}

void
gen_discard(struct config_gen *g)
{
	if (g == NULL)
		return;
	last_number--;
	gen_free(g);
}

struct config_gen *
gen_hold(struct config_gen *g)
{
	g->refs++;
	return g;
}

void
gen_release(struct config_gen *g)
{
	if (g != NULL && g->refs > 0)
		g->refs--;
}

int
gen_keep_target(struct config_gen *g, struct target *t)
{
	if (g->n_targets == g->cap_targets) {
		size_t cap = g->cap_targets ? g->cap_targets * 2 : 8;
		struct target **grown = realloc(g->targets, cap * sizeof(*grown));
		if (grown == NULL)
			return -1;
		g->targets = grown;
		g->cap_targets = cap;
	}
	tcp_target_stop_checks(t);
	g->targets[g->n_targets++] = t;
	return 0;
}

void
gen_retire(struct config_gen *g, struct config *cfg)
{
	g->cfg = *cfg;
	memset(cfg, 0, sizeof(*cfg));
	g->retired = true;
	g->refs--;	/* no longer current */
	g->next = retired;
	retired = g;
}

void
gens_reap(void)
{
	for (struct config_gen **p = &retired; *p != NULL;) {
		struct config_gen *g = *p;
		if (g->refs > 0) {
			p = &g->next;
			continue;
		}
		*p = g->next;
		log_info("configuration generation %u released (its last connection ended)", g->number);
		gen_free(g);
	}
}

size_t
gens_retired(void)
{
	size_t n = 0;
	for (const struct config_gen *g = retired; g != NULL; g = g->next)
		n++;
	return n;
}

void
gens_free_all(void)
{
	while (retired != NULL) {
		struct config_gen *g = retired;
		retired = g->next;
		gen_free(g);
	}
	if (server.gen != NULL) {
		gen_free(server.gen);
		server.gen = NULL;
	}
}
