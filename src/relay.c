/* relay.c - two-way byte relay: splice() through a pipe per direction, copy as a fallback, half-close aware. */
#include <errno.h>
#include <fcntl.h>
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

/* One direction: bytes flow from -> (pipe or buf) -> to. */
struct relay_dir {
	int from, to;
	int pipe_r, pipe_w;	/* -1 in copy mode */
	uint8_t *buf;		/* copy mode only */
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

static void relay_finish(struct relay *r, const char *why);

static int
dir_init(struct relay_dir *d, int from, int to)
{
	int p[2];
	d->from = from;
	d->to = to;
	d->pipe_r = d->pipe_w = -1;
	if (pipe2(p, O_NONBLOCK | O_CLOEXEC) < 0)
		return -1;
	d->pipe_r = p[0];
	d->pipe_w = p[1];
	return 0;
}

static void
dir_release(struct relay_dir *d)
{
	if (d->pipe_r >= 0)
		close(d->pipe_r);
	if (d->pipe_w >= 0)
		close(d->pipe_w);
	d->pipe_r = d->pipe_w = -1;
	free(d->buf);
	d->buf = NULL;
}

/* splice() refuses some descriptor pairs (EINVAL); copying through a
 * bounded buffer works for any stream. Only switched while the pipe is empty. */
static bool
dir_switch_to_copy(struct relay_dir *d)
{
	if (d->pending > 0 || d->buf != NULL)
		return false;
	d->buf = malloc(RELAY_CHUNK);
	if (d->buf == NULL)
		return false;
	close(d->pipe_r);
	close(d->pipe_w);
	d->pipe_r = d->pipe_w = -1;
	return true;
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
		ssize_t n = dir_fill(d);
		if (n == 0) {
			d->read_eof = true;
			continue;
		}
		if (n < 0) {
			if (errno == EAGAIN || errno == EINTR)
				return true;
			if (errno == EINVAL && dir_switch_to_copy(d))
				continue;
			*why = errno == ECONNRESET ? "connection reset" : "read failed";
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
	if (dir_init(&r->up, client_fd, server_fd) < 0 || dir_init(&r->down, server_fd, client_fd) < 0)
		goto fail;
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
	dir_release(&r->up);
	dir_release(&r->down);
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
