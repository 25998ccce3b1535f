/* registry.c - discover upstreams in RUNDIR/upstreams, check their claims, notice at once when they end. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "config.h"
#include "conn.h"
#include "hostname.h"
#include "listener.h"
#include "log.h"
#include "route.h"
#include "server.h"
#include "upstream.h"
#include "upstream_internal.h"
#include "registry.h"
#include "upstream_id.h"
#include "wire.h"

#define MAX_UPSTREAMS		4096	/* sockets registered at once */
#define MAX_UPSTREAMS_PER_UID	256	/* so one user cannot take every slot */
#define MAX_NAMES_PER_UPSTREAM	64
#define MAX_NAMES_FILE		8192	/* bytes */
#define PROBE_INTERVAL_MS	500	/* liveness probe of every registered socket */

static TAILQ_HEAD(, upstream) upstreams = TAILQ_HEAD_INITIALIZER(upstreams);
static TAILQ_HEAD(, upstream) dead_upstreams = TAILQ_HEAD_INITIALIZER(dead_upstreams);
static size_t n_upstreams;
static struct loop_io inotify_io = { .fd = -1 };
int upstreams_fd = -1;
char upstreams_dir[PATH_MAX];
static struct loop_timer probe_timer;
/* Set when an old daemon stops after an upgrade: the new one answers in
 * the status files now, so they are left as they are. */
static bool keep_status_files;

struct upstream *
find_upstream(const char *id)
{
	struct upstream *up;
	TAILQ_FOREACH(up, &upstreams, link)
		if (strcmp(up->id, id) == 0)
			return up;
	return NULL;
}

static size_t
upstreams_of(uid_t uid)
{
	size_t n = 0;
	struct upstream *up;
	TAILQ_FOREACH(up, &upstreams, link)
		n += up->uid == uid;
	return n;
}

