/* test_hostname.c - host name normalisation, route pattern normalisation and pattern covering. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostname.h"

struct norm_case {
	const char *in;
	const char *out;	/* NULL: must be rejected */
};

static const struct norm_case name_cases[] = {
	{ "a.example", "a.example" },
	{ "A.EXAMPLE", "a.example" },
	{ "MiXeD-Case.Example.ORG", "mixed-case.example.org" },
	{ "a.example.", "a.example" },		/* one trailing dot is the root */
	{ "localhost", "localhost" },
	{ "a", "a" },
	{ "0", "0" },
	{ "127.0.0.1", "127.0.0.1" },		/* IPv4 literals pass as names */
	{ "_acme-challenge.a.example", "_acme-challenge.a.example" },
	{ "a_b.example", "a_b.example" },
	{ "xn--bcher-kva.example", "xn--bcher-kva.example" },
	{ "XN--BCHER-KVA.EXAMPLE", "xn--bcher-kva.example" },
	{ "a-b.c-d", "a-b.c-d" },
	{ "1a.2b", "1a.2b" },
	{ "", NULL },
	{ ".", NULL },
	{ "..", NULL },
	{ "a.example..", NULL },		/* only one trailing dot is dropped */
	{ ".a.example", NULL },
	{ "a..example", NULL },
	{ "-a.example", NULL },
	{ "a-.example", NULL },
	{ "a.example-", NULL },
	{ "a.-example", NULL },
	{ "a b.example", NULL },
	{ "a!.example", NULL },
	{ "a*.example", NULL },
	{ "*.example", NULL },			/* wildcards are patterns, not names */
	{ "*", NULL },
	{ "a:80", NULL },
	{ "[::1]", NULL },
	{ "::1", NULL },
	{ "a/b", NULL },
	{ "a%2e.example", NULL },
	{ "b\xc3\xbc" "cher.example", NULL },	/* raw UTF-8: IDNs must be A-labels */
	{ "a\x7f.example", NULL },
	{ "a\t.example", NULL },
};

static const struct norm_case pattern_cases[] = {
	{ "*", "*" },
	{ "*.a.example", "*.a.example" },
	{ "*.A.Example.", "*.a.example" },
	{ "a.example", "a.example" },
	{ "A.Example", "a.example" },
	{ "*.", NULL },
	{ "*..a", NULL },
	{ "**", NULL },
	{ "**.a.example", NULL },
	{ "*a.example", NULL },
	{ "a.*.example", NULL },
	{ "a.example.*", NULL },
	{ "*.*.example", NULL },
	{ "*.-a.example", NULL },
	{ "", NULL },
	{ ".", NULL },
};

static void
check_norm(size_t (*normalize)(const char *, size_t, char *, size_t), const struct norm_case *cases,
	   size_t n_cases)
{
	char out[HOSTNAME_MAX + 1];

	for (size_t i = 0; i < n_cases; i++) {
		const char *in = cases[i].in;
		size_t len = strlen(in);
		/* An exact-size heap copy without a NUL lets ASan catch reads past len. */
		char *copy = malloc(len > 0 ? len : 1);
		assert_non_null(copy);
		memcpy(copy, in, len);
		memset(out, 'x', sizeof(out));
		size_t got = normalize(copy, len, out, sizeof(out));
		free(copy);
		if (cases[i].out == NULL) {
			if (got != 0 || out[0] != '\0')
				fail_msg("\"%s\" gave \"%s\", want rejection", in, out);
		} else {
			if (got != strlen(cases[i].out) || strcmp(out, cases[i].out) != 0)
				fail_msg("\"%s\" gave %zu \"%s\", want \"%s\"", in, got, got ? out : "", cases[i].out);
		}
	}
}

static void
test_normalize(void **state)
{
	(void)state;
	check_norm(hostname_normalize, name_cases, sizeof(name_cases) / sizeof(name_cases[0]));
}

static void
test_normalize_pattern(void **state)
{
	(void)state;
	check_norm(hostname_normalize_pattern, pattern_cases, sizeof(pattern_cases) / sizeof(pattern_cases[0]));
}

/* A string of labels of the given lengths joined by dots, e.g. {63, 63} -> "aaa...a.bbb...b". */
static size_t
make_name(char *out, const size_t *labels, size_t n_labels)
{
	size_t len = 0;
	for (size_t i = 0; i < n_labels; i++) {
		if (i > 0)
			out[len++] = '.';
		memset(out + len, 'a' + (int)i, labels[i]);
		len += labels[i];
	}
	out[len] = '\0';
	return len;
}

