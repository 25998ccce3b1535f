/* net.h - small socket helpers: address text, wall clock, descriptor headroom. */
#ifndef HANDOFF_NET_H
#define HANDOFF_NET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

/* "192.0.2.1:443" or "[2001:db8::1]:443" into buf (always NUL-terminated). */
void net_addr_text(const struct sockaddr_storage *addr, char *buf, size_t bufsize);

/* Whether addr is 0.0.0.0 or :: (a listener on every address). */
bool net_addr_is_any(const struct sockaddr_storage *addr);

/* CLOCK_REALTIME in microseconds. */
uint64_t net_realtime_us(void);

/* Raise the soft RLIMIT_NOFILE to the hard limit; returns the new soft limit. */
unsigned long net_raise_nofile(void);

#endif
