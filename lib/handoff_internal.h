/* handoff_internal.h - libhandoff internals shared with the preload receiver (lib/preload.c); not installed, not exported. */
#ifndef HANDOFF_INTERNAL_H
#define HANDOFF_INTERNAL_H

#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

#include "handoff.h"

/*
 * handoff_listen_protocol() for a receiver that can take clients of one
 * address family only: only_family AF_INET or AF_INET6 writes the names
 * file's "family" line, and the daemon hands it no client of the other
 * family; 0 takes both, as handoff_listen_protocol(). EINVAL for any other
 * value.
 */
int handoff_listen_family(const char *runtime_dir, const char *const *names, size_t n_names,
			  enum handoff_protocol protocol, int only_family, int flags);

/*
 * handoff_listen_family() that also takes the ALPN ids (n_alpn of them, at
 * most 8) that limit the registration to clients offering one of them;
 * n_alpn 0 takes every client. For HANDOFF_PROTO_SSH and
 * HANDOFF_PROTO_SILENT, n_names and n_alpn must be 0. EINVAL otherwise.
 */
int handoff_listen_claim(const char *runtime_dir, const char *const *names, size_t n_names,
			 enum handoff_protocol protocol, int only_family,
			 const char *const *alpn, size_t n_alpn, int flags);

/*
 * Let handoff_accept() serve fd, a receiving socket that handoff_listen()
 * did not return under this number in this process: one moved to another
 * descriptor number with dup3(), or one inherited across exec(). Messages
 * are taken from root and from daemon_uid (the owner of the runtime
 * directory the socket lives in). handoff_close() on an adopted descriptor
 * never removes the socket's files. Returns 0, or -1 with errno (EBADF,
 * ENOMEM).
 */
int handoff_adopt(int fd, uid_t daemon_uid);

/* handoff_accept() on a receiver whose identity (fstat()'s st_dev and
 * st_ino) the caller checked just now, so it is not asked again. */
int handoff_accept_known(int fd, dev_t dev, ino_t ino, struct sockaddr *addr, socklen_t *addrlen,
			 int flags, struct handoff_info *info);

/* Drop what handoff_listen() or handoff_adopt() recorded for fd, without
 * closing it or removing any file. Does nothing for other descriptors. */
void handoff_forget(int fd);

/*
 * Queue conn, the accepting end of a connection this process made to itself,
 * on the receiver fd (registered or adopted in this process), so that the
 * next handoff_accept() on it, here or in any process sharing it since a
 * fork(), returns it like a connection from the daemon (struct handoff_info
 * then names no protocol, name or addresses). peer is the connecting
 * socket's address, which accept() reports even if that socket is already
 * closed with a reset. conn stays open here: the caller closes it. Returns 0, or -1 with errno.
 */
int handoff_send_local(int fd, int conn, const struct sockaddr *peer, socklen_t peer_len);

#endif
