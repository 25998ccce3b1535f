/* handoff.c - libhandoff: register names with the daemon and receive the connections it hands off. */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "handoff.h"
#include "handoff_internal.h"
#include "handoff_local.h"
#include "wire.h"

#define HANDOFF_API __attribute__((visibility("default")))

/* Longest normalised name: 253 for a DNS name, plus "*." for a pattern. */
#define NAME_MAX_LEN	255
#define LABEL_MAX_LEN	63

/* Room for the socket path (bounded by sun_path) plus the longer suffixes. */
#define SOCK_PATH_CAP	sizeof(((struct sockaddr_un *)0)->sun_path)
#define FILE_PATH_CAP	(SOCK_PATH_CAP + 16)

/* Up to this many fds in one message are received and closed cleanly;
 * anything beyond makes the kernel truncate, which we also discard. */
#define MAX_FDS_PER_MESSAGE	8

/* A non-blocking handoff_accept() gives up with EAGAIN after discarding
 * this many invalid messages, so junk cannot keep a caller's loop busy. */
#define MAX_DISCARDS	64

/* Queue a burst of handoffs without the daemon having to wait for room. */
#define RECEIVE_BUFFER_BYTES	(256 * 1024)

/*
 * What handoff_listen() created, so handoff_accept() knows whose messages to
 * trust and handoff_close() knows which files to remove. An fd number is
 * reused after close(), so entries are matched by the socket's inode too.
 */
struct registration {
	int fd;
	dev_t dev;
	ino_t ino;
	pid_t owner_pid;		/* only this process removes the files */
	uid_t daemon_uid;		/* owner of the runtime directory */
	char sock_path[SOCK_PATH_CAP];
	char names_path[FILE_PATH_CAP];
	char dir_path[FILE_PATH_CAP];	/* RUNDIR/upstreams/ID */
};

static pthread_mutex_t registry_lock = PTHREAD_MUTEX_INITIALIZER;
static struct registration *registry;
static size_t registry_len;
static size_t registry_cap;

/* Caller holds registry_lock. */
static struct registration *registry_find_locked(int fd, const struct stat *st)
{
	for (size_t i = 0; i < registry_len; i++) {
		struct registration *r = &registry[i];
		if (r->fd == fd && r->dev == st->st_dev && r->ino == st->st_ino)
			return r;
	}
	return NULL;
}

/* Caller holds registry_lock. */
static void registry_remove_locked(struct registration *r)
{
	size_t i = (size_t)(r - registry);
	registry[i] = registry[registry_len - 1];
	registry_len--;
}

static int registry_add(const struct registration *reg)
{
	int result = 0;

	handoff_local_token_make();
	pthread_mutex_lock(&registry_lock);
	/* An entry with the same fd number belongs to a socket that was closed
	 * without handoff_close(); its number is ours now. */
	for (size_t i = 0; i < registry_len; i++) {
		if (registry[i].fd == reg->fd) {
			registry_remove_locked(&registry[i]);
			break;
		}
	}
	if (registry_len == registry_cap) {
		size_t cap = registry_cap ? registry_cap * 2 : 4;
		struct registration *grown = realloc(registry, cap * sizeof(*grown));
		if (!grown) {
			errno = ENOMEM;
			result = -1;
			goto out;
		}
		registry = grown;
		registry_cap = cap;
	}
	registry[registry_len++] = *reg;
out:
	pthread_mutex_unlock(&registry_lock);
	return result;
}

/* registry_lookup for fd whose fstat() st the caller has just made. */
static int registry_lookup_stat(int fd, const struct stat *st, struct registration *out)
{
	struct registration *r;

	pthread_mutex_lock(&registry_lock);
	r = registry_find_locked(fd, st);
	if (r)
		*out = *r;
	pthread_mutex_unlock(&registry_lock);
	if (!r) {
		errno = EINVAL;
		return -1;
	}
	return 0;
}

