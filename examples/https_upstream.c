/* https_upstream.c - example upstream: serves HTTPS or plain HTTP/1.1 on connections handed off by handoff. */
/*
 * Usage:
 *   https-upstream --name NAME [--name NAME2 ...] [--cert CERT.pem --key KEY.pem]
 *                  [--runtime-dir R] [--label TEXT]
 *
 * Registers the names with the daemon (handoff_listen), prints "ready" on
 * stdout once registered, then serves every handed-off connection in its own
 * thread (at most MAX_THREADS at once; beyond that new ones are closed).
 * Connections the daemon peeked as TLS get a TLS handshake with the given
 * certificate (and are closed when none was given); HTTP ones are served in
 * plain text. Requests (HTTP/1.1 keep-alive, heads up to 16 KiB):
 *
 *   GET /          200 text/plain, one "key=value" line each:
 *                  label, pid, name (the daemon's header, "-" if none),
 *                  sni ("-" if none), alpn (negotiated, "-" if none),
 *                  client (getpeername), local (getsockname) as IP:PORT
 *                  ("[IPv6]:PORT" for IPv6), peer (the client as the daemon
 *                  knows it: differs from client only behind a balancer that
 *                  sends PROXY headers), proto (tls or http)
 *   GET /bytes/N   200 application/octet-stream, N bytes (N <= 2^34) where
 *                  byte i is (i * 7 + 13) & 0xff; plain HTTP sends it with
 *                  sendfile() from a memfd, TLS with SSL_write
 *   anything else  404
 *
 * The connection stays open unless the client sends "Connection: close" or
 * speaks HTTP/1.0; requests with a body are answered and then the connection
 * is closed, since this server does not read bodies. SIGTERM or SIGINT
 * withdraw the names (handoff_close) and exit 0. One line per connection
 * goes to stderr.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/mman.h>
#include <sys/sendfile.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <time.h>
#include <unistd.h>

#include <openssl/err.h>
#include <openssl/ssl.h>

#include "handoff.h"

#define MAX_NAMES		64
#define MAX_THREADS		256
#define THREAD_STACK_BYTES	(512 * 1024)
#define MAX_HEAD_BYTES		(16 * 1024)
#define IO_TIMEOUT_SECONDS	30
#define MAX_BYTES_REQUEST	(1ull << 34)
/* The pattern repeats every 256 bytes, so any multiple of 256 serves as
 * the source for every offset. */
#define PATTERN_CHUNK		(64 * 1024)
/* Handoffs taken per wake-up before polling again (signals get a look in). */
#define ACCEPTS_PER_WAKE	64

static const char *label;
static SSL_CTX *tls_ctx;		/* NULL when no certificate was given */
static int pattern_memfd = -1;
static unsigned char pattern[PATTERN_CHUNK];
static atomic_int running_threads;
static volatile sig_atomic_t stop_requested;

/* One handed-off connection, owned by its thread. */
struct connection {
	int fd;
	SSL *ssl;
	struct handoff_info info;
	char head[MAX_HEAD_BYTES + 1];
	size_t head_len;		/* bytes in head, including pipelined ones */
};

static void die(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));

static void die(const char *fmt, ...)
{
	va_list ap;

	fputs("https-upstream: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
	exit(1);
}

static void format_address(const struct sockaddr_storage *ss, char *out, size_t size)
{
	char ip[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		const struct sockaddr_in *sin = (const struct sockaddr_in *)ss;
		inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
		snprintf(out, size, "%s:%u", ip, ntohs(sin->sin_port));
	} else if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *sin6 = (const struct sockaddr_in6 *)ss;
		inet_ntop(AF_INET6, &sin6->sin6_addr, ip, sizeof(ip));
		snprintf(out, size, "[%s]:%u", ip, ntohs(sin6->sin6_port));
	} else {
		snprintf(out, size, "-");
	}
}

static void socket_address(int fd, bool peer, char *out, size_t size)
{
	struct sockaddr_storage ss;
	socklen_t len = sizeof(ss);
	int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &len)
		      : getsockname(fd, (struct sockaddr *)&ss, &len);

	if (rc < 0)
		ss.ss_family = AF_UNSPEC;
	format_address(&ss, out, size);
}

/* Read some bytes; 0 at end of stream, -1 on error or timeout. */
static ssize_t conn_read(struct connection *c, void *buf, size_t len)
{
	if (c->ssl) {
		int n = SSL_read(c->ssl, buf, (int)len);	/* len <= MAX_HEAD_BYTES */
		if (n > 0)
			return n;
		return SSL_get_error(c->ssl, n) == SSL_ERROR_ZERO_RETURN ? 0 : -1;
	}
	for (;;) {
		ssize_t n = recv(c->fd, buf, len, 0);
		if (n >= 0 || errno != EINTR)
			return n;
	}
}

