/* upstream.c - discover local upstreams in the runtime directory, route names to them, send descriptors. */
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <fcntl.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/inotify.h>
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
#include "upstream_id.h"
#include "wire.h"

#define MAX_UPSTREAMS		4096	/* sockets registered at once */
#define MAX_NAMES_PER_UPSTREAM	64
#define MAX_NAMES_FILE		8192	/* bytes */
#define MAX_REFUSED_REMEMBERED	1024	/* claims we already complained about */
#define MAX_DISPATCH_ATTEMPTS	64	/* dead upstreams skipped for one connection */

/* One upstream process's receiving socket (R/upstreams/ID.sock). */
struct upstream {
	struct target target;		/* its place in routes; label = id */
	struct loop_io io;		/* our connected SOCK_DGRAM socket to it */
	char id[NAME_MAX + 1];		/* file name without suffix */
	uid_t uid;			/* owner of the socket file */
	char **names;
	size_t n_names;
	TAILQ_HEAD(, conn) waiting;	/* connections waiting for room, FIFO;
					 * target.n_waiting counts them */
	bool dead;			/* dropped; freed after the current batch */
	TAILQ_ENTRY(upstream) link;
};

static TAILQ_HEAD(, upstream) upstreams = TAILQ_HEAD_INITIALIZER(upstreams);
static TAILQ_HEAD(, upstream) dead_upstreams = TAILQ_HEAD_INITIALIZER(dead_upstreams);
static size_t n_upstreams;
static struct loop_io inotify_io = { .fd = -1 };
static char upstreams_dir[PATH_MAX];
static char *refused[MAX_REFUSED_REMEMBERED];
static size_t n_refused;

static void drop_upstream(struct upstream *up, const char *why, bool remove_files);
static enum deliver_result deliver_local(struct target *t, struct conn *c);
static void enqueue_local(struct target *t, struct conn *c);

static const struct target_ops local_target_ops = {
	.kind = "local",
	.deliver = deliver_local,
	.enqueue = enqueue_local,
};

static struct upstream *
find_upstream(const char *id)
{
	struct upstream *up;
	TAILQ_FOREACH(up, &upstreams, link)
		if (strcmp(up->id, id) == 0)
			return up;
	return NULL;
}

static bool
already_refused(const char *id)
{
	for (size_t i = 0; i < n_refused; i++)
		if (strcmp(refused[i], id) == 0)
			return true;
	return false;
}

static void
forget_refused(const char *id)
{
	for (size_t i = 0; i < n_refused; i++) {
		if (strcmp(refused[i], id) == 0) {
			free(refused[i]);
			refused[i] = refused[--n_refused];
			return;
		}
	}
}

static int
path_of(char *buf, size_t size, const char *id, const char *suffix)
{
	int n = snprintf(buf, size, "%s/%s%s", upstreams_dir, id, suffix);
	return n < 0 || (size_t)n >= size ? -1 : 0;
}

/* Tell the upstream (and `handoff run`) what became of its claim, in
 * ID.status: "registered" or "refused: reason". Created afresh with
 * O_EXCL|O_NOFOLLOW so that a file planted under that name by someone else
 * is never written through. */
static void
write_status(const char *id, const char *text)
{
	char path[PATH_MAX];
	if (path_of(path, sizeof(path), id, WIRE_STATUS_SUFFIX) < 0)
		return;
	unlink(path);
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	if (fd < 0)
		return;
	size_t len = strlen(text);
	if (write(fd, text, len) != (ssize_t)len || write(fd, "\n", 1) != 1)
		log_warn("cannot write %s", path);
	close(fd);
}

static void
remove_status(const char *id)
{
	char path[PATH_MAX];
	if (path_of(path, sizeof(path), id, WIRE_STATUS_SUFFIX) == 0)
		unlink(path);
}

static void refuse(const char *id, const char *fmt, ...) LOG_PRINTF(2, 3);

/* Log why a claim was refused, once per upstream id. */
static void
refuse(const char *id, const char *fmt, ...)
{
	if (already_refused(id))
		return;
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);
	log_warnx("refused upstream %s: %s", id, why);
	char status[600];
	snprintf(status, sizeof(status), "refused: %s", why);
	write_status(id, status);
	if (n_refused < MAX_REFUSED_REMEMBERED) {
		char *copy = strdup(id);
		if (copy != NULL)
			refused[n_refused++] = copy;
	}
}

