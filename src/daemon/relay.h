/* relay.h - move bytes both ways between a client and a TCP upstream, zero-copy with splice(). */
#ifndef HANDOFF_RELAY_H
#define HANDOFF_RELAY_H

#include <stdbool.h>
#include <stdint.h>

struct relay;

struct relay_stats {
	uint64_t bytes_up;	/* client -> upstream */
	uint64_t bytes_down;	/* upstream -> client */
	uint64_t duration_us;
};

/* Called once when the relay ends: both descriptors are already closed.
 * why is NULL after a clean close in both directions. */
typedef void (*relay_done_fn)(void *arg, const char *why, const struct relay_stats *stats);

/*
 * The descriptor budget of relays: with RLIMIT_NOFILE nofile, relays
 * together may hold all but a reserve (a quarter of nofile, 32 to 4096), so
 * that listeners, peeking connections and local handoffs never starve
 * because of relays. Call once at start (logs the figures).
 */
void relay_budget_init(unsigned long nofile);

/* Count n descriptors against the budget; false (nothing counted) if that
 * would exceed it. A TCP connect claims 2 (client and target socket). */
bool relay_fds_claim(unsigned n);
void relay_fds_release(unsigned n);

/*
 * Take ownership of two connected, non-blocking stream sockets and relay
 * until both directions have ended (EOF is passed on with shutdown(SHUT_WR),
 * so half-closed connections keep working), an error occurs, or nothing
 * moves for idle_timeout_ms. At most one pipe's worth of bytes (64 KiB) per
 * direction is in flight: a slow reader stops the reading on the other side.
 * A direction borrows a pipe only while bytes are in flight; without one it
 * copies through a buffer. The caller's claim of 2 descriptors passes to
 * the relay, which releases it when it ends.
 * Returns NULL (descriptors and claim untouched) if resources ran out.
 */
struct relay *relay_start(int client_fd, int server_fd, unsigned idle_timeout_ms,
			  relay_done_fn done, void *arg);

/* End a relay now (daemon shutdown): closes both sockets, calls done. */
void relay_abort(struct relay *r, const char *why);

/* Free relays that ended during the last loop batch. */
void relays_reap(void);

/* Close the pooled pipes (daemon shutdown, after every relay ended). */
void relay_pipes_close(void);

/* How many relays are running. */
unsigned relays_active(void);

#endif
