/* iplimit.c - keyed hash of client addresses (IPv6: prefixes) to connection counts: peek phase and relays. */
#include <errno.h>
#include <netinet/in.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>

#include "iplimit.h"
#include "siphash.h"

#define IPLIMIT_BUCKETS 4096	/* entries live only while a client peeks: few */

struct iplimit_entry {
	struct iplimit_entry *next;
	unsigned count;		/* peek phase */
	unsigned relays;	/* relayed or connecting to a TCP target */
	uint8_t key[16];	/* IPv4 stored v4-mapped, so both families share one space */
};

static struct iplimit_entry *buckets[IPLIMIT_BUCKETS];

static uint8_t hash_key_bytes[SIPHASH_KEY_BYTES];
static int keyed;	/* 1 once hash_key_bytes holds random bytes */
static unsigned ipv6_prefix_bits = IPLIMIT_IPV6_PREFIX_DEFAULT;

void
iplimit_configure(unsigned ipv6_prefix)
{
	ipv6_prefix_bits = ipv6_prefix;
}

void
iplimit_key_of(const struct sockaddr_storage *addr, unsigned ipv6_prefix, uint8_t key[16])
{
	memset(key, 0, 16);
	if (addr->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)(const void *)addr;
		key[10] = key[11] = 0xff;
		memcpy(key + 12, &sin->sin_addr, 4);
	} else if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)(const void *)addr;
		memcpy(key, &sin6->sin6_addr, 16);
		/* A v4-mapped address is an IPv4 client: keep all of it. */
		if (IN6_IS_ADDR_V4MAPPED(&sin6->sin6_addr) || ipv6_prefix >= 128)
			return;
		unsigned whole = ipv6_prefix / 8;
		if (ipv6_prefix % 8)
			key[whole++] &= (uint8_t)(0xff00u >> (ipv6_prefix % 8));
		memset(key + whole, 0, 16 - whole);
	}
}

static size_t
hash_key(const uint8_t key[16])
{
	return (size_t)(siphash24(hash_key_bytes, key, 16) % IPLIMIT_BUCKETS);
}

/* The first acquire draws the hash key; entries exist only after it. */
static void
make_hash_key(void)
{
	size_t got = 0;
	while (got < sizeof(hash_key_bytes)) {
		ssize_t n = getrandom(hash_key_bytes + got, sizeof(hash_key_bytes) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			break;	/* before Linux 3.17 only: the table still works, unkeyed */
		}
		got += (size_t)n;
	}
	keyed = 1;
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
	if (!keyed)
		make_hash_key();
	iplimit_key_of(addr, ipv6_prefix_bits, key);
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
