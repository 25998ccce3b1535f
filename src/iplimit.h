/* iplimit.h - count peek-phase connections and relays per client address. */
#ifndef HANDOFF_IPLIMIT_H
#define HANDOFF_IPLIMIT_H

#include <sys/socket.h>

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

#endif
