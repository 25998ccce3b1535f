/* privileges.h - become the configured `user` and `group` once the privileged start-up work is done. */
#ifndef HANDOFF_PRIVILEGES_H
#define HANDOFF_PRIVILEGES_H

#include <stddef.h>

#include "config.h"

/*
 * Before anything is opened: may this process become cfg's `user`? Yes if
 * there is no `user` line, if it runs as root, or if it already is that user
 * and group (a daemon started by a service manager with User=, or a
 * successor executed by an unprivileged daemon). Otherwise -1 and one line
 * in err naming the configuration line and what to do.
 */
int privileges_check(const struct config *cfg, char *err, size_t errlen);

/*
 * Give up root for good: supplementary groups cleared (setgroups), then the
 * real, effective and saved gid (setresgid), then the uid (setresuid). Every
 * capability but CAP_NET_BIND_SERVICE leaves the bounding set;
 * CAP_NET_BIND_SERVICE stays permitted, effective, inheritable and ambient,
 * so that a reload can bind a new port below 1024 and an executed successor
 * keeps it. Then checks that root cannot be regained. Does nothing without
 * a `user` line or when already that user. Returns 0, or -1 with err.
 */
int privileges_drop(const struct config *cfg, char *err, size_t errlen);

#endif
