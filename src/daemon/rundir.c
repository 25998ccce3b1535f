/* rundir.c - make the runtime directory and upstreams/ with the owner and modes the trust model needs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "config.h"
#include "registry.h"
#include "server.h"

/* The directory belongs to the user the daemon serves as (`user`, else its
 * own): libhandoff trusts messages from that owner, and the daemon keeps
 * writing status files and removing files there after dropping root. A
 * root daemon hands over one it has just made or that a run without `user`
 * left. */
int
rundir_make(const char *path, mode_t mode, char *err, size_t errlen)
{
	struct stat st;
	uid_t owner = config_service_uid(&server.cfg);
	gid_t group = config_service_gid(&server.cfg);
	if (mkdir(path, mode) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create runtime directory %s: %s (set runtime-dir to a writable place)",
			 path, strerror(errno));
		return -1;
	}
	if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is not a directory (remove it or set runtime-dir)", path);
		return -1;
	}
	if (st.st_uid != owner && st.st_uid == 0 && geteuid() == 0) {
		if (lchown(path, owner, group) < 0) {
			snprintf(err, errlen, "cannot give %s to uid %lu: %s", path, (unsigned long)owner,
				 strerror(errno));
			return -1;
		}
		st.st_uid = owner;
	}
	if (st.st_uid != owner) {
		snprintf(err, errlen, "%s belongs to uid %lu, not to the daemon's uid %lu (remove it or set runtime-dir)",
			 path, (unsigned long)st.st_uid, (unsigned long)owner);
		return -1;
	}
	/* mkdir applied the umask; the modes are part of the trust model. */
	if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0) {
		snprintf(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
}
