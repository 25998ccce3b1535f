/* privileges.c - drop from root to the configured user and group, keeping only CAP_NET_BIND_SERVICE. */
#include <errno.h>
#include <grp.h>
#include <linux/capability.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "log.h"
#include "privileges.h"

/* Capabilities are set with the raw system calls: three 32-bit words per
 * set in two halves is all libcap would hide here. */
#define KEPT_CAP CAP_NET_BIND_SERVICE
#define CAP_WORDS 2	/* _LINUX_CAPABILITY_U32S_3 */

static int
cap_set(uint64_t effective, uint64_t permitted, uint64_t inheritable)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[CAP_WORDS];
	for (int i = 0; i < CAP_WORDS; i++) {
		data[i].effective = (uint32_t)(effective >> (32 * i));
		data[i].permitted = (uint32_t)(permitted >> (32 * i));
		data[i].inheritable = (uint32_t)(inheritable >> (32 * i));
	}
	return (int)syscall(SYS_capset, &header, data);
}

static int
cap_get(uint64_t *effective, uint64_t *permitted)
{
	struct __user_cap_header_struct header = { .version = _LINUX_CAPABILITY_VERSION_3, .pid = 0 };
	struct __user_cap_data_struct data[CAP_WORDS];
	if (syscall(SYS_capget, &header, data) < 0)
		return -1;
	*effective = (uint64_t)data[1].effective << 32 | data[0].effective;
	*permitted = (uint64_t)data[1].permitted << 32 | data[0].permitted;
	return 0;
}

static bool
already_user(const struct config *cfg)
{
	uid_t ruid, euid, suid;
	gid_t rgid, egid, sgid;
	return getresuid(&ruid, &euid, &suid) == 0 && getresgid(&rgid, &egid, &sgid) == 0 &&
	       ruid == cfg->user_uid && euid == cfg->user_uid && suid == cfg->user_uid &&
	       rgid == cfg->user_gid && egid == cfg->user_gid && sgid == cfg->user_gid;
}

int
privileges_check(const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->user[0] == '\0' || geteuid() == 0 || already_user(cfg))
		return 0;
	snprintf(err, errlen, "%s:%d: user: the daemon runs as uid %lu, not root, so it cannot become '%s' "
		 "(start it as root, start it as that user and group, or remove the 'user' line)",
		 cfg->source, cfg->user_line, (unsigned long)geteuid(), cfg->user);
	return -1;
}

/* Remove every capability but KEPT_CAP from the bounding set, so that no
 * program this process could execute gains one back. */
static int
drop_bounding_set(char *err, size_t errlen)
{
	for (int cap = 0; cap < 64; cap++) {
		if (cap == KEPT_CAP)
			continue;
		int present = prctl(PR_CAPBSET_READ, cap, 0, 0, 0);
		if (present < 0 && errno == EINVAL)
			break;		/* past the last capability this kernel knows */
		if (present <= 0)
			continue;
		if (prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) < 0) {
			snprintf(err, errlen, "cannot drop capability %d from the bounding set: %s "
				 "(the daemon needs CAP_SETPCAP to drop its privileges)", cap, strerror(errno));
			return -1;
		}
	}
	return 0;
}

/* Root must be out of reach for good: no id of the three is 0 and setting
 * it fails; the only capability left is KEPT_CAP. */
static int
verify_dropped(const struct config *cfg, uint64_t kept, char *err, size_t errlen)
{
	uint64_t effective, permitted;
	if (!already_user(cfg) || setuid(0) == 0 || seteuid(0) == 0 || setgid(0) == 0 ||
	    cap_get(&effective, &permitted) < 0 || (effective & ~kept) != 0 || (permitted & ~kept) != 0) {
		snprintf(err, errlen, "dropping privileges to %s did not hold (root could be regained); stopping",
			 cfg->user);
		return -1;
	}
	return 0;
}

int
privileges_drop(const struct config *cfg, char *err, size_t errlen)
{
	if (cfg->user[0] == '\0')
		return 0;
	if (already_user(cfg)) {
		log_info("running as %s (uid %lu, gid %lu) already", cfg->user, (unsigned long)cfg->user_uid,
			 (unsigned long)cfg->user_gid);
		return 0;
	}
	const char *step;
	if (setgroups(0, NULL) < 0) {
		step = "setgroups";
		goto fail;
	}
	if (drop_bounding_set(err, errlen) < 0)
		return -1;
	/* Keep the permitted set across setresuid; the effective set is
	 * cleared by it and raised again below to KEPT_CAP only. */
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0) < 0) {
		step = "prctl(PR_SET_KEEPCAPS)";
		goto fail;
	}
	if (setresgid(cfg->user_gid, cfg->user_gid, cfg->user_gid) < 0) {
		step = "setresgid";
		goto fail;
	}
	if (setresuid(cfg->user_uid, cfg->user_uid, cfg->user_uid) < 0) {
		step = "setresuid";
		goto fail;
	}
	prctl(PR_SET_KEEPCAPS, 0, 0, 0, 0);
	uint64_t kept = UINT64_C(1) << KEPT_CAP;
	if (cap_set(kept, kept, kept) < 0) {
		/* Started without it (a bounding set that lacks it): keep nothing. */
		log_warn("cannot keep CAP_NET_BIND_SERVICE; a reload cannot add ports below 1024");
		kept = 0;
		if (cap_set(0, 0, 0) < 0) {
			step = "capset";
			goto fail;
		}
	}
	/* Ambient: an executed successor (binary upgrade) keeps it too. */
	if (kept != 0 && prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, KEPT_CAP, 0, 0) < 0)
		log_warn("cannot make CAP_NET_BIND_SERVICE ambient; a successor this daemon executes will not have it");
	if (verify_dropped(cfg, kept, err, errlen) < 0)
		return -1;
	log_info("running as %s (uid %lu, gid %lu)%s", cfg->user, (unsigned long)cfg->user_uid,
		 (unsigned long)cfg->user_gid, kept != 0 ? ", keeping only CAP_NET_BIND_SERVICE" : ", no capabilities");
	return 0;
fail:
	snprintf(err, errlen, "%s:%d: user: cannot become %s: %s: %s", cfg->source, cfg->user_line, cfg->user,
		 step, strerror(errno));
	return -1;
}
