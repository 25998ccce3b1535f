/* preload.c - libhandoff-preload.so: LD_PRELOAD library that turns an unmodified server's TCP listeners into handoff receivers. */
/*
 * `handoff run` sets, for the server it starts:
 *
 *   HANDOFF_NAMES="a.example,www.a.example"   names to claim
 *   HANDOFF_PORTS="8443/tls,8080/http"        TCP ports whose listeners are replaced,
 *                                             each optionally limited to the
 *                                             connections of one protocol
 *   HANDOFF_RUNTIME_DIR=R                     the daemon's runtime directory (optional)
 *
 * When the server bind()s a TCP socket to one of those ports, this library
 * opens a receiving socket with handoff_listen_protocol() instead (for the
 * port's protocol, if it names one) and dup3()s it onto the server's
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
 *   getsockname()   the address the server bound
 *   getsockopt()    SO_TYPE SOCK_STREAM, SO_DOMAIN, SO_PROTOCOL IPPROTO_TCP,
 *                   SO_ACCEPTCONN, SO_ERROR 0; any other option: the value the
 *                   server set, else what a fresh TCP socket of that family says
 *   setsockopt()    validated by the kernel on a fresh TCP socket, remembered,
 *                   and applied to accepted connections if TCP would have
 *                   passed it on to them (keepalive, buffer sizes, ...)
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
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "handoff.h"
#include "handoff_internal.h"

#define PRELOAD_API __attribute__((visibility("default")))

/* Descriptors at or above this number are never swapped (bind fails). */
#define MAX_TRACKED_FD		65536
#define MAX_NAMES		64
#define MAX_PORTS		64
#define MAX_REMEMBERED		32
#define OPTION_VALUE_MAX	16	/* an int, struct linger, a congestion control name */

/* Under _GNU_SOURCE glibc declares the socket calls with transparent
 * unions, and the definitions below must match those declarations. */
#if !defined(__cplusplus) && __GNUC_PREREQ(2, 7) && defined(__USE_GNU)
#define SOCKADDR_PTR(arg)	((arg).__sockaddr__)
#else
#define SOCKADDR_PTR(arg)	(arg)
#endif

struct remembered_option {
	int level;
	int name;
	socklen_t len;
	unsigned char value[OPTION_VALUE_MAX];
};

/* What a swapped descriptor stands for. */
struct listener_shadow {
	dev_t dev;			/* the receiving socket */
	ino_t ino;
	uid_t daemon_uid;		/* whose messages it takes */
	union {
		struct sockaddr sa;
		struct sockaddr_in in;
		struct sockaddr_in6 in6;
	} addr;				/* as bound by the server */
	socklen_t addr_len;
	bool listening;
	size_t n_options;
	struct remembered_option options[MAX_REMEMBERED];
};

/*
 * The shadow of each swapped descriptor, by number. A non-NULL slot is read
 * without the lock as a hint, so that close() and accept() on every other
 * descriptor stay a single load; entries are created, read and freed under
 * shadow_lock. The array lives in .bss: untouched pages cost nothing.
 */
static _Atomic(struct listener_shadow *) shadow_by_fd[MAX_TRACKED_FD];

/*
 * Accepted connections whose client address is not the socket's peer: the
 * daemon's listener accepted a PROXY header from a load balancer, so the
 * real client is in the handoff header. getpeername() answers with it.
 * The socket's inode guards against a descriptor number reused after a
 * close this library did not see (fclose() and other internal closes).
 */
struct peer_override {
	ino_t ino;
	socklen_t len;
	struct sockaddr_storage addr;
};
static _Atomic(struct peer_override *) peer_by_fd[MAX_TRACKED_FD];
/* Held to replace an entry and to read one: a reader copies under it, so
 * a close() in another thread never frees what is being read. */
static pthread_mutex_t peer_lock = PTHREAD_MUTEX_INITIALIZER;

static void set_peer_override(int fd, struct peer_override *po)
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
static bool get_peer_override(int fd, struct peer_override *out)
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

/* The real functions, found with dlsym(RTLD_NEXT) on first use. */
static int (*real_bind)(int, const struct sockaddr *, socklen_t);
static int (*real_listen)(int, int);
static int (*real_accept)(int, struct sockaddr *, socklen_t *);
static int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
static int (*real_getsockname)(int, struct sockaddr *, socklen_t *);
static int (*real_getsockopt)(int, int, int, void *, socklen_t *);
static int (*real_setsockopt)(int, int, int, const void *, socklen_t);
static int (*real_close)(int);
static int (*real_getpeername)(int, struct sockaddr *, socklen_t *);
static pthread_once_t symbols_once = PTHREAD_ONCE_INIT;

/*
 * Non-zero while this thread runs libhandoff's code for us (handoff_listen,
 * handoff_accept): its bind(), getsockopt() and close() calls reach the
 * hooks below too, and must go straight to the C library.
 */
static _Thread_local unsigned inside_libhandoff;

