/* test_nametable.c - unit tests for the host name table: exact, wildcard and catch-all lookup. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "nametable.h"

/* Distinct addresses to store as values; the table never dereferences them. */
static int value_a, value_b, value_c, value_d;

static int
setup_table(void **state)
{
	struct nametable *t = nametable_new();
	if (t == NULL)
		return -1;
	*state = t;
	return 0;
}

static int
teardown_table(void **state)
{
	nametable_free(*state);
	return 0;
}

static void
test_empty_table(void **state)
{
	struct nametable *t = *state;
	const char *matched = "untouched";
	assert_int_equal(nametable_count(t), 0);
	assert_null(nametable_get(t, "a.example"));
	assert_null(nametable_match(t, "a.example", &matched));
	assert_null(matched);
}

static void
test_exact(void **state)
{
	struct nametable *t = *state;
	const char *matched = NULL;
	assert_int_equal(nametable_set(t, "a.example", &value_a), 0);
	assert_int_equal(nametable_set(t, "b.example", &value_b), 0);
	assert_ptr_equal(nametable_get(t, "a.example"), &value_a);
	assert_ptr_equal(nametable_get(t, "b.example"), &value_b);
	assert_null(nametable_get(t, "c.example"));
	assert_ptr_equal(nametable_match(t, "b.example", &matched), &value_b);
	assert_string_equal(matched, "b.example");
	/* No wildcard stored, so neither a child nor the parent matches. */
	assert_null(nametable_match(t, "x.a.example", NULL));
	assert_null(nametable_match(t, "example", NULL));
}

static void
test_replace_keeps_one_entry(void **state)
{
	struct nametable *t = *state;
	assert_int_equal(nametable_set(t, "a.example", &value_a), 0);
	assert_int_equal(nametable_set(t, "a.example", &value_b), 0);
	assert_int_equal(nametable_count(t), 1);
	assert_ptr_equal(nametable_get(t, "a.example"), &value_b);
}

static void
test_key_is_copied(void **state)
{
	struct nametable *t = *state;
	char key[32];
	const char *matched = NULL;
	strcpy(key, "a.example");
	assert_int_equal(nametable_set(t, key, &value_a), 0);
	strcpy(key, "zzzzzzzzz");
	assert_ptr_equal(nametable_match(t, "a.example", &matched), &value_a);
	assert_string_equal(matched, "a.example");
	assert_ptr_not_equal(matched, key);
}

static void
test_wildcard(void **state)
{
	struct nametable *t = *state;
	const char *matched = NULL;
	assert_int_equal(nametable_set(t, "*.apps.example", &value_a), 0);
	assert_ptr_equal(nametable_match(t, "x.apps.example", &matched), &value_a);
	assert_string_equal(matched, "*.apps.example");
	assert_ptr_equal(nametable_match(t, "y.x.apps.example", &matched), &value_a);
	assert_string_equal(matched, "*.apps.example");
	/* A wildcard needs at least one more label. */
	assert_null(nametable_match(t, "apps.example", NULL));
	assert_null(nametable_match(t, "xapps.example", NULL));
	assert_null(nametable_match(t, "x.other.example", NULL));
	/* Looking up the pattern itself finds the pattern's entry exactly. */
	assert_ptr_equal(nametable_match(t, "*.apps.example", &matched), &value_a);
	assert_string_equal(matched, "*.apps.example");
}

static void
test_most_specific_wins(void **state)
{
	struct nametable *t = *state;
	const char *matched = NULL;
	assert_int_equal(nametable_set(t, "*", &value_d), 0);
	assert_int_equal(nametable_set(t, "*.example", &value_c), 0);
	assert_int_equal(nametable_set(t, "*.apps.example", &value_b), 0);
	assert_int_equal(nametable_set(t, "x.apps.example", &value_a), 0);

	assert_ptr_equal(nametable_match(t, "x.apps.example", &matched), &value_a);
	assert_string_equal(matched, "x.apps.example");
	assert_ptr_equal(nametable_match(t, "y.apps.example", &matched), &value_b);
	assert_string_equal(matched, "*.apps.example");
	assert_ptr_equal(nametable_match(t, "z.y.apps.example", &matched), &value_b);
	assert_string_equal(matched, "*.apps.example");
	assert_ptr_equal(nametable_match(t, "apps.example", &matched), &value_c);
	assert_string_equal(matched, "*.example");
	assert_ptr_equal(nametable_match(t, "example", &matched), &value_d);
	assert_string_equal(matched, "*");
	assert_ptr_equal(nametable_match(t, "other.test", &matched), &value_d);
	assert_string_equal(matched, "*");

	/* Removing the more specific entries exposes the broader ones in turn. */
	nametable_del(t, "x.apps.example");
	assert_ptr_equal(nametable_match(t, "x.apps.example", &matched), &value_b);
	nametable_del(t, "*.apps.example");
	assert_ptr_equal(nametable_match(t, "x.apps.example", &matched), &value_c);
	assert_string_equal(matched, "*.example");
	nametable_del(t, "*.example");
	assert_ptr_equal(nametable_match(t, "x.apps.example", &matched), &value_d);
	assert_string_equal(matched, "*");
}

