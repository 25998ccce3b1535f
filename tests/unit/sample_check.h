/* sample_check.h - fixture-driven checks shared by the unit tests of the peek parsers. */
#ifndef HANDOFF_SAMPLE_CHECK_H
#define HANDOFF_SAMPLE_CHECK_H

#include <stddef.h>
#include <stdint.h>

#include "peek.h"

/* The signature every peek parser shares (tls_hello_parse, http_host_parse). */
typedef enum peek_status (*peek_parser)(const uint8_t *buf, size_t len, struct peek_result *out);

struct valid_sample {
	const char *file;		/* under tests/fixtures/<protocol>/ */
	enum peek_status status;
	const char *name;		/* expected normalised name, NULL for none */
	const char *alpn;		/* expected ALPN list as "a,b", NULL for none */
	size_t tail;			/* bytes after the deciding point that the parser must ignore */
};

struct malformed_sample {
	const char *file;		/* under tests/fixtures/malformed/<protocol>/ */
	const char *why;		/* the reason the parser must give */
};

/* A parser with the expected answers for every fixture of its protocol. */
struct sample_suite {
	peek_parser parse;
	const char *protocol;		/* fixture directory name: "tls", "http" */
	const struct valid_sample *valid;
	size_t n_valid;
	const struct malformed_sample *malformed;
	size_t n_malformed;
};

/* The initializer of a suite over two fixture tables, which must be arrays. */
#define SAMPLE_SUITE(parser, protocol_name, valid_table, malformed_table) {			\
	.parse = (parser), .protocol = (protocol_name),						\
	.valid = (valid_table), .n_valid = sizeof(valid_table) / sizeof((valid_table)[0]),	\
	.malformed = (malformed_table),								\
	.n_malformed = sizeof(malformed_table) / sizeof((malformed_table)[0]),			\
}

struct blob {
	uint8_t *data;
	size_t len;
};

/* The contents of tests/fixtures/<subdir>/<file>, in a heap buffer the caller frees. */
struct blob load_fixture(const char *subdir, const char *file);

/* Parse an exact-size heap copy of data[0..n) so ASan catches any read past the end. */
enum peek_status parse_exact_copy(peek_parser parse, const uint8_t *data, size_t n,
				  struct peek_result *out);

/*
 * cmocka tests over a suite, which is their initial state: register them with
 * cmocka_unit_test_prestate(test_..., &suite).
 *
 * Every valid sample: each strict prefix before its deciding point waits with
 * nothing reported; from there on, and with one more byte appended, the answer is
 * the expected one and never changes.
 */
void test_valid_samples(void **state);

/* Every malformed sample is invalid for its reason, decided at one byte:
 * shorter prefixes wait, longer ones keep the verdict. */
void test_malformed_samples(void **state);

/* No file under the suite's fixture directories goes without an expected answer. */
void test_every_fixture_is_listed(void **state);

#endif
