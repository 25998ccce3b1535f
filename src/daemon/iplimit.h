/* iplimit.h - count peek-phase connections and relays per client address. */
#ifndef HANDOFF_IPLIMIT_H
#define HANDOFF_IPLIMIT_H

#include <stdint.h>
#include <sys/socket.h>

/* The default IPv6 prefix length counted as one client: one host commonly
 * has a whole /64, so counting /128s would let it escape max-per-ip. */
#define IPLIMIT_IPV6_PREFIX_DEFAULT 64

struct iplimit_entry;

/* Count one more connection from addr; NULL if that would exceed max
 * (or memory ran out). Release each successful acquire exactly once. */
struct iplimit_entry *iplimit_acquire(const struct sockaddr_storage *addr, unsigned max);
void iplimit_release(struct iplimit_entry *entry);

/* A second count on the same entries, for relays (max-relays-per-ip). */
enum iplimit_kind {
	IPLIMIT_PEEKING,	/* what iplimit_acquire counts */
	IPLIMIT_RELAYS,
};
struct iplimit_entry *iplimit_acquire_kind(enum iplimit_kind kind, const struct sockaddr_storage *addr,
					   unsigned max);
void iplimit_release_kind(enum iplimit_kind kind, struct iplimit_entry *entry);
void iplimit_clear(void);

/* IPv6 addresses count per their first ipv6_prefix bits (1..128) from now
 * on; IPv4 ones per address. Call with no entries held (at start). The
 * table's hash is SipHash-2-4 keyed with random bytes from getrandom() at
 * the first acquire, so clients cannot aim at one bucket. */
void iplimit_configure(unsigned ipv6_prefix);

/* The 16-byte table key of addr: IPv4 v4-mapped, IPv6 with the bits past
 * ipv6_prefix cleared. Pure; for the table and its tests. */
void iplimit_key_of(const struct sockaddr_storage *addr, unsigned ipv6_prefix, uint8_t key[16]);

#endif
