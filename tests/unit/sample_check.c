/* sample_check.c - fixture-driven checks shared by the unit tests of the peek parsers. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sample_check.h"

/* Fixtures live in tests/fixtures, found from this file's path as make compiles
 * it (tests/unit/...), or from $HANDOFF_FIXTURES. */
static void
fixture_path(char *path, size_t cap, const char *subdir, const char *file)
{
	const char *env = getenv("HANDOFF_FIXTURES");
	char dir[1024];

	if (env != NULL) {
		snprintf(dir, sizeof(dir), "%s", env);
	} else {
		snprintf(dir, sizeof(dir), "%s", __FILE__);
		char *slash = strrchr(dir, '/');
		if (slash != NULL)
			*slash = '\0';
		slash = strrchr(dir, '/');
		if (slash != NULL)
			slash[1] = '\0';
		else
			snprintf(dir, sizeof(dir), "tests/");
		strncat(dir, "fixtures", sizeof(dir) - strlen(dir) - 1);
	}
	snprintf(path, cap, "%s/%s%s%s", dir, subdir, file == NULL ? "" : "/", file == NULL ? "" : file);
}

struct blob
load_fixture(const char *subdir, const char *file)
{
	char path[2048];
	struct blob b = { NULL, 0 };

	fixture_path(path, sizeof(path), subdir, file);
	FILE *f = fopen(path, "rb");
	if (f == NULL)
		fail_msg("cannot open fixture %s (run from the top directory or set HANDOFF_FIXTURES)", path);
	b.data = malloc(PEEK_MAX * 2);
	assert_non_null(b.data);
	b.len = fread(b.data, 1, PEEK_MAX * 2, f);
	assert_int_equal(ferror(f), 0);
	fclose(f);
	assert_true(b.len > 0);
	return b;
}

enum peek_status
parse_exact_copy(peek_parser parse, const uint8_t *data, size_t n, struct peek_result *out)
{
	uint8_t *copy = malloc(n > 0 ? n : 1);
	assert_non_null(copy);
	memcpy(copy, data, n);
	memset(out, 0xa5, sizeof(*out));	/* the parser must set every field it reports */
	enum peek_status st = parse(copy, n, out);
	free(copy);
	return st;
}

/* "h2,http/1.1" -> wire form; returns its length. */
static size_t
alpn_wire(const char *list, uint8_t *wire)
{
	size_t len = 0;
	while (*list != '\0') {
		size_t n = strcspn(list, ",");
		wire[len++] = (uint8_t)n;
		memcpy(wire + len, list, n);
		len += n;
		list += n;
		if (*list == ',')
			list++;
	}
	return len;
}

static void
check_answer(const struct valid_sample *s, size_t n, enum peek_status st, const struct peek_result *r,
	     size_t decided_at)
{
	uint8_t wire[1024];

	if (st != s->status)
		fail_msg("%s: length %zu gave %s (%s), want %s", s->file, n, peek_status_name(st),
			 r->why ? r->why : "", peek_status_name(s->status));
	assert_int_equal(r->consumed, decided_at);
	if (s->name != NULL) {
		assert_string_equal(r->name, s->name);
		assert_int_equal(r->name_len, strlen(s->name));
		assert_null(r->why);
	} else {
		assert_string_equal(r->name, "");
		assert_int_equal(r->name_len, 0);
		assert_non_null(r->why);
	}
	size_t wire_len = s->alpn != NULL ? alpn_wire(s->alpn, wire) : 0;
	assert_int_equal(r->alpn_len, wire_len);
	assert_memory_equal(r->alpn, wire, wire_len);
}

static void
check_valid_sample(peek_parser parse, const struct valid_sample *s, const uint8_t *data, size_t len)
{
	struct peek_result r;
	size_t decided_at = len - s->tail;

	/* Every strict prefix is a valid start: NEED_MORE, nothing reported. */
	for (size_t n = 0; n < decided_at; n++) {
		enum peek_status st = parse_exact_copy(parse, data, n, &r);
		if (st != PEEK_NEED_MORE)
			fail_msg("%s: prefix %zu of %zu gave %s (%s)", s->file, n, len,
				 peek_status_name(st), r.why ? r.why : "");
		assert_int_equal(r.consumed, n);
		assert_int_equal(r.name_len, 0);
		assert_int_equal(r.alpn_len, 0);
	}
	/* From the deciding byte on, the answer never changes. */
	for (size_t n = decided_at; n <= len; n++)
		check_answer(s, n, parse_exact_copy(parse, data, n, &r), &r, decided_at);

	/* One more byte of whatever comes next does not change it either. */
	uint8_t *longer = malloc(len + 1);
	assert_non_null(longer);
	memcpy(longer, data, len);
	for (unsigned garbage = 0; garbage < 256; garbage += 0x55) {
		longer[len] = (uint8_t)garbage;
		check_answer(s, len + 1, parse_exact_copy(parse, longer, len + 1, &r), &r, decided_at);
	}
	free(longer);
}

