/* handover.h - binary upgrade: a re-executed daemon takes the listening sockets over from the running one. */
#ifndef HANDOFF_HANDOVER_H
#define HANDOFF_HANDOVER_H

#include <stdbool.h>
#include <stddef.h>

/* The environment variable naming the channel descriptor a new daemon
 * inherits from the old one. */
#define HANDOVER_ENV "HANDOFF_UPGRADE_FD"

/* The command line to run again (kept from main's argv). */
void handover_remember_argv(char **argv);

/*
 * Old daemon. upgrade_start: start the binary at the same path again with
 * the same arguments, pass it every listening socket and the control
 * socket over a Unix socket, and wait for its answer in the loop. Returns
 * 0 (control_upgrade_done tells the outcome), or -1 with the reason. Once
 * the new daemon is ready the old one stops accepting and closes its
 * copies of the sockets; it finishes its connections and then stops.
 */
int upgrade_start(char *err, size_t errlen);
bool upgrade_handed_over(void);
/* True once handed over and the last connection (admin ones too) has ended. */
bool upgrade_drained(void);

/*
 * New daemon. handover_begin: if started by an upgrade, take the channel
 * (0), else nothing to do (0); -1 with err if the channel is unusable.
 * handover_receive (after listeners_create): take the sockets; each
 * listening one is adopted by its listener (listener_adopt, closed if no
 * `listen` line names it now), the control and admin sockets are kept for
 * control_open and admin_start. handover_ready (once ready, before
 * accepting) / handover_failed: tell the old daemon.
 * handover_ready returns -1 if the old daemon is gone or gave up: the new
 * one must not serve then.
 */
int handover_begin(char *err, size_t errlen);
bool handover_pending(void);
int handover_receive(char *err, size_t errlen);
int handover_ready(void);
void handover_failed(const char *why);

#endif
