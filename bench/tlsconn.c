/* tlsconn.c - benchmark client: new TLS connections per second, each a full handshake or a resumed one, one small request each. */
/*
 * Usage: tlsconn full|resume ADDRESS PORT SNI PATH THREADS MILLISECONDS
 *
 * Every thread connects to ADDRESS:PORT over and over, sends SNI, makes one
 * "GET PATH" with "Connection: close", reads the whole response and closes.
 * "full" never offers a session, so every handshake is a full one; "resume"
 * offers the session (TLS 1.3 ticket) the thread's previous connection
 * received, so every handshake after the first of each thread is a
 * resumption. wrk cannot be told which it does: with "Connection: close" it
 * resumes (SSL_clear keeps the session), and openssl s_time sends no SNI.
 *
 * Prints one line of "key value" pairs: connections (complete with a 200),
 * errors, reused (handshakes that resumed), seconds, p50_ms and p99_ms (time
 * from connect() to the end of the response).
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/* Latency histogram: 10 µs buckets up to 2 s; slower ones land in the last. */
#define BUCKET_US	10
#define BUCKETS		200000
#define MAX_THREADS	256

struct worker {
	pthread_t thread;
	unsigned long connections, errors, reused;
	unsigned long *histogram;
};

static SSL_CTX *ctx;
static struct sockaddr_in target;
static char *sni;	/* not const: SSL_set_tlsext_host_name() casts it to void * */
static char request[1024];
static bool resume;
static double deadline;

static double
now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One connection: true when a 200 response came back complete. */
static bool
one_connection(SSL_SESSION **session, bool *was_reused)
{
	char buf[16384], head[16];
	size_t head_len = 0;
	bool ok = false;
	SSL *ssl = NULL;
	int fd, n, one = 1;

	fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (fd < 0)
		return false;
	setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
	if (connect(fd, (const struct sockaddr *)&target, sizeof(target)) != 0)
		goto out;
	ssl = SSL_new(ctx);
	if (ssl == NULL || !SSL_set_fd(ssl, fd) || !SSL_set_tlsext_host_name(ssl, sni))
		goto out;
	if (resume && *session != NULL)
		SSL_set_session(ssl, *session);
	if (SSL_connect(ssl) != 1)
		goto out;
	*was_reused = SSL_session_reused(ssl);
	if (SSL_write(ssl, request, (int)strlen(request)) <= 0)
		goto out;
	while ((n = SSL_read(ssl, buf, sizeof(buf))) > 0) {
		if (head_len < sizeof(head)) {
			size_t take = (size_t)n < sizeof(head) - head_len ? (size_t)n : sizeof(head) - head_len;

			memcpy(head + head_len, buf, take);
			head_len += take;
		}
	}
	ok = head_len >= 12 && memcmp(head, "HTTP/1.1 200", 12) == 0;
	if (ok && resume) {
		/* The newest ticket, received while reading the response. */
		SSL_SESSION *latest = SSL_get1_session(ssl);

		if (latest != NULL) {
			SSL_SESSION_free(*session);
			*session = latest;
		}
	}
out:
	if (ssl != NULL) {
		if (ok)
			SSL_shutdown(ssl);
		SSL_free(ssl);
	}
	ERR_clear_error();
	close(fd);
	return ok;
}

static void *
work(void *arg)
{
	struct worker *w = arg;
	SSL_SESSION *session = NULL;

	while (now() < deadline) {
		double start = now();
		bool was_reused = false;

		if (one_connection(&session, &was_reused)) {
			unsigned long bucket = (unsigned long)((now() - start) * 1e6 / BUCKET_US);

			w->histogram[bucket < BUCKETS ? bucket : BUCKETS - 1]++;
			w->connections++;
			w->reused += was_reused;
		} else {
			w->errors++;
			SSL_SESSION_free(session);
			session = NULL;
		}
	}
	SSL_SESSION_free(session);
	return NULL;
}

static double
percentile_ms(const unsigned long *histogram, unsigned long total, double fraction)
{
	unsigned long rank = (unsigned long)(fraction * (double)total + 0.999999), seen = 0;

	if (rank == 0)
		rank = 1;
	for (unsigned long i = 0; i < BUCKETS; i++) {
		seen += histogram[i];
		if (seen >= rank)
			return (double)((i + 1) * BUCKET_US) / 1000.0;
	}
	return 0;
}

int
main(int argc, char **argv)
{
	static struct worker workers[MAX_THREADS];
	unsigned long connections = 0, errors = 0, reused = 0, *histogram;
	long threads, milliseconds;
	double start, elapsed;

	if (argc != 8 || (strcmp(argv[1], "full") != 0 && strcmp(argv[1], "resume") != 0)) {
		fprintf(stderr, "usage: tlsconn full|resume ADDRESS PORT SNI PATH THREADS MILLISECONDS\n");
		return 2;
	}
	resume = strcmp(argv[1], "resume") == 0;
	memset(&target, 0, sizeof(target));
	target.sin_family = AF_INET;
	target.sin_port = htons((uint16_t)atoi(argv[3]));
	if (inet_pton(AF_INET, argv[2], &target.sin_addr) != 1) {
		fprintf(stderr, "tlsconn: bad IPv4 address %s\n", argv[2]);
		return 2;
	}
	sni = argv[4];
	snprintf(request, sizeof(request), "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n",
		 argv[5], argv[4]);
	threads = atol(argv[6]);
	milliseconds = atol(argv[7]);
	if (threads < 1 || threads > MAX_THREADS || milliseconds < 1) {
		fprintf(stderr, "tlsconn: THREADS must be 1..%d and MILLISECONDS positive\n", MAX_THREADS);
		return 2;
	}

	ctx = SSL_CTX_new(TLS_client_method());
	if (ctx == NULL)
		return 1;
	SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, NULL);
	/* The application keeps the sessions itself: no internal cache. */
	SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);

	histogram = calloc(BUCKETS, sizeof(*histogram));
	if (histogram == NULL)
		return 1;
	start = now();
	deadline = start + (double)milliseconds / 1000.0;
	for (long i = 0; i < threads; i++) {
		workers[i].histogram = calloc(BUCKETS, sizeof(*histogram));
		if (workers[i].histogram == NULL ||
		    pthread_create(&workers[i].thread, NULL, work, &workers[i]) != 0) {
			fprintf(stderr, "tlsconn: cannot start thread %ld\n", i);
			return 1;
		}
	}
	for (long i = 0; i < threads; i++) {
		pthread_join(workers[i].thread, NULL);
		connections += workers[i].connections;
		errors += workers[i].errors;
		reused += workers[i].reused;
		for (unsigned long b = 0; b < BUCKETS; b++)
			histogram[b] += workers[i].histogram[b];
		free(workers[i].histogram);
	}
	elapsed = now() - start;
	printf("connections %lu errors %lu reused %lu seconds %.3f rps %.1f p50_ms %.3f p99_ms %.3f\n",
	       connections, errors, reused, elapsed, (double)connections / elapsed,
	       percentile_ms(histogram, connections, 0.50), percentile_ms(histogram, connections, 0.99));
	free(histogram);
	SSL_CTX_free(ctx);
	return connections > 0 ? 0 : 1;
}
