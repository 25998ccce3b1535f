/* upstream_internal.h - the upstream record shared by registration (registry.c) and sending (upstream.c). */
#ifndef HANDOFF_UPSTREAM_INTERNAL_H
#define HANDOFF_UPSTREAM_INTERNAL_H

#include <limits.h>
#include <stdbool.h>
#include <sys/queue.h>
#include <sys/types.h>

#include "conn.h"
#include "loop.h"
#include "route.h"

/* One upstream process's receiving socket: RUNDIR/upstreams/ID.sock, or
 * RUNDIR/upstreams/ID/ID.sock in the upstream's private directory. */
struct upstream {
	struct target target;		/* its place in routes; label = id */
	struct loop_io io;		/* our connected SOCK_DGRAM socket to it */
	char id[NAME_MAX + 1];		/* file name without suffix */
	bool in_dir;			/* files live in the private directory ID/ */
	uid_t uid;			/* owner of the socket file */
	int sock_file;			/* O_PATH descriptor of the socket file we
					 * checked: connects and probes go through it */
	dev_t sock_dev, names_dev;	/* what we registered, to notice a rename */
	ino_t sock_ino, names_ino;	/* over either file */
	char **names;			/* route keys: names, or one PROTOCOL_KEY_* */
	size_t n_names;
	size_t n_attached;		/* leading names whose routes hold target */
	char **alpn;			/* with "alpn" lines: the only ALPN ids it takes */
	size_t n_alpn;
	TAILQ_HEAD(, conn) waiting;	/* connections waiting for room, FIFO;
					 * target.n_waiting counts them */
	bool dead;			/* dropped; freed after the current batch */
	unsigned senders;		/* worker threads sending on io.fd now: it
					 * stays open, and this record allocated, until 0 */
	uint64_t registered_ms;		/* monotonic, when it was registered */
	TAILQ_ENTRY(upstream) link;
};

extern const struct target_ops upstream_target_ops;

/* Room at a busy upstream, or an error on our socket to it. */
void upstream_on_event(struct loop_io *io, uint32_t revents);

/* Take an upstream out of routing (registry.c). Its waiting connections
 * are routed again; remove_files also deletes its files (it is gone). */
void upstream_drop(struct upstream *up, const char *why, bool remove_files);

/* Call fn for every registered upstream (the admin endpoint's snapshot). */
void upstreams_foreach(void (*fn)(const struct upstream *up, void *arg), void *arg);

#endif
