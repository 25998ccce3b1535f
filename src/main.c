/* main.c - the handoff command line: serve, check, reload, upgrade, run, version. */
#include <errno.h>
#include <limits.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include "admin.h"
#include "config.h"
#include "conn.h"
#include "control.h"
#include "generation.h"
#include "handover.h"
#include "listener.h"
#include "iplimit.h"
#include "log.h"
#include "net.h"
#include "privileges.h"
#include "relay.h"
#include "reload.h"
#include "route.h"
#include "run.h"
#include "server.h"
#include "stats.h"
#include "status.h"
#include "systemd.h"
#include "tcp_target.h"
#include "upstream.h"
#include "workers.h"

#ifndef HANDOFF_VERSION
#define HANDOFF_VERSION "0.1.0"
#endif

struct server server;

static volatile sig_atomic_t stop_requested;
static bool announced_ready;

static const char usage_text[] =
	"usage: handoff serve [-c FILE]    run the daemon (built-in demo configuration without -c)\n"
	"       handoff check -c FILE      validate a configuration file and exit\n"
	"       handoff reload [-c FILE]   make the running daemon re-read its configuration\n"
	"       handoff upgrade [-c FILE]  replace the running daemon by its binary, started again\n"
	"       handoff run --name NAME --port PORT -- PROGRAM [ARGS...]\n"
	"                                  run a TCP server as an upstream (see 'handoff run --help')\n"
	"       handoff status [-c FILE | --admin ADDRESS]\n"
	"                                  show routes, upstreams and counters from the admin endpoint\n"
	"       handoff version            print the version\n"
	"       handoff help               this text\n"
	"\n"
	"The configuration format is described in docs/config.md.\n";

static void
usage(FILE *out)
{
	fputs(usage_text, out);
}

/* Parse "-c FILE" (or "--config FILE", "-cFILE"); NULL means built-in. */
static int
parse_config_option(int argc, char **argv, const char **path)
{
	*path = NULL;
	for (int i = 0; i < argc; i++) {
		const char *a = argv[i];
		if ((strcmp(a, "-c") == 0 || strcmp(a, "--config") == 0) && i + 1 < argc) {
			*path = argv[++i];
		} else if (strncmp(a, "-c", 2) == 0 && a[2] != '\0') {
			*path = a + 2;
		} else if (strncmp(a, "--config=", 9) == 0) {
			*path = a + 9;
		} else {
			fprintf(stderr, "handoff: unexpected argument '%s' (see 'handoff help')\n", a);
			return -1;
		}
	}
	return 0;
}

static int
load_config(const char *path, struct config *cfg)
{
	char err[1024];
	int rc = path ? config_load_file(path, cfg, err, sizeof(err))
		      : config_load_string(config_builtin, "(built-in)", cfg, err, sizeof(err));
	if (rc < 0) {
		fprintf(stderr, "%s\n", err);
		return -1;
	}
	return 0;
}

static int
cmd_check(int argc, char **argv)
{
	const char *path;
	if (parse_config_option(argc, argv, &path) < 0)
		return 2;
	if (path == NULL) {
		fprintf(stderr, "handoff check: which file? use 'handoff check -c FILE'\n");
		return 2;
	}
	struct config cfg;
	if (load_config(path, &cfg) < 0)
		return 1;
	printf("%s: ok (%zu listener%s, %zu grant%s)\n", path, cfg.n_listeners,
	       cfg.n_listeners == 1 ? "" : "s", cfg.n_grants, cfg.n_grants == 1 ? "" : "s");
	config_free(&cfg);
	return 0;
}

/* Set when the old daemon gave up an upgrade before this one was ready:
 * this one stops, leaving it the runtime directory's files. */
static bool upgrade_abandoned;

/* Ready means the listeners accept and every upstream that registered
 * before the start has its answer: the first scan is done. After an
 * upgrade the old daemon is told only now, and stops accepting then;
 * until then it serves, so no client meets an empty backlog. */
