/* test_ssh_ident.c - the SSH identification line parser and the protocol classifier, on every prefix of every sample. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "detect.h"
#include "ssh_ident.h"

struct ident_case {
	const char *in;
	enum peek_status want;		/* on the whole input */
	size_t consumed;		/* verdict's length; 0 = the whole input */
	const char *software;		/* FOUND */
	const char *comments;		/* FOUND; NULL when none */
	size_t len;			/* input length; 0 = strlen (samples holding a NUL say) */
};

static const struct ident_case ident_cases[] = {
	{ "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n", PEEK_FOUND, 0, "OpenSSH_9.2p1", "Debian-2+deb12u3", 0 },
	{ "SSH-2.0-OpenSSH_9.2p1\r\n", PEEK_FOUND, 0, "OpenSSH_9.2p1", NULL, 0 },
	{ "SSH-2.0-PuTTY_Release_0.78\r\n", PEEK_FOUND, 0, "PuTTY_Release_0.78", NULL, 0 },
	{ "SSH-2.0-JSCH-0.1.54\r\n", PEEK_FOUND, 0, "JSCH-0.1.54", NULL, 0 },
	{ "SSH-2.0-Go\n", PEEK_FOUND, 0, "Go", NULL, 0 },		/* bare LF, as OpenSSH accepts */
	{ "SSH-2.0-x \r\n", PEEK_FOUND, 0, "x", "", 0 },
	{ "SSH-2.0-x a b  c\r\n", PEEK_FOUND, 0, "x", "a b  c", 0 },
	/* Bytes after the line (the client's KEXINIT) do not change the verdict. */
	{ "SSH-2.0-x\r\n\x00\x00\x01\x2c\x0a\x14", PEEK_FOUND, 11, "x", NULL, 17 },
	{ "SSH-1.5-OpenSSH_3.0\r\n", PEEK_INVALID, 5, NULL, NULL, 0 },
	{ "SSH-1.99-x\r\n", PEEK_INVALID, 5, NULL, NULL, 0 },
	{ "SSH-2.1-x\r\n", PEEK_INVALID, 7, NULL, NULL, 0 },
	{ "SSH-2.0x\r\n", PEEK_INVALID, 8, NULL, NULL, 0 },
	{ "ssh-2.0-x\r\n", PEEK_INVALID, 1, NULL, NULL, 0 },
	{ "SSH-2.0-\r\n", PEEK_INVALID, 10, NULL, NULL, 0 },
	{ "SSH-2.0- x\r\n", PEEK_INVALID, 9, NULL, NULL, 0 },
	{ "SSH-2.0-x\rx", PEEK_INVALID, 11, NULL, NULL, 0 },
	{ "SSH-2.0-x\tx\r\n", PEEK_INVALID, 10, NULL, NULL, 0 },
	{ "SSH-2.0-x\x00\r\n", PEEK_INVALID, 10, NULL, NULL, 12 },
	{ "SSH-2.0-x \x7f\r\n", PEEK_INVALID, 11, NULL, NULL, 0 },
	{ "SSH-2.0-x\xc3\xa9\r\n", PEEK_INVALID, 10, NULL, NULL, 0 },
	{ "GET / HTTP/1.1\r\n", PEEK_INVALID, 1, NULL, NULL, 0 },
	{ "SSH-2.0-OpenSSH", PEEK_NEED_MORE, 0, NULL, NULL, 0 },
	{ "SSH-2.0-OpenSSH\r", PEEK_NEED_MORE, 0, NULL, NULL, 0 },
};

/* Every shorter prefix of a sample is NEED_MORE, or the same verdict once
 * the bytes the verdict depends on are all there. */
static void
check_prefixes(const uint8_t *buf, size_t len, enum peek_status want, size_t consumed)
{
	for (size_t n = 0; n < len; n++) {
		struct ssh_ident r;
		enum peek_status st = ssh_ident_parse(buf, n, &r);
		if (want != PEEK_NEED_MORE && n >= consumed) {
			assert_int_equal(st, want);
			assert_int_equal(r.consumed, consumed);
		} else {
			if (st != PEEK_NEED_MORE)
				fail_msg("prefix of %zu bytes of '%.*s': %s, expected need-more", n, (int)len, buf,
					 peek_status_name(st));
			assert_int_equal(r.consumed, n);
			assert_null(r.why);
		}
	}
}

