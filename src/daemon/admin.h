/* admin.h - the admin endpoint: JSON API, Prometheus metrics and the dashboard, served by its own thread. */
#ifndef HANDOFF_ADMIN_H
#define HANDOFF_ADMIN_H

#include <stdbool.h>
#include <stddef.h>

/* Bind the configured admin address and start serving (nothing if the
 * configuration has no `admin` line). Call after the listeners are open
 * and the loop exists. Returns 0, or -1 with one line in err. */
int admin_start(const char *version, char *err, size_t errlen);

/* Stop serving and free everything; the admin thread is joined. Idempotent. */
void admin_stop(void);

/*
 * A binary upgrade hands the admin listening socket over like the
 * listeners, so that the address is never unbound and the new daemon
 * cannot fail to bind it while the old one still holds it.
 * Old daemon: admin_socket is the socket to pass (-1 if none);
 * admin_release, once the new daemon is ready, stops accepting (admin
 * requests already accepted are still answered) and leaves the socket
 * and its file to the new daemon.
 * New daemon: admin_offer (before admin_start) gives it the old daemon's
 * socket, which admin_start adopts if it listens on the configured
 * address, and closes otherwise; admin_took_over, once the old daemon
 * has let go, makes a Unix socket's file this daemon's to remove.
 */
int admin_socket(void);
void admin_release(void);
/* Admin connections open now (an old daemon stays until they are answered). */
unsigned admin_open_connections(void);
void admin_offer(int fd);
void admin_took_over(void);

/* Loop thread: the state changed all at once (the daemon became ready,
 * its first scan of the upstreams done): the next request gets a fresh
 * snapshot rather than one a little older, built before. */
void admin_snapshot_expire(void);

/* Whether two admin settings differ (a reload keeps the running ones). */
struct config_admin;
bool admin_settings_differ(const struct config_admin *a, const struct config_admin *b);

#endif