/* ID.sock, ID.names in dir (the upstreams directory or ID/ in it). */
static int
file_name(char *buf, size_t size, const char *id, const char *suffix)
{
	int n = snprintf(buf, size, "%s%s", id, suffix);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* A daemon that dropped root cannot delete files in an upstream's own
 * directory (only its owner can write there), but as the owner of the
 * sticky upstreams/ it may rename the directory: to a dot name, which scans
 * ignore, so it is examined no more. Its owner or root deletes it. */
static void
move_aside(const char *id)
{
	char aside[NAME_MAX + 1];
	int n = snprintf(aside, sizeof(aside), ".dead.%s", id);
	if (n < 0 || (size_t)n >= sizeof(aside) || renameat(upstreams_fd, id, upstreams_fd, aside) < 0)
		log_warn("cannot move the dead registration %s aside", id);
}

/* Delete what a process that is gone left behind. */
static void
remove_files(int dir_fd, const char *id, bool in_dir)
{
	char name[NAME_MAX + 1];
	if (file_name(name, sizeof(name), id, WIRE_NAMES_SUFFIX) == 0)
		unlinkat(dir_fd, name, 0);
	if (file_name(name, sizeof(name), id, WIRE_SOCK_SUFFIX) == 0)
		unlinkat(dir_fd, name, 0);
	if (in_dir && unlinkat(upstreams_fd, id, AT_REMOVEDIR) < 0 && errno == ENOTEMPTY)
		move_aside(id);
	remove_status(id);
}

/* Read and validate the names an upstream claims. Returns the count, or -1
 * after refusing with a reason. */
static int
read_names(const char *id, uid_t uid, int fd, char ***names_out, int *protocol,
	   int *only_family, char ***alpn_out, size_t *n_alpn_out)
{
	char buf[MAX_NAMES_FILE + 1];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	if (len > MAX_NAMES_FILE) {
		refuse(id, uid, "names file larger than %d bytes", MAX_NAMES_FILE);
		return -1;
	}
	buf[len] = '\0';
	char **names = calloc(MAX_NAMES_PER_UPSTREAM, sizeof(*names));
	if (names == NULL)
		return -1;
	int count = 0;
	char **alpn = NULL;
	size_t n_alpn = 0;
	char *save = NULL;
	for (char *line = strtok_r(buf, "\n", &save); line != NULL; line = strtok_r(NULL, "\n", &save)) {
		size_t l = strlen(line);
		while (l > 0 && (line[l - 1] == '\r' || line[l - 1] == ' ' || line[l - 1] == '\t'))
			line[--l] = '\0';
		if (l == 0)
			continue;
		/* "protocol tls|http": only connections from listeners of that
		 * protocol (a server with a TLS and a plain-HTTP listener
		 * registers each with its own). Names never contain blanks. */
		if (strncmp(line, WIRE_NAMES_PROTOCOL " ", sizeof(WIRE_NAMES_PROTOCOL)) == 0) {
			const char *p = line + sizeof(WIRE_NAMES_PROTOCOL);
			if (*protocol != 0 || (strcmp(p, "tls") != 0 && strcmp(p, "http") != 0 &&
					       config_protocol_key(p) == NULL)) {
				refuse(id, uid, "bad or repeated line '%s' in names file", line);
				goto fail;
			}
			*protocol = strcmp(p, "tls") == 0 ? PROTO_TLS : strcmp(p, "http") == 0 ? PROTO_HTTP
				  : strcmp(p, "ssh") == 0 ? PROTO_SSH : PROTO_SILENT;
			continue;
		}
		/* "alpn ID [ID ...]": only clients offering one of these ALPN ids. */
		if (strncmp(line, WIRE_NAMES_ALPN " ", sizeof(WIRE_NAMES_ALPN)) == 0) {
			char *save_id = NULL;
			for (char *w = strtok_r(line + sizeof(WIRE_NAMES_ALPN), " \t", &save_id); w != NULL;
			     w = strtok_r(NULL, " \t", &save_id)) {
				if (!config_alpn_valid(w, strlen(w))) {
					refuse(id, uid, "bad ALPN id '%s' in names file", w);
					goto fail;
				}
				if (n_alpn == WIRE_NAMES_ALPN_MAX) {
					refuse(id, uid, "more than %d ALPN ids", WIRE_NAMES_ALPN_MAX);
					goto fail;
				}
				if (alpn == NULL && (alpn = calloc(WIRE_NAMES_ALPN_MAX, sizeof(*alpn))) == NULL)
					goto fail;
				if ((alpn[n_alpn] = strdup(w)) == NULL)
					goto fail;
				n_alpn++;
			}
			continue;
		}
		/* "family ipv4|ipv6": the only clients the receiver can take
		 * (a server's IPv4 listener, or an IPv6 one with IPV6_V6ONLY). */
		if (strncmp(line, WIRE_NAMES_FAMILY " ", sizeof(WIRE_NAMES_FAMILY)) == 0) {
			const char *p = line + sizeof(WIRE_NAMES_FAMILY);
			if (*only_family != 0 || (strcmp(p, "ipv4") != 0 && strcmp(p, "ipv6") != 0)) {
				refuse(id, uid, "bad or repeated line '%s' in names file", line);
				goto fail;
			}
			*only_family = strcmp(p, "ipv4") == 0 ? AF_INET : AF_INET6;
			continue;
		}
		char norm[256];
		if (hostname_normalize_pattern(line, l, norm, sizeof(norm)) == 0) {
			refuse(id, uid, "invalid name '%s' in names file", line);
			goto fail;
		}
		if (count == MAX_NAMES_PER_UPSTREAM) {
			refuse(id, uid, "more than %d names", MAX_NAMES_PER_UPSTREAM);
			goto fail;
		}
		if ((names[count] = strdup(norm)) == NULL)
			goto fail;
		count++;
	}
	/* A protocol without names is claimed under its route key, for
	 * which the configuration must grant exactly that protocol. */
	if (*protocol == PROTO_SSH || *protocol == PROTO_SILENT) {
		if (count != 0 || n_alpn != 0) {
			refuse(id, uid, "a names file with 'protocol %s' lists no names and no alpn",
			       *protocol == PROTO_SSH ? "ssh" : "silent");
			goto fail;
		}
		if ((names[0] = strdup(*protocol == PROTO_SSH ? PROTOCOL_KEY_SSH : PROTOCOL_KEY_SILENT)) == NULL)
			goto fail;
		count = 1;
	}
	if (count == 0) {
		refuse(id, uid, "names file lists no name");
		goto fail;
	}
	*names_out = names;
	*alpn_out = alpn;
	*n_alpn_out = n_alpn;
	return count;
fail:
	for (int i = 0; i < count; i++)
		free(names[i]);
	free(names);
	for (size_t i = 0; i < n_alpn; i++)
		free(alpn[i]);
	free(alpn);
	return -1;
}

/* Connect fd to the very socket file that was checked: through its O_PATH
 * descriptor, never by name again, so no rename between check and use
 * can point the daemon at another socket. */
static int
connect_checked(int fd, int sock_file)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	snprintf(sun.sun_path, sizeof(sun.sun_path), "/proc/self/fd/%d", sock_file);
	return connect(fd, (struct sockaddr *)&sun, sizeof(sun));
}

