/* loop.c - epoll event loop with a timer heap; each iteration: wait, events, timers, after-batch hook. */
#include <errno.h>
#include <stdlib.h>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

#include "loop.h"

#define LOOP_MAX_EVENTS 256

struct loop {
	int epfd;
	struct loop_timer **heap;	/* 1-based min-heap on when_ms */
	size_t heap_len;
	size_t heap_cap;
	void (*after_batch)(void *arg);
	void *after_batch_arg;
	uint64_t wake_at_ms;		/* while waiting: when the wait ends at the latest */
	void (*before_wait)(void *arg);
	void (*after_wait)(void *arg);
	void *wait_arg;
};

uint64_t
loop_now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

uint64_t
loop_now_ms(void)
{
	return loop_now_us() / 1000u;
}

struct loop *
loop_new(void)
{
	struct loop *loop = calloc(1, sizeof(*loop));
	if (loop == NULL)
		return NULL;
	loop->epfd = epoll_create1(EPOLL_CLOEXEC);
	if (loop->epfd < 0) {
		free(loop);
		return NULL;
	}
	return loop;
}

void
loop_free(struct loop *loop)
{
	if (loop == NULL)
		return;
	close(loop->epfd);
	free(loop->heap);
	free(loop);
}

int
loop_io_add(struct loop *loop, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_ADD, io->fd, &ev) < 0)
		return -1;
	/* Never zero once registered, so loop_io_del knows to act. */
	io->events = events | EPOLLERR;
	return 0;
}

int
loop_io_mod(struct loop *loop, struct loop_io *io, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = io };
	if (epoll_ctl(loop->epfd, EPOLL_CTL_MOD, io->fd, &ev) < 0)
		return -1;
	io->events = events | EPOLLERR;
	return 0;
}

void
loop_io_del(struct loop *loop, struct loop_io *io)
{
	if (io->events == 0 || io->fd < 0)
		return;
	epoll_ctl(loop->epfd, EPOLL_CTL_DEL, io->fd, NULL);
	io->events = 0;
}

static void
heap_swap(struct loop *loop, size_t a, size_t b)
{
	struct loop_timer *t = loop->heap[a];
	loop->heap[a] = loop->heap[b];
	loop->heap[b] = t;
	loop->heap[a]->heap_index = a;
	loop->heap[b]->heap_index = b;
}

static void
heap_up(struct loop *loop, size_t i)
{
	while (i > 1 && loop->heap[i / 2]->when_ms > loop->heap[i]->when_ms) {
		heap_swap(loop, i, i / 2);
		i /= 2;
	}
}

static void
heap_down(struct loop *loop, size_t i)
{
	for (;;) {
		size_t smallest = i, l = 2 * i, r = 2 * i + 1;
		if (l <= loop->heap_len && loop->heap[l]->when_ms < loop->heap[smallest]->when_ms)
			smallest = l;
		if (r <= loop->heap_len && loop->heap[r]->when_ms < loop->heap[smallest]->when_ms)
			smallest = r;
		if (smallest == i)
			return;
		heap_swap(loop, i, smallest);
		i = smallest;
	}
}

void
loop_timer_cancel(struct loop *loop, struct loop_timer *timer)
{
	size_t i = timer->heap_index;
	if (i == 0)
		return;
	timer->heap_index = 0;
	if (i != loop->heap_len) {
		loop->heap[i] = loop->heap[loop->heap_len];
		loop->heap[i]->heap_index = i;
		loop->heap_len--;
		heap_up(loop, i);
		heap_down(loop, i);
	} else {
		loop->heap_len--;
	}
}

int
loop_timer_arm(struct loop *loop, struct loop_timer *timer, uint64_t delay_ms)
{
	loop_timer_cancel(loop, timer);
	if (loop->heap_len + 1 >= loop->heap_cap) {
		size_t cap = loop->heap_cap ? loop->heap_cap * 2 : 64;
		struct loop_timer **heap = realloc(loop->heap, cap * sizeof(*heap));
		if (heap == NULL)
			return -1;
		loop->heap = heap;
		loop->heap_cap = cap;
	}
	timer->when_ms = loop_now_ms() + delay_ms;
	loop->heap[++loop->heap_len] = timer;
	timer->heap_index = loop->heap_len;
	heap_up(loop, loop->heap_len);
	return 0;
}

void
loop_set_after_batch(struct loop *loop, void (*fn)(void *arg), void *arg)
{
	loop->after_batch = fn;
	loop->after_batch_arg = arg;
}

void
loop_set_wait_hooks(struct loop *loop, void (*before)(void *arg), void (*after)(void *arg), void *arg)
{
	loop->before_wait = before;
	loop->after_wait = after;
	loop->wait_arg = arg;
}

bool
loop_wakes_too_late(const struct loop *loop)
{
	return loop->heap_len > 0 && loop->heap[1]->when_ms < loop->wake_at_ms;
}

static int
next_timeout_ms(const struct loop *loop)
{
	if (loop->heap_len == 0)
		return 1000;	/* nothing due: wake now and then to re-check *stop */
	uint64_t now = loop_now_ms(), when = loop->heap[1]->when_ms;
	if (when <= now)
		return 0;
	return when - now > 1000 ? 1000 : (int)(when - now);
}

static void
run_due_timers(struct loop *loop)
{
	uint64_t now = loop_now_ms();
	/* Bounded: a timer re-armed from its callback with delay 0 waits for
	 * the next iteration instead of starving the descriptors. */
	size_t budget = loop->heap_len;
	while (budget-- > 0 && loop->heap_len > 0 && loop->heap[1]->when_ms <= now) {
		struct loop_timer *t = loop->heap[1];
		loop_timer_cancel(loop, t);
		t->cb(t);
	}
}

int
loop_run(struct loop *loop, volatile sig_atomic_t *stop)
{
	struct epoll_event events[LOOP_MAX_EVENTS];
	while (!*stop) {
		int timeout = next_timeout_ms(loop);
		loop->wake_at_ms = loop_now_ms() + (uint64_t)timeout;
		if (loop->before_wait != NULL)
			loop->before_wait(loop->wait_arg);
		int n = epoll_wait(loop->epfd, events, LOOP_MAX_EVENTS, timeout);
		int wait_errno = errno;
		if (loop->after_wait != NULL)
			loop->after_wait(loop->wait_arg);
		errno = wait_errno;
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		for (int i = 0; i < n; i++) {
			struct loop_io *io = events[i].data.ptr;
			/* An object closed earlier in this batch has io->events == 0
			 * (it is freed only after the batch), so its stale event is dropped. */
			if (io->events == 0)
				continue;
			io->cb(io, events[i].events);
		}
		run_due_timers(loop);
		if (loop->after_batch != NULL)
			loop->after_batch(loop->after_batch_arg);
	}
	return 0;
}
