/* listener.c - bind or adopt the configured TCP listeners, accept in batches, survive EMFILE. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "conn.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "server.h"

/* Accepts per readable event before giving other descriptors a turn. */
#define ACCEPT_BATCH 64
/* How long to stop accepting when the process is out of descriptors. */
#define EMFILE_PAUSE_MS 1000

static struct listener *listeners;
static size_t n_listeners;
static bool paused;
/* Listeners are registered without events until listeners_start: no client
 * is accepted (it waits in the backlog) before the upstreams that were
 * there at start are known. */
static bool started;
static struct loop_timer resume_timer;
/* A descriptor held in reserve: released on EMFILE so that one pending
 * connection can be accepted and closed, which tells that client something
 * instead of leaving it hanging in the backlog. Once used, its own timer
 * takes it back as soon as a descriptor is free, however the pause ends
 * (the resume timer, or a peeking connection finishing). */
static int spare_fd = -1;
static struct loop_timer spare_timer;

static void on_spare_timer(struct loop_timer *t);

static void
reserve_spare_fd(void)
{
	if (spare_fd >= 0)
		return;
	spare_fd = open("/dev/null", O_RDONLY | O_CLOEXEC);
	if (spare_fd >= 0) {
		loop_timer_cancel(server.loop, &spare_timer);
		return;
	}
	spare_timer.cb = on_spare_timer;
	loop_timer_arm(server.loop, &spare_timer, EMFILE_PAUSE_MS);
}

static void
on_spare_timer(struct loop_timer *t)
{
	(void)t;
	reserve_spare_fd();
	if (spare_fd >= 0)
		log_info("spare descriptor restored");
}

static void on_accept(struct loop_io *io, uint32_t revents);

static int
open_one(struct listener *l, char *err, size_t errlen)
{
	const struct config_listener *lc = l->cfg;
	int one = 1;
	int fd = socket(lc->addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0)
		goto fail;
	if (lc->addr.ss_family == AF_INET6 && lc->v6only >= 0 &&
	    setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &lc->v6only, sizeof(lc->v6only)) < 0)
		goto fail;
	if (bind(fd, (const struct sockaddr *)&lc->addr, lc->addrlen) < 0)
		goto fail;
	if (listen(fd, lc->backlog) < 0)
		goto fail;
	l->io.fd = fd;
	l->io.cb = on_accept;
	if (loop_io_add(server.loop, &l->io, started ? EPOLLIN : 0) < 0)
		goto fail;
	return 0;
fail:
	snprintf(err, errlen, "%s:%d: cannot listen on %s: %s%s", server.cfg.source, lc->line,
		 lc->text, strerror(errno),
		 errno == EADDRINUSE ? " (another program holds this port; stop it or change the address)" :
		 errno == EACCES ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" : "");
	if (fd >= 0)
		close(fd);
	l->io.fd = -1;
	return -1;
}

static const char *
proto_text(const struct config_listener *lc)
{
	return lc->proto == LISTENER_TLS ? "tls" : lc->proto == LISTENER_HTTP ? "http" : "detect";
}

int
listeners_prepare(char *err, size_t errlen)
{
	if (listeners != NULL)
		return 0;
	n_listeners = server.cfg.n_listeners;
	listeners = calloc(n_listeners, sizeof(*listeners));
	if (listeners == NULL) {
		n_listeners = 0;
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < n_listeners; i++) {
		listeners[i].cfg = &server.cfg.listeners[i];
		listeners[i].io.fd = -1;
	}
	return 0;
}

/* The same address and port as the listen line (the port and address bytes;
 * a listen line never names an IPv6 scope). */
