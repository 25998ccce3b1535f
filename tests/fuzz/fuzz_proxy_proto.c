/* fuzz_proxy_proto.c - libFuzzer target: proxy_proto_parse invariants and encode/decode round trips. */
#include <netinet/in.h>
#include <stdint.h>
#include <string.h>
#include <sys/socket.h>

#include "fuzz_common.h"
#include "proxy_proto.h"

static size_t
sockaddr_size(const struct sockaddr_storage *ss)
{
	return ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
}

static void
check_same_address(const struct sockaddr_storage *a, const struct sockaddr_storage *b)
{
	CHECK(a->ss_family == b->ss_family);
	if (a->ss_family != AF_UNSPEC)
		CHECK(memcmp(a, b, sockaddr_size(a)) == 0);
}

static void
check_same_result(const struct proxy_result *a, const struct proxy_result *b)
{
	CHECK(a->header_len == b->header_len);
	CHECK(a->consumed == b->consumed);
	CHECK(a->version == b->version);
	CHECK(a->is_local == b->is_local);
	CHECK(a->why == b->why);
	check_same_address(&a->src, &b->src);
	check_same_address(&a->dst, &b->dst);
	CHECK(a->authority_len == b->authority_len);
	CHECK(strcmp(a->authority, b->authority) == 0);
	CHECK(a->alpn_len == b->alpn_len);
	CHECK(memcmp(a->alpn, b->alpn, a->alpn_len) == 0);
}

static void
check_empty(const struct proxy_result *r)
{
	CHECK(r->header_len == 0 && r->version == 0 && !r->is_local);
	CHECK(r->src.ss_family == AF_UNSPEC && r->dst.ss_family == AF_UNSPEC);
	CHECK(r->authority_len == 0 && r->authority[0] == '\0' && r->alpn_len == 0);
}

static void
check_result(enum peek_status st, const struct proxy_result *r, size_t size)
{
	CHECK(r->consumed <= size);
	switch (st) {
	case PEEK_FOUND:
		CHECK(r->why == NULL);
		CHECK(r->header_len == r->consumed && r->header_len > 0);
		CHECK(r->header_len <= PROXY_V2_MAX);
		CHECK(r->version == 1 || r->version == 2);
		if (r->version == 1) {
			CHECK(r->header_len <= PROXY_V1_MAX);
			CHECK(r->authority_len == 0 && r->alpn_len == 0);
		}
		CHECK(r->authority_len <= PROXY_AUTHORITY_MAX);
		CHECK(strlen(r->authority) == r->authority_len);
		CHECK(r->alpn_len <= PROXY_ALPN_MAX);
		if (r->is_local) {
			CHECK(r->src.ss_family == AF_UNSPEC && r->dst.ss_family == AF_UNSPEC);
			CHECK(r->authority_len == 0 && r->alpn_len == 0);
		} else {
			CHECK(r->src.ss_family == AF_INET || r->src.ss_family == AF_INET6);
			CHECK(r->src.ss_family == r->dst.ss_family);
		}
		break;
	case PEEK_INVALID:
		CHECK(r->why != NULL);
		CHECK(r->consumed > 0);
		check_empty(r);
		break;
	case PEEK_NEED_MORE:
		CHECK(r->why == NULL);
		CHECK(r->consumed == size);
		CHECK(size < PROXY_V2_MAX);	/* nothing larger is ever waited for */
		check_empty(r);
		break;
	default:
		CHECK(!"unknown status");
	}
}

/* Encode what was decoded and decode it again: the same connection comes back. */
static void
check_reencode(const struct proxy_result *r)
{
	uint8_t header[PROXY_ENCODED_MAX];
	struct proxy_result again;
	struct proxy_tlvs tlvs = {
		.authority = r->authority, .alpn = r->alpn, .alpn_len = r->alpn_len,
	};

	size_t n = proxy_proto_encode(header, sizeof(header), r->version, &r->src, &r->dst, &tlvs);
	CHECK(n > 0);
	CHECK(proxy_proto_parse(header, n, &again) == PEEK_FOUND);
	CHECK(again.header_len == n);
	CHECK(again.version == r->version);
	CHECK(again.is_local == r->is_local);
	check_same_address(&again.src, &r->src);
	check_same_address(&again.dst, &r->dst);
	if (r->version == 2) {
		CHECK(strcmp(again.authority, r->authority) == 0);
		CHECK(again.alpn_len == r->alpn_len && memcmp(again.alpn, r->alpn, r->alpn_len) == 0);
	}
}

/* A sockaddr from fuzz bytes: 4 or 16 address bytes, then 2 port bytes. */
static struct sockaddr_storage
sockaddr_from_bytes(int family, const uint8_t *p)
{
	struct sockaddr_storage ss;

	memset(&ss, 0, sizeof(ss));
	if (family == AF_INET) {
		struct sockaddr_in sin = { .sin_family = AF_INET };
		memcpy(&sin.sin_addr, p, 4);
		memcpy(&sin.sin_port, p + 16, 2);
		memcpy(&ss, &sin, sizeof(sin));
	} else {
		struct sockaddr_in6 sin6 = { .sin6_family = AF_INET6 };
		memcpy(&sin6.sin6_addr, p, 16);
		memcpy(&sin6.sin6_port, p + 16, 2);
		memcpy(&ss, &sin6, sizeof(sin6));
	}
	return ss;
}