/* Copy the registration for fd into *out; EBADF if fd is not open, EINVAL
 * if it did not come from handoff_listen() in this process or its parent. */
static int registry_lookup(int fd, struct registration *out)
{
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -1;
	return registry_lookup_stat(fd, &st, out);
}

static bool is_label_char(char c)
{
	return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' || c == '_';
}

/*
 * Normalise a name the way the daemon compares names: ASCII-lowercase, one
 * trailing dot dropped, labels of 1..63 [a-z0-9-_] not starting or ending
 * with '-', at most 253 bytes; or "*." followed by such a name; or "*"
 * alone (every name). Writes into out (NAME_MAX_LEN + 1 bytes). Returns
 * false if the name is not valid.
 */
static bool normalize_name(const char *in, char *out)
{
	size_t len = strlen(in);
	size_t prefix = 0, label_len = 0;

	if (strcmp(in, "*") == 0) {
		strcpy(out, "*");
		return true;
	}
	if (len >= 2 && in[0] == '*' && in[1] == '.')
		prefix = 2;
	if (len > prefix && in[len - 1] == '.')
		len--;
	if (len <= prefix || len - prefix > 253)
		return false;
	memcpy(out, in, prefix);
	for (size_t i = prefix; i < len; i++) {
		char c = in[i];
		if (c >= 'A' && c <= 'Z')
			c = (char)(c - 'A' + 'a');
		if (c == '.') {
			if (label_len == 0 || out[i - 1] == '-')
				return false;
			label_len = 0;
		} else {
			if (!is_label_char(c))
				return false;
			if (label_len == 0 && c == '-')
				return false;
			if (++label_len > LABEL_MAX_LEN)
				return false;
		}
		out[i] = c;
	}
	if (label_len == 0 || out[len - 1] == '-')
		return false;
	out[len] = '\0';
	return true;
}

/* The first line of the names file for a registration limited to one
 * protocol, "" for one that takes both. NULL for an unknown protocol. */
static const char *protocol_line(enum handoff_protocol protocol)
{
	switch ((int)protocol) {
	case 0:
		return "";
	case HANDOFF_PROTO_TLS:
		return WIRE_NAMES_PROTOCOL " tls\n";
	case HANDOFF_PROTO_HTTP:
		return WIRE_NAMES_PROTOCOL " http\n";
	case HANDOFF_PROTO_SSH:
		return WIRE_NAMES_PROTOCOL " ssh\n";
	case HANDOFF_PROTO_SILENT:
		return WIRE_NAMES_PROTOCOL " silent\n";
	default:
		return NULL;
	}
}

/* The names file line for a receiver that takes clients of one address
 * family only, "" for one that takes both. NULL for an unknown family. */
static const char *family_line(int only_family)
{
	switch (only_family) {
	case 0:
		return "";
	case AF_INET:
		return WIRE_NAMES_FAMILY " ipv4\n";
	case AF_INET6:
		return WIRE_NAMES_FAMILY " ipv6\n";
	default:
		return NULL;
	}
}

/* An ALPN id as the daemon takes it: 1..255 bytes of visible ASCII. */
static bool alpn_id_is_valid(const char *id)
{
	size_t len = id ? strlen(id) : 0;

	if (len == 0 || len > 255)
		return false;
	for (size_t i = 0; i < len; i++)
		if ((unsigned char)id[i] <= 0x20 || (unsigned char)id[i] >= 0x7f)
			return false;
	return true;
}

/* The names file body: the protocol and family lines, if any, the alpn
 * line, if any, then every name normalised, one per line. A protocol
 * without names (ssh, silent) takes no names and no ALPN ids; the others
 * need at least one name. Caller frees. */
