/* test_http_host.c - HTTP/1 Host parser against sample and malformed request heads. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "http_host.h"
#include "peek.h"
#include "sample_check.h"

static const struct valid_sample valid_samples[] = {
	{ "crlf.http", PEEK_FOUND, "www.example.com", NULL, 0 },
	{ "lf-only.http", PEEK_FOUND, "www.example.com", NULL, 0 },
	/* Absolute-form (any scheme): decided at the end of the head, where the
	 * Host header has named the same host as the target. */
	{ "absolute-form.http", PEEK_FOUND, "proxy.example", NULL, 0 },
	{ "absolute-https-upper.http", PEEK_FOUND, "a.example", NULL, 0 },
	{ "absolute-ws-scheme.http", PEEK_FOUND, "a.example", NULL, 0 },
	{ "absolute-other-userinfo.http", PEEK_FOUND, "files.example", NULL, 0 },
	/* HTTP/1.0 may omit Host: the target alone names the host, for both readers. */
	{ "absolute-http10-no-host.http", PEEK_FOUND, "old.example", NULL, 0 },
	{ "http10-no-host.http", PEEK_NO_NAME, NULL, NULL, 0 },
	{ "http10-host.http", PEEK_FOUND, "old.example", NULL, 0 },
	{ "host-port.http", PEEK_FOUND, "a.example", NULL, 0 },
	{ "host-ipv4.http", PEEK_FOUND, "127.0.0.1", NULL, 0 },
	/* IPv6 literals are stored without brackets, in canonical form. */
	{ "host-ipv6-port.http", PEEK_FOUND, "2001:db8::1", NULL, 0 },
	{ "host-ipv6.http", PEEK_FOUND, "::1", NULL, 0 },
	{ "host-ows-case.http", PEEK_FOUND, "www.example.org", NULL, 0 },
	{ "empty-host.http", PEEK_NO_NAME, NULL, NULL, 0 },
	{ "leading-crlf.http", PEEK_FOUND, "a.example", NULL, 0 },
	{ "connect.http", PEEK_FOUND, "a.example", NULL, 0 },
	{ "post-body.http", PEEK_FOUND, "post.example", NULL, sizeof("hello") - 1 },
	{ "obs-text-value.http", PEEK_FOUND, "a.example", NULL, 0 },
	{ "headers-100.http", PEEK_FOUND, "many.example", NULL, 0 },
	{ "line-8192.http", PEEK_FOUND, "a.example", NULL, 0 },
};

static const struct malformed_sample malformed_samples[] = {
	{ "folding.http", "obsolete header line folding" },
	{ "folding-first.http", "obsolete header line folding" },
	{ "duplicate-host.http", "several Host headers" },
	{ "version-1-2.http", "unsupported HTTP version" },
	{ "version-1-10.http", "unsupported HTTP version" },
	{ "version-lowercase.http", "unsupported HTTP version" },
	{ "h2-preface.http", "HTTP/2 prior knowledge is not supported" },
	{ "http09.http", "request line lacks an HTTP version" },
	{ "missing-host-11.http", "HTTP/1.1 request without Host" },
	{ "too-many-headers.http", "request head too large" },
	{ "long-line.http", "request head too large" },
	{ "oversize-head.http", "request head too large" },
	{ "nul-in-header.http", "NUL byte in request head" },
	{ "control-in-header.http", "control character in request head" },
	{ "del-in-target.http", "control character in request head" },
	{ "bare-cr.http", "bare CR in request head" },
	{ "space-before-colon.http", "whitespace before colon in header" },
	{ "header-no-colon.http", "header line without a colon" },
	{ "empty-header-name.http", "bad character in header name" },
	{ "bad-host-char.http", "host is not a valid host name" },
	{ "bad-port.http", "bad port in host" },
	{ "port-letters.http", "bad port in host" },
	{ "host-ipv6-unbracketed.http", "empty host name" },
	{ "host-ipv6-bad.http", "bad IPv6 literal in host" },
	{ "host-only-port.http", "empty host name" },
	{ "userinfo-absolute.http", "userinfo in request target" },
	{ "absolute-empty-host.http", "absolute-form target without a host" },
	{ "absolute-host-mismatch.http", "Host does not match the request target" },
	{ "absolute-ws-mismatch.http", "Host does not match the request target" },
	{ "absolute-empty-host-header.http", "Host does not match the request target" },
	{ "absolute-no-host-11.http", "HTTP/1.1 request without Host" },
	{ "absolute-duplicate-host.http", "several Host headers" },
	{ "absolute-bad-header-after.http", "whitespace before colon in header" },
	{ "bad-method.http", "bad character in method" },
	{ "double-space.http", "empty request target" },
	{ "empty-request-line.http", "empty request line" },
	{ "tls-hello.http", "TLS handshake on a plain HTTP listener" },
};

