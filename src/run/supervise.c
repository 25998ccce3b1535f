/* supervise.c - while PROGRAM runs: pass signals on to it, keep the registration watch going, and collect its exit status. */
#include <errno.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/signalfd.h>
#include <sys/wait.h>
#include <unistd.h>

#include "run/launcher.h"

static int
exit_status_of(int status)
{
	if (WIFEXITED(status))
		return WEXITSTATUS(status);
	if (WIFSIGNALED(status))
		return 128 + WTERMSIG(status);
	return 1;
}

/* The signals servers take as "stop" (SIGWINCH: Apache's graceful stop). */
static bool
stops_servers(int signo)
{
	return signo == SIGTERM || signo == SIGINT || signo == SIGQUIT || signo == SIGWINCH;
}

/* "TERM" for SIGTERM, or NULL. glibc has sigabbrev_np(); musl (the
 * stand-alone build for container images) has not, so the signals that end
 * servers are named here. */
static const char *
signal_abbrev(int signo)
{
#ifdef __GLIBC__
	return sigabbrev_np(signo);
#else
	static const struct { int signo; const char *name; } names[] = {
		{ SIGHUP, "HUP" }, { SIGINT, "INT" }, { SIGQUIT, "QUIT" }, { SIGILL, "ILL" },
		{ SIGTRAP, "TRAP" }, { SIGABRT, "ABRT" }, { SIGBUS, "BUS" }, { SIGFPE, "FPE" },
		{ SIGKILL, "KILL" }, { SIGUSR1, "USR1" }, { SIGSEGV, "SEGV" }, { SIGUSR2, "USR2" },
		{ SIGPIPE, "PIPE" }, { SIGALRM, "ALRM" }, { SIGTERM, "TERM" }, { SIGXCPU, "XCPU" },
		{ SIGXFSZ, "XFSZ" }, { SIGSYS, "SYS" },
	};

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (names[i].signo == signo)
			return names[i].name;
	return NULL;
#endif
}

/* PROGRAM has ended on its own, or in a way nobody asked for: say how,
 * and what that means for its names, which the daemon's log alone would
 * otherwise explain (clients get "unrecognized name" or a 503). */
static void
report_exit(const struct watch *w, int status)
{
	char names[2048], how[128];
	int64_t ms = monotonic_ms() - w->started_ms;
	const char *abbrev;

	if (WIFSIGNALED(status)) {
		abbrev = signal_abbrev(WTERMSIG(status));
		snprintf(how, sizeof(how), "was killed by signal %d%s%s%s%s", WTERMSIG(status),
			 abbrev ? " (SIG" : "", abbrev ? abbrev : "", abbrev ? ")" : "",
			 WCOREDUMP(status) ? ", core dumped" : "");
	} else if (WIFEXITED(status) && WEXITSTATUS(status) != 0) {
		snprintf(how, sizeof(how), "exited with status %d", WEXITSTATUS(status));
	} else {
		return;		/* a clean exit */
	}
	if (w->stop_passed_on) {
		/* Stopped as asked; only the manner is news. */
		fprintf(stderr, "handoff run: %s %s\n", w->program, how);
		return;
	}
	watch_names_joined(w->opt, names, sizeof(names));
	if (w->n_ours == 0)
		fprintf(stderr, "handoff run: %s %s after %lld.%lld s, before it registered: no "
			"connection for %s reached it\n", w->program, how, (long long)(ms / 1000),
			(long long)(ms % 1000 / 100), names);
	else
		fprintf(stderr, "handoff run: %s %s after %lld.%lld s; %s %s no longer served by "
			"it (clients get \"unrecognized name\" over TLS, 503 over HTTP, unless "
			"another upstream serves %s)\n", w->program, how, (long long)(ms / 1000),
			(long long)(ms % 1000 / 100), names, w->opt->n_names == 1 ? "is" : "are",
			w->opt->n_names == 1 ? "it" : "them");
}

/* Pass a signal on to PROGRAM unless it has it already: the terminal
 * signals the whole foreground process group (Ctrl-C), and a server that
 * signals its own process group (Apache prefork stopping its children)
 * reaches handoff run too, since PROGRAM shares its group. Sending such a
 * signal back would stop or restart the server twice.
 *
 * A sender that has gone before we look (its /proc entry reaped) cannot
 * be placed: its signal is passed on, because it is more likely a `kill`
 * command that exited at once than one of PROGRAM's processes, and losing
 * a stop request is worse than a repeated one. */
static bool
should_pass_on(const struct signalfd_siginfo *si, pid_t child)
{
	if (si->ssi_code == SI_KERNEL)
		return false;
	/* Sent with kill(), sigqueue() or tgkill(): the sender is known. */
	if (si->ssi_code == SI_USER || si->ssi_code == SI_QUEUE || si->ssi_code == SI_TKILL)
		return signal_sender((pid_t)si->ssi_pid, child) != SENDER_PROGRAM;
	return true;
}

/* The sooner of two poll() timeouts, where -1 is never. */
static int
earliest(int a, int b)
{
	if (a < 0)
		return b;
	return b < 0 || a < b ? a : b;
}

/* Forward signals, watch the registration, and return PROGRAM's exit
 * status once it has ended. */
int
supervise(struct watch *w, int signal_fd, int inotify_fd)
{
	for (;;) {
		struct pollfd fds[2] = {
			{ .fd = signal_fd, .events = POLLIN },
			{ .fd = inotify_fd, .events = POLLIN },
		};
		struct signalfd_siginfo si;
		int timeout = earliest(watch_check_deadlines(w), preload_check_due(w));

		if (poll(fds, inotify_fd >= 0 ? 2 : 1, timeout) < 0 &&
		    errno != EINTR) {
			fprintf(stderr, "handoff run: poll: %s\n", strerror(errno));
			return 1;
		}
		if (fds[1].revents & POLLIN)
			watch_read_inotify(w, inotify_fd);
		if (!(fds[0].revents & POLLIN))
			continue;
		while (read(signal_fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
			int status;

			if (si.ssi_signo != SIGCHLD) {
				if (should_pass_on(&si, w->child) &&
				    kill(w->child, (int)si.ssi_signo) == 0 &&
				    stops_servers((int)si.ssi_signo))
					w->stop_passed_on = true;
				continue;
			}
			if (waitpid(w->child, &status, WNOHANG) == w->child) {
				/* Its last words about the registration, if any. */
				if (inotify_fd >= 0)
					watch_read_inotify(w, inotify_fd);
				report_exit(w, status);
				return exit_status_of(status);
			}
		}
	}
}

