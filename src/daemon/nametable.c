/* nametable.c - chained string hash table with most-specific wildcard lookup for host names. */
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "nametable.h"

#define NAMETABLE_MIN_BUCKETS 16	/* power of two, so a mask picks the bucket */

struct nametable_entry {
	struct nametable_entry *next;
	uint64_t hash;			/* kept so growing never rehashes keys */
	void *value;
	char key[];
};

struct nametable {
	struct nametable_entry **buckets;
	size_t n_buckets;		/* always a power of two */
	size_t count;
};

/*
 * FNV-1a over prefix then suffix, as if they were one string. Wildcard
 * lookups hash "*." + suffix this way without building the string.
 */
static uint64_t
hash_parts(const char *prefix, const char *suffix)
{
	uint64_t h = 14695981039346656037ull;
	for (const unsigned char *p = (const unsigned char *)prefix; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211ull;
	for (const unsigned char *p = (const unsigned char *)suffix; *p != '\0'; p++)
		h = (h ^ *p) * 1099511628211ull;
	return h;
}

static bool
key_equals(const char *key, const char *prefix, const char *suffix)
{
	size_t plen = strlen(prefix);
	return strncmp(key, prefix, plen) == 0 && strcmp(key + plen, suffix) == 0;
}

/* The entry whose key is prefix + suffix, or NULL. */
static struct nametable_entry *
find_parts(const struct nametable *t, const char *prefix, const char *suffix)
{
	uint64_t h = hash_parts(prefix, suffix);
	struct nametable_entry *e = t->buckets[h & (t->n_buckets - 1)];
	for (; e != NULL; e = e->next)
		if (e->hash == h && key_equals(e->key, prefix, suffix))
			return e;
	return NULL;
}

/* Double the bucket array; on allocation failure keep the old one (the
 * table still works, only with longer chains). */
static void
grow(struct nametable *t)
{
	size_t n = t->n_buckets * 2;
	struct nametable_entry **b = calloc(n, sizeof(*b));
	if (b == NULL)
		return;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct nametable_entry *e = t->buckets[i];
		while (e != NULL) {
			struct nametable_entry *next = e->next;
			size_t slot = e->hash & (n - 1);
			e->next = b[slot];
			b[slot] = e;
			e = next;
		}
	}
	free(t->buckets);
	t->buckets = b;
	t->n_buckets = n;
}

struct nametable *
nametable_new(void)
{
	struct nametable *t = calloc(1, sizeof(*t));
	if (t == NULL)
		return NULL;
	t->buckets = calloc(NAMETABLE_MIN_BUCKETS, sizeof(*t->buckets));
	if (t->buckets == NULL) {
		free(t);
		return NULL;
	}
	t->n_buckets = NAMETABLE_MIN_BUCKETS;
	return t;
}

void
nametable_free(struct nametable *t)
{
	if (t == NULL)
		return;
	for (size_t i = 0; i < t->n_buckets; i++) {
		struct nametable_entry *e = t->buckets[i];
		while (e != NULL) {
			struct nametable_entry *next = e->next;
			free(e);
			e = next;
		}
	}
	free(t->buckets);
	free(t);
}

int
nametable_set(struct nametable *t, const char *key, void *value)
{
	struct nametable_entry *e = find_parts(t, "", key);
	if (e != NULL) {
		e->value = value;
		return 0;
	}
	size_t len = strlen(key);
	e = malloc(sizeof(*e) + len + 1);
	if (e == NULL)
		return -1;
	memcpy(e->key, key, len + 1);
	e->hash = hash_parts("", key);
	e->value = value;
	size_t slot = e->hash & (t->n_buckets - 1);
	e->next = t->buckets[slot];
	t->buckets[slot] = e;
	t->count++;
	/* Keep the average chain under one entry. */
	if (t->count > t->n_buckets)
		grow(t);
	return 0;
}

void *
nametable_get(const struct nametable *t, const char *key)
{
	struct nametable_entry *e = find_parts(t, "", key);
	return e != NULL ? e->value : NULL;
}

void
nametable_del(struct nametable *t, const char *key)
{
	uint64_t h = hash_parts("", key);
	struct nametable_entry **link = &t->buckets[h & (t->n_buckets - 1)];
	for (; *link != NULL; link = &(*link)->next) {
		struct nametable_entry *e = *link;
		if (e->hash == h && strcmp(e->key, key) == 0) {
			*link = e->next;
			free(e);
			t->count--;
			return;
		}
	}
}

void *
nametable_match(const struct nametable *t, const char *name, const char **matched_key)
{
	struct nametable_entry *e = find_parts(t, "", name);
	/* Each '.' starts a parent; the first one is the longest, most specific. */
	for (const char *dot = strchr(name, '.'); e == NULL && dot != NULL;
	     dot = strchr(dot + 1, '.'))
		e = find_parts(t, "*.", dot + 1);
	if (e == NULL)
		e = find_parts(t, "*", "");
	if (matched_key != NULL)
		*matched_key = e != NULL ? e->key : NULL;
	return e != NULL ? e->value : NULL;
}

void
nametable_foreach(const struct nametable *t,
		  void (*fn)(const char *key, void *value, void *arg), void *arg)
{
	for (size_t i = 0; i < t->n_buckets; i++)
		for (const struct nametable_entry *e = t->buckets[i]; e != NULL; e = e->next)
			fn(e->key, e->value, arg);
}

size_t
nametable_count(const struct nametable *t)
{
	return t->count;
}
