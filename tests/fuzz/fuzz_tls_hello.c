/* fuzz_tls_hello.c - libFuzzer target: tls_hello_parse on arbitrary bytes, checking its invariants. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hostname.h"
#include "tls_hello.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)								\
	do {									\
		if (!(cond)) {							\
			fprintf(stderr, "invariant failed: %s (%s:%d)\n",	\
				#cond, __FILE__, __LINE__);			\
			abort();						\
		}								\
	} while (0)

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

static void
check_result(enum peek_status st, const struct peek_result *r, size_t size)
{
	char again[PEEK_NAME_MAX + 1];

	CHECK(r->consumed <= size);
	switch (st) {
	case PEEK_FOUND:
		CHECK(r->why == NULL);
		CHECK(r->name_len > 0 && r->name_len <= PEEK_NAME_MAX);
		CHECK(r->name_len == strlen(r->name));
		CHECK(hostname_normalize(r->name, r->name_len, again, sizeof(again)) == r->name_len);
		CHECK(strcmp(again, r->name) == 0);
		check_alpn(r);
		break;
	case PEEK_NO_NAME:
		CHECK(r->why != NULL);
		CHECK(r->name_len == 0 && r->name[0] == '\0');
		check_alpn(r);
		break;
	case PEEK_INVALID:
		CHECK(r->why != NULL);
		CHECK(r->name_len == 0 && r->name[0] == '\0' && r->alpn_len == 0);
		break;
	case PEEK_NEED_MORE:
		CHECK(r->consumed == size);
		CHECK(size < PEEK_MAX);	/* a hello that cannot fit is refused, never awaited */
		CHECK(r->name_len == 0 && r->name[0] == '\0' && r->alpn_len == 0);
		break;
	default:
		CHECK(!"unknown status");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peek_result r, at, before;

	enum peek_status st = tls_hello_parse(data, size, &r);
	check_result(st, &r, size);
	if (st == PEEK_NEED_MORE) {
		/* A valid start has only valid starts before it. */
		if (size > 0)
			CHECK(tls_hello_parse(data, size / 2, &before) == PEEK_NEED_MORE);
		return 0;
	}
	/* The verdict depends on exactly the first consumed bytes: it is the
	 * same there, and one byte earlier the parser was still waiting. */
	CHECK(r.consumed > 0);
	CHECK(tls_hello_parse(data, r.consumed, &at) == st);
	CHECK(at.consumed == r.consumed && at.why == r.why);
	CHECK(strcmp(at.name, r.name) == 0);
	CHECK(at.alpn_len == r.alpn_len && memcmp(at.alpn, r.alpn, r.alpn_len) == 0);
	CHECK(tls_hello_parse(data, r.consumed - 1, &before) == PEEK_NEED_MORE);
	return 0;
}