/* Read and validate the names an upstream claims. Returns the count, or -1
 * after refusing with a reason. */
static int
read_names(const char *id, int fd, char ***names_out, int *protocol)
{
	char buf[MAX_NAMES_FILE + 1];
	size_t len = 0;
	ssize_t n;
	while (len < sizeof(buf) && (n = read(fd, buf + len, sizeof(buf) - len)) > 0)
		len += (size_t)n;
	if (len > MAX_NAMES_FILE) {
		refuse(id, "names file larger than %d bytes", MAX_NAMES_FILE);
		return -1;
	}
	buf[len] = '\0';
	char **names = calloc(MAX_NAMES_PER_UPSTREAM, sizeof(*names));
	if (names == NULL)
		return -1;
	int count = 0;
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
			if (*protocol != 0 || (strcmp(p, "tls") != 0 && strcmp(p, "http") != 0)) {
				refuse(id, "bad or repeated line '%s' in names file", line);
				goto fail;
			}
			*protocol = strcmp(p, "tls") == 0 ? LISTENER_TLS : LISTENER_HTTP;
			continue;
		}
		char norm[256];
		if (hostname_normalize_pattern(line, l, norm, sizeof(norm)) == 0) {
			refuse(id, "invalid name '%s' in names file", line);
			goto fail;
		}
		if (count == MAX_NAMES_PER_UPSTREAM) {
			refuse(id, "more than %d names", MAX_NAMES_PER_UPSTREAM);
			goto fail;
		}
		if ((names[count] = strdup(norm)) == NULL)
			goto fail;
		count++;
	}
	if (count == 0) {
		refuse(id, "names file lists no name");
		goto fail;
	}
	*names_out = names;
	return count;
fail:
	for (int i = 0; i < count; i++)
		free(names[i]);
	free(names);
	return -1;
}

static void on_upstream_event(struct loop_io *io, uint32_t revents);

/* An upstream is ready once both ID.sock and ID.names exist. Every check is
 * on what the kernel says (file type, owner), never on what the files say
 * about themselves. */
