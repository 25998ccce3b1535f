/* preload.c - libhandoff-preload.so: LD_PRELOAD library that turns an unmodified server's TCP listeners into handoff receivers. */
/*
 * `handoff run` sets, for the server it starts:
 *
 *   HANDOFF_NAMES="a.example,www.a.example"   names to claim
 *   HANDOFF_PORTS="8443/tls,8080/http"        TCP ports whose listeners are replaced,
 *                                             each optionally limited to the
 *                                             connections of one protocol
 *   HANDOFF_ALPN="acme-tls/1"                 only TLS clients offering these ALPN ids (optional)
 *   HANDOFF_RUNTIME_DIR=R                     the daemon's runtime directory (optional)
 *
 * When the server bind()s a TCP socket to one of those ports, this library
 * opens a receiving socket with handoff_listen_family() instead (for the
 * port's protocol, if it names one, and the client address families a TCP
 * listener of the socket's kind takes) and dup3()s it onto the server's
 * descriptor number, keeping its FD_CLOEXEC and O_NONBLOCK, so
 * every later poll/select/epoll registration of that number watches the
 * receiver. From then on the descriptor is a listener in everything the
 * server can ask:
 *
 *   listen()        0, also when called again to change the backlog
 *   accept[4]()     handoff_accept(): a connected TCP socket with exactly the
 *                   requested O_NONBLOCK/FD_CLOEXEC, the client's address
 *                   (v4-mapped if the server listens on IPv6 and the client
 *                   came over IPv4), EAGAIN when non-blocking and nothing
 *                   waits, EMFILE without losing the waiting connection
 *   getpeername()   on an accepted connection: what accept() said, i.e. the
 *                   client a PROXY header named when the daemon's listener
 *                   sits behind a load balancer (accept-proxy), v4-mapped
 *                   when the server listens on IPv6
 *   getsockname()   on an accepted connection: the daemon's address the
 *                   client reached, in the listener's family (v4-mapped
 *                   when the server listens on IPv6)
 *   recv(), read(), write(), send() and their kin (preload_io.c):
 *                   ENOTCONN, or EPIPE and SIGPIPE, as on a TCP listener,
 *                   without taking a connection
 *   getsockname()   the address the server bound
 *   getsockopt()    SO_TYPE SOCK_STREAM, SO_DOMAIN, SO_PROTOCOL IPPROTO_TCP,
 *                   SO_ACCEPTCONN, SO_ERROR 0; any other option: the value the
 *                   server set, else what a fresh TCP socket of that family says
 *   setsockopt()    validated by the kernel on a fresh TCP socket, remembered,
 *                   and applied to accepted connections if TCP would have
 *                   passed it on to them (keepalive, buffer sizes, ...)
 *   connect()       from the server to an address one of its listeners would
 *                   take: a loopback TCP connection whose other end the next
 *                   accept() on that listener returns (preload_connect.c)
 *
 * What a listener is (its bound address, whether listen() was called, the
 * options that differ from a fresh TCP socket's) is kept twice: in this
 * process, in a table indexed by descriptor number, and on the receiving
 * socket itself (see "the listener's description" below). A process can
 * come to hold a receiver this library did not create in it: a server
 * re-executed with an environment of its own making (nginx's binary
 * upgrade, gunicorn's USR2), a duplicate made with dup() or fcntl(), one
 * received over a Unix socket (node's cluster module sends its listener to
 * the workers so). Every call that would tell such a descriptor apart from
 * a TCP listener (a getsockname() answering AF_UNIX, a listen() or accept()
 * failing with EOPNOTSUPP, ...) first checks for a description on it, and
 * if there is one, answers as the listener instead. No environment state
 * is needed, and calls on other descriptors cost no extra system call.
 *
 * Nothing runs at load time: CGI programs and other children inherit
 * LD_PRELOAD, so the environment is read on the first hooked call.
 *
 * fork(): children share the receivers like any listening socket; the
 * daemon's messages go to whichever process receives first.
 *
 * Files: the receivers' files (RUNDIR/upstreams/ID.sock and ID.names) are
 * never removed by this library. Any process may hold a receiver (workers,
 * a re-executed master), and none can tell cheaply whether it is the last,
 * so close() and exit leave the files; once no process holds the socket the
 * daemon's next send to it fails and the daemon removes them.
 *
 * Out of reach: statically linked programs and Go programs (their socket
 * calls bypass the C library), io_uring accept.
 */

