/* preload_check.c - find PROGRAM's processes that hold its listeners without the preload library, the mark of a launcher that cleared LD_PRELOAD. */
#include <ctype.h>
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "run/launcher.h"

/* Checks run often after PROGRAM starts and after each new registration,
 * when launchers act, then every CHECK_MAX_INTERVAL_MS while it runs:
 * systemd-socket-activate, for one, starts the server only when the first
 * connection comes, which may be hours later. */
#define CHECK_FIRST_MS		250
#define CHECK_MAX_INTERVAL_MS	8000
/* Bounds on one check's /proc reading. */
#define MAX_PROCESSES		32768
#define MAX_DESCENDANTS		256
#define MAX_FDS_PER_PROCESS	4096
#define MAX_TABLE_LINES		100000
#define MAX_MAPS_LINES		200000
#define MAX_TARGETS		(MAX_OUR_IDS + 2 * MAX_RUN_PORTS)

/* A socket PROGRAM's listener is: a receiver it registered, or a TCP
 * listening socket on one of the --port ports (bound for real). */
struct target {
	unsigned long inode;
	unsigned port;			/* 0: a registration's receiver */
};

struct targets {
	struct target list[MAX_TARGETS];
	size_t n;
};

static void
add_target(struct targets *t, unsigned long inode, unsigned port)
{
	if (t->n < MAX_TARGETS && inode != 0)
		t->list[t->n++] = (struct target){ inode, port };
}

/* The receivers of our registrations, from /proc/net/unix: "Num RefCount
 * Protocol Flags Type St Inode Path". */
static void
find_receivers(const struct watch *w, struct targets *t)
{
	char line[PATH_MAX + 128], path[PATH_MAX];
	FILE *f;

	if (w->n_ours == 0 || (f = fopen("/proc/net/unix", "re")) == NULL)
		return;
	for (int n = 0; n < MAX_TABLE_LINES && fgets(line, sizeof(line), f); n++) {
		unsigned long inode;
		int path_at = 0;

		line[strcspn(line, "\n")] = '\0';
		if (sscanf(line, "%*s %*s %*s %*s %*s %*s %lu %n", &inode, &path_at) != 1 ||
		    path_at == 0 || line[path_at] != '/')
			continue;
		/* The path as bound: ID.sock in the registration's directory
		 * while it was still .ID (renamed to ID later), or directly in
		 * upstreams/ as older libhandoff binds it. */
		for (size_t i = 0; i < w->n_ours; i++) {
			const char *id = w->ours[i];

			if ((snprintf(path, sizeof(path), "%s/.%s/%s%s", w->upstreams, id, id,
				      WIRE_SOCK_SUFFIX) < (int)sizeof(path) &&
			     strcmp(line + path_at, path) == 0) ||
			    (snprintf(path, sizeof(path), "%s/%s/%s%s", w->upstreams, id, id,
				      WIRE_SOCK_SUFFIX) < (int)sizeof(path) &&
			     strcmp(line + path_at, path) == 0) ||
			    (snprintf(path, sizeof(path), "%s/%s%s", w->upstreams, id,
				      WIRE_SOCK_SUFFIX) < (int)sizeof(path) &&
			     strcmp(line + path_at, path) == 0))
				add_target(t, inode, 0);
		}
	}
	fclose(f);
}

/* TCP sockets listening on a --port, from /proc/net/tcp and tcp6:
 * "sl local_address rem_address st ... uid timeout inode". */
static void
find_tcp_listeners(const struct watch *w, const char *table, struct targets *t)
{
	char line[512];
	FILE *f = fopen(table, "re");

	if (f == NULL)
		return;
	for (int n = 0; n < MAX_TABLE_LINES && fgets(line, sizeof(line), f); n++) {
		char local[64];
		unsigned state, port;
		unsigned long inode;
		const char *colon;

		if (sscanf(line, " %*s %63s %*s %x %*s %*s %*s %*s %*s %lu", local, &state,
			   &inode) != 3 || state != 0x0A /* LISTEN */)
			continue;
		colon = strrchr(local, ':');
		if (colon == NULL || sscanf(colon + 1, "%x", &port) != 1)
			continue;
		for (size_t i = 0; i < w->opt->n_ports; i++)
			if (w->opt->ports[i].number == port)
				add_target(t, inode, port);
	}
	fclose(f);
}

/* PROGRAM and its descendants, read from /proc at once: a process whose
 * parent is among them joins them, repeated as deep as trees go. */
static size_t
find_descendants(pid_t child, pid_t *out)
{
	static pid_t pids[MAX_PROCESSES], parents[MAX_PROCESSES];
	size_t n = 0, found = 0;
	DIR *dir = opendir("/proc");
	struct dirent *e;
	bool grew = true;

	if (dir == NULL)
		return 0;
	while (n < MAX_PROCESSES && (e = readdir(dir)) != NULL) {
		struct proc_info info;
		char *end;
		long pid = strtol(e->d_name, &end, 10);

		if (!isdigit((unsigned char)e->d_name[0]) || *end != '\0' ||
		    !proc_stat((pid_t)pid, &info) || info.state == 'Z')
			continue;
		pids[n] = (pid_t)pid;
		parents[n] = info.ppid;
		if (pids[n] == child && found < MAX_DESCENDANTS)
			out[found++] = child;
		n++;
	}
	closedir(dir);
	for (int depth = 0; depth < 32 && grew; depth++) {
		grew = false;
		for (size_t i = 0; i < n && found < MAX_DESCENDANTS; i++) {
			bool parent_in = false, in = false;

			for (size_t j = 0; j < found; j++) {
				parent_in |= parents[i] == out[j];
				in |= pids[i] == out[j];
			}
			if (parent_in && !in) {
				out[found++] = pids[i];
				grew = true;
			}
		}
	}
	return found;
}

