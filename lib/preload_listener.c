/* preload_listener.c - bind() swaps a TCP listener for a receiver; listen() on it. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload.h"

/* ---- bind: the swap ---- */

/* Record the options the server set on its TCP socket before bind(), as the
 * ones differing from a fresh socket of the same family. */
static void snapshot_options(int fd, struct listener_shadow *sh)
{
	int fresh = fresh_tcp_socket(sh->addr.sa.sa_family);

	if (fresh < 0)
		return;
	for (size_t i = 0; i < n_known_options; i++) {
		const struct option_id *id = &known_options[i];
		unsigned char mine[OPTION_VALUE_MAX], fresh_value[OPTION_VALUE_MAX];
		socklen_t mine_len = sizeof(mine), fresh_len = sizeof(fresh_value);

		memset(mine, 0, sizeof(mine));
		memset(fresh_value, 0, sizeof(fresh_value));
		if (real_getsockopt(fd, id->level, id->name, mine, &mine_len) < 0 ||
		    real_getsockopt(fresh, id->level, id->name, fresh_value, &fresh_len) < 0)
			continue;
		if (mine_len != fresh_len || memcmp(mine, fresh_value, mine_len) != 0)
			remember_option(sh, id->level, id->name, mine, mine_len);
	}
	real_close(fresh);
}

static void report_listen_failure(unsigned short port, int err)
{
	char dir[4096] = "?";
	char list[1024] = "";
	size_t used = 0;

	handoff_runtime_dir(dir, sizeof(dir));
	for (size_t i = 0; i < n_names; i++) {
		int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? "," : "", names[i]);
		if (n < 0 || (size_t)n >= sizeof(list) - used)
			break;
		used += (size_t)n;
	}
	if (err == ENOENT)
		fprintf(stderr, "handoff-preload: cannot take over port %u: runtime directory %s "
			"or its upstreams/ is missing; is `handoff serve` running with it?\n",
			port, dir);
	else if (err == EINVAL)
		fprintf(stderr, "handoff-preload: cannot take over port %u: HANDOFF_NAMES=\"%s\" "
			"is not a valid list of names\n", port, list);
	else
		fprintf(stderr, "handoff-preload: cannot take over port %u for %s in %s: %s\n",
			port, list, dir, strerror(err));
}

static int set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/*
 * The only address family of clients a TCP socket of addr's family, as fd
 * is now, can accept: AF_INET for an IPv4 socket, AF_INET6 for an IPv6
 * socket with IPV6_V6ONLY (set by the server, or the system's default),
 * 0 for a dual-stack IPv6 socket, which takes IPv4 clients as v4-mapped
 * addresses. The daemon's listeners decide which addresses clients reach,
 * so the bound address itself restricts nothing.
 */
static int receivable_family(int fd, const struct sockaddr *addr)
{
	int v6only = 0;
	socklen_t len = sizeof(v6only);

	if (addr->sa_family == AF_INET)
		return AF_INET;
	if (real_getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &len) == 0 && v6only)
		return AF_INET6;
	return 0;
}

/*
 * Replace the TCP socket fd, about to be bound to addr, by a receiver for
 * HANDOFF_NAMES (and the port's protocol) under the same descriptor number.
 * Returns 0, or -1 with errno (the server's bind() fails, and the reason
 * goes to stderr).
 */
