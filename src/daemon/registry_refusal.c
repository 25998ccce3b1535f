/* registry_refusal.c - refused claims: remembered per uid, logged at a bounded rate, answered in ID.status. */
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "loop.h"
#include "registry.h"
#include "wire.h"

#define MAX_REFUSED_REMEMBERED	1024	/* claims we already complained about */
#define MAX_REFUSED_PER_UID	64	/* beyond: no more complaints for that uid */
#define REFUSAL_LOG_WINDOW_MS	10000	/* refusal lines logged per window, at most */
#define REFUSAL_LOG_BURST	20

/* A claim we refused: remembered so that its next events cost nothing. */
struct refusal {
	char *id;
	uid_t uid;
	char *why;		/* as logged and written to ID.status */
	uint64_t when_ms;	/* monotonic */
};

static struct refusal refused[MAX_REFUSED_REMEMBERED];
static size_t n_refused;
static uint64_t refusal_window_start;
static unsigned refusal_lines, refusals_unlogged;

bool
already_refused(const char *id)
{
	for (size_t i = 0; i < n_refused; i++)
		if (strcmp(refused[i].id, id) == 0)
			return true;
	return false;
}

static size_t
refusals_of(uid_t uid)
{
	size_t n = 0;
	for (size_t i = 0; i < n_refused; i++)
		n += refused[i].uid == uid;
	return n;
}

void
forget_refused(const char *id)
{
	for (size_t i = 0; i < n_refused; i++) {
		if (strcmp(refused[i].id, id) == 0) {
			free(refused[i].id);
			free(refused[i].why);
			refused[i] = refused[--n_refused];
			return;
		}
	}
}

/* At most REFUSAL_LOG_BURST refusal lines per window; what was not logged
 * is counted in the next line that is. */
bool
refusal_log_allowed(void)
{
	uint64_t now = loop_now_ms();
	if (now - refusal_window_start >= REFUSAL_LOG_WINDOW_MS) {
		if (refusals_unlogged > 0)
			log_warnx("%u more refused upstream claims were not logged", refusals_unlogged);
		refusal_window_start = now;
		refusal_lines = 0;
		refusals_unlogged = 0;
	}
	if (refusal_lines >= REFUSAL_LOG_BURST) {
		refusals_unlogged++;
		return false;
	}
	refusal_lines++;
	return true;
}

/* The status file is always RUNDIR/upstreams/ID.status: the daemon owns
 * that directory, so no one can keep it from writing there. */
static int
status_name(char *buf, size_t size, const char *id)
{
	int n = snprintf(buf, size, "%s%s", id, WIRE_STATUS_SUFFIX);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Tell the upstream (and `handoff run`) what became of its claim, in
 * ID.status: "registered" or "refused: reason". Created afresh with
 * O_EXCL|O_NOFOLLOW so that a file planted under that name by someone else
 * is never written through. */
void
write_status(const char *id, const char *text)
{
	char name[NAME_MAX + 1];
	if (status_name(name, sizeof(name), id) < 0)
		return;
	unlinkat(upstreams_fd, name, 0);
	int fd = openat(upstreams_fd, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
		log_warn("cannot write %s/%s", upstreams_dir, name);
	close(fd);
}

void
remove_status(const char *id)
{
	char name[NAME_MAX + 1];
	if (status_name(name, sizeof(name), id) == 0)
		unlinkat(upstreams_fd, name, 0);
}

/* A uid whose refusals fill its share, or the whole memory, gets no more
 * complaints (log line, status file) until some of its files go: they
 * would not be remembered, so each of its events would cost them again.
 * Its valid claims are still registered. */
static bool
uid_silenced(uid_t uid)
{
	if (refusals_of(uid) < MAX_REFUSED_PER_UID && n_refused < MAX_REFUSED_REMEMBERED)
		return false;
	if (refusal_log_allowed())
		log_warnx("ignoring upstream claims of uid %lu: too many refused claims remembered",
			  (unsigned long)uid);
	return true;
}


/* Log why a claim was refused (rate-limited) and say so in its status
 * file, once per upstream id. */
void
refuse(const char *id, uid_t uid, const char *fmt, ...)
{
	if (already_refused(id) || uid_silenced(uid))
		return;
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	if (refusal_log_allowed())
		log_warnx("refused upstream %s: %s", id, why);
	char status[600];
	snprintf(status, sizeof(status), "refused: %s", why);
	write_status(id, status);
	if (n_refused < MAX_REFUSED_REMEMBERED) {
		char *copy = strdup(id), *why_copy = strdup(why);
		if (copy != NULL && why_copy != NULL) {
			refused[n_refused++] = (struct refusal){ .id = copy, .uid = uid, .why = why_copy,
								 .when_ms = loop_now_ms() };
		} else {
			free(copy);
			free(why_copy);
		}
	}
}

void
forget_all_refused(void)
{
	for (size_t i = 0; i < n_refused; i++) {
		free(refused[i].id);
		free(refused[i].why);
	}
	n_refused = 0;
}

void
refusals_foreach(void (*fn)(const char *id, uid_t uid, const char *why, uint64_t when_ms, void *arg), void *arg)
{
	for (size_t i = 0; i < n_refused; i++)
		fn(refused[i].id, refused[i].uid, refused[i].why, refused[i].when_ms, arg);
}