static char *format_names(const char *const *names, size_t n_names,
			  enum handoff_protocol protocol, int only_family,
			  const char *const *alpn, size_t n_alpn, size_t *out_len)
{
	const char *protocol_text = protocol_line(protocol);
	const char *family_text = family_line(only_family);
	bool nameless = protocol == HANDOFF_PROTO_SSH || protocol == HANDOFF_PROTO_SILENT;
	char first_line[64];
	size_t first_len, alpn_len = 0;
	char *body, *p;

	if (!protocol_text || !family_text || n_alpn > WIRE_NAMES_ALPN_MAX ||
	    (nameless ? n_names != 0 || n_alpn != 0 : !names || n_names == 0) ||
	    (n_alpn > 0 && !alpn)) {
		errno = EINVAL;
		return NULL;
	}
	for (size_t i = 0; i < n_alpn; i++) {
		if (!alpn_id_is_valid(alpn[i])) {
			errno = EINVAL;
			return NULL;
		}
		alpn_len += strlen(alpn[i]) + 1;
	}
	first_len = (size_t)snprintf(first_line, sizeof(first_line), "%s%s", protocol_text,
				     family_text);
	if (first_len >= sizeof(first_line) ||
	    n_names > (SIZE_MAX - first_len - alpn_len - 16) / (NAME_MAX_LEN + 2)) {
		errno = EINVAL;
		return NULL;
	}
	body = malloc(first_len + alpn_len + sizeof(WIRE_NAMES_ALPN) + 1 + n_names * (NAME_MAX_LEN + 2));
	if (!body)
		return NULL;
	memcpy(body, first_line, first_len);
	p = body + first_len;
	if (n_alpn > 0) {
		p += sprintf(p, "%s", WIRE_NAMES_ALPN);
		for (size_t i = 0; i < n_alpn; i++)
			p += sprintf(p, " %s", alpn[i]);
		*p++ = '\n';
	}
	for (size_t i = 0; i < n_names; i++) {
		if (!names[i] || !normalize_name(names[i], p)) {
			free(body);
			errno = EINVAL;
			return NULL;
		}
		p += strlen(p);
		*p++ = '\n';
	}
	*out_len = (size_t)(p - body);
	return body;
}

/* Format into buf, failing with ENAMETOOLONG instead of truncating. */
static int format_path(char *buf, size_t size, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int format_path(char *buf, size_t size, const char *fmt, ...)
{
	va_list ap;
	int n;

	va_start(ap, fmt);
	n = vsnprintf(buf, size, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= size) {
		errno = ENAMETOOLONG;
		return -1;
	}
	return 0;
}

static int require_directory(const char *path, struct stat *st)
{
	if (stat(path, st) < 0)
		return -1;
	if (!S_ISDIR(st->st_mode)) {
		errno = ENOTDIR;
		return -1;
	}
	return 0;
}

/* "<pid>-<16 hex>": unique among live upstreams and unguessable. */
static int make_id(char *buf, size_t size)
{
	unsigned char random_bytes[8];
	char hex[2 * sizeof(random_bytes) + 1];
	size_t got = 0;

	while (got < sizeof(random_bytes)) {
		ssize_t n = getrandom(random_bytes + got, sizeof(random_bytes) - got, 0);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		got += (size_t)n;
	}
	for (size_t i = 0; i < sizeof(random_bytes); i++)
		snprintf(hex + 2 * i, 3, "%02x", random_bytes[i]);
	return format_path(buf, size, "%ld-%s", (long)getpid(), hex);
}

static int write_all(int fd, const char *data, size_t len)
{
	while (len > 0) {
		ssize_t n = write(fd, data, len);
		if (n < 0) {
			if (errno == EINTR)
				continue;
			return -1;
		}
		data += n;
		len -= (size_t)n;
	}
	return 0;
}

/* Write the names file in the private directory, 0644 whatever the umask:
 * the daemon may run as another user. No one else can write there, and the
 * daemon looks only once the directory is renamed into place. */
static int write_names(const char *path, const char *body, size_t len)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0644);
	int saved;

	if (fd < 0)
		return -1;
	if (fchmod(fd, 0644) < 0 || write_all(fd, body, len) < 0) {
		saved = errno;
		close(fd);
		errno = saved;
		return -1;
	}
	return close(fd);
}