static bool
address_matches(const struct sockaddr_storage *addr, const struct config_listener *lc)
{
	if (addr->ss_family != lc->addr.ss_family)
		return false;
	if (addr->ss_family == AF_INET) {
		const struct sockaddr_in *a = (const struct sockaddr_in *)(const void *)addr;
		const struct sockaddr_in *b = (const struct sockaddr_in *)(const void *)&lc->addr;
		return a->sin_port == b->sin_port && a->sin_addr.s_addr == b->sin_addr.s_addr;
	}
	if (addr->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)(const void *)addr;
		const struct sockaddr_in6 *b = (const struct sockaddr_in6 *)(const void *)&lc->addr;
		return a->sin6_port == b->sin6_port &&
		       memcmp(&a->sin6_addr, &b->sin6_addr, sizeof(a->sin6_addr)) == 0;
	}
	return false;
}

int
listener_adopt(int fd, const char *origin, char *err, size_t errlen)
{
	struct sockaddr_storage addr;
	socklen_t addrlen = sizeof(addr);
	int type = 0, listening = 0;
	socklen_t optlen = sizeof(type);
	memset(&addr, 0, sizeof(addr));
	if (getsockname(fd, (struct sockaddr *)&addr, &addrlen) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &optlen) < 0 ||
	    (optlen = sizeof(listening), getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen)) < 0) {
		snprintf(err, errlen, "%s (descriptor %d) is not a socket: %s", origin, fd, strerror(errno));
		return -1;
	}
	char text[INET6_ADDRSTRLEN + 16];
	net_addr_text(&addr, text, sizeof(text));
	if ((addr.ss_family != AF_INET && addr.ss_family != AF_INET6) || type != SOCK_STREAM || !listening) {
		snprintf(err, errlen, "%s (descriptor %d, %s) is not a listening TCP socket "
			 "(pass only ListenStream= sockets with IP addresses)", origin, fd, text);
		return -1;
	}
	struct listener *l = NULL;
	for (size_t i = 0; i < n_listeners && l == NULL; i++)
		if (address_matches(&addr, listeners[i].cfg))
			l = &listeners[i];
	if (l == NULL) {
		snprintf(err, errlen, "%s: %s is bound to %s, which no 'listen' line names "
			 "(add 'listen %s tls|http' to the configuration or stop passing this socket)",
			 server.cfg.source, origin, text, text);
		return -1;
	}
	const struct config_listener *lc = l->cfg;
	if (l->io.fd >= 0) {
		snprintf(err, errlen, "%s:%d: %s is a second socket for 'listen %s' (pass one socket per address)",
			 server.cfg.source, lc->line, origin, lc->text);
		return -1;
	}
	if (lc->addr.ss_family == AF_INET6 && lc->v6only >= 0) {
		int v6only = -1;
		optlen = sizeof(v6only);
		if (getsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &v6only, &optlen) < 0 || v6only != lc->v6only) {
			snprintf(err, errlen, "%s:%d: %s for %s has v6only %s, the listen line says %s "
				 "(make BindIPv6Only= agree with the listen line)", server.cfg.source, lc->line,
				 origin, lc->text, v6only == 1 ? "on" : "off", lc->v6only ? "on" : "off");
			return -1;
		}
	}
	/* A service manager passes its sockets blocking and inheritable. */
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0) {
		snprintf(err, errlen, "%s (descriptor %d): fcntl: %s", origin, fd, strerror(errno));
		return -1;
	}
	l->io.fd = fd;
	l->io.cb = on_accept;
	if (loop_io_add(server.loop, &l->io, started ? EPOLLIN : 0) < 0) {
		l->io.fd = -1;
		snprintf(err, errlen, "%s (descriptor %d): epoll: %s", origin, fd, strerror(errno));
		return -1;
	}
	log_info("listening on %s (%s), %s", lc->text, proto_text(lc), origin);
	return 0;
}

int
listeners_open(char *err, size_t errlen)
{
	if (listeners_prepare(err, errlen) < 0)
		return -1;
	for (size_t i = 0; i < n_listeners; i++) {
		if (listeners[i].io.fd >= 0)
			continue;	/* adopted, already open */
		if (open_one(&listeners[i], err, errlen) < 0) {
			listeners_close();
			return -1;
		}
		log_info("listening on %s (%s)", listeners[i].cfg->text, proto_text(listeners[i].cfg));
	}
	reserve_spare_fd();
	return 0;
}