/* One HANDOFF_PORTS entry. */
struct handed_off_port {
	unsigned short port;
	enum handoff_protocol protocol;	/* 0: connections of either protocol */
};

/* The environment's wishes, read once by load_settings(). */
static pthread_once_t settings_once = PTHREAD_ONCE_INIT;
static struct handed_off_port ports[MAX_PORTS];
static size_t n_ports;
static char *names_buf;
static const char *names[MAX_NAMES];
static size_t n_names;

/* Options snapshotted at bind() when they differ from a fresh socket's. */
struct option_id {
	int level;
	int name;
	bool inherited;		/* TCP passes it from listener to accepted socket */
};

static const struct option_id known_options[] = {
	{ SOL_SOCKET, SO_REUSEADDR, false },
	{ SOL_SOCKET, SO_REUSEPORT, false },
	{ SOL_SOCKET, SO_KEEPALIVE, true },
	{ SOL_SOCKET, SO_RCVBUF, true },
	{ SOL_SOCKET, SO_SNDBUF, true },
	{ SOL_SOCKET, SO_LINGER, true },
	{ SOL_SOCKET, SO_PRIORITY, true },
	{ SOL_SOCKET, SO_MARK, true },
	{ SOL_SOCKET, SO_RCVLOWAT, true },
	{ SOL_SOCKET, SO_OOBINLINE, true },
	{ IPPROTO_TCP, TCP_NODELAY, true },
	{ IPPROTO_TCP, TCP_MAXSEG, false },
	{ IPPROTO_TCP, TCP_KEEPIDLE, true },
	{ IPPROTO_TCP, TCP_KEEPINTVL, true },
	{ IPPROTO_TCP, TCP_KEEPCNT, true },
	{ IPPROTO_TCP, TCP_SYNCNT, false },
	{ IPPROTO_TCP, TCP_LINGER2, true },
	{ IPPROTO_TCP, TCP_DEFER_ACCEPT, false },
	{ IPPROTO_TCP, TCP_WINDOW_CLAMP, true },
	{ IPPROTO_TCP, TCP_CONGESTION, true },
	{ IPPROTO_TCP, TCP_USER_TIMEOUT, true },
	{ IPPROTO_TCP, TCP_FASTOPEN, false },
	{ IPPROTO_TCP, TCP_NOTSENT_LOWAT, true },
	{ IPPROTO_IP, IP_TOS, true },
	{ IPPROTO_IP, IP_TTL, true },
	{ IPPROTO_IP, IP_FREEBIND, false },
	{ IPPROTO_IP, IP_TRANSPARENT, false },
	{ IPPROTO_IPV6, IPV6_V6ONLY, false },
	{ IPPROTO_IPV6, IPV6_TCLASS, true },
	{ IPPROTO_IPV6, IPV6_UNICAST_HOPS, true },
};

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
#undef RESOLVE
	if (!real_bind || !real_listen || !real_accept || !real_accept4 || !real_getsockname ||
	    !real_getsockopt || !real_setsockopt || !real_close || !real_getpeername) {
		fprintf(stderr, "handoff-preload: cannot find the C library's socket functions\n");
		abort();
	}
}

static void ensure_symbols(void)
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
	pthread_atfork(before_fork, after_fork, after_fork);
}

static void ensure_settings(void)
{
	ensure_symbols();
	pthread_once(&settings_once, load_settings);
}

/* The HANDOFF_PORTS entry for port, NULL if its listeners stay TCP. */
static const struct handed_off_port *handed_off_port(unsigned short port)
{
	for (size_t i = 0; i < n_ports; i++)
		if (ports[i].port == port)
			return &ports[i];
	return NULL;
}

/* ---- options ---- */

static const struct option_id *known_option(int level, int name)
{
	for (size_t i = 0; i < sizeof(known_options) / sizeof(known_options[0]); i++)
		if (known_options[i].level == level && known_options[i].name == name)
			return &known_options[i];
	return NULL;
}

static bool is_timeout_option(int level, int name)
{
	if (level != SOL_SOCKET)
		return false;
	if (name == SO_RCVTIMEO || name == SO_SNDTIMEO)
		return true;
#ifdef SO_RCVTIMEO_NEW
	if (name == SO_RCVTIMEO_NEW || name == SO_SNDTIMEO_NEW ||
	    name == SO_RCVTIMEO_OLD || name == SO_SNDTIMEO_OLD)
		return true;
#endif
	return false;
}

/* Remember an option's value (the description holds levels and names of
 * 16 bits and values of OPTION_VALUE_MAX bytes; others are not kept). */
