/* handoff.h - receive connections handed off by the handoff daemon (libhandoff). */
#ifndef HANDOFF_H
#define HANDOFF_H

#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Flags for handoff_listen() and handoff_accept(), same values as accept4(). */
#define HANDOFF_NONBLOCK	SOCK_NONBLOCK
#define HANDOFF_CLOEXEC		SOCK_CLOEXEC

enum handoff_protocol {
	HANDOFF_PROTO_TLS = 1,
	HANDOFF_PROTO_HTTP = 2,
	HANDOFF_PROTO_SSH = 3,		/* SSH clients of the daemon's detect listeners */
	HANDOFF_PROTO_SILENT = 4,	/* detect listeners' clients that wait for the server */
};

/* What the daemon knew about a connection when it handed it off. */
struct handoff_info {
	enum handoff_protocol protocol;
	char name[256];			/* requested name, "" if the client sent none */
	uint8_t alpn[256];		/* TLS ALPN list in wire form (len-prefixed strings) */
	size_t alpn_len;
	struct sockaddr_storage local;	/* listener address the client connected to */
	socklen_t local_len;
	struct sockaddr_storage peer;	/* client address (differs from getpeername()
					 * only when the daemon accepted a PROXY header) */
	socklen_t peer_len;
	uint64_t accepted_us;		/* wall clock, microseconds, when the daemon accepted */
};

/*
 * Open a receiving socket for the given names ("a.example", "*.apps.example",
 * or "*" for every name nobody serves more specifically) in the daemon's
 * runtime directory: runtime_dir if not NULL, else
 * $HANDOFF_RUNTIME_DIR, else /run/handoff for root and
 * $XDG_RUNTIME_DIR/handoff (or /tmp/handoff-UID) for other users.
 * flags: HANDOFF_NONBLOCK, HANDOFF_CLOEXEC for the returned descriptor.
 * The descriptor becomes readable when a connection is waiting; poll, select
 * or epoll it like a listening socket. The daemon routes to it within a
 * second, if the configuration grants every name to the calling user.
 * Names are lowercased; a trailing dot is dropped.
 * Returns the descriptor, or -1 with errno set: EINVAL for an invalid name,
 * no names or unknown flags; ENOENT if the runtime directory or its
 * "upstreams" subdirectory is missing (is the daemon running? is
 * HANDOFF_RUNTIME_DIR the same for both?); ENAMETOOLONG if the socket path
 * would not fit a Unix socket address.
 */
int handoff_listen(const char *runtime_dir, const char *const *names, size_t n_names, int flags);

/*
 * handoff_listen() for one protocol only: with HANDOFF_PROTO_TLS the daemon
 * hands this socket only connections from its TLS listeners, with
 * HANDOFF_PROTO_HTTP only those from its plain-HTTP listeners; 0 takes
 * both, exactly as handoff_listen(). A server that listens for TLS and for
 * plain HTTP under the same names registers each listener so.
 * HANDOFF_PROTO_SSH and HANDOFF_PROTO_SILENT take the clients of that kind
 * from the daemon's detect listeners; they carry no name, so names must be
 * NULL and n_names 0, and the configuration must have a "grant protocol
 * ssh" (or silent) line for the caller. Errors as handoff_listen(), and
 * EINVAL for any other protocol value.
 */
int handoff_listen_protocol(const char *runtime_dir, const char *const *names, size_t n_names,
			    enum handoff_protocol protocol, int flags);

/*
 * handoff_listen() for TLS clients of names that offer one of the ALPN
 * protocol ids alpn[0..n_alpn-1] (1 to 8 ids, e.g. "acme-tls/1"): such a
 * client comes here rather than to the names' other upstreams. Errors as
 * handoff_listen(), and EINVAL for a bad id or count.
 */
int handoff_listen_alpn(const char *runtime_dir, const char *const *names, size_t n_names,
			const char *const *alpn, size_t n_alpn, int flags);

/*
 * Take one waiting connection, like accept4(): returns a connected TCP
 * socket whose O_NONBLOCK and FD_CLOEXEC are set exactly as flags say;
 * addr/addrlen receive the client address from getpeername() (truncated as
 * accept() would); info, if not NULL, receives the daemon's header.
 * Returns -1 with errno EAGAIN if nothing waits and fd is non-blocking,
 * EMFILE without consuming the connection if fewer than two descriptors
 * are free.
 * Messages not from the daemon's user (root or the owner of the runtime
 * directory) and malformed messages are discarded, their descriptors closed;
 * a non-blocking call gives up with EAGAIN after 64 of them. EINTR, EBADF
 * as accept(); EINVAL if fd did not come from handoff_listen().
 */
int handoff_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
		   struct handoff_info *info);

/* Withdraw the names (remove the socket's files) and close fd. Only the
 * process that called handoff_listen() removes the files; forked children
 * closing their copy do not. Returns 0 or -1 with errno. */
int handoff_close(int fd);

/* The runtime directory handoff_listen(NULL, ...) would use, into buf.
 * Returns 0, or -1 with errno ENAMETOOLONG if it does not fit. */
int handoff_runtime_dir(char *buf, size_t bufsize);

#ifdef __cplusplus
}
#endif

#endif