void
listeners_close(void)
{
	for (size_t i = 0; i < n_listeners; i++) {
		if (listeners[i].io.fd < 0)
			continue;
		loop_io_del(server.loop, &listeners[i].io);
		close(listeners[i].io.fd);
		listeners[i].io.fd = -1;
	}
	free(listeners);
	listeners = NULL;
	n_listeners = 0;
	loop_timer_cancel(server.loop, &resume_timer);
	loop_timer_cancel(server.loop, &spare_timer);
	if (spare_fd >= 0)
		close(spare_fd);
	spare_fd = -1;
	paused = false;
	started = false;
}

void
listeners_start(void)
{
	if (started)
		return;
	started = true;
	if (paused)
		return;
	for (size_t i = 0; i < n_listeners; i++)
		if (listeners[i].io.fd >= 0)
			loop_io_mod(server.loop, &listeners[i].io, EPOLLIN);
}

bool
listeners_paused(void)
{
	return paused;
}

static void
on_resume_timer(struct loop_timer *t)
{
	(void)t;
	if (server.n_peeking < server.cfg.max_peeking)
		listeners_resume();
	else
		loop_timer_arm(server.loop, &resume_timer, EMFILE_PAUSE_MS);
}

void
listeners_pause(const char *why, unsigned resume_after_ms)
{
	if (!paused) {
		log_warnx("not accepting new connections: %s", why);
		for (size_t i = 0; i < n_listeners; i++)
			if (listeners[i].io.fd >= 0)
				loop_io_mod(server.loop, &listeners[i].io, 0);
		paused = true;
	}
	if (resume_after_ms > 0) {
		resume_timer.cb = on_resume_timer;
		loop_timer_arm(server.loop, &resume_timer, resume_after_ms);
	}
}

void
listeners_resume(void)
{
	if (!paused)
		return;
	/* The spare first: a descriptor that just came free (a connection
	 * finished) would otherwise go to the next client in the backlog. */
	reserve_spare_fd();
	for (size_t i = 0; i < n_listeners && started; i++)
		if (listeners[i].io.fd >= 0)
			loop_io_mod(server.loop, &listeners[i].io, EPOLLIN);
	paused = false;
	loop_timer_cancel(server.loop, &resume_timer);
	log_info("accepting new connections again");
}

static void
handle_fd_exhaustion(struct listener *l)
{
	if (spare_fd >= 0) {
		close(spare_fd);
		spare_fd = -1;
		int fd = accept4(l->io.fd, NULL, NULL, SOCK_CLOEXEC);
		if (fd >= 0) {
			close(fd);
			log_warnx("out of file descriptors: closed one waiting connection on %s with the spare descriptor",
				  l->cfg->text);
		}
		/* Taken back by its timer, whatever ends the pause. */
		spare_timer.cb = on_spare_timer;
		loop_timer_arm(server.loop, &spare_timer, EMFILE_PAUSE_MS);
	}
	listeners_pause("out of file descriptors", EMFILE_PAUSE_MS);
}

static void
on_accept(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	struct listener *l = container_of(io, struct listener, io);
	for (int i = 0; i < ACCEPT_BATCH && !paused; i++) {
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof(peer);
		int fd = accept4(io->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			switch (errno) {
			case EAGAIN:
			case EINTR:
				return;
			case EMFILE:
			case ENFILE:
			case ENOBUFS:
			case ENOMEM:
				handle_fd_exhaustion(l);
				return;
			case ECONNABORTED:
			case EPERM:	/* firewall verdicts surface here */
			case EPROTO:
				continue;
			default:
				log_warn("accept on %s", l->cfg->text);
				return;
			}
		}
		conn_accepted(l, fd, &peer, peer_len);
	}
}
