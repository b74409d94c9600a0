#include <check.h>
#include <math.h>
#include <stdlib.h>

#include "backoff.h"

/* rnd values that cover the jitter range: its ends and inside. */
static const double rnds[] = { 0.0, 0.25, 0.5, 0.999999 };
#define NRNDS (sizeof(rnds) / sizeof(rnds[0]))

static double
step_of(double base, double cap, unsigned attempt)
{
	double s = base;
	for (unsigned i = 0; i < attempt && s < cap; i++)
		s *= 2;
	return s < cap ? s : cap;
}

/* Every step of the schedule lies in [step/2, step]; rnd picks where. */
START_TEST(test_bounds)
{
	static const struct { double base, cap; } cases[] = {
		{ 0.5, 30 }, { 1, 1 }, { 0.1, 3600 }, { 0.5, 0.7 }, { 2, 3 },
	};
	for (size_t c = 0; c < sizeof(cases) / sizeof(cases[0]); c++) {
		for (size_t r = 0; r < NRNDS; r++) {
			struct backoff b;
			backoff_init(&b, cases[c].base, cases[c].cap);
			for (unsigned n = 0; n < 80; n++) {
				double step = step_of(cases[c].base, cases[c].cap, n);
				double d = backoff_next(&b, rnds[r]);
				ck_assert_msg(d >= step / 2 && d <= step,
				    "base %g cap %g attempt %u rnd %g: %g not in [%g, %g]",
				    cases[c].base, cases[c].cap, n, rnds[r], d, step / 2, step);
				ck_assert_double_eq_tol(d, step / 2 + rnds[r] * step / 2, 1e-9);
				ck_assert_uint_eq(b.attempt, n + 1);
			}
		}
	}
}
END_TEST

START_TEST(test_first_steps)
{
	struct backoff b;

	backoff_init(&b, 0.5, 30);
	/* rnd near 1 gives the upper bound: 0.5, 1, 2, 4, 8, 16, 30, 30 */
	static const double want[] = { 0.5, 1, 2, 4, 8, 16, 30, 30 };
	for (size_t i = 0; i < sizeof(want) / sizeof(want[0]); i++)
		ck_assert_double_eq_tol(backoff_next(&b, 1.0 - 1e-12), want[i], 1e-9);
	/* rnd 0 gives the lower bound: half the (capped) step, never 0. */
	ck_assert_double_eq(backoff_next(&b, 0.0), 15);
}
END_TEST

START_TEST(test_cap)
{
	struct backoff b;

	backoff_init(&b, 0.5, 30);
	for (int i = 0; i < 100000; i++) {
		double d = backoff_next(&b, 0.999);
		ck_assert(isfinite(d));
		ck_assert(d <= 30);
		ck_assert(d >= 0.25);
	}
	/* Far past any exponent a double can hold, still the cap. */
	b.attempt = 5000;
	ck_assert_double_eq(backoff_next(&b, 0.0), 15);
	b.attempt = (unsigned)-1;
	ck_assert_double_eq(backoff_next(&b, 0.0), 15);
	ck_assert_uint_eq(b.attempt, (unsigned)-1);   /* saturates, never wraps to 0 */
}
END_TEST

START_TEST(test_reset)
{
	struct backoff b;

	backoff_init(&b, 0.5, 30);
	for (int i = 0; i < 10; i++)
		backoff_next(&b, 0.5);
	ck_assert_double_eq(backoff_next(&b, 0.0), 15);
	backoff_reset(&b);
	ck_assert_uint_eq(b.attempt, 0);
	ck_assert_double_eq(backoff_next(&b, 0.0), 0.25);
	ck_assert_double_eq(backoff_next(&b, 0.0), 0.5);
}
END_TEST

/* The upper bound (rnd -> 1) never shrinks from one attempt to the next,
 * and strictly grows until it reaches the cap. */
START_TEST(test_monotone)
{
	struct backoff b;
	double prev = 0;

	backoff_init(&b, 0.1, 100);
	for (int i = 0; i < 40; i++) {
		double hi = backoff_next(&b, 1.0);
		ck_assert(hi >= prev);
		if (prev < 100)
			ck_assert(hi > prev);
		prev = hi;
	}
	ck_assert_double_eq(prev, 100);
}
END_TEST

/* Out-of-contract input degrades to something safe, never 0 or NaN. */
START_TEST(test_bad_input)
{
	struct backoff b;

	backoff_init(&b, 0, 0);
	double d = backoff_next(&b, 0.5);
	ck_assert(d > 0);
	backoff_init(&b, 2, 1);      /* cap below base: base wins */
	ck_assert_double_eq(backoff_next(&b, 1.0), 2);
	backoff_init(&b, 1, 8);
	ck_assert_double_eq(backoff_next(&b, NAN), 0.5);
	ck_assert_double_eq(backoff_next(&b, -3), 1);
	ck_assert_double_eq(backoff_next(&b, 7), 4);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("backoff");
	TCase *tc = tcase_create("schedule");

	tcase_add_test(tc, test_bounds);
	tcase_add_test(tc, test_first_steps);
	tcase_add_test(tc, test_cap);
	tcase_add_test(tc, test_reset);
	tcase_add_test(tc, test_monotone);
	tcase_add_test(tc, test_bad_input);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
