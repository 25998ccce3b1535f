/* admin.c - the admin endpoint: its own thread (libmicrohttpd) serving snapshots the event loop publishes on request. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <pthread.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include "admin.h"
#include "admin_internal.h"
#include "config.h"
#include "log.h"
#include "loop.h"
#include "server.h"

/*
 * Threading. The event loop never waits for the admin side: libmicrohttpd
 * runs its own thread that accepts, reads and writes admin connections. That
 * thread never touches the daemon's state either. When it needs state it
 * asks the loop through an eventfd; the loop, between two batches of events,
 * copies what it has into a JSON object (bounded: ADMIN_MAX_*) and publishes
 * it under a mutex held only for a pointer swap. A snapshot younger than
 * SNAPSHOT_FRESH_MS is reused, so the loop builds at most a few per second
 * however often the endpoint is asked. Published snapshots are never
 * modified; jansson's reference counts are atomic, so the admin thread can
 * keep one while the loop replaces it.
 */
#define SNAPSHOT_FRESH_MS	250	/* reuse a snapshot this young */
#define SNAPSHOT_WAIT_MS	1000	/* longest wait for the loop's answer */
#define ADMIN_MAX_CONNECTIONS	32	/* admin clients at once */
#define ADMIN_MAX_PER_IP	8
#define ADMIN_TIMEOUT_S		10	/* idle admin connection */
#define ADMIN_MEMORY_LIMIT	(32 * 1024)	/* per connection: bounds the request head */
#define ADMIN_BACKLOG		16

static struct MHD_Daemon *mhd;
static struct config_admin admin_cfg;	/* a copy: the admin thread never reads server.cfg */
static int listen_fd = -1;		/* until libmicrohttpd owns it (and closes it on stop) */
static int served_fd = -1;		/* the socket libmicrohttpd accepts on, for an upgrade */
static int offered_fd = -1;		/* the old daemon's socket (upgrade), until adopted */
static bool adopted_unix;		/* the offered Unix socket was adopted: its file is shared */
static bool unix_bound;			/* our socket file exists: remove it on stop */
static struct loop_io wake_io = { .fd = -1 };
static char daemon_version[32];
static uint64_t started_real_us, started_ms;

static pthread_mutex_t snapshot_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t snapshot_ready;
static json_t *snapshot;		/* guarded by snapshot_lock */
static uint64_t snapshot_ms;		/* when it was built */
static uint64_t snapshot_generation;
static bool snapshot_expired;		/* rebuild even if young (admin_snapshot_expire) */
static bool stopping;

/* Loop thread: the admin thread wants a fresh snapshot. */
static void
on_wake(struct loop_io *io, uint32_t revents)
{
	(void)revents;
	uint64_t count;
	if (read(io->fd, &count, sizeof(count)) != (ssize_t)sizeof(count))
		return;
	json_t *fresh = admin_snapshot_build(daemon_version, started_real_us, started_ms);
	if (fresh == NULL)
		return;
	pthread_mutex_lock(&snapshot_lock);
	json_t *old = snapshot;
	snapshot = fresh;
	snapshot_ms = loop_now_ms();
	snapshot_expired = false;
	snapshot_generation++;
	pthread_cond_broadcast(&snapshot_ready);
	pthread_mutex_unlock(&snapshot_lock);
	json_decref(old);
}

void
admin_snapshot_expire(void)
{
	pthread_mutex_lock(&snapshot_lock);
	if (snapshot != NULL)
		snapshot_expired = true;
	pthread_mutex_unlock(&snapshot_lock);
}

/* Admin thread: a reference to a recent snapshot (NULL if the loop gave
 * none in time); the caller releases it with json_decref. */
static json_t *
get_snapshot(void)
{
	pthread_mutex_lock(&snapshot_lock);
	if (snapshot == NULL || snapshot_expired || loop_now_ms() - snapshot_ms >= SNAPSHOT_FRESH_MS) {
		uint64_t generation = snapshot_generation, one = 1;
		if (write(wake_io.fd, &one, sizeof(one)) < 0 && errno != EAGAIN)
			log_warn("admin: cannot wake the event loop");
		struct timespec deadline;
		clock_gettime(CLOCK_MONOTONIC, &deadline);
		deadline.tv_sec += SNAPSHOT_WAIT_MS / 1000;
		while (snapshot_generation == generation && !stopping &&
		       pthread_cond_timedwait(&snapshot_ready, &snapshot_lock, &deadline) == 0)
			;
	}
	json_t *s = json_incref(snapshot);
	pthread_mutex_unlock(&snapshot_lock);
	return s;
}

