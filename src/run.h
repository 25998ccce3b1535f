/* run.h - `handoff run`: start an unmodified TCP server as a handoff upstream through the preload library. */
#ifndef HANDOFF_RUN_H
#define HANDOFF_RUN_H

/* The subcommand; argv holds the arguments after "run". Returns the exit
 * status: the server's own (128+N if signal N killed it), 1 if it could not
 * be started, 2 for a usage error. */
int cmd_run(int argc, char **argv);

#endif
