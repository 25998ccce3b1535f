/* proc.c - what `handoff run` learns about processes from /proc, and the clock it times its warnings with. */
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "run/launcher.h"

int64_t
monotonic_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Is pid the child or one of its descendants (per /proc)? */
bool
descends_from(pid_t pid, pid_t ancestor)
{
	for (int depth = 0; depth < 32 && pid > 1; depth++) {
		char path[64], stat_line[512];
		FILE *f;
		char *paren;
		long ppid;

		if (pid == ancestor)
			return true;
		snprintf(path, sizeof(path), "/proc/%ld/stat", (long)pid);
		f = fopen(path, "re");
		if (f == NULL)
			return false;
		if (fgets(stat_line, sizeof(stat_line), f) == NULL) {
			fclose(f);
			return false;
		}
		fclose(f);
		/* "pid (comm) state ppid ...": comm may hold anything but the
		 * last ')' ends it. */
		paren = strrchr(stat_line, ')');
		if (paren == NULL || sscanf(paren + 1, " %*c %ld", &ppid) != 1)
			return false;
		pid = (pid_t)ppid;
	}
	return false;
}