#include <dlfcn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "preload.h"

/*
 * The shadow of each swapped descriptor, by number. A non-NULL slot is read
 * without the lock as a hint, so that close() and accept() on every other
 * descriptor stay a single load; entries are created, read and freed under
 * shadow_lock. The array lives in .bss: untouched pages cost nothing.
 */
static _Atomic(struct listener_shadow *) shadow_by_fd[MAX_TRACKED_FD];
/* One above the highest descriptor ever given a shadow: each_listener()
 * looks no further. */
static atomic_int shadow_fd_limit;

/* Accepted connections whose client address is not the socket's peer (see
 * struct peer_override). */
static _Atomic(struct peer_override *) peer_by_fd[MAX_TRACKED_FD];
/* Held to replace an entry and to read one: a reader copies under it, so
 * a close() in another thread never frees what is being read. */
static pthread_mutex_t peer_lock = PTHREAD_MUTEX_INITIALIZER;

void set_peer_override(int fd, struct peer_override *po)
{
	struct peer_override *old;

	if (fd < 0 || fd >= MAX_TRACKED_FD) {
		free(po);
		return;
	}
	pthread_mutex_lock(&peer_lock);
	old = atomic_exchange_explicit(&peer_by_fd[fd], po, memory_order_acq_rel);
	pthread_mutex_unlock(&peer_lock);
	free(old);
}

/* Copy fd's override into *out; false if it has none. */
bool get_peer_override(int fd, struct peer_override *out)
{
	struct peer_override *po;
	bool found = false;

	if (fd < 0 || fd >= MAX_TRACKED_FD ||
	    atomic_load_explicit(&peer_by_fd[fd], memory_order_acquire) == NULL)
		return false;
	pthread_mutex_lock(&peer_lock);
	po = atomic_load_explicit(&peer_by_fd[fd], memory_order_acquire);
	if (po != NULL) {
		*out = *po;
		found = true;
	}
	pthread_mutex_unlock(&peer_lock);
	return found;
}
static pthread_mutex_t shadow_lock = PTHREAD_MUTEX_INITIALIZER;

int (*real_bind)(int, const struct sockaddr *, socklen_t);
int (*real_listen)(int, int);
int (*real_accept)(int, struct sockaddr *, socklen_t *);
int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
int (*real_getsockname)(int, struct sockaddr *, socklen_t *);
int (*real_getsockopt)(int, int, int, void *, socklen_t *);
int (*real_setsockopt)(int, int, int, const void *, socklen_t);
int (*real_close)(int);
int (*real_getpeername)(int, struct sockaddr *, socklen_t *);
int (*real_connect)(int, const struct sockaddr *, socklen_t);
static pthread_once_t symbols_once = PTHREAD_ONCE_INIT;

_Thread_local unsigned inside_libhandoff;

/* The environment's wishes, read once by load_settings(). */
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;
static struct handed_off_port ports[MAX_PORTS];
size_t n_ports;
static char *names_buf;
const char *names[MAX_NAMES];
size_t n_names;
const char *alpn_ids[MAX_ALPN_IDS];
size_t n_alpn_ids;
static char *alpn_buf;

static void resolve_symbols(void)
{
	/* POSIX guarantees that a void * from dlsym() converts to a function
	 * pointer; the union spells that out without a cast warning. */
#define RESOLVE(var, symbol) do {					\
		union { void *object; __typeof__(var) function; } u;	\
		u.object = dlsym(RTLD_NEXT, symbol);			\
		var = u.function;					\
	} while (0)
	RESOLVE(real_bind, "bind");
	RESOLVE(real_listen, "listen");
	RESOLVE(real_accept, "accept");
	RESOLVE(real_accept4, "accept4");
	RESOLVE(real_getsockname, "getsockname");
	RESOLVE(real_getsockopt, "getsockopt");
	RESOLVE(real_setsockopt, "setsockopt");
	RESOLVE(real_close, "close");
	RESOLVE(real_getpeername, "getpeername");
	RESOLVE(real_connect, "connect");
#undef RESOLVE
	if (!real_bind || !real_listen || !real_accept || !real_accept4 || !real_getsockname ||
	    !real_getsockopt || !real_setsockopt || !real_close || !real_getpeername ||
	    !real_connect) {
		fprintf(stderr, "handoff-preload: cannot find the C library's socket functions\n");
		abort();
	}
}

void ensure_symbols(void)
{
	pthread_once(&symbols_once, resolve_symbols);
}

