/* proxy_proto.c - PROXY protocol v1 (text) and v2 (binary) headers: encoder and incremental decoder. */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "proxy_proto.h"

static const char v1_signature[] = "PROXY ";
static const uint8_t v2_signature[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

#define V2_VERSION		0x20	/* high nibble of the 13th byte */
#define V2_CMD_LOCAL		0x00
#define V2_CMD_PROXY		0x01
#define V2_FAM_UNSPEC		0x00
#define V2_FAM_TCP4		0x11
#define V2_FAM_TCP6		0x21
#define V2_ADDRS_TCP4		12	/* two IPv4 addresses, two ports */
#define V2_ADDRS_TCP6		36	/* two IPv6 addresses, two ports */
#define TLV_HEADER		3	/* type, 16-bit length */
#define CRC32C_LEN		4

/* Longest v1 address field: IPv6 text with a dotted-quad tail. */
#define V1_FIELD_MAX		(INET6_ADDRSTRLEN - 1)

/* An address and port in wire form, independent of the sockaddr layout. */
struct endpoint {
	int family;		/* AF_INET, AF_INET6, or AF_UNSPEC when not usable */
	uint8_t addr[16];	/* 4 or 16 bytes in network order */
	uint16_t port;
};

/* ---- encoder ---------------------------------------------------------- */

static void
endpoint_from_sockaddr(const struct sockaddr_storage *ss, struct endpoint *ep)
{
	memset(ep, 0, sizeof(*ep));
	ep->family = AF_UNSPEC;
	if (ss == NULL)
		return;
	if (ss->ss_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, ss, sizeof(sin));
		ep->family = AF_INET;
		memcpy(ep->addr, &sin.sin_addr, 4);
		ep->port = ntohs(sin.sin_port);
	} else if (ss->ss_family == AF_INET6) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, ss, sizeof(sin6));
		ep->family = AF_INET6;
		memcpy(ep->addr, &sin6.sin6_addr, 16);
		ep->port = ntohs(sin6.sin6_port);
	}
}

/* Rewrite an IPv4 endpoint as its v4-mapped IPv6 form ::ffff:a.b.c.d (RFC 4291 2.5.5.2). */
static void
map_to_ipv6(struct endpoint *ep)
{
	uint8_t v4[4];

	if (ep->family != AF_INET)
		return;
	memcpy(v4, ep->addr, 4);
	memset(ep->addr, 0, 10);
	ep->addr[10] = 0xff;
	ep->addr[11] = 0xff;
	memcpy(ep->addr + 12, v4, 4);
	ep->family = AF_INET6;
}

/* One family for both ends, as both header versions need: AF_INET,
 * AF_INET6 (mapping an IPv4 end if the other is IPv6) or AF_UNSPEC. */
static int
common_family(struct endpoint *src, struct endpoint *dst)
{
	if (src->family == AF_UNSPEC || dst->family == AF_UNSPEC)
		return AF_UNSPEC;
	if (src->family != dst->family) {
		map_to_ipv6(src);
		map_to_ipv6(dst);
	}
	return src->family;
}

/*
 * RFC 5952 text for an IPv6 address, except that every group is written in
 * hexadecimal (no dotted-quad tail), which is the form the PROXY v1
 * specification describes: lowercase, no leading zeros, the longest run of
 * two or more zero groups (the first of equally long runs) written "::".
 * out must hold 40 bytes; returns the length, NUL not counted.
 */