HANDOFF_API int handoff_runtime_dir(char *buf, size_t bufsize)
{
	/* secure_getenv: a set-user-ID program must not let its caller choose
	 * where its socket and names go. */
	const char *dir = secure_getenv("HANDOFF_RUNTIME_DIR");
	const char *xdg;

	if (dir && *dir)
		return format_path(buf, bufsize, "%s", dir);
	if (geteuid() == 0)
		return format_path(buf, bufsize, "/run/handoff");
	xdg = secure_getenv("XDG_RUNTIME_DIR");
	if (xdg && *xdg)
		return format_path(buf, bufsize, "%s/handoff", xdg);
	return format_path(buf, bufsize, "/tmp/handoff-%lu", (unsigned long)geteuid());
}

HANDOFF_API int handoff_listen(const char *runtime_dir, const char *const *names,
			       size_t n_names, int flags)
{
	return handoff_listen_family(runtime_dir, names, n_names, 0, 0, flags);
}

HANDOFF_API int handoff_listen_protocol(const char *runtime_dir, const char *const *names,
					size_t n_names, enum handoff_protocol protocol, int flags)
{
	return handoff_listen_family(runtime_dir, names, n_names, protocol, 0, flags);
}

HANDOFF_API int handoff_listen_alpn(const char *runtime_dir, const char *const *names,
				    size_t n_names, const char *const *alpn, size_t n_alpn, int flags)
{
	if (n_alpn == 0) {
		errno = EINVAL;
		return -1;
	}
	return handoff_listen_claim(runtime_dir, names, n_names, HANDOFF_PROTO_TLS, 0, alpn, n_alpn, flags);
}

int handoff_listen_family(const char *runtime_dir, const char *const *names, size_t n_names,
			  enum handoff_protocol protocol, int only_family, int flags)
{
	return handoff_listen_claim(runtime_dir, names, n_names, protocol, only_family, NULL, 0, flags);
}

