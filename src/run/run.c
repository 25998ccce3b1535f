/* run.c - `handoff run`: start an unmodified TCP server with libhandoff-preload.so so that its listeners become handoff upstreams. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "run.h"
#include "run/launcher.h"

/* HANDOFF_ALPN: the --alpn ids, comma-separated; unset without any. */
static int
set_alpn_env(const struct run_options *opt)
{
	char list[WIRE_NAMES_ALPN_MAX * 257];
	size_t used = 0;

	if (opt->n_alpn == 0)
		return unsetenv("HANDOFF_ALPN");
	for (size_t i = 0; i < opt->n_alpn; i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%s", i ? "," : "", opt->alpn[i]);
	return setenv("HANDOFF_ALPN", list, 1);
}

/* In the child: the environment for the preload library, then exec. */
static void __attribute__((noreturn))
exec_program(const struct run_options *opt, const char *path, const char *preload,
	     const char *runtime_dir, const sigset_t *mask)
{
	char names[MAX_RUN_NAMES * sizeof(opt->names[0])], ports[MAX_RUN_PORTS * 16];
	const char *existing = getenv("LD_PRELOAD");
	char *ld_preload = NULL;
	size_t used = 0;

	names[0] = '\0';
	for (size_t i = 0; i < opt->n_names; i++)
		used += (size_t)snprintf(names + used, sizeof(names) - used, "%s%s",
					 i ? "," : "", opt->names[i]);
	used = 0;
	ports[0] = '\0';
	for (size_t i = 0; i < opt->n_ports; i++)
		used += (size_t)snprintf(ports + used, sizeof(ports) - used, "%s%u%s%s",
					 i ? "," : "", opt->ports[i].number,
					 opt->ports[i].protocol ? "/" : "",
					 opt->ports[i].protocol ? opt->ports[i].protocol : "");
	if (existing != NULL && existing[0] != '\0' && strstr(existing, preload) == NULL) {
		if (asprintf(&ld_preload, "%s:%s", existing, preload) < 0)
			ld_preload = NULL;
	} else if (existing != NULL && existing[0] != '\0') {
		ld_preload = strdup(existing);
	} else {
		ld_preload = strdup(preload);
	}
	if (ld_preload == NULL || setenv("LD_PRELOAD", ld_preload, 1) < 0 ||
	    setenv("HANDOFF_NAMES", names, 1) < 0 || setenv("HANDOFF_PORTS", ports, 1) < 0 ||
	    setenv("HANDOFF_RUNTIME_DIR", runtime_dir, 1) < 0 || set_alpn_env(opt) < 0) {
		fprintf(stderr, "handoff run: cannot set up the environment: %s\n", strerror(errno));
		_exit(127);
	}
	sigprocmask(SIG_SETMASK, mask, NULL);
	execv(path, opt->program_argv);
	fprintf(stderr, "handoff run: cannot execute %s: %s\n", path, strerror(errno));
	_exit(errno == ENOENT ? 127 : 126);
}

int
cmd_run(int argc, char **argv)
{
	/* Static: some 40 KiB of names and IDs, run once per process. */
	static struct run_options opt;
	static struct watch w;
	static char runtime_dir[PATH_MAX];
	static struct program_info program_info;
	char program_path[PATH_MAX], preload[PATH_MAX];
	sigset_t forwarded, old_mask;
	int signal_fd, inotify_fd, rc;
	static const int signals[] = {
		SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH, SIGCHLD,
	};

	rc = run_parse_options(argc, argv, &opt);
	if (rc != 0) {
		if (rc > 0)
			fputs(run_usage_text, stdout);
		return rc > 0 ? 0 : 2;
	}
	w.opt = &opt;
	w.program = opt.program_argv[0];
	w.runtime_dir = runtime_dir;
	if (find_program(w.program, program_path, sizeof(program_path)) < 0) {
		fprintf(stderr, "handoff run: %s: command not found\n", w.program);
		return 127;
	}
	if (check_preloadable(w.program, program_path, &program_info) < 0 ||
	    find_preload(&program_info, preload, sizeof(preload)) < 0 ||
	    resolve_runtime_dir(&opt, runtime_dir) < 0)
		return 1;
	if (snprintf(w.upstreams, sizeof(w.upstreams), "%s/%s", runtime_dir,
		     WIRE_DIR_UPSTREAMS) >= (int)sizeof(w.upstreams))
		return 1;	/* cannot happen: resolve_runtime_dir() checked it */

	/* Watch before looking, so that no registration falls in between. */
	inotify_fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (inotify_fd >= 0 &&
	    inotify_add_watch(inotify_fd, w.upstreams, IN_MOVED_TO | IN_CLOSE_WRITE) < 0) {
		fprintf(stderr, "handoff run: cannot watch %s (%s); no registration reports\n",
			w.upstreams, strerror(errno));
		close(inotify_fd);
		inotify_fd = -1;
	}
	watch_scan_upstreams(&w, true);

	sigemptyset(&forwarded);
	for (size_t i = 0; i < sizeof(signals) / sizeof(signals[0]); i++)
		sigaddset(&forwarded, signals[i]);
	sigprocmask(SIG_BLOCK, &forwarded, &old_mask);
	signal_fd = signalfd(-1, &forwarded, SFD_NONBLOCK | SFD_CLOEXEC);
	if (signal_fd < 0) {
		fprintf(stderr, "handoff run: signalfd: %s\n", strerror(errno));
		return 1;
	}
	fflush(NULL);
	w.started_ms = monotonic_ms();
	w.preload = preload;
	preload_check_soon(&w, w.started_ms);
	w.child = fork();
	if (w.child < 0) {
		fprintf(stderr, "handoff run: fork: %s\n", strerror(errno));
		return 1;
	}
	if (w.child == 0)
		exec_program(&opt, program_path, preload, runtime_dir, &old_mask);

	rc = supervise(&w, signal_fd, inotify_fd);
	close(signal_fd);
	if (inotify_fd >= 0)
		close(inotify_fd);
	free(w.before);
	return rc;
}
