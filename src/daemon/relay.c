/* relay.c - two-way byte relay: splice() through pipes borrowed only while bytes are in flight, copy as a fallback, half-close aware; the relays' descriptor budget. */
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <sys/queue.h>
#include <sys/socket.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "relay.h"
#include "server.h"

#define RELAY_CHUNK	65536	/* one pipe's default capacity */
#define RELAY_BUDGET	16	/* moves per direction before yielding to other descriptors */
#define PIPE_POOL_MAX	16	/* empty pipes kept for the next relay that has bytes to move */
#define RESERVE_MIN	32	/* descriptors never given to relays, however small the limit */
#define RESERVE_MAX	4096	/* a quarter of a large limit is more than non-relay work needs */

/*
 * One direction: bytes flow from -> (pipe or buf) -> to. The pipe (or,
 * when no pipe can be had, the buffer) is held only while bytes are in
 * flight: an idle relay holds its two sockets and nothing else.
 */
struct relay_dir {
	int from, to;
	int pipe_r, pipe_w;	/* -1 unless bytes are in flight through a pipe */
	uint8_t *buf;		/* bytes in flight through user space */
	bool copy_only;		/* splice() refused this pair: always copy */
	size_t buf_off;
	size_t pending;		/* read but not yet written */
	bool read_eof;
	bool write_shut;
	uint64_t bytes;
};

struct relay {
	struct loop_io client_io;
	struct loop_io server_io;
	struct loop_timer timer;	/* idle check, or "continue pumping" */
	struct relay_dir up, down;
	uint64_t started_us;
	uint64_t last_activity_ms;
	unsigned idle_timeout_ms;
	bool more_work;			/* a budget ran out with bytes still moving */
	bool finished;
	relay_done_fn done;
	void *done_arg;
	TAILQ_ENTRY(relay) link;
};

static TAILQ_HEAD(, relay) dead_relays = TAILQ_HEAD_INITIALIZER(dead_relays);
static unsigned n_active;

/* Descriptors held for relays: sockets of relays and of connects to TCP
 * targets, and pipes (in use or pooled). Never more than fd_limit. */
static unsigned long fds_held;
static unsigned long fd_limit = (unsigned long)-1;

/* Empty pipes ready for reuse: [0] read end, [1] write end. */
static int pipe_pool[PIPE_POOL_MAX][2];
static unsigned pipe_pool_n;

static void relay_finish(struct relay *r, const char *why);

void
relay_budget_init(unsigned long nofile)
{
	unsigned long reserve = nofile / 4;
	if (reserve < RESERVE_MIN)
		reserve = RESERVE_MIN;
	if (reserve > RESERVE_MAX)
		reserve = RESERVE_MAX;
	fd_limit = nofile > reserve ? nofile - reserve : 0;
	log_info("relays may hold up to %lu descriptors; %lu stay in reserve for everything else",
		 fd_limit, nofile - fd_limit);
}

bool
relay_fds_claim(unsigned n)
{
	if (fds_held + n > fd_limit)
		return false;
	fds_held += n;
	return true;
}

void
relay_fds_release(unsigned n)
{
	fds_held -= n;
}

/* A pipe for one direction: from the pool, else a new one if the budget
 * and the process allow. */
static bool
dir_take_pipe(struct relay_dir *d)
{
	if (pipe_pool_n > 0) {
		pipe_pool_n--;
		d->pipe_r = pipe_pool[pipe_pool_n][0];
		d->pipe_w = pipe_pool[pipe_pool_n][1];
		return true;
	}
	if (!relay_fds_claim(2))
		return false;
	int p[2];
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0) {
		relay_fds_release(2);
		return false;
	}
	d->pipe_r = p[0];
	d->pipe_w = p[1];
	return true;
}

/* An empty pipe goes back to the pool, or is closed when the pool is full. */
static void
dir_put_pipe(struct relay_dir *d)
{
	if (d->pipe_r < 0)
		return;
	if (pipe_pool_n < PIPE_POOL_MAX) {
		pipe_pool[pipe_pool_n][0] = d->pipe_r;
		pipe_pool[pipe_pool_n][1] = d->pipe_w;
		pipe_pool_n++;
	} else {
		close(d->pipe_r);
		close(d->pipe_w);
		relay_fds_release(2);
	}
	d->pipe_r = d->pipe_w = -1;
}

