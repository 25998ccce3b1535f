/* nametable.h - map exact and wildcard host names to values; most specific match wins. */
#ifndef HANDOFF_NAMETABLE_H
#define HANDOFF_NAMETABLE_H

#include <stddef.h>

struct nametable;

struct nametable *nametable_new(void);
void nametable_free(struct nametable *t);	/* does not free values */

/* key: a normalised name, "*.suffix" or "*". Replaces an existing value.
 * Returns 0, or -1 on allocation failure. */
int nametable_set(struct nametable *t, const char *key, void *value);
void *nametable_get(const struct nametable *t, const char *key);	/* exact key */
void nametable_del(struct nametable *t, const char *key);

/* Look a client's name up: the exact key, then "*.parent" for each parent
 * from the longest, then "*". Returns the value and sets *matched_key (may be
 * NULL) to the stored key, or returns NULL. O(labels) hash probes. */
void *nametable_match(const struct nametable *t, const char *name, const char **matched_key);

/* Call fn for every entry (order unspecified); fn must not modify t. */
void nametable_foreach(const struct nametable *t, void (*fn)(const char *key, void *value, void *arg), void *arg);
size_t nametable_count(const struct nametable *t);

#endif