static size_t
format_ipv6(const uint8_t addr[16], char *out)
{
	static const char hex[] = "0123456789abcdef";
	uint16_t group[8];
	size_t run_start = 8, run_len = 0;
	size_t n = 0;

	for (size_t i = 0; i < 8; i++)
		group[i] = (uint16_t)(addr[2 * i] << 8 | addr[2 * i + 1]);
	for (size_t i = 0; i < 8; i++) {
		size_t end = i;
		while (end < 8 && group[end] == 0)
			end++;
		if (end - i >= 2 && end - i > run_len) {
			run_start = i;
			run_len = end - i;
		}
		if (end > i)
			i = end - 1;
	}
	for (size_t i = 0; i < 8; i++) {
		if (i == run_start) {
			out[n++] = ':';
			out[n++] = ':';
			i += run_len - 1;
			continue;
		}
		if (i > 0 && i != run_start + run_len)
			out[n++] = ':';
		bool started = false;
		for (int shift = 12; shift >= 0; shift -= 4) {
			unsigned nibble = (group[i] >> shift) & 0xfu;
			if (nibble != 0 || started || shift == 0) {
				out[n++] = hex[nibble];
				started = true;
			}
		}
	}
	out[n] = '\0';
	return n;
}

static void
format_address(const struct endpoint *ep, char out[V1_FIELD_MAX + 1])
{
	if (ep->family == AF_INET)
		snprintf(out, V1_FIELD_MAX + 1, "%u.%u.%u.%u", ep->addr[0], ep->addr[1],
			 ep->addr[2], ep->addr[3]);
	else
		format_ipv6(ep->addr, out);
}

static size_t
encode_v1(char *line, size_t cap, const struct endpoint *src, const struct endpoint *dst, int family)
{
	char src_text[V1_FIELD_MAX + 1], dst_text[V1_FIELD_MAX + 1];

	if (family == AF_UNSPEC)
		return (size_t)snprintf(line, cap, "PROXY UNKNOWN\r\n");
	format_address(src, src_text);
	format_address(dst, dst_text);
	return (size_t)snprintf(line, cap, "PROXY %s %s %s %u %u\r\n",
				family == AF_INET ? "TCP4" : "TCP6", src_text, dst_text,
				(unsigned)src->port, (unsigned)dst->port);
}

static void
put_u16(uint8_t *p, size_t value)
{
	p[0] = (uint8_t)(value >> 8);
	p[1] = (uint8_t)value;
}

static size_t
put_tlv(uint8_t *header, size_t at, uint8_t type, const void *value, size_t len)
{
	header[at] = type;
	put_u16(header + at + 1, len);
	memcpy(header + at + TLV_HEADER, value, len);
	return at + TLV_HEADER + len;
}

/* header must hold PROXY_ENCODED_MAX bytes; the TLV lengths are already checked. */
static size_t
encode_v2(uint8_t *header, const struct endpoint *src, const struct endpoint *dst, int family,
	  const char *authority, size_t authority_len, const uint8_t *alpn, size_t alpn_len)
{
	size_t n = PROXY_V2_FIXED;
	size_t addr_len = family == AF_INET ? 4 : 16;

	memcpy(header, v2_signature, sizeof(v2_signature));
	header[12] = V2_VERSION | V2_CMD_PROXY;
	if (family == AF_UNSPEC) {
		/* Receivers ignore the whole block for this family, TLVs included. */
		header[13] = V2_FAM_UNSPEC;
		put_u16(header + 14, 0);
		return n;
	}
	header[13] = family == AF_INET ? V2_FAM_TCP4 : V2_FAM_TCP6;
	memcpy(header + n, src->addr, addr_len);
	n += addr_len;
	memcpy(header + n, dst->addr, addr_len);
	n += addr_len;
	put_u16(header + n, src->port);
	put_u16(header + n + 2, dst->port);
	n += 4;
	if (alpn_len > 0)
		n = put_tlv(header, n, PP2_TYPE_ALPN, alpn, alpn_len);
	if (authority_len > 0)
		n = put_tlv(header, n, PP2_TYPE_AUTHORITY, authority, authority_len);
	put_u16(header + 14, n - PROXY_V2_FIXED);
	return n;
}

