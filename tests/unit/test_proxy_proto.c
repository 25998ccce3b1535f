/* test_proxy_proto.c - PROXY protocol v1/v2 encoder and decoder against hand-written headers and each other. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>

#include "peek.h"
#include "proxy_proto.h"

/* The 12-byte v2 signature, split so no hex escape runs into the next byte. */
#define SIG	"\r\n\r\n" "\x00" "\r\n" "QUIT" "\n"
#define BYTES(s)	(const uint8_t *)(s), sizeof(s) - 1
#define TLV_HEADER_BYTES	3	/* type, 16-bit length */

static const uint8_t v2_signature[12] = {
	0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
};

static struct sockaddr_storage
sockaddr_of(const char *text, unsigned port)
{
	struct sockaddr_storage ss;
	struct sockaddr_in sin = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6, .sin6_port = htons((uint16_t)port) };

	/* No text is both IPv4 and IPv6, so the first that parses names the family. */
	memset(&ss, 0, sizeof(ss));
	if (inet_pton(AF_INET, text, &sin.sin_addr) == 1)
		memcpy(&ss, &sin, sizeof(sin));
	else if (inet_pton(AF_INET6, text, &sin6.sin6_addr) == 1)
		memcpy(&ss, &sin6, sizeof(sin6));
	else
		fail_msg("bad test address %s", text);
	return ss;
}

/* "addr port" of a decoded address, for messages and comparisons. */
static void
describe(const struct sockaddr_storage *ss, char *out, size_t cap)
{
	char text[INET6_ADDRSTRLEN];

	if (ss->ss_family == AF_INET) {
		struct sockaddr_in sin;
		memcpy(&sin, ss, sizeof(sin));
		inet_ntop(AF_INET, &sin.sin_addr, text, sizeof(text));
		snprintf(out, cap, "%s %u", text, (unsigned)ntohs(sin.sin_port));
	} else if (ss->ss_family == AF_INET6) {
		struct sockaddr_in6 sin6;
		memcpy(&sin6, ss, sizeof(sin6));
		inet_ntop(AF_INET6, &sin6.sin6_addr, text, sizeof(text));
		snprintf(out, cap, "[%s] %u", text, (unsigned)ntohs(sin6.sin6_port));
	} else {
		snprintf(out, cap, "family %d", ss->ss_family);
	}
}

static void
assert_same_address(const struct sockaddr_storage *got, const struct sockaddr_storage *want)
{
	char got_text[80], want_text[80];

	describe(got, got_text, sizeof(got_text));
	describe(want, want_text, sizeof(want_text));
	assert_string_equal(got_text, want_text);
	/* Decoded addresses carry nothing beyond address and port. */
	size_t size = want->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
	assert_memory_equal(got, want, size);
}

/* Parse an exact-size heap copy of data[0..n) so ASan catches any read past the end. */
static enum peek_status
parse_copy(const uint8_t *data, size_t n, struct proxy_result *out)
{
	uint8_t *copy = malloc(n > 0 ? n : 1);
	assert_non_null(copy);
	memcpy(copy, data, n);
	memset(out, 0xa5, sizeof(*out));	/* the parser must set every field */
	enum peek_status st = proxy_proto_parse(copy, n, out);
	free(copy);
	return st;
}

static void
assert_no_result(const struct proxy_result *r)
{
	assert_int_equal(r->header_len, 0);
	assert_int_equal(r->version, 0);
	assert_false(r->is_local);
	assert_int_equal(r->src.ss_family, AF_UNSPEC);
	assert_int_equal(r->dst.ss_family, AF_UNSPEC);
	assert_string_equal(r->authority, "");
	assert_int_equal(r->authority_len, 0);
	assert_int_equal(r->alpn_len, 0);
}

/*
 * data[0..len) is one complete, valid header: every shorter prefix must
 * wait, the whole must be FOUND, and bytes after it must not matter.
 * Returns the answer for the whole header in *r.
 */
static void
check_valid_header(const char *name, const uint8_t *data, size_t len, struct proxy_result *r)
{
	struct proxy_result again;

	for (size_t n = 0; n < len; n++) {
		enum peek_status st = parse_copy(data, n, r);
		if (st != PEEK_NEED_MORE)
			fail_msg("%s: prefix %zu of %zu gave %s (%s)", name, n, len,
				 peek_status_name(st), r->why ? r->why : "");
		assert_int_equal(r->consumed, n);
		assert_null(r->why);
		assert_no_result(r);
	}

	uint8_t *longer = malloc(len + 3);
	assert_non_null(longer);
	memcpy(longer, data, len);
	for (unsigned garbage = 0; garbage < 256; garbage += 0x33) {
		memset(longer + len, (int)garbage, 3);
		enum peek_status st = parse_copy(longer, len + 3, &again);
		if (st != PEEK_FOUND)
			fail_msg("%s: with trailing bytes gave %s (%s)", name, peek_status_name(st),
				 again.why ? again.why : "");
		assert_int_equal(again.header_len, len);
	}
	free(longer);

	enum peek_status st = parse_copy(data, len, r);
	if (st != PEEK_FOUND)
		fail_msg("%s: gave %s (%s)", name, peek_status_name(st), r->why ? r->why : "");
	assert_int_equal(r->header_len, len);
	assert_int_equal(r->consumed, len);
	assert_null(r->why);
	assert_int_equal(r->authority_len, strlen(r->authority));
	/* The same answer with trailing bytes, field for field. */
	assert_int_equal(again.version, r->version);
	assert_int_equal(again.is_local, r->is_local);
	assert_memory_equal(&again.src, &r->src, sizeof(r->src));
	assert_memory_equal(&again.dst, &r->dst, sizeof(r->dst));
	assert_string_equal(again.authority, r->authority);
	assert_int_equal(again.alpn_len, r->alpn_len);
	assert_memory_equal(again.alpn, r->alpn, r->alpn_len);
}

/* ---- encoder: exact output ------------------------------------------- */