/* The registration's directory: the upstreams directory itself, or the
 * upstream's private directory ID/, which must belong to one user and be
 * writable by no one else (so no one else can put or block files in it).
 * Returns an fd to close unless it is upstreams_fd, or -1. */
static int
open_registration_dir(const char *id, bool in_dir, uid_t *dir_uid)
{
	if (!in_dir)
		return upstreams_fd;
	int fd = openat(upstreams_fd, id, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (fd < 0)
		return -1;
	struct stat st;
	if (fstat(fd, &st) < 0) {
		close(fd);
		return -1;
	}
	*dir_uid = st.st_uid;
	if (st.st_mode & (S_IWGRP | S_IWOTH)) {
		refuse(id, st.st_uid, "directory %s/%s is writable by others than its owner",
		       upstreams_dir, id);
		close(fd);
		return -1;
	}
	return fd;
}

/* An upstream is ready once both ID.sock and ID.names exist. Every check is
 * on what the kernel says (file type, owner) about the very objects then
 * used, never on what the files say about themselves. */
void
try_register(const char *id, bool in_dir)
{
	char sock_name[NAME_MAX + 1], names_name[NAME_MAX + 1];
	struct stat sock_st, names_st;
	char **names = NULL, **alpn = NULL;
	size_t n_alpn = 0;
	int count = 0, names_fd = -1, fd = -1, sock_file = -1, dir_fd = -1;
	uid_t dir_uid = 0;

	if (find_upstream(id) != NULL || already_refused(id))
		return;
	if (file_name(sock_name, sizeof(sock_name), id, WIRE_SOCK_SUFFIX) < 0 ||
	    file_name(names_name, sizeof(names_name), id, WIRE_NAMES_SUFFIX) < 0)
		return;
	if ((dir_fd = open_registration_dir(id, in_dir, &dir_uid)) < 0)
		return;
	sock_file = openat(dir_fd, sock_name, O_PATH | O_NOFOLLOW | O_CLOEXEC);
	if (sock_file < 0 || fstat(sock_file, &sock_st) < 0)
		goto out;	/* not bound yet: its creation will bring us back */
	if (!S_ISSOCK(sock_st.st_mode)) {
		refuse(id, sock_st.st_uid, "%s is not a socket", sock_name);
		goto out;
	}
	if (in_dir && sock_st.st_uid != dir_uid) {
		refuse(id, sock_st.st_uid, "socket (uid %lu) and its directory (uid %lu) have different owners",
		       (unsigned long)sock_st.st_uid, (unsigned long)dir_uid);
		goto out;
	}
	names_fd = openat(dir_fd, names_name, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (names_fd < 0)
		goto out;	/* not written yet */
	if (fstat(names_fd, &names_st) < 0 || !S_ISREG(names_st.st_mode)) {
		refuse(id, sock_st.st_uid, "%s is not a regular file", names_name);
		goto out;
	}
	if (names_st.st_uid != sock_st.st_uid) {
		refuse(id, sock_st.st_uid, "socket (uid %lu) and names file (uid %lu) have different owners",
		       (unsigned long)sock_st.st_uid, (unsigned long)names_st.st_uid);
		goto out;
	}
	int protocol = 0, only_family = 0;
	if ((count = read_names(id, sock_st.st_uid, names_fd, &names, &protocol, &only_family, &alpn, &n_alpn)) < 0)
		goto out;
	for (int i = 0; i < count; i++) {
		if (!config_may_claim(&server.cfg, names[i], sock_st.st_uid)) {
			refuse(id, sock_st.st_uid, "uid %lu may not claim %s (no grant in the configuration)",
			       (unsigned long)sock_st.st_uid, names[i]);
			goto out;
		}
	}
	if (upstreams_of(sock_st.st_uid) >= MAX_UPSTREAMS_PER_UID) {
		refuse(id, sock_st.st_uid, "uid %lu has %d upstreams registered already",
		       (unsigned long)sock_st.st_uid, MAX_UPSTREAMS_PER_UID);
		goto out;
	}
	if (n_upstreams >= MAX_UPSTREAMS) {
		if (refusal_log_allowed())
			log_warnx("ignoring upstream %s: %d upstreams registered already", id, MAX_UPSTREAMS);
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("socket for upstream %s", id);
		goto out;
	}
	if (connect_checked(fd, sock_file) < 0) {
		if (errno == ECONNREFUSED) {
			/* Nobody holds it: the process died without cleaning up. */
			log_info("removing stale upstream %s (no process holds its socket)", id);
			remove_files(dir_fd, id, in_dir);
		} else {
			log_warn("cannot connect to upstream %s", id);
		}
		goto out;
	}

	struct upstream *up = calloc(1, sizeof(*up));
	if (up == NULL)
		goto out;
	snprintf(up->id, sizeof(up->id), "%s", id);
	up->in_dir = in_dir;
	up->registered_ms = loop_now_ms();
	up->target.ops = &upstream_target_ops;
	snprintf(up->target.label, sizeof(up->target.label), "%s", id);
	up->target.weight = 1;
	up->target.only_protocol = protocol;
	up->target.only_family = only_family;
	up->uid = sock_st.st_uid;
	up->sock_file = sock_file;
	sock_file = -1;
	up->sock_dev = sock_st.st_dev;
	up->sock_ino = sock_st.st_ino;
	up->names_dev = names_st.st_dev;
	up->names_ino = names_st.st_ino;
	up->names = names;
	up->n_names = (size_t)count;
	names = NULL;
	up->alpn = alpn;
	up->n_alpn = n_alpn;
	alpn = NULL;
	n_alpn = 0;
	TAILQ_INIT(&up->waiting);
	up->io.fd = fd;
	up->io.cb = upstream_on_event;
	fd = -1;
	TAILQ_INSERT_TAIL(&upstreams, up, link);
	n_upstreams++;
	/* Watched for errors only until a full queue makes us wait for room. */
	if (loop_io_add(server.loop, &up->io, 0) < 0) {
		log_warn("cannot watch upstream %s", id);
		upstream_drop(up, "internal error", false);
		goto out;
	}
	char list[1024] = "";
	size_t off = 0;
	for (size_t i = 0; i < up->n_names; i++) {
		/* With alpn lines, the names' clients offering those ids only. */
		for (size_t k = 0; k < (up->n_alpn ? up->n_alpn : 1); k++) {
			if (route_attach(up->names[i], up->n_alpn ? up->alpn[k] : NULL, &up->target) < 0) {
				for (size_t j = 0; j < k; j++)	/* not yet counted in up->n_attached */
					route_detach(up->names[i], up->n_alpn ? up->alpn[j] : NULL, &up->target);
				upstream_drop(up, "out of memory or too many ALPN ids", false);
				goto out;
			}
		}
		up->n_attached++;
		int n = snprintf(list + off, sizeof(list) - off, "%s%s", i ? "," : "", up->names[i]);
		if (n > 0 && (size_t)n < sizeof(list) - off)
			off += (size_t)n;
	}
	char alpn_list[512] = "";
	for (size_t k = 0, off_alpn = 0; k < up->n_alpn; k++) {
		int n = snprintf(alpn_list + off_alpn, sizeof(alpn_list) - off_alpn, "%s%s", k ? "," : " alpn=", up->alpn[k]);
		if (n > 0 && (size_t)n < sizeof(alpn_list) - off_alpn)
			off_alpn += (size_t)n;
	}
	log_info("registered upstream %s names=%s uid=%lu%s%s%s", id, list, (unsigned long)up->uid,
		 protocol == PROTO_TLS ? " protocol=tls" : protocol == PROTO_HTTP ? " protocol=http"
		 : protocol == PROTO_SSH ? " protocol=ssh" : protocol == PROTO_SILENT ? " protocol=silent" : "", alpn_list,
		 only_family == AF_INET ? " family=ipv4" : only_family == AF_INET6 ? " family=ipv6" : "");
	write_status(id, "registered");
out:
	for (size_t k = 0; k < n_alpn; k++)
		free(alpn[k]);
	free(alpn);
	if (names != NULL) {
		for (int i = 0; i < count; i++)
			free(names[i]);
		free(names);
	}
	if (names_fd >= 0)
		close(names_fd);
	if (fd >= 0)
		close(fd);
	if (sock_file >= 0)
		close(sock_file);
	if (dir_fd >= 0 && dir_fd != upstreams_fd)
		close(dir_fd);
}

void
upstream_drop(struct upstream *up, const char *why, bool remove)
{
	if (up->dead)
		return;
	up->dead = true;
	log_info("dropped upstream %s (%s)", up->id, why);
	for (size_t i = 0; i < up->n_attached; i++)
		for (size_t k = 0; k < (up->n_alpn ? up->n_alpn : 1); k++)
			route_detach(up->names[i], up->n_alpn ? up->alpn[k] : NULL, &up->target);
	/* Closed when freed: a worker thread may be sending on it. */
	loop_io_del(server.loop, &up->io);
	if (!keep_status_files)
		remove_status(up->id);
	if (remove) {
		uid_t ignored;
		int dir_fd = open_registration_dir(up->id, up->in_dir, &ignored);
		if (dir_fd >= 0) {
			remove_files(dir_fd, up->id, up->in_dir);
			if (dir_fd != upstreams_fd)
				close(dir_fd);
		}
	}
	close(up->sock_file);
	up->sock_file = -1;
	TAILQ_REMOVE(&upstreams, up, link);
	n_upstreams--;
	TAILQ_INSERT_TAIL(&dead_upstreams, up, link);
	struct conn *c;
	while ((c = TAILQ_FIRST(&up->waiting)) != NULL) {
		upstream_unqueue(c);
		route_dispatch(c);
	}
}

static void
free_upstream(struct upstream *up)
{
	if (up->io.fd >= 0)
		close(up->io.fd);
	for (size_t i = 0; i < up->n_names; i++)
		free(up->names[i]);
	free(up->names);
	for (size_t k = 0; k < up->n_alpn; k++)
		free(up->alpn[k]);
	free(up->alpn);
	free(up);
}

void
upstreams_foreach(void (*fn)(const struct upstream *up, void *arg), void *arg)
{
	const struct upstream *up;
	TAILQ_FOREACH(up, &upstreams, link)
		fn(up, arg);
}

void
upstreams_reap(void)
{
	struct upstream *up = TAILQ_FIRST(&dead_upstreams), *next;
	for (; up != NULL; up = next) {
		next = TAILQ_NEXT(up, link);
		if (up->senders > 0)
			continue;	/* its last sender wakes the loop */
		TAILQ_REMOVE(&dead_upstreams, up, link);
		free_upstream(up);
	}
}

/*
 * Liveness. The kernel reports nothing on a connected AF_UNIX datagram
 * socket when the last holder of the receiving socket closes it (no
 * EPOLLHUP, no EPOLLERR, SO_ERROR stays 0), so without a probe a dead
 * upstream would stay routed until a send to it fails. Every
 * PROBE_INTERVAL_MS each registered socket is connect()ed again through
 * its O_PATH descriptor: the kernel refuses (ECONNREFUSED) exactly when no
 * process holds the socket bound to that file any more, whatever forked
 * workers or exec()ed successors share it, so a live upstream is never
 * taken for dead. One system call per upstream and probe.
 */
static void
on_probe_timer(struct loop_timer *timer)
{
	struct upstream *up, *next;
	for (up = TAILQ_FIRST(&upstreams); up != NULL; up = next) {
		next = TAILQ_NEXT(up, link);
		if (connect_checked(up->io.fd, up->sock_file) < 0 && errno == ECONNREFUSED)
			upstream_drop(up, "no process holds its socket any more", true);
	}
	loop_timer_arm(server.loop, timer, PROBE_INTERVAL_MS);
}

/* A file of a registered upstream was created or renamed over: if either
 * is no longer the object registered, the registration ends and the claim
 * is examined afresh. */
static void
recheck_registration(struct upstream *up)
{
	char sock_name[NAME_MAX + 1], names_name[NAME_MAX + 1];
	struct stat st;
	if (file_name(sock_name, sizeof(sock_name), up->id, WIRE_SOCK_SUFFIX) < 0 ||
	    file_name(names_name, sizeof(names_name), up->id, WIRE_NAMES_SUFFIX) < 0)
		return;
	bool same = fstatat(upstreams_fd, sock_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_dev == up->sock_dev && st.st_ino == up->sock_ino &&
		    fstatat(upstreams_fd, names_name, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
		    st.st_dev == up->names_dev && st.st_ino == up->names_ino;
	if (same)
		return;
	char id[NAME_MAX + 1];
	snprintf(id, sizeof(id), "%s", up->id);
	upstream_drop(up, "its files were replaced", false);
	try_register(id, false);
}

/* "ID.sock" / "ID.names" -> "ID"; other files, and ids upstream_id_accept refuses, are not ours. */
bool
id_of(const char *file, char *id, size_t idsize, bool *is_names)
{
	size_t len = strlen(file);
	const char *suffixes[] = { WIRE_SOCK_SUFFIX, WIRE_NAMES_SUFFIX };
	for (int i = 0; i < 2; i++) {
		size_t sl = strlen(suffixes[i]);
		if (len > sl && len - sl < idsize && strcmp(file + len - sl, suffixes[i]) == 0) {
			memcpy(id, file, len - sl);
			id[len - sl] = '\0';
			*is_names = i == 1;
			return upstream_id_accept(id);
		}
	}
	return false;
}

/* A private directory ID/ (names starting with '.' are directories still
 * being filled, before their rename into place). */
bool
is_dir_id(const char *name)
{
	return name[0] != '.' && strlen(name) <= NAME_MAX - sizeof(WIRE_STATUS_SUFFIX) &&
	       upstream_id_accept(name);
}

static void
on_inotify(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	union {
		char buf[16384];
		struct inotify_event align;
	} u;
	for (int rounds = 0; rounds < 16; rounds++) {
		ssize_t n = read(io->fd, u.buf, sizeof(u.buf));
		if (n <= 0)
			return;
		for (char *p = u.buf; p < u.buf + n;) {
			const struct inotify_event *ev = (const struct inotify_event *)(void *)p;
			p += sizeof(*ev) + ev->len;
			if (ev->mask & IN_Q_OVERFLOW) {
				rescan_start();
				continue;
			}
			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
				log_warnx("%s was removed: upstreams can no longer register; restart the daemon",
					  upstreams_dir);
				continue;
			}
			char id[NAME_MAX + 1];
			bool is_names = false, in_dir = (ev->mask & IN_ISDIR) != 0;
			if (ev->len == 0)
				continue;
			if (in_dir) {
				if (!is_dir_id(ev->name))
					continue;
				snprintf(id, sizeof(id), "%s", ev->name);
			} else if (!id_of(ev->name, id, sizeof(id), &is_names)) {
				continue;
			}
			struct upstream *up = find_upstream(id);
			/* Files named like a registration of the other layout are
			 * not its files (anyone may create ID.names beside ID/). */
			if (up != NULL && up->in_dir != in_dir)
				continue;
			if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
				forget_refused(id);
				remove_status(id);
				if (up != NULL)
					upstream_drop(up, "its files were removed", false);
			} else if (up != NULL && !in_dir && (ev->mask & (IN_CREATE | IN_MOVED_TO))) {
				recheck_registration(up);
			} else if (in_dir ? (ev->mask & IN_MOVED_TO) != 0
					  : (ev->mask & (IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)) != 0) {
				try_register(id, in_dir);
			}
		}
	}
}

int
upstreams_init(char *err, size_t errlen)
{
	const char *rundir = server.cfg.runtime_dir;
	int n = snprintf(upstreams_dir, sizeof(upstreams_dir), "%s/%s", rundir, WIRE_DIR_UPSTREAMS);
	if (n < 0 || (size_t)n >= sizeof(upstreams_dir)) {
		snprintf(err, errlen, "runtime directory path too long: %s", rundir);
		return -1;
	}
	/* The runtime directory is ours, readable by all; upstreams/ is
	 * world-writable and sticky like /tmp: anyone may offer a socket, only
	 * its owner may remove it, and the grants decide what it may claim. */
	if (rundir_make(rundir, 0755, err, errlen) < 0 || rundir_make(upstreams_dir, 01777, err, errlen) < 0)
		return -1;
	upstreams_fd = open(upstreams_dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
	if (upstreams_fd < 0) {
		snprintf(err, errlen, "cannot open %s: %s", upstreams_dir, strerror(errno));
		return -1;
	}
	int fd = inotify_init1(IN_NONBLOCK | IN_CLOEXEC);
	if (fd < 0 || inotify_add_watch(fd, upstreams_dir,
					IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE | IN_DELETE | IN_MOVED_FROM |
					IN_DELETE_SELF | IN_MOVE_SELF | IN_ONLYDIR) < 0) {
		snprintf(err, errlen, "cannot watch %s with inotify: %s", upstreams_dir, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	inotify_io.fd = fd;
	inotify_io.cb = on_inotify;
	if (loop_io_add(server.loop, &inotify_io, EPOLLIN) < 0) {
		snprintf(err, errlen, "epoll: %s", strerror(errno));
		close(fd);
		inotify_io.fd = -1;
		return -1;
	}
	probe_timer.cb = on_probe_timer;
	loop_timer_arm(server.loop, &probe_timer, PROBE_INTERVAL_MS);
	/* The first scan runs in turns of the loop; the listeners accept only
	 * once it is done (upstreams_scanned), so that after a restart or an
	 * upgrade no client of a registered name is refused meanwhile. */
	rescan_start();
	return 0;
}

void
upstreams_apply_grants(void)
{
	/* Claims refused under the old grants are examined afresh. */
	forget_all_refused();
	struct upstream *up, *next;
	for (up = TAILQ_FIRST(&upstreams); up != NULL; up = next) {
		next = TAILQ_NEXT(up, link);
		for (size_t i = 0; i < up->n_names; i++) {
			if (config_may_claim(&server.cfg, up->names[i], up->uid))
				continue;
			char id[NAME_MAX + 1], name[256];
			uid_t uid = up->uid;
			snprintf(id, sizeof(id), "%s", up->id);
			snprintf(name, sizeof(name), "%s", up->names[i]);
			upstream_drop(up, "its grant was revoked by a reload", false);
			refuse(id, uid, "uid %lu may not claim %s (no grant in the configuration)", (unsigned long)uid,
			       name);
			break;
		}
	}
	rescan_start();
}

void
upstreams_close(bool keep_status)
{
	struct upstream *up;
	keep_status_files = keep_status;
	while ((up = TAILQ_FIRST(&upstreams)) != NULL)
		upstream_drop(up, keep_status ? "handed over to the new daemon" : "daemon stopping", false);
	upstreams_reap();
	loop_timer_cancel(server.loop, &probe_timer);
	rescan_stop();
	if (inotify_io.fd >= 0) {
		loop_io_del(server.loop, &inotify_io);
		close(inotify_io.fd);
		inotify_io.fd = -1;
	}
	if (upstreams_fd >= 0) {
		close(upstreams_fd);
		upstreams_fd = -1;
	}
	forget_all_refused();
}
