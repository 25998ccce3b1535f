/* test_libhandoff.c - libhandoff against a real runtime directory, with the test playing the daemon. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cmocka.h>

#include "handoff.h"
#include "wire.h"
#include "../../lib/handoff_internal.h"	/* handoff_listen_family(), the preload's */

/* Longest a test waits for the other end of a connection to react. */
#define WAIT_MS	2000

struct fixture {
	char dir[64];			/* the runtime directory R */
	char upstreams[96];		/* R/upstreams */
};

static int setup(void **state)
{
	struct fixture *f = calloc(1, sizeof(*f));

	if (!f)
		return -1;
	snprintf(f->dir, sizeof(f->dir), "/tmp/handoff-test.XXXXXX");
	if (!mkdtemp(f->dir))
		return -1;
	/* Laid out as the daemon does: R 0755, R/upstreams 1777. */
	if (chmod(f->dir, 0755) < 0)
		return -1;
	snprintf(f->upstreams, sizeof(f->upstreams), "%s/upstreams", f->dir);
	if (mkdir(f->upstreams, 0755) < 0 || chmod(f->upstreams, 01777) < 0)
		return -1;
	*state = f;
	return 0;
}

/* A file, or a registration directory and the files in it. */
static void remove_tree(const char *path)
{
	DIR *d = opendir(path);
	struct dirent *e;
	char inner[640];

	if (!d) {
		unlink(path);
		return;
	}
	while ((e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		if (snprintf(inner, sizeof(inner), "%s/%s", path, e->d_name) < (int)sizeof(inner))
			unlink(inner);
	}
	closedir(d);
	rmdir(path);
}

static int teardown(void **state)
{
	struct fixture *f = *state;
	DIR *d = opendir(f->upstreams);
	struct dirent *e;
	char path[512];

	while (d && (e = readdir(d))) {
		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		snprintf(path, sizeof(path), "%s/%s", f->upstreams, e->d_name);
		remove_tree(path);
	}
	if (d)
		closedir(d);
	rmdir(f->upstreams);
	rmdir(f->dir);
	free(f);
	return 0;
}

/* How many files the registrations in R/upstreams hold (each in its own
 * directory R/upstreams/ID, which counts too), and the path of the one
 * ending in suffix (if exactly one does) into out. */
static int find_entry(const struct fixture *f, const char *suffix, char *out, size_t outsize,
		      int *total)
{
	DIR *d = opendir(f->upstreams);
	struct dirent *e;
	int matches = 0;

	assert_non_null(d);
	*total = 0;
	while ((e = readdir(d))) {
		char dir_path[512];
		DIR *inner;
		struct dirent *g;

		if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
			continue;
		(*total)++;
		snprintf(dir_path, sizeof(dir_path), "%s/%s", f->upstreams, e->d_name);
		inner = opendir(dir_path);
		assert_non_null(inner);		/* no file directly in upstreams/ */
		assert_true(e->d_name[0] != '.');	/* renamed into place */
		while ((g = readdir(inner))) {
			size_t len = strlen(g->d_name), slen = strlen(suffix);
			if (strcmp(g->d_name, ".") == 0 || strcmp(g->d_name, "..") == 0)
				continue;
			(*total)++;
			if (len > slen && strcmp(g->d_name + len - slen, suffix) == 0) {
				assert_true(snprintf(out, outsize, "%s/%s", dir_path, g->d_name) < (int)outsize);
				matches++;
			}
		}
		closedir(inner);
	}
	closedir(d);
	return matches;
}

static void sock_path_of(const struct fixture *f, char *out, size_t size)
{
	int total;

	assert_int_equal(find_entry(f, WIRE_SOCK_SUFFIX, out, size, &total), 1);
}

static int listen_one(const struct fixture *f, const char *name, int flags)
{
	const char *names[] = { name };
	int fd = handoff_listen(f->dir, names, 1, flags);

	assert_true(fd >= 0);
	return fd;
}

/* Register for "a.example" as an upstream would; the path the daemon sends
 * to goes into sock_path. */
static int listen_for_handoffs(const struct fixture *f, int flags, char *sock_path, size_t size)
{
	int fd = listen_one(f, "a.example", flags);

	sock_path_of(f, sock_path, size);
	return fd;
}

/* A connected loopback TCP pair; the server side is non-blocking, as the
 * daemon leaves it. */
static void tcp_pair(int *client, int *server)
{
	struct sockaddr_in sin = { .sin_family = AF_INET };
	socklen_t len = sizeof(sin);
	int lfd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);

	assert_true(lfd >= 0);
	sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
	assert_int_equal(bind(lfd, (struct sockaddr *)&sin, sizeof(sin)), 0);
	assert_int_equal(listen(lfd, 4), 0);
	assert_int_equal(getsockname(lfd, (struct sockaddr *)&sin, &len), 0);
	*client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	assert_true(*client >= 0);
	assert_int_equal(connect(*client, (struct sockaddr *)&sin, sizeof(sin)), 0);
	*server = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
	assert_true(*server >= 0);
	close(lfd);
}

