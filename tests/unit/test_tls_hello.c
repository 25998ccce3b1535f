/* test_tls_hello.c - ClientHello parser against captured, synthetic and malformed hellos. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "peek.h"
#include "sample_check.h"
#include "tls_hello.h"

static const struct valid_sample valid_samples[] = {
	/* Chromium 156 with an X25519MLKEM768 key share, GREASE and ECH. */
	{ "chromium.bin", PEEK_FOUND, "a.example", "h2,http/1.1", 0 },
	{ "openssl-sni-alpn.bin", PEEK_FOUND, "a.example", "h2,http/1.1", 0 },
	{ "openssl-nosni.bin", PEEK_NO_NAME, NULL, NULL, 0 },
	/* openssl s_client -split_send_frag 128: the hello spans three records. */
	{ "openssl-split128.bin", PEEK_FOUND, "split.example", NULL, 0 },
	/* Exactly PEEK_MAX bytes of stream in five records. */
	{ "synthetic-16k.bin", PEEK_FOUND, "big.example", "h2", 0 },
	{ "synthetic-tls12-noext.bin", PEEK_NO_NAME, NULL, NULL, 0 },
	{ "synthetic-1byte-records.bin", PEEK_FOUND, "tiny.example", "h2,http/1.1", 0 },
	/* 30 protocols of 10 bytes: only the 23 that fit whole in 255 bytes are kept. */
	{ "synthetic-alpn-long.bin", PEEK_FOUND, "alpn.example",
	  "proto-0000,proto-0001,proto-0002,proto-0003,proto-0004,proto-0005,"
	  "proto-0006,proto-0007,proto-0008,proto-0009,proto-0010,proto-0011,"
	  "proto-0012,proto-0013,proto-0014,proto-0015,proto-0016,proto-0017,"
	  "proto-0018,proto-0019,proto-0020,proto-0021,proto-0022", 0 },
	{ "synthetic-name-case.bin", PEEK_FOUND, "www.example.com", NULL, 0 },
	{ "synthetic-record-ssl3.bin", PEEK_FOUND, "ssl3.example", NULL, 0 },
	/* A ChangeCipherSpec-looking tail inside the hello's record. */
	{ "synthetic-trailing.bin", PEEK_FOUND, "trail.example", NULL, 4 },
	{ "synthetic-name-253.bin", PEEK_FOUND,
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	  "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa."
	  "bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb", NULL, 0 },
};