static void
announce_ready(void)
{
	char status[PATH_MAX + 64], err[PATH_MAX + 128];
	announced_ready = true;
	admin_snapshot_expire();
	if (handover_ready() < 0) {
		log_warnx("the old daemon gave up the upgrade: not serving");
		notify_close();		/* the old daemon is still the service */
		upgrade_abandoned = true;
		stop_requested = 1;
		return;
	}
	workers_apply(server.cfg.workers);
	listeners_start();
	admin_took_over();
	if (control_write_pid(err, sizeof(err)) < 0)
		log_warnx("%s", err);
	snprintf(status, sizeof(status), "serving %zu listener(s), %s", server.cfg.n_listeners,
		 server.cfg.runtime_dir);
	log_info("ready: %zu listener(s), runtime directory %s", server.cfg.n_listeners, server.cfg.runtime_dir);
	/* With MAINPID: after an upgrade this process becomes the service's
	 * main process (the unit needs NotifyAccess=all for that). */
	notify_ready(status);
}

static void
after_batch(void *arg)
{
	(void)arg;
	conns_reap();
	upstreams_reap();
	relays_reap();
	gens_reap();
	if (!announced_ready && upstreams_scanned())
		announce_ready();
	/* After an upgrade: gone once its last connection has ended. */
	if (upgrade_drained())
		stop_requested = 1;
}

/* One line of counters: what happened to the connections since start. */
static void
log_stats(void)
{
	char line[512];
	size_t off = 0;
	off += (size_t)snprintf(line + off, sizeof(line) - off, "stats accepted=%llu",
				(unsigned long long)server.accepted);
	for (int o = 0; o < OUTCOME_COUNT && off < sizeof(line); o++)
		off += (size_t)snprintf(line + off, sizeof(line) - off, " %s=%llu", outcome_name((enum outcome)o),
					(unsigned long long)server.outcomes[o]);
	if (off < sizeof(line))
		snprintf(line + off, sizeof(line) - off,
			 " peeking=%u waiting=%u connecting=%u relaying=%u bytes_relayed=%llu relays_refused=%llu",
			 server.n_peeking, server.n_waiting, server.n_connecting, relays_active(),
			 (unsigned long long)server.bytes_relayed, (unsigned long long)tcp_relays_refused());
	log_info("%s", line);
}

