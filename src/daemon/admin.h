/* admin.h - the admin endpoint: JSON API, Prometheus metrics and the dashboard, served by its own thread. */
#ifndef HANDOFF_ADMIN_H
#define HANDOFF_ADMIN_H

#include <stddef.h>

/* Bind the configured admin address and start serving (nothing if the
 * configuration has no `admin` line). Call after the listeners are open
 * and the loop exists. Returns 0, or -1 with one line in err. */
int admin_start(const char *version, char *err, size_t errlen);

/* Stop serving and free everything; the admin thread is joined. Idempotent. */
void admin_stop(void);

#endif
