/* config.h - the daemon's configuration: load, validate, query grants. */
#ifndef HANDOFF_CONFIG_H
#define HANDOFF_CONFIG_H

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/socket.h>
#include <sys/types.h>

enum listener_proto {
	LISTENER_TLS = 1,	/* route by TLS SNI */
	LISTENER_HTTP = 2,	/* route by HTTP/1 Host */
	LISTENER_DETECT = 3,	/* tell TLS, HTTP, SSH and silent clients apart, then route */
};

/* What a connection turns out to speak: its listener's protocol, or on a
 * detect listener what its first bytes (or their absence) say. TLS and
 * HTTP have the values of the listener protocols. */
enum client_proto {
	PROTO_TLS = LISTENER_TLS,
	PROTO_HTTP = LISTENER_HTTP,
	PROTO_SSH = 3,		/* an SSH identification line */
	PROTO_SILENT = 4,	/* nothing within detect-timeout: the server speaks first */
};

/* Route keys of the protocols that carry no name ("protocol ssh" in the
 * configuration and in names files). No host name contains a ':'. */
#define PROTOCOL_KEY_SSH	"protocol:ssh"
#define PROTOCOL_KEY_SILENT	"protocol:silent"

/* An ALPN protocol id as configured or claimed: 1..255 bytes of visible ASCII. */
#define ALPN_ID_MAX 255

/* A trusted source of PROXY protocol headers: address/prefix. */
struct config_cidr {
	int family;			/* AF_INET or AF_INET6 */
	unsigned char addr[16];
	unsigned prefix;
};

#define CONFIG_MAX_TRUSTED 16

struct config_listener {
	struct sockaddr_storage addr;
	socklen_t addrlen;
	enum listener_proto proto;
	int v6only;			/* -1: leave the system default, 0 or 1 */
	int backlog;
	char default_name[256];		/* route for unnamed/unknown names, "" if none */
	unsigned detect_timeout_ms;	/* detect: silence after which a client counts as silent */
	unsigned defer_accept_s;	/* TCP_DEFER_ACCEPT: seconds a silent client waits in the kernel; 0 off */
	char text[80];			/* "127.0.0.1:8443" / "[::]:443", for logs */
	int line;			/* where it was declared */
	struct config_cidr trusted[CONFIG_MAX_TRUSTED];	/* accept-proxy sources */
	size_t n_trusted;		/* 0: no PROXY header expected */
};

enum balance {
	BALANCE_ROUND_ROBIN = 0,	/* smooth weighted round robin */
	BALANCE_LEAST_CONN,		/* fewest active connections per weight */
};

/* One TCP address a route relays to (a host name yields one per address). */
struct config_target {
	char text[300];			/* "tcp:HOST:PORT" as written */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	unsigned weight;
};

struct config_route {
	char pattern[256];		/* name, *.suffix, * or a PROTOCOL_KEY_* */
	char alpn[ALPN_ID_MAX + 1];	/* only clients offering this ALPN protocol; "" = any */
	struct config_target *targets;
	size_t n_targets;
	enum balance balance;
	int proxy_version;		/* PROXY header sent to TCP targets: 0 (none), 1 or 2 */
	unsigned connect_timeout_ms;
	unsigned idle_timeout_ms;	/* relayed connection with no byte either way */
	unsigned fail_after;		/* consecutive failures that take a target out */
	unsigned retry_after_ms;	/* ... for this long */
	unsigned check_interval_ms;	/* active TCP connect checks; 0 = passive only */
	int line;
};

struct config_grant {			/* one per pattern; grant lines for it accumulate */
	char pattern[256];		/* "a.example", "*.apps.example", "*" or a PROTOCOL_KEY_* */
	uid_t *uids;
	size_t n_uids;
	gid_t *gids;			/* any member of these groups may claim */
	size_t n_gids;
	int line;
};

