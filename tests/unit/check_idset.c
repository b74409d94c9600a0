#include <check.h>
#include <stdio.h>
#include <string.h>

#include "idset.h"

#define HAS(c, s, now) idset_has((c), (s), strlen(s), (now))
#define ADD(c, s, exp) idset_add((c), (s), strlen(s), (exp))

START_TEST(test_expiry)
{
	struct idset *c = idset_new(10);
	ck_assert_ptr_nonnull(c);
	ck_assert_int_eq(ADD(c, "a", 100), 0);
	ck_assert(HAS(c, "a", 99.9));
	ck_assert(!HAS(c, "a", 100));       /* expired at its expiry */
	ck_assert(!HAS(c, "b", 0));
	/* A later expiry wins; an earlier one does not shorten it. */
	ck_assert_int_eq(ADD(c, "a", 200), 0);
	ck_assert_int_eq(ADD(c, "a", 150), 0);
	ck_assert(HAS(c, "a", 199));
	ck_assert_uint_eq(idset_count(c), 1);
	ck_assert_uint_eq(idset_expire(c, 200), 0);
	ck_assert(!HAS(c, "a", 0));
	idset_free(c);
}
END_TEST

/* Ids are bytes: a prefix or a longer id is another id. */
START_TEST(test_exact_match)
{
	struct idset *c = idset_new(10);
	ck_assert_int_eq(ADD(c, "task-1", 100), 0);
	ck_assert(!HAS(c, "task-", 0));
	ck_assert(!HAS(c, "task-10", 0));
	ck_assert(idset_has(c, "task-1x", 6, 0));
	idset_free(c);
}
END_TEST

/* Full: the one to expire first makes room; the set never passes max. */
START_TEST(test_bounded)
{
	struct idset *c = idset_new(3);
	ck_assert_int_eq(ADD(c, "a", 10), 0);
	ck_assert_int_eq(ADD(c, "b", 30), 0);
	ck_assert_int_eq(ADD(c, "c", 20), 0);
	ck_assert_int_eq(ADD(c, "d", 40), 0);
	ck_assert_uint_eq(idset_count(c), 3);
	ck_assert(!HAS(c, "a", 0));
	ck_assert(HAS(c, "b", 0) && HAS(c, "c", 0) && HAS(c, "d", 0));
	idset_free(c);
}
END_TEST

/* Many ids: the table grows and still finds every one. */
START_TEST(test_many)
{
	struct idset *c = idset_new(100000);
	char id[32];
	for (int i = 0; i < 20000; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		ck_assert_int_eq(ADD(c, id, i % 2 ? 100 : 50), 0);
	}
	for (int i = 0; i < 20000; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		ck_assert_msg(HAS(c, id, 0), "%s lost", id);
	}
	ck_assert_uint_eq(idset_expire(c, 60), 10000);
	snprintf(id, sizeof(id), "id-%d", 2);
	ck_assert(!HAS(c, id, 0));
	snprintf(id, sizeof(id), "id-%d", 3);
	ck_assert(HAS(c, id, 0));
	idset_free(c);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("idset");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_expiry);
	tcase_add_test(tc, test_exact_match);
	tcase_add_test(tc, test_bounded);
	tcase_add_test(tc, test_many);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
