/* relay.h - move bytes both ways between a client and a TCP upstream, zero-copy with splice(). */
#ifndef HANDOFF_RELAY_H
#define HANDOFF_RELAY_H

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
 * Take ownership of two connected, non-blocking stream sockets and relay
 * until both directions have ended (EOF is passed on with shutdown(SHUT_WR),
 * so half-closed connections keep working), an error occurs, or nothing
 * moves for idle_timeout_ms. At most one pipe's worth of bytes (64 KiB) per
 * direction is in flight: a slow reader stops the reading on the other side.
 * Returns NULL (descriptors untouched) if resources ran out.
 */
struct relay *relay_start(int client_fd, int server_fd, unsigned idle_timeout_ms,
			  relay_done_fn done, void *arg);

/* End a relay now (daemon shutdown): closes both sockets, calls done. */
void relay_abort(struct relay *r, const char *why);

/* Free relays that ended during the last loop batch. */
void relays_reap(void);

/* How many relays are running. */
unsigned relays_active(void);

#endif