static const struct malformed_sample malformed_samples[] = {
	{ "record-type-appdata.bin", "record type is not handshake" },
	{ "record-ccs-between-fragments.bin", "record type is not handshake" },
	{ "record-len-zero.bin", "empty handshake record" },
	{ "record-len-16385.bin", "record longer than 16 KiB" },
	{ "record-version-2.bin", "record version is not SSL 3/TLS" },
	{ "sslv2-hello.bin", "SSLv2-compatible ClientHello is not supported" },
	{ "plain-http.bin", "not TLS: looks like a plain-text request" },
	{ "handshake-not-client-hello.bin", "handshake message is not a ClientHello" },
	{ "handshake-len-short.bin", "extensions length does not match the hello length" },
	{ "handshake-len-long.bin", "extensions length does not match the hello length" },
	{ "client-version-2.bin", "client version is not SSL 3/TLS" },
	{ "session-id-33.bin", "session id longer than 32 bytes" },
	{ "ciphers-odd.bin", "cipher suite list is empty or of odd length" },
	{ "ciphers-empty.bin", "cipher suite list is empty or of odd length" },
	{ "compression-empty.bin", "empty compression method list" },
	{ "extensions-one-byte.bin", "extensions length is truncated" },
	{ "extensions-len-mismatch.bin", "extensions length does not match the hello length" },
	{ "extension-header-truncated.bin", "extension header is truncated" },
	{ "extension-overrun.bin", "extension runs past the extensions block" },
	{ "sni-list-len-mismatch.bin", "server_name list length does not match its extension" },
	{ "sni-empty-list.bin", "empty server_name list" },
	{ "sni-type-1.bin", "server name type is not host_name" },
	{ "sni-two-host-names.bin", "two host_name entries in server_name" },
	{ "sni-empty-name.bin", "empty server name" },
	{ "sni-nul.bin", "NUL byte in server name" },
	{ "sni-256-bytes.bin", "server name longer than 255 bytes" },
	{ "sni-254-chars.bin", "server name is not a valid host name" },
	{ "sni-leading-hyphen.bin", "server name is not a valid host name" },
	{ "sni-label-64.bin", "server name is not a valid host name" },
	{ "sni-bad-char.bin", "server name is not a valid host name" },
	{ "sni-empty-label.bin", "server name is not a valid host name" },
	{ "sni-name-overrun.bin", "server name runs past its list" },
	{ "duplicate-sni.bin", "duplicate server_name extension" },
	{ "duplicate-extension.bin", "duplicate extension" },
	{ "alpn-empty-list.bin", "empty ALPN list" },
	{ "alpn-empty-name.bin", "empty ALPN protocol name" },
	{ "alpn-len-mismatch.bin", "ALPN list length does not match its extension" },
	{ "alpn-name-overrun.bin", "ALPN protocol name runs past its list" },
	{ "oversize-handshake-length.bin", "client hello larger than 16 KiB" },
	/* synthetic-16k.bin with one more padding byte: PEEK_MAX + 1 bytes of stream. */
	{ "oversize-by-one.bin", "client hello larger than 16 KiB" },
};

static struct sample_suite tls_suite = SAMPLE_SUITE(tls_hello_parse, "tls", valid_samples, malformed_samples);

static enum peek_status
parse_copy(const uint8_t *data, size_t n, struct peek_result *out)
{
	return parse_exact_copy(tls_hello_parse, data, n, out);
}

/* Wrap handshake bytes in handshake records of at most fragment bytes each. */
static size_t
rerecord(const uint8_t *hs, size_t hs_len, size_t fragment, uint8_t *out, size_t cap)
{
	size_t len = 0;
	for (size_t off = 0; off < hs_len; off += fragment) {
		size_t n = hs_len - off < fragment ? hs_len - off : fragment;
		assert_true(len + 5 + n <= cap);
		out[len++] = 22;
		out[len++] = 3;
		out[len++] = 1;
		out[len++] = (uint8_t)(n >> 8);
		out[len++] = (uint8_t)n;
		memcpy(out + len, hs + off, n);
		len += n;
	}
	return len;
}

/* Concatenate the payloads of the handshake records in data; returns their length. */
static size_t
unrecord(const uint8_t *data, size_t len, uint8_t *hs)
{
	size_t hs_len = 0;
	for (size_t pos = 0; pos + 5 <= len; ) {
		size_t n = (size_t)data[pos + 3] << 8 | data[pos + 4];
		assert_int_equal(data[pos], 22);
		assert_true(pos + 5 + n <= len);
		memcpy(hs + hs_len, data + pos + 5, n);
		hs_len += n;
		pos += 5 + n;
	}
	return hs_len;
}

/* The record layer is transparent: any fragmentation gives the same answer,
 * as long as the stream still fits in PEEK_MAX. */
