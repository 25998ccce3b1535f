/* reload.h - apply a re-read configuration to the running daemon. */
#ifndef HANDOFF_RELOAD_H
#define HANDOFF_RELOAD_H

#include <stddef.h>

/*
 * Re-read the daemon's configuration file and apply it: listeners
 * (unchanged addresses keep their sockets), grants, routes and their
 * targets (names resolved again), limits and timeouts, the access log.
 * Connections keep the generation they were accepted under until they
 * end. A file with an error changes nothing. Returns 0 with a summary in
 * msg, or -1 with "FILE:LINE: what is wrong" in msg; either is logged.
 */
int daemon_reload(char *msg, size_t msglen);

/* Reopen the access log by its path (log rotation), saying so in the log:
 * what a reload does to an unchanged access-log path, and what SIGHUP
 * does when the reload it asks for is refused. */
void reload_reopen_access_log(void);

#endif