struct v1_case {
	const char *src;
	unsigned sport;
	const char *dst;
	unsigned dport;
	const char *line;
};

static void
test_v1_known_lines(void **state)
{
	static const struct v1_case cases[] = {
		/* The example from the specification. */
		{ "192.168.0.1", 56324, "192.168.0.11", 443, "PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n" },
		{ "0.0.0.0", 0, "255.255.255.255", 65535, "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n" },
		{ "2001:0db8:0000:0000:0000:0000:0000:0001", 40000, "2001:db8::2:1", 8443,
		  "PROXY TCP6 2001:db8::1 2001:db8::2:1 40000 8443\r\n" },
		{ "::", 1, "::1", 2, "PROXY TCP6 :: ::1 1 2\r\n" },
		{ "1::", 1, "1:0:0:2:0:0:0:3", 2, "PROXY TCP6 1:: 1:0:0:2::3 1 2\r\n" },
		/* Equal runs: the first is shortened; a lone zero group is not. */
		{ "1:0:0:2:0:0:3:4", 1, "1:0:2:3:4:5:6:7", 2, "PROXY TCP6 1::2:0:0:3:4 1:0:2:3:4:5:6:7 1 2\r\n" },
		{ "2001:DB8:AB:CD::", 1, "::1.2.3.4", 2, "PROXY TCP6 2001:db8:ab:cd:: ::102:304 1 2\r\n" },
		/* Mixed families: the IPv4 end goes as v4-mapped IPv6, in hexadecimal groups. */
		{ "192.0.2.1", 1234, "2001:db8::1", 443, "PROXY TCP6 ::ffff:c000:201 2001:db8::1 1234 443\r\n" },
		{ "2001:db8::1", 1234, "127.0.0.1", 80, "PROXY TCP6 2001:db8::1 ::ffff:7f00:1 1234 80\r\n" },
		{ "::ffff:10.0.0.1", 5, "::ffff:10.0.0.2", 6, "PROXY TCP6 ::ffff:a00:1 ::ffff:a00:2 5 6\r\n" },
		/* The longest TCP6 line the specification lists: 104 bytes. */
		{ "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535, "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535,
		  "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n" },
	};
	uint8_t out[PROXY_ENCODED_MAX];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		struct sockaddr_storage src = sockaddr_of(cases[i].src, cases[i].sport);
		struct sockaddr_storage dst = sockaddr_of(cases[i].dst, cases[i].dport);
		size_t n = proxy_proto_encode(out, sizeof(out), 1, &src, &dst, NULL);
		if (n != strlen(cases[i].line) || memcmp(out, cases[i].line, n) != 0)
			fail_msg("%s -> %s: got \"%.*s\", want \"%s\"", cases[i].src, cases[i].dst,
				 (int)n, (const char *)out, cases[i].line);
	}
}

/* Families other than IPv4/IPv6, or no address at all: v1 UNKNOWN, v2 family 0x00. */
static void
test_encode_unknown_family(void **state)
{
	static const uint8_t v2_unspec[] = { SIG "\x21" "\x00" "\x00\x00" };
	struct sockaddr_storage unix_addr, inet = sockaddr_of("192.0.2.1", 80);
	struct sockaddr_un sun;
	struct proxy_tlvs tlvs = { .authority = "a.example", .alpn = (const uint8_t *)"h2", .alpn_len = 2 };
	uint8_t out[PROXY_ENCODED_MAX];

	(void)state;
	memset(&sun, 0, sizeof(sun));
	sun.sun_family = AF_UNIX;
	memcpy(sun.sun_path, "/run/x", 7);
	memset(&unix_addr, 0, sizeof(unix_addr));
	memcpy(&unix_addr, &sun, sizeof(sun));

	const struct sockaddr_storage *pairs[][2] = {
		{ &unix_addr, &unix_addr }, { &inet, &unix_addr }, { NULL, &inet }, { &inet, NULL },
	};
	for (size_t i = 0; i < sizeof(pairs) / sizeof(pairs[0]); i++) {
		size_t n = proxy_proto_encode(out, sizeof(out), 1, pairs[i][0], pairs[i][1], &tlvs);
		assert_int_equal(n, 15);
		assert_memory_equal(out, "PROXY UNKNOWN\r\n", 15);
		n = proxy_proto_encode(out, sizeof(out), 2, pairs[i][0], pairs[i][1], &tlvs);
		assert_int_equal(n, sizeof(v2_unspec) - 1);
		assert_memory_equal(out, v2_unspec, n);
	}
}