size_t
proxy_proto_encode(uint8_t *out, size_t cap, int version, const struct sockaddr_storage *src,
		   const struct sockaddr_storage *dst, const struct proxy_tlvs *tlvs)
{
	uint8_t header[PROXY_ENCODED_MAX];
	struct endpoint src_ep, dst_ep;
	size_t n;

	endpoint_from_sockaddr(src, &src_ep);
	endpoint_from_sockaddr(dst, &dst_ep);
	int family = common_family(&src_ep, &dst_ep);

	if (version == 1) {
		n = encode_v1((char *)header, sizeof(header), &src_ep, &dst_ep, family);
	} else if (version == 2) {
		const char *authority = NULL;
		const uint8_t *alpn = NULL;
		size_t authority_len = 0, alpn_len = 0;
		if (tlvs != NULL && tlvs->authority != NULL) {
			authority = tlvs->authority;
			authority_len = strnlen(authority, PROXY_AUTHORITY_MAX + 1);
			if (authority_len > PROXY_AUTHORITY_MAX)
				return 0;
		}
		if (tlvs != NULL && tlvs->alpn != NULL) {
			alpn = tlvs->alpn;
			alpn_len = tlvs->alpn_len;
			if (alpn_len > PROXY_ALPN_MAX)
				return 0;
		}
		n = encode_v2(header, &src_ep, &dst_ep, family, authority, authority_len, alpn, alpn_len);
	} else {
		return 0;
	}
	if (n > cap)
		return 0;
	memcpy(out, header, n);
	return n;
}

/* ---- decoder: shared ---------------------------------------------------- */

static void
clear_result(struct proxy_result *out)
{
	memset(out, 0, sizeof(*out));
	out->src.ss_family = AF_UNSPEC;
	out->dst.ss_family = AF_UNSPEC;
	out->authority[0] = '\0';
	out->why = NULL;
}

static enum peek_status
need_more(struct proxy_result *out, size_t len)
{
	clear_result(out);
	out->consumed = len;
	return PEEK_NEED_MORE;
}

static enum peek_status
invalid(struct proxy_result *out, size_t consumed, const char *why)
{
	clear_result(out);
	out->consumed = consumed;
	out->why = why;
	return PEEK_INVALID;
}

static enum peek_status
found(struct proxy_result *out, size_t header_len, int version, bool is_local)
{
	out->header_len = header_len;
	out->consumed = header_len;
	out->version = version;
	out->is_local = is_local;
	return PEEK_FOUND;
}

static void
sockaddr_from_endpoint(const struct endpoint *ep, struct sockaddr_storage *ss)
{
	memset(ss, 0, sizeof(*ss));
	if (ep->family == AF_INET) {
		struct sockaddr_in sin;
		memset(&sin, 0, sizeof(sin));
		sin.sin_family = AF_INET;
		memcpy(&sin.sin_addr, ep->addr, 4);
		sin.sin_port = htons(ep->port);
		memcpy(ss, &sin, sizeof(sin));
	} else {
		struct sockaddr_in6 sin6;
		memset(&sin6, 0, sizeof(sin6));
		sin6.sin6_family = AF_INET6;
		memcpy(&sin6.sin6_addr, ep->addr, 16);
		sin6.sin6_port = htons(ep->port);
		memcpy(ss, &sin6, sizeof(sin6));
	}
}

/* ---- decoder: version 1 ------------------------------------------------- */

enum v1_kind {
	V1_PROTOCOL,
	V1_IPV4,
	V1_IPV6,
	V1_PORT,
};

/* One space- or CR-terminated field of a v1 line, and its decoded value. */
struct v1_field {
	char text[V1_FIELD_MAX + 1];
	size_t len;
	uint8_t terminator;
	uint8_t addr[16];
	uint16_t port;
};

enum step {
	STEP_OK,
	STEP_MORE,	/* valid so far; the rest has not arrived */
	STEP_BAD,	/* reader.why says what is wrong */
};

