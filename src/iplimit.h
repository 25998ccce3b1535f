/* iplimit.h - count peek-phase connections per client address. */
#ifndef HANDOFF_IPLIMIT_H
#define HANDOFF_IPLIMIT_H

#include <sys/socket.h>

struct iplimit_entry;

/* Count one more connection from addr; NULL if that would exceed max
 * (or memory ran out). Release each successful acquire exactly once. */
struct iplimit_entry *iplimit_acquire(const struct sockaddr_storage *addr, unsigned max);
void iplimit_release(struct iplimit_entry *entry);
void iplimit_clear(void);

#endif
