/* fuzz_common.h - invariant checks shared by the libFuzzer targets of the peek parsers. */
#ifndef HANDOFF_FUZZ_COMMON_H
#define HANDOFF_FUZZ_COMMON_H

#include <arpa/inet.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include "hostname.h"
#include "peek.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Unlike assert(), stays on whatever the build flags, and names the failed invariant. */
#define CHECK(cond)								\
	do {									\
		if (!(cond)) {							\
			fprintf(stderr, "invariant failed: %s (%s:%d)\n",	\
				#cond, __FILE__, __LINE__);			\
			abort();						\
		}								\
	} while (0)

/* The signature the peek parsers share (tls_hello_parse, http_host_parse). */
typedef enum peek_status (*peek_parser)(const uint8_t *buf, size_t len, struct peek_result *out);

/* What a parser adds to the checks every peek parser passes. */
typedef void (*peek_answer_check)(enum peek_status st, const struct peek_result *r);

/* A found name is a normalised host name or, where the protocol allows one,
 * an IPv6 literal in canonical text. */
static inline void
check_found_name(const struct peek_result *r, bool ipv6_literal_allowed)
{
	char again[PEEK_NAME_MAX + 1];
	struct in6_addr addr;

	CHECK(r->name_len > 0 && r->name_len <= PEEK_NAME_MAX);
	CHECK(r->name_len == strlen(r->name));
	if (ipv6_literal_allowed && strchr(r->name, ':') != NULL) {
		CHECK(inet_pton(AF_INET6, r->name, &addr) == 1);
		CHECK(inet_ntop(AF_INET6, &addr, again, sizeof(again)) != NULL);
	} else {
		CHECK(hostname_normalize(r->name, r->name_len, again, sizeof(again)) == r->name_len);
	}
	CHECK(strcmp(again, r->name) == 0);
}

/* The answer to size bytes keeps the contract in peek.h, whatever the parser. */
static inline void
check_peek_answer(enum peek_status st, const struct peek_result *r, size_t size)
{
	CHECK(r->consumed <= size);
	switch (st) {
	case PEEK_FOUND:
		CHECK(r->why == NULL);
		break;
	case PEEK_NO_NAME:
		CHECK(r->why != NULL);
		CHECK(r->name_len == 0 && r->name[0] == '\0');
		break;
	case PEEK_INVALID:
		CHECK(r->why != NULL);
		CHECK(r->name_len == 0 && r->name[0] == '\0' && r->alpn_len == 0);
		break;
	case PEEK_NEED_MORE:
		CHECK(r->consumed == size);
		CHECK(size < PEEK_MAX);	/* input that cannot fit is refused, never awaited */
		CHECK(r->name_len == 0 && r->name[0] == '\0' && r->alpn_len == 0);
		break;
	default:
		CHECK(!"unknown status");
	}
}

/*
 * Run parse on the fuzz input and check its answer, generally and with
 * check_answer, then check that a verdict depends on exactly the first
 * consumed bytes.
 */
static inline void
fuzz_peek_parser(peek_parser parse, peek_answer_check check_answer, const uint8_t *data, size_t size)
{
	struct peek_result r, at, before;

	enum peek_status st = parse(data, size, &r);
	check_peek_answer(st, &r, size);
	check_answer(st, &r);
	if (st == PEEK_NEED_MORE) {
		/* A valid start has only valid starts before it. */
		if (size > 0)
			CHECK(parse(data, size / 2, &before) == PEEK_NEED_MORE);
		return;
	}
	/* The verdict is the same on exactly the first consumed bytes, and
	 * one byte earlier the parser was still waiting. */
	CHECK(r.consumed > 0);
	CHECK(parse(data, r.consumed, &at) == st);
	CHECK(at.consumed == r.consumed && at.why == r.why);
	CHECK(strcmp(at.name, r.name) == 0);
	CHECK(at.alpn_len == r.alpn_len && memcmp(at.alpn, r.alpn, r.alpn_len) == 0);
	CHECK(parse(data, r.consumed - 1, &before) == PEEK_NEED_MORE);
}

#endif
