/* tls_hello.c - pure parser for a TLS ClientHello spread over records and segments: SNI and ALPN. */
#include <stdbool.h>
#include <stdint.h>
#include <string.h>

#include "hostname.h"
#include "tls_hello.h"

#define RECORD_HEADER_LEN	5
#define RECORD_PAYLOAD_MAX	16384	/* RFC 8446 5.1: fragments are at most 2^14 bytes */
#define CONTENT_HANDSHAKE	22
#define HANDSHAKE_CLIENT_HELLO	1
#define RANDOM_LEN		32
#define SESSION_ID_MAX		32
#define EXT_SERVER_NAME		0
#define EXT_ALPN		16
#define SNI_HOST_NAME		0
#define SNI_NAME_MAX		255	/* RFC 6066 limits a HostName to 255 bytes */

enum step {
	STEP_OK,
	STEP_MORE,	/* the bytes so far are a valid start; the rest has not arrived */
	STEP_BAD,	/* reader.why says what is wrong */
};

/*
 * Reads the handshake byte stream that consecutive handshake records carry,
 * crossing record boundaries transparently. Offsets ("off", "end") count
 * handshake bytes; positions ("pos") count bytes of the TCP stream.
 */
struct hs_reader {
	const uint8_t *buf;
	size_t len;
	size_t pos;		/* next unread stream byte */
	size_t record_left;	/* payload bytes of the current record not yet read */
	size_t off;		/* handshake bytes read so far */
	size_t hello_end;	/* handshake offset just past the hello; 0 until its header is read */
	size_t examined;	/* stream bytes the verdict depends on */
	const char *why;
};

static enum step
bad(struct hs_reader *r, const char *why)
{
	r->why = why;
	return STEP_BAD;
}

/*
 * Could the rest of the hello still arrive within PEEK_MAX stream bytes?
 * If it needs more than the current record holds, at least one more record
 * header comes first. Answering early keeps NEED_MORE for feasible prefixes.
 */
static bool
hello_fits(const struct hs_reader *r)
{
	if (r->hello_end == 0)
		return true;
	size_t remaining = r->hello_end - r->off;
	size_t end = r->pos + remaining;
	if (remaining > r->record_left)
		end += RECORD_HEADER_LEN;
	return end <= PEEK_MAX;
}

/* Why the very first byte of the stream cannot start a TLS handshake record. */
static const char *
first_byte_why(uint8_t byte)
{
	if (byte & 0x80)
		return "SSLv2-compatible ClientHello is not supported";
	if ((byte >= 'A' && byte <= 'Z') || (byte >= 'a' && byte <= 'z'))
		return "not TLS: looks like a plain-text request";
	return "record type is not handshake";
}

/* Check the record header at r->pos byte by byte, as far as it has arrived, and step over it. */
static enum step
enter_record(struct hs_reader *r)
{
	const uint8_t *header = r->buf + r->pos;
	size_t have = r->len - r->pos;

	if (have >= 1) {
		r->examined = r->pos + 1;
		if (header[0] != CONTENT_HANDSHAKE)
			return bad(r, r->pos == 0 ? first_byte_why(header[0])
						  : "record type is not handshake");
	}
	if (have >= 2) {
		/* Legacy record versions are 0x0301..0x0304; some stacks still send
		 * 0x0300 in the first record, so any SSL 3/TLS minor is accepted. */
		r->examined = r->pos + 2;
		if (header[1] != 3)
			return bad(r, "record version is not SSL 3/TLS");
	}
	if (have < RECORD_HEADER_LEN)
		return STEP_MORE;
	r->examined = r->pos + RECORD_HEADER_LEN;
	size_t record_len = (size_t)header[3] << 8 | header[4];
	if (record_len == 0)
		return bad(r, "empty handshake record");
	if (record_len > RECORD_PAYLOAD_MAX)
		return bad(r, "record longer than 16 KiB");
	r->pos += RECORD_HEADER_LEN;
	r->record_left = record_len;
	if (!hello_fits(r))
		return bad(r, "client hello larger than 16 KiB");
	return STEP_OK;
}

/* Read n handshake bytes into dst (or skip them if dst is NULL). */
static enum step
hs_read(struct hs_reader *r, uint8_t *dst, size_t n)
{
	while (n > 0) {
		if (r->record_left == 0) {
			enum step s = enter_record(r);
			if (s != STEP_OK)
				return s;
		}
		size_t take = n;
		if (take > r->record_left)
			take = r->record_left;
		if (take > r->len - r->pos)
			take = r->len - r->pos;
		if (take == 0)
			return STEP_MORE;
		if (dst != NULL) {
			memcpy(dst, r->buf + r->pos, take);
			dst += take;
		}
		r->pos += take;
		r->examined = r->pos;
		r->record_left -= take;
		r->off += take;
		n -= take;
	}
	return STEP_OK;
}