int handoff_listen_claim(const char *runtime_dir, const char *const *names, size_t n_names,
			 enum handoff_protocol protocol, int only_family,
			 const char *const *alpn, size_t n_alpn, int flags)
{
	char dir[PATH_MAX], upstreams[PATH_MAX], id[64];
	char tmp_dir[FILE_PATH_CAP], tmp_sock[SOCK_PATH_CAP], tmp_names[FILE_PATH_CAP];
	struct registration reg = { .fd = -1 };
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct stat st;
	char *body;
	size_t body_len;
	bool made_dir = false, bound = false, named = false, published = false, registered = false;
	int one = 1, rcvbuf = RECEIVE_BUFFER_BYTES, saved;

	if (flags & ~(HANDOFF_NONBLOCK | HANDOFF_CLOEXEC)) {
		errno = EINVAL;
		return -1;
	}
	body = format_names(names, n_names, protocol, only_family, alpn, n_alpn, &body_len);
	if (!body)
		return -1;

	if (runtime_dir) {
		if (format_path(dir, sizeof(dir), "%s", runtime_dir) < 0)
			goto fail;
	} else if (handoff_runtime_dir(dir, sizeof(dir)) < 0) {
		goto fail;
	}
	/*
	 * Everything is prepared in a private directory .ID (mode 0755, ours:
	 * no one else can create or block a file in it), then renamed to ID
	 * in one step. ID is unguessable until then, so no other user can
	 * take the name first, and the daemon sees a complete registration.
	 */
	if (format_path(upstreams, sizeof(upstreams), "%s/%s", dir, WIRE_DIR_UPSTREAMS) < 0 ||
	    make_id(id, sizeof(id)) < 0 ||
	    format_path(reg.dir_path, sizeof(reg.dir_path), "%s/%s", upstreams, id) < 0 ||
	    format_path(reg.sock_path, sizeof(reg.sock_path), "%s/%s%s",
			reg.dir_path, id, WIRE_SOCK_SUFFIX) < 0 ||
	    format_path(reg.names_path, sizeof(reg.names_path), "%s/%s%s",
			reg.dir_path, id, WIRE_NAMES_SUFFIX) < 0 ||
	    format_path(tmp_dir, sizeof(tmp_dir), "%s/.%s", upstreams, id) < 0 ||
	    format_path(tmp_sock, sizeof(tmp_sock), "%s/%s%s", tmp_dir, id, WIRE_SOCK_SUFFIX) < 0 ||
	    format_path(tmp_names, sizeof(tmp_names), "%s/%s%s", tmp_dir, id, WIRE_NAMES_SUFFIX) < 0)
		goto fail;

	/* The daemon creates both directories; missing ones mean it never ran
	 * with this runtime directory (ENOENT, documented). */
	if (require_directory(dir, &st) < 0)
		goto fail;
	reg.daemon_uid = st.st_uid;
	if (require_directory(upstreams, &st) < 0)
		goto fail;

	if (mkdir(tmp_dir, 0755) < 0)
		goto fail;
	made_dir = true;
	if (chmod(tmp_dir, 0755) < 0)	/* whatever the umask: the daemon reads it */
		goto fail;

	reg.fd = socket(AF_UNIX, SOCK_DGRAM | (flags & (SOCK_NONBLOCK | SOCK_CLOEXEC)), 0);
	if (reg.fd < 0)
		goto fail;
	/* Every message then carries its sender's credentials, which is how
	 * handoff_accept() tells the daemon from anyone else. */
	if (setsockopt(reg.fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof(one)) < 0)
		goto fail;
	/* Only a hint; the kernel caps it at net.core.rmem_max. */
	setsockopt(reg.fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof(rcvbuf));

	memcpy(sun.sun_path, tmp_sock, strlen(tmp_sock) + 1);
	if (bind(reg.fd, (struct sockaddr *)&sun, sizeof(sun)) < 0)
		goto fail;
	bound = true;
	/* Anyone may send (the daemon may be another user); messages are
	 * authenticated by their credentials, not by who could connect. */
	if (chmod(tmp_sock, 0666) < 0)
		goto fail;

	if (fstat(reg.fd, &st) < 0)
		goto fail;
	reg.dev = st.st_dev;
	reg.ino = st.st_ino;
	reg.owner_pid = getpid();
	if (registry_add(&reg) < 0)
		goto fail;
	registered = true;

	if (write_names(tmp_names, body, body_len) < 0)
		goto fail;
	named = true;
	if (rename(tmp_dir, reg.dir_path) < 0)
		goto fail;
	published = true;
	free(body);
	return reg.fd;

fail:
	saved = errno;
	if (registered) {
		pthread_mutex_lock(&registry_lock);
		struct registration *r = registry_find_locked(reg.fd, &st);
		if (r)
			registry_remove_locked(r);
		pthread_mutex_unlock(&registry_lock);
	}
	if (!published) {
		if (named)
			unlink(tmp_names);
		if (bound)
			unlink(tmp_sock);
		if (made_dir)
			rmdir(tmp_dir);
	}
	if (reg.fd >= 0)
		close(reg.fd);
	free(body);
	errno = saved;
	return -1;
}

/*
 * The kernel installs received descriptors while it dequeues the message; if
 * it runs out of slots it drops them and the connection is lost. Make sure
 * one is free before receiving: the daemon sends one descriptor, and a
 * malformed message carrying more is discarded whole (MSG_CTRUNC) anyway.
 */
static int ensure_free_descriptor(int fd)
{
	int spare = fcntl(fd, F_DUPFD_CLOEXEC, 0);

	if (spare < 0)
		return -1;
	close(spare);
	return 0;
}

static bool is_stream_socket(int fd)
{
	int type = 0;
	socklen_t len = sizeof(type);

	return getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) == 0 && type == SOCK_STREAM;
}

_Static_assert(sizeof(((struct wire_header *)0)->name) > UINT8_MAX,
	       "name_len cannot index past name");
