/* preload_io.c - data calls (read, recv, write, send and their kin) on a receiver answer as on a TCP listener, without consuming a handed-off connection. */
/*
 * A TCP listener carries no data: recv(), recvfrom(), recvmsg(), read() and
 * readv() on it fail with ENOTCONN, and write(), writev(), send(), sendto()
 * and sendmsg() fail with EPIPE and raise SIGPIPE in the calling thread
 * (not with MSG_NOSIGNAL). A read of zero bytes with read()/readv() returns
 * 0, as the kernel checks the length before the socket. The receiver under
 * a swapped listener, however, is a datagram socket full of handoff
 * messages: a recv() on it would take a client's connection away (Python's
 * ssl.wrap_socket() of a listening socket calls recv(1) on it to check it
 * is not connected). So every such call on a known listener is answered
 * here, and never reaches the receiver.
 *
 * Calls on any other descriptor cost one atomic load (the table's hint) on
 * top of the C library's own. A receiver this process has not recognised
 * yet (inherited across exec(), duplicated, received over a Unix socket)
 * is not caught here: telling it apart from any other descriptor would
 * take a system call on every read and write of every descriptor. Servers
 * ask such a descriptor something that recognises it (getsockname(),
 * getsockopt(), listen(), accept(), setsockopt(); Python's ssl checks
 * SO_TYPE first) before they would read from it.
 */
#include <dlfcn.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/uio.h>
#include <unistd.h>

#include "preload.h"

/* The checked variants that _FORTIFY_SOURCE builds call instead; glibc
 * declares them only for its own inline wrappers. */
ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen);
ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags);
ssize_t __recvfrom_chk(int fd, void *restrict buf, size_t len, size_t buflen, int flags,
		       __SOCKADDR_ARG addr_arg, socklen_t *restrict addrlen);

static ssize_t (*real_read)(int, void *, size_t);
static ssize_t (*real_readv)(int, const struct iovec *, int);
static ssize_t (*real_recv)(int, void *, size_t, int);
static ssize_t (*real_recvfrom)(int, void *, size_t, int, struct sockaddr *, socklen_t *);
static ssize_t (*real_recvmsg)(int, struct msghdr *, int);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static ssize_t (*real_send)(int, const void *, size_t, int);
static ssize_t (*real_sendto)(int, const void *, size_t, int, const struct sockaddr *, socklen_t);
static ssize_t (*real_sendmsg)(int, const struct msghdr *, int);
static ssize_t (*real_read_chk)(int, void *, size_t, size_t);
static ssize_t (*real_recv_chk)(int, void *, size_t, size_t, int);
static ssize_t (*real_recvfrom_chk)(int, void *, size_t, size_t, int, struct sockaddr *,
				    socklen_t *);
static pthread_once_t io_symbols_once = PTHREAD_ONCE_INIT;

/* A missing _chk variant (another C library) is only never called. */
static void resolve_io_symbols(void)
{
#define RESOLVE(var, symbol) do {					\
		union { void *object; __typeof__(var) function; } u;	\
		u.object = dlsym(RTLD_NEXT, symbol);			\
		var = u.function;					\
	} while (0)
	RESOLVE(real_read, "read");
	RESOLVE(real_readv, "readv");
	RESOLVE(real_recv, "recv");
	RESOLVE(real_recvfrom, "recvfrom");
	RESOLVE(real_recvmsg, "recvmsg");
	RESOLVE(real_write, "write");
	RESOLVE(real_writev, "writev");
	RESOLVE(real_send, "send");
	RESOLVE(real_sendto, "sendto");
	RESOLVE(real_sendmsg, "sendmsg");
	RESOLVE(real_read_chk, "__read_chk");
	RESOLVE(real_recv_chk, "__recv_chk");
	RESOLVE(real_recvfrom_chk, "__recvfrom_chk");
#undef RESOLVE
	if (!real_read || !real_readv || !real_recv || !real_recvfrom || !real_recvmsg ||
	    !real_write || !real_writev || !real_send || !real_sendto || !real_sendmsg) {
		fprintf(stderr, "handoff-preload: cannot find the C library's I/O functions\n");
		abort();
	}
}

static void ensure_io_symbols(void)
{
	pthread_once(&io_symbols_once, resolve_io_symbols);
}

