#include <check.h>
#include <stdlib.h>

#include "suspect.h"

static int
window_for(int max, int prefetch, long level)
{
	struct suspect s;
	suspect_init(&s, max, prefetch);
	s.level = level;
	return suspect_window(&s);
}

/* The windows: full at level 0, one on the last allowed delivery,
 * geometric in between. */
START_TEST(test_windows)
{
	ck_assert_int_eq(window_for(3, 10002, 0), 10002);
	ck_assert_int_eq(window_for(3, 10002, 1), 101);
	ck_assert_int_eq(window_for(3, 10002, 2), 1);
	ck_assert_int_eq(window_for(5, 10000, 1), 1000);
	ck_assert_int_eq(window_for(5, 10000, 2), 100);
	ck_assert_int_eq(window_for(5, 10000, 3), 10);
	ck_assert_int_eq(window_for(5, 10000, 4), 1);
	ck_assert_int_eq(window_for(2, 10000, 1), 1);
	ck_assert_int_eq(window_for(3, 1, 1), 1);
	ck_assert_int_eq(window_for(3, 1, 0), 1);
	/* Never wider at a higher level, never empty. */
	for (int max = 2; max <= 12; max++)
		for (int pf = 1; pf <= 65535; pf = pf * 3 + 1)
			for (long l = 1; l < max; l++) {
				int w = window_for(max, pf, l);
				ck_assert_int_ge(w, 1);
				ck_assert_int_le(w, window_for(max, pf, l - 1));
			}
}
END_TEST

/* The invariant that keeps innocents within the limit: a task runs only
 * at a level at least its count, and at the last level alone.  A crash
 * then raises the count of a task in the window by one, to at most the
 * level + 1, which is at most max - 1 below the last level. */
START_TEST(test_arrival_invariant)
{
	for (int max = 2; max <= 7; max++) {
		struct suspect s;
		suspect_init(&s, max, 400);
		srandom(42);
		for (int i = 0; i < 20000; i++) {
			long c = random() % max;   /* counts below max run */
			long before = s.level;
			enum suspect_verdict v = suspect_arrival(&s, c);
			ck_assert_int_ge(s.level, c);
			ck_assert_int_le(s.level, max - 1);
			switch (v) {
			case SUSPECT_ALONE:
				ck_assert_int_gt(c, before);
				ck_assert_int_eq(s.level, c);
				break;
			case SUSPECT_WIDEN:
				ck_assert_int_eq(s.level, before - 1);
				break;
			case SUSPECT_RUN:
				ck_assert_int_eq(s.level, before);
				break;
			}
			ck_assert(!suspect_last(&s, c) || s.level < max - 1 ||
			    suspect_window(&s) == 1);
		}
	}
}
END_TEST

/* Down a step after a window's worth of tasks below the level in a row;
 * one at the level starts the count again. */
START_TEST(test_lowering)
{
	struct suspect s;
	suspect_init(&s, 3, 10002);
	ck_assert_int_eq(suspect_arrival(&s, 0), SUSPECT_RUN);
	ck_assert_int_eq(suspect_arrival(&s, 2), SUSPECT_ALONE);
	ck_assert_int_eq(suspect_window(&s), 1);
	ck_assert_int_eq(suspect_arrival(&s, 1), SUSPECT_WIDEN);
	ck_assert_int_eq(s.level, 1);
	ck_assert_int_eq(suspect_window(&s), 101);
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(suspect_arrival(&s, 0), SUSPECT_RUN);
	ck_assert_int_eq(suspect_arrival(&s, 1), SUSPECT_RUN);   /* calm again from 0 */
	for (int i = 0; i < 100; i++)
		ck_assert_int_eq(suspect_arrival(&s, 0), SUSPECT_RUN);
	ck_assert_int_eq(suspect_arrival(&s, 0), SUSPECT_WIDEN);
	ck_assert_int_eq(s.level, 0);
	ck_assert_int_eq(suspect_window(&s), 10002);
	/* Fresh tasks at level 0 never cost anything. */
	for (int i = 0; i < 100000; i++)
		ck_assert_int_eq(suspect_arrival(&s, 0), SUSPECT_RUN);
}
END_TEST

/* No limit, or a limit of one (nothing delivered before runs): no
 * suspects, the full window. */
START_TEST(test_no_suspects)
{
	struct suspect s;
	for (int max = 0; max <= 1; max++) {
		suspect_init(&s, max, 77);
		ck_assert_int_eq(suspect_arrival(&s, 0), SUSPECT_RUN);
		ck_assert_int_eq(suspect_arrival(&s, 5), SUSPECT_RUN);
		ck_assert_int_eq(suspect_window(&s), 77);
	}
	/* With a limit of one every task is on its last delivery, but none
	 * delivered before runs: there is nothing to isolate. */
	ck_assert(suspect_last(&s, 0));
	suspect_init(&s, 0, 77);
	ck_assert(!suspect_last(&s, 1000));
}
END_TEST

/* A reload keeps the level, within the new limit. */
START_TEST(test_configure)
{
	struct suspect s;
	suspect_init(&s, 5, 1000);
	ck_assert_int_eq(suspect_arrival(&s, 4), SUSPECT_ALONE);
	suspect_configure(&s, 3, 1000);
	ck_assert_int_eq(s.level, 2);
	ck_assert_int_eq(suspect_window(&s), 1);
	suspect_configure(&s, 0, 1000);
	ck_assert_int_eq(s.level, 0);
	ck_assert_int_eq(suspect_window(&s), 1000);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("suspect");
	TCase *tc = tcase_create("policy");

	tcase_add_test(tc, test_windows);
	tcase_add_test(tc, test_arrival_invariant);
	tcase_add_test(tc, test_lowering);
	tcase_add_test(tc, test_no_suspects);
	tcase_add_test(tc, test_configure);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