static int conn_write(struct connection *c, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		if (c->ssl) {
			size_t written = 0;
			if (SSL_write_ex(c->ssl, p, len, &written) <= 0)
				return -1;
			p += written;
			len -= written;
		} else {
			ssize_t n = send(c->fd, p, len, MSG_NOSIGNAL);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return -1;
			}
			p += n;
			len -= (size_t)n;
		}
	}
	return 0;
}

/* Send count bytes of the pattern: sendfile from the memfd on a plain
 * socket, 64 KiB SSL_write records on TLS. */
static int send_pattern(struct connection *c, uint64_t count)
{
	uint64_t sent = 0;

	while (sent < count) {
		size_t offset = (size_t)(sent % PATTERN_CHUNK);
		size_t len = PATTERN_CHUNK - offset;
		if (len > count - sent)
			len = (size_t)(count - sent);
		if (c->ssl) {
			if (conn_write(c, pattern + offset, len) < 0)
				return -1;
			sent += len;
		} else {
			off_t file_offset = (off_t)offset;
			ssize_t n = sendfile(c->fd, pattern_memfd, &file_offset, len);
			if (n < 0) {
				if (errno == EINTR)
					continue;
				return -1;
			}
			if (n == 0)
				return -1;
			sent += (uint64_t)n;
		}
	}
	return 0;
}

static int send_response(struct connection *c, const char *status, const char *type,
			 uint64_t length, bool keep_alive)
{
	char head[256];
	int n = snprintf(head, sizeof(head),
			 "HTTP/1.1 %s\r\nContent-Type: %s\r\nContent-Length: %" PRIu64
			 "\r\nConnection: %s\r\n\r\n",
			 status, type, length, keep_alive ? "keep-alive" : "close");

	return conn_write(c, head, (size_t)n);
}

static int serve_info(struct connection *c, bool keep_alive)
{
	char body[1024], client[80], local[80], peer[80], alpn[256] = "-";
	const char *sni = "-";
	int n;

	if (c->ssl) {
		const unsigned char *proto;
		unsigned int proto_len;
		const char *servername = SSL_get_servername(c->ssl, TLSEXT_NAMETYPE_host_name);
		if (servername)
			sni = servername;
		SSL_get0_alpn_selected(c->ssl, &proto, &proto_len);
		if (proto_len > 0)
			snprintf(alpn, sizeof(alpn), "%.*s", (int)proto_len, (const char *)proto);
	}
	socket_address(c->fd, true, client, sizeof(client));
	socket_address(c->fd, false, local, sizeof(local));
	format_address(&c->info.peer, peer, sizeof(peer));
	n = snprintf(body, sizeof(body),
		     "label=%s\npid=%ld\nname=%s\nsni=%s\nalpn=%s\nclient=%s\nlocal=%s\npeer=%s\nproto=%s\n",
		     label, (long)getpid(), c->info.name[0] ? c->info.name : "-", sni, alpn,
		     client, local, peer, c->ssl ? "tls" : "http");
	if (n < 0 || (size_t)n >= sizeof(body))
		return -1;
	if (send_response(c, "200 OK", "text/plain", (uint64_t)n, keep_alive) < 0)
		return -1;
	return conn_write(c, body, (size_t)n);
}

/* "/bytes/N" with N a plain decimal up to MAX_BYTES_REQUEST. */
static bool parse_bytes_target(const char *target, uint64_t *count)
{
	const char *digits = target + strlen("/bytes/");
	uint64_t value = 0;

	if (strncmp(target, "/bytes/", strlen("/bytes/")) != 0 || *digits == '\0')
		return false;
	for (const char *p = digits; *p; p++) {
		if (*p < '0' || *p > '9' || p - digits >= 12)
			return false;
		value = value * 10 + (uint64_t)(*p - '0');
	}
	if (value > MAX_BYTES_REQUEST)
		return false;
	*count = value;
	return true;
}

static int serve_not_found(struct connection *c, bool keep_alive)
{
	static const char body[] = "not found\n";

	if (send_response(c, "404 Not Found", "text/plain", sizeof(body) - 1, keep_alive) < 0)
		return -1;
	return conn_write(c, body, sizeof(body) - 1);
}

