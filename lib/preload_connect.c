/* preload_connect.c - connect() from a server to the address of one of its own taken-over listeners reaches that listener. */
/*
 * Servers stop a thread blocked in accept() by connecting to their own
 * listening address (Tomcat's and Jetty's acceptors, Apache's dummy
 * connection). Once bind() swapped the listener for a receiver, that
 * address belongs to the daemon or to nobody, so the connection would go
 * elsewhere and accept() would stay blocked. Instead, connect() to an
 * address one of this process's listeners would take, on its port:
 *
 *   1. opens a TCP listener of its own on the target address (a loopback
 *      address for 0.0.0.0 and ::), port 0: if the address is not local,
 *      the bind fails and the connect() goes out unchanged;
 *   2. connects the server's socket to it with the real connect(), so the
 *      server keeps a true TCP socket and the kernel's own semantics
 *      (blocking, or EINPROGRESS and then writable when non-blocking);
 *   3. accepts the other end, checking that it is this very socket's
 *      connection (its peer is the socket's local address), closes the
 *      temporary listener, and queues that end on the receiver as a
 *      message of this process (handoff_send_local(), struct wire_local):
 *      the next accept() on the listener, in this process or in any
 *      worker forked from it, returns it, in turn with the daemon's.
 *
 * accept() reports the client as TCP would, the connecting socket's
 * loopback (or host) address and port; getpeername() on the connecting
 * socket answers the address it asked for. The accepted end's
 * getsockname() names the temporary listener's port, not the server's.
 *
 * A listener matches when it is listening on the target port and bound
 * either to the target address or to the wildcard of its family (an IPv6
 * wildcard without IPV6_V6ONLY also takes IPv4 targets); an exact address
 * wins over a wildcard, as in the kernel. The swapped port has no TCP
 * listener of this process by construction, so nothing else could have
 * taken the connection here.
 */
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

#include "preload.h"

/* How long the temporary listener waits for the connecting socket's
 * handshake, which on a local address completes at once. */
#define SELF_ACCEPT_TIMEOUT_MS	2000
/* Foreign connections to the temporary listener dropped before giving up. */
#define SELF_ACCEPT_MAX_STRANGERS 8

/* A connect() target in the form the listeners are compared in: an IPv4
 * address (also when given v4-mapped to an IPv6 socket) or an IPv6 one. */
struct target {
	int family;		/* AF_INET or AF_INET6 */
	struct in_addr v4;
	struct in6_addr v6;
	unsigned short port;
};

static bool parse_target(const struct sockaddr *addr, socklen_t len, struct target *t)
{
	memset(t, 0, sizeof(*t));
	if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in)) {
		struct sockaddr_in in;

		memcpy(&in, addr, sizeof(in));
		t->family = AF_INET;
		t->v4 = in.sin_addr;
		t->port = ntohs(in.sin_port);
	} else if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6)) {
		struct sockaddr_in6 in6;

		memcpy(&in6, addr, sizeof(in6));
		t->port = ntohs(in6.sin6_port);
		if (IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr)) {
			t->family = AF_INET;
			memcpy(&t->v4, &in6.sin6_addr.s6_addr[12], 4);
		} else {
			t->family = AF_INET6;
			t->v6 = in6.sin6_addr;
		}
	} else {
		return false;
	}
	/* Linux takes a connect() to the unspecified address as one to the
	 * loopback address. */
	if (t->family == AF_INET && t->v4.s_addr == htonl(INADDR_ANY))
		t->v4.s_addr = htonl(INADDR_LOOPBACK);
	if (t->family == AF_INET6 && IN6_IS_ADDR_UNSPECIFIED(&t->v6))
		t->v6 = in6addr_loopback;
	return t->port != 0;
}

/* Does an IPv6 listener also take IPv4 connections? The value the server
 * set, else a fresh socket's (the net.ipv6.bindv6only default). */
static bool listener_is_v6only(const struct listener_shadow *sh)
{
	const struct remembered_option *o = find_option(sh, IPPROTO_IPV6, IPV6_V6ONLY);
	int value = 0;
	socklen_t len = sizeof(value);

	if (o != NULL && o->len >= sizeof(int)) {
		memcpy(&value, o->value, sizeof(value));
		return value != 0;
	}
	int fresh = fresh_tcp_socket(AF_INET6);

	if (fresh < 0)
		return false;
	if (real_getsockopt(fresh, IPPROTO_IPV6, IPV6_V6ONLY, &value, &len) < 0)
		value = 0;
	real_close(fresh);
	return value != 0;
}

/* 2: the listener is bound to the target's address; 1: to its family's
 * wildcard, which takes every local address; 0: it would not take it. */