_Static_assert(sizeof(((struct wire_header *)0)->alpn) >= UINT8_MAX,
	       "alpn_len cannot exceed alpn");
_Static_assert(sizeof(((struct handoff_info *)0)->name) > UINT8_MAX &&
	       sizeof(((struct handoff_info *)0)->alpn) >= UINT8_MAX,
	       "handoff_info holds what the header carries");

static bool header_is_valid(const struct wire_header *h, ssize_t received)
{
	if (received < (ssize_t)sizeof(*h))
		return false;
	/* Newer versions only append fields, so any version from ours on is
	 * readable as long as the sender's header is at least as large. */
	if (h->magic != WIRE_MAGIC || h->version < WIRE_VERSION || h->size < sizeof(*h))
		return false;
	if (h->protocol < WIRE_PROTO_TLS || h->protocol > WIRE_PROTO_SILENT)
		return false;
	/* name_len and alpn_len are single bytes, within name and alpn by
	 * construction (see the static assertions above). */
	return h->local_len <= sizeof(h->local) && h->peer_len <= sizeof(h->peer);
}

static void fill_info(struct handoff_info *info, const struct wire_header *h)
{
	memset(info, 0, sizeof(*info));
	/* enum handoff_protocol has the wire's values. */
	info->protocol = (enum handoff_protocol)h->protocol;
	memcpy(info->name, h->name, h->name_len);
	info->name[h->name_len] = '\0';
	memcpy(info->alpn, h->alpn, h->alpn_len);
	info->alpn_len = h->alpn_len;
	memcpy(&info->local, &h->local, h->local_len);
	info->local_len = (socklen_t)h->local_len;
	memcpy(&info->peer, &h->peer, h->peer_len);
	info->peer_len = (socklen_t)h->peer_len;
	info->accepted_us = h->accepted_us;
}

static int set_nonblocking(int fd, bool on)
{
	int fl = fcntl(fd, F_GETFL);

	if (fl < 0)
		return -1;
	if (on == ((fl & O_NONBLOCK) != 0))
		return 0;
	return fcntl(fd, F_SETFL, on ? fl | O_NONBLOCK : fl & ~O_NONBLOCK);
}

/* Report the client address as accept() does: copy what fits, tell the
 * full length. The daemon says when its header holds the socket's own peer
 * (no PROXY header in between); else ask the socket, which fails if the
 * client is already gone. */
static int fill_peer_address(int conn, const struct wire_header *h, struct sockaddr *addr,
			     socklen_t *addrlen)
{
	struct sockaddr_storage peer;
	socklen_t len = sizeof(peer);

	if ((h->flags & WIRE_FLAG_PEER_IS_SOCKET) && h->peer_len > 0 && h->peer_len <= sizeof(peer)) {
		memcpy(&peer, &h->peer, h->peer_len);
		len = (socklen_t)h->peer_len;
	} else if (getpeername(conn, (struct sockaddr *)&peer, &len) < 0) {
		return -1;
	}
	memcpy(addr, &peer, *addrlen < len ? *addrlen : len);
	*addrlen = len;
	return 0;
}

/* One received message: its payload length, flags, sender and descriptors. */
struct received {
	ssize_t len;
	int msg_flags;
	bool have_creds;
	uid_t sender_uid;
	int fds[MAX_FDS_PER_MESSAGE];
	size_t n_fds;
};

static void close_received(struct received *rx)
{
	for (size_t i = 0; i < rx->n_fds; i++)
		close(rx->fds[i]);
	rx->n_fds = 0;
}

/* Walk the control messages: remember the credentials, collect every
 * descriptor (closing any that would not fit, so none leak). */