static void make_header(struct wire_header *h, enum wire_protocol proto, const char *name,
			int server)
{
	socklen_t len;

	memset(h, 0, sizeof(*h));
	h->magic = WIRE_MAGIC;
	h->version = WIRE_VERSION;
	h->size = sizeof(*h);
	h->protocol = (uint8_t)proto;
	h->name_len = (uint8_t)strlen(name);
	memcpy(h->name, name, h->name_len);
	h->accepted_us = 1234567890123456ull;
	len = sizeof(h->local);
	assert_int_equal(getsockname(server, (struct sockaddr *)&h->local, &len), 0);
	h->local_len = len;
	len = sizeof(h->peer);
	assert_int_equal(getpeername(server, (struct sockaddr *)&h->peer, &len), 0);
	h->peer_len = len;
}

/* Send payload plus descriptors from socket s to the upstream socket. */
static void send_message_from(int s, const char *sock_path, const void *payload, size_t len,
			      const int *fds, size_t n_fds)
{
	struct sockaddr_un sun = { .sun_family = AF_UNIX };
	struct iovec iov = { .iov_base = (void *)(uintptr_t)payload, .iov_len = len };
	union {
		struct cmsghdr align;
		char buf[CMSG_SPACE(4 * sizeof(int))];
	} control;
	struct msghdr msg = { .msg_name = &sun, .msg_namelen = sizeof(sun),
			      .msg_iov = &iov, .msg_iovlen = 1 };

	assert_true(n_fds <= 4);
	snprintf(sun.sun_path, sizeof(sun.sun_path), "%s", sock_path);
	if (n_fds > 0) {
		struct cmsghdr *c;
		memset(&control, 0, sizeof(control));
		msg.msg_control = control.buf;
		msg.msg_controllen = CMSG_SPACE(n_fds * sizeof(int));
		c = CMSG_FIRSTHDR(&msg);
		c->cmsg_level = SOL_SOCKET;
		c->cmsg_type = SCM_RIGHTS;
		c->cmsg_len = CMSG_LEN(n_fds * sizeof(int));
		memcpy(CMSG_DATA(c), fds, n_fds * sizeof(int));
	}
	assert_int_equal(sendmsg(s, &msg, 0), (ssize_t)len);
}

/* Send payload plus descriptors to the upstream socket, as the daemon does. */
static void send_message(const char *sock_path, const void *payload, size_t len,
			 const int *fds, size_t n_fds)
{
	int s = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);

	assert_true(s >= 0);
	send_message_from(s, sock_path, payload, len, fds, n_fds);
	close(s);
}

/* Hand one connection off and forget it, as the daemon does. */
static void hand_off(const char *sock_path, enum wire_protocol proto, const char *name,
		     int server)
{
	struct wire_header h;

	make_header(&h, proto, name, server);
	send_message(sock_path, &h, sizeof(h), &server, 1);
	close(server);
}

/* True once fd reports end of file, i.e. every copy of its peer is closed. */
static bool sees_eof(int fd)
{
	struct pollfd p = { .fd = fd, .events = POLLIN };
	char c;

	if (poll(&p, 1, WAIT_MS) != 1)
		return false;
	return read(fd, &c, 1) == 0;
}

/* True if bytes written on one end arrive on the other. */
static bool carries_data(int from, int to)
{
	struct pollfd p = { .fd = to, .events = POLLIN };
	char buf[8];

	if (write(from, "ping", 4) != 4 || poll(&p, 1, WAIT_MS) != 1)
		return false;
	return read(to, buf, sizeof(buf)) == 4 && memcmp(buf, "ping", 4) == 0;
}

/* conn is the upstream's end of client's connection: bytes arrive, then both close. */
static void check_carries_and_close(int conn, int client)
{
	assert_true(carries_data(conn, client));
	close(conn);
	close(client);
}

static bool is_nonblocking(int fd)
{
	int fl = fcntl(fd, F_GETFL);

	assert_true(fl >= 0);
	return fl & O_NONBLOCK;
}

static bool is_cloexec(int fd)
{
	int fl = fcntl(fd, F_GETFD);

	assert_true(fl >= 0);
	return fl & FD_CLOEXEC;
}

/* Hand a fresh connection off under name and accept it with flags alone, no
 * address or info wanted: it arrives with exactly the flags asked for. */
static void check_accept_with_flags(int fd, const char *sock_path, const char *name, int flags)
{
	int client, server, conn;

	tcp_pair(&client, &server);
	hand_off(sock_path, WIRE_PROTO_HTTP, name, server);
	conn = handoff_accept(fd, NULL, NULL, flags, NULL);
	assert_true(conn >= 0);
	assert_int_equal(is_nonblocking(conn), (flags & HANDOFF_NONBLOCK) != 0);
	assert_int_equal(is_cloexec(conn), (flags & HANDOFF_CLOEXEC) != 0);
	close(conn);
	close(client);
}

