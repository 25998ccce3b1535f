/* launcher.h - what the parts of `handoff run` share: its options, the registration watch and the helpers between them. */
#ifndef HANDOFF_RUN_LAUNCHER_H
#define HANDOFF_RUN_LAUNCHER_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "hostname.h"
#include "wire.h"

#define PRELOAD_NAME		"libhandoff-preload.so"
/* The build for programs linked with musl (Alpine images). */
#define PRELOAD_NAME_MUSL	"libhandoff-preload-musl.so"
#define MAX_RUN_NAMES		64
#define MAX_RUN_PORTS		64
/* Upstream IDs are "<pid>-<16 hex digits>"; longer names are not ours. */
#define ID_MAX			64
#define MAX_OUR_IDS		256

/* A --port: its number and the connections its listeners take. */
struct run_port {
	unsigned number;
	const char *protocol;		/* "tls", "http", or NULL for both */
};

struct run_options {
	char names[MAX_RUN_NAMES][HOSTNAME_MAX + 3];	/* "*." + name + NUL */
	size_t n_names;
	struct run_port ports[MAX_RUN_PORTS];
	size_t n_ports;
	const char *claim;		/* --protocol: "ssh" or "silent", no names */
	const char *alpn[WIRE_NAMES_ALPN_MAX];	/* --alpn ids */
	size_t n_alpn;
	const char *runtime_dir;	/* as given, NULL: the default */
	unsigned wait_seconds;
	char **program_argv;		/* NULL-terminated, from argv */
};

/* What `handoff run` watches in RUNDIR/upstreams while PROGRAM runs. */
struct watch {
	const struct run_options *opt;
	const char *program;
	const char *runtime_dir;
	char upstreams[PATH_MAX + sizeof(WIRE_DIR_UPSTREAMS) + 1];
	pid_t child;
	char (*before)[ID_MAX];		/* IDs whose names existed at start */
	size_t n_before;
	char ours[MAX_OUR_IDS][ID_MAX];	/* IDs PROGRAM registered */
	bool refusal_reported[MAX_OUR_IDS];
	size_t n_ours;
	int64_t started_ms;		/* when PROGRAM was started */
	int64_t found_ms;		/* when the first of ours appeared */
	bool stop_passed_on;		/* we passed on a signal that stops servers */
	bool answered;			/* the daemon wrote a status for one of ours */
	const char *preload;		/* the library's path */
	int64_t next_check_ms;		/* preload_check_due(): next look at /proc */
	int check_interval_ms;
	bool warned_no_preload;
	bool warned_unbound;
	bool warned_unanswered;
};


/* options.c */
extern const char run_usage_text[];
/* Returns 0, 1 if --help was asked for, -1 after a usage error. */
int run_parse_options(int argc, char **argv, struct run_options *opt);

/* program.c */
int find_program(const char *name, char *out, size_t size);
int resolve_runtime_dir(const struct run_options *opt, char *out);

/* The C library a program is linked with, by its ELF dynamic linker
 * (PT_INTERP): the preload library must be built for the same one. */
enum program_libc {
	LIBC_GLIBC,		/* ld-linux-*.so.N, or anything not musl's */
	LIBC_MUSL,		/* /lib/ld-musl-ARCH.so.1 */
};

/* What check_preloadable() found out about the program that will load the
 * preload library (PROGRAM, or the interpreter of a PROGRAM script). */
struct program_info {
	char path[PATH_MAX];
	char interpreter[256];		/* its PT_INTERP, "" if not known */
	enum program_libc libc;
};

int check_preloadable(const char *program, const char *path, struct program_info *info);
int find_preload(const struct program_info *info, char *out, size_t size);

/* proc.c */
int64_t monotonic_ms(void);

/* What /proc/PID/stat says about a process. */
struct proc_info {
	char comm[32];
	char state;
	pid_t ppid, pgrp, session;
};

/* Fills *out; false if pid is gone (or reaped). */
bool proc_stat(pid_t pid, struct proc_info *out);
/* Is pid the ancestor or one of its descendants (per /proc)? */
bool descends_from(pid_t pid, pid_t ancestor);

/* Who sent a signal, by the sender's pid (signalfd's ssi_pid). */
enum sender {
	SENDER_PROGRAM,		/* PROGRAM or a process of its own */
	SENDER_OTHER,		/* anyone else */
	SENDER_UNKNOWN,		/* gone before we looked */
};
enum sender signal_sender(pid_t sender, pid_t child);

/* watch.c */
void watch_scan_upstreams(struct watch *w, bool at_start);
void watch_read_inotify(struct watch *w, int fd);
int watch_check_deadlines(struct watch *w);
/* "a.example, b.example" */
void watch_names_joined(const struct run_options *opt, char *out, size_t size);

/* preload_check.c: warn once about a process of PROGRAM's that holds its
 * listener without the preload library. Checks come often after
 * preload_check_soon(), then every few seconds; preload_check_due() runs
 * one if it is time and returns the poll() timeout until the next (-1:
 * none). */
void preload_check_soon(struct watch *w, int64_t now);
int preload_check_due(struct watch *w);

/* supervise.c */
int supervise(struct watch *w, int signal_fd, int inotify_fd);

#endif
