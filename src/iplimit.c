/* iplimit.c - hash of client addresses to connection counts: peek phase and relays. */
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "iplimit.h"

#define IPLIMIT_BUCKETS 4096	/* entries live only while a client peeks: few */

struct iplimit_entry {
	struct iplimit_entry *next;
	unsigned count;		/* peek phase */
	unsigned relays;	/* relayed or connecting to a TCP target */
	uint8_t key[16];	/* IPv4 stored v4-mapped, so both families share one space */
};

static struct iplimit_entry *buckets[IPLIMIT_BUCKETS];

static void
make_key(const struct sockaddr_storage *addr, uint8_t key[16])
{
	memset(key, 0, 16);
	if (addr->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)addr;
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &sin->sin_addr, 4);
	} else if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)addr;
		memcpy(key, &sin6->sin6_addr, 16);
	}
}

static size_t
hash_key(const uint8_t key[16])
{
	uint32_t h = 2166136261u;	/* FNV-1a */
	for (int i = 0; i < 16; i++)
		h = (h ^ key[i]) * 16777619u;
	return h % IPLIMIT_BUCKETS;
}

/* Both counts share one entry per address, so relays are keyed exactly
 * like max-per-ip. */
static unsigned *
count_of(struct iplimit_entry *e, enum iplimit_kind kind)
{
	return kind == IPLIMIT_RELAYS ? &e->relays : &e->count;
}

struct iplimit_entry *
iplimit_acquire(const struct sockaddr_storage *addr, unsigned max)
{
	return iplimit_acquire_kind(IPLIMIT_PEEKING, addr, max);
}

struct iplimit_entry *
iplimit_acquire_kind(enum iplimit_kind kind, const struct sockaddr_storage *addr, unsigned max)
{
	uint8_t key[16];
	make_key(addr, key);
	size_t b = hash_key(key);
	struct iplimit_entry *e;
	for (e = buckets[b]; e != NULL; e = e->next)
		if (memcmp(e->key, key, 16) == 0)
			break;
	if (e == NULL) {
		e = calloc(1, sizeof(*e));
		if (e == NULL)
			return NULL;
		memcpy(e->key, key, 16);
		e->next = buckets[b];
		buckets[b] = e;
	}
	if (*count_of(e, kind) >= max)
		return NULL;	/* max >= 1, so a fresh entry never stays empty */
	(*count_of(e, kind))++;
	return e;
}

void
iplimit_release(struct iplimit_entry *entry)
{
	iplimit_release_kind(IPLIMIT_PEEKING, entry);
}

void
iplimit_release_kind(enum iplimit_kind kind, struct iplimit_entry *entry)
{
	if (entry == NULL)
		return;
	--*count_of(entry, kind);
	if (entry->count > 0 || entry->relays > 0)
		return;
	struct iplimit_entry **pp = &buckets[hash_key(entry->key)];
	while (*pp != entry)
		pp = &(*pp)->next;
	*pp = entry->next;
	free(entry);
}

void
iplimit_clear(void)
{
	for (size_t b = 0; b < IPLIMIT_BUCKETS; b++) {
		while (buckets[b] != NULL) {
			struct iplimit_entry *e = buckets[b];
			buckets[b] = e->next;
			free(e);
		}
	}
}
