/* workers.c - accepting threads: accept, peek and hand off at the first look; everything else goes to the event loop under the daemon lock. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include "conn.h"
#include "generation.h"
#include "listener.h"
#include "log.h"
#include "loop.h"
#include "net.h"
#include "route.h"
#include "server.h"
#include "upstream.h"
#include "workers.h"

/*
 * Design (docs/architecture.md, "More than one core"). All threads accept
 * from the same listening sockets: each has its own epoll with its own
 * duplicate of every listening descriptor, registered EPOLLEXCLUSIVE, so
 * that the kernel wakes one idle thread per connection rather than all of
 * them. The sockets are the daemon's usual ones, so a reload that keeps an
 * address, socket activation and an upgrade's handover work as with one
 * loop, and no connection waits in a queue that a closing socket would
 * drop (as one SO_REUSEPORT socket per thread would).
 *
 * A thread decides, outside the lock: accept4, one recv(MSG_PEEK), the
 * parser. Under the lock it asks the loop's routing for a local upstream
 * and reserves that upstream's socket; outside again it sends the
 * descriptor; under the lock it counts. Anything else (bytes still to
 * come, a PROXY header, a detect listener, a refusal, a relay, a busy or
 * vanished upstream) goes to the loop as a connection the loop had
 * accepted itself, which peeks again and takes it from there.
 */

/* Adaptive: a thread's steps under the lock take well under a
 * microsecond, so a thread that finds it taken spins a little before it
 * sleeps in the kernel. */
static pthread_mutex_t daemon_mutex = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP;

#define WAKE_TAG UINT64_MAX	/* epoll data of a thread's wake-up eventfd */
#define WORKER_EVENTS 64

/* A thread's own duplicate of one current listening socket. */
struct worker_listener {
	int fd;
	struct listener *listener;	/* of gen, which the thread holds */
};

struct worker {
	unsigned slot;			/* index into counts */
	pthread_t thread;
	int epfd;
	int wake_fd;			/* the loop writes here when anything changed */
	atomic_bool stop;
	/* The rest is the thread's own. */
	struct worker_listener *listeners;
	size_t n_listeners;
	unsigned listeners_version;	/* of listeners_version when copied; 0 = none */
	struct config_gen *gen;		/* held (under the lock) for listeners[].listener */
	bool watching;			/* listeners registered in epfd */
	struct conn conn;		/* the connection being looked at */
	char upstream_id[NAME_MAX + 1];
	uint8_t peek_buf[PEEK_MAX];
	struct worker *next;		/* in running or stopping (the loop's lists) */
};

/* The loop's thread only. */
static struct worker *running, *stopping;
static unsigned n_running;
static struct loop_io wake_io = { .fd = -1 };

/* Read by the threads without the lock. */
static atomic_uint listeners_version = 1;
static atomic_bool accepting_allowed;

/* Under the lock. */
static struct worker_counts counts[WORKERS_MAX];
static size_t n_slots_used;

void
daemon_lock(void)
{
	pthread_mutex_lock(&daemon_mutex);
}

void
daemon_unlock(void)
{
	pthread_mutex_unlock(&daemon_mutex);
}

static void
nudge(int fd)
{
	uint64_t one = 1;
	ssize_t n = write(fd, &one, sizeof(one));
	(void)n;	/* a full counter still wakes the reader */
}

static void
drain(int fd)
{
	uint64_t value;
	ssize_t n = read(fd, &value, sizeof(value));
	(void)n;
}

void
workers_wake_loop(void)
{
	if (wake_io.fd >= 0)
		nudge(wake_io.fd);
}

static void
on_wake(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	drain(io->fd);	/* waking was the point: timers and reaping follow */
}

static void set_watching(struct worker *w, bool on);

/* Stop watching and close the thread's copies. */
static void
drop_listeners(struct worker *w)
{
	if (w->watching)
		set_watching(w, false);
	for (size_t i = 0; i < w->n_listeners; i++)
		close(w->listeners[i].fd);
	free(w->listeners);
	w->listeners = NULL;
	w->n_listeners = 0;
}

/* Copy the current generation's listening sockets (thread side). */
static void
copy_listeners(struct worker *w)
{
	drop_listeners(w);
	daemon_lock();
	gen_release(w->gen);
	w->gen = NULL;
	w->listeners_version = atomic_load(&listeners_version);
	struct config_gen *g = server.gen;
	if (g != NULL && g->n_listeners > 0 && (w->listeners = calloc(g->n_listeners, sizeof(*w->listeners))) != NULL) {
		w->gen = gen_hold(g);
		for (size_t i = 0; i < g->n_listeners; i++) {
			struct listener *l = &g->listeners[i];
			int fd = l->io.fd >= 0 ? fcntl(l->io.fd, F_DUPFD_CLOEXEC, 0) : -1;
			if (l->io.fd >= 0 && fd < 0)
				log_warn("worker %u: cannot copy the listening socket %s", w->slot + 1, l->cfg->text);
			if (fd < 0)
				continue;
			w->listeners[w->n_listeners].fd = fd;
			w->listeners[w->n_listeners].listener = l;
			w->n_listeners++;
		}
	}
	daemon_unlock();
}