static int match_score(const struct listener_shadow *sh, const struct target *t)
{
	if (!sh->listening)
		return 0;
	if (sh->addr.sa.sa_family == AF_INET) {
		if (ntohs(sh->addr.in.sin_port) != t->port || t->family != AF_INET)
			return 0;
		if (sh->addr.in.sin_addr.s_addr == t->v4.s_addr)
			return 2;
		return sh->addr.in.sin_addr.s_addr == htonl(INADDR_ANY) ? 1 : 0;
	}
	if (sh->addr.sa.sa_family != AF_INET6 || ntohs(sh->addr.in6.sin6_port) != t->port)
		return 0;
	const struct in6_addr *bound = &sh->addr.in6.sin6_addr;

	if (t->family == AF_INET6) {
		if (IN6_ARE_ADDR_EQUAL(bound, &t->v6))
			return 2;
		return IN6_IS_ADDR_UNSPECIFIED(bound) ? 1 : 0;
	}
	if (IN6_IS_ADDR_V4MAPPED(bound) && memcmp(&bound->s6_addr[12], &t->v4, 4) == 0)
		return 2;
	return IN6_IS_ADDR_UNSPECIFIED(bound) && !listener_is_v6only(sh) ? 1 : 0;
}

struct listener_match {
	const struct target *target;
	int fd;
	int score;
};

static bool consider_listener(int fd, const struct listener_shadow *sh, void *arg)
{
	struct listener_match *m = arg;
	int score = match_score(sh, m->target);

	if (score > m->score) {
		m->fd = fd;
		m->score = score;
	}
	return m->score < 2;
}

/* The address the temporary listener binds: the target's, port 0. */
static socklen_t temporary_address(const struct target *t, struct sockaddr_storage *out)
{
	memset(out, 0, sizeof(*out));
	if (t->family == AF_INET) {
		struct sockaddr_in in = { .sin_family = AF_INET, .sin_addr = t->v4 };

		memcpy(out, &in, sizeof(in));
		return sizeof(in);
	}
	struct sockaddr_in6 in6 = { .sin6_family = AF_INET6, .sin6_addr = t->v6 };

	memcpy(out, &in6, sizeof(in6));
	return sizeof(in6);
}

/* The temporary listener's address as a socket of family reaches it. */
static socklen_t address_for_family(int family, const struct sockaddr_storage *listener,
				    struct sockaddr_storage *out)
{
	if (family == AF_INET6 && listener->ss_family == AF_INET) {
		struct sockaddr_in in;
		struct sockaddr_in6 mapped = { .sin6_family = AF_INET6 };

		memcpy(&in, listener, sizeof(in));
		mapped.sin6_port = in.sin_port;
		mapped.sin6_addr.s6_addr[10] = 0xff;
		mapped.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&mapped.sin6_addr.s6_addr[12], &in.sin_addr, 4);
		memset(out, 0, sizeof(*out));
		memcpy(out, &mapped, sizeof(mapped));
		return sizeof(mapped);
	}
	*out = *listener;
	return listener->ss_family == AF_INET ? sizeof(struct sockaddr_in)
					      : sizeof(struct sockaddr_in6);
}

/* Address and port of a TCP endpoint, IPv4 unmapped, for comparison. */
static bool same_endpoint(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	struct target ta, tb;

	return parse_target((const struct sockaddr *)a, sizeof(*a), &ta) &&
	       parse_target((const struct sockaddr *)b, sizeof(*b), &tb) &&
	       ta.family == tb.family && ta.port == tb.port &&
	       (ta.family == AF_INET ? ta.v4.s_addr == tb.v4.s_addr
				     : IN6_ARE_ADDR_EQUAL(&ta.v6, &tb.v6));
}

static long elapsed_ms(const struct timespec *start)
{
	struct timespec now;

	clock_gettime(CLOCK_MONOTONIC, &now);
	return (now.tv_sec - start->tv_sec) * 1000 + (now.tv_nsec - start->tv_nsec) / 1000000;
}

/* Accept, on the temporary listener, the connection whose client is
 * local (the connecting socket's own address); drop any other. *peer gets
 * the client's address as the accepted socket reports it. */