/* Is fd a listener? The hint first: one atomic load for every other fd. */
static bool is_listener(int fd)
{
	struct listener_shadow sh;

	return known_listener(fd, &sh);
}

/* What TCP answers to a read on a listener. */
static ssize_t not_connected(void)
{
	errno = ENOTCONN;
	return -1;
}

/* What TCP answers to a write on a listener: EPIPE, and SIGPIPE to the
 * calling thread unless the caller asked for none. */
static ssize_t broken_pipe(int flags)
{
	if (!(flags & MSG_NOSIGNAL))
		raise(SIGPIPE);
	errno = EPIPE;
	return -1;
}

/* read() and readv() of nothing return 0 before the socket is asked. */
static bool reads_nothing(const struct iovec *iov, int iovcnt)
{
	for (int i = 0; i < iovcnt; i++)
		if (iov[i].iov_len)
			return false;
	return iovcnt >= 0;
}

PRELOAD_API ssize_t read(int fd, void *buf, size_t len)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_read(fd, buf, len);
	return len ? not_connected() : 0;
}

PRELOAD_API ssize_t __read_chk(int fd, void *buf, size_t len, size_t buflen)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_read_chk ? real_read_chk(fd, buf, len, buflen) : real_read(fd, buf, len);
	if (len > buflen)
		abort();	/* the C library's answer to this overflow */
	return len ? not_connected() : 0;
}

PRELOAD_API ssize_t readv(int fd, const struct iovec *iov, int iovcnt)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_readv(fd, iov, iovcnt);
	if (iovcnt < 0 || iovcnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	return reads_nothing(iov, iovcnt) ? 0 : not_connected();
}

PRELOAD_API ssize_t recv(int fd, void *buf, size_t len, int flags)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_recv(fd, buf, len, flags);
	return not_connected();
}

PRELOAD_API ssize_t __recv_chk(int fd, void *buf, size_t len, size_t buflen, int flags)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_recv_chk ? real_recv_chk(fd, buf, len, buflen, flags)
				     : real_recv(fd, buf, len, flags);
	if (len > buflen)
		abort();
	return not_connected();
}

PRELOAD_API ssize_t recvfrom(int fd, void *restrict buf, size_t len, int flags,
			     __SOCKADDR_ARG addr_arg, socklen_t *restrict addrlen)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_recvfrom(fd, buf, len, flags, SOCKADDR_PTR(addr_arg), addrlen);
	return not_connected();
}

PRELOAD_API ssize_t __recvfrom_chk(int fd, void *restrict buf, size_t len, size_t buflen,
				   int flags, __SOCKADDR_ARG addr_arg, socklen_t *restrict addrlen)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_recvfrom_chk
			? real_recvfrom_chk(fd, buf, len, buflen, flags, SOCKADDR_PTR(addr_arg), addrlen)
			: real_recvfrom(fd, buf, len, flags, SOCKADDR_PTR(addr_arg), addrlen);
	if (len > buflen)
		abort();
	return not_connected();
}

/* Also how handoff_accept() takes its messages: inside_libhandoff makes
 * is_listener() false then. */
PRELOAD_API ssize_t recvmsg(int fd, struct msghdr *msg, int flags)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_recvmsg(fd, msg, flags);
	return not_connected();
}

PRELOAD_API ssize_t write(int fd, const void *buf, size_t len)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_write(fd, buf, len);
	return broken_pipe(0);
}

PRELOAD_API ssize_t writev(int fd, const struct iovec *iov, int iovcnt)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_writev(fd, iov, iovcnt);
	if (iovcnt < 0 || iovcnt > IOV_MAX) {
		errno = EINVAL;
		return -1;
	}
	return broken_pipe(0);
}

PRELOAD_API ssize_t send(int fd, const void *buf, size_t len, int flags)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_send(fd, buf, len, flags);
	return broken_pipe(flags);
}

PRELOAD_API ssize_t sendto(int fd, const void *buf, size_t len, int flags,
			   __CONST_SOCKADDR_ARG addr_arg, socklen_t addrlen)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_sendto(fd, buf, len, flags, SOCKADDR_PTR(addr_arg), addrlen);
	return broken_pipe(flags);
}

PRELOAD_API ssize_t sendmsg(int fd, const struct msghdr *msg, int flags)
{
	ensure_io_symbols();
	if (!is_listener(fd))
		return real_sendmsg(fd, msg, flags);
	return broken_pipe(flags);
}
