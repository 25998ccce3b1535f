/* reload.c - re-read the configuration and apply it as a new generation, keeping sockets and connections. */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "admin.h"
#include "config.h"
#include "generation.h"
#include "handover.h"
#include "listener.h"
#include "log.h"
#include "reload.h"
#include "route.h"
#include "server.h"
#include "upstream.h"
#include "workers.h"

static const char builtin_label[] = "(built-in)";

static int
load(const char *source, struct config *out, char *err, size_t errlen)
{
	if (strcmp(source, builtin_label) == 0)
		return config_load_string(config_builtin, builtin_label, out, err, errlen);
	return config_load_file(source, out, err, errlen);
}

/* Settings a running daemon cannot take: refused with the reason. */
static int
check_fixed_settings(const struct config *next, char *msg, size_t msglen)
{
	if (strcmp(next->runtime_dir, server.cfg.runtime_dir) != 0) {
		snprintf(msg, msglen, "%s: runtime-dir cannot change while the daemon runs (%s -> %s): "
			 "stop the daemon and start it again", next->source, server.cfg.runtime_dir, next->runtime_dir);
		return -1;
	}
	if (strcmp(next->access_log, "stderr") != 0 && strcmp(next->access_log, "off") != 0 &&
	    strcmp(next->access_log, server.cfg.access_log) != 0) {
		int fd = open(next->access_log, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC | O_NOCTTY, 0640);
		if (fd < 0) {
			snprintf(msg, msglen, "%s: cannot open access log %s: %s", next->source, next->access_log,
				 strerror(errno));
			return -1;
		}
		close(fd);
	}
	return 0;
}

void
reload_reopen_access_log(void)
{
	/* The messages are those the operations guide names for a log
	 * rotation. A failed reopen keeps the old file. */
	const char *spec = server.cfg.access_log;
	if (accesslog_reopen() < 0)
		log_warn("cannot reopen access log %s", spec);
	else if (strcmp(spec, "stderr") != 0 && strcmp(spec, "off") != 0)
		log_info("access log reopened");
}

static void
apply_access_log(const struct config *old_cfg)
{
	const char *spec = server.cfg.access_log;
	/* The same path: a log rotation's SIGHUP. */
	if (strcmp(spec, old_cfg->access_log) != 0) {
		if (accesslog_open(spec) < 0)
			log_warn("cannot open access log %s", spec);
	} else {
		reload_reopen_access_log();
	}
}

static size_t
listeners_added(const struct config *a, const struct config *b)
{
	size_t n = 0;
	for (size_t i = 0; i < b->n_listeners; i++) {
		bool found = false;
		for (size_t k = 0; k < a->n_listeners && !found; k++)
			found = strcmp(a->listeners[k].text, b->listeners[i].text) == 0;
		n += !found;
	}
	return n;
}

int
daemon_reload(char *msg, size_t msglen)
{
	struct config next;
	char err[1024];
	struct config_gen *gen = NULL;
	struct route_set *routes = NULL;

	if (upgrade_handed_over()) {
		snprintf(msg, msglen, "this daemon handed its sockets to a new one and only finishes its "
			 "connections: reload the new daemon");
		log_warnx("reload refused: %s", msg);
		return -1;
	}
	if (load(server.cfg.source, &next, err, sizeof(err)) < 0) {
		snprintf(msg, msglen, "%s", err);
		log_warnx("reload failed, configuration unchanged: %s", msg);
		return -1;
	}
	if (check_fixed_settings(&next, msg, msglen) < 0)
		goto fail;
	if (next.ipv6_prefix != server.cfg.ipv6_prefix) {
		/* The per-address table is keyed by it while connections hold entries. */
		log_warnx("%s: ipv6-prefix %u takes effect at the next start or upgrade; %u stays until then",
			  next.source, next.ipv6_prefix, server.cfg.ipv6_prefix);
		next.ipv6_prefix = server.cfg.ipv6_prefix;
	}
	if (admin_settings_differ(&next.admin, &server.cfg.admin)) {
		/* The admin thread reads its own copy, and its socket is bound
		 * once; an upgrade starts a daemon that binds the new one. */
		log_warnx("%s: the admin settings take effect at the next upgrade or start; the admin endpoint "
			  "stays %s%s until then", next.source, server.cfg.admin.enabled ? "on " : "off",
			  server.cfg.admin.enabled ? server.cfg.admin.text : "");
		next.admin = server.cfg.admin;
	}
	if ((gen = gen_new()) == NULL || (routes = routes_prepare(&next)) == NULL) {
		snprintf(msg, msglen, "%s: out of memory", next.source);
		goto fail;
	}
	if (listeners_prepare(&next, gen, msg, msglen) < 0)
		goto fail;

	/* From here on nothing can fail: the new generation becomes current. */
	struct config_gen *old = server.gen;
	struct config old_cfg = server.cfg;
	size_t added = listeners_added(&old_cfg, &next), removed = listeners_added(&next, &old_cfg);
	server.cfg = next;
	server.gen = gen;
	listeners_commit(old, gen);
	routes_commit(routes, old);
	workers_apply(server.cfg.workers);
	gen_retire(old, &old_cfg);	/* its settings stay for its connections */
	apply_access_log(&old->cfg);
	upstreams_apply_grants();
	snprintf(msg, msglen, "%s: reloaded (generation %u: %zu listener%s, %zu added, %zu removed; %zu grant%s; "
		 "%zu route%s)", server.cfg.source, gen->number, server.cfg.n_listeners,
		 server.cfg.n_listeners == 1 ? "" : "s", added, removed, server.cfg.n_grants,
		 server.cfg.n_grants == 1 ? "" : "s", server.cfg.n_routes, server.cfg.n_routes == 1 ? "" : "s");
	log_info("%s", msg);
	return 0;
fail:
	log_warnx("reload failed, configuration unchanged: %s", msg);
	routes_discard(routes);
	if (gen != NULL)
		listeners_unprepare(gen);
	gen_discard(gen);
	config_free(&next);
	return -1;
}