static struct sample_suite http_suite = SAMPLE_SUITE(http_host_parse, "http", valid_samples, malformed_samples);

static enum peek_status
parse_copy(const uint8_t *data, size_t n, struct peek_result *out)
{
	return parse_exact_copy(http_host_parse, data, n, out);
}

static enum peek_status
parse_text(const char *text, struct peek_result *out)
{
	return parse_copy((const uint8_t *)text, strlen(text), out);
}

struct host_case {
	const char *value;	/* Host header value as sent */
	const char *name;	/* expected name, NULL if the request is invalid */
};

static void
test_host_values(void **state)
{
	static const struct host_case cases[] = {
		{ "a.example", "a.example" },
		{ "A.Example.", "a.example" },
		{ "a.example:", "a.example" },		/* RFC 3986: the port may be empty */
		{ "a.example:0", "a.example" },
		{ "a.example:0080", "a.example" },
		{ "a.example:65535", "a.example" },
		{ "a_b.example", "a_b.example" },
		{ "xn--bcher-kva.example", "xn--bcher-kva.example" },
		{ "localhost", "localhost" },
		{ "10.1.2.3:8080", "10.1.2.3" },
		{ "[::FFFF:127.0.0.1]", "::ffff:127.0.0.1" },
		{ "[2001:0db8:0000:0000:0000:0000:0000:0001]:443", "2001:db8::1" },
		{ "a.example:65536", NULL },
		{ "a.example:123456", NULL },
		{ "a.example:-1", NULL },
		{ "a.example:80:80", NULL },
		{ "[fe80::1%25eth0]", NULL },		/* zone ids are for link-local use only */
		{ "[]", NULL },
		{ "[::1", NULL },
		{ "[::1]x", NULL },
		{ "[::1]:99999", NULL },
		{ "[v1.abc]", NULL },
		{ "b\xc3\xbc" "cher.example", NULL },	/* IDNs must arrive as A-labels */
		{ "a.example, b.example", NULL },
		{ "user@a.example", NULL },
		{ "a..example", NULL },
		{ "-a.example", NULL },
		{ "a%2eexample", NULL },
	};
	char request[512];
	struct peek_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		snprintf(request, sizeof(request), "GET / HTTP/1.1\r\nHost: %s\r\n\r\n", cases[i].value);
		enum peek_status st = parse_text(request, &r);
		if (cases[i].name != NULL) {
			if (st != PEEK_FOUND || strcmp(r.name, cases[i].name) != 0)
				fail_msg("Host: %s gave %s \"%s\" (%s), want \"%s\"", cases[i].value,
					 peek_status_name(st), r.name, r.why ? r.why : "", cases[i].name);
		} else if (st != PEEK_INVALID) {
			fail_msg("Host: %s gave %s \"%s\", want invalid", cases[i].value,
				 peek_status_name(st), r.name);
		}
	}
}

struct target_case {
	const char *request_line;
	const char *host;	/* Host header value, NULL for none */
	enum peek_status status;
	const char *name;
};

