/* fuzz_tls_hello.c - libFuzzer target: tls_hello_parse on arbitrary bytes, checking its invariants. */
#include <stdint.h>

#include "fuzz_common.h"
#include "tls_hello.h"

/* The reported ALPN is a well-formed protocol_name_list: 1..255-byte names, exactly filling it. */
static void
check_alpn(const struct peek_result *r)
{
	size_t pos = 0;

	CHECK(r->alpn_len <= PEEK_ALPN_MAX);
	while (pos < r->alpn_len) {
		CHECK(r->alpn[pos] > 0);
		pos += 1 + (size_t)r->alpn[pos];
	}
	CHECK(pos == r->alpn_len);
}

/* SNI carries host names only, never address literals. */
static void
check_tls_answer(enum peek_status st, const struct peek_result *r)
{
	if (st == PEEK_FOUND)
		check_found_name(r, false);
	if (st == PEEK_FOUND || st == PEEK_NO_NAME)
		check_alpn(r);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_peek_parser(tls_hello_parse, check_tls_answer, data, size);
	return 0;
}
