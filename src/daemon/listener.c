/* listener.c - bind or adopt the configured TCP listeners, keep them across reloads, accept in batches, survive EMFILE. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <unistd.h>

#include "conn.h"
#include "generation.h"
#include "listener.h"
#include "log.h"
#include "net.h"
#include "server.h"
#include "stats.h"
#include "workers.h"

/* How long to stop accepting when the process is out of descriptors. */
#define EMFILE_PAUSE_MS 1000

static bool paused;
/* Listeners are watched without events until listeners_start: no client is
 * accepted (it waits in the backlog) before the upstreams that were there
 * at start are known. */
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

/* Whether the loop watches the listening sockets for new connections:
 * once started, while not paused, and unless threads accept (workers.h). */
static uint32_t
accept_events(void)
{
	return started && !paused && !workers_accepting() ? EPOLLIN : 0;
}

/* The current generation's listeners. */
static struct listener *
current(size_t *n)
{
	*n = server.gen != NULL ? server.gen->n_listeners : 0;
	return server.gen != NULL ? server.gen->listeners : NULL;
}

/* Same family, address and port. A listen line never names an IPv6 scope,
 * so the scope is not compared. */
static bool
same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	if (a->ss_family != b->ss_family)
		return false;
	if (a->ss_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)(const void *)a;
		const struct sockaddr_in *y = (const struct sockaddr_in *)(const void *)b;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	if (a->ss_family == AF_INET6) {
		const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)(const void *)a;
		const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)(const void *)b;
		return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
	}
	return false;
}

static const char *
proto_text(const struct config_listener *lc)
{
	return lc->proto == LISTENER_TLS ? "tls" : lc->proto == LISTENER_HTTP ? "http" : "detect";
}

static struct listener *
listeners_alloc(const struct config *cfg, struct config_gen *g)
{
	g->listeners = calloc(cfg->n_listeners ? cfg->n_listeners : 1, sizeof(*g->listeners));
	if (g->listeners == NULL)
		return NULL;
	g->n_listeners = cfg->n_listeners;
	for (size_t i = 0; i < g->n_listeners; i++) {
		g->listeners[i].cfg = &cfg->listeners[i];
		g->listeners[i].gen = g;
		g->listeners[i].io.fd = -1;
		/* Fresh counters; a kept address takes its predecessor's at commit. */
		if ((g->listeners[i].stats = stats_listener_new()) == NULL)
			return NULL;	/* the generation's free releases what was allocated */
	}
	return g->listeners;
}

int
listeners_create(char *err, size_t errlen)
{
	if (server.gen->listeners != NULL)
		return 0;
	if (listeners_alloc(&server.cfg, server.gen) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	return 0;
}

/* Where a socket no line names goes (enum listener_adopt_policy). */
static int
adopt_unnamed(int fd, const char *origin, const char *text, enum listener_adopt_policy policy, char *err,
	      size_t errlen)
{
	if (policy == ADOPT_UNNAMED_CLOSES) {
		log_info("closing the listening socket %s from %s: no 'listen' line names it now", text, origin);
		close(fd);
		return 0;
	}
	snprintf(err, errlen, "%s: %s is bound to %s, which no 'listen' line names "
		 "(add 'listen %s tls|http' to the configuration or stop passing this socket)",
		 server.cfg.source, origin, text, text);
	return -1;
}

int
listener_adopt(int fd, const char *origin, enum listener_adopt_policy policy, char *err, size_t errlen)
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
	size_t n;
	struct listener *ls = current(&n), *l = NULL;
	for (size_t i = 0; i < n && l == NULL; i++)
		if (same_address(&addr, &ls[i].cfg->addr))
			l = &ls[i];
	if (l == NULL)
		return adopt_unnamed(fd, origin, text, policy, err, errlen);
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
			if (policy == ADOPT_UNNAMED_FAILS) {
				snprintf(err, errlen, "%s:%d: %s for %s has v6only %s, the listen line says %s "
					 "(make BindIPv6Only= agree with the listen line)", server.cfg.source,
					 lc->line, origin, lc->text, v6only == 1 ? "on" : "off",
					 lc->v6only ? "on" : "off");
				return -1;
			}
			/* Handed over: the old daemon still holds the address, so
			 * no new socket can be bound; as with a reload, the socket
			 * is kept. */
			log_warnx("%s:%d: v6only of %s changes only when the address is removed and added back, "
				  "or at a restart (its socket is kept)", server.cfg.source, lc->line, lc->text);
		}
	}
	/* A service manager passes its sockets blocking and inheritable. A
	 * handed-over socket takes the configuration's backlog, as a kept one
	 * does at a reload; a service manager's keeps its Backlog=. */
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0 || fcntl(fd, F_SETFD, FD_CLOEXEC) < 0 ||
	    (policy == ADOPT_UNNAMED_CLOSES && listen(fd, lc->backlog) < 0)) {
		snprintf(err, errlen, "%s (descriptor %d): %s: %s", origin, fd,
			 flags < 0 ? "fcntl" : "fcntl or listen", strerror(errno));
		return -1;
	}
	l->io.fd = fd;
	log_info("listening on %s (%s), %s", lc->text, proto_text(lc), origin);
	return 1;
}

