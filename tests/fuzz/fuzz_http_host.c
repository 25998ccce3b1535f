/* fuzz_http_host.c - libFuzzer target: http_host_parse on arbitrary bytes, checking its invariants. */
#include <arpa/inet.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hostname.h"
#include "http_host.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

#define CHECK(cond)								\
	do {									\
		if (!(cond)) {							\
			fprintf(stderr, "invariant failed: %s (%s:%d)\n",	\
				#cond, __FILE__, __LINE__);			\
			abort();						\
		}								\
	} while (0)

/* A found name is a normalised host name, or an IPv6 literal in canonical text. */
static void
check_name(const struct peek_result *r)
{
	char again[PEEK_NAME_MAX + 1];
	struct in6_addr addr;

	CHECK(r->name_len > 0 && r->name_len <= PEEK_NAME_MAX);
	CHECK(r->name_len == strlen(r->name));
	if (strchr(r->name, ':') != NULL) {
		CHECK(inet_pton(AF_INET6, r->name, &addr) == 1);
		CHECK(inet_ntop(AF_INET6, &addr, again, sizeof(again)) != NULL);
	} else {
		CHECK(hostname_normalize(r->name, r->name_len, again, sizeof(again)) == r->name_len);
	}
	CHECK(strcmp(again, r->name) == 0);
}

static void
check_result(enum peek_status st, const struct peek_result *r, size_t size)
{
	CHECK(r->consumed <= size);
	CHECK(r->alpn_len == 0);
	switch (st) {
	case PEEK_FOUND:
		CHECK(r->why == NULL);
		check_name(r);
		break;
	case PEEK_NO_NAME:
	case PEEK_INVALID:
		CHECK(r->why != NULL);
		CHECK(r->name_len == 0 && r->name[0] == '\0');
		break;
	case PEEK_NEED_MORE:
		CHECK(r->consumed == size);
		CHECK(size < PEEK_MAX);	/* a head that cannot fit is refused, never awaited */
		CHECK(r->name_len == 0 && r->name[0] == '\0');
		break;
	default:
		CHECK(!"unknown status");
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct peek_result r, at, before;

	enum peek_status st = http_host_parse(data, size, &r);
	check_result(st, &r, size);
	if (st == PEEK_NEED_MORE) {
		/* A valid start has only valid starts before it. */
		if (size > 0)
			CHECK(http_host_parse(data, size / 2, &before) == PEEK_NEED_MORE);
		return 0;
	}
	/* The verdict depends on exactly the first consumed bytes: it is the
	 * same there, and one byte earlier the parser was still waiting. */
	CHECK(r.consumed > 0);
	CHECK(http_host_parse(data, r.consumed, &at) == st);
	CHECK(at.consumed == r.consumed && at.why == r.why);
	CHECK(strcmp(at.name, r.name) == 0);
	CHECK(http_host_parse(data, r.consumed - 1, &before) == PEEK_NEED_MORE);
	return 0;
}