/* Length of the head (through its blank line) if c->head holds a complete
 * one, else 0. */
static size_t complete_head_length(const struct connection *c)
{
	for (size_t i = 0; i + 1 < c->head_len; i++) {
		if (c->head[i] != '\n')
			continue;
		if (c->head[i + 1] == '\n')
			return i + 2;
		if (c->head[i + 1] == '\r' && i + 2 < c->head_len && c->head[i + 2] == '\n')
			return i + 3;
	}
	return 0;
}

/* True if the comma-separated header value lists token (any case). */
static bool value_has_token(const char *value, const char *token)
{
	size_t tlen = strlen(token);

	while (*value) {
		while (*value == ' ' || *value == '\t' || *value == ',')
			value++;
		if (strncasecmp(value, token, tlen) == 0 &&
		    (value[tlen] == '\0' || value[tlen] == ',' || value[tlen] == ' ' ||
		     value[tlen] == '\t'))
			return true;
		while (*value && *value != ',')
			value++;
	}
	return false;
}

/*
 * Answer the request whose head is the first head_len bytes of c->head.
 * Returns 1 to keep the connection for another request, 0 to close it after
 * this one, -1 on an I/O error.
 */
static int handle_request(struct connection *c, size_t head_len)
{
	char *line, *save = NULL, *words = NULL, *method, *target, *version;
	bool keep_alive, has_body = false;
	uint64_t count;
	int rc;

	c->head[head_len - 1] = '\0';
	line = strtok_r(c->head, "\r\n", &save);
	method = line ? strtok_r(line, " ", &words) : NULL;
	target = method ? strtok_r(NULL, " ", &words) : NULL;
	version = target ? strtok_r(NULL, " ", &words) : NULL;
	if (!version || (strcmp(version, "HTTP/1.1") != 0 && strcmp(version, "HTTP/1.0") != 0)) {
		static const char bad[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n"
					  "Connection: close\r\n\r\n";
		conn_write(c, bad, sizeof(bad) - 1);
		return 0;
	}
	keep_alive = strcmp(version, "HTTP/1.1") == 0;
	while ((line = strtok_r(NULL, "\r\n", &save))) {
		char *colon = strchr(line, ':');
		const char *value;
		if (!colon)
			continue;
		*colon = '\0';
		value = colon + 1;
		if (strcasecmp(line, "connection") == 0 && value_has_token(value, "close"))
			keep_alive = false;
		else if (strcasecmp(line, "transfer-encoding") == 0)
			has_body = true;
		else if (strcasecmp(line, "content-length") == 0 && strtoull(value, NULL, 10) > 0)
			has_body = true;
	}
	/* The body is not read, so nothing after it could be parsed. */
	if (has_body)
		keep_alive = false;

	if (strcmp(method, "GET") == 0 && strcmp(target, "/") == 0) {
		rc = serve_info(c, keep_alive);
	} else if (strcmp(method, "GET") == 0 && parse_bytes_target(target, &count)) {
		rc = send_response(c, "200 OK", "application/octet-stream", count, keep_alive);
		if (rc == 0)
			rc = send_pattern(c, count);
	} else {
		rc = serve_not_found(c, keep_alive);
	}
	if (rc < 0)
		return -1;
	return keep_alive ? 1 : 0;
}

static void serve_requests(struct connection *c)
{
	for (;;) {
		size_t head_len = complete_head_length(c);
		int rc;

		if (head_len == 0) {
			ssize_t n;
			if (c->head_len >= MAX_HEAD_BYTES)
				return;
			n = conn_read(c, c->head + c->head_len, MAX_HEAD_BYTES - c->head_len);
			if (n <= 0)
				return;
			c->head_len += (size_t)n;
			continue;
		}
		rc = handle_request(c, head_len);
		if (rc <= 0)
			return;
		/* Keep whatever the client pipelined after this head. */
		memmove(c->head, c->head + head_len, c->head_len - head_len);
		c->head_len -= head_len;
	}
}

static void *connection_thread(void *arg)
{
	struct connection *c = arg;
	struct timeval timeout = { .tv_sec = IO_TIMEOUT_SECONDS };
	int flags = fcntl(c->fd, F_GETFL);
	char client[80];

	/* Blocking I/O keeps the thread simple; the timeouts stop an idle or
	 * stalled client from holding it forever. */
	if (flags >= 0)
		fcntl(c->fd, F_SETFL, flags & ~O_NONBLOCK);
	setsockopt(c->fd, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof(timeout));
	setsockopt(c->fd, SOL_SOCKET, SO_SNDTIMEO, &timeout, sizeof(timeout));
	socket_address(c->fd, true, client, sizeof(client));
	fprintf(stderr, "https-upstream: client=%s name=%s proto=%s\n", client,
		c->info.name[0] ? c->info.name : "-",
		c->info.protocol == HANDOFF_PROTO_TLS ? "tls" : "http");

	if (c->info.protocol == HANDOFF_PROTO_TLS) {
		if (!tls_ctx)
			goto done;	/* TLS arrived but we have no certificate */
		c->ssl = SSL_new(tls_ctx);
		if (!c->ssl || !SSL_set_fd(c->ssl, c->fd) || SSL_accept(c->ssl) <= 0) {
			char err[256];
			ERR_error_string_n(ERR_get_error(), err, sizeof(err));
			fprintf(stderr, "https-upstream: client=%s TLS handshake failed: %s\n",
				client, err);
			goto done;
		}
	}
	serve_requests(c);
	if (c->ssl)
		SSL_shutdown(c->ssl);
done:
	SSL_free(c->ssl);
	ERR_clear_error();
	close(c->fd);
	free(c);
	atomic_fetch_sub(&running_threads, 1);
	return NULL;
}

static void start_connection(int fd, const struct handoff_info *info)
{
	pthread_attr_t attr;
	pthread_t thread;
	struct connection *c;
	int err;

	if (atomic_fetch_add(&running_threads, 1) >= MAX_THREADS) {
		atomic_fetch_sub(&running_threads, 1);
		fprintf(stderr, "https-upstream: %d connections busy, closing a new one\n",
			MAX_THREADS);
		close(fd);
		return;
	}
	c = calloc(1, sizeof(*c));
	if (!c) {
		atomic_fetch_sub(&running_threads, 1);
		close(fd);
		return;
	}
	c->fd = fd;
	c->info = *info;
	pthread_attr_init(&attr);
	pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
	pthread_attr_setstacksize(&attr, THREAD_STACK_BYTES);
	err = pthread_create(&thread, &attr, connection_thread, c);
	pthread_attr_destroy(&attr);
	if (err != 0) {
		fprintf(stderr, "https-upstream: pthread_create: %s\n", strerror(err));
		atomic_fetch_sub(&running_threads, 1);
		close(fd);
		free(c);
	}
}

static int select_alpn(SSL *ssl, const unsigned char **out, unsigned char *outlen,
		       const unsigned char *in, unsigned int inlen, void *arg)
{
	static const unsigned char wanted[] = "\x08http/1.1";

	(void)ssl;
	(void)arg;
	for (unsigned int i = 0; i < inlen; i += 1u + in[i]) {
		if (i + 1u + in[i] > inlen)
			break;
		if (in[i] == wanted[0] && memcmp(in + i, wanted, sizeof(wanted) - 1) == 0) {
			*out = in + i + 1;
			*outlen = in[i];
			return SSL_TLSEXT_ERR_OK;
		}
	}
	return SSL_TLSEXT_ERR_NOACK;
}

static SSL_CTX *make_tls_context(const char *cert, const char *key)
{
	SSL_CTX *ctx = SSL_CTX_new(TLS_server_method());
	char err[256];

	if (!ctx)
		die("SSL_CTX_new failed");
	SSL_CTX_set_min_proto_version(ctx, TLS1_2_VERSION);
	if (SSL_CTX_use_certificate_chain_file(ctx, cert) != 1 ||
	    SSL_CTX_use_PrivateKey_file(ctx, key, SSL_FILETYPE_PEM) != 1 ||
	    SSL_CTX_check_private_key(ctx) != 1) {
		ERR_error_string_n(ERR_get_error(), err, sizeof(err));
		die("cannot use %s / %s: %s", cert, key, err);
	}
	SSL_CTX_set_alpn_select_cb(ctx, select_alpn, NULL);
	return ctx;
}

static void make_pattern(void)
{
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (unsigned char)((i * 7 + 13) & 0xff);
	pattern_memfd = memfd_create("handoff-pattern", MFD_CLOEXEC);
	if (pattern_memfd < 0)
		die("memfd_create: %s", strerror(errno));
	if (pwrite(pattern_memfd, pattern, sizeof(pattern), 0) != (ssize_t)sizeof(pattern))
		die("filling the pattern memfd: %s", strerror(errno));
}

static void on_stop_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static void usage(void)
{
	fprintf(stderr,
		"usage: https-upstream --name NAME [--name NAME2 ...] [--cert CERT.pem --key KEY.pem]\n"
		"                      [--runtime-dir DIR] [--label TEXT]\n");
	exit(2);
}

/* Take the waiting connections; returns false on a fatal error. */
static bool accept_waiting(int fd)
{
	for (int i = 0; i < ACCEPTS_PER_WAKE; i++) {
		struct handoff_info info;
		int conn = handoff_accept(fd, NULL, NULL, HANDOFF_NONBLOCK | HANDOFF_CLOEXEC, &info);

		if (conn >= 0) {
			start_connection(conn, &info);
			continue;
		}
		if (errno == EAGAIN || errno == EINTR)
			return true;
		if (errno == EMFILE || errno == ENFILE) {
			/* The connection stays queued; wait for threads to
			 * finish instead of spinning on a readable socket. */
			struct timespec pause = { .tv_nsec = 50 * 1000 * 1000 };
			fprintf(stderr, "https-upstream: out of descriptors, waiting\n");
			nanosleep(&pause, NULL);
			return true;
		}
		fprintf(stderr, "https-upstream: handoff_accept: %s\n", strerror(errno));
		return false;
	}
	return true;
}

int main(int argc, char **argv)
{
	static const struct option options[] = {
		{ "name", required_argument, NULL, 'n' },
		{ "cert", required_argument, NULL, 'c' },
		{ "key", required_argument, NULL, 'k' },
		{ "runtime-dir", required_argument, NULL, 'r' },
		{ "label", required_argument, NULL, 'l' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	const char *names[MAX_NAMES];
	size_t n_names = 0;
	const char *cert = NULL, *key = NULL, *runtime_dir = NULL;
	struct sigaction sa = { .sa_handler = on_stop_signal };
	sigset_t stop_signals, unblocked;
	int opt, fd;
	bool ok = true;

	while ((opt = getopt_long(argc, argv, "", options, NULL)) != -1) {
		switch (opt) {
		case 'n':
			if (n_names == MAX_NAMES)
				die("at most %d names", MAX_NAMES);
			names[n_names++] = optarg;
			break;
		case 'c': cert = optarg; break;
		case 'k': key = optarg; break;
		case 'r': runtime_dir = optarg; break;
		case 'l': label = optarg; break;
		default: usage();
		}
	}
	if (optind != argc || n_names == 0 || !cert != !key)
		usage();
	if (!label)
		label = names[0];

	/* No OpenSSL exit handler: detached threads may still be using it
	 * when a signal makes us exit. */
	OPENSSL_init_ssl(OPENSSL_INIT_NO_ATEXIT, NULL);
	if (cert)
		tls_ctx = make_tls_context(cert, key);
	make_pattern();

	/* Peers vanish mid-write; that is an I/O error, not a reason to die. */
	signal(SIGPIPE, SIG_IGN);
	/* The stop signals are only delivered inside ppoll, so a signal that
	 * arrives between checks cannot be missed; threads inherit the mask,
	 * leaving the main thread to take them. */
	sigemptyset(&stop_signals);
	sigaddset(&stop_signals, SIGTERM);
	sigaddset(&stop_signals, SIGINT);
	pthread_sigmask(SIG_BLOCK, &stop_signals, &unblocked);
	sigdelset(&unblocked, SIGTERM);
	sigdelset(&unblocked, SIGINT);
	sigemptyset(&sa.sa_mask);
	sigaction(SIGTERM, &sa, NULL);
	sigaction(SIGINT, &sa, NULL);

	fd = handoff_listen(runtime_dir, names, n_names, HANDOFF_NONBLOCK | HANDOFF_CLOEXEC);
	if (fd < 0) {
		int err = errno;
		if (err == ENOENT)
			die("handoff_listen: %s (is the daemon running? is HANDOFF_RUNTIME_DIR "
			    "the same for both?)", strerror(err));
		die("handoff_listen: %s", strerror(err));
	}
	printf("ready\n");
	fflush(stdout);

	while (ok && !stop_requested) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int n = ppoll(&pfd, 1, NULL, &unblocked);

		if (n < 0) {
			if (errno == EINTR)
				continue;
			fprintf(stderr, "https-upstream: poll: %s\n", strerror(errno));
			ok = false;
		} else if (pfd.revents & (POLLERR | POLLNVAL)) {
			fprintf(stderr, "https-upstream: receiving socket failed\n");
			ok = false;
		} else if (pfd.revents & POLLIN) {
			ok = accept_waiting(fd);
		}
	}
	handoff_close(fd);
	fflush(stderr);
	return ok ? 0 : 1;
}