/* A new listening socket for lc, not yet watched. Returns the descriptor,
 * or -1 with one line in err. */
static int
bind_socket(const struct config_listener *lc, const char *source, char *err, size_t errlen)
{
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
	log_info("listening on %s (%s)", lc->text, proto_text(lc));
	return fd;
fail:
	snprintf(err, errlen, "%s:%d: cannot listen on %s: %s%s", source, lc->line,
		 lc->text, strerror(errno),
		 errno == EADDRINUSE ? " (another program holds this port; stop it or change the address)" :
		 errno == EACCES ? " (ports below 1024 need root or CAP_NET_BIND_SERVICE)" : "");
	if (fd >= 0)
		close(fd);
	return -1;
}

/* Start watching l's socket: accepting once the daemon has started and
 * while not paused (listeners_start and listeners_resume turn it on). */
static int
watch(struct listener *l)
{
	/* Set (or cleared) on every socket, kept, adopted or new, so that the
	 * socket does what the configuration in force says. */
	int defer = (int)l->cfg->defer_accept_s;
	if (setsockopt(l->io.fd, IPPROTO_TCP, TCP_DEFER_ACCEPT, &defer, sizeof(defer)) < 0)
		log_warn("cannot set defer-accept on %s", l->cfg->text);
	l->io.cb = on_accept;
	return loop_io_add(server.loop, &l->io, accept_events());
}

int
listeners_open(char *err, size_t errlen)
{
	if (listeners_create(err, errlen) < 0)
		return -1;
	struct listener *ls = server.gen->listeners;
	for (size_t i = 0; i < server.gen->n_listeners; i++) {
		if (ls[i].io.fd < 0)	/* else adopted, already open */
			ls[i].io.fd = bind_socket(ls[i].cfg, server.cfg.source, err, errlen);
		if (ls[i].io.fd < 0 || watch(&ls[i]) < 0) {
			if (ls[i].io.fd >= 0)
				snprintf(err, errlen, "epoll: %s", strerror(errno));
			listeners_close();
			return -1;
		}
	}
	reserve_spare_fd();
	return 0;
}

static void
close_listener(struct listener *l)
{
	if (l->io.fd < 0)
		return;
	loop_io_del(server.loop, &l->io);
	close(l->io.fd);
	l->io.fd = -1;
}

void
listeners_close(void)
{
	size_t n;
	struct listener *ls = current(&n);
	for (size_t i = 0; i < n; i++)
		close_listener(&ls[i]);
	loop_timer_cancel(server.loop, &resume_timer);
	loop_timer_cancel(server.loop, &spare_timer);
	if (spare_fd >= 0)
		close(spare_fd);
	spare_fd = -1;
	paused = false;
	started = false;
	workers_set_accepting(false);
	workers_stop();
}

void
listeners_rewatch(void)
{
	size_t n;
	struct listener *ls = current(&n);
	for (size_t i = 0; i < n; i++)
		if (ls[i].io.fd >= 0)
			loop_io_mod(server.loop, &ls[i].io, accept_events());
}

void
listeners_start(void)
{
	if (started)
		return;
	started = true;
	workers_set_accepting(!paused);
	listeners_rewatch();
}

/* The current listener on lc's address, if any. */
static struct listener *
find_current(const struct config_listener *lc)
{
	size_t n;
	struct listener *ls = current(&n);
	for (size_t i = 0; i < n; i++)
		if (ls[i].io.fd >= 0 && same_address(&ls[i].cfg->addr, &lc->addr))
			return &ls[i];
	return NULL;
}