static void
test_request_targets(void **state)
{
	static const struct target_case cases[] = {
		{ "GET http://a.example HTTP/1.1", "a.example", PEEK_FOUND, "a.example" },
		{ "GET HTTP://A.EXAMPLE:80?x=1 HTTP/1.1", "a.example:8080", PEEK_FOUND, "a.example" },
		{ "GET http://a.example#frag HTTP/1.1", "A.EXAMPLE.", PEEK_FOUND, "a.example" },
		{ "GET https://[::1]:8443/x HTTP/1.0", "[0::1]", PEEK_FOUND, "::1" },
		{ "GET https://[::1]:8443/x HTTP/1.0", NULL, PEEK_FOUND, "::1" },
		/* Any scheme://authority is absolute-form: Host must agree with it. */
		{ "GET ws://a.example/ HTTP/1.1", "a.example", PEEK_FOUND, "a.example" },
		{ "GET ws://a.example/ HTTP/1.1", "b.example", PEEK_INVALID, NULL },
		{ "GET ftp://a.example/ HTTP/1.1", "host.example", PEEK_INVALID, NULL },
		{ "GET httpx://a.example/ HTTP/1.1", "a.example", PEEK_FOUND, "a.example" },
		{ "GET x-y.z+1://u:p@a.example:1/ HTTP/1.1", "a.example", PEEK_FOUND, "a.example" },
		{ "GET ws://u@b.example@a.example/ HTTP/1.1", "a.example", PEEK_FOUND, "a.example" },
		{ "GET ws:///x HTTP/1.1", "a.example", PEEK_INVALID, NULL },
		{ "GET http://a.example/ HTTP/1.1", "b.example", PEEK_INVALID, NULL },
		{ "GET http://a.example/ HTTP/1.0", "b.example", PEEK_INVALID, NULL },
		{ "GET http://a.example/ HTTP/1.1", NULL, PEEK_INVALID, NULL },
		{ "GET http://127.0.0.1/ HTTP/1.1", "127.0.0.1:80", PEEK_FOUND, "127.0.0.1" },
		{ "GET http://[::1]/ HTTP/1.1", "::1", PEEK_INVALID, NULL },
		/* Not a scheme: origin-form or authority-form, Host decides. */
		{ "OPTIONS * HTTP/1.1", "host.example", PEEK_FOUND, "host.example" },
		{ "GET /http://a.example HTTP/1.1", "host.example", PEEK_FOUND, "host.example" },
		{ "GET 1http://a.example/ HTTP/1.1", "host.example", PEEK_FOUND, "host.example" },
		{ "GET http:/a.example HTTP/1.1", "host.example", PEEK_FOUND, "host.example" },
		{ "CONNECT a.example:443 HTTP/1.1", "host.example", PEEK_FOUND, "host.example" },
		{ "GET / HTTP/1.1", NULL, PEEK_INVALID, NULL },
		{ "GET / HTTP/1.0", NULL, PEEK_NO_NAME, NULL },
		{ "GET http://bad!.example/ HTTP/1.1", "host.example", PEEK_INVALID, NULL },
		{ "GET http://a.example:x/ HTTP/1.1", "a.example", PEEK_INVALID, NULL },
		{ "GET http://a.example HTTP/2.0", "a.example", PEEK_INVALID, NULL },
		{ "GET\t/ HTTP/1.1", "host.example", PEEK_INVALID, NULL },
		{ "GET / HTTP/1.1 ", "host.example", PEEK_INVALID, NULL },
		{ "GET / HTTP/1.", "host.example", PEEK_INVALID, NULL },
		{ "GET /caf\xc3\xa9 HTTP/1.1", "host.example", PEEK_INVALID, NULL },
		{ " GET / HTTP/1.1", "host.example", PEEK_INVALID, NULL },
	};
	char request[512];
	struct peek_result r;

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		if (cases[i].host != NULL)
			snprintf(request, sizeof(request), "%s\r\nHost: %s\r\n\r\n", cases[i].request_line,
				 cases[i].host);
		else
			snprintf(request, sizeof(request), "%s\r\n\r\n", cases[i].request_line);
		enum peek_status st = parse_text(request, &r);
		if (st != cases[i].status
		    || (cases[i].name != NULL && strcmp(r.name, cases[i].name) != 0))
			fail_msg("\"%s\" Host %s gave %s \"%s\" (%s)", cases[i].request_line,
				 cases[i].host ? cases[i].host : "(none)",
				 peek_status_name(st), r.name, r.why ? r.why : "");
	}
}

/* Two Host headers are invalid even when the second is empty, and however it is spelt. */
static void
test_host_header_count(void **state)
{
	struct peek_result r;

	(void)state;
	assert_int_equal(parse_text("GET / HTTP/1.1\r\nHost: a.example\r\nHOST:\r\n\r\n", &r), PEEK_INVALID);
	assert_string_equal(r.why, "several Host headers");
	assert_int_equal(parse_text("GET / HTTP/1.1\r\nHost:\r\nhost: a.example\r\n\r\n", &r), PEEK_INVALID);
	/* Names that merely start with "host" are other headers. */
	assert_int_equal(parse_text("GET / HTTP/1.1\r\nHost: a.example\r\nHostname: b\r\nX-Host: c\r\n\r\n", &r),
			 PEEK_FOUND);
	assert_string_equal(r.name, "a.example");
	/* An empty Host with an HTTP/1.0 request has no name either. */
	assert_int_equal(parse_text("GET / HTTP/1.0\r\nHost: \t \r\n\r\n", &r), PEEK_NO_NAME);
	assert_string_equal(r.why, "empty Host header");
}

static void
test_empty_and_null_input(void **state)
{
	struct peek_result r;

	(void)state;
	assert_int_equal(http_host_parse(NULL, 0, &r), PEEK_NEED_MORE);
	assert_int_equal(r.consumed, 0);
	/* A stray CR LF before the request line is ignored; two are not. */
	assert_int_equal(parse_text("\r\n", &r), PEEK_NEED_MORE);
	assert_int_equal(parse_text("\n", &r), PEEK_NEED_MORE);
	assert_int_equal(parse_text("\r\n\r", &r), PEEK_NEED_MORE);
	assert_int_equal(parse_text("\r\n\r\n", &r), PEEK_INVALID);
}