/* What the admin thread measures itself: cheap for it, not for the loop. */
static unsigned long
count_open_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	if (d == NULL)
		return 0;
	unsigned long n = 0;
	const struct dirent *de;
	while ((de = readdir(d)) != NULL)
		n += de->d_name[0] != '.';
	closedir(d);
	return n > 0 ? n - 1 : 0;	/* not the directory's own descriptor */
}

static unsigned long long
resident_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	unsigned long long size = 0, resident = 0;
	if (f == NULL)
		return 0;
	if (fscanf(f, "%llu %llu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return resident * (unsigned long long)sysconf(_SC_PAGESIZE);
}

/* CPU time of the whole process (every thread), user and system, in
 * seconds: what tells an operator that the daemon nears its `workers`. */
static double
cpu_seconds(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	       (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

/* The snapshot with the process figures added: a new top-level object that
 * shares the snapshot's members, which stay untouched. */
static json_t *
state_with_process(const json_t *snap)
{
	json_t *state = json_object();
	if (state == NULL || json_object_update(state, (json_t *)(uintptr_t)snap) < 0) {
		json_decref(state);
		return NULL;
	}
	json_t *daemon = json_copy(json_object_get(snap, "daemon"));
	if (daemon == NULL)
		daemon = json_object();
	json_object_set_new(daemon, "open_fds", json_integer((json_int_t)count_open_fds()));
	json_object_set_new(daemon, "rss_bytes", json_integer((json_int_t)resident_bytes()));
	json_object_set_new(daemon, "cpu_seconds", json_real(cpu_seconds()));
	json_object_set_new(daemon, "admin", json_string(admin_cfg.text));
	json_object_set_new(state, "daemon", daemon);
	return state;
}

static enum MHD_Result
respond(struct MHD_Connection *conn, unsigned status, const char *type, void *body, size_t len, bool owned)
{
	struct MHD_Response *r = owned
		? MHD_create_response_from_buffer(len, body, MHD_RESPMEM_MUST_FREE)
		: MHD_create_response_from_buffer(len, body, MHD_RESPMEM_PERSISTENT);
	if (r == NULL) {
		if (owned)
			free(body);
		return MHD_NO;
	}
	MHD_add_response_header(r, MHD_HTTP_HEADER_CONTENT_TYPE, type);
	MHD_add_response_header(r, MHD_HTTP_HEADER_CACHE_CONTROL, "no-store");
	MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
	/* The dashboard loads nothing from elsewhere and runs only its own code. */
	MHD_add_response_header(r, "Content-Security-Policy",
				"default-src 'none'; connect-src 'self'; script-src 'unsafe-inline'; "
				"style-src 'unsafe-inline'; img-src data:; frame-ancestors 'none'");
	enum MHD_Result rc = MHD_queue_response(conn, status, r);
	MHD_destroy_response(r);
	return rc;
}

static enum MHD_Result
respond_error(struct MHD_Connection *conn, unsigned status, const char *message)
{
	json_t *o = json_pack("{s:s}", "error", message);
	char *text = o ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	if (text == NULL)
		return MHD_NO;
	return respond(conn, status, "application/json", text, strlen(text), true);
}

/* /api (everything), or /api/PART for one member of the state. */
static enum MHD_Result
serve_api(struct MHD_Connection *conn, const char *part, const json_t *state)
{
	static const char *const parts[] = {
		"daemon", "totals", "listeners", "routes", "upstreams", "refusals", "connections", "workers",
	};
	const json_t *body = state;
	if (part[0] != '\0') {
		body = NULL;
		for (size_t i = 0; i < sizeof(parts) / sizeof(parts[0]); i++)
			if (strcmp(part, parts[i]) == 0)
				body = json_object_get(state, parts[i]);
		if (body == NULL)
			return respond_error(conn, MHD_HTTP_NOT_FOUND,
					     "no such part (try /api, /api/daemon, /api/totals, /api/listeners, "
					     "/api/routes, /api/upstreams, /api/refusals, /api/connections or /api/workers)");
	}
	char *text = json_dumps(body, JSON_COMPACT | JSON_ENCODE_ANY);
	if (text == NULL)
		return respond_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	return respond(conn, MHD_HTTP_OK, "application/json", text, strlen(text), true);
}

static enum MHD_Result
on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method, const char *version,
	   const char *upload_data, size_t *upload_data_size, void **request_state)
{
	(void)cls;
	(void)version;
	(void)upload_data;
	(void)upload_data_size;
	(void)request_state;
	if (strcmp(method, MHD_HTTP_METHOD_GET) != 0 && strcmp(method, MHD_HTTP_METHOD_HEAD) != 0)
		return respond_error(conn, MHD_HTTP_METHOD_NOT_ALLOWED, "the admin endpoint is read-only: GET only");
	if (strcmp(url, "/") == 0 || strcmp(url, "/index.html") == 0)
		return respond(conn, MHD_HTTP_OK, "text/html; charset=utf-8", (void *)(uintptr_t)admin_dashboard_html,
			       admin_dashboard_html_len, false);
	bool is_metrics = strcmp(url, "/metrics") == 0;
	const char *part = NULL;
	if (strcmp(url, "/api") == 0 || strcmp(url, "/api/") == 0)
		part = "";
	else if (strncmp(url, "/api/", 5) == 0)
		part = url + 5;
	if (!is_metrics && part == NULL)
		return respond_error(conn, MHD_HTTP_NOT_FOUND, "not found (try /, /api or /metrics)");

	json_t *snap = get_snapshot();
	if (snap == NULL)
		return respond_error(conn, MHD_HTTP_SERVICE_UNAVAILABLE, "the daemon did not answer in time; try again");
	json_t *state = state_with_process(snap);
	json_decref(snap);
	if (state == NULL)
		return respond_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	enum MHD_Result rc;
	if (is_metrics) {
		char *text = metrics_render(state);
		rc = text ? respond(conn, MHD_HTTP_OK, "text/plain; version=0.0.4; charset=utf-8", text,
				    strlen(text), true)
			  : respond_error(conn, MHD_HTTP_INTERNAL_SERVER_ERROR, "out of memory");
	} else {
		rc = serve_api(conn, part, state);
	}
	json_decref(state);
	return rc;
}

static enum MHD_Result
on_accept(void *cls, const struct sockaddr *addr, socklen_t addrlen)
{
	(void)cls;
	(void)addrlen;
	return config_admin_allows(&admin_cfg, addr) ? MHD_YES : MHD_NO;
}

static void
on_mhd_log(void *cls, const char *fmt, va_list ap)
{
	(void)cls;
	char line[256];
	vsnprintf(line, sizeof(line), fmt, ap);
	line[strcspn(line, "\n")] = '\0';
	log_warnx("admin: %s", line);
}

void
admin_offer(int fd)
{
	if (offered_fd >= 0)
		close(offered_fd);
	offered_fd = fd;
}

/* Whether fd listens on exactly the configured admin address. */
static bool
listens_on_admin_address(int fd)
{
	const struct config_admin *a = &admin_cfg;
	struct sockaddr_storage local;
	socklen_t len = sizeof(local);
	int listening = 0;
	socklen_t optlen = sizeof(listening);
	if (getsockname(fd, (struct sockaddr *)&local, &len) < 0 ||
	    getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &optlen) < 0 || !listening)
		return false;
	if (a->is_unix) {
		const struct sockaddr_un *sun = (const struct sockaddr_un *)&local;
		return local.ss_family == AF_UNIX && len > offsetof(struct sockaddr_un, sun_path) &&
		       strncmp(sun->sun_path, a->unix_path, sizeof(sun->sun_path)) == 0;
	}
	if (local.ss_family != a->addr.ss_family)
		return false;
	if (local.ss_family == AF_INET) {
		const struct sockaddr_in *x = (const struct sockaddr_in *)&local;
		const struct sockaddr_in *y = (const struct sockaddr_in *)&a->addr;
		return x->sin_port == y->sin_port && x->sin_addr.s_addr == y->sin_addr.s_addr;
	}
	const struct sockaddr_in6 *x = (const struct sockaddr_in6 *)&local;
	const struct sockaddr_in6 *y = (const struct sockaddr_in6 *)&a->addr;
	return x->sin6_port == y->sin6_port && memcmp(&x->sin6_addr, &y->sin6_addr, sizeof(x->sin6_addr)) == 0;
}

/* The old daemon's socket if it fits the configuration, else -1 (closed). */
static int
adopt_offered(void)
{
	int fd = offered_fd;
	offered_fd = -1;
	if (fd < 0)
		return -1;
	if (!listens_on_admin_address(fd)) {
		log_info("admin: the old daemon's admin socket is not on %s: closed", admin_cfg.text);
		close(fd);
		return -1;
	}
	int flags = fcntl(fd, F_GETFL);
	if (flags < 0 || fcntl(fd, F_SETFL, flags | O_NONBLOCK) < 0) {
		log_warn("admin: cannot use the old daemon's admin socket: closed");
		close(fd);
		return -1;
	}
	adopted_unix = admin_cfg.is_unix;
	log_info("admin endpoint on %s: adopted the socket from the old daemon", admin_cfg.text);
	return fd;
}

/* Bind the admin address; -1 with a message in err. */
static int
open_admin_socket(char *err, size_t errlen)
{
	const struct config_admin *a = &admin_cfg;
	int family = a->is_unix ? AF_UNIX : a->addr.ss_family;
	int fd = socket(family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0)
		goto fail;
	if (a->is_unix) {
		struct sockaddr_un sun = { .sun_family = AF_UNIX };
		_Static_assert(sizeof(sun.sun_path) == sizeof(a->unix_path), "config keeps a sun_path");
		memcpy(sun.sun_path, a->unix_path, sizeof(sun.sun_path));
		struct stat st;
		/* A socket left by an earlier run: nobody listens there now,
		 * since binding would fail otherwise for a running one. */
		if (lstat(a->unix_path, &st) == 0 && S_ISSOCK(st.st_mode))
			unlink(a->unix_path);
		mode_t old = umask(0117);	/* owner and group may connect */
		int rc = bind(fd, (struct sockaddr *)&sun, sizeof(sun));
		umask(old);
		if (rc < 0)
			goto fail;
		unix_bound = true;
	} else {
		int one = 1;
		setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (family == AF_INET6)
			setsockopt(fd, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof(one));
		if (bind(fd, (const struct sockaddr *)&a->addr, a->addrlen) < 0)
			goto fail;
	}
	if (listen(fd, ADMIN_BACKLOG) < 0)
		goto fail;
	return fd;
fail:
	snprintf(err, errlen, "%s:%d: admin: cannot listen on %s: %s (choose another address or stop what uses it)",
		 server.cfg.source, a->line, a->text, strerror(errno));
	if (fd >= 0)
		close(fd);
	return -1;
}

int
admin_start(const char *version, char *err, size_t errlen)
{
	if (!server.cfg.admin.enabled) {
		if (offered_fd >= 0) {
			log_info("admin: no admin line in the configuration: the old daemon's admin socket is closed");
			close(offered_fd);
			offered_fd = -1;
		}
		return 0;
	}
	admin_cfg = server.cfg.admin;
	snprintf(daemon_version, sizeof(daemon_version), "%s", version);
	struct timeval tv;
	gettimeofday(&tv, NULL);
	started_real_us = (uint64_t)tv.tv_sec * 1000000u + (uint64_t)tv.tv_usec;
	started_ms = loop_now_ms();

	pthread_condattr_t attr;
	pthread_condattr_init(&attr);
	pthread_condattr_setclock(&attr, CLOCK_MONOTONIC);
	pthread_cond_init(&snapshot_ready, &attr);
	pthread_condattr_destroy(&attr);
	stopping = false;

	wake_io.fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
	wake_io.cb = on_wake;
	if (wake_io.fd < 0 || loop_io_add(server.loop, &wake_io, EPOLLIN) < 0) {
		snprintf(err, errlen, "admin: cannot set up: %s", strerror(errno));
		admin_stop();
		return -1;
	}
	if ((listen_fd = adopt_offered()) < 0 && (listen_fd = open_admin_socket(err, errlen)) < 0) {
		admin_stop();
		return -1;
	}
	served_fd = listen_fd;
	/* MHD_USE_ITC: admin_release quiesces the daemon, which needs it. */
	unsigned flags = MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_AUTO | MHD_USE_ERROR_LOG | MHD_USE_ITC;
	mhd = MHD_start_daemon(flags, 0, on_accept, NULL, on_request, NULL,
			       MHD_OPTION_EXTERNAL_LOGGER, on_mhd_log, NULL,
			       MHD_OPTION_LISTEN_SOCKET, (MHD_socket)listen_fd,
			       MHD_OPTION_CONNECTION_LIMIT, (unsigned)ADMIN_MAX_CONNECTIONS,
			       MHD_OPTION_PER_IP_CONNECTION_LIMIT, admin_cfg.is_unix ? 0u : (unsigned)ADMIN_MAX_PER_IP,
			       MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)ADMIN_TIMEOUT_S,
			       MHD_OPTION_CONNECTION_MEMORY_LIMIT, (size_t)ADMIN_MEMORY_LIMIT,
			       MHD_OPTION_END);
	if (mhd == NULL) {
		snprintf(err, errlen, "%s:%d: admin: cannot start the admin endpoint on %s", server.cfg.source,
			 admin_cfg.line, admin_cfg.text);
		admin_stop();
		return -1;
	}
	listen_fd = -1;
	log_info("admin endpoint on %s (dashboard /, JSON /api, Prometheus /metrics)", admin_cfg.text);
	return 0;
}