/* After a port number in HANDOFF_PORTS: "/tls", "/http" or nothing, up to
 * the next comma. Advances *p past it; false if it is something else. */
static bool parse_port_protocol(const char **p, enum handoff_protocol *protocol)
{
	static const struct {
		const char *suffix;
		enum handoff_protocol protocol;
	} suffixes[] = {
		{ "/tls", HANDOFF_PROTO_TLS },
		{ "/http", HANDOFF_PROTO_HTTP },
		{ "/ssh", HANDOFF_PROTO_SSH },
		{ "/silent", HANDOFF_PROTO_SILENT },
	};

	*protocol = 0;
	for (size_t i = 0; i < sizeof(suffixes) / sizeof(suffixes[0]); i++) {
		size_t len = strlen(suffixes[i].suffix);

		if (strncmp(*p, suffixes[i].suffix, len) == 0) {
			*protocol = suffixes[i].protocol;
			*p += len;
			break;
		}
	}
	return **p == '\0' || **p == ',';
}

static void parse_ports(const char *list)
{
	const char *p = list;

	while (*p && n_ports < MAX_PORTS) {
		char *end;
		const char *rest;
		unsigned long port;
		enum handoff_protocol protocol;

		/* strtoul() would take a sign or blanks; a port is digits only. */
		port = *p >= '0' && *p <= '9' ? strtoul(p, &end, 10) : 0;
		rest = port ? end : p;
		if (port == 0 || port > 65535 || !parse_port_protocol(&rest, &protocol)) {
			fprintf(stderr, "handoff-preload: ignoring HANDOFF_PORTS=\"%s\": "
				"expected ports 1..65535, each optionally followed by /tls or "
				"/http, separated by commas\n", list);
			n_ports = 0;
			return;
		}
		ports[n_ports].port = (unsigned short)port;
		ports[n_ports].protocol = protocol;
		n_ports++;
		p = *rest ? rest + 1 : rest;
	}
}

static void parse_names(const char *list)
{
	char *save = NULL;

	names_buf = strdup(list);
	if (!names_buf)
		return;
	for (char *name = strtok_r(names_buf, ",", &save); name && n_names < MAX_NAMES;
	     name = strtok_r(NULL, ",", &save))
		names[n_names++] = name;
}

/* HANDOFF_ALPN="acme-tls/1": the ALPN ids the names' receivers are limited to. */
static void parse_alpn(const char *list)
{
	char *save = NULL;

	alpn_buf = strdup(list);
	if (!alpn_buf)
		return;
	for (char *id = strtok_r(alpn_buf, ",", &save); id && n_alpn_ids < MAX_ALPN_IDS;
	     id = strtok_r(NULL, ",", &save))
		alpn_ids[n_alpn_ids++] = id;
}

/* The fork handlers keep shadow_lock usable in a child forked while another
 * thread held it. */
static void before_fork(void)
{
	pthread_mutex_lock(&shadow_lock);
}

static void after_fork(void)
{
	pthread_mutex_unlock(&shadow_lock);
}

static void load_settings(void)
{
	const char *value;

	ensure_symbols();
	value = getenv("HANDOFF_PORTS");
	if (value && *value)
		parse_ports(value);
	value = getenv("HANDOFF_NAMES");
	if (value && *value)
		parse_names(value);
	value = getenv("HANDOFF_ALPN");
	if (value && *value)
		parse_alpn(value);
	pthread_atfork(before_fork, after_fork, after_fork);
}

void ensure_settings(void)
{
	ensure_symbols();
	pthread_once(&settings_once, load_settings);
}

/* The HANDOFF_PORTS entry for port, NULL if its listeners stay TCP. */
const struct handed_off_port *handed_off_port(unsigned short port)
{
	for (size_t i = 0; i < n_ports; i++)
		if (ports[i].port == port)
			return &ports[i];
	return NULL;
}

/* ---- the table ---- */

/* The hint: is fd possibly swapped? No lock, no system call; the slot is
 * read first, as every read() and write() of the process asks. */
static bool maybe_swapped(int fd)
{
	return fd >= 0 && fd < MAX_TRACKED_FD &&
	       atomic_load_explicit(&shadow_by_fd[fd], memory_order_acquire) != NULL &&
	       !inside_libhandoff;
}

