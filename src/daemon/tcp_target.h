/* tcp_target.h - the "relay over TCP" kind of target: connect, optional PROXY header, relay; health checks. */
#ifndef HANDOFF_TCP_TARGET_H
#define HANDOFF_TCP_TARGET_H

#include <stdbool.h>
#include <stdint.h>

#include "config.h"

struct conn;
struct target;

/* One TCP address of a route. Starts its active health check if the
 * route asks for one. NULL on allocation failure. */
struct target *tcp_target_new(const struct config_route *route, const struct config_target *ct);
void tcp_target_free(struct target *t);	/* NULL is fine */
/* Stop its active health check: the target left the routes (a reload)
 * and stays only for the connections still using it. */
void tcp_target_stop_checks(struct target *t);

/* True for a TCP target (not a local upstream). */
bool tcp_target_is(const struct target *t);

/* The connect of c failed (timeout): count it against the target and route
 * c to the next target. */
void tcp_target_connect_failed(struct conn *c, const char *why);

/* c is being destroyed while connecting: close the half-open socket. */
void tcp_target_abandon(struct conn *c);

/* Relays refused by max-relays, max-relays-per-ip or the descriptor
 * budget since start (the client got a TLS alert or an HTTP 503). */
uint64_t tcp_relays_refused(void);

#endif