static void
test_v2_known_bytes(void **state)
{
	/* 192.0.2.1:56324 -> 198.51.100.7:443, ALPN "h2", authority "www.example.com":
	 * 12 address bytes + 5 (ALPN TLV) + 18 (authority TLV) = 35 = 0x23. */
	static const uint8_t tcp4[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
		0x21, 0x11, 0x00, 0x23,
		0xc0, 0x00, 0x02, 0x01,  0xc6, 0x33, 0x64, 0x07,  0xdc, 0x04,  0x01, 0xbb,
		0x01, 0x00, 0x02, 'h', '2',
		0x02, 0x00, 0x0f, 'w', 'w', 'w', '.', 'e', 'x', 'a', 'm', 'p', 'l', 'e', '.', 'c', 'o', 'm',
	};
	/* [2001:db8::1]:1 -> [2001:db8::2]:65535, no TLVs: 36 = 0x24 address bytes. */
	static const uint8_t tcp6[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
		0x21, 0x21, 0x00, 0x24,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
		0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x02,
		0x00, 0x01,  0xff, 0xff,
	};
	/* 192.0.2.1:80 -> [::1]:8080 with authority "a": the IPv4 end becomes ::ffff:192.0.2.1. */
	static const uint8_t mixed[] = {
		0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
		0x21, 0x21, 0x00, 0x28,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xc0, 0x00, 0x02, 0x01,
		0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x01,
		0x00, 0x50,  0x1f, 0x90,
		0x02, 0x00, 0x01, 'a',
	};
	struct proxy_tlvs tlvs = {
		.authority = "www.example.com", .alpn = (const uint8_t *)"h2", .alpn_len = 2,
	};
	struct proxy_tlvs authority_only = { .authority = "a" };
	uint8_t out[PROXY_ENCODED_MAX];
	struct sockaddr_storage src, dst;
	size_t n;

	(void)state;
	src = sockaddr_of("192.0.2.1", 56324);
	dst = sockaddr_of("198.51.100.7", 443);
	n = proxy_proto_encode(out, sizeof(out), 2, &src, &dst, &tlvs);
	assert_int_equal(n, sizeof(tcp4));
	assert_memory_equal(out, tcp4, n);

	src = sockaddr_of("2001:db8::1", 1);
	dst = sockaddr_of("2001:db8::2", 65535);
	n = proxy_proto_encode(out, sizeof(out), 2, &src, &dst, NULL);
	assert_int_equal(n, sizeof(tcp6));
	assert_memory_equal(out, tcp6, n);

	src = sockaddr_of("192.0.2.1", 80);
	dst = sockaddr_of("::1", 8080);
	n = proxy_proto_encode(out, sizeof(out), 2, &src, &dst, &authority_only);
	assert_int_equal(n, sizeof(mixed));
	assert_memory_equal(out, mixed, n);

	/* And the decoder reads the hand-written bytes back. */
	struct proxy_result r;
	check_valid_header("tcp4 bytes", tcp4, sizeof(tcp4), &r);
	assert_int_equal(r.version, 2);
	assert_false(r.is_local);
	src = sockaddr_of("192.0.2.1", 56324);
	dst = sockaddr_of("198.51.100.7", 443);
	assert_same_address(&r.src, &src);
	assert_same_address(&r.dst, &dst);
	assert_string_equal(r.authority, "www.example.com");
	assert_int_equal(r.alpn_len, 2);
	assert_memory_equal(r.alpn, "h2", 2);
}

/* ---- round trips ------------------------------------------------------ */

struct trip_case {
	const char *src;
	const char *dst;
	const char *want_src;	/* as decoded: the IPv4 end of a mixed pair is v4-mapped */
	const char *want_dst;
};

static void
test_round_trips(void **state)
{
	static const struct trip_case cases[] = {
		{ "10.1.2.3", "10.9.8.7", "10.1.2.3", "10.9.8.7" },
		{ "2001:db8:1::abcd", "fe80::1", "2001:db8:1::abcd", "fe80::1" },
		{ "203.0.113.9", "2001:db8::443", "::ffff:203.0.113.9", "2001:db8::443" },
		{ "2001:db8::5", "127.0.0.1", "2001:db8::5", "::ffff:127.0.0.1" },
		{ "::ffff:1.2.3.4", "::", "::ffff:1.2.3.4", "::" },
	};
	static const unsigned ports[][2] = { { 0, 65535 }, { 54321, 443 }, { 1, 1 } };
	static const uint8_t alpn[] = "http/1.1";
	struct proxy_tlvs tlvs = { .authority = "Mixed-Case.Example.", .alpn = alpn, .alpn_len = 8 };
	uint8_t out[PROXY_ENCODED_MAX];
	struct proxy_result r;
	char name[128];

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		for (size_t p = 0; p < sizeof(ports) / sizeof(ports[0]); p++) {
			struct sockaddr_storage src = sockaddr_of(cases[i].src, ports[p][0]);
			struct sockaddr_storage dst = sockaddr_of(cases[i].dst, ports[p][1]);
			struct sockaddr_storage want_src = sockaddr_of(cases[i].want_src, ports[p][0]);
			struct sockaddr_storage want_dst = sockaddr_of(cases[i].want_dst, ports[p][1]);
			for (int version = 1; version <= 2; version++) {
				size_t n = proxy_proto_encode(out, sizeof(out), version, &src, &dst, &tlvs);
				assert_true(n > 0);
				snprintf(name, sizeof(name), "v%d %s -> %s", version, cases[i].src, cases[i].dst);
				check_valid_header(name, out, n, &r);
				assert_int_equal(r.version, version);
				assert_false(r.is_local);
				assert_same_address(&r.src, &want_src);
				assert_same_address(&r.dst, &want_dst);
				if (version == 1) {
					/* v1 has no room for TLVs. */
					assert_string_equal(r.authority, "");
					assert_int_equal(r.alpn_len, 0);
				} else {
					/* Sent and received exactly as given, not normalised. */
					assert_string_equal(r.authority, "Mixed-Case.Example.");
					assert_int_equal(r.alpn_len, 8);
					assert_memory_equal(r.alpn, "http/1.1", 8);
				}
			}
		}
	}

	/* Unknown families come back as "use the connection's own addresses". */
	for (int version = 1; version <= 2; version++) {
		struct sockaddr_storage inet = sockaddr_of("192.0.2.1", 80);
		size_t n = proxy_proto_encode(out, sizeof(out), version, NULL, &inet, &tlvs);
		check_valid_header(version == 1 ? "v1 unknown" : "v2 unspec", out, n, &r);
		assert_int_equal(r.version, version);
		assert_true(r.is_local);
		assert_int_equal(r.src.ss_family, AF_UNSPEC);
		assert_int_equal(r.dst.ss_family, AF_UNSPEC);
		assert_int_equal(r.authority_len, 0);
	}
}

/* ---- encoder limits --------------------------------------------------- */

