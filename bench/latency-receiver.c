/* latency-receiver.c - benchmark upstream on libhandoff: how long after the daemon's accept each connection arrives here. */
/*
 * Usage: latency-receiver RUNTIME-DIR NAME OUTPUT-FILE
 *
 * Registers for NAME with the daemon that uses RUNTIME-DIR (handoff_listen)
 * and takes every connection handed to it. For each one it records, before
 * anything else, the wall clock now minus the daemon's accept time from the
 * handoff header (info.accepted_us): the handoff latency as the receiving
 * server sees it, daemon and wakeup of this process included. Then it reads
 * the HTTP request (already in the socket: the daemon peeked at it), answers
 * "200 ok" with "Connection: close" and closes.
 *
 * The delays go into 1 µs buckets up to 1 s (slower ones into the last, and
 * max_us tells). SIGUSR1 appends one line to OUTPUT-FILE and starts a new
 * measurement; SIGTERM or SIGINT appends the line, withdraws the name and
 * exits. The line: count N p50_us A p99_us B p999_us C max_us D
 * in_batch_p99_us E refused F; E is the p99 of the time from this process's
 * wakeup to taking the connection (spent on those taken before it in the
 * same wakeup), F the connections closed unanswered for want of a slot.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "handoff.h"

#define HISTOGRAM_US		1000000u
#define MAX_CONNECTIONS		4096u		/* waiting for their request or to write */
#define ACCEPTS_PER_WAKEUP	64
#define REQUEST_MAX		4096u
#define CONNECTION_TIMEOUT_MS	10000u

static const char answer[] = "HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Type: text/plain\r\n"
			     "Connection: close\r\n\r\nok\n";

struct connection {
	int fd;				/* -1: slot free */
	bool in_epoll;
	size_t request_len;
	size_t written;
	uint64_t deadline_ms;
	char request[REQUEST_MAX];
};

static struct connection connections[MAX_CONNECTIONS];
static uint32_t histogram[HISTOGRAM_US];
static uint64_t count, max_us, refused;
/* From this process's wakeup (epoll_wait returned) to taking a connection:
 * the part of the delay spent on connections taken before it. */
static uint32_t in_batch[HISTOGRAM_US];
static uint64_t woke_us;
static int epfd;
static const char *output_path;