/* Give back what carried the bytes once none are in flight. A pipe that
 * still holds bytes (relay ending mid-transfer) is closed, never pooled. */
static void
dir_release(struct relay_dir *d)
{
	if (d->pending > 0 && d->pipe_r >= 0) {
		close(d->pipe_r);
		close(d->pipe_w);
		relay_fds_release(2);
		d->pipe_r = d->pipe_w = -1;
	}
	dir_put_pipe(d);
	free(d->buf);
	d->buf = NULL;
}

void
relay_pipes_close(void)
{
	while (pipe_pool_n > 0) {
		pipe_pool_n--;
		close(pipe_pool[pipe_pool_n][0]);
		close(pipe_pool[pipe_pool_n][1]);
		relay_fds_release(2);
	}
}

/* Before reading: a pipe if splice() may be used and one can be had, else a
 * buffer (splice() refused this pair, or no descriptor is left for a pipe). */
static bool
dir_take_carrier(struct relay_dir *d)
{
	if (d->pipe_r >= 0 || d->buf != NULL)
		return true;
	if (!d->copy_only && dir_take_pipe(d))
		return true;
	d->buf = malloc(RELAY_CHUNK);
	return d->buf != NULL;
}

/* splice() refuses some descriptor pairs (EINVAL); copying through a
 * bounded buffer works for any stream. Only switched while the pipe is empty. */
static bool
dir_switch_to_copy(struct relay_dir *d)
{
	if (d->pending > 0 || d->buf != NULL)
		return false;
	d->copy_only = true;
	dir_put_pipe(d);
	d->buf = malloc(RELAY_CHUNK);
	return d->buf != NULL;
}

