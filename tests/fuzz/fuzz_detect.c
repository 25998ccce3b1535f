/* fuzz_detect.c - libFuzzer target: detect_parse invariants on any input and on its prefixes. */
#include <stdint.h>

#include "detect.h"
#include "fuzz_common.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct detect_result r, again;
	enum peek_status st = detect_parse(data, size, &r);
	CHECK(st != PEEK_NO_NAME);
	CHECK(r.consumed <= size && r.consumed <= 4);
	CHECK((st == PEEK_INVALID) == (r.why != NULL));
	CHECK((st == PEEK_FOUND) == (r.proto != DETECTED_NONE));
	if (st == PEEK_NEED_MORE) {
		CHECK(r.consumed == size);
	} else {
		CHECK(detect_parse(data, r.consumed, &again) == st && again.proto == r.proto);
		CHECK(detect_parse(data, r.consumed - 1, &again) == PEEK_NEED_MORE);
	}
	if (r.proto == DETECTED_TLS)
		CHECK(data[0] == 0x16);
	if (r.proto == DETECTED_SSH)
		CHECK(data[0] == 'S' && data[1] == 'S' && data[2] == 'H' && data[3] == '-');
	return 0;
}