struct v1_reader {
	const uint8_t *buf;
	size_t len;
	size_t pos;		/* next byte to read */
	size_t examined;	/* STEP_BAD: bytes the verdict depends on */
	const char *why;
};

static enum step
v1_bad(struct v1_reader *r, size_t examined, const char *why)
{
	r->examined = examined;
	r->why = why;
	return STEP_BAD;
}

/* The next byte of the line, or why there is none. The length limit comes
 * first so that a line reaching it is refused even if no more bytes come. */
static enum step
v1_next(struct v1_reader *r, uint8_t *byte)
{
	if (r->pos >= PROXY_V1_MAX)
		return v1_bad(r, PROXY_V1_MAX, "PROXY v1 line too long");
	if (r->pos >= r->len)
		return STEP_MORE;
	*byte = r->buf[r->pos++];
	return STEP_OK;
}

static bool
is_digit(char c)
{
	return c >= '0' && c <= '9';
}

static bool
is_hex_digit(char c)
{
	return is_digit(c) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F');
}

static bool
protocol_ok(const struct v1_field *f, bool complete)
{
	static const char *const names[] = { "TCP4", "TCP6", "UNKNOWN" };

	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++) {
		size_t name_len = strlen(names[i]);
		if ((complete ? f->len == name_len : f->len <= name_len)
		    && memcmp(f->text, names[i], f->len) == 0)
			return true;
	}
	return false;
}

/* Dotted quad: four groups of 1-3 digits, each 0..255 with no leading zero
 * (the specification forbids them so nobody reads them as octal). */
static bool
ipv4_ok(struct v1_field *f, bool complete)
{
	size_t groups = 0, digits = 0;
	unsigned value = 0;

	for (size_t i = 0; i < f->len; i++) {
		char c = f->text[i];
		if (c == '.') {
			if (digits == 0 || groups == 3)
				return false;
			f->addr[groups++] = (uint8_t)value;
			value = 0;
			digits = 0;
		} else if (is_digit(c)) {
			if (digits == 1 && value == 0)
				return false;
			value = value * 10 + (unsigned)(c - '0');
			digits++;
			if (value > 255)
				return false;
		} else {
			return false;
		}
	}
	if (!complete)
		return true;
	if (digits == 0 || groups != 3)
		return false;
	f->addr[3] = (uint8_t)value;
	return true;
}

/* IPv6 text as inet_pton reads it: hexadecimal groups, one "::", optionally
 * a dotted-quad tail. Until the field ends only the characters are checked. */
static bool
ipv6_ok(struct v1_field *f, bool complete)
{
	for (size_t i = 0; i < f->len; i++) {
		char c = f->text[i];
		if (!is_hex_digit(c) && c != ':' && c != '.')
			return false;
	}
	if (!complete)
		return true;
	f->text[f->len] = '\0';
	return inet_pton(AF_INET6, f->text, f->addr) == 1;
}

/* Decimal 0..65535, no leading zero. */
static bool
port_ok(struct v1_field *f, bool complete)
{
	unsigned value = 0;

	for (size_t i = 0; i < f->len; i++) {
		char c = f->text[i];
		if (!is_digit(c) || (i == 1 && f->text[0] == '0'))
			return false;
		value = value * 10 + (unsigned)(c - '0');
		if (value > 65535)
			return false;
	}
	if (complete && f->len == 0)
		return false;
	f->port = (uint16_t)value;
	return true;
}

static bool
field_ok(enum v1_kind kind, struct v1_field *f, bool complete)
{
	switch (kind) {
	case V1_PROTOCOL:
		return protocol_ok(f, complete);
	case V1_IPV4:
		return ipv4_ok(f, complete);
	case V1_IPV6:
		return ipv6_ok(f, complete);
	case V1_PORT:
		return port_ok(f, complete);
	}
	return false;
}