static ssize_t
dir_fill(struct relay_dir *d)
{
	if (d->buf != NULL) {
		ssize_t n = recv(d->from, d->buf, RELAY_CHUNK, MSG_DONTWAIT);
		if (n > 0)
			d->buf_off = 0;
		return n;
	}
	return splice(d->from, NULL, d->pipe_w, NULL, RELAY_CHUNK, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

static ssize_t
dir_drain(struct relay_dir *d)
{
	if (d->buf != NULL)
		return send(d->to, d->buf + d->buf_off, d->pending, MSG_DONTWAIT | MSG_NOSIGNAL);
	return splice(d->pipe_r, NULL, d->to, NULL, d->pending, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
}

/* Move what can move now. Returns false (with *why) on a fatal error. */
static bool
dir_pump(struct relay *r, struct relay_dir *d, const char **why)
{
	for (int i = 0; i < RELAY_BUDGET; i++) {
		if (d->pending > 0) {
			ssize_t n = dir_drain(d);
			if (n < 0) {
				if (errno == EAGAIN || errno == EINTR)
					return true;	/* the reader is slow: wait for EPOLLOUT */
				*why = errno == EPIPE || errno == ECONNRESET ? "connection reset" : "write failed";
				return false;
			}
			d->pending -= (size_t)n;
			d->buf_off += (size_t)n;
			d->bytes += (uint64_t)n;
			r->last_activity_ms = loop_now_ms();
			if (d->pending == 0)
				dir_release(d);
			continue;
		}
		if (d->read_eof) {
			if (!d->write_shut) {
				/* Pass the half-close on; the other direction keeps going. */
				shutdown(d->to, SHUT_WR);
				d->write_shut = true;
			}
			return true;
		}
		if (!dir_take_carrier(d)) {
			*why = "out of memory";
			return false;
		}
		ssize_t n = dir_fill(d);
		if (n <= 0)
			d->pending = 0;
		if (n == 0) {
			d->read_eof = true;
			dir_release(d);
			continue;
		}
		if (n < 0) {
			int err = errno;
			if (err == EINVAL && d->buf == NULL && dir_switch_to_copy(d))
				continue;
			dir_release(d);
			if (err == EAGAIN || err == EINTR)
				return true;
			*why = err == ECONNRESET ? "connection reset" : "read failed";
			return false;
		}
		d->pending = (size_t)n;
		r->last_activity_ms = loop_now_ms();
	}
	r->more_work = true;
	return true;
}

static void
relay_pump(struct relay *r)
{
	const char *why = NULL;
	r->more_work = false;
	if (!dir_pump(r, &r->up, &why) || !dir_pump(r, &r->down, &why)) {
		relay_finish(r, why);
		return;
	}
	if (r->up.write_shut && r->down.write_shut) {
		relay_finish(r, NULL);
		return;
	}
	/* Edge-triggered descriptors will not report again what we left
	 * unread, so a budget that ran out continues from a 0 ms timer. */
	if (r->more_work)
		loop_timer_arm(server.loop, &r->timer, 0);
}

static void
on_timer(struct loop_timer *t)
{
	struct relay *r = container_of(t, struct relay, timer);
	if (r->more_work) {
		relay_pump(r);
		if (r->finished || r->more_work)
			return;
	}
	uint64_t idle = loop_now_ms() - r->last_activity_ms;
	if (idle >= r->idle_timeout_ms) {
		relay_finish(r, "idle timeout");
		return;
	}
	loop_timer_arm(server.loop, &r->timer, r->idle_timeout_ms - idle);
}

static void
on_client_event(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	relay_pump(container_of(io, struct relay, client_io));
}

static void
on_server_event(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	relay_pump(container_of(io, struct relay, server_io));
}

struct relay *
relay_start(int client_fd, int server_fd, unsigned idle_timeout_ms, relay_done_fn done, void *arg)
{
	struct relay *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	r->up.pipe_r = r->up.pipe_w = r->down.pipe_r = r->down.pipe_w = -1;
	r->up.from = r->down.to = client_fd;
	r->up.to = r->down.from = server_fd;
	r->client_io.fd = client_fd;
	r->client_io.cb = on_client_event;
	r->server_io.fd = server_fd;
	r->server_io.cb = on_server_event;
	r->timer.cb = on_timer;
	r->idle_timeout_ms = idle_timeout_ms;
	r->started_us = loop_now_us();
	r->last_activity_ms = loop_now_ms();
	r->done = done;
	r->done_arg = arg;
	/* Forward each write as it comes. The endpoints made their own
	 * choices about small segments; with Nagle's algorithm the relay would
	 * hold a small segment back until the previous one is acknowledged,
	 * and the peer's delayed acknowledgement makes that up to 40 ms. Both
	 * sockets are the relay's own, so nothing needs restoring. */
	const int on = 1;
	setsockopt(client_fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	setsockopt(server_fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof(on));
	const uint32_t ev = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;
	if (loop_io_add(server.loop, &r->client_io, ev) < 0)
		goto fail;
	if (loop_io_add(server.loop, &r->server_io, ev) < 0) {
		loop_io_del(server.loop, &r->client_io);
		goto fail;
	}
	loop_timer_arm(server.loop, &r->timer, idle_timeout_ms);
	n_active++;
	return r;
fail:
	free(r);
	return NULL;
}

static void
relay_finish(struct relay *r, const char *why)
{
	if (r->finished)
		return;
	r->finished = true;
	n_active--;
	loop_timer_cancel(server.loop, &r->timer);
	loop_io_del(server.loop, &r->client_io);
	loop_io_del(server.loop, &r->server_io);
	close(r->client_io.fd);
	close(r->server_io.fd);
	r->client_io.fd = r->server_io.fd = -1;
	relay_fds_release(2);	/* the sockets' claim, made before the connect */
	dir_release(&r->up);
	dir_release(&r->down);
	struct relay_stats stats = {
		.bytes_up = r->up.bytes,
		.bytes_down = r->down.bytes,
		.duration_us = loop_now_us() - r->started_us,
	};
	TAILQ_INSERT_TAIL(&dead_relays, r, link);
	r->done(r->done_arg, why, &stats);
}

void
relay_abort(struct relay *r, const char *why)
{
	relay_finish(r, why);
}

void
relays_reap(void)
{
	struct relay *r;
	while ((r = TAILQ_FIRST(&dead_relays)) != NULL) {
		TAILQ_REMOVE(&dead_relays, r, link);
		free(r);
	}
}

unsigned
relays_active(void)
{
	return n_active;
}
