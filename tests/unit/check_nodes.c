#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "backoff.h"
#include "nodes.h"

/* Every order is a permutation of the nodes. */
START_TEST(test_permutation)
{
	for (size_t n = 1; n <= 7; n++) {
		for (uint64_t seed = 0; seed < 200; seed++) {
			struct nodes *ns = nodes_new(n, seed);
			ck_assert_ptr_nonnull(ns);
			ck_assert_uint_eq(nodes_count(ns), n);
			int seen[8] = { 0 };
			for (size_t i = 0; i < n; i++) {
				size_t k = nodes_at(ns, i);
				ck_assert_uint_lt(k, n);
				ck_assert_int_eq(seen[k]++, 0);
			}
			nodes_free(ns);
		}
	}
}
END_TEST

/* Processes with different seeds spread: over many seeds, each of three
 * nodes comes first about a third of the time. */
START_TEST(test_spread)
{
	unsigned first[3] = { 0 };
	const unsigned runs = 3000;
	for (uint64_t seed = 1; seed <= runs; seed++) {
		struct nodes *ns = nodes_new(3, seed * 0x2545f4914f6cdd1dULL);
		first[nodes_current(ns)]++;
		nodes_free(ns);
	}
	for (int i = 0; i < 3; i++)
		ck_assert_msg(first[i] > runs / 3 - runs / 15 && first[i] < runs / 3 + runs / 15,
		    "node %d first in %u of %u orders", i, first[i], runs);
}
END_TEST

/* Equal seeds, equal orders (the shuffle is the seed's alone). */
START_TEST(test_same_seed)
{
	struct nodes *a = nodes_new(5, 42), *b = nodes_new(5, 42);
	for (size_t i = 0; i < 5; i++)
		ck_assert_uint_eq(nodes_at(a, i), nodes_at(b, i));
	nodes_free(a);
	nodes_free(b);
}
END_TEST

/* Failures walk the order; a round ends after every node failed once. */
START_TEST(test_rounds)
{
	struct nodes *ns = nodes_new(3, 7);
	size_t o[3] = { nodes_at(ns, 0), nodes_at(ns, 1), nodes_at(ns, 2) };
	ck_assert_uint_eq(nodes_current(ns), o[0]);
	ck_assert(!nodes_fail(ns));
	ck_assert_uint_eq(nodes_current(ns), o[1]);
	ck_assert(!nodes_fail(ns));
	ck_assert_uint_eq(nodes_current(ns), o[2]);
	ck_assert(nodes_fail(ns));           /* all three failed: back off */
	ck_assert_uint_eq(nodes_current(ns), o[0]);
	ck_assert(!nodes_fail(ns));          /* a new round */
	ck_assert_uint_eq(nodes_current(ns), o[1]);
	/* Up on o[1]; when it dies, the next two are tried at once, and
	 * the round ends back on o[1]. */
	nodes_success(ns);
	ck_assert(!nodes_fail(ns));
	ck_assert_uint_eq(nodes_current(ns), o[2]);
	ck_assert(!nodes_fail(ns));
	ck_assert_uint_eq(nodes_current(ns), o[0]);
	ck_assert(nodes_fail(ns));
	ck_assert_uint_eq(nodes_current(ns), o[1]);
	nodes_free(ns);
}
END_TEST

/* One node: every failure ends a round, as a single broker always did. */
START_TEST(test_single)
{
	struct nodes *ns = nodes_new(1, 99);
	for (int i = 0; i < 5; i++) {
		ck_assert_uint_eq(nodes_current(ns), 0);
		ck_assert(nodes_fail(ns));
	}
	nodes_success(ns);
	ck_assert(nodes_fail(ns));
	nodes_free(ns);
}
END_TEST

/* The backoff per round, as broker.c drives it: with three nodes dead,
 * attempts come in bursts of three, one delay per burst, and the delays
 * grow per round (not per node): after 3 rounds the step is base * 4. */
START_TEST(test_backoff_per_round)
{
	struct nodes *ns = nodes_new(3, 3);
	struct backoff b;
	backoff_init(&b, 0.5, 30);
	double delays[9];
	for (int i = 0; i < 9; i++)
		delays[i] = nodes_fail(ns) ? backoff_next(&b, 0.999999) : 0.0;
	for (int i = 0; i < 9; i++) {
		if (i % 3 != 2) {
			ck_assert_double_eq(delays[i], 0.0);
			continue;
		}
		double step = 0.5 * (double)(1u << (i / 3));
		ck_assert_double_eq_tol(delays[i], step, 1e-5);
	}
	ck_assert_uint_eq(b.attempt, 3);
	/* A connection that comes up resets both. */
	nodes_success(ns);
	backoff_reset(&b);
	ck_assert(!nodes_fail(ns));
	ck_assert(!nodes_fail(ns));
	ck_assert(nodes_fail(ns));
	ck_assert_double_eq_tol(backoff_next(&b, 0.999999), 0.5, 1e-5);
	nodes_free(ns);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("nodes");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_permutation);
	tcase_add_test(tc, test_spread);
	tcase_add_test(tc, test_same_seed);
	tcase_add_test(tc, test_rounds);
	tcase_add_test(tc, test_single);
	tcase_add_test(tc, test_backoff_per_round);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
