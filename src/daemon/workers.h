/* workers.h - accepting threads for more than one core: each hands off what its first look decides, the event loop keeps the rest. */
#ifndef HANDOFF_WORKERS_H
#define HANDOFF_WORKERS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The most accepting threads `workers` may ask for. */
#define WORKERS_MAX 64

/*
 * The daemon lock. The event loop's thread holds it whenever it runs and
 * lets go only while it waits for events (loop wait hooks); a worker
 * thread takes it for the few steps that touch the loop's state (routing,
 * counters, passing a connection to the loop). So everything the loop
 * owns keeps its single-threaded rules, and a worker's own steps (accept,
 * peek, parse, the handoff's sendmsg, close) run beside it.
 */
void daemon_lock(void);
void daemon_unlock(void);

/* Take the lock for the loop's thread and watch the loop's wake-up
 * descriptor. Returns 0, or -1 with one line in err. */
int workers_init(char *err, size_t errlen);

/* Run n accepting threads (`workers n`): for n >= 2 the threads accept
 * and the loop does not; for 1 the loop accepts as always and threads
 * that ran stop. Lock held. */
void workers_apply(unsigned n);
/* Whether threads take the new connections now (then the loop does not
 * watch the listening sockets). Lock held. */
bool workers_accepting(void);

/* The listening sockets changed (a reload, a close): every thread
 * replaces its copies before its next accept. Lock held. */
void workers_listeners_changed(void);
/* Accepting is allowed (started and not paused), or not. Lock held. */
void workers_set_accepting(bool allowed);

/* Stop every thread (the listening sockets close, as at an upgrade's
 * handover); each is joined when the loop next waits. Lock held. */
void workers_stop(void);

/* At shutdown: stop every thread and wait for it. Lock held; released
 * while waiting. */
void workers_shutdown(void);

/* Any thread: make the loop wake and look at its timers and reaping (a
 * worker armed a timer or let go of an upstream). */
void workers_wake_loop(void);

/* Connections each thread slot took since start: handed off at the first
 * look, or passed to the loop (which decided them as its own). */
struct worker_counts {
	uint64_t handed_off;
	uint64_t passed;
	bool running;
};
/* Copy the counts of the slots used since start into out (at most max);
 * returns how many. Lock held. */
size_t workers_counts(struct worker_counts *out, size_t max);

#endif
