/* wire.h - the datagram the daemon sends to a local upstream with each connection. */
#ifndef HANDOFF_WIRE_H
#define HANDOFF_WIRE_H

#include <stdint.h>
#include <sys/socket.h>

/*
 * One handed-off connection = one SOCK_DGRAM message on the upstream's Unix
 * socket: this fixed header as the payload, and exactly one descriptor (the
 * client's TCP socket) in an SCM_RIGHTS control message. Both ends run on the
 * same host, so fields are in host byte order. A receiver accepts any message
 * whose magic matches, whose version it knows and whose size is at least the
 * size of the version it knows; newer versions only append fields.
 */
#define WIRE_MAGIC	0x46464f48u	/* "HOFF" in little-endian memory */
#define WIRE_VERSION	1

enum wire_protocol {
	WIRE_PROTO_TLS = 1,
	WIRE_PROTO_HTTP = 2,
	WIRE_PROTO_SSH = 3,	/* detect listener: an SSH client */
	WIRE_PROTO_SILENT = 4,	/* detect listener: a client waiting for the server to speak */
};

struct wire_header {
	uint32_t magic;
	uint16_t version;
	uint16_t size;			/* sizeof(struct wire_header) of the sender */
	uint8_t protocol;		/* enum wire_protocol */
	uint8_t name_len;		/* bytes in name, 0 if the client sent none */
	uint8_t alpn_len;		/* bytes in alpn (TLS ALPN list, wire form) */
	uint8_t flags;			/* WIRE_FLAG_* */
	uint32_t local_len;		/* valid bytes in local; 0: ask the socket */
	uint32_t peer_len;		/* valid bytes in peer */
	uint64_t accepted_us;		/* CLOCK_REALTIME microseconds at accept */
	struct sockaddr_storage local;	/* the listener's address the client reached */
	struct sockaddr_storage peer;	/* the client's address as the daemon knows it */
	char name[256];			/* normalised name, NUL-terminated */
	uint8_t alpn[256];
};

/* peer is the socket's own peer address (no PROXY header came in between),
 * so the receiver need not ask the socket for it. */
#define WIRE_FLAG_PEER_IS_SOCKET	0x01

/*
 * The other message a receiver takes: a connection a server made to the
 * address of one of its own taken-over listeners (lib/preload_connect.c),
 * sent by the server to its own receiver, with the server's end of that
 * connection as the one descriptor. Taken only from the receiving process's
 * own uid (or root) and only with the token every process of that server
 * shares (made when its first receiver is registered, inherited by fork()),
 * so no other local user, and no process the token never reached, can
 * queue a connection this way.
 */
#define WIRE_LOCAL_MAGIC	0x4c464f48u	/* "HOFL" in little-endian memory */
#define WIRE_LOCAL_TOKEN_LEN	32

struct wire_local {
	uint32_t magic;
	uint32_t size;			/* sizeof(struct wire_local) */
	uint8_t token[WIRE_LOCAL_TOKEN_LEN];
	uint32_t peer_len;		/* valid bytes in peer */
	struct sockaddr_storage peer;	/* the connecting socket's address */
};

#define WIRE_DIR_UPSTREAMS	"upstreams"	/* under the runtime directory */
#define WIRE_SOCK_SUFFIX	".sock"
#define WIRE_NAMES_SUFFIX	".names"
/* An optional line of ID.names: "protocol tls" or "protocol http"; or
 * "protocol ssh" or "protocol silent" in a names file that lists no names
 * (the upstream takes that protocol's clients of detect listeners). */
#define WIRE_NAMES_PROTOCOL	"protocol"
/* An optional line of ID.names: "family ipv4" or "family ipv6", the only
 * clients the receiver can take (a server's IPv4 listener, or an IPv6 one
 * with IPV6_V6ONLY). Without it, clients of both families. An IPv4 client
 * is one with an IPv4 address, plain or v4-mapped. */
#define WIRE_NAMES_FAMILY	"family"
/* Optional lines of ID.names: "alpn ID [ID ...]", the ALPN protocol ids
 * (e.g. acme-tls/1) of the only clients the upstream takes for its names:
 * those offering one of them. At most WIRE_NAMES_ALPN_MAX ids in all. */
#define WIRE_NAMES_ALPN		"alpn"
#define WIRE_NAMES_ALPN_MAX	8
#define WIRE_STATUS_SUFFIX	".status"	/* written by the daemon: "registered" / "refused: why" */

#endif