void
test_valid_samples(void **state)
{
	const struct sample_suite *suite = *state;

	for (size_t i = 0; i < suite->n_valid; i++) {
		struct blob b = load_fixture(suite->protocol, suite->valid[i].file);
		check_valid_sample(suite->parse, &suite->valid[i], b.data, b.len);
		free(b.data);
	}
}

static void
check_malformed_sample(peek_parser parse, const struct malformed_sample *s, const uint8_t *data, size_t len)
{
	struct peek_result r;

	enum peek_status st = parse_exact_copy(parse, data, len, &r);
	if (st != PEEK_INVALID || r.why == NULL || strcmp(r.why, s->why) != 0)
		fail_msg("%s: gave %s (%s), want invalid (%s)", s->file, peek_status_name(st),
			 r.why ? r.why : "", s->why);
	assert_string_equal(r.name, "");
	assert_int_equal(r.alpn_len, 0);
	size_t decided_at = r.consumed;
	assert_true(decided_at > 0 && decided_at <= len);

	/* Shorter prefixes wait; from the deciding byte on, the verdict stands. */
	for (size_t n = 0; n <= len; n++) {
		st = parse_exact_copy(parse, data, n, &r);
		enum peek_status want = n < decided_at ? PEEK_NEED_MORE : PEEK_INVALID;
		if (st != want)
			fail_msg("%s: prefix %zu gave %s (%s), want %s", s->file, n,
				 peek_status_name(st), r.why ? r.why : "", peek_status_name(want));
		if (st == PEEK_INVALID)
			assert_string_equal(r.why, s->why);
	}
}

void
test_malformed_samples(void **state)
{
	const struct sample_suite *suite = *state;
	char subdir[256];

	snprintf(subdir, sizeof(subdir), "malformed/%s", suite->protocol);
	for (size_t i = 0; i < suite->n_malformed; i++) {
		struct blob b = load_fixture(subdir, suite->malformed[i].file);
		check_malformed_sample(suite->parse, &suite->malformed[i], b.data, b.len);
		free(b.data);
	}
}

/* Every file under subdir must be one of files: no fixture goes untested. */
static void
check_listed(const char *subdir, const char *const *files, size_t n_files)
{
	char path[2048];
	fixture_path(path, sizeof(path), subdir, NULL);
	DIR *dir = opendir(path);
	if (dir == NULL)
		fail_msg("cannot list %s", path);
	size_t seen = 0;
	struct dirent *e;
	while ((e = readdir(dir)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		bool listed = false;
		for (size_t i = 0; i < n_files && !listed; i++)
			listed = strcmp(files[i], e->d_name) == 0;
		if (!listed)
			fail_msg("%s/%s has no expected answer in this test", subdir, e->d_name);
		seen++;
	}
	closedir(dir);
	assert_int_equal(seen, n_files);
}

void
test_every_fixture_is_listed(void **state)
{
	const struct sample_suite *suite = *state;
	size_t most = suite->n_valid > suite->n_malformed ? suite->n_valid : suite->n_malformed;
	const char **files = calloc(most > 0 ? most : 1, sizeof(*files));
	char subdir[256];

	assert_non_null(files);
	for (size_t i = 0; i < suite->n_valid; i++)
		files[i] = suite->valid[i].file;
	check_listed(suite->protocol, files, suite->n_valid);
	for (size_t i = 0; i < suite->n_malformed; i++)
		files[i] = suite->malformed[i].file;
	snprintf(subdir, sizeof(subdir), "malformed/%s", suite->protocol);
	check_listed(subdir, files, suite->n_malformed);
	free(files);
}