static void
test_length_limits(void **state)
{
	char in[600], out[HOSTNAME_MAX + 1];

	(void)state;
	/* Labels: 63 bytes is the most. */
	size_t label63[] = { 63, 7 }, label64[] = { 64, 7 };
	size_t len = make_name(in, label63, 2);
	assert_int_equal(hostname_normalize(in, len, out, sizeof(out)), len);
	len = make_name(in, label64, 2);
	assert_int_equal(hostname_normalize(in, len, out, sizeof(out)), 0);

	/* Names: 253 characters is the most, 254 with the trailing dot. */
	size_t name253[] = { 63, 63, 63, 61 }, name254[] = { 63, 63, 63, 62 };
	len = make_name(in, name253, 4);
	assert_int_equal(len, 253);
	assert_int_equal(hostname_normalize(in, len, out, sizeof(out)), 253);
	assert_string_equal(out, in);
	in[len] = '.';
	assert_int_equal(hostname_normalize(in, len + 1, out, sizeof(out)), 253);
	len = make_name(in, name254, 4);
	assert_int_equal(hostname_normalize(in, len, out, sizeof(out)), 0);
	assert_string_equal(out, "");

	/* "*." counts towards the 253. */
	size_t suffix251[] = { 63, 63, 63, 59 }, suffix252[] = { 63, 63, 63, 60 };
	in[0] = '*';
	in[1] = '.';
	len = make_name(in + 2, suffix251, 4) + 2;
	assert_int_equal(hostname_normalize_pattern(in, len, out, sizeof(out)), 253);
	len = make_name(in + 2, suffix252, 4) + 2;
	assert_int_equal(hostname_normalize_pattern(in, len, out, sizeof(out)), 0);
}

/* The result must fit with its NUL; a short buffer rejects instead of truncating. */
static void
test_output_capacity(void **state)
{
	char out[16];

	(void)state;
	assert_int_equal(hostname_normalize("a.example", 9, out, 10), 9);
	assert_string_equal(out, "a.example");
	assert_int_equal(hostname_normalize("a.example", 9, out, 9), 0);
	assert_string_equal(out, "");
	assert_int_equal(hostname_normalize("a.example", 9, out, 0), 0);
	assert_int_equal(hostname_normalize_pattern("*", 1, out, 1), 0);
	assert_int_equal(hostname_normalize_pattern("*.a", 3, out, 3), 0);
	assert_int_equal(hostname_normalize_pattern("*.a", 3, out, 4), 3);
	assert_string_equal(out, "*.a");
	/* The length bounds the input: bytes after it are not part of the name. */
	assert_int_equal(hostname_normalize("a.example!!", 9, out, sizeof(out)), 9);
	assert_string_equal(out, "a.example");
	assert_int_equal(hostname_normalize(NULL, 0, out, sizeof(out)), 0);
}

struct cover_case {
	const char *pattern;
	const char *name;
	bool covers;
};

static void
test_pattern_covers(void **state)
{
	static const struct cover_case cases[] = {
		{ "a.example", "a.example", true },
		{ "a.example", "b.example", false },
		{ "a.example", "x.a.example", false },
		{ "*", "a.example", true },
		{ "*", "localhost", true },
		{ "*", "*.a.example", true },
		{ "*.a.example", "x.a.example", true },
		{ "*.a.example", "y.x.a.example", true },
		{ "*.a.example", "a.example", false },
		{ "*.a.example", "xa.example", false },
		{ "*.a.example", "x.b.example", false },
		{ "*.a.example", "x.a.example.org", false },
		{ "*.a.example", "*.a.example", true },
		{ "*.a.example", "*.x.a.example", true },
		{ "*.x.a.example", "*.a.example", false },
		{ "*.x.a.example", "y.a.example", false },
		{ "x.a.example", "*.a.example", false },
		{ "*.a.example", "", false },
	};

	(void)state;
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		bool got = hostname_pattern_covers(cases[i].pattern, cases[i].name);
		if (got != cases[i].covers)
			fail_msg("\"%s\" covers \"%s\": got %d", cases[i].pattern, cases[i].name, got);
	}
	assert_false(hostname_pattern_covers(NULL, "a.example"));
	assert_false(hostname_pattern_covers("*", NULL));
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_normalize),
		cmocka_unit_test(test_normalize_pattern),
		cmocka_unit_test(test_length_limits),
		cmocka_unit_test(test_output_capacity),
		cmocka_unit_test(test_pattern_covers),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
