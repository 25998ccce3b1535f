/* loop.h - the daemon's event loop: epoll for descriptors, a binary heap for timers. */
#ifndef HANDOFF_LOOP_H
#define HANDOFF_LOOP_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct loop;

/* A watched descriptor. Embed it in the owning object and recover the
 * owner in the callback with container_of(). */
struct loop_io {
	int fd;
	uint32_t events;	/* what is registered, 0 if not registered */
	void (*cb)(struct loop_io *io, uint32_t revents);
};

/* A one-shot timer. Embed it; heap_index is managed by the loop. */
struct loop_timer {
	uint64_t when_ms;
	size_t heap_index;	/* 0 = not armed */
	void (*cb)(struct loop_timer *timer);
};

#define container_of(ptr, type, member) \
	((type *)(void *)((char *)(ptr) - offsetof(type, member)))

struct loop *loop_new(void);
void loop_free(struct loop *loop);

/* Register, change or remove a descriptor. loop_io_del is EPOLL_CTL_DEL and
 * must come before close(fd): the registration lives as long as any process
 * (an upstream, after a handoff) holds the file description. */
int loop_io_add(struct loop *loop, struct loop_io *io, uint32_t events);
int loop_io_mod(struct loop *loop, struct loop_io *io, uint32_t events);
void loop_io_del(struct loop *loop, struct loop_io *io);

/* Arm (or re-arm) timer to fire after delay_ms; cancel is idempotent. */
int loop_timer_arm(struct loop *loop, struct loop_timer *timer, uint64_t delay_ms);
void loop_timer_cancel(struct loop *loop, struct loop_timer *timer);

/* Monotonic milliseconds and microseconds. */
uint64_t loop_now_ms(void);
uint64_t loop_now_us(void);

/* Called once after each batch of events and timers: the place where
 * objects closed during the batch are freed, so that no later event of the
 * same batch can touch freed memory. */
void loop_set_after_batch(struct loop *loop, void (*fn)(void *arg), void *arg);

/* Called just before and just after each wait for events (the daemon
 * lock is let go of and taken back there: workers.h). */
void loop_set_wait_hooks(struct loop *loop, void (*before)(void *arg), void (*after)(void *arg), void *arg);

/* Whether a timer armed while the loop waits (by another thread, under
 * the lock that hook lets go of) is due before the wait ends by itself. */
bool loop_wakes_too_late(const struct loop *loop);

/* Run until *stop becomes non-zero. Returns 0, or -1 if epoll_wait failed. */
int loop_run(struct loop *loop, volatile sig_atomic_t *stop);

#endif