static void
check_fragmentation(const char *file, const char *name, size_t step)
{
	static uint8_t hs[PEEK_MAX], stream[PEEK_MAX * 6];
	struct blob b = load_fixture("tls", file);
	struct peek_result r;
	size_t hs_len = unrecord(b.data, b.len, hs);
	size_t fits = 0, too_large = 0;

	for (size_t fragment = 1; fragment <= hs_len; fragment += fragment < 64 ? 1 : step) {
		size_t len = rerecord(hs, hs_len, fragment, stream, sizeof(stream));
		enum peek_status st = parse_copy(stream, len, &r);
		if (len <= PEEK_MAX) {
			if (st != PEEK_FOUND)
				fail_msg("%s in %zu-byte records: %s (%s)", file, fragment,
					 peek_status_name(st), r.why ? r.why : "");
			assert_string_equal(r.name, name);
			assert_int_equal(r.consumed, len);
			/* Up to the last record's header, the hello is still incomplete. */
			size_t last = (hs_len - 1) % fragment + 1;
			assert_int_equal(parse_copy(stream, len - last, &r), PEEK_NEED_MORE);
			fits++;
		} else {
			if (st != PEEK_INVALID || strcmp(r.why, "client hello larger than 16 KiB") != 0)
				fail_msg("%s in %zu-byte records (%zu bytes): %s (%s)", file, fragment, len,
					 peek_status_name(st), r.why ? r.why : "");
			/* Decided from the lengths, before PEEK_MAX bytes have arrived. */
			assert_true(r.consumed <= PEEK_MAX);
			too_large++;
		}
	}
	print_message("%s: %zu fragmentations fit, %zu too large\n", file, fits, too_large);
	free(b.data);
}

static void
test_any_fragmentation(void **state)
{
	(void)state;
	check_fragmentation("chromium.bin", "a.example", 1);
	check_fragmentation("openssl-split128.bin", "split.example", 1);
	/* Records smaller than ~4 KiB push this one past PEEK_MAX. */
	check_fragmentation("synthetic-16k.bin", "big.example", 7);
}

/* An alert or ChangeCipherSpec record in the middle of the hello is not allowed. */
static void
test_foreign_record_between_fragments(void **state)
{
	static uint8_t stream[4096];
	struct blob b = load_fixture("tls", "openssl-split128.bin");
	struct peek_result r;

	(void)state;
	/* The capture is really split: a second record header follows the first 128 bytes. */
	assert_int_equal(b.data[3] << 8 | b.data[4], 128);
	assert_int_equal(b.data[5 + 128], 22);
	assert_true(b.len <= sizeof(stream));
	for (uint8_t type = 20; type <= 24; type++) {
		if (type == 22)
			continue;
		memcpy(stream, b.data, b.len);
		stream[5 + 128] = type;
		assert_int_equal(parse_copy(stream, b.len, &r), PEEK_INVALID);
		assert_string_equal(r.why, "record type is not handshake");
		assert_int_equal(r.consumed, 5 + 128 + 1);
	}
	free(b.data);
}

static void
test_empty_and_null_input(void **state)
{
	struct peek_result r;

	(void)state;
	assert_int_equal(tls_hello_parse(NULL, 0, &r), PEEK_NEED_MORE);
	assert_int_equal(r.consumed, 0);
	assert_int_equal(parse_copy((const uint8_t *)"", 0, &r), PEEK_NEED_MORE);
	/* A bare record header, then a handshake header promising more. */
	static const uint8_t start[] = { 22, 3, 1, 0, 40, 1, 0, 0, 36 };
	for (size_t n = 0; n <= sizeof(start); n++)
		assert_int_equal(parse_copy(start, n, &r), PEEK_NEED_MORE);
}

static void
test_status_names(void **state)
{
	(void)state;
	assert_string_equal(peek_status_name(PEEK_NEED_MORE), "need-more");
	assert_string_equal(peek_status_name(PEEK_FOUND), "found");
	assert_string_equal(peek_status_name(PEEK_NO_NAME), "no-name");
	assert_string_equal(peek_status_name(PEEK_INVALID), "invalid");
	assert_string_equal(peek_status_name((enum peek_status)42), "unknown");
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_valid_samples, &tls_suite),
		cmocka_unit_test_prestate(test_malformed_samples, &tls_suite),
		cmocka_unit_test_prestate(test_every_fixture_is_listed, &tls_suite),
		cmocka_unit_test(test_any_fragmentation),
		cmocka_unit_test(test_foreign_record_between_fragments),
		cmocka_unit_test(test_empty_and_null_input),
		cmocka_unit_test(test_status_names),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
