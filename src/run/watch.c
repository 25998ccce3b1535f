/* watch.c - follow PROGRAM's registration in RUNDIR/upstreams and say what went wrong with it. */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <unistd.h>

#include "run/launcher.h"

#define NAMES_FILE_MAX		(64 * 1024)


static bool
id_in(const char (*list)[ID_MAX], size_t n, const char *id)
{
	for (size_t i = 0; i < n; i++)
		if (strcmp(list[i], id) == 0)
			return true;
	return false;
}

/* ID of "ID.names" / "ID.status" into id if file has that suffix. */
static bool
id_of(const char *file, const char *suffix, char *id)
{
	size_t len = strlen(file), slen = strlen(suffix);

	if (len <= slen || len - slen >= ID_MAX || strcmp(file + len - slen, suffix) != 0)
		return false;
	memcpy(id, file, len - slen);
	id[len - slen] = '\0';
	return true;
}

/* A registration's directory ID/ (".ID" is one still being filled). */
static bool
dir_id(const char *name, bool is_dir, char *id)
{
	if (!is_dir || name[0] == '.' || strlen(name) >= ID_MAX)
		return false;
	strcpy(id, name);
	return true;
}

/* Read a small file in the upstreams directory into buf (NUL-terminated):
 * ID.status there, ID.names in the registration's directory ID/ (or
 * directly there, as older libhandoff wrote it). Returns the length or -1.
 * Sets *owner. */
static ssize_t
read_upstream_file(const struct watch *w, const char *id, const char *suffix,
		   char *buf, size_t size, uid_t *owner)
{
	char path[PATH_MAX];
	struct stat st;
	ssize_t n, total = 0;
	int fd;

	fd = -1;
	if (strcmp(suffix, WIRE_NAMES_SUFFIX) == 0 &&
	    snprintf(path, sizeof(path), "%s/%s/%s%s", w->upstreams, id, id, suffix) < (int)sizeof(path))
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0 && snprintf(path, sizeof(path), "%s/%s%s", w->upstreams, id, suffix) < (int)sizeof(path))
		fd = open(path, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK);
	if (fd < 0)
		return -1;
	if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
		close(fd);
		return -1;
	}
	*owner = st.st_uid;
	while ((size_t)total < size - 1 && (n = read(fd, buf + total, size - 1 - (size_t)total)) > 0)
		total += n;
	close(fd);
	buf[total] = '\0';
	return total;
}
/* Does the names file body list exactly our names (after the protocol
 * line a receiver for a --port PORT/PROTOCOL writes, and the family line
 * of one that takes clients of one address family only)? */