int
admin_socket(void)
{
	return mhd != NULL ? served_fd : -1;
}

void
admin_release(void)
{
	if (mhd == NULL)
		return;
	/* libmicrohttpd stops accepting and gives the socket back; the new
	 * daemon has its own descriptor of it, so closing ours unbinds
	 * nothing, and what waits in the backlog is the new daemon's. */
	MHD_socket fd = MHD_quiesce_daemon(mhd);
	if (fd != MHD_INVALID_SOCKET)
		close(fd);
	else
		log_warnx("admin: cannot stop accepting admin connections; they go on until this daemon exits");
	served_fd = -1;
	unix_bound = false;	/* the file is the new daemon's */
}

unsigned
admin_open_connections(void)
{
	if (mhd == NULL)
		return 0;
	const union MHD_DaemonInfo *info = MHD_get_daemon_info(mhd, MHD_DAEMON_INFO_CURRENT_CONNECTIONS);
	return info != NULL ? info->num_connections : 0;
}

void
admin_took_over(void)
{
	if (adopted_unix)
		unix_bound = true;
	adopted_unix = false;
}

bool
admin_settings_differ(const struct config_admin *a, const struct config_admin *b)
{
	if (a->enabled != b->enabled || strcmp(a->text, b->text) != 0 || a->n_allow != b->n_allow)
		return true;
	for (size_t i = 0; i < a->n_allow; i++)
		if (a->allow[i].family != b->allow[i].family || a->allow[i].prefix != b->allow[i].prefix ||
		    memcmp(a->allow[i].addr, b->allow[i].addr, sizeof(a->allow[i].addr)) != 0)
			return true;
	return false;
}

void
admin_stop(void)
{
	if (mhd != NULL) {
		pthread_mutex_lock(&snapshot_lock);
		stopping = true;
		pthread_cond_broadcast(&snapshot_ready);
		pthread_mutex_unlock(&snapshot_lock);
		MHD_stop_daemon(mhd);	/* joins the admin thread */
		mhd = NULL;
	}
	if (listen_fd >= 0) {
		close(listen_fd);
		listen_fd = -1;
	}
	served_fd = -1;
	if (offered_fd >= 0) {
		close(offered_fd);
		offered_fd = -1;
	}
	if (unix_bound) {
		unlink(admin_cfg.unix_path);
		unix_bound = false;
	}
	if (wake_io.fd >= 0) {
		loop_io_del(server.loop, &wake_io);
		close(wake_io.fd);
		wake_io.fd = -1;
	}
	json_decref(snapshot);
	snapshot = NULL;
}
