/* runtime_dir.c - the daemon's default runtime directory, shared by `handoff serve` and the stand-alone `handoff run`. */
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "config.h"

void
config_default_runtime_dir(char *buf, size_t bufsize)
{
	uid_t euid = geteuid();
	const char *xdg = getenv("XDG_RUNTIME_DIR");
	if (euid == 0)
		snprintf(buf, bufsize, "/run/handoff");
	else if (xdg != NULL && xdg[0] != '\0')
		snprintf(buf, bufsize, "%s/handoff", xdg);
	else
		snprintf(buf, bufsize, "/tmp/handoff-%lu", (unsigned long)euid);
}