/* Read a big-endian integer of width 1..3 bytes that must end by handshake offset end. */
static enum step
read_uint(struct hs_reader *r, size_t end, size_t width, size_t *value, const char *overrun_why)
{
	uint8_t bytes[3];

	if (r->off + width > end)
		return bad(r, overrun_why);
	enum step s = hs_read(r, bytes, width);
	if (s != STEP_OK)
		return s;
	*value = 0;
	for (size_t i = 0; i < width; i++)
		*value = *value << 8 | bytes[i];
	return STEP_OK;
}

/* Skip n bytes that must end by handshake offset end. */
static enum step
skip(struct hs_reader *r, size_t end, size_t n, const char *overrun_why)
{
	if (n > end - r->off)
		return bad(r, overrun_why);
	return hs_read(r, NULL, n);
}

/* RFC 6066 3: server_name_list with exactly one host_name entry. */
static enum step
parse_server_name(struct hs_reader *r, size_t ext_end, struct peek_result *out)
{
	size_t list_len, name_type, name_len;
	bool have_name = false;
	char raw[SNI_NAME_MAX];
	enum step s;

	if ((s = read_uint(r, ext_end, 2, &list_len, "server_name extension is truncated")) != STEP_OK)
		return s;
	if (r->off + list_len != ext_end)
		return bad(r, "server_name list length does not match its extension");
	if (list_len == 0)
		return bad(r, "empty server_name list");
	while (r->off < ext_end) {
		s = read_uint(r, ext_end, 1, &name_type, "server_name entry is truncated");
		if (s != STEP_OK)
			return s;
		if (name_type != SNI_HOST_NAME)
			return bad(r, "server name type is not host_name");
		if (have_name)
			return bad(r, "two host_name entries in server_name");
		s = read_uint(r, ext_end, 2, &name_len, "server_name entry is truncated");
		if (s != STEP_OK)
			return s;
		if (name_len == 0)
			return bad(r, "empty server name");
		if (name_len > SNI_NAME_MAX)
			return bad(r, "server name longer than 255 bytes");
		if (name_len > ext_end - r->off)
			return bad(r, "server name runs past its list");
		if ((s = hs_read(r, (uint8_t *)raw, name_len)) != STEP_OK)
			return s;
		if (memchr(raw, '\0', name_len) != NULL)
			return bad(r, "NUL byte in server name");
		out->name_len = hostname_normalize(raw, name_len, out->name, sizeof(out->name));
		if (out->name_len == 0)
			return bad(r, "server name is not a valid host name");
		have_name = true;
	}
	return STEP_OK;
}

/*
 * RFC 7301 3.1: a non-empty protocol_name_list of 1..255-byte names. The
 * list is copied in wire form; when it exceeds PEEK_ALPN_MAX, only the
 * leading names that fit whole are kept (clients list preferred ones first).
 */
static enum step
parse_alpn(struct hs_reader *r, size_t ext_end, struct peek_result *out)
{
	size_t list_len, proto_len;
	bool truncated = false;
	enum step s;

	if ((s = read_uint(r, ext_end, 2, &list_len, "ALPN extension is truncated")) != STEP_OK)
		return s;
	if (r->off + list_len != ext_end)
		return bad(r, "ALPN list length does not match its extension");
	if (list_len == 0)
		return bad(r, "empty ALPN list");
	while (r->off < ext_end) {
		if ((s = read_uint(r, ext_end, 1, &proto_len, "ALPN list is truncated")) != STEP_OK)
			return s;
		if (proto_len == 0)
			return bad(r, "empty ALPN protocol name");
		if (proto_len > ext_end - r->off)
			return bad(r, "ALPN protocol name runs past its list");
		if (!truncated && out->alpn_len + 1 + proto_len <= sizeof(out->alpn)) {
			out->alpn[out->alpn_len++] = (uint8_t)proto_len;
			if ((s = hs_read(r, out->alpn + out->alpn_len, proto_len)) != STEP_OK)
				return s;
			out->alpn_len += proto_len;
		} else {
			truncated = true;
			if ((s = hs_read(r, NULL, proto_len)) != STEP_OK)
				return s;
		}
	}
	return STEP_OK;
}

