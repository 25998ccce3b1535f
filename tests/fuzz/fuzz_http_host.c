/* fuzz_http_host.c - libFuzzer target: http_host_parse on arbitrary bytes, checking its invariants. */
#include <stdint.h>

#include "fuzz_common.h"
#include "http_host.h"

/* HTTP never reports ALPN, and its Host may be an IPv6 literal. */
static void
check_http_answer(enum peek_status st, const struct peek_result *r)
{
	CHECK(r->alpn_len == 0);
	if (st == PEEK_FOUND)
		check_found_name(r, true);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_peek_parser(http_host_parse, check_http_answer, data, size);
	return 0;
}
