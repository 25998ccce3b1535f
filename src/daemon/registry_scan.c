/* registry_scan.c - read RUNDIR/upstreams in bounded turns of the loop, registering what inotify did not report. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"
#include "registry.h"
#include "server.h"
#include "upstream.h"

#define SCAN_BATCH		256	/* directory entries read per loop turn */
#define SCAN_PER_UID		1024	/* entries of one owner looked at per rescan */
#define SCAN_UIDS		64	/* owners counted per rescan; the rest share a slot */

/* A rescan in progress: the directory is read SCAN_BATCH entries per loop
 * turn so that a huge directory never stalls the event loop. */
struct rescan {
	DIR *dir;			/* NULL: none running */
	bool again;			/* requested while running: start over */
	struct { uid_t uid; unsigned seen; } owners[SCAN_UIDS];
	size_t n_owners;
	struct loop_timer next;
};

static struct rescan rescan;
/* Scans finished (or given up); the daemon is ready after the first. */
static unsigned long scans_done;

/* Count an entry against its owner's share of this rescan. */
static bool
rescan_within_quota(uid_t uid)
{
	size_t i;
	for (i = 0; i < rescan.n_owners; i++)
		if (rescan.owners[i].uid == uid)
			break;
	if (i == rescan.n_owners) {
		if (rescan.n_owners == SCAN_UIDS)
			i = SCAN_UIDS - 1;	/* the rest share the last slot */
		else
			rescan.owners[rescan.n_owners++] = (__typeof__(rescan.owners[0])){ .uid = uid };
	}
	if (rescan.owners[i].seen == SCAN_PER_UID) {
		if (refusal_log_allowed())
			log_warnx("rescan of %s: skipping further files of uid %lu (more than %d)",
				  upstreams_dir, (unsigned long)uid, SCAN_PER_UID);
	}
	return ++rescan.owners[i].seen <= SCAN_PER_UID;
}

static void
scan_entry(const struct dirent *de)
{
	char id[NAME_MAX + 1];
	bool is_names, in_dir;
	if (id_of(de->d_name, id, sizeof(id), &is_names)) {
		if (!is_names)
			return;		/* its names file brings it here */
		in_dir = false;
	} else if (de->d_type == DT_DIR || de->d_type == DT_UNKNOWN) {
		if (!is_dir_id(de->d_name) || strcmp(de->d_name, "..") == 0)
			return;
		snprintf(id, sizeof(id), "%s", de->d_name);
		in_dir = true;
	} else {
		return;
	}
	struct stat st;
	if (fstatat(upstreams_fd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) < 0 ||
	    (in_dir && !S_ISDIR(st.st_mode)) || !rescan_within_quota(st.st_uid))
		return;
	if (find_upstream(id) == NULL)
		try_register(id, in_dir);
}

/* One turn of a rescan: SCAN_BATCH entries, then back to the loop. */
static void
on_rescan_timer(struct loop_timer *timer)
{
	for (int i = 0; i < SCAN_BATCH; i++) {
		errno = 0;
		struct dirent *de = readdir(rescan.dir);
		if (de == NULL) {
			if (errno != 0)
				log_warn("cannot read %s", upstreams_dir);
			closedir(rescan.dir);
			rescan.dir = NULL;
			scans_done++;
			if (rescan.again) {
				rescan.again = false;
				rescan_start();
			}
			return;
		}
		scan_entry(de);
	}
	loop_timer_arm(server.loop, timer, 0);
}

/* Look at every entry (at start, after the inotify queue overflowed, after
 * a reload).
 * A request during a rescan starts another once it is done. */
void
rescan_start(void)
{
	if (rescan.dir != NULL) {
		rescan.again = true;
		return;
	}
	int fd = openat(upstreams_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0 || (rescan.dir = fdopendir(fd)) == NULL) {
		log_warn("cannot read %s", upstreams_dir);
		if (fd >= 0)
			close(fd);
		scans_done++;
		return;
	}
	rescan.n_owners = 0;
	rescan.next.cb = on_rescan_timer;
	loop_timer_arm(server.loop, &rescan.next, 0);
}

void
rescan_stop(void)
{
	loop_timer_cancel(server.loop, &rescan.next);
	if (rescan.dir != NULL) {
		closedir(rescan.dir);
		rescan.dir = NULL;
	}
}

bool
upstreams_scanned(void)
{
	return scans_done > 0;
}