/* What the decoder should report for an address sent next to one of family peer. */
static struct sockaddr_storage
expected_address(const struct sockaddr_storage *ss, int peer)
{
	struct sockaddr_in sin;
	struct sockaddr_in6 sin6;
	struct sockaddr_storage mapped;

	if (ss->ss_family == peer || ss->ss_family == AF_INET6)
		return *ss;
	memcpy(&sin, ss, sizeof(sin));
	memset(&sin6, 0, sizeof(sin6));
	sin6.sin6_family = AF_INET6;
	sin6.sin6_port = sin.sin_port;
	sin6.sin6_addr.s6_addr[10] = 0xff;
	sin6.sin6_addr.s6_addr[11] = 0xff;
	memcpy(&sin6.sin6_addr.s6_addr[12], &sin.sin_addr, 4);
	memset(&mapped, 0, sizeof(mapped));
	memcpy(&mapped, &sin6, sizeof(sin6));
	return mapped;
}

/*
 * Treat the input as a connection to describe: a selector byte, two
 * 18-byte address+port blocks, then authority bytes up to a NUL and ALPN
 * bytes. Both versions must encode it, and decode to exactly it.
 */
static void
check_encode_from_bytes(const uint8_t *data, size_t size)
{
	char authority[PROXY_AUTHORITY_MAX + 1];
	uint8_t header[PROXY_ENCODED_MAX];
	struct proxy_result r;

	if (size < 37)
		return;
	int src_family = (data[0] & 1) ? AF_INET6 : AF_INET;
	int dst_family = (data[0] & 2) ? AF_INET6 : AF_INET;
	struct sockaddr_storage src = sockaddr_from_bytes(src_family, data + 1);
	struct sockaddr_storage dst = sockaddr_from_bytes(dst_family, data + 19);
	const uint8_t *rest = data + 37;
	size_t rest_len = size - 37;

	size_t authority_len = 0;
	while (authority_len < rest_len && authority_len < PROXY_AUTHORITY_MAX && rest[authority_len] != 0)
		authority_len++;
	memcpy(authority, rest, authority_len);
	authority[authority_len] = '\0';
	const uint8_t *alpn = rest + authority_len;
	size_t alpn_len = rest_len - authority_len;
	if (alpn_len > 0) {
		alpn++;		/* skip the NUL or the byte past the authority limit */
		alpn_len--;
	}
	if (alpn_len > PROXY_ALPN_MAX)
		alpn_len = PROXY_ALPN_MAX;
	struct proxy_tlvs tlvs = { .authority = authority, .alpn = alpn, .alpn_len = alpn_len };

	struct sockaddr_storage want_src = expected_address(&src, dst_family);
	struct sockaddr_storage want_dst = expected_address(&dst, src_family);
	for (int version = 1; version <= 2; version++) {
		size_t n = proxy_proto_encode(header, sizeof(header), version, &src, &dst, &tlvs);
		CHECK(n > 0 && n <= (version == 1 ? PROXY_V1_MAX : PROXY_ENCODED_MAX));
		CHECK(proxy_proto_parse(header, n, &r) == PEEK_FOUND);
		CHECK(r.header_len == n && r.version == version && !r.is_local);
		check_same_address(&r.src, &want_src);
		check_same_address(&r.dst, &want_dst);
		if (version == 2) {
			CHECK(strcmp(r.authority, authority) == 0);
			CHECK(r.alpn_len == alpn_len && memcmp(r.alpn, alpn, alpn_len) == 0);
		}
		/* Every shorter prefix is a valid start. */
		CHECK(proxy_proto_parse(header, n - 1, &r) == PEEK_NEED_MORE);
		CHECK(proxy_proto_parse(header, n / 2, &r) == PEEK_NEED_MORE);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct proxy_result r, at, before;

	check_encode_from_bytes(data, size);

	enum peek_status st = proxy_proto_parse(data, size, &r);
	check_result(st, &r, size);
	if (st == PEEK_NEED_MORE) {
		/* A valid start has only valid starts before it. */
		if (size > 0)
			CHECK(proxy_proto_parse(data, size / 2, &before) == PEEK_NEED_MORE);
		return 0;
	}
	/* The verdict depends on exactly the first consumed bytes: it is the
	 * same there, and one byte earlier the parser was still waiting. */
	CHECK(proxy_proto_parse(data, r.consumed, &at) == st);
	check_same_result(&at, &r);
	CHECK(proxy_proto_parse(data, r.consumed - 1, &before) == PEEK_NEED_MORE);
	if (st == PEEK_FOUND && !r.is_local)
		check_reencode(&r);
	return 0;
}