static int accept_own_connection(int temporary, const struct sockaddr_storage *local,
				 struct sockaddr_storage *peer, socklen_t *peer_len)
{
	struct timespec start;

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (unsigned strangers = 0; strangers < SELF_ACCEPT_MAX_STRANGERS;) {
		struct pollfd pfd = { .fd = temporary, .events = POLLIN };
		long left = SELF_ACCEPT_TIMEOUT_MS - elapsed_ms(&start);
		int conn;

		if (left <= 0)
			break;
		if (poll(&pfd, 1, (int)left) <= 0)
			continue;	/* EINTR, or the time is up */
		*peer_len = sizeof(*peer);
		conn = real_accept4(temporary, (struct sockaddr *)peer, peer_len,
				    SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (conn < 0) {
			/* A connection gone before accept(), or a signal: wait on.
			 * Anything else (EMFILE, ENOBUFS) would fail again at once,
			 * with the listener still readable: give up with it. */
			if (errno == EINTR || errno == ECONNABORTED || errno == EAGAIN ||
			    errno == EWOULDBLOCK)
				continue;
			return -1;
		}
		if (same_endpoint(peer, local)) {
			/* handoff_accept() sets the accepter's blocking mode. */
			return conn;
		}
		real_close(conn);
		strangers++;
	}
	errno = ETIMEDOUT;
	return -1;
}

/* getpeername() on the connecting socket: the address it asked for, the
 * loopback address for the unspecified one, as TCP reports them. */
static void remember_asked_peer(int fd, const struct sockaddr *addr, const struct target *t)
{
	struct peer_override *po = malloc(sizeof(*po));
	struct stat st;

	if (po == NULL || fstat(fd, &st) < 0) {
		free(po);
		return;
	}
	memset(po, 0, sizeof(*po));
	po->ino = st.st_ino;
	if (addr->sa_family == AF_INET) {
		struct sockaddr_in in = { .sin_family = AF_INET, .sin_port = htons(t->port),
					  .sin_addr = t->v4 };

		memcpy(&po->addr, &in, sizeof(in));
		po->len = sizeof(in);
	} else {
		struct sockaddr_in6 in6;

		memcpy(&in6, addr, sizeof(in6));
		if (IN6_IS_ADDR_UNSPECIFIED(&in6.sin6_addr))
			in6.sin6_addr = in6addr_loopback;
		in6.sin6_flowinfo = 0;
		memcpy(&po->addr, &in6, sizeof(in6));
		po->len = sizeof(in6);
	}
	set_peer_override(fd, po);
}

/*
 * Connect fd to itself through listener (see the top). Returns what
 * connect() returns; if the target address is not local, the connect()
 * the server asked for.
 */
static int connect_to_listener(int fd, const struct sockaddr *addr, socklen_t len,
			       const struct target *t, int listener)
{
	struct sockaddr_storage bound, via, local, peer;
	socklen_t bound_len, via_len, local_len = sizeof(local), peer_len = 0;
	int temporary, conn, rc, err;

	temporary = socket(t->family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
	if (temporary < 0)
		return real_connect(fd, addr, len);
	bound_len = temporary_address(t, &bound);
	if (real_bind(temporary, (struct sockaddr *)&bound, bound_len) < 0 ||
	    real_listen(temporary, 1) < 0 ||
	    real_getsockname(temporary, (struct sockaddr *)&bound, &bound_len) < 0) {
		/* Not a local address: the connection is not ours to make. */
		real_close(temporary);
		return real_connect(fd, addr, len);
	}
	via_len = address_for_family(addr->sa_family, &bound, &via);
	rc = real_connect(fd, (struct sockaddr *)&via, via_len);
	err = errno;
	if (rc < 0 && err != EINPROGRESS && err != EINTR) {
		real_close(temporary);
		errno = err;
		return rc;
	}
	conn = -1;
	if (real_getsockname(fd, (struct sockaddr *)&local, &local_len) == 0)
		conn = accept_own_connection(temporary, &local, &peer, &peer_len);
	real_close(temporary);
	if (conn < 0) {
		fprintf(stderr, "handoff-preload: connection to own port %u not completed: %s\n",
			t->port, strerror(errno));
	} else {
		inside_libhandoff++;
		int sent = handoff_send_local(listener, conn, (struct sockaddr *)&peer, peer_len);
		inside_libhandoff--;
		if (sent < 0)
			fprintf(stderr, "handoff-preload: cannot queue a connection to own port %u "
				"on its listener: %s\n", t->port, strerror(errno));
		real_close(conn);	/* the receiver holds it now, or it is dropped */
	}
	remember_asked_peer(fd, addr, t);
	errno = err;
	return rc;
}

PRELOAD_API int connect(int fd, __CONST_SOCKADDR_ARG addr_arg, socklen_t len)
{
	const struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct target t;
	struct listener_match m = { .target = &t, .fd = -1, .score = 0 };

	ensure_settings();
	if (n_ports == 0 || inside_libhandoff || addr == NULL || !parse_target(addr, len, &t) ||
	    handed_off_port(t.port) == NULL || !is_tcp_socket(fd, addr->sa_family))
		return real_connect(fd, addr, len);
	each_listener(consider_listener, &m);
	if (m.fd < 0)
		return real_connect(fd, addr, len);
	return connect_to_listener(fd, addr, len, &t, m.fd);
}