static void
test_encode_limits(void **state)
{
	char long_name[PROXY_AUTHORITY_MAX + 2];
	uint8_t long_alpn[PROXY_ALPN_MAX + 1];
	uint8_t out[PROXY_ENCODED_MAX + 8];
	struct sockaddr_storage src = sockaddr_of("2001:db8::1", 1000);
	struct sockaddr_storage dst = sockaddr_of("2001:db8::2", 2000);
	struct proxy_result r;
	size_t n;

	(void)state;
	memset(long_name, 'a', sizeof(long_name));
	long_name[PROXY_AUTHORITY_MAX] = '\0';
	memset(long_alpn, 'x', sizeof(long_alpn));

	/* The largest header: both TLVs at their limits, exactly PROXY_ENCODED_MAX. */
	struct proxy_tlvs tlvs = { .authority = long_name, .alpn = long_alpn, .alpn_len = PROXY_ALPN_MAX };
	n = proxy_proto_encode(out, PROXY_ENCODED_MAX, 2, &src, &dst, &tlvs);
	assert_int_equal(n, PROXY_ENCODED_MAX);
	check_valid_header("largest v2", out, n, &r);
	assert_int_equal(r.authority_len, PROXY_AUTHORITY_MAX);
	assert_int_equal(r.alpn_len, PROXY_ALPN_MAX);

	/* One byte short: nothing written at all. */
	memset(out, 0xee, sizeof(out));
	assert_int_equal(proxy_proto_encode(out, PROXY_ENCODED_MAX - 1, 2, &src, &dst, &tlvs), 0);
	for (size_t i = 0; i < sizeof(out); i++)
		assert_int_equal(out[i], 0xee);
	assert_int_equal(proxy_proto_encode(out, 0, 1, &src, &dst, NULL), 0);
	n = proxy_proto_encode(out, sizeof(out), 1, &src, &dst, NULL);
	assert_int_equal(proxy_proto_encode(out, n - 1, 1, &src, &dst, NULL), 0);
	assert_int_equal(proxy_proto_encode(out, n, 1, &src, &dst, NULL), n);

	/* TLVs over the limits are refused for v2, irrelevant for v1. */
	long_name[PROXY_AUTHORITY_MAX] = 'a';
	long_name[PROXY_AUTHORITY_MAX + 1] = '\0';
	assert_int_equal(proxy_proto_encode(out, sizeof(out), 2, &src, &dst, &tlvs), 0);
	assert_true(proxy_proto_encode(out, sizeof(out), 1, &src, &dst, &tlvs) > 0);
	long_name[PROXY_AUTHORITY_MAX] = '\0';
	tlvs.alpn_len = PROXY_ALPN_MAX + 1;
	assert_int_equal(proxy_proto_encode(out, sizeof(out), 2, &src, &dst, &tlvs), 0);

	/* Empty or absent TLVs are simply not sent: 16 + 36 bytes. */
	struct proxy_tlvs empty = { .authority = "", .alpn = long_alpn, .alpn_len = 0 };
	assert_int_equal(proxy_proto_encode(out, sizeof(out), 2, &src, &dst, &empty), 52);
	struct proxy_tlvs no_alpn = { .authority = NULL, .alpn = NULL, .alpn_len = 5 };
	assert_int_equal(proxy_proto_encode(out, sizeof(out), 2, &src, &dst, &no_alpn), 52);

	/* Only versions 1 and 2 exist. */
	assert_int_equal(proxy_proto_encode(out, sizeof(out), 0, &src, &dst, NULL), 0);
	assert_int_equal(proxy_proto_encode(out, sizeof(out), 3, &src, &dst, NULL), 0);
}

/* ---- decoder: valid input written by hand ------------------------------ */

struct valid_case {
	const char *name;
	const uint8_t *data;
	size_t len;
	int version;
	bool is_local;
	const char *src;	/* NULL when is_local */
	unsigned sport;
	const char *dst;
	unsigned dport;
};

static void
test_valid_headers(void **state)
{
	static const struct valid_case cases[] = {
		{ "v1 short unknown", BYTES("PROXY UNKNOWN\r\n"), 1, true, NULL, 0, NULL, 0 },
		{ "v1 unknown with junk", BYTES("PROXY UNKNOWN 1.2.3.4 ::1 junk\t\x01\xff 99999\r\n"), 1, true,
		  NULL, 0, NULL, 0 },
		{ "v1 tcp4", BYTES("PROXY TCP4 192.168.0.1 192.168.0.11 56324 443\r\n"), 1, false,
		  "192.168.0.1", 56324, "192.168.0.11", 443 },
		{ "v1 tcp4 zeros", BYTES("PROXY TCP4 0.0.0.0 10.0.100.0 0 10\r\n"), 1, false,
		  "0.0.0.0", 0, "10.0.100.0", 10 },
		/* IPv6 text may use upper case, leading zeros and a dotted-quad tail. */
		{ "v1 tcp6", BYTES("PROXY TCP6 2001:DB8::A 0000:0000::0001 65535 1\r\n"), 1, false,
		  "2001:db8::a", 65535, "::1", 1 },
		{ "v1 tcp6 dotted", BYTES("PROXY TCP6 ::ffff:192.0.2.1 ::1.2.3.4 80 81\r\n"), 1, false,
		  "::ffff:192.0.2.1", 80, "::1.2.3.4", 81 },
		{ "v2 local", BYTES(SIG "\x20" "\x00" "\x00\x00"), 2, true, NULL, 0, NULL, 0 },
		/* LOCAL ignores its block, whatever the family byte says and whatever follows. */
		{ "v2 local with block", BYTES(SIG "\x20" "\x11" "\x00\x10" "\x7f\x00\x00\x01" "\x7f\x00\x00\x02"
					       "\x00\x50" "\x00\x51" "\x02\xff\xff\xff"), 2, true, NULL, 0, NULL, 0 },
		{ "v2 local odd family", BYTES(SIG "\x20" "\xff" "\x00\x02" "\x01\x02"), 2, true, NULL, 0, NULL, 0 },
		{ "v2 proxy unspec", BYTES(SIG "\x21" "\x00" "\x00\x03" "\x01\x00\x09"), 2, true, NULL, 0, NULL, 0 },
		/* NOOP, SSL (sub-TLVs unread), UNIQUE_ID and custom types are skipped. */
		{ "v2 skipped tlvs", BYTES(SIG "\x21" "\x11" "\x00\x26" "\x0a\x00\x00\x01" "\x0a\x00\x00\x02"
					   "\x30\x39" "\x01\xbb"
					   "\x04\x00\x00" "\x20\x00\x05" "\x01\x00\x00\x00\x00"
					   "\x05\x00\x02" "id" "\xe0\x00\x04" "\x00\x00\x00\x00"
					   "\x30\x00\x00"), 2, false, "10.0.0.1", 12345, "10.0.0.2", 443 },
		/* Checksum over the header with the CRC32C value zeroed, computed
		 * independently (RFC 3720 B.4 vectors check the reference). */
		{ "v2 crc32c", BYTES(SIG "\x21" "\x11" "\x00\x17" "\x7f\x00\x00\x01" "\x7f\x00\x00\x02"
				     "\x04\xd2" "\x00\x50" "\x04\x00\x01\x00" "\x03\x00\x04" "\x2d\x84\x77\x50"),
		  2, false, "127.0.0.1", 1234, "127.0.0.2", 80 },
	};
	struct proxy_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct valid_case *c = &cases[i];
		check_valid_header(c->name, c->data, c->len, &r);
		assert_int_equal(r.version, c->version);
		assert_int_equal(r.is_local, c->is_local);
		assert_int_equal(r.authority_len, 0);
		assert_int_equal(r.alpn_len, 0);
		if (c->is_local) {
			assert_int_equal(r.src.ss_family, AF_UNSPEC);
			assert_int_equal(r.dst.ss_family, AF_UNSPEC);
		} else {
			struct sockaddr_storage src = sockaddr_of(c->src, c->sport);
			struct sockaddr_storage dst = sockaddr_of(c->dst, c->dport);
			assert_same_address(&r.src, &src);
			assert_same_address(&r.dst, &dst);
		}
	}
}