static void
try_register(const char *id)
{
	char sock_path[PATH_MAX], names_path[PATH_MAX];
	struct stat sock_st, names_st;
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	char **names = NULL;
	int count = 0, names_fd = -1, fd = -1;

	if (find_upstream(id) != NULL || already_refused(id))
		return;
	if (path_of(sock_path, sizeof(sock_path), id, WIRE_SOCK_SUFFIX) < 0 ||
	    path_of(names_path, sizeof(names_path), id, WIRE_NAMES_SUFFIX) < 0 ||
	    strlen(sock_path) >= sizeof(sun.sun_path))
		return;
	if (lstat(sock_path, &sock_st) < 0)
		return;		/* not bound yet: its creation will bring us back */
	if (!S_ISSOCK(sock_st.st_mode)) {
		refuse(id, "%s is not a socket", sock_path);
		return;
	}
	names_fd = open(names_path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (names_fd < 0)
		return;		/* not written yet */
	if (fstat(names_fd, &names_st) < 0 || !S_ISREG(names_st.st_mode)) {
		refuse(id, "%s is not a regular file", names_path);
		goto out;
	}
	if (names_st.st_uid != sock_st.st_uid) {
		refuse(id, "socket (uid %lu) and names file (uid %lu) have different owners",
		       (unsigned long)sock_st.st_uid, (unsigned long)names_st.st_uid);
		goto out;
	}
	int protocol = 0;
	if ((count = read_names(id, names_fd, &names, &protocol)) < 0)
		goto out;
	for (int i = 0; i < count; i++) {
		if (!config_may_claim(&server.cfg, names[i], sock_st.st_uid)) {
			refuse(id, "uid %lu may not claim %s (no grant in the configuration)",
			       (unsigned long)sock_st.st_uid, names[i]);
			goto out;
		}
	}
	if (n_upstreams >= MAX_UPSTREAMS) {
		log_warnx("ignoring upstream %s: %d upstreams registered already", id, MAX_UPSTREAMS);
		goto out;
	}
	fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		log_warn("socket for upstream %s", id);
		goto out;
	}
	memcpy(sun.sun_path, sock_path, strlen(sock_path) + 1);
	if (connect(fd, (struct sockaddr *)&sun, sizeof(sun)) < 0) {
		if (errno == ECONNREFUSED) {
			/* Nobody is bound: the process died without cleaning up. */
			log_info("removing stale upstream %s (no process holds its socket)", id);
			unlink(sock_path);
			unlink(names_path);
			remove_status(id);
		} else {
			log_warn("cannot connect to upstream %s", id);
		}
		goto out;
	}

	struct upstream *up = calloc(1, sizeof(*up));
	if (up == NULL)
		goto out;
	snprintf(up->id, sizeof(up->id), "%s", id);
	up->target.ops = &local_target_ops;
	snprintf(up->target.label, sizeof(up->target.label), "%s", id);
	up->target.weight = 1;
	up->target.only_protocol = protocol;
	up->uid = sock_st.st_uid;
	up->names = names;
	up->n_names = (size_t)count;
	names = NULL;
	TAILQ_INIT(&up->waiting);
	up->io.fd = fd;
	up->io.cb = on_upstream_event;
	fd = -1;
	TAILQ_INSERT_TAIL(&upstreams, up, link);
	n_upstreams++;
	/* Watched for errors only until a full queue makes us wait for room. */
	if (loop_io_add(server.loop, &up->io, 0) < 0) {
		log_warn("cannot watch upstream %s", id);
		drop_upstream(up, "internal error", false);
		goto out;
	}
	char list[1024] = "";
	size_t off = 0;
	for (size_t i = 0; i < up->n_names; i++) {
		if (route_attach(up->names[i], &up->target) < 0) {
			drop_upstream(up, "out of memory", false);
			goto out;
		}
		int n = snprintf(list + off, sizeof(list) - off, "%s%s", i ? "," : "", up->names[i]);
		if (n > 0 && (size_t)n < sizeof(list) - off)
			off += (size_t)n;
	}
	log_info("registered upstream %s names=%s uid=%lu%s", id, list, (unsigned long)up->uid,
		 protocol == LISTENER_TLS ? " protocol=tls" : protocol == LISTENER_HTTP ? " protocol=http" : "");
	write_status(id, "registered");
out:
	if (names != NULL) {
		for (int i = 0; i < count; i++)
			free(names[i]);
		free(names);
	}
	if (names_fd >= 0)
		close(names_fd);
	if (fd >= 0)
		close(fd);
}

/* Take an upstream out of routing. Its waiting connections are routed
 * again (to another upstream of the name, or rejected). */
static void
drop_upstream(struct upstream *up, const char *why, bool remove_files)
{
	if (up->dead)
		return;
	up->dead = true;
	log_info("dropped upstream %s (%s)", up->id, why);
	for (size_t i = 0; i < up->n_names; i++)
		route_detach(up->names[i], &up->target);
	loop_io_del(server.loop, &up->io);
	close(up->io.fd);
	up->io.fd = -1;
	remove_status(up->id);
	if (remove_files) {
		char path[PATH_MAX];
		if (path_of(path, sizeof(path), up->id, WIRE_SOCK_SUFFIX) == 0)
			unlink(path);
		if (path_of(path, sizeof(path), up->id, WIRE_NAMES_SUFFIX) == 0)
			unlink(path);
	}
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
	for (size_t i = 0; i < up->n_names; i++)
		free(up->names[i]);
	free(up->names);
	free(up);
}

void
upstreams_reap(void)
{
	struct upstream *up;
	while ((up = TAILQ_FIRST(&dead_upstreams)) != NULL) {
		TAILQ_REMOVE(&dead_upstreams, up, link);
		free_upstream(up);
	}
}

enum send_result { SEND_OK, SEND_FULL, SEND_DEAD, SEND_FAILED };