static void remember_option(struct listener_shadow *sh, int level, int name,
			    const void *value, socklen_t len)
{
	struct remembered_option *slot = NULL;

	if (len > OPTION_VALUE_MAX || level < 0 || level > UINT16_MAX || name < 0 ||
	    name > UINT16_MAX)
		return;
	for (size_t i = 0; i < sh->n_options; i++)
		if (sh->options[i].level == level && sh->options[i].name == name)
			slot = &sh->options[i];
	if (!slot) {
		if (sh->n_options == MAX_REMEMBERED)
			return;
		slot = &sh->options[sh->n_options++];
	}
	slot->level = level;
	slot->name = name;
	slot->len = len;
	memset(slot->value, 0, sizeof(slot->value));
	memcpy(slot->value, value, len);
}

static const struct remembered_option *find_option(const struct listener_shadow *sh,
						   int level, int name)
{
	for (size_t i = 0; i < sh->n_options; i++)
		if (sh->options[i].level == level && sh->options[i].name == name)
			return &sh->options[i];
	return NULL;
}

/* ---- the listener's description, kept on the receiving socket ----
 * It is a classic BPF socket filter, which the kernel keeps with the socket
 * (across fork, exec and descriptor passing) and gives back to any holder
 * through SO_GET_FILTER. The filter lets every datagram through whole; it
 * is a run of "load immediate" instructions whose 32-bit operands carry the
 * description, in host byte order:
 *
 *   METADATA_MAGIC
 *   version << 24 | listening << 16 | address length << 8 | option count
 *   the bound address, padded to whole words
 *   per option: level << 16 | name, length, value padded to whole words
 *
 * then "return whole datagram". Loading constants costs the kernel a few
 * dozen instructions per handed-off connection. */

#define METADATA_MAGIC		0x50464f48u	/* "HOFP" in little-endian memory */
#define METADATA_VERSION	1
#define WORD_BYTES		4
#define WORDS(bytes)		(((bytes) + WORD_BYTES - 1) / WORD_BYTES)
#define METADATA_MAX_WORDS	(2 + WORDS(sizeof(struct sockaddr_in6)) + \
				 MAX_REMEMBERED * (2 + WORDS(OPTION_VALUE_MAX)))
#define ACCEPT_WHOLE_DATAGRAM	0xffffffffu

static void put_word(struct sock_filter *insns, size_t *n, uint32_t word)
{
	insns[(*n)++] = (struct sock_filter)BPF_STMT(BPF_LD | BPF_IMM, word);
}

static void put_bytes(struct sock_filter *insns, size_t *n, const void *data, size_t len)
{
	for (size_t i = 0; i < len; i += WORD_BYTES) {
		uint32_t word = 0;

		memcpy(&word, (const unsigned char *)data + i,
		       len - i < WORD_BYTES ? len - i : WORD_BYTES);
		put_word(insns, n, word);
	}
}

/* Record sh on the receiver fd (replacing what was there). */
static void attach_metadata(int fd, const struct listener_shadow *sh)
{
	static atomic_bool warned;
	struct sock_filter insns[METADATA_MAX_WORDS + 1];
	struct sock_fprog program = { .filter = insns };
	size_t n = 0;

	put_word(insns, &n, METADATA_MAGIC);
	put_word(insns, &n, (uint32_t)METADATA_VERSION << 24 | (uint32_t)sh->listening << 16 |
			    (uint32_t)sh->addr_len << 8 | (uint32_t)sh->n_options);
	put_bytes(insns, &n, &sh->addr, sh->addr_len);
	for (size_t i = 0; i < sh->n_options; i++) {
		const struct remembered_option *o = &sh->options[i];

		put_word(insns, &n, (uint32_t)o->level << 16 | (uint32_t)o->name);
		put_word(insns, &n, o->len);
		put_bytes(insns, &n, o->value, o->len);
	}
	insns[n++] = (struct sock_filter)BPF_STMT(BPF_RET | BPF_K, ACCEPT_WHOLE_DATAGRAM);
	program.len = (unsigned short)n;
	if (real_setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &program, sizeof(program)) < 0 &&
	    !atomic_exchange(&warned, true))
		fprintf(stderr, "handoff-preload: cannot record the listener on its receiving "
			"socket (%s); a re-executed or forked-and-executed server will not "
			"recognise it\n", strerror(errno));
}

/* Read the description on receiver fd into sh (address, listening,
 * options). False if fd carries none. */