static const char *
field_why(enum v1_kind kind)
{
	switch (kind) {
	case V1_PROTOCOL:
		return "unknown PROXY v1 protocol";
	case V1_IPV4:
		return "bad IPv4 address in PROXY v1 line";
	case V1_IPV6:
		return "bad IPv6 address in PROXY v1 line";
	case V1_PORT:
		return "bad port in PROXY v1 line";
	}
	return "bad PROXY v1 field";
}

/* Read a field up to its space or CR, refusing it at the first byte after
 * which it can no longer be valid. */
static enum step
v1_field(struct v1_reader *r, enum v1_kind kind, struct v1_field *f)
{
	uint8_t byte;
	enum step st;

	memset(f, 0, sizeof(*f));
	while ((st = v1_next(r, &byte)) == STEP_OK) {
		if (byte == ' ' || byte == '\r') {
			f->terminator = byte;
			if (!field_ok(kind, f, true))
				return v1_bad(r, r->pos, field_why(kind));
			return STEP_OK;
		}
		if (byte == '\n')
			return v1_bad(r, r->pos, "bare LF in PROXY v1 line");
		if (f->len == V1_FIELD_MAX)
			return v1_bad(r, r->pos, field_why(kind));
		f->text[f->len++] = (char)byte;
		if (!field_ok(kind, f, false))
			return v1_bad(r, r->pos, field_why(kind));
	}
	return st;
}

/* The LF that must follow a CR. */
static enum step
v1_line_feed(struct v1_reader *r)
{
	uint8_t byte;
	enum step st = v1_next(r, &byte);

	if (st != STEP_OK)
		return st;
	if (byte != '\n')
		return v1_bad(r, r->pos, "bare CR in PROXY v1 line");
	return STEP_OK;
}

/* "PROXY UNKNOWN " was read: anything but CR or LF up to CRLF. */
static enum step
v1_skip_to_end(struct v1_reader *r)
{
	uint8_t byte;
	enum step st;

	while ((st = v1_next(r, &byte)) == STEP_OK) {
		if (byte == '\r')
			return v1_line_feed(r);
		if (byte == '\n')
			return v1_bad(r, r->pos, "bare LF in PROXY v1 line");
	}
	return st;
}

/* Read "src dst sport dport\r\n" after "PROXY TCP4 " or "PROXY TCP6 ". */
static enum step
v1_addresses(struct v1_reader *r, enum v1_kind addr_kind, struct endpoint *src, struct endpoint *dst)
{
	const enum v1_kind kinds[4] = { addr_kind, addr_kind, V1_PORT, V1_PORT };
	struct v1_field fields[4];
	enum step st;

	for (size_t i = 0; i < 4; i++) {
		st = v1_field(r, kinds[i], &fields[i]);
		if (st != STEP_OK)
			return st;
		bool last = i == 3;
		if (fields[i].terminator == ' ' && last)
			return v1_bad(r, r->pos, "extra field in PROXY v1 line");
		if (fields[i].terminator == '\r' && !last)
			return v1_bad(r, r->pos, "PROXY v1 line ends early");
	}
	st = v1_line_feed(r);
	if (st != STEP_OK)
		return st;

	int family = addr_kind == V1_IPV4 ? AF_INET : AF_INET6;
	size_t addr_len = family == AF_INET ? 4 : 16;
	src->family = family;
	dst->family = family;
	memcpy(src->addr, fields[0].addr, addr_len);
	memcpy(dst->addr, fields[1].addr, addr_len);
	src->port = fields[2].port;
	dst->port = fields[3].port;
	return STEP_OK;
}