/* One datagram: the header, and the client's descriptor in SCM_RIGHTS. */
static enum send_result
send_conn(struct upstream *up, struct conn *c)
{
	struct wire_header h;
	memset(&h, 0, sizeof(h));
	h.magic = WIRE_MAGIC;
	h.version = WIRE_VERSION;
	h.size = sizeof(h);
	h.protocol = c->listener->cfg->proto == LISTENER_TLS ? WIRE_PROTO_TLS : WIRE_PROTO_HTTP;
	if (c->has_name) {
		h.name_len = (uint8_t)strlen(c->peek.name);
		memcpy(h.name, c->peek.name, h.name_len);
	}
	h.alpn_len = (uint8_t)(c->peek.alpn_len < sizeof(h.alpn) ? c->peek.alpn_len : sizeof(h.alpn) - 1);
	memcpy(h.alpn, c->peek.alpn, h.alpn_len);
	h.local = c->local;
	h.local_len = c->local_len;
	h.peer = c->peer;
	h.peer_len = c->peer_len;
	h.accepted_us = c->accepted_real_us;

	struct iovec iov = { .iov_base = &h, .iov_len = sizeof(h) };
	union {
		char buf[CMSG_SPACE(sizeof(int))];
		struct cmsghdr align;
	} control;
	memset(&control, 0, sizeof(control));
	struct msghdr msg = {
		.msg_iov = &iov, .msg_iovlen = 1,
		.msg_control = control.buf, .msg_controllen = sizeof(control.buf),
	};
	struct cmsghdr *cmsg = CMSG_FIRSTHDR(&msg);
	cmsg->cmsg_level = SOL_SOCKET;
	cmsg->cmsg_type = SCM_RIGHTS;
	cmsg->cmsg_len = CMSG_LEN(sizeof(int));
	memcpy(CMSG_DATA(cmsg), &c->io.fd, sizeof(int));

	ssize_t n = sendmsg(up->io.fd, &msg, MSG_DONTWAIT | MSG_NOSIGNAL);
	if (n == (ssize_t)sizeof(h))
		return SEND_OK;
	if (n >= 0) {
		errno = EMSGSIZE;
		return SEND_FAILED;
	}
	switch (errno) {
	case EAGAIN:
		return SEND_FULL;
	case ECONNREFUSED:
	case ECONNRESET:
	case ENOTCONN:
	case EPIPE:
	case ENOENT:
		return SEND_DEAD;
	default:
		return SEND_FAILED;
	}
}

static void
watch_for_room(struct upstream *up)
{
	if (!(up->io.events & EPOLLOUT))
		loop_io_mod(server.loop, &up->io, EPOLLOUT);
}

/* The local kind of target: one sendmsg() hands the connection over. */
static enum deliver_result
deliver_local(struct target *t, struct conn *c)
{
	struct upstream *up = container_of(t, struct upstream, target);
	switch (send_conn(up, c)) {
	case SEND_OK:
		t->delivered++;
		conn_handed_off(c, up->id);
		return DELIVER_DONE;
	case SEND_FULL:
		t->busy = true;
		watch_for_room(up);
		return DELIVER_BUSY;
	case SEND_DEAD:
		drop_upstream(up, "its socket refuses connections: process gone", true);
		return DELIVER_FAILED;
	case SEND_FAILED:
		break;
	}
	log_warn("cannot hand a connection to upstream %s", up->id);
	return DELIVER_FAILED;
}

static void
enqueue_local(struct target *t, struct conn *c)
{
	struct upstream *up = container_of(t, struct upstream, target);
	TAILQ_INSERT_TAIL(&up->waiting, c, queue);
	t->n_waiting++;
	server.n_waiting++;
	watch_for_room(up);
	conn_wait(c, t);
}

void
upstream_unqueue(struct conn *c)
{
	if (c->waiting_at == NULL)
		return;
	struct upstream *up = container_of(c->waiting_at, struct upstream, target);
	TAILQ_REMOVE(&up->waiting, c, queue);
	up->target.n_waiting--;
	server.n_waiting--;
	c->waiting_at = NULL;
}