static bool read_metadata(int fd, struct listener_shadow *sh)
{
	struct sock_filter insns[METADATA_MAX_WORDS + 1];
	socklen_t count = sizeof(insns) / sizeof(insns[0]);	/* counts instructions */
	uint32_t words[METADATA_MAX_WORDS], header;
	size_t n_words, at = 2, addr_len, n_options;

	if (real_getsockopt(fd, SOL_SOCKET, SO_GET_FILTER, insns, &count) < 0 || count < 3 ||
	    count > sizeof(insns) / sizeof(insns[0]))
		return false;
	n_words = count - 1;
	if (insns[n_words].code != (BPF_RET | BPF_K) || insns[n_words].k != ACCEPT_WHOLE_DATAGRAM)
		return false;
	for (size_t i = 0; i < n_words; i++) {
		if (insns[i].code != (BPF_LD | BPF_IMM))
			return false;
		words[i] = insns[i].k;
	}
	header = words[1];
	addr_len = header >> 8 & 0xff;
	n_options = header & 0xff;
	if (words[0] != METADATA_MAGIC || header >> 24 != METADATA_VERSION ||
	    n_options > MAX_REMEMBERED || at + WORDS(addr_len) > n_words ||
	    !(addr_len == sizeof(struct sockaddr_in) || addr_len == sizeof(struct sockaddr_in6)))
		return false;
	memcpy(&sh->addr, &words[at], addr_len);
	at += WORDS(addr_len);
	if ((sh->addr.sa.sa_family != AF_INET || addr_len != sizeof(struct sockaddr_in)) &&
	    (sh->addr.sa.sa_family != AF_INET6 || addr_len != sizeof(struct sockaddr_in6)))
		return false;
	sh->addr_len = (socklen_t)addr_len;
	sh->listening = (header >> 16 & 0xff) != 0;
	for (size_t i = 0; i < n_options; i++) {
		uint32_t len;

		if (at + 2 > n_words)
			return false;
		len = words[at + 1];
		if (len > OPTION_VALUE_MAX || at + 2 + WORDS(len) > n_words)
			return false;
		remember_option(sh, (int)(words[at] >> 16), (int)(words[at] & 0xffff),
				&words[at + 2], len);
		at += 2 + WORDS(len);
	}
	return at == n_words;
}

/* ---- receivers ---- */

/* A TCP socket of the listener's family, to ask the kernel for defaults and
 * to validate options; -1 if none can be made (descriptor limit). */
static int fresh_tcp_socket(int family)
{
	return socket(family, SOCK_STREAM | SOCK_CLOEXEC, IPPROTO_TCP);
}

/* The uid whose messages the receiver fd accepts: the owner of the runtime
 * directory holding its socket (RUNDIR/upstreams/ID.sock). */
static int receiver_daemon_uid(int fd, uid_t *uid)
{
	struct sockaddr_un sun;
	socklen_t len = sizeof(sun);
	char path[sizeof(sun.sun_path) + 1];
	struct stat st;
	char *slash;

	if (real_getsockname(fd, (struct sockaddr *)&sun, &len) < 0)
		return -1;
	if (sun.sun_family != AF_UNIX || len <= offsetof(struct sockaddr_un, sun_path) ||
	    sun.sun_path[0] == '\0') {
		errno = EINVAL;
		return -1;
	}
	len -= (socklen_t)offsetof(struct sockaddr_un, sun_path);
	memcpy(path, sun.sun_path, len);
	path[len] = '\0';
	for (int i = 0; i < 2; i++) {
		slash = strrchr(path, '/');
		if (!slash || slash == path) {
			errno = EINVAL;
			return -1;
		}
		*slash = '\0';
	}
	if (stat(path, &st) < 0)
		return -1;
	*uid = st.st_uid;
	return 0;
}

/* Is fd an AF_UNIX datagram socket (what handoff_listen() makes)? */
static bool is_receiver_socket(int fd)
{
	int domain = 0, type = 0;
	socklen_t len = sizeof(int);

	if (real_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &len) < 0)
		return false;
	len = sizeof(int);
	if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &len) < 0)
		return false;
	return domain == AF_UNIX && type == SOCK_DGRAM;
}

/* ---- the table ---- */

/* The hint: is fd possibly swapped? No lock, no system call. */
static bool maybe_swapped(int fd)
{
	return fd >= 0 && fd < MAX_TRACKED_FD && !inside_libhandoff &&
	       atomic_load_explicit(&shadow_by_fd[fd], memory_order_acquire) != NULL;
}