/* Walk the extensions block up to hello_end; RFC 8446 4.2 forbids repeating a type. */
static enum step
parse_extensions(struct hs_reader *r, struct peek_result *out)
{
	uint8_t seen[65536 / 8];
	size_t block_len, type, ext_len;
	enum step s;

	memset(seen, 0, sizeof(seen));
	if ((s = read_uint(r, r->hello_end, 2, &block_len, "extensions length is truncated")) != STEP_OK)
		return s;
	if (r->off + block_len != r->hello_end)
		return bad(r, "extensions length does not match the hello length");
	while (r->off < r->hello_end) {
		if ((s = read_uint(r, r->hello_end, 2, &type, "extension header is truncated")) != STEP_OK)
			return s;
		if (seen[type / 8] & (1u << (type % 8)))
			return type == EXT_SERVER_NAME ? bad(r, "duplicate server_name extension")
						       : bad(r, "duplicate extension");
		seen[type / 8] |= (uint8_t)(1u << (type % 8));
		s = read_uint(r, r->hello_end, 2, &ext_len, "extension header is truncated");
		if (s != STEP_OK)
			return s;
		if (ext_len > r->hello_end - r->off)
			return bad(r, "extension runs past the extensions block");
		size_t ext_end = r->off + ext_len;
		if (type == EXT_SERVER_NAME)
			s = parse_server_name(r, ext_end, out);
		else if (type == EXT_ALPN)
			s = parse_alpn(r, ext_end, out);
		else
			s = hs_read(r, NULL, ext_len);
		if (s != STEP_OK)
			return s;
	}
	return STEP_OK;
}

/* RFC 8446 4.1.2 (and its TLS 1.0..1.2 ancestors): the ClientHello up to its extensions. */
static enum step
parse_client_hello(struct hs_reader *r, struct peek_result *out)
{
	size_t value, hello_len;
	enum step s;

	if ((s = read_uint(r, SIZE_MAX, 1, &value, "")) != STEP_OK)
		return s;
	if (value != HANDSHAKE_CLIENT_HELLO)
		return bad(r, "handshake message is not a ClientHello");
	if ((s = read_uint(r, SIZE_MAX, 3, &hello_len, "")) != STEP_OK)
		return s;
	r->hello_end = r->off + hello_len;
	if (!hello_fits(r))
		return bad(r, "client hello larger than 16 KiB");

	if ((s = read_uint(r, r->hello_end, 1, &value, "client hello is truncated")) != STEP_OK)
		return s;
	if (value != 3)
		return bad(r, "client version is not SSL 3/TLS");
	if ((s = skip(r, r->hello_end, 1 + RANDOM_LEN, "client hello is truncated")) != STEP_OK)
		return s;

	if ((s = read_uint(r, r->hello_end, 1, &value, "client hello is truncated")) != STEP_OK)
		return s;
	if (value > SESSION_ID_MAX)
		return bad(r, "session id longer than 32 bytes");
	if ((s = skip(r, r->hello_end, value, "session id runs past the hello")) != STEP_OK)
		return s;

	if ((s = read_uint(r, r->hello_end, 2, &value, "client hello is truncated")) != STEP_OK)
		return s;
	if (value < 2 || value % 2 != 0)
		return bad(r, "cipher suite list is empty or of odd length");
	if ((s = skip(r, r->hello_end, value, "cipher suites run past the hello")) != STEP_OK)
		return s;

	if ((s = read_uint(r, r->hello_end, 1, &value, "client hello is truncated")) != STEP_OK)
		return s;
	if (value == 0)
		return bad(r, "empty compression method list");
	if ((s = skip(r, r->hello_end, value, "compression methods run past the hello")) != STEP_OK)
		return s;

	/* Extensions are optional before TLS 1.3; a hello without them has no name. */
	if (r->off == r->hello_end)
		return STEP_OK;
	return parse_extensions(r, out);
}

enum peek_status
tls_hello_parse(const uint8_t *buf, size_t len, struct peek_result *out)
{
	static const uint8_t nothing[1];
	struct hs_reader r = { .buf = buf != NULL ? buf : nothing, .len = buf != NULL ? len : 0 };

	peek_result_clear(out);
	enum step s = parse_client_hello(&r, out);
	if (s == STEP_OK) {
		out->consumed = r.pos;
		if (out->name_len > 0)
			return PEEK_FOUND;
		out->why = "client hello has no server_name";
		return PEEK_NO_NAME;
	}
	/* Only a finished hello leaves a name or ALPN behind. */
	if (s == STEP_MORE)
		return peek_need_more(out, r.len);
	return peek_invalid(out, r.examined, r.why);
}
