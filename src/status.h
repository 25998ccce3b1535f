/* status.h - `handoff status`: the admin endpoint's state as terminal tables. */
#ifndef HANDOFF_STATUS_H
#define HANDOFF_STATUS_H

/* argv holds the arguments after "status"; returns the exit status. */
int cmd_status(int argc, char **argv);

#endif