static void install_shadow(int fd, struct listener_shadow *sh)
{
	struct listener_shadow *old;

	pthread_mutex_lock(&shadow_lock);
	old = atomic_exchange_explicit(&shadow_by_fd[fd], sh, memory_order_acq_rel);
	pthread_mutex_unlock(&shadow_lock);
	free(old);
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
static bool known_listener(int fd, struct listener_shadow *out)
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
static bool turned_up(int fd, struct listener_shadow *out)
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
static void update_shadow(int fd, const struct listener_shadow *expected,
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

/* ---- bind: the swap ---- */

/* Record the options the server set on its TCP socket before bind(), as the
 * ones differing from a fresh socket of the same family. */
static void snapshot_options(int fd, struct listener_shadow *sh)
{
	int fresh = fresh_tcp_socket(sh->addr.sa.sa_family);

	if (fresh < 0)
		return;
	for (size_t i = 0; i < sizeof(known_options) / sizeof(known_options[0]); i++) {
		const struct option_id *id = &known_options[i];
		unsigned char mine[OPTION_VALUE_MAX], fresh_value[OPTION_VALUE_MAX];
		socklen_t mine_len = sizeof(mine), fresh_len = sizeof(fresh_value);

		memset(mine, 0, sizeof(mine));
		memset(fresh_value, 0, sizeof(fresh_value));
		if (real_getsockopt(fd, id->level, id->name, mine, &mine_len) < 0 ||
		    real_getsockopt(fresh, id->level, id->name, fresh_value, &fresh_len) < 0)
			continue;
		if (mine_len != fresh_len || memcmp(mine, fresh_value, mine_len) != 0)
			remember_option(sh, id->level, id->name, mine, mine_len);
	}
	real_close(fresh);
}

static void report_listen_failure(unsigned short port, int err)
{
	char dir[4096] = "?";
	char list[1024] = "";
	size_t used = 0;

	handoff_runtime_dir(dir, sizeof(dir));
	for (size_t i = 0; i < n_names; i++) {
		int n = snprintf(list + used, sizeof(list) - used, "%s%s", i ? "," : "", names[i]);
		if (n < 0 || (size_t)n >= sizeof(list) - used)
			break;
		used += (size_t)n;
	}
	if (err == ENOENT)
		fprintf(stderr, "handoff-preload: cannot take over port %u: runtime directory %s "
			"or its upstreams/ is missing; is `handoff serve` running with it?\n",
			port, dir);
	else if (err == EINVAL)
		fprintf(stderr, "handoff-preload: cannot take over port %u: HANDOFF_NAMES=\"%s\" "
			"is not a valid list of names\n", port, list);
	else
		fprintf(stderr, "handoff-preload: cannot take over port %u for %s in %s: %s\n",
			port, list, dir, strerror(err));
}

static int set_nonblocking(int fd)
{
	int flags = fcntl(fd, F_GETFL);

	return flags < 0 ? -1 : fcntl(fd, F_SETFL, flags | O_NONBLOCK);
}

/*
 * Replace the TCP socket fd, about to be bound to addr, by a receiver for
 * HANDOFF_NAMES (and the port's protocol) under the same descriptor number.
 * Returns 0, or -1 with errno (the server's bind() fails, and the reason
 * goes to stderr).
 */
static int swap_listener(int fd, const struct sockaddr *addr, socklen_t addr_len,
			 const struct handed_off_port *handed_off)
{
	unsigned short port = handed_off->port;
	struct listener_shadow *sh;
	int fd_flags, status_flags, receiver, saved;
	struct stat st;
	uid_t daemon_uid;

	if (fd >= MAX_TRACKED_FD) {
		fprintf(stderr, "handoff-preload: cannot take over port %u: descriptor %d "
			"is above %d\n", port, fd, MAX_TRACKED_FD - 1);
		errno = EMFILE;
		return -1;
	}
	fd_flags = fcntl(fd, F_GETFD);
	status_flags = fcntl(fd, F_GETFL);
	if (fd_flags < 0 || status_flags < 0)
		return -1;
	sh = calloc(1, sizeof(*sh));
	if (!sh)
		return -1;
	memcpy(&sh->addr, addr, addr_len);
	sh->addr_len = addr_len;
	snapshot_options(fd, sh);

	inside_libhandoff++;
	receiver = handoff_listen_protocol(NULL, names, n_names, handed_off->protocol,
					   HANDOFF_CLOEXEC);
	inside_libhandoff--;
	if (receiver < 0) {
		saved = errno;
		report_listen_failure(port, saved);
		free(sh);
		errno = saved;
		return -1;
	}
	if (receiver_daemon_uid(receiver, &daemon_uid) < 0 ||
	    dup3(receiver, fd, (fd_flags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
		goto fail;
	handoff_forget(receiver);
	real_close(receiver);
	receiver = -1;
	if (((status_flags & O_NONBLOCK) && set_nonblocking(fd) < 0) ||
	    fstat(fd, &st) < 0 || handoff_adopt(fd, daemon_uid) < 0)
		goto fail;
	sh->dev = st.st_dev;
	sh->ino = st.st_ino;
	sh->daemon_uid = daemon_uid;
	attach_metadata(fd, sh);
	install_shadow(fd, sh);
	return 0;

fail:
	saved = errno;
	fprintf(stderr, "handoff-preload: cannot take over port %u: %s\n", port, strerror(saved));
	if (receiver >= 0) {
		inside_libhandoff++;
		handoff_close(receiver);
		inside_libhandoff--;
	}
	free(sh);
	errno = saved;
	return -1;
}

/* Is this bind() one to take over: a TCP socket of the address's family,
 * bound to one of HANDOFF_PORTS? Sets *handed_off to that port's entry. */
static bool wants_swap(int fd, const struct sockaddr *addr, socklen_t len,
		       const struct handed_off_port **handed_off)
{
	int domain = 0, type = 0, protocol = 0;
	socklen_t optlen;
	unsigned short port;

	if (!addr || n_ports == 0)
		return false;
	if (addr->sa_family == AF_INET && len >= sizeof(struct sockaddr_in))
		port = ntohs(((const struct sockaddr_in *)addr)->sin_port);
	else if (addr->sa_family == AF_INET6 && len >= sizeof(struct sockaddr_in6))
		port = ntohs(((const struct sockaddr_in6 *)addr)->sin6_port);
	else
		return false;
	*handed_off = handed_off_port(port);
	if (!*handed_off)
		return false;
	optlen = sizeof(int);
	if (real_getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &optlen) < 0)
		return false;
	optlen = sizeof(int);
	if (real_getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &optlen) < 0)
		return false;
	optlen = sizeof(int);
	if (real_getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &protocol, &optlen) < 0)
		return false;
	return domain == addr->sa_family && type == SOCK_STREAM && protocol == IPPROTO_TCP;
}

/* The address getsockname() reports for a bound TCP socket. */
static socklen_t canonical_address(const struct sockaddr *addr, void *out)
{
	if (addr->sa_family == AF_INET) {
		struct sockaddr_in in;
		memcpy(&in, addr, sizeof(in));
		memset(in.sin_zero, 0, sizeof(in.sin_zero));
		memcpy(out, &in, sizeof(in));
		return sizeof(in);
	}
	struct sockaddr_in6 in6;
	memcpy(&in6, addr, sizeof(in6));
	in6.sin6_flowinfo = 0;
	memcpy(out, &in6, sizeof(in6));
	return sizeof(in6);
}

PRELOAD_API int bind(int fd, __CONST_SOCKADDR_ARG addr_arg, socklen_t len)
{
	const struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct listener_shadow sh;
	union {
		struct sockaddr sa;
		struct sockaddr_in6 in6;
	} canonical;
	struct sockaddr_storage current;
	socklen_t current_len = sizeof(current), canonical_len;
	const struct handed_off_port *handed_off;

	ensure_settings();
	if (known_listener(fd, &sh)) {
		errno = EINVAL;		/* already bound, as TCP says */
		return -1;
	}
	if (!wants_swap(fd, addr, len, &handed_off))
		return real_bind(fd, addr, len);
	/* An already bound socket fails as TCP's would. */
	if (real_getsockname(fd, (struct sockaddr *)&current, &current_len) < 0)
		return -1;
	if ((current.ss_family == AF_INET && ((struct sockaddr_in *)&current)->sin_port) ||
	    (current.ss_family == AF_INET6 && ((struct sockaddr_in6 *)&current)->sin6_port)) {
		errno = EINVAL;
		return -1;
	}
	canonical_len = canonical_address(addr, &canonical);
	return swap_listener(fd, &canonical.sa, canonical_len, handed_off);
}

/* ---- listen ---- */

static void mark_listening(struct listener_shadow *sh, const void *arg)
{
	(void)arg;
	sh->listening = true;
}

PRELOAD_API int listen(int fd, int backlog)
{
	struct listener_shadow sh;
	int rc;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_listen(fd, backlog);
		/* A datagram socket cannot listen: a receiver after all? */
		if (rc == 0 || errno != EOPNOTSUPP || !turned_up(fd, &sh))
			return rc;
	}
	/* The backlog is the daemon's; a second listen() only changes it. */
	if (!sh.listening)
		update_shadow(fd, &sh, mark_listening, NULL);
	return 0;
}

/* ---- accept ---- */

/* The client address as a socket of the listener's family would see it. */
static socklen_t convert_peer(int listener_family, struct sockaddr_storage *peer, socklen_t len)
{
	if (listener_family == AF_INET6 && peer->ss_family == AF_INET) {
		struct sockaddr_in in;
		struct sockaddr_in6 mapped = { .sin6_family = AF_INET6 };

		memcpy(&in, peer, sizeof(in));
		mapped.sin6_port = in.sin_port;
		mapped.sin6_addr.s6_addr[10] = 0xff;
		mapped.sin6_addr.s6_addr[11] = 0xff;
		memcpy(&mapped.sin6_addr.s6_addr[12], &in.sin_addr, 4);
		memcpy(peer, &mapped, sizeof(mapped));
		return sizeof(mapped);
	}
	if (listener_family == AF_INET && peer->ss_family == AF_INET6) {
		struct sockaddr_in6 in6;
		struct sockaddr_in in = { .sin_family = AF_INET };

		memcpy(&in6, peer, sizeof(in6));
		if (!IN6_IS_ADDR_V4MAPPED(&in6.sin6_addr))
			return len;
		in.sin_port = in6.sin6_port;
		memcpy(&in.sin_addr, &in6.sin6_addr.s6_addr[12], 4);
		memcpy(peer, &in, sizeof(in));
		return sizeof(in);
	}
	return len;
}

/* Give the accepted socket the options TCP copies from a listener. Best
 * effort: a family-specific option fails on the other family, harmlessly. */
static void apply_inherited_options(int conn, const struct listener_shadow *sh)
{
	for (size_t i = 0; i < sh->n_options; i++) {
		const struct remembered_option *o = &sh->options[i];
		const struct option_id *id = known_option(o->level, o->name);
		int halved;

		if (!id || !id->inherited)
			continue;
		if (o->level == SOL_SOCKET && (o->name == SO_RCVBUF || o->name == SO_SNDBUF) &&
		    o->len == sizeof(int)) {
			/* The kernel reports twice what was asked; ask the same. */
			memcpy(&halved, o->value, sizeof(halved));
			halved /= 2;
			real_setsockopt(conn, o->level, o->name, &halved, sizeof(halved));
			continue;
		}
		real_setsockopt(conn, o->level, o->name, o->value,
				o->level == IPPROTO_TCP && o->name == TCP_CONGESTION
					? (socklen_t)strnlen((const char *)o->value, o->len) : o->len);
	}
}

static int accept_handoff(int fd, struct sockaddr *addr, socklen_t *addrlen, int flags,
			  const struct listener_shadow *sh)
{
	struct sockaddr_storage peer;
	socklen_t peer_len = sizeof(peer);
	int conn;

	if (flags & ~(SOCK_NONBLOCK | SOCK_CLOEXEC) || !sh->listening) {
		errno = EINVAL;
		return -1;
	}
	if (addr && !addrlen) {
		errno = EFAULT;
		return -1;
	}
	struct handoff_info info;
	struct peer_override *po = NULL;

	inside_libhandoff++;
	conn = handoff_accept(fd, (struct sockaddr *)&peer, &peer_len, flags, &info);
	inside_libhandoff--;
	if (conn < 0)
		return -1;
	bool differs = false;

	if (info.peer_len > 0 && info.peer_len <= sizeof(peer) &&
	    (info.peer_len != peer_len || memcmp(&info.peer, &peer, peer_len) != 0)) {
		memcpy(&peer, &info.peer, info.peer_len);
		peer_len = info.peer_len;
		differs = true;
	}
	sa_family_t family = peer.ss_family;
	peer_len = convert_peer(sh->addr.sa.sa_family, &peer, peer_len);
	/* getpeername() must agree with accept(): the PROXY client, or the
	 * v4-mapped form an IPv6 listener would have given. */
	if (differs || peer.ss_family != family) {
		struct stat st;

		po = malloc(sizeof(*po));
		if (po != NULL && fstat(conn, &st) == 0) {
			po->ino = st.st_ino;
			po->addr = peer;
			po->len = peer_len;
		} else {
			free(po);
			po = NULL;
		}
	}
	/* Also clears what a reused descriptor number may have left. */
	set_peer_override(conn, po);
	apply_inherited_options(conn, sh);
	if (addr) {
		memcpy(addr, &peer, *addrlen < peer_len ? *addrlen : peer_len);
		*addrlen = peer_len;
	}
	return conn;
}

PRELOAD_API int accept4(int fd, __SOCKADDR_ARG addr_arg, socklen_t *restrict addrlen, int flags)
{
	struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct listener_shadow sh;
	int rc;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_accept4(fd, addr, addrlen, flags);
		if (rc >= 0 || errno != EOPNOTSUPP || !turned_up(fd, &sh))
			return rc;
	}
	return accept_handoff(fd, addr, addrlen, flags, &sh);
}