static void read_file(const char *path, char *buf, size_t size)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n;

	assert_true(fd >= 0);
	n = read(fd, buf, size - 1);
	assert_true(n >= 0);
	buf[n] = '\0';
	close(fd);
}

static void test_listen_publishes_files(void **state)
{
	struct fixture *f = *state;
	const char *names[] = { "A.Example", "*.Apps.example.", "x_y-1.example", "*" };
	char sock_path[512], names_path[512], content[1024];
	const char *base;
	struct stat st;
	int fd, total, passcred = 0;
	socklen_t len = sizeof(passcred);
	unsigned long pid;
	char hex[32];

	fd = handoff_listen(f->dir, names, 4, HANDOFF_NONBLOCK | HANDOFF_CLOEXEC);
	assert_true(fd >= 0);
	assert_true(is_nonblocking(fd));
	assert_true(is_cloexec(fd));
	assert_int_equal(getsockopt(fd, SOL_SOCKET, SO_PASSCRED, &passcred, &len), 0);
	assert_true(passcred);

	assert_int_equal(find_entry(f, WIRE_SOCK_SUFFIX, sock_path, sizeof(sock_path), &total), 1);
	assert_int_equal(find_entry(f, WIRE_NAMES_SUFFIX, names_path, sizeof(names_path), &total), 1);
	assert_int_equal(total, 3);	/* ID/, ID.sock, ID.names: nothing else */

	/* ID is "<pid>-<16 hex>", shared by both files. */
	base = strrchr(sock_path, '/') + 1;
	assert_int_equal(sscanf(base, "%lu-%16[0-9a-f].sock", &pid, hex), 2);
	assert_int_equal(pid, (unsigned long)getpid());
	assert_int_equal(strlen(hex), 16);
	assert_int_equal(strncmp(sock_path, names_path, strlen(sock_path) - strlen(".sock")), 0);

	assert_int_equal(lstat(sock_path, &st), 0);
	assert_true(S_ISSOCK(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0666);
	assert_int_equal(lstat(names_path, &st), 0);
	assert_true(S_ISREG(st.st_mode));
	assert_int_equal(st.st_mode & 07777, 0644);
	read_file(names_path, content, sizeof(content));
	assert_string_equal(content, "a.example\n*.apps.example\nx_y-1.example\n*\n");

	assert_int_equal(handoff_close(fd), 0);
	assert_int_equal(find_entry(f, "", sock_path, sizeof(sock_path), &total), 0);
	assert_int_equal(total, 0);
	assert_int_equal(fcntl(fd, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
}

static void test_listen_mode_ignores_umask(void **state)
{
	struct fixture *f = *state;
	char path[512];
	struct stat st;
	mode_t old = umask(077);
	int fd = listen_one(f, "a.example", 0);
	int total;

	umask(old);
	assert_int_equal(find_entry(f, WIRE_NAMES_SUFFIX, path, sizeof(path), &total), 1);
	assert_int_equal(stat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0644);
	sock_path_of(f, path, sizeof(path));
	assert_int_equal(lstat(path, &st), 0);
	assert_int_equal(st.st_mode & 07777, 0666);
	handoff_close(fd);
}

static void test_listen_flags_cleared(void **state)
{
	struct fixture *f = *state;
	int fd = listen_one(f, "a.example", 0);

	assert_false(is_nonblocking(fd));
	assert_false(is_cloexec(fd));
	handoff_close(fd);
}

static void test_listen_rejects_invalid(void **state)
{
	struct fixture *f = *state;
	static const char *const bad[] = {
		"", ".", "**", "*.", "a..b", "-a.example", "a-.example", "a.*.example",
		"a b.example", "a\nb", "ex\xc3\xa4mple.com", "a.example..", "*.*.example",
		"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa.example",
	};
	char long_name[300];
	const char *one[1];
	char path[512];
	int total;

	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		const char *names[] = { "good.example", bad[i] };
		errno = 0;
		assert_int_equal(handoff_listen(f->dir, names, 2, 0), -1);
		assert_int_equal(errno, EINVAL);
	}
	/* 4 labels of 63 plus dots: 255 bytes, over the 253 limit. */
	memset(long_name, 'a', 255);
	long_name[63] = long_name[127] = long_name[191] = '.';
	long_name[255] = '\0';
	one[0] = long_name;
	assert_int_equal(handoff_listen(f->dir, one, 1, 0), -1);
	assert_int_equal(errno, EINVAL);
	/* 253 bytes is fine. */
	long_name[253] = '\0';
	int fd = handoff_listen(f->dir, one, 1, 0);
	assert_true(fd >= 0);
	handoff_close(fd);

	one[0] = "a.example";
	assert_int_equal(handoff_listen(f->dir, one, 0, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(handoff_listen(f->dir, NULL, 1, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(handoff_listen(f->dir, one, 1, 0x4), -1);
	assert_int_equal(errno, EINVAL);

	assert_int_equal(find_entry(f, "", path, sizeof(path), &total), 0);
	assert_int_equal(total, 0);
}

/* The names file of a registration for one protocol starts with the line
 * the daemon reads as that limit; protocol 0 writes the names alone. */
static void test_listen_protocol(void **state)
{
	struct fixture *f = *state;
	static const struct {
		int protocol;
		const char *content;
	} cases[] = {
		{ 0, "a.example\n*.b.example\n" },
		{ HANDOFF_PROTO_TLS, "protocol tls\na.example\n*.b.example\n" },
		{ HANDOFF_PROTO_HTTP, "protocol http\na.example\n*.b.example\n" },
	};
	static const int invalid[] = { -1, 3, 255 };
	const char *names[] = { "A.example", "*.b.example." };
	char path[512], content[1024];
	int fd, total;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fd = handoff_listen_protocol(f->dir, names, 2,
					     (enum handoff_protocol)cases[i].protocol, 0);
		assert_true(fd >= 0);
		assert_int_equal(find_entry(f, WIRE_NAMES_SUFFIX, path, sizeof(path), &total), 1);
		read_file(path, content, sizeof(content));
		assert_string_equal(content, cases[i].content);
		assert_int_equal(handoff_close(fd), 0);
	}
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		errno = 0;
		assert_int_equal(handoff_listen_protocol(f->dir, names, 2,
							 (enum handoff_protocol)invalid[i], 0), -1);
		assert_int_equal(errno, EINVAL);
	}
	/* An invalid name still fails with a valid protocol. */
	names[1] = "a..b";
	assert_int_equal(handoff_listen_protocol(f->dir, names, 2, HANDOFF_PROTO_TLS, 0), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(find_entry(f, "", path, sizeof(path), &total), 0);
	assert_int_equal(total, 0);
}

/* A receiver limited to one client address family says so in a line the
 * daemon reads; 0 (both) writes none, as every older names file. */
static void test_listen_family(void **state)
{
	struct fixture *f = *state;
	static const struct {
		int protocol;
		int family;
		const char *content;
	} cases[] = {
		{ 0, 0, "a.example\n" },
		{ 0, AF_INET, "family ipv4\na.example\n" },
		{ 0, AF_INET6, "family ipv6\na.example\n" },
		{ HANDOFF_PROTO_TLS, AF_INET, "protocol tls\nfamily ipv4\na.example\n" },
	};
	static const int invalid[] = { -1, AF_UNIX, AF_UNSPEC + 255 };
	const char *names[] = { "a.example" };
	char path[512], content[1024];
	int fd, total;

	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		fd = handoff_listen_family(f->dir, names, 1, (enum handoff_protocol)cases[i].protocol,
					   cases[i].family, 0);
		assert_true(fd >= 0);
		assert_int_equal(find_entry(f, WIRE_NAMES_SUFFIX, path, sizeof(path), &total), 1);
		read_file(path, content, sizeof(content));
		assert_string_equal(content, cases[i].content);
		assert_int_equal(handoff_close(fd), 0);
	}
	for (size_t i = 0; i < sizeof(invalid) / sizeof(invalid[0]); i++) {
		errno = 0;
		assert_int_equal(handoff_listen_family(f->dir, names, 1, 0, invalid[i], 0), -1);
		assert_int_equal(errno, EINVAL);
	}
	assert_int_equal(find_entry(f, "", path, sizeof(path), &total), 0);
	assert_int_equal(total, 0);
}

static void test_listen_missing_directories(void **state)
{
	struct fixture *f = *state;
	const char *names[] = { "a.example" };
	char missing[128];

	snprintf(missing, sizeof(missing), "%s/nonexistent", f->dir);
	assert_int_equal(handoff_listen(missing, names, 1, 0), -1);
	assert_int_equal(errno, ENOENT);

	/* R exists, R/upstreams does not (daemon never started there). */
	assert_int_equal(rmdir(f->upstreams), 0);
	assert_int_equal(handoff_listen(f->dir, names, 1, 0), -1);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(mkdir(f->upstreams, 01777), 0);
}

static void test_listen_path_too_long(void **state)
{
	struct fixture *f = *state;
	const char *names[] = { "a.example" };
	char deep[256];
	size_t len = (size_t)snprintf(deep, sizeof(deep), "%s/", f->dir);

	/* sun_path holds 108 bytes; R alone takes up most of that. */
	memset(deep + len, 'd', 100 - len);
	deep[100] = '\0';
	assert_int_equal(handoff_listen(deep, names, 1, 0), -1);
	assert_int_equal(errno, ENAMETOOLONG);
}

static void test_accept_delivers_connection(void **state)
{
	struct fixture *f = *state;
	char sock_path[512];
	struct handoff_info info;
	struct sockaddr_storage addr;
	struct sockaddr_in expected;
	socklen_t addrlen, explen = sizeof(expected);
	int fd = listen_for_handoffs(f, HANDOFF_NONBLOCK | HANDOFF_CLOEXEC, sock_path, sizeof(sock_path));
	int client, server, conn;

	/* Non-blocking and close-on-exec requested, full address. */
	tcp_pair(&client, &server);
	assert_int_equal(getsockname(client, (struct sockaddr *)&expected, &explen), 0);
	hand_off(sock_path, WIRE_PROTO_TLS, "a.example", server);
	addrlen = sizeof(addr);
	memset(&info, 0xa5, sizeof(info));
	conn = handoff_accept(fd, (struct sockaddr *)&addr, &addrlen,
			      HANDOFF_NONBLOCK | HANDOFF_CLOEXEC, &info);
	assert_true(conn >= 0);
	assert_true(is_nonblocking(conn));
	assert_true(is_cloexec(conn));
	assert_int_equal(addrlen, sizeof(struct sockaddr_in));
	assert_memory_equal(&addr, &expected, sizeof(expected));
	assert_int_equal(info.protocol, HANDOFF_PROTO_TLS);
	assert_string_equal(info.name, "a.example");
	assert_int_equal(info.alpn_len, 0);
	assert_int_equal(info.accepted_us, 1234567890123456ull);
	assert_int_equal(info.peer_len, sizeof(struct sockaddr_in));
	assert_memory_equal(&info.peer, &expected, sizeof(expected));
	assert_int_equal(info.local_len, sizeof(struct sockaddr_in));
	assert_int_equal(((struct sockaddr_in *)&info.local)->sin_family, AF_INET);
	assert_true(carries_data(conn, client));
	assert_true(carries_data(client, conn));
	close(conn);
	assert_true(sees_eof(client));
	close(client);

	/* Neither flag: both cleared although the daemon left O_NONBLOCK on;
	 * a 4-byte address buffer is truncated but told the real length. */
	tcp_pair(&client, &server);
	explen = sizeof(expected);
	assert_int_equal(getsockname(client, (struct sockaddr *)&expected, &explen), 0);
	hand_off(sock_path, WIRE_PROTO_HTTP, "", server);
	memset(&addr, 0, sizeof(addr));
	addrlen = 4;
	conn = handoff_accept(fd, (struct sockaddr *)&addr, &addrlen, 0, &info);
	assert_true(conn >= 0);
	assert_false(is_nonblocking(conn));
	assert_false(is_cloexec(conn));
	assert_int_equal(addrlen, sizeof(struct sockaddr_in));
	assert_memory_equal(&addr, &expected, 4);
	assert_int_equal(((char *)&addr)[4], 0);
	assert_int_equal(info.protocol, HANDOFF_PROTO_HTTP);
	assert_string_equal(info.name, "");
	check_carries_and_close(conn, client);

	/* No address or info wanted. */
	check_accept_with_flags(fd, sock_path, "b.example", HANDOFF_CLOEXEC);

	/* Nothing left. */
	assert_int_equal(handoff_accept(fd, NULL, NULL, 0, NULL), -1);
	assert_int_equal(errno, EAGAIN);
	handoff_close(fd);
}

/* A header that leaves the local address to the receiver (the daemon on a
 * wildcard listener) and says its peer is the socket's own: both come out
 * as the socket would tell them. */
static void test_accept_fills_what_the_header_leaves(void **state)
{
	struct fixture *f = *state;
	char sock_path[512];
	struct wire_header h;
	struct handoff_info info;
	struct sockaddr_storage addr, local;
	socklen_t addrlen = sizeof(addr), local_len = sizeof(local);
	int fd = listen_for_handoffs(f, HANDOFF_NONBLOCK, sock_path, sizeof(sock_path));
	int client, server, conn;

	tcp_pair(&client, &server);
	assert_int_equal(getsockname(server, (struct sockaddr *)&local, &local_len), 0);
	make_header(&h, WIRE_PROTO_HTTP, "a.example", server);
	memset(&h.local, 0, sizeof(h.local));
	h.local_len = 0;
	/* A peer only the header knows proves it is taken from there. */
	((struct sockaddr_in *)&h.peer)->sin_port = htons(9);
	h.flags = WIRE_FLAG_PEER_IS_SOCKET;
	send_message(sock_path, &h, sizeof(h), &server, 1);
	close(server);
	conn = handoff_accept(fd, (struct sockaddr *)&addr, &addrlen, HANDOFF_NONBLOCK, &info);
	assert_true(conn >= 0);
	assert_int_equal(info.local_len, local_len);
	assert_memory_equal(&info.local, &local, local_len);
	assert_int_equal(addrlen, sizeof(struct sockaddr_in));
	assert_int_equal(ntohs(((struct sockaddr_in *)&addr)->sin_port), 9);
	close(conn);
	close(client);

	/* Without the flag the socket is asked. */
	tcp_pair(&client, &server);
	make_header(&h, WIRE_PROTO_HTTP, "a.example", server);
	((struct sockaddr_in *)&h.peer)->sin_port = htons(9);
	send_message(sock_path, &h, sizeof(h), &server, 1);
	close(server);
	addrlen = sizeof(addr);
	conn = handoff_accept(fd, (struct sockaddr *)&addr, &addrlen, HANDOFF_NONBLOCK, &info);
	assert_true(conn >= 0);
	assert_int_not_equal(ntohs(((struct sockaddr_in *)&addr)->sin_port), 9);
	assert_int_equal(ntohs(((struct sockaddr_in *)&info.peer)->sin_port), 9);
	close(conn);
	close(client);
	handoff_close(fd);
}

static void test_accept_alpn_and_newer_version(void **state)
{
	struct fixture *f = *state;
	static const uint8_t alpn[] = { 2, 'h', '2', 8, 'h', 't', 't', 'p', '/', '1', '.', '1' };
	/* A later version appends fields; this one still reads the v1 part. */
	struct {
		struct wire_header h;
		uint8_t appended[64];
	} v2;
	char sock_path[512];
	struct handoff_info info;
	int fd = listen_for_handoffs(f, HANDOFF_NONBLOCK, sock_path, sizeof(sock_path));
	int client, server, conn;

	tcp_pair(&client, &server);
	memset(&v2, 0x5a, sizeof(v2));
	make_header(&v2.h, WIRE_PROTO_TLS, "a.example", server);
	v2.h.version = WIRE_VERSION + 1;
	v2.h.size = sizeof(v2);
	memcpy(v2.h.alpn, alpn, sizeof(alpn));
	v2.h.alpn_len = sizeof(alpn);
	send_message(sock_path, &v2, sizeof(v2), &server, 1);
	close(server);

	conn = handoff_accept(fd, NULL, NULL, 0, &info);
	assert_true(conn >= 0);
	assert_int_equal(info.alpn_len, sizeof(alpn));
	assert_memory_equal(info.alpn, alpn, sizeof(alpn));
	check_carries_and_close(conn, client);
	handoff_close(fd);
}

static void test_accept_discards_invalid(void **state)
{
	struct fixture *f = *state;
	char sock_path[512];
	struct wire_header h;
	struct handoff_info info;
	int fd = listen_for_handoffs(f, HANDOFF_NONBLOCK | HANDOFF_CLOEXEC, sock_path, sizeof(sock_path));
	int clients[8], servers[8], pipe_fds[2], conn, n = 0;

	for (int i = 0; i < 8; i++)
		tcp_pair(&clients[i], &servers[i]);

	/* Bad magic. */
	make_header(&h, WIRE_PROTO_TLS, "a.example", servers[n]);
	h.magic ^= 1;
	send_message(sock_path, &h, sizeof(h), &servers[n], 1);
	n++;
	/* Unknown (older) version. */
	make_header(&h, WIRE_PROTO_TLS, "a.example", servers[n]);
	h.version = 0;
	send_message(sock_path, &h, sizeof(h), &servers[n], 1);
	n++;
	/* Two descriptors: both must be closed. */
	make_header(&h, WIRE_PROTO_TLS, "a.example", servers[n]);
	send_message(sock_path, &h, sizeof(h), &servers[n], 2);
	n += 2;
	/* Shorter than the v1 header. */
	make_header(&h, WIRE_PROTO_TLS, "a.example", servers[n]);
	send_message(sock_path, &h, sizeof(h) - 1, &servers[n], 1);
	n++;
	/* Unknown protocol. */
	make_header(&h, WIRE_PROTO_TLS, "a.example", servers[n]);
	h.protocol = 7;
	send_message(sock_path, &h, sizeof(h), &servers[n], 1);
	n++;
	/* Address length beyond the field. */
	make_header(&h, WIRE_PROTO_TLS, "a.example", servers[n]);
	h.peer_len = sizeof(h.peer) + 1;
	send_message(sock_path, &h, sizeof(h), &servers[n], 1);
	n++;
	/* Not a stream socket. */
	assert_int_equal(pipe2(pipe_fds, O_CLOEXEC), 0);
	make_header(&h, WIRE_PROTO_TLS, "a.example", servers[n]);
	send_message(sock_path, &h, sizeof(h), &pipe_fds[1], 1);
	close(pipe_fds[1]);
	/* No descriptor at all. */
	send_message(sock_path, &h, sizeof(h), NULL, 0);
	/* Finally a good one. */
	make_header(&h, WIRE_PROTO_HTTP, "good.example", servers[n]);
	send_message(sock_path, &h, sizeof(h), &servers[n], 1);
	n++;
	assert_int_equal(n, 8);
	for (int i = 0; i < 8; i++)
		close(servers[i]);

	conn = handoff_accept(fd, NULL, NULL, HANDOFF_CLOEXEC, &info);
	assert_true(conn >= 0);
	assert_string_equal(info.name, "good.example");
	assert_true(carries_data(conn, clients[7]));
	/* Every discarded descriptor was closed: their peers see EOF. */
	for (int i = 0; i < 7; i++)
		assert_true(sees_eof(clients[i]));
	assert_true(sees_eof(pipe_fds[0]));
	assert_int_equal(handoff_accept(fd, NULL, NULL, 0, NULL), -1);
	assert_int_equal(errno, EAGAIN);

	close(conn);
	close(pipe_fds[0]);
	for (int i = 0; i < 8; i++)
		close(clients[i]);
	handoff_close(fd);
}

static void test_accept_gives_up_after_many_invalid(void **state)
{
	struct fixture *f = *state;
	char sock_path[512];
	struct wire_header h;
	struct sockaddr_un sender_addr;
	socklen_t sender_len = sizeof(sender_addr);
	sa_family_t autobind = AF_UNIX;
	int fd = listen_for_handoffs(f, HANDOFF_NONBLOCK, sock_path, sizeof(sock_path));
	int sender = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int client, server, conn;

	/* The kernel holds only net.unix.max_dgram_qlen (often 10) datagrams
	 * for an unconnected receiver, but no such limit applies to messages
	 * from the socket the receiver is connected to: connect the upstream
	 * socket to an autobound sender so 70 messages can queue at once. */
	assert_true(sender >= 0);
	assert_int_equal(bind(sender, (struct sockaddr *)&autobind, sizeof(autobind)), 0);
	assert_int_equal(getsockname(sender, (struct sockaddr *)&sender_addr, &sender_len), 0);
	assert_int_equal(connect(fd, (struct sockaddr *)&sender_addr, sender_len), 0);
	memset(&h, 0, sizeof(h));
	for (int i = 0; i < 70; i++)
		send_message_from(sender, sock_path, &h, sizeof(h), NULL, 0);
	tcp_pair(&client, &server);
	make_header(&h, WIRE_PROTO_HTTP, "a.example", server);
	send_message_from(sender, sock_path, &h, sizeof(h), &server, 1);
	close(server);

	/* 64 discarded, then EAGAIN though more is queued; the next call
	 * gets through the rest to the connection. */
	assert_int_equal(handoff_accept(fd, NULL, NULL, 0, NULL), -1);
	assert_int_equal(errno, EAGAIN);
	conn = handoff_accept(fd, NULL, NULL, 0, NULL);
	assert_true(conn >= 0);
	close(conn);
	close(client);
	close(sender);
	handoff_close(fd);
}

static void test_accept_rejects_other_senders(void **state)
{
	struct fixture *f = *state;
	char sock_path[512];
	int fd, client, server, status;
	pid_t child;

	if (geteuid() != 0)
		skip();	/* sending as another user needs root */
	fd = listen_for_handoffs(f, HANDOFF_NONBLOCK, sock_path, sizeof(sock_path));
	tcp_pair(&client, &server);

	child = fork();
	assert_true(child >= 0);
	if (child == 0) {
		struct wire_header h;
		make_header(&h, WIRE_PROTO_HTTP, "a.example", server);
		if (setresgid(65534, 65534, 65534) < 0 || setresuid(65534, 65534, 65534) < 0)
			_exit(2);
		send_message(sock_path, &h, sizeof(h), &server, 1);
		_exit(0);
	}
	close(server);
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);

	assert_int_equal(handoff_accept(fd, NULL, NULL, 0, NULL), -1);
	assert_int_equal(errno, EAGAIN);
	assert_true(sees_eof(client));
	close(client);
	handoff_close(fd);
}

static void test_accept_emfile_keeps_message(void **state)
{
	struct fixture *f = *state;
	char sock_path[512];
	struct rlimit saved, tight;
	int fd = listen_for_handoffs(f, HANDOFF_NONBLOCK, sock_path, sizeof(sock_path));
	int client, server, lowest_free, conn, err;

	tcp_pair(&client, &server);
	hand_off(sock_path, WIRE_PROTO_HTTP, "a.example", server);

	/* Every slot below the lowest free one is taken, so a limit at it
	 * leaves no descriptor free, and one above it exactly one. */
	lowest_free = fcntl(0, F_DUPFD_CLOEXEC, 0);
	assert_true(lowest_free >= 0);
	close(lowest_free);
	assert_int_equal(getrlimit(RLIMIT_NOFILE, &saved), 0);
	tight = saved;
	tight.rlim_cur = (rlim_t)lowest_free;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
	conn = handoff_accept(fd, NULL, NULL, 0, NULL);
	err = errno;
	assert_int_equal(conn, -1);
	assert_int_equal(err, EMFILE);

	/* The connection is still queued, and one free slot takes it. */
	tight.rlim_cur = (rlim_t)lowest_free + 1;
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &tight), 0);
	conn = handoff_accept(fd, NULL, NULL, 0, NULL);
	assert_int_equal(setrlimit(RLIMIT_NOFILE, &saved), 0);
	assert_true(conn >= 0);
	check_carries_and_close(conn, client);
	handoff_close(fd);
}

static void on_alarm(int sig)
{
	(void)sig;
}

static void test_accept_blocking_and_eintr(void **state)
{
	struct fixture *f = *state;
	char sock_path[512];
	struct sigaction sa = { .sa_handler = on_alarm }, old_sa;
	struct itimerval timer = { .it_value = { .tv_usec = 100 * 1000 } }, off = { 0 };
	int fd = listen_for_handoffs(f, 0, sock_path, sizeof(sock_path));
	int conn, err;

	/* No SA_RESTART: the blocked receive must come back with EINTR. */
	sigemptyset(&sa.sa_mask);
	assert_int_equal(sigaction(SIGALRM, &sa, &old_sa), 0);
	assert_int_equal(setitimer(ITIMER_REAL, &timer, NULL), 0);
	conn = handoff_accept(fd, NULL, NULL, 0, NULL);
	err = errno;
	setitimer(ITIMER_REAL, &off, NULL);
	sigaction(SIGALRM, &old_sa, NULL);
	assert_int_equal(conn, -1);
	assert_int_equal(err, EINTR);

	/* A blocking fd waits past invalid messages to the valid one. */
	send_message(sock_path, "junk", 4, NULL, 0);
	check_accept_with_flags(fd, sock_path, "a.example", HANDOFF_NONBLOCK);
	handoff_close(fd);
}

static void test_accept_unknown_descriptor(void **state)
{
	struct fixture *f = *state;
	int other = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
	int fd = listen_one(f, "a.example", HANDOFF_NONBLOCK);

	assert_true(other >= 0);
	assert_int_equal(handoff_accept(other, NULL, NULL, 0, NULL), -1);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(handoff_accept(-1, NULL, NULL, 0, NULL), -1);
	assert_int_equal(errno, EBADF);
	assert_int_equal(handoff_accept(fd, NULL, NULL, 0x4, NULL), -1);
	assert_int_equal(errno, EINVAL);
	close(other);
	handoff_close(fd);
}

static void test_close_in_child_keeps_files(void **state)
{
	struct fixture *f = *state;
	char path[512];
	int fd = listen_one(f, "a.example", 0);
	int status, total;
	pid_t child = fork();

	assert_true(child >= 0);
	if (child == 0) {
		int rc = handoff_close(fd);
		_exit(rc == 0 ? 0 : 1);
	}
	assert_int_equal(waitpid(child, &status, 0), child);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	find_entry(f, "", path, sizeof(path), &total);
	assert_int_equal(total, 3);

	assert_int_equal(handoff_close(fd), 0);
	find_entry(f, "", path, sizeof(path), &total);
	assert_int_equal(total, 0);
}

static void test_runtime_dir(void **state)
{
	char buf[256], expected[256];
	char *saved_env = getenv("HANDOFF_RUNTIME_DIR");
	char *saved_xdg = getenv("XDG_RUNTIME_DIR");

	(void)state;
	saved_env = saved_env ? strdup(saved_env) : NULL;
	saved_xdg = saved_xdg ? strdup(saved_xdg) : NULL;

	setenv("HANDOFF_RUNTIME_DIR", "/srv/handoff-rt", 1);
	assert_int_equal(handoff_runtime_dir(buf, sizeof(buf)), 0);
	assert_string_equal(buf, "/srv/handoff-rt");
	assert_int_equal(handoff_runtime_dir(buf, 5), -1);
	assert_int_equal(errno, ENAMETOOLONG);

	unsetenv("HANDOFF_RUNTIME_DIR");
	setenv("XDG_RUNTIME_DIR", "/run/user/4242", 1);
	if (geteuid() == 0)
		snprintf(expected, sizeof(expected), "/run/handoff");
	else
		snprintf(expected, sizeof(expected), "/run/user/4242/handoff");
	assert_int_equal(handoff_runtime_dir(buf, sizeof(buf)), 0);
	assert_string_equal(buf, expected);

	unsetenv("XDG_RUNTIME_DIR");
	if (geteuid() != 0)
		snprintf(expected, sizeof(expected), "/tmp/handoff-%lu", (unsigned long)geteuid());
	assert_int_equal(handoff_runtime_dir(buf, sizeof(buf)), 0);
	assert_string_equal(buf, expected);

	if (saved_env)
		setenv("HANDOFF_RUNTIME_DIR", saved_env, 1);
	if (saved_xdg)
		setenv("XDG_RUNTIME_DIR", saved_xdg, 1);
	free(saved_env);
	free(saved_xdg);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_listen_publishes_files, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_mode_ignores_umask, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_flags_cleared, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_rejects_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_protocol, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_family, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_missing_directories, setup, teardown),
		cmocka_unit_test_setup_teardown(test_listen_path_too_long, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_delivers_connection, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_alpn_and_newer_version, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_discards_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_gives_up_after_many_invalid, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_rejects_other_senders, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_emfile_keeps_message, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_fills_what_the_header_leaves, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_blocking_and_eintr, setup, teardown),
		cmocka_unit_test_setup_teardown(test_accept_unknown_descriptor, setup, teardown),
		cmocka_unit_test_setup_teardown(test_close_in_child_keeps_files, setup, teardown),
		cmocka_unit_test(test_runtime_dir),
	};

	/* A vanished client must not kill the test with SIGPIPE. */
	signal(SIGPIPE, SIG_IGN);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
