/* control.h - the daemon's control socket (RUNDIR/control.sock) and pid file, and the client of `handoff reload|upgrade`. */
#ifndef HANDOFF_CONTROL_H
#define HANDOFF_CONTROL_H

#include <stdbool.h>
#include <stddef.h>

#define CONTROL_SOCKET_NAME	"control.sock"	/* in the runtime directory */
#define CONTROL_PID_NAME	"handoff.pid"	/* ditto: the serving daemon's pid */

/*
 * Make the runtime directory if needed (the first thing the daemon does in
 * it) and listen on RUNDIR/control.sock (mode 0600, owned by the user the
 * daemon serves as: that user and root). A socket handed over by an old
 * daemon (control_adopt) is used as it is. If another daemon answers on the
 * socket, fail: two daemons must not share one runtime directory. A
 * socket file nobody answers on (a killed daemon's) is replaced.
 * Returns 0, or -1 with one line in err.
 */
int control_open(char *err, size_t errlen);
/* Write RUNDIR/handoff.pid (once serving: after an upgrade, once the old
 * daemon has let go). */
int control_write_pid(char *err, size_t errlen);
/* Stop answering. handed_over: a new daemon answers on the same socket
 * and has written its pid, so the files stay. */
void control_close(bool handed_over);
/* The listening control socket, for an upgrade to pass on; -1 if none. */
int control_socket(void);
/* A control socket received from an old daemon. */
void control_adopt(int fd);

/* The answer to a pending `handoff upgrade` request, if one waits. */
void control_upgrade_done(bool ok, const char *text);

/* `handoff reload|upgrade [-c FILE]`: ask the daemon serving FILE's
 * runtime directory, print its answer; 0 if it did it, 1 if not, 2 for a
 * usage error. */
int control_client(const char *command, int argc, char **argv);

#endif
