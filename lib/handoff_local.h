/* handoff_local.h - what handoff.c uses of handoff_local.c (connections a process makes to itself); not installed. */
#ifndef HANDOFF_LOCAL_H
#define HANDOFF_LOCAL_H

#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "wire.h"

/* Make this process's token, once; called when a receiver is registered,
 * before the server forks its workers, which inherit it. */
void handoff_local_token_make(void);

/* Is the received message (received bytes in *h's buffer) a wire_local
 * message from this process's user or root carrying our token? */
bool handoff_local_message_is_valid(const struct wire_header *h, size_t received, uid_t sender_uid);

/* accept()'s client address for a valid wire_local message in *h. */
void handoff_fill_local_peer(const struct wire_header *h, struct sockaddr *addr, socklen_t *addrlen);

/* The path handoff_listen() published fd's socket under (size at least
 * sizeof sun_path), "" for an adopted receiver. -1 with errno (EINVAL) if
 * fd is no receiver of this process. Defined in handoff.c. */
int handoff_registered_sock_path(int fd, char *out, size_t size);

#endif