static enum peek_status
parse_v1(const uint8_t *buf, size_t len, struct proxy_result *out)
{
	struct v1_reader r = { .buf = buf, .len = len, .pos = 0 };
	struct v1_field protocol;
	struct endpoint src, dst;
	enum step st;
	bool is_local = false;

	for (size_t i = 0; i < sizeof(v1_signature) - 1; i++) {
		if (i == len)
			return need_more(out, len);
		if (buf[i] != (uint8_t)v1_signature[i])
			return invalid(out, i + 1, "no PROXY protocol signature");
	}
	r.pos = sizeof(v1_signature) - 1;

	st = v1_field(&r, V1_PROTOCOL, &protocol);
	if (st == STEP_OK) {
		if (strcmp(protocol.text, "UNKNOWN") == 0) {
			is_local = true;
			st = protocol.terminator == '\r' ? v1_line_feed(&r) : v1_skip_to_end(&r);
		} else if (protocol.terminator == '\r') {
			st = v1_bad(&r, r.pos, "PROXY v1 line ends early");
		} else {
			enum v1_kind kind = protocol.text[3] == '4' ? V1_IPV4 : V1_IPV6;
			st = v1_addresses(&r, kind, &src, &dst);
		}
	}
	if (st == STEP_MORE)
		return need_more(out, len);
	if (st == STEP_BAD)
		return invalid(out, r.examined, r.why);
	if (!is_local) {
		sockaddr_from_endpoint(&src, &out->src);
		sockaddr_from_endpoint(&dst, &out->dst);
	}
	return found(out, r.pos, 1, is_local);
}

/* ---- decoder: version 2 ------------------------------------------------- */

static size_t
get_u16(const uint8_t *p)
{
	return (size_t)p[0] << 8 | p[1];
}

/* CRC32c (Castagnoli, RFC 4960 appendix B) of buf[0..len), with the four
 * bytes at zero_at taken as zero: that is where the checksum itself sits. */
static uint32_t
crc32c_with_hole(const uint8_t *buf, size_t len, size_t zero_at)
{
	uint32_t crc = 0xffffffffu;

	for (size_t i = 0; i < len; i++) {
		uint8_t byte = (i >= zero_at && i < zero_at + CRC32C_LEN) ? 0 : buf[i];
		crc ^= byte;
		for (int bit = 0; bit < 8; bit++)
			crc = (crc >> 1) ^ (0x82f63b78u & (0u - (crc & 1u)));
	}
	return crc ^ 0xffffffffu;
}

/* Walk the TLVs in buf[start..total). Returns why they are invalid, or NULL. */
static const char *
read_tlvs(const uint8_t *buf, size_t start, size_t total, struct proxy_result *out)
{
	bool seen_alpn = false, seen_authority = false, seen_crc = false;
	size_t pos = start;

	while (pos < total) {
		if (total - pos < TLV_HEADER)
			return "PROXY v2 TLV overruns the header";
		uint8_t type = buf[pos];
		size_t value_len = get_u16(buf + pos + 1);
		const uint8_t *value = buf + pos + TLV_HEADER;
		if (value_len > total - pos - TLV_HEADER)
			return "PROXY v2 TLV overruns the header";

		switch (type) {
		case PP2_TYPE_ALPN:
			if (seen_alpn)
				return "duplicate PROXY v2 ALPN";
			seen_alpn = true;
			if (value_len > PROXY_ALPN_MAX)
				return "PROXY v2 ALPN too long";
			memcpy(out->alpn, value, value_len);
			out->alpn_len = value_len;
			break;
		case PP2_TYPE_AUTHORITY:
			if (seen_authority)
				return "duplicate PROXY v2 authority";
			seen_authority = true;
			if (value_len > PROXY_AUTHORITY_MAX)
				return "PROXY v2 authority too long";
			if (memchr(value, '\0', value_len) != NULL)
				return "NUL byte in PROXY v2 authority";
			memcpy(out->authority, value, value_len);
			out->authority[value_len] = '\0';
			out->authority_len = value_len;
			break;
		case PP2_TYPE_CRC32C: {
			if (seen_crc)
				return "duplicate PROXY v2 checksum";
			seen_crc = true;
			if (value_len != CRC32C_LEN)
				return "bad PROXY v2 checksum length";
			uint32_t sent = (uint32_t)value[0] << 24 | (uint32_t)value[1] << 16
					| (uint32_t)value[2] << 8 | value[3];
			if (crc32c_with_hole(buf, total, pos + TLV_HEADER) != sent)
				return "PROXY v2 checksum mismatch";
			break;
		}
		default:
			/* NOOP padding, SSL, UNIQUE_ID, NETNS, custom types: not ours to use. */
			break;
		}
		pos += TLV_HEADER + value_len;
	}
	return NULL;
}