void install_shadow(int fd, struct listener_shadow *sh)
{
	struct listener_shadow *old;

	pthread_mutex_lock(&shadow_lock);
	old = atomic_exchange_explicit(&shadow_by_fd[fd], sh, memory_order_acq_rel);
	if (fd >= atomic_load_explicit(&shadow_fd_limit, memory_order_relaxed))
		atomic_store_explicit(&shadow_fd_limit, fd + 1, memory_order_relaxed);
	pthread_mutex_unlock(&shadow_lock);
	free(old);
}

void each_listener(bool (*visit)(int fd, const struct listener_shadow *sh, void *arg),
		   void *arg)
{
	int limit = atomic_load_explicit(&shadow_fd_limit, memory_order_relaxed);
	struct listener_shadow sh;

	for (int fd = 0; fd < limit; fd++)
		if (known_listener(fd, &sh) && !visit(fd, &sh, arg))
			return;
}

/*
 * Copy the shadow of fd into *out if fd is a swapped listener. A slot whose
 * descriptor is no longer the receiver (closed with close_range(),
 * replaced with dup2(), ...) is dropped here.
 */
static bool lookup_shadow(int fd, struct listener_shadow *out)
{
	struct listener_shadow *sh, *stale = NULL;
	struct stat st;
	bool found = false;
	bool open = fstat(fd, &st) == 0;

	pthread_mutex_lock(&shadow_lock);
	sh = atomic_load_explicit(&shadow_by_fd[fd], memory_order_relaxed);
	if (sh && open && sh->dev == st.st_dev && sh->ino == st.st_ino) {
		*out = *sh;
		found = true;
	} else if (sh) {
		stale = sh;
		atomic_store_explicit(&shadow_by_fd[fd], NULL, memory_order_release);
	}
	pthread_mutex_unlock(&shadow_lock);
	free(stale);
	return found;
}

/* Is fd a listener this process swapped or recognised? Copies its shadow. */
bool known_listener(int fd, struct listener_shadow *out)
{
	return maybe_swapped(fd) && lookup_shadow(fd, out);
}

/*
 * A call on fd, which this process does not know as a listener, just
 * answered as a datagram socket would. If fd is a receiver carrying a
 * listener's description (inherited across exec(), duplicated, received
 * from another process), it becomes that listener here too; out gets its
 * shadow. errno is kept if not.
 */
bool turned_up(int fd, struct listener_shadow *out)
{
	struct listener_shadow *sh;
	struct stat st;
	int saved = errno;

	if (inside_libhandoff || fd < 0 || fd >= MAX_TRACKED_FD || fstat(fd, &st) < 0 ||
	    !S_ISSOCK(st.st_mode) || !is_receiver_socket(fd))
		goto not_ours;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		goto not_ours;
	if (!read_metadata(fd, sh) || receiver_daemon_uid(fd, &sh->daemon_uid) < 0 ||
	    handoff_adopt(fd, sh->daemon_uid) < 0) {
		free(sh);
		goto not_ours;
	}
	sh->dev = st.st_dev;
	sh->ino = st.st_ino;
	*out = *sh;
	install_shadow(fd, sh);
	return true;
not_ours:
	errno = saved;
	return false;
}

/* Apply change to the shadow of fd, if it is still the same listener, and
 * rewrite its description on the socket. */
void update_shadow(int fd, const struct listener_shadow *expected,
			  void (*change)(struct listener_shadow *, const void *), const void *arg)
{
	struct listener_shadow *sh;

	pthread_mutex_lock(&shadow_lock);
	sh = atomic_load_explicit(&shadow_by_fd[fd], memory_order_relaxed);
	if (sh && sh->dev == expected->dev && sh->ino == expected->ino) {
		change(sh, arg);
		attach_metadata(fd, sh);
	}
	pthread_mutex_unlock(&shadow_lock);
}

/* ---- close ---- */

PRELOAD_API int close(int fd)
{
	ensure_symbols();
	if (fd >= 0 && fd < MAX_TRACKED_FD &&
	    atomic_load_explicit(&peer_by_fd[fd], memory_order_relaxed) != NULL)
		set_peer_override(fd, NULL);
	if (maybe_swapped(fd)) {
		struct listener_shadow *sh;

		/* libhandoff's record is matched by inode: drop it while fd
		 * is still open. The files stay (see the top). */
		handoff_forget(fd);
		pthread_mutex_lock(&shadow_lock);
		sh = atomic_exchange_explicit(&shadow_by_fd[fd], NULL, memory_order_acq_rel);
		pthread_mutex_unlock(&shadow_lock);
		free(sh);
	}
	return real_close(fd);
}