PRELOAD_API int accept(int fd, __SOCKADDR_ARG addr_arg, socklen_t *restrict addrlen)
{
	struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct listener_shadow sh;
	int rc;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_accept(fd, addr, addrlen);
		if (rc >= 0 || errno != EOPNOTSUPP || !turned_up(fd, &sh))
			return rc;
	}
	/* accept() is accept4() with no flags: blocking, inheritable. */
	return accept_handoff(fd, addr, addrlen, 0, &sh);
}

PRELOAD_API int getpeername(int fd, __SOCKADDR_ARG addr_arg, socklen_t *restrict len)
{
	struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct peer_override po;
	struct stat st;

	ensure_symbols();
	if (!get_peer_override(fd, &po) || fstat(fd, &st) < 0 || st.st_ino != po.ino)
		return real_getpeername(fd, addr, len);
	if (!len || (!addr && *len)) {
		errno = EFAULT;
		return -1;
	}
	memcpy(addr, &po.addr, *len < po.len ? *len : po.len);
	*len = po.len;
	return 0;
}

/* ---- getsockname, getsockopt, setsockopt ---- */

PRELOAD_API int getsockname(int fd, __SOCKADDR_ARG addr_arg, socklen_t *restrict len)
{
	struct sockaddr *addr = SOCKADDR_PTR(addr_arg);
	struct listener_shadow sh;
	int rc;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_getsockname(fd, addr, len);
		if (rc < 0 || !addr || *len < sizeof(sa_family_t) || addr->sa_family != AF_UNIX ||
		    !turned_up(fd, &sh))
			return rc;
	}
	if (!len || (!addr && *len)) {
		errno = EFAULT;
		return -1;
	}
	memcpy(addr, &sh.addr, *len < sh.addr_len ? *len : sh.addr_len);
	*len = sh.addr_len;
	return 0;
}