static void
set_watching(struct worker *w, bool on)
{
	for (size_t i = 0; i < w->n_listeners; i++) {
		if (!on) {
			epoll_ctl(w->epfd, EPOLL_CTL_DEL, w->listeners[i].fd, NULL);
			continue;
		}
		/* EPOLLEXCLUSIVE: one waiting thread is woken per event. The
		 * version tells a stale event (from copies since replaced). */
		struct epoll_event ev = { .events = EPOLLIN | EPOLLEXCLUSIVE };
		ev.data.u64 = (uint64_t)w->listeners_version << 32 | (uint32_t)i;
		if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->listeners[i].fd, &ev) < 0)
			log_warn("worker %u: cannot watch %s", w->slot + 1, w->listeners[i].listener->cfg->text);
	}
	w->watching = on;
}

/*
 * Try to hand c off at its first look, as the loop's fast path does: the
 * hello or request is whole, the route has only local upstreams and one
 * has room. Returns false with c's descriptor untouched otherwise, and
 * *decided true if the parser had decided (its answer is in c).
 */
static bool
hand_off_at_once(struct worker *w, struct conn *c, bool *decided)
{
	const struct config_listener *lc = c->listener->cfg;
	*decided = false;
	if (lc->proto == LISTENER_DETECT || lc->n_trusted > 0)
		return false;	/* the loop's steps: detection, PROXY headers */
	ssize_t n = recv(c->io.fd, w->peek_buf, sizeof(w->peek_buf), MSG_PEEK | MSG_DONTWAIT);
	if (n <= 0)
		return false;
	enum peek_status st = conn_parse(c, w->peek_buf, (size_t)n);
	if (st != PEEK_FOUND && st != PEEK_NO_NAME)
		return false;
	*decided = true;

	daemon_lock();
	struct target *t = route_pick_at_once(c);
	int sock = t != NULL ? upstream_send_begin(t, w->upstream_id, sizeof(w->upstream_id)) : -1;
	daemon_unlock();
	if (sock < 0)
		return false;
	enum send_result result = upstream_send_on(sock, c);
	bool sent = result == SEND_OK;
	daemon_lock();
	upstream_send_end(t, result);
	if (sent) {
		conn_count_handed_off_at_once(c, w->upstream_id);
		counts[w->slot].handed_off++;
	}
	daemon_unlock();
	if (!sent)
		return false;	/* full, gone or failing: the loop knows what to do */
	close(c->io.fd);
	conn_log_handed_off(c, w->upstream_id);
	return true;
}

static void
take(struct worker *w, struct listener *l, int fd, const struct sockaddr_storage *peer, socklen_t peer_len)
{
	struct conn *c = &w->conn;
	memset(c, 0, sizeof(*c));
	c->io.fd = fd;
	c->server_io.fd = -1;
	c->listener = l;
	c->proto = (enum client_proto)l->cfg->proto;
	c->peer = *peer;
	c->peer_len = peer_len;
	c->accepted_us = loop_now_us();
	c->accepted_real_us = net_realtime_us();
	bool decided;
	if (hand_off_at_once(w, c, &decided))
		return;
	daemon_lock();
	counts[w->slot].passed++;
	conn_take_over(c, decided);
	/* Its descriptors wake the loop by themselves; only a timer due
	 * before the loop's wait ends needs a nudge (most are seconds away). */
	bool wake = loop_wakes_too_late(server.loop);
	daemon_unlock();
	if (wake)
		workers_wake_loop();
}

static void
accept_batch(struct worker *w, struct worker_listener *wl)
{
	for (int i = 0; i < LISTENER_ACCEPT_BATCH; i++) {
		if (!atomic_load_explicit(&accepting_allowed, memory_order_relaxed) || atomic_load(&w->stop))
			return;
		struct sockaddr_storage peer;
		socklen_t peer_len = sizeof(peer);
		int fd = accept4(wl->fd, (struct sockaddr *)&peer, &peer_len, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd >= 0) {
			take(w, wl->listener, fd, &peer, peer_len);
			continue;
		}
		switch (listener_accept_step(errno)) {
		case ACCEPT_NEXT:
			continue;
		case ACCEPT_DONE:
			return;
		case ACCEPT_EXHAUSTED:
			daemon_lock();
			listener_out_of_descriptors(wl->listener);
			daemon_unlock();
			workers_wake_loop();
			return;
		case ACCEPT_ERROR:
			log_warn("worker %u: accept on %s", w->slot + 1, wl->listener->cfg->text);
			return;
		}
	}
}