/* ---- decoder: malformed input ------------------------------------------ */

struct malformed_case {
	const char *name;
	const uint8_t *head;	/* valid start and the first byte that breaks it */
	size_t head_len;
	const uint8_t *tail;	/* what a sender might have sent next */
	size_t tail_len;
	const char *why;
};

#define ADDRS4	"\x7f\x00\x00\x01" "\x7f\x00\x00\x02" "\x04\xd2" "\x00\x50"

static void
test_malformed_headers(void **state)
{
	static const struct malformed_case cases[] = {
		{ "http", BYTES("G"), BYTES("ET / HTTP/1.1\r\n"), "no PROXY protocol signature" },
		{ "tls", BYTES("\x16"), BYTES("\x03\x01\x00\x05"), "no PROXY protocol signature" },
		{ "v1 signature case", BYTES("PROXy"), BYTES(" TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "no PROXY protocol signature" },
		{ "v1 no space", BYTES("PROXYT"), BYTES("CP4 1.2.3.4 5.6.7.8 1 2\r\n"), "no PROXY protocol signature" },
		{ "v1 empty protocol", BYTES("PROXY  "), BYTES("TCP4 1.2.3.4 5.6.7.8 1 2\r\n"), "unknown PROXY v1 protocol" },
		{ "v1 tcp5", BYTES("PROXY TCP5"), BYTES(" 1.2.3.4 5.6.7.8 1 2\r\n"), "unknown PROXY v1 protocol" },
		{ "v1 lower case", BYTES("PROXY t"), BYTES("cp4 1.2.3.4 5.6.7.8 1 2\r\n"), "unknown PROXY v1 protocol" },
		{ "v1 udp4", BYTES("PROXY UD"), BYTES("P4 1.2.3.4 5.6.7.8 1 2\r\n"), "unknown PROXY v1 protocol" },
		{ "v1 short protocol", BYTES("PROXY TCP "), BYTES("1.2.3.4 5.6.7.8 1 2\r\n"), "unknown PROXY v1 protocol" },
		{ "v1 unknownx", BYTES("PROXY UNKNOWNX"), BYTES("\r\n"), "unknown PROXY v1 protocol" },
		{ "v1 tcp4 alone", BYTES("PROXY TCP4\r"), BYTES("\n"), "PROXY v1 line ends early" },
		{ "v1 unknown lf", BYTES("PROXY UNKNOWN\n"), BYTES(""), "bare LF in PROXY v1 line" },
		{ "v1 unknown cr", BYTES("PROXY UNKNOWN\rX"), BYTES("\r\n"), "bare CR in PROXY v1 line" },
		{ "v1 unknown junk lf", BYTES("PROXY UNKNOWN foo\n"), BYTES("\r\n"), "bare LF in PROXY v1 line" },
		{ "v1 ipv4 leading zero", BYTES("PROXY TCP4 1.2.3.04"), BYTES(" 5.6.7.8 1 2\r\n"),
		  "bad IPv4 address in PROXY v1 line" },
		{ "v1 ipv4 256", BYTES("PROXY TCP4 256"), BYTES(".1.1.1 5.6.7.8 1 2\r\n"), "bad IPv4 address in PROXY v1 line" },
		{ "v1 ipv4 five groups", BYTES("PROXY TCP4 1.2.3.4."), BYTES("5 5.6.7.8 1 2\r\n"),
		  "bad IPv4 address in PROXY v1 line" },
		{ "v1 ipv4 three groups", BYTES("PROXY TCP4 1.2.3 "), BYTES("5.6.7.8 1 2\r\n"), "bad IPv4 address in PROXY v1 line" },
		{ "v1 ipv4 empty group", BYTES("PROXY TCP4 1.."), BYTES("2.3 5.6.7.8 1 2\r\n"), "bad IPv4 address in PROXY v1 line" },
		{ "v1 ipv4 leading dot", BYTES("PROXY TCP4 ."), BYTES("1.2.3.4 5.6.7.8 1 2\r\n"), "bad IPv4 address in PROXY v1 line" },
		{ "v1 ipv6 in tcp4", BYTES("PROXY TCP4 :"), BYTES(":1 ::2 1 2\r\n"), "bad IPv4 address in PROXY v1 line" },
		{ "v1 empty address", BYTES("PROXY TCP4  "), BYTES("1.2.3.4 5.6.7.8 1 2\r\n"), "bad IPv4 address in PROXY v1 line" },
		{ "v1 tab", BYTES("PROXY TCP4 1.2.3.4\t"), BYTES("5.6.7.8 1 2\r\n"), "bad IPv4 address in PROXY v1 line" },
		{ "v1 nul", BYTES("PROXY TCP4 1\0"), BYTES(".2.3.4 5.6.7.8 1 2\r\n"), "bad IPv4 address in PROXY v1 line" },
		{ "v1 ipv4 in tcp6", BYTES("PROXY TCP6 1.2.3.4 "), BYTES("::1 1 2\r\n"), "bad IPv6 address in PROXY v1 line" },
		{ "v1 ipv6 zone", BYTES("PROXY TCP6 fe80::1%"), BYTES("eth0 ::1 1 2\r\n"), "bad IPv6 address in PROXY v1 line" },
		{ "v1 ipv6 triple colon", BYTES("PROXY TCP6 1:::2 "), BYTES("::1 1 2\r\n"), "bad IPv6 address in PROXY v1 line" },
		{ "v1 ipv6 brackets", BYTES("PROXY TCP6 ["), BYTES("::1] ::1 1 2\r\n"), "bad IPv6 address in PROXY v1 line" },
		{ "v1 ipv6 too long", BYTES("PROXY TCP6 0000:0000:0000:0000:0000:0000:0000:0000:0000:0"),
		  BYTES("000 ::1 1 2\r\n"), "bad IPv6 address in PROXY v1 line" },
		{ "v1 port 65536", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 65536"), BYTES(" 2\r\n"), "bad port in PROXY v1 line" },
		{ "v1 port leading zero", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1 01"), BYTES("\r\n"), "bad port in PROXY v1 line" },
		{ "v1 port 00", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 00"), BYTES(" 1\r\n"), "bad port in PROXY v1 line" },
		{ "v1 port sign", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 -"), BYTES("1 2\r\n"), "bad port in PROXY v1 line" },
		{ "v1 port empty", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1  "), BYTES("2\r\n"), "bad port in PROXY v1 line" },
		{ "v1 extra field", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1 2 "), BYTES("3\r\n"), "extra field in PROXY v1 line" },
		{ "v1 no dport", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1\r"), BYTES("\n"), "PROXY v1 line ends early" },
		{ "v1 lf only", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n"), BYTES(""), "bare LF in PROXY v1 line" },
		{ "v1 cr cr", BYTES("PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\r"), BYTES("\n"), "bare CR in PROXY v1 line" },
		/* No CRLF within 107 bytes: 14 + 93 = 107. */
		{ "v1 too long", BYTES("PROXY UNKNOWN "
				       "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
		  BYTES("\r\n"), "PROXY v1 line too long" },
		{ "v2 signature", BYTES("\r\n\r\n\x01"), BYTES("\r\nQUIT\n\x21\x00\x00\x00"), "no PROXY protocol signature" },
		{ "v1 after cr", BYTES("\rP"), BYTES("ROXY UNKNOWN\r\n"), "no PROXY protocol signature" },
		{ "v2 version 1", BYTES(SIG "\x11"), BYTES("\x00\x00\x00"), "unsupported PROXY protocol version" },
		{ "v2 version 3", BYTES(SIG "\x31"), BYTES("\x00\x00\x00"), "unsupported PROXY protocol version" },
		{ "v2 command 2", BYTES(SIG "\x22"), BYTES("\x00\x00\x00"), "unknown PROXY v2 command" },
		{ "v2 command f", BYTES(SIG "\x2f"), BYTES("\x00\x00\x00"), "unknown PROXY v2 command" },
		{ "v2 udp4", BYTES(SIG "\x21\x12"), BYTES("\x00\x0c" ADDRS4), "PROXY v2 family is not TCP over IPv4 or IPv6" },
		{ "v2 udp6", BYTES(SIG "\x21\x22"), BYTES("\x00\x00"), "PROXY v2 family is not TCP over IPv4 or IPv6" },
		{ "v2 unix stream", BYTES(SIG "\x21\x31"), BYTES("\x00\x00"), "PROXY v2 family is not TCP over IPv4 or IPv6" },
		{ "v2 unix dgram", BYTES(SIG "\x21\x32"), BYTES("\x00\x00"), "PROXY v2 family is not TCP over IPv4 or IPv6" },
		{ "v2 inet unspec", BYTES(SIG "\x21\x10"), BYTES("\x00\x00"), "PROXY v2 family is not TCP over IPv4 or IPv6" },
		{ "v2 unspec stream", BYTES(SIG "\x21\x01"), BYTES("\x00\x00"), "PROXY v2 family is not TCP over IPv4 or IPv6" },
		{ "v2 family 4", BYTES(SIG "\x21\x41"), BYTES("\x00\x00"), "PROXY v2 family is not TCP over IPv4 or IPv6" },
		{ "v2 tcp4 short", BYTES(SIG "\x21\x11\x00\x0b"), BYTES("\x7f\x00\x00\x01\x7f\x00\x00\x02\x04\xd2\x00"),
		  "PROXY v2 address block too short" },
		{ "v2 tcp6 short", BYTES(SIG "\x21\x21\x00\x23"), BYTES(""), "PROXY v2 address block too short" },
		{ "v2 too long", BYTES(SIG "\x21\x11\x0f\xf1"), BYTES(ADDRS4), "PROXY v2 header too long" },
		{ "v2 local too long", BYTES(SIG "\x20\x00\xff\xff"), BYTES(""), "PROXY v2 header too long" },
		/* TLV errors are known once the whole header is in. */
		{ "v2 tlv header cut", BYTES(SIG "\x21\x11\x00\x0e" ADDRS4 "\x01\x00"), BYTES("\x02h2"),
		  "PROXY v2 TLV overruns the header" },
		{ "v2 tlv value cut", BYTES(SIG "\x21\x11\x00\x11" ADDRS4 "\x02\x00\x03" "ab"), BYTES("c"),
		  "PROXY v2 TLV overruns the header" },
		{ "v2 crc mismatch", BYTES(SIG "\x21\x11\x00\x17" "\x7f\x00\x00\x01" "\x7f\x00\x00\x03" "\x04\xd2" "\x00\x50"
					   "\x04\x00\x01\x00" "\x03\x00\x04" "\x2d\x84\x77\x50"), BYTES(""),
		  "PROXY v2 checksum mismatch" },
		/* The first checksum is right (computed independently), the second is one too many. */
		{ "v2 crc twice", BYTES(SIG "\x21\x11\x00\x1a" ADDRS4 "\x03\x00\x04" "\xf2\xfa\xd2\xda"
					"\x03\x00\x04" "\x00\x00\x00\x00"), BYTES(""), "duplicate PROXY v2 checksum" },
		{ "v2 crc short", BYTES(SIG "\x21\x11\x00\x0f" ADDRS4 "\x03\x00\x00"), BYTES(""),
		  "bad PROXY v2 checksum length" },
	};
	struct proxy_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		const struct malformed_case *c = &cases[i];
		size_t len = c->head_len + c->tail_len;
		uint8_t *data = malloc(len);
		assert_non_null(data);
		memcpy(data, c->head, c->head_len);
		memcpy(data + c->head_len, c->tail, c->tail_len);

		/* Before the breaking byte the start is valid; from it on, the verdict stands. */
		for (size_t n = 0; n <= len; n++) {
			enum peek_status st = parse_copy(data, n, &r);
			enum peek_status want = n < c->head_len ? PEEK_NEED_MORE : PEEK_INVALID;
			if (st != want || (st == PEEK_INVALID && strcmp(r.why, c->why) != 0))
				fail_msg("%s: prefix %zu gave %s (%s), want %s (%s)", c->name, n,
					 peek_status_name(st), r.why ? r.why : "", peek_status_name(want),
					 want == PEEK_INVALID ? c->why : "");
			assert_int_equal(r.consumed, st == PEEK_INVALID ? c->head_len : n);
			assert_no_result(&r);
		}
		free(data);
	}
}

/* ---- decoder: lengths at their limits ----------------------------------- */

/* A v2 TCP4 header 127.0.0.1:1234 -> 127.0.0.2:80 followed by tlvs[0..tlvs_len). */
static size_t
v2_with_tlvs(uint8_t *out, const uint8_t *tlvs, size_t tlvs_len)
{
	static const uint8_t addrs[] = { ADDRS4 };
	size_t n = 0;

	memcpy(out, v2_signature, 12);
	out[12] = 0x21;
	out[13] = 0x11;
	out[14] = (uint8_t)((12 + tlvs_len) >> 8);
	out[15] = (uint8_t)(12 + tlvs_len);
	n = 16;
	memcpy(out + n, addrs, 12);
	n += 12;
	memcpy(out + n, tlvs, tlvs_len);
	return n + tlvs_len;
}

static size_t
tlv(uint8_t *out, uint8_t type, uint8_t fill, size_t len)
{
	out[0] = type;
	out[1] = (uint8_t)(len >> 8);
	out[2] = (uint8_t)len;
	memset(out + 3, fill, len);
	return 3 + len;
}

static enum peek_status
parse_tlvs(const uint8_t *tlvs, size_t tlvs_len, struct proxy_result *r)
{
	uint8_t header[PROXY_V2_MAX + 64];
	size_t n = v2_with_tlvs(header, tlvs, tlvs_len);
	enum peek_status st = parse_copy(header, n, r);
	if (st == PEEK_FOUND) {
		assert_int_equal(r->header_len, n);
	} else {
		assert_int_equal(st, PEEK_INVALID);
		assert_int_equal(r->consumed, n);
		assert_no_result(r);
	}
	return st;
}

static void
test_tlv_bounds(void **state)
{
	uint8_t tlvs[PROXY_V2_MAX];
	struct proxy_result r;
	size_t n;

	(void)state;
	n = tlv(tlvs, PP2_TYPE_AUTHORITY, 'a', PROXY_AUTHORITY_MAX);
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_FOUND);
	assert_int_equal(r.authority_len, PROXY_AUTHORITY_MAX);
	assert_int_equal(strlen(r.authority), PROXY_AUTHORITY_MAX);

	n = tlv(tlvs, PP2_TYPE_AUTHORITY, 'a', PROXY_AUTHORITY_MAX + 1);
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_INVALID);
	assert_string_equal(r.why, "PROXY v2 authority too long");

	n = tlv(tlvs, PP2_TYPE_ALPN, 'x', PROXY_ALPN_MAX);
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_FOUND);
	assert_int_equal(r.alpn_len, PROXY_ALPN_MAX);

	n = tlv(tlvs, PP2_TYPE_ALPN, 'x', PROXY_ALPN_MAX + 1);
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_INVALID);
	assert_string_equal(r.why, "PROXY v2 ALPN too long");

	/* An ALPN may hold any bytes; an authority no NUL. */
	n = tlv(tlvs, PP2_TYPE_ALPN, 0, 3);
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_FOUND);
	assert_int_equal(r.alpn_len, 3);
	n = tlv(tlvs, PP2_TYPE_AUTHORITY, 'a', 5);
	tlvs[5] = '\0';
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_INVALID);
	assert_string_equal(r.why, "NUL byte in PROXY v2 authority");

	/* Each at most once, even if one of them is empty. */
	n = tlv(tlvs, PP2_TYPE_AUTHORITY, 'a', 1);
	n += tlv(tlvs + n, PP2_TYPE_AUTHORITY, 'b', 1);
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_INVALID);
	assert_string_equal(r.why, "duplicate PROXY v2 authority");
	n = tlv(tlvs, PP2_TYPE_ALPN, 'a', 0);
	n += tlv(tlvs + n, PP2_TYPE_AUTHORITY, 'b', 1);
	n += tlv(tlvs + n, PP2_TYPE_ALPN, 'a', 2);
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_INVALID);
	assert_string_equal(r.why, "duplicate PROXY v2 ALPN");

	/* Empty ones count as absent; others are skipped in any order. */
	n = tlv(tlvs, PP2_TYPE_AUTHORITY, 'a', 0);
	n += tlv(tlvs + n, PP2_TYPE_NOOP, 0, 7);
	n += tlv(tlvs + n, 0xee, 0xff, 300);
	n += tlv(tlvs + n, PP2_TYPE_ALPN, 'z', 1);
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_FOUND);
	assert_string_equal(r.authority, "");
	assert_int_equal(r.authority_len, 0);
	assert_int_equal(r.alpn_len, 1);
	assert_int_equal(r.alpn[0], 'z');

	/* A TLV whose value ends exactly at the header's end fits; one byte more
	 * announced than there is, or a type and length cut short, do not. */
	n = tlv(tlvs, PP2_TYPE_NOOP, 0, 10);
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_FOUND);
	tlvs[2] = 11;
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_INVALID);
	assert_string_equal(r.why, "PROXY v2 TLV overruns the header");
	tlvs[2] = 0xff;
	tlvs[1] = 0xff;
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_INVALID);
	for (size_t cut = 1; cut < TLV_HEADER_BYTES; cut++) {
		n = tlv(tlvs, PP2_TYPE_NOOP, 0, 0);
		n += tlv(tlvs + n, PP2_TYPE_ALPN, 'a', 2);
		assert_int_equal(parse_tlvs(tlvs, TLV_HEADER_BYTES + cut, &r), PEEK_INVALID);
		assert_string_equal(r.why, "PROXY v2 TLV overruns the header");
	}

	/* The whole header may be PROXY_V2_MAX bytes, not one more. */
	n = tlv(tlvs, PP2_TYPE_NOOP, 0, PROXY_V2_MAX - 16 - 12 - 3);
	assert_int_equal(parse_tlvs(tlvs, n, &r), PEEK_FOUND);
	assert_int_equal(r.header_len, PROXY_V2_MAX);
	n = tlv(tlvs, PP2_TYPE_NOOP, 0, PROXY_V2_MAX - 16 - 12 - 3 + 1);
	uint8_t header[PROXY_V2_MAX + 64];
	n = v2_with_tlvs(header, tlvs, n);
	assert_int_equal(parse_copy(header, 16, &r), PEEK_INVALID);
	assert_string_equal(r.why, "PROXY v2 header too long");
	assert_int_equal(r.consumed, 16);
}