int
listeners_prepare(const struct config *cfg, struct config_gen *next, char *err, size_t errlen)
{
	if (listeners_alloc(cfg, next) == NULL) {
		snprintf(err, errlen, "out of memory");
		return -1;
	}
	for (size_t i = 0; i < next->n_listeners; i++) {
		struct listener *l = &next->listeners[i];
		if (find_current(l->cfg) != NULL)
			continue;	/* keeps its socket at commit */
		l->io.fd = bind_socket(l->cfg, cfg->source, err, errlen);
		if (l->io.fd < 0) {
			listeners_unprepare(next);
			return -1;
		}
	}
	return 0;
}

void
listeners_unprepare(struct config_gen *next)
{
	for (size_t i = 0; i < next->n_listeners; i++) {
		if (next->listeners[i].io.fd >= 0)
			close(next->listeners[i].io.fd);
		next->listeners[i].io.fd = -1;
	}
}

void
listeners_commit(struct config_gen *old, struct config_gen *next)
{
	for (size_t i = 0; i < next->n_listeners; i++) {
		struct listener *l = &next->listeners[i];
		if (l->io.fd < 0) {
			/* Kept: the very same socket, never closed, so nothing
			 * waiting in its backlog is lost. */
			struct listener *was = NULL;
			for (size_t k = 0; k < old->n_listeners && was == NULL; k++)
				if (old->listeners[k].io.fd >= 0 &&
				    same_address(&old->listeners[k].cfg->addr, &l->cfg->addr))
					was = &old->listeners[k];
			if (was == NULL)
				continue;	/* cannot happen: prepare found it */
			loop_io_del(server.loop, &was->io);
			l->io.fd = was->io.fd;
			was->io.fd = -1;
			/* The same socket counts on: both listeners refer to
			 * its counters, the old one for its connections. */
			stats_listener_release(l->stats);
			l->stats = stats_listener_hold(was->stats);
			if (was->cfg->backlog != l->cfg->backlog && listen(l->io.fd, l->cfg->backlog) < 0)
				log_warn("cannot change the backlog of %s", l->cfg->text);
			if (was->cfg->v6only != l->cfg->v6only)
				log_warnx("%s:%d: v6only of %s changes only when the address is removed and added "
					  "back, or at a restart (its socket is kept)", server.cfg.source,
					  l->cfg->line, l->cfg->text);
		}
		if (watch(l) < 0)
			log_warn("cannot watch the listener %s", l->cfg->text);
	}
	workers_listeners_changed();
	for (size_t k = 0; k < old->n_listeners; k++) {
		struct listener *l = &old->listeners[k];
		if (l->io.fd < 0)
			continue;
		/* Removed. What already waits in its backlog is served first
		 * (under the old generation), then the socket closes (once the
		 * accepting threads, told above, have let go of their copies). */
		if (started && !paused)
			on_accept(&l->io, EPOLLIN);
		close_listener(l);
		log_info("stopped listening on %s (no longer configured)", l->cfg->text);
	}
}

void
listeners_foreach_socket(void (*fn)(int fd, const struct config_listener *lc, void *arg), void *arg)
{
	size_t n;
	struct listener *ls = current(&n);
	for (size_t i = 0; i < n; i++)
		if (ls[i].io.fd >= 0)
			fn(ls[i].io.fd, ls[i].cfg, arg);
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
		paused = true;
		workers_set_accepting(false);
		listeners_rewatch();
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
	paused = false;
	workers_set_accepting(started);
	listeners_rewatch();
	loop_timer_cancel(server.loop, &resume_timer);
	log_info("accepting new connections again");
}

enum accept_step
listener_accept_step(int err)
{
	switch (err) {
	case EAGAIN:
	case EINTR:
		return ACCEPT_DONE;
	case EMFILE:
	case ENFILE:
	case ENOBUFS:
	case ENOMEM:
		return ACCEPT_EXHAUSTED;
	case ECONNABORTED:
	case EPERM:	/* firewall verdicts surface here */
	case EPROTO:
		return ACCEPT_NEXT;
	default:
		return ACCEPT_ERROR;
	}
}

void
listener_out_of_descriptors(struct listener *l)
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
	for (int i = 0; i < LISTENER_ACCEPT_BATCH && !paused; i++) {
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof(peer);
		int fd = accept4(io->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0) {
			switch (listener_accept_step(errno)) {
			case ACCEPT_NEXT:
				continue;
			case ACCEPT_DONE:
				return;
			case ACCEPT_EXHAUSTED:
				listener_out_of_descriptors(l);
				return;
			case ACCEPT_ERROR:
				log_warn("accept on %s", l->cfg->text);
				return;
			}
		}
		conn_accepted(l, fd, &peer, peer_len);
	}
}