static void collect_control(struct msghdr *msg, struct received *rx)
{
	for (struct cmsghdr *c = CMSG_FIRSTHDR(msg); c; c = CMSG_NXTHDR(msg, c)) {
		if (c->cmsg_level != SOL_SOCKET)
			continue;
		if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
			struct ucred cred;
			memcpy(&cred, CMSG_DATA(c), sizeof(cred));
			rx->have_creds = true;
			rx->sender_uid = cred.uid;
		} else if (c->cmsg_type == SCM_RIGHTS && c->cmsg_len >= CMSG_LEN(0)) {
			size_t n = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
			for (size_t i = 0; i < n; i++) {
				int received_fd;
				memcpy(&received_fd, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
				if (rx->n_fds < MAX_FDS_PER_MESSAGE)
					rx->fds[rx->n_fds++] = received_fd;
				else
					close(received_fd);
			}
		}
	}
}

static int accept_registered(int fd, const struct registration *reg, struct sockaddr *addr,
			     socklen_t *addrlen, int flags, struct handoff_info *info);

HANDOFF_API int handoff_accept(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
			       struct handoff_info *info)
{
	struct registration reg;

	if ((flags & ~(HANDOFF_NONBLOCK | HANDOFF_CLOEXEC)) || (addr && !addrlen)) {
		errno = EINVAL;
		return -1;
	}
	if (registry_lookup(fd, &reg) < 0)
		return -1;
	return accept_registered(fd, &reg, addr, addrlen, flags, info);
}

int handoff_accept_known(int fd, dev_t dev, ino_t ino, struct sockaddr *addr, socklen_t *addrlen,
			 int flags, struct handoff_info *info)
{
	struct registration reg;
	struct stat st;

	if ((flags & ~(HANDOFF_NONBLOCK | HANDOFF_CLOEXEC)) || (addr && !addrlen)) {
		errno = EINVAL;
		return -1;
	}
	memset(&st, 0, sizeof(st));
	st.st_dev = dev;
	st.st_ino = ino;
	if (registry_lookup_stat(fd, &st, &reg) < 0)
		return -1;
	return accept_registered(fd, &reg, addr, addrlen, flags, info);
}

static int accept_registered(int fd, const struct registration *reg, struct sockaddr *addr,
			     socklen_t *addrlen, int flags, struct handoff_info *info)
{
	int recv_flags = 0;
	/* The receiver's file status flags, asked only when they matter: when
	 * nothing is queued (wait or not?) and after many discards. */
	int fl = -1;

	if (flags & HANDOFF_CLOEXEC)
		recv_flags |= MSG_CMSG_CLOEXEC;

	/* A blocking caller asked to wait for a valid connection, so only a
	 * non-blocking one is bounded; each pass consumes one message. */
	for (unsigned discarded = 0;; discarded++) {
		if (discarded >= MAX_DISCARDS) {
			if (fl < 0 && (fl = fcntl(fd, F_GETFL)) < 0)
				return -1;
			if (fl & O_NONBLOCK)
				break;
		}
		struct wire_header header;
		struct iovec iov = { .iov_base = &header, .iov_len = sizeof(header) };
		union {
			struct cmsghdr align;
			char buf[CMSG_SPACE(sizeof(struct ucred)) +
				 CMSG_SPACE(MAX_FDS_PER_MESSAGE * sizeof(int))];
		} control;
		struct msghdr msg = {
			.msg_iov = &iov,
			.msg_iovlen = 1,
			.msg_control = control.buf,
			.msg_controllen = sizeof(control.buf),
		};
		struct received rx = { 0 };
		int conn;

		if (ensure_free_descriptor(fd) < 0)
			return -1;
		memset(&header, 0, sizeof(header));
		rx.len = recvmsg(fd, &msg, recv_flags | MSG_DONTWAIT);
		if (rx.len < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (fl < 0 && (fl = fcntl(fd, F_GETFL)) < 0)
				return -1;
			if (!(fl & O_NONBLOCK))
				rx.len = recvmsg(fd, &msg, recv_flags);	/* a blocking receiver waits */
			else
				errno = EAGAIN;
		}
		if (rx.len < 0)
			return -1;
		rx.msg_flags = msg.msg_flags;
		collect_control(&msg, &rx);

		bool from_daemon = rx.have_creds &&
			(rx.sender_uid == 0 || rx.sender_uid == reg->daemon_uid) &&
			header_is_valid(&header, rx.len);
		bool from_self = rx.have_creds && !from_daemon &&
			handoff_local_message_is_valid(&header, (size_t)rx.len, rx.sender_uid);

		if ((rx.msg_flags & MSG_CTRUNC) || !(from_daemon || from_self) ||
		    rx.n_fds != 1 || !is_stream_socket(rx.fds[0])) {
			close_received(&rx);
			continue;
		}
		conn = rx.fds[0];
		/* The daemon accepted with SOCK_NONBLOCK, so the shared file
		 * description is non-blocking: only a blocking caller changes
		 * it. A connection to oneself is returned even if the
		 * connecting side already reset it, as TCP's accept() does: a
		 * server woken this way often closes at once with SO_LINGER 0. */
		if (((from_self || !(flags & HANDOFF_NONBLOCK)) &&
		     set_nonblocking(conn, flags & HANDOFF_NONBLOCK) < 0) ||
		    (addr && !from_self && fill_peer_address(conn, &header, addr, addrlen) < 0)) {
			close(conn);
			continue;
		}
		if (addr && from_self)
			handoff_fill_local_peer(&header, addr, addrlen);
		if (info && from_self) {
			memset(info, 0, sizeof(*info));
		} else if (info) {
			fill_info(info, &header);
			/* Left to us when the daemon would have had to ask. */
			if (info->local_len == 0) {
				info->local_len = sizeof(info->local);
				if (getsockname(conn, (struct sockaddr *)&info->local, &info->local_len) < 0)
					info->local_len = 0;
			}
		}
		return conn;
	}
	errno = EAGAIN;
	return -1;
}