static enum peek_status
parse_v2(const uint8_t *buf, size_t len, struct proxy_result *out)
{
	for (size_t i = 0; i < sizeof(v2_signature); i++) {
		if (i == len)
			return need_more(out, len);
		if (buf[i] != v2_signature[i])
			return invalid(out, i + 1, "no PROXY protocol signature");
	}

	if (len < 13)
		return need_more(out, len);
	uint8_t command = buf[12] & 0x0f;
	if ((buf[12] & 0xf0) != V2_VERSION)
		return invalid(out, 13, "unsupported PROXY protocol version");
	if (command != V2_CMD_LOCAL && command != V2_CMD_PROXY)
		return invalid(out, 13, "unknown PROXY v2 command");

	if (len < 14)
		return need_more(out, len);
	/* LOCAL ignores the family; PROXY must carry TCP or say "unspecified". */
	uint8_t family = buf[13];
	if (command == V2_CMD_PROXY && family != V2_FAM_UNSPEC && family != V2_FAM_TCP4
	    && family != V2_FAM_TCP6)
		return invalid(out, 14, "PROXY v2 family is not TCP over IPv4 or IPv6");

	if (len < PROXY_V2_FIXED)
		return need_more(out, len);
	size_t total = PROXY_V2_FIXED + get_u16(buf + 14);
	if (total > PROXY_V2_MAX)
		return invalid(out, PROXY_V2_FIXED, "PROXY v2 header too long");
	bool is_local = command == V2_CMD_LOCAL || family == V2_FAM_UNSPEC;
	size_t addrs_len = is_local ? 0 : family == V2_FAM_TCP4 ? V2_ADDRS_TCP4 : V2_ADDRS_TCP6;
	if (total - PROXY_V2_FIXED < addrs_len)
		return invalid(out, PROXY_V2_FIXED, "PROXY v2 address block too short");

	if (len < total)
		return need_more(out, len);
	if (is_local)
		return found(out, total, 2, true);

	struct endpoint src, dst;
	const uint8_t *a = buf + PROXY_V2_FIXED;
	size_t addr_len = family == V2_FAM_TCP4 ? 4 : 16;
	memset(&src, 0, sizeof(src));
	memset(&dst, 0, sizeof(dst));
	src.family = dst.family = family == V2_FAM_TCP4 ? AF_INET : AF_INET6;
	memcpy(src.addr, a, addr_len);
	memcpy(dst.addr, a + addr_len, addr_len);
	src.port = (uint16_t)get_u16(a + 2 * addr_len);
	dst.port = (uint16_t)get_u16(a + 2 * addr_len + 2);

	const char *why = read_tlvs(buf, PROXY_V2_FIXED + addrs_len, total, out);
	if (why != NULL)
		return invalid(out, total, why);
	sockaddr_from_endpoint(&src, &out->src);
	sockaddr_from_endpoint(&dst, &out->dst);
	return found(out, total, 2, false);
}

enum peek_status
proxy_proto_parse(const uint8_t *buf, size_t len, struct proxy_result *out)
{
	clear_result(out);
	if (len == 0)
		return need_more(out, len);
	if (buf[0] == (uint8_t)v1_signature[0])
		return parse_v1(buf, len, out);
	if (buf[0] == v2_signature[0])
		return parse_v2(buf, len, out);
	return invalid(out, 1, "no PROXY protocol signature");
}