static bool
names_match(const struct run_options *opt, char *body)
{
	size_t seen = 0;
	char *save = NULL;

	for (char *line = strtok_r(body, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		bool known = false;
		if (strncmp(line, WIRE_NAMES_PROTOCOL " ", sizeof(WIRE_NAMES_PROTOCOL)) == 0 ||
		    strncmp(line, WIRE_NAMES_FAMILY " ", sizeof(WIRE_NAMES_FAMILY)) == 0 ||
		    strncmp(line, WIRE_NAMES_ALPN " ", sizeof(WIRE_NAMES_ALPN)) == 0)
			continue;
		for (size_t i = 0; i < opt->n_names; i++)
			if (strcmp(opt->names[i], line) == 0)
				known = true;
		if (!known)
			return false;
		seen++;
	}
	return seen == opt->n_names;
}

void
watch_names_joined(const struct run_options *opt, char *out, size_t size)
{
	size_t used = 0;

	out[0] = '\0';
	if (opt->claim != NULL)
		snprintf(out, size, "protocol %s", opt->claim);
	for (size_t i = 0; i < opt->n_names; i++) {
		int n = snprintf(out + used, size - used, "%s%s", i ? ", " : "", opt->names[i]);
		if (n < 0 || (size_t)n >= size - used)
			return;
		used += (size_t)n;
	}
}

static void
check_status(struct watch *w, const char *id)
{
	char status[1024], names[2048];
	uid_t owner;
	ssize_t len;
	size_t i;

	for (i = 0; i < w->n_ours; i++)
		if (strcmp(w->ours[i], id) == 0)
			break;
	if (i == w->n_ours || w->refusal_reported[i])
		return;
	len = read_upstream_file(w, id, WIRE_STATUS_SUFFIX, status, sizeof(status), &owner);
	if (len <= 0)
		return;
	w->answered = true;
	if (strncmp(status, "refused: ", 9) != 0)
		return;
	status[strcspn(status, "\n")] = '\0';
	watch_names_joined(w->opt, names, sizeof(names));
	fprintf(stderr, "handoff run: the daemon refused %s: %s\n", names, status + 9);
	w->refusal_reported[i] = true;
}

/* A names file appeared: is it PROGRAM's registration? */
static void
check_names(struct watch *w, const char *id)
{
	char body[NAMES_FILE_MAX];
	uid_t owner;
	long pid;

	if (id_in((const char (*)[ID_MAX])w->before, w->n_before, id) ||
	    id_in((const char (*)[ID_MAX])w->ours, w->n_ours, id) || w->n_ours == MAX_OUR_IDS)
		return;
	if (sscanf(id, "%ld-", &pid) != 1 || !descends_from((pid_t)pid, w->child))
		return;
	if (read_upstream_file(w, id, WIRE_NAMES_SUFFIX, body, sizeof(body), &owner) < 0 ||
	    owner != geteuid() || !names_match(w->opt, body))
		return;
	if (w->n_ours == 0)
		w->found_ms = monotonic_ms();
	strcpy(w->ours[w->n_ours++], id);
	/* A launcher between handoff run and the server acts now. */
	preload_check_soon(w, monotonic_ms());
	/* The daemon may have answered before this event was read. */
	check_status(w, id);
}

/* Look at every file in the directory: at start (to remember what is
 * not ours) or after the inotify queue overflowed. */
void
watch_scan_upstreams(struct watch *w, bool at_start)
{
	DIR *dir = opendir(w->upstreams);
	struct dirent *e;
	char id[ID_MAX];

	if (dir == NULL)
		return;
	while ((e = readdir(dir)) != NULL) {
		if (!id_of(e->d_name, WIRE_NAMES_SUFFIX, id) && !dir_id(e->d_name, e->d_type == DT_DIR, id))
			continue;
		if (!at_start) {
			check_names(w, id);
			check_status(w, id);
			continue;
		}
		if (w->n_before % 64 == 0) {
			char (*grown)[ID_MAX] = realloc(w->before, (w->n_before + 64) * sizeof(*grown));
			if (grown == NULL)
				break;
			w->before = grown;
		}
		strcpy(w->before[w->n_before++], id);
	}
	closedir(dir);
}

void
watch_read_inotify(struct watch *w, int fd)
{
	char buf[8192] __attribute__((aligned(__alignof__(struct inotify_event))));
	ssize_t n;

	while ((n = read(fd, buf, sizeof(buf))) > 0) {
		for (char *p = buf; p < buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)p;
			char id[ID_MAX];

			if (ev->mask & IN_Q_OVERFLOW)
				watch_scan_upstreams(w, false);
			else if (ev->len > 0 && dir_id(ev->name, ev->mask & IN_ISDIR, id))
				check_names(w, id);
			else if (ev->len > 0 && id_of(ev->name, WIRE_NAMES_SUFFIX, id))
				check_names(w, id);
			else if (ev->len > 0 && id_of(ev->name, WIRE_STATUS_SUFFIX, id))
				check_status(w, id);
			p += sizeof(*ev) + ev->len;
		}
	}
}

static void
warn_not_bound(const struct watch *w)
{
	const struct run_options *opt = w->opt;
	char list[MAX_RUN_PORTS * 8] = "";
	size_t used = 0;

	if (opt->n_ports == 1) {
		fprintf(stderr, "handoff run: %s has not bound port %u after %u s; is it listening "
			"on that port?\n", w->program, opt->ports[0].number, opt->wait_seconds);
		return;
	}
	for (size_t i = 0; i < opt->n_ports; i++)
		used += (size_t)snprintf(list + used, sizeof(list) - used, "%s%u",
					 i ? ", " : "", opt->ports[i].number);
	fprintf(stderr, "handoff run: %s has not bound any of ports %s after %u s; is it "
		"listening on them?\n", w->program, list, opt->wait_seconds);
}
/* Warn about a registration that did not happen, or that the daemon did
 * not answer, once its time is up. Returns the poll() timeout until the
 * next such moment (-1: none). */
int
watch_check_deadlines(struct watch *w)
{
	int64_t wait_ms = (int64_t)w->opt->wait_seconds * 1000, now = monotonic_ms(), due;

	if (wait_ms == 0)
		return -1;
	if (w->n_ours == 0 && !w->warned_unbound) {
		due = w->started_ms + wait_ms;
		if (now < due)
			return (int)(due - now);
		warn_not_bound(w);
		w->warned_unbound = true;
	}
	if (w->n_ours > 0 && !w->answered && !w->warned_unanswered) {
		due = w->found_ms + wait_ms;
		if (now < due)
			return (int)(due - now);
		fprintf(stderr, "handoff run: the daemon has not answered %s's registration after "
			"%u s; is `handoff serve` running with runtime directory %s?\n",
			w->program, w->opt->wait_seconds, w->runtime_dir);
		w->warned_unanswered = true;
	}
	return -1;
}
