/* run_main.c - the stand-alone `handoff run` for container images: only the run command, linked with nothing but the C library. */
/*
 * The full handoff executable links the daemon's libraries (libmicrohttpd,
 * jansson, libcurl), which an image that only starts a server does not
 * have. This one is built statically with musl (`make musl`), so the same
 * file runs in glibc and musl images alike; `make container-kit` installs
 * it as /usr/local/bin/handoff. It answers "handoff run ..." and, under the
 * name handoff-run, "handoff-run ...".
 */
#include <stdio.h>
#include <string.h>

#include "run.h"

int
main(int argc, char **argv)
{
	const char *self = argc > 0 ? strrchr(argv[0], '/') : NULL;

	self = self != NULL ? self + 1 : argc > 0 ? argv[0] : "handoff";
	if (strcmp(self, "handoff-run") == 0)
		return cmd_run(argc - 1, argv + 1);
	if (argc >= 2 && strcmp(argv[1], "run") == 0)
		return cmd_run(argc - 2, argv + 2);
	fprintf(stderr, "handoff: this is the container build of handoff, which has only the run "
		"command: handoff run --name NAME --port PORT -- PROGRAM [ARGS...] (see 'handoff run "
		"--help'); the daemon (handoff serve) runs on the host\n");
	return 2;
}
