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

/* Bind and listen on every configured address. On failure close what was
 * opened, write one line (naming the address and config line) to err and
 * return -1. */
int listeners_open(char *err, size_t errlen);
void listeners_close(void);

/* Stop or restart accepting on all listeners. Pausing is how the daemon
 * applies back-pressure (too many connections peeking, out of descriptors)
 * without spinning on a listener that stays readable. */
void listeners_pause(const char *why, unsigned resume_after_ms);
void listeners_resume(void);
bool listeners_paused(void);

#endif