static void
test_catch_all(void **state)
{
	struct nametable *t = *state;
	const char *matched = NULL;
	assert_int_equal(nametable_set(t, "*", &value_a), 0);
	assert_ptr_equal(nametable_match(t, "anything.example", &matched), &value_a);
	assert_string_equal(matched, "*");
	assert_ptr_equal(nametable_match(t, "localhost", &matched), &value_a);
	assert_string_equal(matched, "*");
	/* "*" is a key like any other for exact lookups. */
	assert_ptr_equal(nametable_get(t, "*"), &value_a);
	assert_null(nametable_get(t, "localhost"));
}

static void
test_delete(void **state)
{
	struct nametable *t = *state;
	assert_int_equal(nametable_set(t, "a.example", &value_a), 0);
	assert_int_equal(nametable_set(t, "b.example", &value_b), 0);
	assert_int_equal(nametable_count(t), 2);

	nametable_del(t, "missing.example");
	assert_int_equal(nametable_count(t), 2);

	nametable_del(t, "a.example");
	assert_int_equal(nametable_count(t), 1);
	assert_null(nametable_get(t, "a.example"));
	assert_null(nametable_match(t, "a.example", NULL));
	assert_ptr_equal(nametable_get(t, "b.example"), &value_b);

	nametable_del(t, "a.example");
	assert_int_equal(nametable_count(t), 1);

	/* A deleted key can be added again. */
	assert_int_equal(nametable_set(t, "a.example", &value_c), 0);
	assert_ptr_equal(nametable_get(t, "a.example"), &value_c);
	assert_int_equal(nametable_count(t), 2);
}

#define MANY 10000

static void
test_growth(void **state)
{
	struct nametable *t = *state;
	static char values[MANY];	/* &values[i] is entry i's value */
	char key[64];
	for (int i = 0; i < MANY; i++) {
		snprintf(key, sizeof(key), "host%d.example", i);
		assert_int_equal(nametable_set(t, key, &values[i]), 0);
	}
	assert_int_equal(nametable_count(t), MANY);
	for (int i = 0; i < MANY; i++) {
		const char *matched = NULL;
		snprintf(key, sizeof(key), "host%d.example", i);
		assert_ptr_equal(nametable_get(t, key), &values[i]);
		assert_ptr_equal(nametable_match(t, key, &matched), &values[i]);
		assert_string_equal(matched, key);
	}
	assert_null(nametable_get(t, "host10000.example"));

	/* Delete every other entry; the rest stay reachable. */
	for (int i = 0; i < MANY; i += 2) {
		snprintf(key, sizeof(key), "host%d.example", i);
		nametable_del(t, key);
	}
	assert_int_equal(nametable_count(t), MANY / 2);
	for (int i = 0; i < MANY; i++) {
		snprintf(key, sizeof(key), "host%d.example", i);
		if (i % 2 == 0)
			assert_null(nametable_get(t, key));
		else
			assert_ptr_equal(nametable_get(t, key), &values[i]);
	}
}

struct visit {
	size_t calls;
	int seen_a, seen_b, seen_c;
};

static void
count_visit(const char *key, void *value, void *arg)
{
	struct visit *v = arg;
	v->calls++;
	if (strcmp(key, "a.example") == 0 && value == &value_a)
		v->seen_a++;
	else if (strcmp(key, "*.example") == 0 && value == &value_b)
		v->seen_b++;
	else if (strcmp(key, "*") == 0 && value == &value_c)
		v->seen_c++;
}

static void
test_foreach_and_count(void **state)
{
	struct nametable *t = *state;
	struct visit v = { 0 };
	nametable_foreach(t, count_visit, &v);
	assert_int_equal(v.calls, 0);

	assert_int_equal(nametable_set(t, "a.example", &value_a), 0);
	assert_int_equal(nametable_set(t, "*.example", &value_b), 0);
	assert_int_equal(nametable_set(t, "*", &value_c), 0);
	assert_int_equal(nametable_count(t), 3);
	nametable_foreach(t, count_visit, &v);
	assert_int_equal(v.calls, 3);
	assert_int_equal(v.seen_a, 1);
	assert_int_equal(v.seen_b, 1);
	assert_int_equal(v.seen_c, 1);
}

int
main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_empty_table, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_exact, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_replace_keeps_one_entry, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_key_is_copied, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_wildcard, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_most_specific_wins, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_catch_all, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_delete, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_growth, setup_table, teardown_table),
		cmocka_unit_test_setup_teardown(test_foreach_and_count, setup_table, teardown_table),
	};
	return cmocka_run_group_tests(tests, NULL, NULL);
}