/* The CRC32C TLV may sit anywhere among the TLVs, and covers the whole header. */
static void
test_crc32c(void **state)
{
	static const uint8_t good[] = {
		SIG "\x21" "\x11" "\x00\x17" "\x7f\x00\x00\x01" "\x7f\x00\x00\x02"
		"\x04\xd2" "\x00\x50" "\x04\x00\x01\x00" "\x03\x00\x04" "\x2d\x84\x77\x50"
	};
	uint8_t copy[sizeof(good) - 1];
	struct proxy_result r;

	(void)state;
	assert_int_equal(parse_copy(good, sizeof(copy), &r), PEEK_FOUND);
	/* Any single flipped bit after the fixed part is caught, except in the
	 * checksum's type byte: that turns it into another TLV. */
	for (size_t i = 16; i < sizeof(copy); i++) {
		if (i == 32)
			continue;
		for (int bit = 0; bit < 8; bit++) {
			memcpy(copy, good, sizeof(copy));
			copy[i] ^= (uint8_t)(1u << bit);
			enum peek_status st = parse_copy(copy, sizeof(copy), &r);
			if (st != PEEK_INVALID)
				fail_msg("bit %d of byte %zu flipped: %s", bit, i, peek_status_name(st));
		}
	}
}

/* The LOCAL command: health checks from the load balancer itself. */
static void
test_local_command(void **state)
{
	struct proxy_result r;

	(void)state;
	/* As senders should write it, then with junk a LOCAL receiver must skip. */
	assert_int_equal(parse_copy(BYTES(SIG "\x20\x00\x00\x00" "GET /"), &r), PEEK_FOUND);
	assert_int_equal(r.header_len, 16);
	assert_true(r.is_local);
	assert_int_equal(r.version, 2);
	assert_int_equal(parse_copy(BYTES(SIG "\x20\x21\x00\x05" "\x02\x00\x09\xff\xff" "x"), &r), PEEK_FOUND);
	assert_int_equal(r.header_len, 21);
	assert_true(r.is_local);
	assert_int_equal(r.authority_len, 0);
	assert_int_equal(r.src.ss_family, AF_UNSPEC);
	/* Still a version-2 header: version and command are checked, the length is honoured. */
	assert_int_equal(parse_copy(BYTES(SIG "\x10\x00\x00\x00"), &r), PEEK_INVALID);
	assert_int_equal(parse_copy(BYTES(SIG "\x20\x00\x00\x08" "1234567"), &r), PEEK_NEED_MORE);
	assert_int_equal(r.consumed, 23);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_v1_known_lines),
		cmocka_unit_test(test_encode_unknown_family),
		cmocka_unit_test(test_v2_known_bytes),
		cmocka_unit_test(test_round_trips),
		cmocka_unit_test(test_encode_limits),
		cmocka_unit_test(test_valid_headers),
		cmocka_unit_test(test_malformed_headers),
		cmocka_unit_test(test_tlv_bounds),
		cmocka_unit_test(test_crc32c),
		cmocka_unit_test(test_local_command),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
