/* preload.h - what the parts of libhandoff-preload.so share: the listener shadow, the real C library functions, the settings. */
#ifndef HANDOFF_PRELOAD_H
#define HANDOFF_PRELOAD_H

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
#include <sys/socket.h>
#include <sys/types.h>

#include "handoff.h"
#include "handoff_internal.h"

/* Everything is built with -fvisibility=hidden: only the hooks are exported. */
#define PRELOAD_API __attribute__((visibility("default")))

/* Descriptors at or above this number are never swapped (bind fails). */
#define MAX_TRACKED_FD		65536
#define MAX_NAMES		64
#define MAX_ALPN_IDS		8	/* WIRE_NAMES_ALPN_MAX */
#define MAX_PORTS		64
#define MAX_REMEMBERED		32
#define OPTION_VALUE_MAX	16	/* an int, struct linger, a congestion control name */

/* Under _GNU_SOURCE glibc declares the socket calls with transparent
 * unions, and the definitions of the hooks must match those declarations.
 * musl (the build for Alpine images) declares them with plain pointers. */
#if defined(__GLIBC__)
#if !defined(__cplusplus) && __GNUC_PREREQ(2, 7) && defined(__USE_GNU)
#define SOCKADDR_PTR(arg)	((arg).__sockaddr__)
#else
#define SOCKADDR_PTR(arg)	(arg)
#endif
#else
#define SOCKADDR_PTR(arg)	(arg)
#define __SOCKADDR_ARG		struct sockaddr *restrict
#define __CONST_SOCKADDR_ARG	const struct sockaddr *
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
 * Accepted connections whose addresses are not the socket's own: the
 * daemon's listener accepted a PROXY header from a load balancer, so the
 * real client is in the handoff header, or the socket's family is not the
 * server's listener's (an IPv6 listener sees an IPv4 connection's
 * addresses v4-mapped, an IPv4 one a v4-mapped connection's as IPv4).
 * getpeername() answers with addr, getsockname() with local when
 * local_len is not 0. The socket's inode guards against a descriptor
 * number reused after a close this library did not see (fclose() and
 * other internal closes).
 */
struct peer_override {
	ino_t ino;
	socklen_t len;
	struct sockaddr_storage addr;
	socklen_t local_len;
	struct sockaddr_storage local;
};

/* One HANDOFF_PORTS entry. */
struct handed_off_port {
	unsigned short port;
	enum handoff_protocol protocol;	/* 0: connections of either protocol */
};

/* A socket option a TCP listener may carry. */
struct option_id {
	int level;
	int name;
	bool inherited;		/* TCP passes it from listener to accepted socket */
};

/* ---- preload.c: symbols, settings, the tables, close() ---- */

/* The real functions, found with dlsym(RTLD_NEXT) on first use. */
extern int (*real_bind)(int, const struct sockaddr *, socklen_t);
extern int (*real_listen)(int, int);
extern int (*real_accept)(int, struct sockaddr *, socklen_t *);
extern int (*real_accept4)(int, struct sockaddr *, socklen_t *, int);
extern int (*real_getsockname)(int, struct sockaddr *, socklen_t *);
extern int (*real_getsockopt)(int, int, int, void *, socklen_t *);
extern int (*real_setsockopt)(int, int, int, const void *, socklen_t);
extern int (*real_close)(int);
extern int (*real_getpeername)(int, struct sockaddr *, socklen_t *);
extern int (*real_connect)(int, const struct sockaddr *, socklen_t);

/*
 * Non-zero while this thread runs libhandoff's code for us (handoff_listen,
 * handoff_accept): its bind(), getsockopt() and close() calls reach the
 * hooks too, and must go straight to the C library.
 */
extern _Thread_local unsigned inside_libhandoff;

/* HANDOFF_PORTS and HANDOFF_NAMES, read once by ensure_settings(). */
extern size_t n_ports;
extern const char *names[MAX_NAMES];
extern size_t n_names;
extern const char *alpn_ids[MAX_ALPN_IDS];	/* HANDOFF_ALPN */
extern size_t n_alpn_ids;

void ensure_symbols(void);
void ensure_settings(void);
/* The HANDOFF_PORTS entry for port, NULL if its listeners stay TCP. */
const struct handed_off_port *handed_off_port(unsigned short port);

void set_peer_override(int fd, struct peer_override *po);
bool get_peer_override(int fd, struct peer_override *out);

void install_shadow(int fd, struct listener_shadow *sh);
/* Is fd a listener this process swapped or recognised? Copies its shadow. */
bool known_listener(int fd, struct listener_shadow *out);
/* A call on fd answered as a datagram socket would: is it a receiver
 * carrying a listener's description after all? Adopts it if so. */
bool turned_up(int fd, struct listener_shadow *out);
/* Call visit with each listener this process swapped or recognised and a
 * copy of its shadow, while it returns true. */
void each_listener(bool (*visit)(int fd, const struct listener_shadow *sh, void *arg),
		   void *arg);
void update_shadow(int fd, const struct listener_shadow *expected,
		   void (*change)(struct listener_shadow *, const void *), const void *arg);

/* ---- preload_accept.c ---- */

/* An address as a socket of listener_family reports it: IPv4 as v4-mapped
 * IPv6 for an IPv6 listener, v4-mapped IPv6 as IPv4 for an IPv4 one.
 * Returns the new length. */
socklen_t convert_address(int listener_family, struct sockaddr_storage *addr, socklen_t len);
/* fd's override (struct peer_override), if fd is still the socket it was
 * made for. */
bool current_peer_override(int fd, struct peer_override *out);

/* ---- preload_describe.c: remembered options, the description on the socket ---- */

extern const struct option_id known_options[];
extern const size_t n_known_options;

const struct option_id *known_option(int level, int name);
bool is_timeout_option(int level, int name);
void remember_option(struct listener_shadow *sh, int level, int name,
		     const void *value, socklen_t len);
const struct remembered_option *find_option(const struct listener_shadow *sh,
					    int level, int name);
void attach_metadata(int fd, const struct listener_shadow *sh);
bool read_metadata(int fd, struct listener_shadow *sh);
int fresh_tcp_socket(int family);
int receiver_daemon_uid(int fd, uid_t *uid);
bool is_receiver_socket(int fd);
/* Is fd a TCP socket of the given family (SO_DOMAIN, SO_TYPE, SO_PROTOCOL)? */
bool is_tcp_socket(int fd, int family);

#endif
