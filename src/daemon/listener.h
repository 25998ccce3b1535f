/* listener.h - the TCP listening sockets: bind or adopt, accept, keep across reloads. */
#ifndef HANDOFF_LISTENER_H
#define HANDOFF_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "loop.h"

struct config_gen;
struct listener_stats;

/* One configured address of one generation. Connections point to the
 * listener they came in on for as long as they live; its generation
 * (held by the connection) keeps it. Only the current generation's
 * listeners have a socket (io.fd >= 0). A listener kept by a reload
 * shares its counters with its predecessor (stats.h). */
struct listener {
	struct loop_io io;
	const struct config_listener *cfg;
	struct config_gen *gen;
	struct listener_stats *stats;	/* one reference; released with the generation */
};

/* Make server.gen's table of listeners, one per `listen` line of
 * server.cfg, none open yet (listeners_open does it too). Call it first to
 * adopt sockets. Returns 0, or -1 with one line in err. */
int listeners_create(char *err, size_t errlen);

/* What listener_adopt does with a socket no `listen` line names. */
enum listener_adopt_policy {
	/* From the service manager (LISTEN_FDS): a mistake in the unit or
	 * the configuration, so the daemon refuses to start. A v6only that
	 * differs from the line's is refused too. */
	ADOPT_UNNAMED_FAILS,
	/* From the old daemon at an upgrade: the new configuration dropped
	 * the address, so the socket is closed (said in the log). A differing
	 * v6only is kept with a warning, as a reload keeps it, and the
	 * socket takes the configuration's backlog. */
	ADOPT_UNNAMED_CLOSES,
};

/*
 * Adopt an already-open listening TCP socket for the `listen` line of the
 * current generation with the same address (getsockname) and, where the
 * line sets v6only, the same IPV6_V6ONLY. The socket is made non-blocking
 * and close-on-exec; listeners_open starts watching it. origin names where
 * it came from in messages ("socket 'https' from systemd", "the old
 * daemon"). Returns 1 when the listener owns fd now, 0 when policy closed
 * it (no line names it), -1 with one line in err when it cannot be used
 * (not a listening TCP socket, a line that already has its socket, a
 * v6only mismatch refused): the caller still owns fd then.
 */
int listener_adopt(int fd, const char *origin, enum listener_adopt_policy policy, char *err, size_t errlen);

/* Bind and listen on every address of server.cfg not adopted, as the
 * listeners of server.gen, and watch them all (accepting once
 * listeners_start is called). On failure close what was opened, adopted
 * sockets too, write one line (naming the address and config line) to err
 * and return -1. */
int listeners_open(char *err, size_t errlen);
/* Stop listening: close the current generation's sockets. */
void listeners_close(void);

/* Start accepting on every open listener. The daemon starts once it is
 * ready: the first scan of the upstreams directory is done. */
void listeners_start(void);

/*
 * A reload, in two steps. prepare: give next (the generation about to
 * become current, with settings cfg) its listeners; an address the
 * current generation listens on already keeps that socket, a new one is
 * bound now. On failure nothing changed: -1 and one line in err.
 * commit: move the kept sockets over, start the new ones, close the
 * removed ones (after accepting what waits in their backlog).
 */
int listeners_prepare(const struct config *cfg, struct config_gen *next, char *err, size_t errlen);
void listeners_commit(struct config_gen *old, struct config_gen *next);
/* Undo a prepare that will not be committed. */
void listeners_unprepare(struct config_gen *next);

/* Call fn with every listening socket of the current generation (an
 * upgrade hands them to the new daemon). */
void listeners_foreach_socket(void (*fn)(int fd, const struct config_listener *lc, void *arg), void *arg);

/* Accepts per readable event before giving other descriptors a turn. */
#define LISTENER_ACCEPT_BATCH 64

/* What an accept4 error means for an accept loop: take the next
 * connection (this one was aborted or refused by a firewall), stop for
 * now (none waits), out of descriptors or memory (then
 * listener_out_of_descriptors), or an error to log. */
enum accept_step { ACCEPT_NEXT, ACCEPT_DONE, ACCEPT_EXHAUSTED, ACCEPT_ERROR };
enum accept_step listener_accept_step(int err);

/* accept4 on l ran out of descriptors (or memory): close one waiting
 * connection with the spare descriptor and pause accepting for a while. */
void listener_out_of_descriptors(struct listener *l);

/* Watch the listening sockets for new connections or not, as started,
 * paused and the accepting threads say (after any of them changes). */
void listeners_rewatch(void);

/* Stop or restart accepting on all listeners. Pausing is how the daemon
 * applies back-pressure (too many connections peeking, out of descriptors)
 * without spinning on a listener that stays readable. */
void listeners_pause(const char *why, unsigned resume_after_ms);
void listeners_resume(void);
bool listeners_paused(void);

#endif
