/* latency-client.c - benchmark client: new plain-HTTP connections at a fixed offered rate (open loop), with their latency. */
/*
 * Usage: latency-client ADDRESS PORT HOST RATE SECONDS MAX_IN_FLIGHT
 *
 * Opens RATE connections per second for SECONDS seconds to ADDRESS:PORT
 * (IPv4). Connection i is due at start + i / RATE and is started then,
 * whether or not earlier ones have finished: an open loop, so a slow server
 * shows as latency and as connections in flight, not as a lower rate the
 * client quietly adapts to. Each connection: a non-blocking connect(), once
 * connected one "GET / HTTP/1.1" with "Host: HOST" and "Connection: close",
 * the answer read to EOF (it must start with "HTTP/1.1 200"), close().
 *
 * When the client itself wakes up late it starts every connection that is
 * due at once and counts how late each was: "late" connections started 1 ms
 * or more after their time, and max_late_us says by how much at worst, so a
 * client that cannot keep up is visible rather than mistaken for the server.
 * At most MAX_IN_FLIGHT connections are open at once; a connection due when
 * that many are open is not started and counts as an error ("overflow"), as
 * does one that fails or has no complete answer within 10 s.
 *
 * Prints one line of "key value" pairs: offered (connections due), completed
 * (with a 200), errors (all kinds), overflow, connect_failed, send_failed,
 * bad_answer (not a 200, or reset), timed_out, late, max_late_us, seconds (from
 * the first due time to the last answer), rate (completed / seconds), p50_us,
 * p99_us and max_us (connect() to the end of the answer).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Latency histogram: 1 µs buckets up to 1 s; slower ones count in the last. */
#define HISTOGRAM_US		1000000u
#define LATE_US			1000u
#define CONNECTION_TIMEOUT_US	10000000u
#define MAX_RATE		1000000u
#define MAX_SECONDS		3600u
#define MAX_IN_FLIGHT_LIMIT	60000u

enum slot_state { SLOT_FREE, SLOT_CONNECTING, SLOT_READING };

struct slot {
	int fd;
	enum slot_state state;
	uint64_t started_us;		/* monotonic, at connect() */
	char head[16];			/* the answer's first bytes, to check the status */
	size_t head_len;
	uint32_t next_free;
};

static struct sockaddr_in target;
static char request[512];
static size_t request_len;
static struct slot *slots;
static uint32_t n_slots, free_head, in_flight;
static uint32_t *histogram;
static uint64_t completed, errors, overflow, late, max_late_us, max_us, last_done_us;
/* Kinds of errors besides overflow: connect() failed, the request could not
 * be sent, the answer was not a 200 or broke off, no answer within 10 s. */
static uint64_t connect_failed, send_failed, bad_answer, timed_out;
static int epfd;

static uint64_t
now_us(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static bool
parse_count(const char *text, unsigned long max, unsigned long *out)
{
	char *end;
	errno = 0;
	unsigned long v = strtoul(text, &end, 10);
	if (errno != 0 || end == text || *end != '\0' || v == 0 || v > max)
		return false;
	*out = v;
	return true;
}

static void
finish(struct slot *s, bool ok)
{
	uint64_t t = now_us();
	/* close() removes the descriptor from the epoll set; say so first anyway. */
	epoll_ctl(epfd, EPOLL_CTL_DEL, s->fd, NULL);
	close(s->fd);
	if (ok) {
		uint64_t us = t - s->started_us;
		histogram[us < HISTOGRAM_US ? us : HISTOGRAM_US - 1]++;
		if (us > max_us)
			max_us = us;
		completed++;
	} else {
		errors++;
	}
	last_done_us = t;
	s->state = SLOT_FREE;
	s->fd = -1;
	s->next_free = free_head;
	free_head = (uint32_t)(s - slots);
	in_flight--;
}

static void
start_one(void)
{
	if (free_head == UINT32_MAX) {
		overflow++;
		errors++;
		return;
	}
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		errors++;
		return;
	}
	int one = 1;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	uint32_t index = free_head;
	struct slot *s = &slots[index];
	free_head = s->next_free;
	in_flight++;
	s->fd = fd;
	s->state = SLOT_CONNECTING;
	s->head_len = 0;
	s->started_us = now_us();
	struct epoll_event ev = { .events = EPOLLOUT, .data.u32 = index };
	if (epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev) != 0) {
		finish(s, false);
		return;
	}
	if (connect(fd, (const struct sockaddr *)&target, sizeof(target)) != 0 && errno != EINPROGRESS) {
		connect_failed++;
		finish(s, false);
	}
}