/* The admin endpoint (admin.c): off unless an `admin` line gives its address. */
#define CONFIG_MAX_ADMIN_ALLOW 16
struct config_admin {
	bool enabled;
	bool is_unix;			/* unix:PATH instead of an IP address */
	char unix_path[108];		/* sizeof sun_path */
	struct sockaddr_storage addr;
	socklen_t addrlen;
	char text[140];			/* "127.0.0.1:9180" or "unix:/run/handoff/admin.sock" */
	int line;			/* where `admin ADDRESS` was given */
	struct config_cidr allow[CONFIG_MAX_ADMIN_ALLOW];	/* `admin allow`: the only clients served */
	size_t n_allow;
};

struct config {
	char source[PATH_MAX];		/* file name, or "(built-in)" */
	char runtime_dir[PATH_MAX];
	char access_log[PATH_MAX];	/* "stderr", "off" or a file path */
	unsigned peek_timeout_ms;	/* total time to learn the name */
	unsigned handoff_timeout_ms;	/* longest wait for room at a busy upstream */
	unsigned max_peeking;		/* connections in the peek phase, all listeners */
	unsigned max_per_ip;		/* peek-phase connections per client address */
	unsigned ipv6_prefix;		/* IPv6 clients count per this prefix length (1..128) */
	unsigned max_pending;		/* connections waiting per upstream */
	unsigned max_relays;		/* relayed (or connecting) connections in all */
	unsigned max_relays_per_ip;	/* ... from one client address */
	unsigned workers;		/* accepting threads; 1: the event loop accepts */
	struct config_listener *listeners;
	size_t n_listeners;
	struct config_grant *grants;
	size_t n_grants;
	struct config_route *routes;
	size_t n_routes;
	struct config_admin admin;
	/* `user` / `group`: who the daemon becomes once its listeners are open
	 * and its runtime directory made (privileges.c). */
	char user[64];			/* "" if no `user` line: stay as started */
	uid_t user_uid;
	gid_t user_gid;			/* `group`, else the user's primary group */
	int user_line;			/* where `user` was given, 0 if not */
	char group[64];			/* "" if no `group` line */
};

/* The configuration used when no -c is given (the demo). */
extern const char config_builtin[];

/*
 * Parse a configuration. On error return -1 and write one line,
 * "FILE:LINE: what is wrong (what to do)", into err, and leave *out empty
 * (config_free on it is harmless). On success return 0; release with
 * config_free(). *out is overwritten, not freed, in both cases.
 * config_load_string names the text label in messages and in source.
 */
int config_load_file(const char *path, struct config *out, char *err, size_t errlen);
int config_load_string(const char *text, const char *label, struct config *out,
		       char *err, size_t errlen);
void config_free(struct config *cfg);

/* True if some grant covering name (exact, wildcard or pattern) lists uid,
 * directly or through membership of a granted group. A PROTOCOL_KEY_* is
 * covered only by a grant for exactly that protocol. */
bool config_may_claim(const struct config *cfg, const char *name, uid_t uid);

/* A protocol word ("ssh", "silent") to its route key, NULL for others. */
const char *config_protocol_key(const char *word);

/* True if text (len bytes) is a valid ALPN id: 1..ALPN_ID_MAX bytes, visible ASCII. */
bool config_alpn_valid(const char *text, size_t len);

/* True if addr lies in one of the listener's accept-proxy sources. */
bool config_is_trusted(const struct config_listener *l, const struct sockaddr_storage *addr);

/* Whether the admin endpoint serves a client at addr: one in an `admin
 * allow` range, or with none given, a loopback client. */
bool config_admin_allows(const struct config_admin *admin, const struct sockaddr *addr);

/* The uid and gid the daemon serves as: the `user` line's if given, else
 * its effective ids now. The runtime directory belongs to them. */
uid_t config_service_uid(const struct config *cfg);
gid_t config_service_gid(const struct config *cfg);

/* Default runtime directory for the calling user: libhandoff's rule without
 * $HANDOFF_RUNTIME_DIR, which the daemon ignores. */
void config_default_runtime_dir(char *buf, size_t bufsize);

#endif
