/* upstream.h - local upstreams: discovery in the runtime directory, routing, handoff over SCM_RIGHTS. */
#ifndef HANDOFF_UPSTREAM_H
#define HANDOFF_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

struct conn;
struct upstream;

/* Create the runtime directory layout, start watching it, register the
 * upstreams already there. Returns 0, or -1 with one line in err. */
int upstreams_init(char *err, size_t errlen);
/* True once the first full scan of the upstreams directory is done: every
 * upstream registered before the daemon started has its answer. */
bool upstreams_scanned(void);
void upstreams_close(void);

/* Free upstreams dropped during the last loop batch. */
void upstreams_reap(void);

/* Remove a waiting connection from its upstream's queue. Idempotent. */
void upstream_unqueue(struct conn *c);

#endif