/* Connected (or failed to): send the request, then wait for the answer. */
static void
on_writable(struct slot *s, uint32_t index)
{
	int error = 0;
	socklen_t len = sizeof(error);
	if (getsockopt(s->fd, SOL_SOCKET, SO_ERROR, &error, &len) != 0 || error != 0) {
		connect_failed++;
		finish(s, false);
		return;
	}
	/* A few hundred bytes into an empty socket buffer: all or nothing. */
	ssize_t n = send(s->fd, request, request_len, MSG_NOSIGNAL);
	if (n != (ssize_t)request_len) {
		send_failed++;
		finish(s, false);
		return;
	}
	struct epoll_event ev = { .events = EPOLLIN | EPOLLRDHUP, .data.u32 = index };
	if (epoll_ctl(epfd, EPOLL_CTL_MOD, s->fd, &ev) != 0) {
		finish(s, false);
		return;
	}
	s->state = SLOT_READING;
}

static void
on_readable(struct slot *s)
{
	char buf[4096];
	for (int reads = 0; reads < 16; reads++) {
		ssize_t n = recv(s->fd, buf, sizeof(buf), 0);
		if (n > 0) {
			size_t take = sizeof(s->head) - s->head_len;
			if (take > (size_t)n)
				take = (size_t)n;
			memcpy(s->head + s->head_len, buf, take);
			s->head_len += take;
			continue;
		}
		if (n == 0) {
			static const char ok[] = "HTTP/1.1 200";
			bool good = s->head_len >= sizeof(ok) - 1 && memcmp(s->head, ok, sizeof(ok) - 1) == 0;
			bad_answer += !good;
			finish(s, good);
			return;
		}
		if (errno == EINTR)
			continue;
		if (errno != EAGAIN) {
			bad_answer++;
			finish(s, false);
		}
		return;
	}
	/* More to read: epoll (level-triggered) reports it again. */
}

/* Connections with no complete answer within CONNECTION_TIMEOUT_US fail. */
static void
expire(void)
{
	uint64_t now = now_us();	/* not older than any connection's start */
	for (uint32_t i = 0; i < n_slots; i++)
		if (slots[i].state != SLOT_FREE && now - slots[i].started_us > CONNECTION_TIMEOUT_US) {
			timed_out++;
			finish(&slots[i], false);
		}
}

static void
dispatch(int timeout_us)
{
	struct epoll_event events[256];
	struct timespec timeout = { .tv_sec = timeout_us / 1000000, .tv_nsec = (long)(timeout_us % 1000000) * 1000 };
	int n = epoll_pwait2(epfd, events, 256, &timeout, NULL);
	for (int i = 0; i < n; i++) {
		uint32_t index = events[i].data.u32;
		struct slot *s = &slots[index];
		if (s->state == SLOT_CONNECTING)
			on_writable(s, index);
		else if (s->state == SLOT_READING)
			on_readable(s);
	}
}

/* The q quantile (0 < q <= 1) of the completed connections' latency: the
 * smallest latency that at least q of them did not exceed. */
static unsigned long
quantile_us(double q)
{
	uint64_t rank = (uint64_t)(q * (double)completed + 0.999999), seen = 0;
	if (rank == 0)
		rank = 1;
	for (uint32_t us = 0; us < HISTOGRAM_US; us++) {
		seen += histogram[us];
		if (seen >= rank)
			return us;
	}
	return HISTOGRAM_US;
}

