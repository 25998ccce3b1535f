/* proxy_proto.h - PROXY protocol v1/v2 header encoder and decoder (pure, no I/O, no allocation). */
#ifndef HANDOFF_PROXY_PROTO_H
#define HANDOFF_PROXY_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include "peek.h"

/* Longest v1 line the specification allows, CRLF included. */
#define PROXY_V1_MAX		107

/* Fixed part of a v2 header: signature, version/command, family, length. */
#define PROXY_V2_FIXED		16

/* Longest v2 header we accept (fixed part + length field). The field could
 * announce 64 KiB, but real headers are a few hundred bytes; refusing more
 * keeps a broken sender from making us wait for bytes that never come. */
#define PROXY_V2_MAX		4096

/* Bounds on the TLVs we send and accept. */
#define PROXY_AUTHORITY_MAX	PEEK_NAME_MAX
#define PROXY_ALPN_MAX		PEEK_ALPN_MAX

/* Largest header proxy_proto_encode can produce: v2 over IPv6 with both TLVs.
 * An output buffer of this size is always big enough. */
#define PROXY_ENCODED_MAX	(PROXY_V2_FIXED + 36 + 3 + PROXY_ALPN_MAX + 3 + PROXY_AUTHORITY_MAX)

/* v2 TLV types from the specification that this code reads or writes. */
#define PP2_TYPE_ALPN		0x01
#define PP2_TYPE_AUTHORITY	0x02
#define PP2_TYPE_CRC32C		0x03
#define PP2_TYPE_NOOP		0x04

/* What the v2 encoder may add after the addresses; v1 has no room for it. */
struct proxy_tlvs {
	const char *authority;	/* SNI or Host name, NUL-terminated; NULL or "" to omit */
	const uint8_t *alpn;	/* the client's first offered ALPN protocol, without */
	size_t alpn_len;	/* its length prefix; NULL or 0 bytes to omit */
};

/*
 * Write a PROXY protocol header for a TCP connection from src (the client)
 * to dst (the address it connected to) into out, version 1 (text) or 2
 * (binary). Returns the number of bytes written, or 0 when version is not 1
 * or 2, the header does not fit in cap bytes, or (v2) the authority is
 * longer than PROXY_AUTHORITY_MAX or the ALPN protocol longer than
 * PROXY_ALPN_MAX; out is left untouched then.
 *
 * Both addresses IPv4: "TCP4" / family 0x11. Both IPv6: "TCP6" / 0x21. One
 * of each: the IPv4 one is sent as its v4-mapped IPv6 address (::ffff:a.b.c.d)
 * over "TCP6" / 0x21. Anything else (a NULL address, AF_UNIX, ...): v1 sends
 * "PROXY UNKNOWN\r\n", v2 the PROXY command with family 0x00 and an empty
 * block, which receivers take as "use the connection's own addresses".
 * IPv6 scope ids and flow labels are not carried.
 *
 * v1 writes IPv6 addresses as RFC 5952 text, always in hexadecimal groups
 * (a v4-mapped address is ::ffff:c000:201, not ::ffff:192.0.2.1) as the
 * specification asks. v2 appends PP2_TYPE_ALPN then PP2_TYPE_AUTHORITY when
 * tlvs (which may be NULL) provides them, and nothing else: no SSL TLV since
 * TLS is not terminated here, no checksum, no padding.
 */
size_t proxy_proto_encode(uint8_t *out, size_t cap, int version, const struct sockaddr_storage *src,
			  const struct sockaddr_storage *dst, const struct proxy_tlvs *tlvs);

struct proxy_result {
	size_t header_len;	/* FOUND: length of the header; the client's data follows it */
	size_t consumed;	/* bytes the verdict depends on: header_len when FOUND, len when
				 * NEED_MORE, up to and including the offending byte when INVALID */
	int version;		/* FOUND: 1 or 2; otherwise 0 */
	bool is_local;		/* FOUND without addresses (v2 LOCAL, v2 family 0x00,
				 * v1 UNKNOWN): use the connection's own endpoints */
	struct sockaddr_storage src;	/* FOUND and !is_local: the client, AF_INET or AF_INET6 */
	struct sockaddr_storage dst;	/* same family: the address the client connected to */
	char authority[PROXY_AUTHORITY_MAX + 1];	/* v2 PP2_TYPE_AUTHORITY as sent (not
							 * normalised), NUL-terminated; "" if absent */
	size_t authority_len;
	uint8_t alpn[PROXY_ALPN_MAX];	/* v2 PP2_TYPE_ALPN as sent, alpn_len bytes; 0 if absent */
	size_t alpn_len;
	const char *why;	/* INVALID: static string for the log; otherwise NULL */
};

/*
 * Decode the PROXY protocol header at the start of buf, version 1 or 2 (the
 * first byte tells which), following the project's parser contract:
 *
 *   PEEK_NEED_MORE  buf is a valid beginning of a header; read more.
 *   PEEK_FOUND      a complete header of out->header_len bytes (<= len).
 *   PEEK_INVALID    not a header we accept; out->why says why. Close the
 *                   connection: the specification forbids guessing.
 *
 * Bytes after the header are never looked at. Any field that can no longer
 * become valid is refused at its first wrong byte, so a sender that is not
 * speaking the protocol is not waited for. Accepted:
 *
 *   v1  "PROXY TCP4 src dst sport dport\r\n" with dotted-quad IPv4 addresses
 *       (no leading zeros), "PROXY TCP6 ..." with IPv6 text (inet_pton form),
 *       ports 0..65535 without leading zeros, single spaces, CRLF, at most
 *       PROXY_V1_MAX bytes; "PROXY UNKNOWN" followed by CRLF or by a space
 *       and anything up to CRLF (is_local).
 *   v2  version 2; command LOCAL (block ignored, is_local) or PROXY with
 *       family 0x11 (TCP/IPv4), 0x21 (TCP/IPv6) or 0x00 (block ignored,
 *       is_local); at most PROXY_V2_MAX bytes in all. For 0x11 and 0x21 the
 *       bytes after the addresses must be well-formed TLVs: PP2_TYPE_ALPN
 *       (at most PROXY_ALPN_MAX bytes) and PP2_TYPE_AUTHORITY (at most
 *       PROXY_AUTHORITY_MAX bytes, no NUL) are copied out, each at most once
 *       (an empty one counts as absent); PP2_TYPE_CRC32C must be 4 bytes and
 *       match the header's checksum; all other types are skipped.
 *
 * UDP, UNIX sockets and unassigned versions, commands and families are
 * INVALID: handoff only relays TCP streams. A v1 TCP6 address that is
 * v4-mapped stays an AF_INET6 address. No I/O, no allocation; never reads
 * past buf[len - 1]. Every field of out is set on every call.
 */
enum peek_status proxy_proto_parse(const uint8_t *buf, size_t len, struct proxy_result *out);

#endif