static void *
worker_main(void *arg)
{
	struct worker *w = arg;
	struct epoll_event events[WORKER_EVENTS];
	while (!atomic_load(&w->stop)) {
		if (w->listeners_version != atomic_load(&listeners_version))
			copy_listeners(w);
		bool allowed = atomic_load(&accepting_allowed);
		if (allowed != w->watching)
			set_watching(w, allowed);
		int n = epoll_wait(w->epfd, events, WORKER_EVENTS, -1);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			log_warn("worker %u: epoll_wait", w->slot + 1);
			break;
		}
		for (int i = 0; i < n && !atomic_load(&w->stop); i++) {
			uint64_t tag = events[i].data.u64;
			if (tag == WAKE_TAG) {
				drain(w->wake_fd);
				continue;
			}
			/* Copies since replaced, or listeners changed meanwhile:
			 * the top of the loop takes the new ones first. */
			if (tag >> 32 != w->listeners_version || !w->watching ||
			    atomic_load(&listeners_version) != w->listeners_version)
				continue;
			accept_batch(w, &w->listeners[(uint32_t)tag]);
		}
	}
	drop_listeners(w);
	daemon_lock();
	gen_release(w->gen);
	w->gen = NULL;
	daemon_unlock();
	return NULL;
}

static void
worker_free(struct worker *w)
{
	if (w->epfd >= 0)
		close(w->epfd);
	if (w->wake_fd >= 0)
		close(w->wake_fd);
	free(w);
}

static struct worker *
worker_start(unsigned slot)
{
	struct worker *w = calloc(1, sizeof(*w));
	if (w == NULL)
		return NULL;
	w->slot = slot;
	w->epfd = epoll_create1(EPOLL_CLOEXEC);
	w->wake_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = WAKE_TAG };
	atomic_init(&w->stop, false);
	if (w->epfd < 0 || w->wake_fd < 0 || epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->wake_fd, &ev) < 0) {
		worker_free(w);
		return NULL;
	}
	/* Signals stay blocked (inherited from the loop's thread, which
	 * takes them through its signalfd). */
	int rc = pthread_create(&w->thread, NULL, worker_main, w);
	if (rc != 0) {
		errno = rc;
		worker_free(w);
		return NULL;
	}
	return w;
}

/* Tell every running thread to stop; they are joined when the loop next
 * waits (the lock released: a stopping thread may need it once more). */
static void
stop_running(void)
{
	struct worker *w;
	while ((w = running) != NULL) {
		running = w->next;
		atomic_store(&w->stop, true);
		nudge(w->wake_fd);
		counts[w->slot].running = false;
		w->next = stopping;
		stopping = w;
	}
	n_running = 0;
}

/* The lock not held. */
static void
join_stopping(void)
{
	struct worker *w;
	while ((w = stopping) != NULL) {
		stopping = w->next;
		pthread_join(w->thread, NULL);
		worker_free(w);
	}
}

static void
before_wait(void *arg)
{
	(void)arg;
	daemon_unlock();
	if (stopping != NULL)
		join_stopping();
}

static void
after_wait(void *arg)
{
	(void)arg;
	daemon_lock();
}

int
workers_init(char *err, size_t errlen)
{
	daemon_lock();
	wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	wake_io.cb = on_wake;
	if (wake_io.fd < 0 || loop_io_add(server.loop, &wake_io, EPOLLIN) < 0) {
		snprintf(err, errlen, "handoff: cannot set up the event loop's wake-up: %s", strerror(errno));
		return -1;
	}
	loop_set_wait_hooks(server.loop, before_wait, after_wait, NULL);
	return 0;
}

bool
workers_accepting(void)
{
	return n_running > 0;
}

void
workers_apply(unsigned n)
{
	unsigned want = n >= 2 ? (n <= WORKERS_MAX ? n : WORKERS_MAX) : 0;
	if (want == n_running)
		return;
	stop_running();
	for (unsigned slot = 0; slot < want; slot++) {
		struct worker *w = worker_start(slot);
		if (w == NULL) {
			log_warn("cannot start accepting thread %u of %u", slot + 1, want);
			break;
		}
		w->next = running;
		running = w;
		n_running++;
		counts[slot].running = true;
		if (slot + 1 > n_slots_used)
			n_slots_used = slot + 1;
	}
	if (n_running > 0)
		log_info("%u threads accept new connections", n_running);
	else if (want > 0)
		log_warnx("no accepting thread started: the event loop accepts");
	listeners_rewatch();	/* the loop accepts only without threads */
}

void
workers_listeners_changed(void)
{
	atomic_fetch_add(&listeners_version, 1);
	for (struct worker *w = running; w != NULL; w = w->next)
		nudge(w->wake_fd);
}

void
workers_set_accepting(bool allowed)
{
	if (atomic_load(&accepting_allowed) == allowed)
		return;
	atomic_store(&accepting_allowed, allowed);
	for (struct worker *w = running; w != NULL; w = w->next)
		nudge(w->wake_fd);
}

void
workers_stop(void)
{
	if (n_running == 0)
		return;
	stop_running();
	log_info("accepting threads stopping");
}

void
workers_shutdown(void)
{
	stop_running();
	daemon_unlock();
	join_stopping();
	daemon_lock();
	if (wake_io.fd >= 0) {
		loop_io_del(server.loop, &wake_io);
		close(wake_io.fd);
		wake_io.fd = -1;
	}
}

size_t
workers_counts(struct worker_counts *out, size_t max)
{
	size_t n = n_slots_used < max ? n_slots_used : max;
	memcpy(out, counts, n * sizeof(*out));
	return n;
}
