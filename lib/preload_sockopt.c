/* preload_sockopt.c - getsockname(), getsockopt() and setsockopt() on a receiver answer as its TCP listener. */
#include <string.h>

#include "preload.h"

/* ---- getsockname, getsockopt, setsockopt ---- */

PRELOAD_API int getsockname(int fd, __SOCKADDR_ARG addr_arg, socklen_t *restrict len)
{
	struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct listener_shadow sh;
	struct peer_override po;
	int rc;

	ensure_settings();
	/* An accepted connection whose local address a listener of another
	 * family reports differently (see struct peer_override). */
	if (current_peer_override(fd, &po) && po.local_len > 0) {
		if (!len || (!addr && *len)) {
			errno = EFAULT;
			return -1;
		}
		memcpy(addr, &po.local, *len < po.local_len ? *len : po.local_len);
		*len = po.local_len;
		return 0;
	}
	if (!known_listener(fd, &sh)) {
		rc = real_getsockname(fd, addr, len);
		if (rc < 0 || !addr || *len < sizeof(sa_family_t) || addr->sa_family != AF_UNIX ||
		    !turned_up(fd, &sh))
			return rc;
	}
	if (!len || (!addr && *len)) {
		errno = EFAULT;
		return -1;
	}
	memcpy(addr, &sh.addr, *len < sh.addr_len ? *len : sh.addr_len);
	*len = sh.addr_len;
	return 0;
}

/* Copy value as the kernel copies an option: at most *len bytes. */
static int answer_option(void *out, socklen_t *len, const void *value, socklen_t value_len)
{
	if (!len) {
		errno = EFAULT;
		return -1;
	}
	if ((int)*len < 0) {
		errno = EINVAL;
		return -1;
	}
	if (value_len < *len)
		*len = value_len;
	if (*len && !out) {
		errno = EFAULT;
		return -1;
	}
	memcpy(out, value, *len);
	return 0;
}

/* Does a getsockopt() answer, or its failure, sound like a datagram
 * socket, so that fd may be a receiver after all? */
static bool datagram_answer(int rc, int level, int name, const void *value, socklen_t len)
{
	int v;

	if (rc < 0)
		return errno == EOPNOTSUPP || errno == ENOPROTOOPT;
	if (level != SOL_SOCKET || !value || len < sizeof(int))
		return false;
	memcpy(&v, value, sizeof(v));
	return (name == SO_TYPE && v == SOCK_DGRAM) || (name == SO_DOMAIN && v == AF_UNIX) ||
	       (name == SO_PROTOCOL && v == 0) || (name == SO_ACCEPTCONN && v == 0);
}

PRELOAD_API int getsockopt(int fd, int level, int name, void *restrict value, socklen_t *restrict len)
{
	struct listener_shadow sh;
	const struct remembered_option *o;
	int answer, fresh, rc, saved;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_getsockopt(fd, level, name, value, len);
		if (!datagram_answer(rc, level, name, value, len ? *len : 0) ||
		    !turned_up(fd, &sh))
			return rc;
	}
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_TYPE:		answer = SOCK_STREAM; break;
		case SO_DOMAIN:		answer = sh.addr.sa.sa_family; break;
		case SO_PROTOCOL:	answer = IPPROTO_TCP; break;
		case SO_ACCEPTCONN:	answer = sh.listening; break;
		case SO_ERROR:		answer = 0; break;
		default:
			if (is_timeout_option(level, name))
				return real_getsockopt(fd, level, name, value, len);
			goto not_fixed;
		}
		return answer_option(value, len, &answer, sizeof(answer));
	}
not_fixed:
	o = find_option(&sh, level, name);
	if (o)
		return answer_option(value, len, o->value, o->len);
	/* Never set: whatever a fresh TCP socket of that family says. */
	fresh = fresh_tcp_socket(sh.addr.sa.sa_family);
	if (fresh < 0)
		return -1;
	rc = real_getsockopt(fresh, level, name, value, len);
	saved = errno;
	real_close(fresh);
	errno = saved;
	return rc;
}

struct option_change {
	int level;
	int name;
	const void *value;
	socklen_t len;
};

static void store_option(struct listener_shadow *sh, const void *arg)
{
	const struct option_change *c = arg;

	remember_option(sh, c->level, c->name, c->value, c->len);
}

PRELOAD_API int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
	struct listener_shadow sh;
	unsigned char normalised[OPTION_VALUE_MAX];
	socklen_t normalised_len = sizeof(normalised);
	struct option_change change = { level, name, value, len };
	int fresh, saved, rc;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_setsockopt(fd, level, name, value, len);
		/* TCP options fail on a datagram socket: a receiver after all? */
		if (rc == 0 || (errno != EOPNOTSUPP && errno != ENOPROTOOPT) || !turned_up(fd, &sh))
			return rc;
	}
	/* Receive timeouts bound a blocking accept(), which is a recvmsg()
	 * on the receiver now. */
	if (is_timeout_option(level, name))
		return real_setsockopt(fd, level, name, value, len);
	/* TCP refuses to change the address family's scope once bound. */
	if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY && sh.addr.sa.sa_family == AF_INET6) {
		errno = EINVAL;
		return -1;
	}
	/* Let the kernel judge the option on a TCP socket of the same family,
	 * and remember the value it then reports (booleans as 0/1, buffer
	 * sizes doubled, ...). Without a spare descriptor, remember it as given. */
	fresh = fresh_tcp_socket(sh.addr.sa.sa_family);
	if (fresh >= 0) {
		if (real_setsockopt(fresh, level, name, value, len) < 0) {
			saved = errno;
			real_close(fresh);
			errno = saved;
			return -1;
		}
		memset(normalised, 0, sizeof(normalised));
		if (real_getsockopt(fresh, level, name, normalised, &normalised_len) == 0) {
			change.value = normalised;
			change.len = normalised_len;
		}
		real_close(fresh);
	}
	update_shadow(fd, &sh, store_option, &change);
	return 0;
}