HANDOFF_API int handoff_close(int fd)
{
	struct stat st;

	if (fstat(fd, &st) == 0) {
		struct registration *r;
		bool remove_files = false;
		char sock_path[SOCK_PATH_CAP], names_path[FILE_PATH_CAP], dir_path[FILE_PATH_CAP];

		pthread_mutex_lock(&registry_lock);
		r = registry_find_locked(fd, &st);
		if (r) {
			remove_files = r->owner_pid == getpid();
			memcpy(sock_path, r->sock_path, sizeof(sock_path));
			memcpy(names_path, r->names_path, sizeof(names_path));
			memcpy(dir_path, r->dir_path, sizeof(dir_path));
			registry_remove_locked(r);
		}
		pthread_mutex_unlock(&registry_lock);
		/* The daemon withdraws the routes when the directory goes,
		 * before the socket stops existing. */
		if (remove_files) {
			unlink(names_path);
			unlink(sock_path);
			rmdir(dir_path);
		}
	}
	return close(fd);
}

int handoff_registered_sock_path(int fd, char *out, size_t size)
{
	struct registration reg;

	if (registry_lookup(fd, &reg) < 0)
		return -1;
	if (size < sizeof(reg.sock_path)) {
		errno = ENAMETOOLONG;
		return -1;
	}
	memcpy(out, reg.sock_path, sizeof(reg.sock_path));
	return 0;
}

int handoff_adopt(int fd, uid_t daemon_uid)
{
	/* No paths and an owner no process has: never removes any file. */
	struct registration reg = { .fd = fd, .owner_pid = 0, .daemon_uid = daemon_uid };
	struct stat st;

	if (fstat(fd, &st) < 0)
		return -1;
	reg.dev = st.st_dev;
	reg.ino = st.st_ino;
	return registry_add(&reg);
}

void handoff_forget(int fd)
{
	struct stat st;
	struct registration *r;

	if (fstat(fd, &st) < 0)
		return;
	pthread_mutex_lock(&registry_lock);
	r = registry_find_locked(fd, &st);
	if (r)
		registry_remove_locked(r);
	pthread_mutex_unlock(&registry_lock);
}
