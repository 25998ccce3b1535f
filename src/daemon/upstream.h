/* upstream.h - local upstreams: discovery in the runtime directory, routing, handoff over SCM_RIGHTS. */
#ifndef HANDOFF_UPSTREAM_H
#define HANDOFF_UPSTREAM_H

#include <stdbool.h>
#include <stddef.h>

struct conn;
struct target;
struct upstream;

enum send_result { SEND_OK, SEND_FULL, SEND_DEAD, SEND_FAILED };

/* Pass c's descriptor, with the handoff header, over sock (an upstream's
 * receiving socket). Touches nothing but c and sock. */
enum send_result upstream_send_on(int sock, const struct conn *c);

/* A send outside the daemon lock (accepting threads). begin, lock held:
 * the local upstream t's socket, kept open until end, and its id in id;
 * -1 if it is gone. end, lock held again: how the send went (a full
 * queue makes t busy, as for the loop's own sends). */
int upstream_send_begin(struct target *t, char *id, size_t idlen);
void upstream_send_end(struct target *t, enum send_result result);

/* Create the runtime directory layout, start watching it, register the
 * upstreams already there. Returns 0, or -1 with one line in err. */
int upstreams_init(char *err, size_t errlen);
/* True once the first full scan of the upstreams directory is done: every
 * upstream registered before the daemon started has its answer. */
bool upstreams_scanned(void);
/* Drop every registration; keep_status leaves the ID.status files (an
 * upgrade: the new daemon has registered the same upstreams). */
void upstreams_close(bool keep_status);

/* After a reload: drop registered upstreams whose grant is gone (their
 * status says refused), and examine refused and new claims afresh. */
void upstreams_apply_grants(void);

/* Free upstreams dropped during the last loop batch. */
void upstreams_reap(void);

/* Remove a waiting connection from its upstream's queue. Idempotent. */
void upstream_unqueue(struct conn *c);

#endif