/* A head that never ends is refused at PEEK_MAX bytes, never left waiting. */
static void
test_head_limit(void **state)
{
	static char head[PEEK_MAX * 2];
	struct peek_result r;
	int len = snprintf(head, sizeof(head), "GET / HTTP/1.1\r\nHost: a.example\r\n");

	(void)state;
	for (int i = 0; len <= PEEK_MAX; i++)
		len += snprintf(head + len, sizeof(head) - (size_t)len, "X-%02d: %0*d\r\n", i, 7000, 0);
	assert_true(len > PEEK_MAX && (size_t)len < sizeof(head));
	assert_int_equal(parse_copy((const uint8_t *)head, PEEK_MAX - 1, &r), PEEK_NEED_MORE);
	assert_int_equal(parse_copy((const uint8_t *)head, PEEK_MAX, &r), PEEK_INVALID);
	assert_string_equal(r.why, "request head too large");
	assert_int_equal(r.consumed, PEEK_MAX);
	assert_int_equal(parse_copy((const uint8_t *)head, (size_t)len, &r), PEEK_INVALID);
	assert_int_equal(r.consumed, PEEK_MAX);
}

/* Answers of http_host_parse_resume fed len bytes in steps of stride must equal the one-shot answers. */
static void
check_resume(const char *file, const uint8_t *data, size_t len, size_t stride)
{
	struct http_progress progress = { 0 };
	struct peek_result once, resumed;

	for (size_t n = 0; ; n = n + stride < len ? n + stride : len) {
		uint8_t *copy = malloc(n ? n : 1);
		assert_non_null(copy);
		memcpy(copy, data, n);
		enum peek_status want = http_host_parse(copy, n, &once);
		enum peek_status got = http_host_parse_resume(copy, n, &progress, &resumed);
		free(copy);
		if (got != want || resumed.consumed != once.consumed || strcmp(resumed.name, once.name) != 0
		    || (want != PEEK_NEED_MORE && want != PEEK_FOUND && strcmp(resumed.why, once.why) != 0))
			fail_msg("%s, stride %zu, length %zu: resumed %s \"%s\" consumed %zu, once %s \"%s\" consumed %zu",
				 file, stride, n, peek_status_name(got), resumed.name, resumed.consumed,
				 peek_status_name(want), once.name, once.consumed);
		if (want != PEEK_NEED_MORE) {
			/* A verdict leaves progress alone: asking again gives it again. */
			assert_int_equal(http_host_parse_resume(data, len, &progress, &resumed), want);
			assert_int_equal(resumed.consumed, once.consumed);
			return;
		}
		if (n == len)
			return;
	}
}

/* The resumable parser gives the one-shot answer however the bytes arrive. */
static void
test_resume_matches_one_shot(void **state)
{
	static const size_t strides[] = { 1, 2, 3, 7, 64, 1000 };

	(void)state;
	for (size_t i = 0; i < sizeof(valid_samples) / sizeof(valid_samples[0]) + sizeof(malformed_samples) / sizeof(malformed_samples[0]); i++) {
		bool valid = i < sizeof(valid_samples) / sizeof(valid_samples[0]);
		const char *file = valid ? valid_samples[i].file
					 : malformed_samples[i - sizeof(valid_samples) / sizeof(valid_samples[0])].file;
		struct blob b = load_fixture(valid ? "http" : "malformed/http", file);
		for (size_t k = 0; k < sizeof(strides) / sizeof(strides[0]); k++)
			check_resume(file, b.data, b.len, strides[k]);
		free(b.data);
	}
	/* Progress from other bytes, longer than this input, is not trusted. */
	struct http_progress progress = { .line_start = 100, .lines = 3 };
	struct peek_result r;
	assert_int_equal(http_host_parse_resume((const uint8_t *)"GET / HTTP/1.0\r\n\r\n", 18, &progress, &r),
			 PEEK_NO_NAME);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_prestate(test_valid_samples, &http_suite),
		cmocka_unit_test_prestate(test_malformed_samples, &http_suite),
		cmocka_unit_test_prestate(test_every_fixture_is_listed, &http_suite),
		cmocka_unit_test(test_host_values),
		cmocka_unit_test(test_request_targets),
		cmocka_unit_test(test_host_header_count),
		cmocka_unit_test(test_empty_and_null_input),
		cmocka_unit_test(test_head_limit),
		cmocka_unit_test(test_resume_matches_one_shot),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
