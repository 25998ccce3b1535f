/* proc.c - what `handoff run` learns about processes from /proc, and the clock it times its warnings with. */
#include <stdio.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "run/launcher.h"

/* Deeper process trees than this are not followed up to PROGRAM. */
#define MAX_ANCESTRY_DEPTH	32

int64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

bool
proc_stat(pid_t pid, struct proc_info *out)
{
	char path[64], line[1024];
	const char *open_paren, *close_paren;
	long ppid, pgrp, session;
	size_t comm_len;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return false;
	if (fgets(line, sizeof(line), f) == NULL) {
		fclose(f);
		return false;
	}
	fclose(f);
	/* "pid (comm) state ppid pgrp session ...": comm may hold anything,
	 * but the last ')' ends it. */
	open_paren = strchr(line, '(');
	close_paren = strrchr(line, ')');
	if (open_paren == NULL || close_paren == NULL || close_paren < open_paren ||
	    sscanf(close_paren + 1, " %c %ld %ld %ld", &out->state, &ppid, &pgrp, &session) != 4)
		return false;
	comm_len = (size_t)(close_paren - open_paren - 1);
	if (comm_len >= sizeof(out->comm))
		comm_len = sizeof(out->comm) - 1;
	memcpy(out->comm, open_paren + 1, comm_len);
	out->comm[comm_len] = '\0';
	out->ppid = (pid_t)ppid;
	out->pgrp = (pid_t)pgrp;
	out->session = (pid_t)session;
	return true;
}

bool
descends_from(pid_t pid, pid_t ancestor)
{
	struct proc_info info;

	for (int depth = 0; depth < MAX_ANCESTRY_DEPTH && pid > 1; depth++) {
		if (pid == ancestor)
			return true;
		if (!proc_stat(pid, &info))
			return false;
		pid = info.ppid;
	}
	return false;
}

enum sender
signal_sender(pid_t sender, pid_t child)
{
	struct proc_info info;
	pid_t child_group, child_session;

	if (sender == child)
		return SENDER_PROGRAM;
	if (!proc_stat(sender, &info))
		return SENDER_UNKNOWN;
	if (descends_from(sender, child))
		return SENDER_PROGRAM;
	/* A process group or session PROGRAM made for itself holds only its
	 * own processes, also those that outlived their parent and went to
	 * init. One shared with handoff run may hold others: the shell
	 * script that started handoff run, for one. */
	child_group = getpgid(child);
	child_session = getsid(child);
	if ((child_group > 0 && child_group != getpgrp() && info.pgrp == child_group) ||
	    (child_session > 0 && child_session != getsid(0) && info.session == child_session))
		return SENDER_PROGRAM;
	return SENDER_OTHER;
}
