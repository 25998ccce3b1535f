/* registry.h - what registration (registry.c) shares with its refusal bookkeeping (registry_refusal.c), its directory scan (registry_scan.c) and the runtime directory's layout (rundir.c). */
#ifndef HANDOFF_REGISTRY_H
#define HANDOFF_REGISTRY_H

#include <limits.h>
#include <stdbool.h>
#include <stdint.h>
#include <sys/types.h>

#include "log.h"

struct upstream;

extern int upstreams_fd;		/* RUNDIR/upstreams, for *at() calls */
extern char upstreams_dir[PATH_MAX];

/* registry.c, for the scan: the registered upstream with this id, or
 * NULL; examine a registration (ID.sock + ID.names, or the directory ID/
 * when in_dir); is a file name ID.sock or ID.names of an acceptable id
 * (the id into id, is_names set), is a name a registration directory. */
struct upstream *find_upstream(const char *id);
void try_register(const char *id, bool in_dir);
bool id_of(const char *file, char *id, size_t idsize, bool *is_names);
bool is_dir_id(const char *name);

/* Read the whole directory in turns of the loop; a request while one
 * runs starts another after it (registry_scan.c). rescan_stop abandons
 * it. upstreams_scanned (upstream.h) says whether one has finished. */
void rescan_start(void);
void rescan_stop(void);

/* Make (or check) a directory of the runtime layout: owned by the user the
 * daemon serves as, with exactly mode. Returns 0, or -1 with one line in
 * err (rundir.c). */
int rundir_make(const char *path, mode_t mode, char *err, size_t errlen);

/* ID.status: "registered" or "refused: why", written afresh. */
void write_status(const char *id, const char *text);
void remove_status(const char *id);

/* Refuse a claim of uid: logged (rate-limited), answered in ID.status and
 * remembered, once per id. */
void refuse(const char *id, uid_t uid, const char *fmt, ...) LOG_PRINTF(3, 4);
bool already_refused(const char *id);
void forget_refused(const char *id);
void forget_all_refused(void);

/* Call fn for every refused claim still remembered: its id, uid, why and
 * when (monotonic ms). */
void refusals_foreach(void (*fn)(const char *id, uid_t uid, const char *why, uint64_t when_ms, void *arg),
		      void *arg);
/* May one more refusal-type line be logged now? Counts those that may not. */
bool refusal_log_allowed(void);

#endif
