/* test_log.c - log lines cannot be forged: escaping in log.c, the strict upstream id set. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "log.h"
#include "upstream_id.h"

static void
test_escape(void **state)
{
	char out[64];

	(void)state;
	assert_int_equal(log_escape("plain text: ok", 14, out, sizeof(out)), 14);
	assert_string_equal(out, "plain text: ok");
	log_escape("a\nhandoff[1]: b", 15, out, sizeof(out));
	assert_string_equal(out, "a\\x0ahandoff[1]: b");
	log_escape("\r\t\x1b[31m\x7f", 8, out, sizeof(out));
	assert_string_equal(out, "\\x0d\\x09\\x1b[31m\\x7f");
	log_escape("back\\slash", 10, out, sizeof(out));
	assert_string_equal(out, "back\\\\slash");
	/* Bytes >= 0x80, valid UTF-8 or not, and NUL are escaped too. */
	log_escape("caf\xc3\xa9 \xff", 7, out, sizeof(out));
	assert_string_equal(out, "caf\\xc3\\xa9 \\xff");
	log_escape("a\0b", 3, out, sizeof(out));
	assert_string_equal(out, "a\\x00b");
	/* Truncation never splits an escape. */
	assert_int_equal(log_escape("ab\n", 3, out, 5), 2);
	assert_string_equal(out, "ab");
	assert_int_equal(log_escape("\n", 1, out, 1), 0);
	assert_string_equal(out, "");
}

/* Run fn with stderr sent to a file; return what it wrote (caller frees). */
static char *
capture_stderr(void (*fn)(void))
{
	char path[] = "/tmp/handoff-test-log-XXXXXX";
	int fd = mkstemp(path);
	assert_true(fd >= 0);
	unlink(path);
	int saved = dup(STDERR_FILENO);
	assert_true(saved >= 0);
	assert_int_equal(dup2(fd, STDERR_FILENO), STDERR_FILENO);
	fn();
	assert_int_equal(dup2(saved, STDERR_FILENO), STDERR_FILENO);
	close(saved);
	off_t size = lseek(fd, 0, SEEK_END);
	assert_true(size >= 0);
	char *text = calloc(1, (size_t)size + 1);
	assert_non_null(text);
	assert_int_equal(pread(fd, text, (size_t)size, 0), size);
	close(fd);
	return text;
}

static void
log_forged_names(void)
{
	log_info("registered upstream %s names=%s", "z names=bank.example uid=0\nhandoff[1]: x", "a\\b");
	errno = ENOENT;
	log_warn("cannot read %s", "dir\r\nhandoff[1]: y");
	accesslog_write("client=%s name=%s", "1.2.3.4", "n\nhandoff[1]: z");
}

/* Each call is one line, whatever its arguments: diagnostics and access log alike. */
static void
test_lines_are_escaped(void **state)
{
	(void)state;
	assert_int_equal(accesslog_open("stderr"), 0);
	char *text = capture_stderr(log_forged_names);
	size_t lines = 0;
	for (const char *p = text; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 3);
	assert_non_null(strstr(text, "uid=0\\x0ahandoff[1]: x names=a\\\\b\n"));
	assert_non_null(strstr(text, "dir\\x0d\\x0ahandoff[1]: y: No such file or directory\n"));
	assert_non_null(strstr(text, "name=n\\x0ahandoff[1]: z\n"));
	free(text);
}

static void
test_upstream_ids(void **state)
{
	static const char *const good[] = {
		"a", "1234-abcdef0123456789", "nginx_1.example-2", "A.b",
		"123456789012345678901234567890123456789012345678901234567890123",
	};
	static const char *const bad[] = {
		"", ".hidden", "..", "a b", "a\nb", "z names=x", "a/b", "caf\xc3\xa9", "a\\b", "a:b",
		"1234567890123456789012345678901234567890123456789012345678901234",
	};

	(void)state;
	for (size_t i = 0; i < sizeof(good) / sizeof(good[0]); i++)
		if (!upstream_id_valid(good[i]))
			fail_msg("id '%s' refused", good[i]);
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++)
		if (upstream_id_valid(bad[i]))
			fail_msg("id '%s' accepted", bad[i]);
}

static void
refuse_many_ids(void)
{
	for (int i = 0; i < 100; i++)
		assert_false(upstream_id_accept("x\nhandoff[1]: forged"));
	assert_true(upstream_id_accept("good-id"));
}

/* A flood of bad ids gives one line, not one per file. */
static void
test_bad_ids_rate_limited(void **state)
{
	(void)state;
	char *text = capture_stderr(refuse_many_ids);
	size_t lines = 0;
	for (const char *p = text; *p; p++)
		lines += *p == '\n';
	assert_int_equal(lines, 1);
	assert_non_null(strstr(text, "ignoring upstream file id 'x\\x0ahandoff[1]: forged'"));
	free(text);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_escape),
		cmocka_unit_test(test_lines_are_escaped),
		cmocka_unit_test(test_upstream_ids),
		cmocka_unit_test(test_bad_ids_rate_limited),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