/* The first target pid holds, or NULL. */
static const struct target *
held_target(pid_t pid, const struct targets *t)
{
	char path[64], link[64];
	DIR *dir;
	struct dirent *e;
	const struct target *held = NULL;

	snprintf(path, sizeof(path), "/proc/%ld/fd", (long)pid);
	dir = opendir(path);
	if (dir == NULL)
		return NULL;		/* gone, or not ours to read */
	for (int n = 0; held == NULL && n < MAX_FDS_PER_PROCESS && (e = readdir(dir)) != NULL; n++) {
		unsigned long inode;
		ssize_t len;

		if (!isdigit((unsigned char)e->d_name[0]))
			continue;
		len = readlinkat(dirfd(dir), e->d_name, link, sizeof(link) - 1);
		if (len <= 0)
			continue;
		link[len] = '\0';
		if (sscanf(link, "socket:[%lu]", &inode) != 1)
			continue;
		for (size_t i = 0; i < t->n; i++)
			if (t->list[i].inode == inode)
				held = &t->list[i];
	}
	closedir(dir);
	return held;
}

/* Is the preload library (by its file name) mapped into pid? Unknown
 * (unreadable maps) counts as yes: no warning on a guess. */
static bool
has_preload(pid_t pid, const char *preload)
{
	const char *base = strrchr(preload, '/') ? strrchr(preload, '/') + 1 : preload;
	size_t base_len = strlen(base);
	char path[64], line[PATH_MAX + 256];
	bool found = false;
	FILE *f;

	snprintf(path, sizeof(path), "/proc/%ld/maps", (long)pid);
	f = fopen(path, "re");
	if (f == NULL)
		return true;
	for (int n = 0; !found && n < MAX_MAPS_LINES && fgets(line, sizeof(line), f); n++) {
		size_t len = strcspn(line, "\n");

		line[len] = '\0';
		found = len > base_len && line[len - base_len - 1] == '/' &&
			strcmp(line + len - base_len, base) == 0;
	}
	fclose(f);
	return found;
}

static void
warn_without_preload(const struct watch *w, pid_t pid, const struct target *held)
{
	struct proc_info info;
	char names[1024], what[1200];

	if (!proc_stat(pid, &info))
		snprintf(info.comm, sizeof(info.comm), "?");
	if (held->port == 0) {
		watch_names_joined(w->opt, names, sizeof(names));
		snprintf(what, sizeof(what), "holds the listener registered for %s", names);
	} else {
		snprintf(what, sizeof(what), "listens on TCP port %u itself", held->port);
	}
	fprintf(stderr, "handoff run: %s (pid %ld, a process of %s) %s, but without the preload "
		"library, so the daemon's connections %s. Something between handoff run and it "
		"started it with an environment without LD_PRELOAD: env -i, sudo, or "
		"systemd-socket-activate without -E LD_PRELOAD. Keep LD_PRELOAD (and the "
		"HANDOFF_ variables) in its environment: see \"Launchers\" in docs/servers.md\n",
		info.comm, (long)pid, w->program, what,
		held->port == 0 ? "wait unanswered (it cannot accept them)" : "never reach it");
}

static void
check_holders(struct watch *w)
{
	static pid_t descendants[MAX_DESCENDANTS];
	static struct targets t;
	size_t n;

	t.n = 0;
	find_receivers(w, &t);
	find_tcp_listeners(w, "/proc/net/tcp", &t);
	find_tcp_listeners(w, "/proc/net/tcp6", &t);
	if (t.n == 0)
		return;
	n = find_descendants(w->child, descendants);
	for (size_t i = 0; i < n; i++) {
		const struct target *held = held_target(descendants[i], &t);

		if (held != NULL && !has_preload(descendants[i], w->preload)) {
			warn_without_preload(w, descendants[i], held);
			w->warned_no_preload = true;
			return;
		}
	}
}

void
preload_check_soon(struct watch *w, int64_t now)
{
	w->check_interval_ms = CHECK_FIRST_MS;
	w->next_check_ms = now + CHECK_FIRST_MS;
}

int
preload_check_due(struct watch *w)
{
	int64_t now = monotonic_ms();

	if (w->warned_no_preload || w->next_check_ms == 0)
		return -1;
	if (now < w->next_check_ms)
		return (int)(w->next_check_ms - now);
	check_holders(w);
	if (w->check_interval_ms < CHECK_MAX_INTERVAL_MS)
		w->check_interval_ms *= 2;
	w->next_check_ms = now + w->check_interval_ms;
	return w->warned_no_preload ? -1 : w->check_interval_ms;
}
