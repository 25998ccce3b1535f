/* test_iplimit.c - the keyed hash (SipHash-2-4 reference vectors) and per-prefix counting of IPv6 clients. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include "iplimit.h"
#include "siphash.h"

/* From the SipHash paper's vectors: key 00..0f, message 00 01 .. (len-1). */
static void
test_siphash_vectors(void **state)
{
	static const struct {
		size_t len;
		uint64_t hash;
	} vectors[] = {
		{ 0, 0x726fdb47dd0e0e31ull }, { 1, 0x74f839c593dc67fdull }, { 15, 0xa129ca6149be45e5ull },
		{ 60, 0x6ca4ecb15c5f91e1ull }, { 61, 0x9f626da15c9625f3ull }, { 62, 0xe51b38608ef25f57ull },
		{ 63, 0x958a324ceb064572ull },
	};
	uint8_t key[16], message[64];

	(void)state;
	for (int i = 0; i < 16; i++)
		key[i] = (uint8_t)i;
	for (int i = 0; i < 64; i++)
		message[i] = (uint8_t)i;
	for (size_t i = 0; i < sizeof(vectors) / sizeof(vectors[0]); i++)
		assert_int_equal(siphash24(key, message, vectors[i].len), vectors[i].hash);
	key[0] ^= 1;
	assert_int_not_equal(siphash24(key, message, 15), 0xa129ca6149be45e5ull);
}

static struct sockaddr_storage
address(const char *text)
{
	struct sockaddr_storage ss;
	memset(&ss, 0, sizeof(ss));
	if (strchr(text, ':') != NULL) {
		struct sockaddr_in6 *sin6 = (struct sockaddr_in6 *)(void *)&ss;
		sin6->sin6_family = AF_INET6;
		assert_int_equal(inet_pton(AF_INET6, text, &sin6->sin6_addr), 1);
	} else {
		struct sockaddr_in *sin = (struct sockaddr_in *)(void *)&ss;
		sin->sin_family = AF_INET;
		assert_int_equal(inet_pton(AF_INET, text, &sin->sin_addr), 1);
	}
	return ss;
}

static void
expect_key(const char *addr, unsigned prefix, const char *want)
{
	struct sockaddr_storage ss = address(addr), ws = address(want);
	uint8_t key[16];

	iplimit_key_of(&ss, prefix, key);
	if (memcmp(key, &((struct sockaddr_in6 *)(void *)&ws)->sin6_addr, 16) != 0)
		fail_msg("%s/%u did not give key %s", addr, prefix, want);
}

static void
test_prefix_masking(void **state)
{
	(void)state;
	expect_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 64, "2001:db8:1:2::");
	expect_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 128, "2001:db8:1:2:aaaa:bbbb:cccc:dddd");
	expect_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 48, "2001:db8:1::");
	expect_key("2001:db8:1:2:aaaa:bbbb:cccc:dddd", 60, "2001:db8:1::");
	expect_key("2001:db8:1:ffff::1", 60, "2001:db8:1:fff0::");
	expect_key("ffff::1", 1, "8000::");
	/* IPv4 clients count per address, v4-mapped or not. */
	expect_key("192.0.2.7", 64, "::ffff:192.0.2.7");
	expect_key("::ffff:192.0.2.7", 64, "::ffff:192.0.2.7");
}

/* Two addresses of one /64 share a count; another /64 has its own. */
static void
test_limit_per_prefix(void **state)
{
	struct sockaddr_storage a = address("2001:db8::1"), b = address("2001:db8::2:3");
	struct sockaddr_storage other = address("2001:db8:0:1::1");

	(void)state;
	iplimit_configure(64);
	struct iplimit_entry *ea = iplimit_acquire(&a, 2);
	struct iplimit_entry *eb = iplimit_acquire(&b, 2);
	assert_non_null(ea);
	assert_ptr_equal(ea, eb);
	assert_null(iplimit_acquire(&a, 2));
	assert_null(iplimit_acquire(&b, 2));
	struct iplimit_entry *eo = iplimit_acquire(&other, 2);
	assert_non_null(eo);
	iplimit_release(eb);
	assert_non_null(eb = iplimit_acquire(&b, 2));
	iplimit_release(ea);
	iplimit_release(eb);
	iplimit_release(eo);
	iplimit_clear();
	/* Per /128, the same two addresses are separate clients. */
	iplimit_configure(128);
	struct iplimit_entry *fa = iplimit_acquire(&a, 1);
	struct iplimit_entry *fb = iplimit_acquire(&b, 1);
	assert_non_null(fa);
	assert_non_null(fb);
	assert_ptr_not_equal(fa, fb);
	iplimit_release(fa);
	iplimit_release(fb);
	iplimit_clear();
	iplimit_configure(IPLIMIT_IPV6_PREFIX_DEFAULT);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_siphash_vectors),
		cmocka_unit_test(test_prefix_masking),
		cmocka_unit_test(test_limit_per_prefix),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
