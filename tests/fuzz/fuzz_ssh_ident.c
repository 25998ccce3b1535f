/* fuzz_ssh_ident.c - libFuzzer target: ssh_ident_parse invariants on any input and on its prefixes. */
#include <stdint.h>
#include <string.h>

#include "fuzz_common.h"
#include "ssh_ident.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct ssh_ident r, again;
	enum peek_status st = ssh_ident_parse(data, size, &r);
	CHECK(st != PEEK_NO_NAME);
	CHECK(r.consumed <= size);
	CHECK((st == PEEK_INVALID) == (r.why != NULL));
	if (st == PEEK_NEED_MORE) {
		CHECK(r.consumed == size && size < SSH_IDENT_MAX);
	} else {
		CHECK(r.consumed > 0 && r.consumed <= SSH_IDENT_MAX);
		/* The verdict depends on exactly the first consumed bytes. */
		CHECK(ssh_ident_parse(data, r.consumed, &again) == st);
		CHECK(memcmp(&again, &r, sizeof(r)) == 0);
		CHECK(ssh_ident_parse(data, r.consumed - 1, &again) == PEEK_NEED_MORE);
	}
	if (st == PEEK_FOUND) {
		CHECK(r.line_len == r.consumed && data[r.line_len - 1] == '\n');
		CHECK(memcmp(data, "SSH-2.0-", 8) == 0);
		CHECK(r.software_off == 8 && r.software_len > 0);
		CHECK(r.software_off + r.software_len < r.line_len);
		for (size_t i = 0; i < r.software_len; i++)
			CHECK(data[r.software_off + i] > 0x20 && data[r.software_off + i] < 0x7f);
		if (r.comments_off != 0)
			CHECK(r.comments_off + r.comments_len < r.line_len);
		else
			CHECK(r.comments_len == 0);
	} else {
		CHECK(r.line_len == 0 && r.software_len == 0 && r.comments_len == 0);
	}
	return 0;
}
