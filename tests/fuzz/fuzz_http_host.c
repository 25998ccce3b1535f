/* fuzz_http_host.c - libFuzzer target: http_host_parse on arbitrary bytes, checking its invariants. */
#include <stdint.h>
#include <string.h>

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

/*
 * The resumable parser, fed growing prefixes (step sizes taken from the
 * input's own bytes), answers exactly as the one-shot parser at every step.
 */
static void
check_resume(const uint8_t *data, size_t size)
{
	struct http_progress progress;
	struct peek_result once, resumed;
	size_t n = 0;

	memset(&progress, 0, sizeof(progress));
	for (size_t step = 0; ; step++) {
		enum peek_status want = http_host_parse(data, n, &once);
		enum peek_status got = http_host_parse_resume(data, n, &progress, &resumed);
		CHECK(got == want);
		CHECK(resumed.consumed == once.consumed);
		CHECK(strcmp(resumed.name, once.name) == 0);
		CHECK((resumed.why == NULL) == (once.why == NULL));
		CHECK(resumed.why == NULL || strcmp(resumed.why, once.why) == 0);
		if (want != PEEK_NEED_MORE || n == size)
			return;
		size_t stride = 1 + data[step % size] % 97;
		n = size - n < stride ? size : n + stride;
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	fuzz_peek_parser(http_host_parse, check_http_answer, data, size);
	if (size > 0)
		check_resume(data, size);
	return 0;
}