int
main(int argc, char **argv)
{
	unsigned long port, rate, seconds, max_in_flight;
	if (argc != 7 || inet_pton(AF_INET, argv[1], &target.sin_addr) != 1 || !parse_count(argv[2], 65535, &port) ||
	    !parse_count(argv[4], MAX_RATE, &rate) || !parse_count(argv[5], MAX_SECONDS, &seconds) ||
	    !parse_count(argv[6], MAX_IN_FLIGHT_LIMIT, &max_in_flight) || strlen(argv[3]) > 253) {
		fprintf(stderr, "usage: latency-client IPV4-ADDRESS PORT HOST RATE SECONDS MAX_IN_FLIGHT\n"
				"  RATE 1-%u connections/s, SECONDS 1-%u, MAX_IN_FLIGHT 1-%u\n",
			MAX_RATE, MAX_SECONDS, MAX_IN_FLIGHT_LIMIT);
		return 2;
	}
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)port);
	request_len = (size_t)snprintf(request, sizeof(request),
				       "GET / HTTP/1.1\r\nHost: %s\r\nUser-Agent: latency-client\r\nConnection: close\r\n\r\n",
				       argv[3]);

	/* Room for every connection in flight, and a few more descriptors. */
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < max_in_flight + 64) {
		rl.rlim_cur = rl.rlim_max < max_in_flight + 64 ? rl.rlim_max : max_in_flight + 64;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* The default 50 µs timer slack is most of the interval at 15,000/s. */
	prctl(PR_SET_TIMERSLACK, 1UL, 0, 0, 0);

	n_slots = (uint32_t)max_in_flight;
	slots = calloc(n_slots, sizeof(*slots));
	histogram = calloc(HISTOGRAM_US, sizeof(*histogram));
	epfd = epoll_create1(EPOLL_CLOEXEC);
	if (slots == NULL || histogram == NULL || epfd < 0) {
		perror("latency-client: setup");
		return 1;
	}
	for (uint32_t i = 0; i < n_slots; i++) {
		slots[i].fd = -1;
		slots[i].next_free = i + 1 < n_slots ? i + 1 : UINT32_MAX;
	}
	free_head = 0;

	uint64_t total = (uint64_t)rate * seconds, started = 0;
	uint64_t begin = now_us(), last_expire = begin;
	last_done_us = begin;
	while (started < total || in_flight > 0) {
		uint64_t now = now_us();
		while (started < total) {
			uint64_t due = begin + started * 1000000u / rate;
			if (due > now)
				break;
			if (now - due >= LATE_US)
				late++;
			if (now - due > max_late_us)
				max_late_us = now - due;
			start_one();
			started++;
		}
		if (now - last_expire >= 100000u) {
			expire();
			last_expire = now;
		}
		int timeout_us = 100000;
		if (started < total) {
			uint64_t due = begin + started * 1000000u / rate;
			timeout_us = due > now ? (int)(due - now < 100000u ? due - now : 100000u) : 0;
		}
		dispatch(timeout_us);
	}
	double elapsed = (double)(last_done_us - begin) / 1e6;
	printf("offered %llu completed %llu errors %llu overflow %llu connect_failed %llu send_failed %llu "
	       "bad_answer %llu timed_out %llu late %llu max_late_us %llu seconds %.3f "
	       "rate %.1f p50_us %lu p99_us %lu max_us %llu\n",
	       (unsigned long long)total, (unsigned long long)completed, (unsigned long long)errors,
	       (unsigned long long)overflow, (unsigned long long)connect_failed, (unsigned long long)send_failed,
	       (unsigned long long)bad_answer, (unsigned long long)timed_out, (unsigned long long)late, (unsigned long long)max_late_us, elapsed,
	       elapsed > 0 ? (double)completed / elapsed : 0.0, completed ? quantile_us(0.50) : 0,
	       completed ? quantile_us(0.99) : 0, (unsigned long long)max_us);
	close(epfd);
	free(histogram);
	free(slots);
	return 0;
}
