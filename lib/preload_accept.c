/* preload_accept.c - accept() and accept4() on a receiver: a handed-off TCP connection; getpeername() on it. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "preload.h"

/* ---- accept ---- */

/* An address as a socket of the listener's family reports it. */
socklen_t convert_address(int listener_family, struct sockaddr_storage *addr, socklen_t len)
{
	if (listener_family == AF_INET6 && addr->ss_family == AF_INET) {
		struct sockaddr_in in;
		struct sockaddr_in6 mapped = { .sin6_family = AF_INET6 };

		memcpy(&in, addr, sizeof(in));
		mapped.sin6_port = in.sin_port;
		mapped.sin6_addr.s6_addr[10] = 0xff;
		mapped.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&mapped.sin6_addr.s6_addr[12], &in.sin_addr, 4);
		memcpy(addr, &mapped, sizeof(mapped));
		return sizeof(mapped);
	}
	if (listener_family == AF_INET && addr->ss_family == AF_INET6) {
		struct sockaddr_in6 in6;
		struct sockaddr_in in = { .sin_family = AF_INET };

		memcpy(&in6, addr, sizeof(in6));
		if (!IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr))
			return len;
		in.sin_port = in6.sin6_port;
		memcpy(&in.sin_addr, &in6.sin6_addr.s6_addr[12], 4);
		memcpy(addr, &in, sizeof(in));
		return sizeof(in);
	}
	return len;
}

/* Give the accepted socket the options TCP copies from a listener. Best
 * effort: a family-specific option fails on the other family, harmlessly. */
static void apply_inherited_options(int conn, const struct listener_shadow *sh)
{
	for (size_t i = 0; i < sh->n_options; i++) {
		const struct remembered_option *o = &sh->options[i];
		const struct option_id *id = known_option(o->level, o->name);
		int halved;

		if (!id || !id->inherited)
			continue;
		if (o->level == SOL_SOCKET && (o->name == SO_RCVBUF || o->name == SO_SNDBUF) &&
		    o->len == sizeof(int)) {
			/* The kernel reports twice what was asked; ask the same. */
			memcpy(&halved, o->value, sizeof(halved));
			halved /= 2;
			real_setsockopt(conn, o->level, o->name, &halved, sizeof(halved));
			continue;
		}
		real_setsockopt(conn, o->level, o->name, o->value,
				o->level == IPPROTO_TCP && o->name == TCP_CONGESTION
					? (socklen_t)strnlen((const char *)o->value, o->len) : o->len);
	}
}

static int accept_handoff(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
			  const struct listener_shadow *sh)
{
	struct sockaddr_storage peer;
	socklen_t peer_len = sizeof(peer);
	int conn;

	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC) || !sh->listening) {
		errno = EINVAL;
		return -1;
	}
	if (addr && !addrlen) {
		errno = EFAULT;
		return -1;
	}
	struct handoff_info info;
	struct peer_override *po = NULL;

	inside_libhandoff++;
	conn = handoff_accept_known(fd, sh->dev, sh->ino, (struct sockaddr *)&peer, &peer_len, flags, &info);
	inside_libhandoff--;
	if (conn < 0)
		return -1;
	bool differs = false;

	if (info.peer_len > 0 && info.peer_len <= sizeof(peer) &&
	    (info.peer_len != peer_len || memcmp(&info.peer, &peer, peer_len) != 0)) {
		memcpy(&peer, &info.peer, info.peer_len);
		peer_len = info.peer_len;
		differs = true;
	}
	sa_family_t family = peer.ss_family;
	int listener_family = sh->addr.sa.sa_family;
	struct sockaddr_storage local;
	socklen_t local_len = sizeof(local);

	peer_len = convert_address(listener_family, &peer, peer_len);
	memset(&local, 0, sizeof(local));
	if (info.local_len > 0 && info.local_len <= sizeof(local)) {
		memcpy(&local, &info.local, info.local_len);
		local_len = info.local_len;
	} else if (real_getsockname(conn, (struct sockaddr *)&local, &local_len) < 0 ||
		   local_len > sizeof(local)) {
		local_len = 0;
	}
	sa_family_t local_family = local.ss_family;
	if (local_len > 0)
		local_len = convert_address(listener_family, &local, local_len);
	/* getpeername() and getsockname() must agree with accept(): the PROXY
	 * client, and the addresses in the listener's family, v4-mapped on a
	 * dual-stack IPv6 listener as TCP gives them. */
	bool local_differs = local_len > 0 && local.ss_family != local_family;
	if (differs || peer.ss_family != family || local_differs) {
		struct stat st;

		po = malloc(sizeof(*po));
		if (po != NULL && fstat(conn, &st) == 0) {
			po->ino = st.st_ino;
			po->addr = peer;
			po->len = peer_len;
			po->local = local;
			po->local_len = local_differs ? local_len : 0;
		} else {
			free(po);
			po = NULL;
		}
	}
	/* Also clears what a reused descriptor number may have left. */
	set_peer_override(conn, po);
	apply_inherited_options(conn, sh);
	if (addr) {
		memcpy(addr, &peer, *addrlen < peer_len ? *addrlen : peer_len);
		*addrlen = peer_len;
	}
	return conn;
}

PRELOAD_API int accept4(int fd, __SOCKADDR_ARG addr_arg, socklen_t *restrict addrlen, int flags)
{
	struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct listener_shadow sh;
	int rc;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_accept4(fd, addr, addrlen, flags);
		if (rc >= 0 || errno != EOPNOTSUPP || !turned_up(fd, &sh))
			return rc;
	}
	return accept_handoff(fd, addr, addrlen, flags, &sh);
}

PRELOAD_API int accept(int fd, __SOCKADDR_ARG addr_arg, socklen_t *restrict addrlen)
{
	struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct listener_shadow sh;
	int rc;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_accept(fd, addr, addrlen);
		if (rc >= 0 || errno != EOPNOTSUPP || !turned_up(fd, &sh))
			return rc;
	}
	/* accept() is accept4() with no flags: blocking, inheritable. */
	return accept_handoff(fd, addr, addrlen, 0, &sh);
}

bool current_peer_override(int fd, struct peer_override *out)
{
	struct stat st;

	/* libhandoff's own calls are about sockets it just received. */
	return !inside_libhandoff && get_peer_override(fd, out) && fstat(fd, &st) == 0 &&
	       st.st_ino == out->ino;
}

PRELOAD_API int getpeername(int fd, __SOCKADDR_ARG addr_arg, socklen_t *restrict len)
{
	struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct peer_override po;

	ensure_symbols();
	if (!current_peer_override(fd, &po))
		return real_getpeername(fd, addr, len);
	if (!len || (!addr && *len)) {
		errno = EFAULT;
		return -1;
	}
	memcpy(addr, &po.addr, *len < po.len ? *len : po.len);
	*len = po.len;
	return 0;
}