/* Copy value as the kernel copies an option: at most *len bytes. */
static int answer_option(void *out, socklen_t *len, const void *value, socklen_t value_len)
{
	if (!len) {
		errno = EFAULT;
		return -1;
	}
	if ((int)*len < 0) {
		errno = EINVAL;
		return -1;
	}
	if (value_len < *len)
		*len = value_len;
	if (*len && !out) {
		errno = EFAULT;
		return -1;
	}
	memcpy(out, value, *len);
	return 0;
}

/* Does a getsockopt() answer, or its failure, sound like a datagram
 * socket, so that fd may be a receiver after all? */
static bool datagram_answer(int rc, int level, int name, const void *value, socklen_t len)
{
	int v;

	if (rc < 0)
		return errno == EOPNOTSUPP || errno == ENOPROTOOPT;
	if (level != SOL_SOCKET || !value || len < sizeof(int))
		return false;
	memcpy(&v, value, sizeof(v));
	return (name == SO_TYPE && v == SOCK_DGRAM) || (name == SO_DOMAIN && v == AF_UNIX) ||
	       (name == SO_PROTOCOL && v == 0) || (name == SO_ACCEPTCONN && v == 0);
}

PRELOAD_API int getsockopt(int fd, int level, int name, void *restrict value, socklen_t *restrict len)
{
	struct listener_shadow sh;
	const struct remembered_option *o;
	int answer, fresh, rc, saved;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_getsockopt(fd, level, name, value, len);
		if (!datagram_answer(rc, level, name, value, len ? *len : 0) ||
		    !turned_up(fd, &sh))
			return rc;
	}
	if (level == SOL_SOCKET) {
		switch (name) {
		case SO_TYPE:		answer = SOCK_STREAM; break;
		case SO_DOMAIN:		answer = sh.addr.sa.sa_family; break;
		case SO_PROTOCOL:	answer = IPPROTO_TCP; break;
		case SO_ACCEPTCONN:	answer = sh.listening; break;
		case SO_ERROR:		answer = 0; break;
		default:
			if (is_timeout_option(level, name))
				return real_getsockopt(fd, level, name, value, len);
			goto not_fixed;
		}
		return answer_option(value, len, &answer, sizeof(answer));
	}
