/* listener.h - the TCP listening sockets and their accept loop. */
#ifndef HANDOFF_LISTENER_H
#define HANDOFF_LISTENER_H

#include <stdbool.h>
#include <stddef.h>

#include "config.h"
#include "loop.h"

struct listener {
	struct loop_io io;
	const struct config_listener *cfg;
};

/* Make the table of listeners, one per `listen` line, none open yet.
 * listeners_open does it too; call it first to adopt sockets. */
int listeners_prepare(char *err, size_t errlen);

/*
 * Adopt an already-open listening TCP socket (from the service manager, or
 * from a daemon handing over) for the `listen` line with the same address
 * (getsockname) and, where the line sets v6only, the same IPV6_V6ONLY. The
 * socket is made non-blocking and close-on-exec. origin names where it came
 * from in messages ("socket 'https' from systemd"). On success the listener
 * owns fd; on failure (not a listening TCP socket, no line for its address,
 * a line that already has its socket) err holds one line and the caller
 * still owns fd.
 */
int listener_adopt(int fd, const char *origin, char *err, size_t errlen);

/* Bind and listen on every configured address not adopted. On failure close
 * what was opened, write one line (naming the address and config line) to
 * err and return -1. */
int listeners_open(char *err, size_t errlen);
void listeners_close(void);

/* Start accepting on every open listener (they are opened, bound or
 * adopted, without accepting). The daemon starts once it is ready. */
void listeners_start(void);

/* Stop or restart accepting on all listeners. Pausing is how the daemon
 * applies back-pressure (too many connections peeking, out of descriptors)
 * without spinning on a listener that stays readable. */
void listeners_pause(const char *why, unsigned resume_after_ms);
void listeners_resume(void);
bool listeners_paused(void);

#endif