static void
on_signal(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	struct signalfd_siginfo si;
	while (read(io->fd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
		switch (si.ssi_signo) {
		case SIGHUP: {
			/* RELOADING=1 first, READY=1 after, as a Type=notify-reload
			 * service manager expects, whether or not it succeeded:
			 * the daemon serves either way. */
			char msg[1024];
			notify_reloading();
			int reloaded = daemon_reload(msg, sizeof(msg));	/* logs either way */
			/* SIGHUP is also a log rotation's signal: that half does
			 * not depend on the file being accepted. */
			if (reloaded < 0)
				reload_reopen_access_log();
			notify_ready(reloaded == 0 ? "reloaded" : "reload failed, configuration unchanged");
			break;
		}
		case SIGUSR1:
			log_stats();
			if (accesslog_reopen() < 0)
				log_warn("cannot reopen access log %s", server.cfg.access_log);
			break;
		case SIGUSR2: {
			char err[1024];
			if (upgrade_start(err, sizeof(err)) < 0)
				log_warnx("upgrade not started: %s", err);
			break;
		}
		default:
			log_info("signal %u: stopping", si.ssi_signo);
			stop_requested = 1;
			break;
		}
	}
}

/* Say why the daemon cannot start (to an old daemon waiting for it too). */
static int
serve_failed(const char *why)
{
	fprintf(stderr, "%s\n", why);
	handover_failed(why);
	return 1;
}

static int
cmd_serve(int argc, char **argv)
{
	const char *path;
	char err[1024 + 2 * PATH_MAX];
	if (parse_config_option(argc, argv, &path) < 0)
		return 2;
	if (handover_begin(err, sizeof(err)) < 0)
		return serve_failed(err);
	int loaded = path ? config_load_file(path, &server.cfg, err, sizeof(err))
			  : config_load_string(config_builtin, "(built-in)", &server.cfg, err, sizeof(err));
	if (loaded < 0 || privileges_check(&server.cfg, err, sizeof(err)) < 0)
		return serve_failed(err);

	signal(SIGPIPE, SIG_IGN);
	sigset_t mask;
	sigemptyset(&mask);
	sigaddset(&mask, SIGTERM);
	sigaddset(&mask, SIGINT);
	sigaddset(&mask, SIGHUP);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sigprocmask(SIG_BLOCK, &mask, NULL);
	struct loop_io signal_io = { .fd = signalfd(-1, &mask, SFD_NONBLOCK | SFD_CLOEXEC), .cb = on_signal };

	server.loop = loop_new();
	server.gen = gen_new();
	if (server.loop == NULL || signal_io.fd < 0 || server.gen == NULL) {
		snprintf(err, sizeof(err), "handoff: cannot set up the event loop: %s", strerror(errno));
		return serve_failed(err);
	}
	if (workers_init(err, sizeof(err)) < 0)
		return serve_failed(err);
	loop_io_add(server.loop, &signal_io, EPOLLIN);
	loop_set_after_batch(server.loop, after_batch, NULL);
	iplimit_configure(server.cfg.ipv6_prefix);
	if (accesslog_open(server.cfg.access_log) < 0) {
		snprintf(err, sizeof(err), "%s: cannot open access log %s: %s", server.cfg.source,
			 server.cfg.access_log, strerror(errno));
		return serve_failed(err);
	}
	unsigned long nofile = net_raise_nofile();
	relay_budget_init(nofile);
	notify_init();
	/* Start-up order (docs/architecture.md), the same for a plain start,
	 * socket activation and an upgrade: sockets passed by the service
	 * manager or the old daemon, then the runtime directory claimed (its
	 * control socket: no second daemon there), then bind the rest, then
	 * the start of the upstreams scan, then give up root (while this is
	 * the only thread: capabilities are per thread), then the admin
	 * thread. Ready, and accepting, once the scan is done
	 * (announce_ready). */
	if (listeners_create(err, sizeof(err)) < 0 ||
	    activation_adopt_listeners(err, sizeof(err)) < 0 || handover_receive(err, sizeof(err)) < 0 ||
	    control_open(err, sizeof(err)) < 0 || listeners_open(err, sizeof(err)) < 0 ||
	    routes_init(err, sizeof(err)) < 0 || upstreams_init(err, sizeof(err)) < 0 ||
	    privileges_drop(&server.cfg, err, sizeof(err)) < 0 ||
	    admin_start(HANDOFF_VERSION, err, sizeof(err)) < 0) {
		admin_stop();
		listeners_close();
		control_close(handover_pending());
		if (!handover_pending())	/* an upgrade's failure is the old daemon's to report */
			notify_status(err);
		return serve_failed(err);
	}
	log_info("up to %lu descriptors", nofile);

	int rc = loop_run(server.loop, &stop_requested);
	if (rc < 0)
		log_warn("event loop failed");
	/* Not after an upgrade: then the service goes on in the new daemon,
	 * and this one no longer notifies (notify_close). */
	notify_stopping();

	/* Connections still peeking, waiting or relayed die with the daemon;
	 * those already handed off belong to their upstreams and are not
	 * touched. They go before the listeners, whose configuration their
	 * access-log lines name. After an upgrade the new daemon owns the
	 * control socket, the pid file, the status files and the admin
	 * endpoint's socket. */
	bool handed_over = upgrade_handed_over() || upgrade_abandoned;
	workers_shutdown();	/* what they passed to the loop is closed below */
	admin_stop();
	conns_close_all();
	listeners_close();
	control_close(handed_over);
	upstreams_close(handed_over);
	routes_close();
	relays_reap();
	relay_pipes_close();
	gens_free_all();
	log_stats();
	stats_free();
	loop_io_del(server.loop, &signal_io);
	close(signal_io.fd);
	loop_free(server.loop);
	accesslog_close();
	config_free(&server.cfg);
	notify_close();
	log_info("stopped");
	return rc < 0 ? 1 : 0;
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	const char *cmd = argv[1];
	if (strcmp(cmd, "serve") == 0) {
		handover_remember_argv(argv);	/* what an upgrade runs again */
		return cmd_serve(argc - 2, argv + 2);
	}
	if (strcmp(cmd, "check") == 0)
		return cmd_check(argc - 2, argv + 2);
	if (strcmp(cmd, "status") == 0)
		return cmd_status(argc - 2, argv + 2);
	if (strcmp(cmd, "reload") == 0 || strcmp(cmd, "upgrade") == 0)
		return control_client(cmd, argc - 2, argv + 2);
	if (strcmp(cmd, "run") == 0)
		return cmd_run(argc - 2, argv + 2);
	if (strcmp(cmd, "version") == 0 || strcmp(cmd, "--version") == 0) {
		printf("handoff %s\n", HANDOFF_VERSION);
		return 0;
	}
	if (strcmp(cmd, "help") == 0 || strcmp(cmd, "--help") == 0 || strcmp(cmd, "-h") == 0) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "handoff: unknown command '%s'\n", cmd);
	usage(stderr);
	return 2;
}