not_fixed:
	o = find_option(&sh, level, name);
	if (o)
		return answer_option(value, len, o->value, o->len);
	/* Never set: whatever a fresh TCP socket of that family says. */
	fresh = fresh_tcp_socket(sh.addr.sa.sa_family);
	if (fresh < 0)
		return -1;
	rc = real_getsockopt(fresh, level, name, value, len);
	saved = errno;
	real_close(fresh);
	errno = saved;
	return rc;
}

struct option_change {
	int level;
	int name;
	const void *value;
	socklen_t len;
};

static void store_option(struct listener_shadow *sh, const void *arg)
{
	const struct option_change *c = arg;

	remember_option(sh, c->level, c->name, c->value, c->len);
}

PRELOAD_API int setsockopt(int fd, int level, int name, const void *value, socklen_t len)
{
	struct listener_shadow sh;
	unsigned char normalised[OPTION_VALUE_MAX];
	socklen_t normalised_len = sizeof(normalised);
	struct option_change change = { level, name, value, len };
	int fresh, saved, rc;

	ensure_settings();
	if (!known_listener(fd, &sh)) {
		rc = real_setsockopt(fd, level, name, value, len);
		/* TCP options fail on a datagram socket: a receiver after all? */
		if (rc == 0 || (errno != EOPNOTSUPP && errno != ENOPROTOOPT) || !turned_up(fd, &sh))
			return rc;
	}
	/* Receive timeouts bound a blocking accept(), which is a recvmsg()
	 * on the receiver now. */
	if (is_timeout_option(level, name))
		return real_setsockopt(fd, level, name, value, len);
	/* TCP refuses to change the address family's scope once bound. */
	if (level == IPPROTO_IPV6 && name == IPV6_V6ONLY && sh.addr.sa.sa_family == AF_INET6) {
		errno = EINVAL;
		return -1;
	}
	/* Let the kernel judge the option on a TCP socket of the same family,
	 * and remember the value it then reports (booleans as 0/1, buffer
	 * sizes doubled, ...). Without a spare descriptor, remember it as given. */
	fresh = fresh_tcp_socket(sh.addr.sa.sa_family);
	if (fresh >= 0) {
		if (real_setsockopt(fresh, level, name, value, len) < 0) {
			saved = errno;
			real_close(fresh);
			errno = saved;
			return -1;
		}
		memset(normalised, 0, sizeof(normalised));
		if (real_getsockopt(fresh, level, name, normalised, &normalised_len) == 0) {
			change.value = normalised;
			change.len = normalised_len;
		}
		real_close(fresh);
	}
	update_shadow(fd, &sh, store_option, &change);
	return 0;
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