/* Room at a busy upstream (or an error on our socket to it). */
static void
on_upstream_event(struct loop_io *io, uint32_t revents)
{
	struct upstream *up = container_of(io, struct upstream, io);
	if (revents & (EPOLLERR | EPOLLHUP)) {
		int err = 0;
		socklen_t len = sizeof(err);
		getsockopt(io->fd, SOL_SOCKET, SO_ERROR, &err, &len);
		if (err != 0 || (revents & EPOLLHUP)) {
			drop_upstream(up, err ? strerror(err) : "hung up", true);
			return;
		}
	}
	if (!(revents & EPOLLOUT))
		return;
	up->target.busy = false;
	struct conn *c;
	while ((c = TAILQ_FIRST(&up->waiting)) != NULL) {
		switch (send_conn(up, c)) {
		case SEND_OK:
			upstream_unqueue(c);
			up->target.delivered++;
			conn_handed_off(c, up->id);
			continue;
		case SEND_FULL:
			up->target.busy = true;
			return;	/* still watching EPOLLOUT */
		case SEND_DEAD:
			drop_upstream(up, "its socket refuses connections: process gone", true);
			return;
		case SEND_FAILED:
			log_warn("cannot hand a connection to upstream %s", up->id);
			upstream_unqueue(c);
			conn_reject(c, OUTCOME_REFUSED, "handoff failed");
			continue;
		}
	}
	loop_io_mod(server.loop, &up->io, 0);
}

/* "ID.sock" / "ID.names" -> "ID"; other files, and ids upstream_id_accept refuses, are not ours. */
static bool
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

static void
scan_directory(void)
{
	DIR *d = opendir(upstreams_dir);
	if (d == NULL) {
		log_warn("cannot read %s", upstreams_dir);
		return;
	}
	struct dirent *de;
	while ((de = readdir(d)) != NULL) {
		char id[NAME_MAX + 1];
		bool is_names;
		if (id_of(de->d_name, id, sizeof(id), &is_names) && is_names)
			try_register(id);
	}
	closedir(d);
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
				scan_directory();
				continue;
			}
			if (ev->mask & (IN_DELETE_SELF | IN_MOVE_SELF)) {
				log_warnx("%s was removed: upstreams can no longer register; restart the daemon",
					  upstreams_dir);
				continue;
			}
			char id[NAME_MAX + 1];
			bool is_names;
			if (ev->len == 0 || !id_of(ev->name, id, sizeof(id), &is_names))
				continue;
			if (ev->mask & (IN_DELETE | IN_MOVED_FROM)) {
				forget_refused(id);
				remove_status(id);
				struct upstream *up = find_upstream(id);
				if (up != NULL)
					drop_upstream(up, "its files were removed", false);
			} else if (ev->mask & (IN_CREATE | IN_MOVED_TO | IN_CLOSE_WRITE)) {
				try_register(id);
			}
		}
	}
}

static int
make_dir(const char *path, mode_t mode, char *err, size_t errlen)
{
	struct stat st;
	if (mkdir(path, mode) < 0 && errno != EEXIST) {
		snprintf(err, errlen, "cannot create runtime directory %s: %s (set runtime-dir to a writable place)",
			 path, strerror(errno));
		return -1;
	}
	if (lstat(path, &st) < 0 || !S_ISDIR(st.st_mode)) {
		snprintf(err, errlen, "%s is not a directory (remove it or set runtime-dir)", path);
		return -1;
	}
	if (st.st_uid != geteuid()) {
		snprintf(err, errlen, "%s belongs to uid %lu, not to the daemon's uid %lu (remove it or set runtime-dir)",
			 path, (unsigned long)st.st_uid, (unsigned long)geteuid());
		return -1;
	}
	/* mkdir applied the umask; the modes are part of the trust model. */
	if ((st.st_mode & 07777) != mode && chmod(path, mode) < 0) {
		snprintf(err, errlen, "cannot chmod %s: %s", path, strerror(errno));
		return -1;
	}
	return 0;
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
	if (make_dir(rundir, 0755, err, errlen) < 0 || make_dir(upstreams_dir, 01777, err, errlen) < 0)
		return -1;
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
	scan_directory();
	return 0;
}

void
upstreams_close(void)
{
	struct upstream *up;
	while ((up = TAILQ_FIRST(&upstreams)) != NULL)
		drop_upstream(up, "daemon stopping", false);
	upstreams_reap();
	if (inotify_io.fd >= 0) {
		loop_io_del(server.loop, &inotify_io);
		close(inotify_io.fd);
		inotify_io.fd = -1;
	}
	for (size_t i = 0; i < n_refused; i++)
		free(refused[i]);
	n_refused = 0;
}