static int swap_listener(int fd, const struct sockaddr *addr, socklen_t addr_len,
			 const struct handed_off_port *handed_off)
{
	unsigned short port = handed_off->port;
	struct listener_shadow *sh;
	int fd_flags, status_flags, receiver, saved;
	struct stat st;
	uid_t daemon_uid;

	if (fd >= MAX_TRACKED_FD) {
		fprintf(stderr, "handoff-preload: cannot take over port %u: descriptor %d "
			"is above %d\n", port, fd, MAX_TRACKED_FD - 1);
		errno = EMFILE;
		return -1;
	}
	fd_flags = fcntl(fd, F_GETFD);
	status_flags = fcntl(fd, F_GETFL);
	if (fd_flags < 0 || status_flags < 0)
		return -1;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -1;
	memcpy(&sh->addr, addr, addr_len);
	sh->addr_len = addr_len;
	snapshot_options(fd, sh);

	inside_libhandoff++;
	/* SSH and silent clients carry no name: their receivers claim the
	 * protocol itself (and no ALPN ids). */
	bool nameless = handed_off->protocol == HANDOFF_PROTO_SSH || handed_off->protocol == HANDOFF_PROTO_SILENT;
	receiver = handoff_listen_claim(NULL, nameless ? NULL : names, nameless ? 0 : n_names,
					handed_off->protocol, receivable_family(fd, addr),
					nameless ? NULL : alpn_ids, nameless ? 0 : n_alpn_ids, HANDOFF_CLOEXEC);
	inside_libhandoff--;
	if (receiver < 0) {
		saved = errno;
		report_listen_failure(port, saved);
		free(sh);
		errno = saved;
		return -1;
	}
	if (receiver_daemon_uid(receiver, &daemon_uid) < 0 ||
	    dup3(receiver, fd, (fd_flags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
		goto fail;
	handoff_forget(receiver);
	real_close(receiver);
	receiver = -1;
	if (((status_flags & O_NONBLOCK) && set_nonblocking(fd) < 0) ||
	    fstat(fd, &st) < 0 || handoff_adopt(fd, daemon_uid) < 0)
		goto fail;
	sh->dev = st.st_dev;
	sh->ino = st.st_ino;
	sh->daemon_uid = daemon_uid;
	attach_metadata(fd, sh);
	install_shadow(fd, sh);
	return 0;

fail:
	saved = errno;
	fprintf(stderr, "handoff-preload: cannot take over port %u: %s\n", port, strerror(saved));
	if (receiver >= 0) {
		inside_libhandoff++;
		handoff_close(receiver);
		inside_libhandoff--;
	}
	free(sh);
	errno = saved;
	return -1;
}

/* Is this bind() one to take over: a TCP socket of the address's family,
 * bound to one of HANDOFF_PORTS? Sets *handed_off to that port's entry. */
static bool wants_swap(int fd, const struct sockaddr *addr, socklen_t len,
		       const struct handed_off_port **handed_off)
{
	unsigned short port;

	if (!addr || n_ports == 0)
		return false;
	if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
		port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
	else if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))
		port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
	else
		return false;
	*handed_off = handed_off_port(port);
	if (!*handed_off)
		return false;
	return is_tcp_socket(fd, addr->sa_family);
}

/* The address getsockname() reports for a bound TCP socket. */
static socklen_t canonical_address(const struct sockaddr *addr, void *out)
{
	if (addr->sa_family == AF_INET) {
		struct sockaddr_in in;
		memcpy(&in, addr, sizeof(in));
		memset(in.sin_zero, 0, sizeof(in.sin_zero));
		memcpy(out, &in, sizeof(in));
		return sizeof(in);
	}
	struct sockaddr_in6 in6;
	memcpy(&in6, addr, sizeof(in6));
	in6.sin6_flowinfo = 0;
	memcpy(out, &in6, sizeof(in6));
	return sizeof(in6);
}

PRELOAD_API int bind(int fd, __CONST_SOCKADDR_ARG addr_arg, socklen_t len)
{
	const struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct listener_shadow sh;
	union {
		struct sockaddr sa;
		struct sockaddr_in6 in6;
	} canonical;
	struct sockaddr_storage current;
	socklen_t current_len = sizeof(current), canonical_len;
	const struct handed_off_port *handed_off;

	ensure_settings();
	if (known_listener(fd, &sh)) {
		errno = EINVAL;		/* already bound, as TCP says */
		return -1;
	}
	if (!wants_swap(fd, addr, len, &handed_off))
		return real_bind(fd, addr, len);
	/* An already bound socket fails as TCP's would. */
	if (real_getsockname(fd, (struct sockaddr *)&current, &current_len) < 0)
		return -1;
	if ((current.ss_family == AF_INET && ((struct sockaddr_in *)&current)->sin_port) ||
	    (current.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&current)->sin6_port)) {
		errno = EINVAL;
		return -1;
	}
	canonical_len = canonical_address(addr, &canonical);
	return swap_listener(fd, &canonical.sa, canonical_len, handed_off);
}

/* ---- listen ---- */

static void mark_listening(struct listener_shadow *sh, const void *arg)
{
	(void)arg;
	sh->listening = true;
}

PRELOAD_API int listen(int fd, int backlog)
{
	struct listener_shadow sh;
	int rc;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_listen(fd, backlog);
		/* A datagram socket cannot listen: a receiver after all? */
		if (rc == 0 || errno != EOPNOTSUPP || !turned_up(fd, &sh))
			return rc;
	}
	/* The backlog is the daemon's; a second listen() only changes it. */
	if (!sh.listening)
		update_shadow(fd, &sh, mark_listening, NULL);
	return 0;
}
