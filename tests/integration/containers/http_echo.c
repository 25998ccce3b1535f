/* http_echo.c - a plain-HTTP/1.1 test server, built with musl and with glibc, that says who connected: the container tests run it under handoff run. */
/*
 * Usage: http-echo PORT LABEL
 *
 * Listens on TCP port PORT (all IPv4 addresses) as any server would and
 * answers each connection's first request, then closes it:
 *
 *   GET /          200 text/plain: "label=LABEL", "pid=N", "client=IP:PORT"
 *                  (getpeername of the accepted socket), "local=IP:PORT"
 *                  (getsockname), one per line
 *   GET /bytes/N   200, N bytes (N <= 2^34) where byte i is (i * 7 + 13) & 0xff
 *   anything else  404
 *
 * One line per connection goes to stderr ("LABEL client=IP:PORT"). Each
 * connection is served in a child process, so a long download does not
 * hold up the next client. SIGTERM ends it with status 0.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#define HEAD_MAX	8192
#define MAX_BYTES	(UINT64_C(1) << 34)
#define CHUNK		65536		/* a multiple of the pattern's 256 */

static volatile sig_atomic_t stopping;

static void
on_term(int signo)
{
	(void)signo;
	stopping = 1;
}

static void
address_text(const struct sockaddr_in *sin, char *out, size_t size)
{
	char ip[INET_ADDRSTRLEN];

	inet_ntop(AF_INET, &sin->sin_addr, ip, sizeof(ip));
	snprintf(out, size, "%s:%u", ip, ntohs(sin->sin_port));
}

static int
write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;

	while (len > 0) {
		ssize_t n = write(fd, p, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= (size_t)n;
	}
	return 0;
}

static void
serve(int fd, const char *label)
{
	char head[HEAD_MAX + 1], text[512], reply[1024], client[64], local[64], target[256];
	struct sockaddr_in peer = { 0 }, self = { 0 };
	socklen_t peer_len = sizeof(peer), self_len = sizeof(self);
	size_t used = 0;
	uint64_t count;
	int n;

	getpeername(fd, (struct sockaddr *)&peer, &peer_len);
	getsockname(fd, (struct sockaddr *)&self, &self_len);
	address_text(&peer, client, sizeof(client));
	address_text(&self, local, sizeof(local));
	fprintf(stderr, "%s client=%s\n", label, client);
	while (used < HEAD_MAX) {
		ssize_t got = read(fd, head + used, HEAD_MAX - used);

		if (got <= 0)
			return;
		used += (size_t)got;
		head[used] = '\0';
		if (strstr(head, "\r\n\r\n") != NULL)
			break;
	}
	if (sscanf(head, "GET %255s HTTP/1.", target) != 1) {
		return;
	} else if (strcmp(target, "/") == 0) {
		int len = snprintf(text, sizeof(text), "label=%s\npid=%ld\nclient=%s\nlocal=%s\n",
				   label, (long)getpid(), client, local);

		n = snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
			     "Content-Length: %d\r\nConnection: close\r\n\r\n%s", len, text);
		write_all(fd, reply, (size_t)n);
	} else if (sscanf(target, "/bytes/%" SCNu64, &count) == 1 && count <= MAX_BYTES) {
		static unsigned char chunk[CHUNK];

		for (size_t i = 0; i < sizeof(chunk); i++)
			chunk[i] = (unsigned char)((i * 7 + 13) & 0xff);
		n = snprintf(reply, sizeof(reply), "HTTP/1.1 200 OK\r\nContent-Type: "
			     "application/octet-stream\r\nContent-Length: %" PRIu64 "\r\n"
			     "Connection: close\r\n\r\n", count);
		if (write_all(fd, reply, (size_t)n) < 0)
			return;
		for (uint64_t sent = 0; sent < count;) {
			size_t len = count - sent < CHUNK ? (size_t)(count - sent) : CHUNK;

			if (write_all(fd, chunk, len) < 0)
				return;
			sent += len;
		}
	} else {
		static const char missing[] = "HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n"
					      "Connection: close\r\n\r\n";
		write_all(fd, missing, sizeof(missing) - 1);
	}
}

int
main(int argc, char **argv)
{
	struct sockaddr_in addr = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_ANY) };
	struct sigaction term = { .sa_handler = on_term };
	int listener, one = 1;
	long port;

	if (argc != 3 || (port = strtol(argv[1], NULL, 10)) <= 0 || port > 65535) {
		fprintf(stderr, "usage: http-echo PORT LABEL\n");
		return 2;
	}
	signal(SIGCHLD, SIG_IGN);	/* children are reaped by the kernel */
	sigaction(SIGTERM, &term, NULL);
	addr.sin_port = htons((uint16_t)port);
	listener = socket(AF_INET, SOCK_STREAM, 0);
	if (listener < 0 || setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one)) < 0 ||
	    bind(listener, (struct sockaddr *)&addr, sizeof(addr)) < 0 || listen(listener, 64) < 0) {
		perror("http-echo: listen");
		return 1;
	}
	fprintf(stderr, "%s listening on port %ld\n", argv[2], port);
	while (!stopping) {
		int fd = accept(listener, NULL, NULL);

		if (fd < 0) {
			if (errno == EINTR)
				continue;
			perror("http-echo: accept");
			return 1;
		}
		pid_t child = fork();

		if (child == 0) {
			close(listener);
			serve(fd, argv[2]);
			close(fd);
			_exit(0);
		}
		close(fd);
	}
	return 0;
}