static void
test_ident_samples(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(ident_cases) / sizeof(ident_cases[0]); i++) {
		const struct ident_case *k = &ident_cases[i];
		const uint8_t *buf = (const uint8_t *)k->in;
		size_t len = k->len ? k->len : strlen(k->in);
		size_t consumed = k->consumed ? k->consumed : len;
		struct ssh_ident r;
		enum peek_status st = ssh_ident_parse(buf, len, &r);
		if (st != k->want)
			fail_msg("'%s': %s, expected %s (%s)", k->in, peek_status_name(st), peek_status_name(k->want),
				 r.why ? r.why : "");
		assert_int_equal(r.consumed, consumed);
		if (st == PEEK_FOUND) {
			assert_null(r.why);
			assert_int_equal(r.line_len, consumed);
			assert_int_equal(r.software_len, strlen(k->software));
			assert_memory_equal(buf + r.software_off, k->software, r.software_len);
			if (k->comments == NULL) {
				assert_int_equal(r.comments_off, 0);
				assert_int_equal(r.comments_len, 0);
			} else {
				assert_int_equal(r.comments_len, strlen(k->comments));
				assert_memory_equal(buf + r.comments_off, k->comments, r.comments_len);
			}
		} else if (st == PEEK_INVALID) {
			assert_non_null(r.why);
		}
		check_prefixes(buf, len, k->want, consumed);
	}
}

/* The line may be 255 bytes with its CR LF, not one more. */
static void
test_ident_length_limit(void **state)
{
	(void)state;
	uint8_t buf[300];
	memcpy(buf, "SSH-2.0-", 8);
	memset(buf + 8, 'v', sizeof(buf) - 8);
	struct ssh_ident r;

	buf[253] = '\r';
	buf[254] = '\n';
	assert_int_equal(ssh_ident_parse(buf, 255, &r), PEEK_FOUND);
	assert_int_equal(r.line_len, 255);
	check_prefixes(buf, 255, PEEK_FOUND, 255);

	buf[253] = 'v';
	buf[254] = '\n';
	assert_int_equal(ssh_ident_parse(buf, 255, &r), PEEK_FOUND);

	buf[254] = '\r';
	buf[255] = '\n';
	assert_int_equal(ssh_ident_parse(buf, 256, &r), PEEK_INVALID);
	assert_int_equal(r.consumed, 255);
	check_prefixes(buf, 256, PEEK_INVALID, 255);

	buf[254] = 'v';
	assert_int_equal(ssh_ident_parse(buf, sizeof(buf), &r), PEEK_INVALID);
	assert_int_equal(r.consumed, 255);
}

struct detect_case {
	const char *in;
	size_t len;
	enum peek_status want;
	enum detected_proto proto;
	size_t consumed;
};

static const struct detect_case detect_cases[] = {
	{ "\x16\x03\x01\x02\x00", 5, PEEK_FOUND, DETECTED_TLS, 1 },
	{ "GET / HTTP/1.1\r\n", 16, PEEK_FOUND, DETECTED_HTTP, 1 },
	{ "POST /x HTTP/1.0\r\n", 18, PEEK_FOUND, DETECTED_HTTP, 1 },
	{ "SEARCH / HTTP/1.1\r\n", 19, PEEK_FOUND, DETECTED_HTTP, 2 },
	{ "SSHX / HTTP/1.1\r\n", 17, PEEK_FOUND, DETECTED_HTTP, 4 },
	{ "SSH-2.0-OpenSSH_9.2p1\r\n", 23, PEEK_FOUND, DETECTED_SSH, 4 },
	{ "SSH", 3, PEEK_NEED_MORE, DETECTED_NONE, 3 },
	{ "get / HTTP/1.1\r\n", 16, PEEK_INVALID, DETECTED_NONE, 1 },
	{ "\x15\x03\x01\x00\x02", 5, PEEK_INVALID, DETECTED_NONE, 1 },
	{ "\r\n", 2, PEEK_INVALID, DETECTED_NONE, 1 },
	{ "\x00", 1, PEEK_INVALID, DETECTED_NONE, 1 },
	{ "", 0, PEEK_NEED_MORE, DETECTED_NONE, 0 },
};

static void
test_detect_samples(void **state)
{
	(void)state;
	for (size_t i = 0; i < sizeof(detect_cases) / sizeof(detect_cases[0]); i++) {
		const struct detect_case *k = &detect_cases[i];
		const uint8_t *buf = (const uint8_t *)k->in;
		struct detect_result r;
		enum peek_status st = detect_parse(buf, k->len, &r);
		if (st != k->want || r.proto != k->proto)
			fail_msg("sample %zu: %s/%s, expected %s/%s", i, peek_status_name(st), detected_proto_name(r.proto),
				 peek_status_name(k->want), detected_proto_name(k->proto));
		assert_int_equal(r.consumed, k->consumed);
		assert_true((st == PEEK_INVALID) == (r.why != NULL));
		for (size_t n = 0; n < k->len; n++) {
			st = detect_parse(buf, n, &r);
			if (k->want != PEEK_NEED_MORE && n >= k->consumed) {
				assert_int_equal(st, k->want);
				assert_int_equal(r.proto, k->proto);
			} else {
				assert_int_equal(st, PEEK_NEED_MORE);
				assert_int_equal(r.consumed, n);
				assert_int_equal(r.proto, DETECTED_NONE);
			}
		}
	}
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_ident_samples),
		cmocka_unit_test(test_ident_length_limit),
		cmocka_unit_test(test_detect_samples),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
