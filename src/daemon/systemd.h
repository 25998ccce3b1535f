/* systemd.h - the two systemd protocols the daemon speaks: socket activation and readiness notification. */
#ifndef HANDOFF_SYSTEMD_H
#define HANDOFF_SYSTEMD_H

#include <stddef.h>

/* The first descriptor a service manager passes (SD_LISTEN_FDS_START). */
#define ACTIVATION_FD_START 3
/* More sockets than this in LISTEN_FDS is a mistake, not a configuration. */
#define ACTIVATION_FDS_MAX 1024

/*
 * Take the sockets passed with LISTEN_FDS (only if LISTEN_PID is this
 * process): each must be a listening TCP socket bound to the address of a
 * configured `listen` line, and is adopted by that listener
 * (listener_adopt). The variables are removed from the environment so that
 * nothing this process executes takes them again. Returns the number of
 * sockets adopted, or -1 with one line in err; on failure every passed
 * descriptor not yet adopted is closed.
 */
int activation_adopt_listeners(char *err, size_t errlen);

/*
 * sd_notify, written out: one datagram to the AF_UNIX socket named by
 * NOTIFY_SOCKET (a path, or "@name" for the abstract namespace). Without
 * NOTIFY_SOCKET these do nothing. notify_init opens the sending socket
 * (before privileges are dropped; sending needs no privilege once it is
 * open) and keeps NOTIFY_SOCKET in the environment for a successor.
 */
void notify_init(void);
void notify_ready(const char *status);		/* READY=1, STATUS=..., MAINPID */
void notify_reloading(void);			/* RELOADING=1, MONOTONIC_USEC */
void notify_stopping(void);			/* STOPPING=1 */
void notify_status(const char *status);		/* STATUS=... */
void notify_close(void);

#endif