static uint64_t
clock_us(clockid_t clock)
{
	struct timespec ts;
	clock_gettime(clock, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static void
record(uint64_t accepted_us)
{
	uint64_t now = clock_us(CLOCK_REALTIME);
	uint64_t since_wakeup = clock_us(CLOCK_MONOTONIC) - woke_us;
	in_batch[since_wakeup < HISTOGRAM_US ? since_wakeup : HISTOGRAM_US - 1]++;
	/* Same machine, same clock; a step of the clock could still reverse it. */
	uint64_t us = now > accepted_us ? now - accepted_us : 0;
	histogram[us < HISTOGRAM_US ? us : HISTOGRAM_US - 1]++;
	if (us > max_us)
		max_us = us;
	count++;
}

static uint64_t
quantile_us(const uint32_t *counts, double q)
{
	uint64_t rank = (uint64_t)(q * (double)count + 0.999999), seen = 0;
	if (rank == 0)
		rank = 1;
	for (uint32_t us = 0; us < HISTOGRAM_US; us++) {
		seen += counts[us];
		if (seen >= rank)
			return us;
	}
	return HISTOGRAM_US;
}

/* Append the measurement's line to the output file and start a new one. */
static void
dump_and_reset(void)
{
	char line[256];
	int len = snprintf(line, sizeof(line),
			   "count %llu p50_us %llu p99_us %llu p999_us %llu max_us %llu in_batch_p99_us %llu refused %llu\n",
			   (unsigned long long)count, (unsigned long long)(count ? quantile_us(histogram, 0.50) : 0),
			   (unsigned long long)(count ? quantile_us(histogram, 0.99) : 0),
			   (unsigned long long)(count ? quantile_us(histogram, 0.999) : 0), (unsigned long long)max_us,
			   (unsigned long long)(count ? quantile_us(in_batch, 0.99) : 0), (unsigned long long)refused);
	int fd = open(output_path, O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
	/* One write of one line: a reader polling the file sees it whole. */
	if (fd < 0 || write(fd, line, (size_t)len) != len)
		fprintf(stderr, "latency-receiver: cannot write %s: %s\n", output_path, strerror(errno));
	if (fd >= 0)
		close(fd);
	memset(histogram, 0, sizeof(histogram));
	memset(in_batch, 0, sizeof(in_batch));
	count = max_us = refused = 0;
}

static void
release(struct connection *c)
{
	if (c->in_epoll)
		epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
	close(c->fd);
	c->fd = -1;
}

/* Wait for the connection to become readable or writable. */
static bool
wait_for(struct connection *c, uint32_t events)
{
	struct epoll_event ev = { .events = events, .data.ptr = c };
	if (epoll_ctl(epfd, c->in_epoll ? EPOLL_CTL_MOD : EPOLL_CTL_ADD, c->fd, &ev) != 0)
		return false;
	c->in_epoll = true;
	return true;
}

/* Read what the request has, answer once its head is complete. Returns
 * false when the connection is done (answered or failed) and released. */
static bool
progress(struct connection *c)
{
	while (c->written == 0 && memmem(c->request, c->request_len, "\r\n\r\n", 4) == NULL) {
		if (c->request_len == REQUEST_MAX) {
			release(c);	/* not a request this server answers */
			return false;
		}
		ssize_t n = read(c->fd, c->request + c->request_len, REQUEST_MAX - c->request_len);
		if (n > 0) {
			c->request_len += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && wait_for(c, EPOLLIN | EPOLLRDHUP))
			return true;
		release(c);		/* the client left, or an error */
		return false;
	}
	while (c->written < sizeof(answer) - 1) {
		ssize_t n = write(c->fd, answer + c->written, sizeof(answer) - 1 - c->written);
		if (n > 0) {
			c->written += (size_t)n;
			continue;
		}
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && errno == EAGAIN && wait_for(c, EPOLLOUT))
			return true;
		break;
	}
	release(c);
	return false;
}

static struct connection *
free_slot(void)
{
	for (uint32_t i = 0; i < MAX_CONNECTIONS; i++)
		if (connections[i].fd < 0)
			return &connections[i];
	return NULL;
}

static void
take_connections(int listen_fd)
{
	for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
		struct handoff_info info;
		int fd = handoff_accept(listen_fd, NULL, NULL, HANDOFF_NONBLOCK | HANDOFF_CLOEXEC, &info);
		if (fd < 0) {
			if (errno != EAGAIN && errno != EINTR)
				fprintf(stderr, "latency-receiver: handoff_accept: %s\n", strerror(errno));
			return;
		}
		record(info.accepted_us);
		struct connection *c = free_slot();
		if (c == NULL) {
			refused++;
			close(fd);
			continue;
		}
		c->fd = fd;
		c->in_epoll = false;
		c->request_len = c->written = 0;
		c->deadline_ms = clock_us(CLOCK_MONOTONIC) / 1000u + CONNECTION_TIMEOUT_MS;
		progress(c);
	}
}

/* Connections that neither sent a request nor took the answer in time. */
static void
expire(void)
{
	uint64_t now_ms = clock_us(CLOCK_MONOTONIC) / 1000u;
	for (uint32_t i = 0; i < MAX_CONNECTIONS; i++)
		if (connections[i].fd >= 0 && now_ms > connections[i].deadline_ms)
			release(&connections[i]);
}

int
main(int argc, char **argv)
{
	if (argc != 4) {
		fprintf(stderr, "usage: latency-receiver RUNTIME-DIR NAME OUTPUT-FILE\n");
		return 2;
	}
	output_path = argv[3];
	for (uint32_t i = 0; i < MAX_CONNECTIONS; i++)
		connections[i].fd = -1;

	sigset_t signals;
	sigemptyset(&signals);
	sigaddset(&signals, SIGTERM);
	sigaddset(&signals, SIGINT);
	sigaddset(&signals, SIGUSR1);
	sigprocmask(SIG_BLOCK, &signals, NULL);
	int sigfd = signalfd(-1, &signals, SFD_NONBLOCK | SFD_CLOEXEC);

	const char *names[] = { argv[2] };
	int listen_fd = handoff_listen(argv[1], names, 1, HANDOFF_NONBLOCK | HANDOFF_CLOEXEC);
	if (listen_fd < 0) {
		fprintf(stderr, "latency-receiver: handoff_listen %s in %s: %s\n", argv[2], argv[1], strerror(errno));
		return 1;
	}
	epfd = epoll_create1(EPOLL_CLOEXEC);
	struct epoll_event ev_listen = { .events = EPOLLIN, .data.ptr = NULL };
	struct epoll_event ev_signal = { .events = EPOLLIN, .data.ptr = &sigfd };
	if (sigfd < 0 || epfd < 0 || epoll_ctl(epfd, EPOLL_CTL_ADD, listen_fd, &ev_listen) != 0 ||
	    epoll_ctl(epfd, EPOLL_CTL_ADD, sigfd, &ev_signal) != 0) {
		perror("latency-receiver: setup");
		handoff_close(listen_fd);
		return 1;
	}

	bool running = true;
	uint64_t last_expire_ms = clock_us(CLOCK_MONOTONIC) / 1000u;
	while (running) {
		struct epoll_event events[64];
		int n = epoll_wait(epfd, events, 64, 1000);
		woke_us = clock_us(CLOCK_MONOTONIC);
		for (int i = 0; i < n; i++) {
			void *who = events[i].data.ptr;
			if (who == NULL) {
				take_connections(listen_fd);
			} else if (who == &sigfd) {
				struct signalfd_siginfo si;
				while (read(sigfd, &si, sizeof(si)) == (ssize_t)sizeof(si)) {
					dump_and_reset();
					if (si.ssi_signo != SIGUSR1)
						running = false;
				}
			} else {
				progress(who);
			}
		}
		uint64_t now_ms = clock_us(CLOCK_MONOTONIC) / 1000u;
		if (now_ms - last_expire_ms >= 1000u) {
			expire();
			last_expire_ms = now_ms;
		}
	}
	for (uint32_t i = 0; i < MAX_CONNECTIONS; i++)
		if (connections[i].fd >= 0)
			release(&connections[i]);
	close(epfd);
	close(sigfd);
	handoff_close(listen_fd);
	return 0;
}
