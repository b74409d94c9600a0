#include <check.h>
#include <stdio.h>
#include <string.h>

#include "failovers.h"

#define ADD(f, s, k, exp) failovers_add((f), (s), strlen(s), (k), (exp))
#define LOST(f, s, k, exp) failovers_lost((f), (s), strlen(s), (k), (exp))
#define DISCOUNT(f, s, k, cap, now) failovers_discount((f), (s), strlen(s), (k), (cap), (now))

/* A delivery is named by its id and count: heard of twice (live queue and
 * stream), it is discounted once; only deliveries before this one count. */
START_TEST(test_once_per_delivery)
{
	struct failovers *f = failovers_new(100);
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(ADD(f, "t", 0, 100), 0);
	ck_assert_int_eq(ADD(f, "t", 0, 100), 0);
	ck_assert_int_eq(DISCOUNT(f, "t", 0, 5, 0), 0);   /* its first delivery */
	ck_assert_int_eq(DISCOUNT(f, "t", 1, 5, 0), 1);
	ck_assert_int_eq(DISCOUNT(f, "t", 3, 5, 0), 1);   /* two crashes after it */
	ck_assert_int_eq(ADD(f, "t", 2, 100), 0);
	ck_assert_int_eq(DISCOUNT(f, "t", 3, 5, 0), 2);
	ck_assert_int_eq(DISCOUNT(f, "other", 3, 5, 0), 0);
	ck_assert_int_eq(DISCOUNT(f, "t1", 3, 5, 0), 0);  /* ids are exact */
	ck_assert_uint_eq(failovers_count(f), 2);
	ck_assert_uint_eq(failovers_outbox(f), 0);        /* heard, not ours */
	failovers_free(f);
}
END_TEST

/* A task that makes taskd lose its connection itself is excused at most
 * cap times, and only within the lookback. */
START_TEST(test_capped)
{
	struct failovers *f = failovers_new(1000);
	for (long k = 0; k < 10; k++)
		ck_assert_int_eq(ADD(f, "loop", k, 100), 0);
	ck_assert_int_eq(DISCOUNT(f, "loop", 10, 5, 0), 5);
	ck_assert_int_eq(DISCOUNT(f, "loop", 10, 100, 0), 10);
	ck_assert_int_eq(DISCOUNT(f, "loop", 10 + FAILOVERS_LOOKBACK, 100, 0), 0);
	failovers_free(f);
}
END_TEST

START_TEST(test_expiry)
{
	struct failovers *f = failovers_new(10);
	ck_assert_int_eq(ADD(f, "a", 0, 50), 0);
	ck_assert_int_eq(ADD(f, "b", 0, 150), 0);
	ck_assert_int_eq(DISCOUNT(f, "a", 1, 5, 49), 1);
	ck_assert_int_eq(DISCOUNT(f, "a", 1, 5, 50), 0);
	ck_assert_uint_eq(failovers_expire(f, 100), 1);
	ck_assert_int_eq(DISCOUNT(f, "b", 1, 5, 100), 1);
	failovers_free(f);
}
END_TEST

/* Our own losses are discounted here at once and wait in the outbox,
 * grouped by count, in reports of at most max ids. */
START_TEST(test_outbox)
{
	struct failovers *f = failovers_new(100);
	char id[16];
	for (int i = 0; i < 25; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		ck_assert_int_eq(LOST(f, id, i % 5 == 0 ? 2 : 0, 100), 0);
	}
	ck_assert_int_eq(DISCOUNT(f, "id-5", 3, 5, 0), 1);
	ck_assert_uint_eq(failovers_outbox(f), 25);
	struct failovers_report r;
	size_t seen0 = 0, seen2 = 0, reports = 0;
	while (failovers_take(f, 8, &r)) {
		ck_assert_uint_ge(r.n, 1);
		ck_assert_uint_le(r.n, 8);
		for (size_t i = 0; i < r.n; i++) {
			int n = -1;
			ck_assert_int_eq(sscanf(r.ids[i], "id-%d", &n), 1);
			ck_assert_int_eq(r.before, n % 5 == 0 ? 2 : 0);
		}
		if (r.before == 0)
			seen0 += r.n;
		else
			seen2 += r.n;
		reports++;
		failovers_report_free(&r);
	}
	ck_assert_uint_eq(seen0, 20);
	ck_assert_uint_eq(seen2, 5);
	ck_assert_uint_eq(reports, 4);   /* 8 + 8 + 4 with count 0, 5 with 2 */
	ck_assert_uint_eq(failovers_outbox(f), 0);
	failovers_free(f);
}
END_TEST

/* The outbox is bounded: past max, losses are remembered here only. */
START_TEST(test_outbox_bounded)
{
	struct failovers *f = failovers_new(10);
	char id[16];
	for (int i = 0; i < 30; i++) {
		snprintf(id, sizeof(id), "id-%d", i);
		ck_assert_int_eq(LOST(f, id, 0, 100), 0);
	}
	ck_assert_uint_eq(failovers_outbox(f), 10);
	ck_assert_uint_le(failovers_count(f), 10);
	failovers_free(f);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("failovers");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_once_per_delivery);
	tcase_add_test(tc, test_capped);
	tcase_add_test(tc, test_expiry);
	tcase_add_test(tc, test_outbox);
	tcase_add_test(tc, test_outbox_bounded);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
