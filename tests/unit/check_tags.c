#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "tags.h"

/* Tags 1..n are delivered; the state string says what became of each:
 * '.' open, 'a' acked, 'r' rejected with requeue, 'd' dropped. */
static struct tags *
ledger(const char *states)
{
	struct tags *t = tags_new();
	ck_assert_ptr_nonnull(t);
	size_t n = strlen(states);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(tags_open(t, i + 1), 0);
	for (size_t i = 0; i < n; i++) {
		enum tags_how how = states[i] == 'r' ? TAGS_REQUEUE :
		    states[i] == 'd' ? TAGS_DROP : TAGS_ACK;
		if (states[i] != '.')
			ck_assert_int_eq(tags_settle(t, i + 1, how), 0);
	}
	return t;
}

/* One round, as "TAG KIND[*]" words: * for a multiple frame. */
static void
round_of(struct tags *t, char *out, size_t len)
{
	struct tags_frame f;
	out[0] = '\0';
	tags_round(t);
	while (tags_next(t, &f)) {
		char w[32];
		snprintf(w, sizeof(w), "%s%llu%c%s", out[0] ? " " : "",
		    (unsigned long long)f.tag,
		    f.how == TAGS_ACK ? 'a' : f.how == TAGS_REQUEUE ? 'r' : 'd',
		    f.multiple ? "*" : "");
		ck_assert_uint_lt(strlen(out) + strlen(w), len);
		strcat(out, w);
		tags_sent(t, &f);
	}
}

static const struct {
	const char *states;
	const char *frames;
} rounds[] = {
	{ "", "" },
	{ "...", "" },
	{ "aaa", "3a*" },
	{ "aa.a", "2a* 4a" },          /* never across the open tag 3 */
	{ "aarr", "2a* 4r*" },         /* one run per kind */
	{ ".aaa", "2a 3a 4a" },        /* behind an open front: alone */
	{ "a.d", "1a* 3d" },
	{ "ardd.a", "1a* 2r* 4d* 6a" },
	{ "r", "1r*" },
	{ "d.d.d", "1d* 3d 5d" },
};

START_TEST(test_rounds)
{
	char got[256];
	struct tags *t = ledger(rounds[_i].states);
	round_of(t, got, sizeof(got));
	ck_assert_msg(strcmp(got, rounds[_i].frames) == 0, "\"%s\": sent \"%s\", want \"%s\"",
	    rounds[_i].states, got, rounds[_i].frames);
	size_t open = 0;
	for (const char *p = rounds[_i].states; *p; p++)
		open += *p == '.';
	ck_assert_uint_eq(tags_settled(t), 0);
	ck_assert_uint_eq(tags_held(t), open);
	tags_free(t);
}
END_TEST

/* Tags sent alone are not held any more: a later run goes through them. */
START_TEST(test_run_through_sent)
{
	char got[256];
	struct tags *t = ledger(".a.");
	round_of(t, got, sizeof(got));
	ck_assert_str_eq(got, "2a");
	ck_assert_int_eq(tags_settle(t, 1, TAGS_REQUEUE), 0);
	ck_assert_int_eq(tags_settle(t, 3, TAGS_REQUEUE), 0);
	round_of(t, got, sizeof(got));
	ck_assert_str_eq(got, "3r*");
	ck_assert_uint_eq(tags_held(t), 0);
	tags_free(t);
}
END_TEST

/* A tag settled twice, or never delivered, is refused: no second ack. */
START_TEST(test_settle_once)
{
	struct tags *t = ledger("..");
	ck_assert_int_eq(tags_settle(t, 1, TAGS_ACK), 0);
	ck_assert_int_eq(tags_settle(t, 1, TAGS_ACK), -1);
	ck_assert_int_eq(tags_settle(t, 1, TAGS_DROP), -1);
	ck_assert_int_eq(tags_settle(t, 7, TAGS_ACK), -1);
	ck_assert_int_eq(tags_settle(t, 0, TAGS_ACK), -1);
	ck_assert_uint_eq(tags_settled(t), 1);
	tags_clear(t);
	ck_assert_uint_eq(tags_held(t), 0);
	ck_assert_int_eq(tags_settle(t, 2, TAGS_ACK), -1);
	tags_free(t);
}
END_TEST

/*
 * Against a model of the broker: it holds every delivered tag until a
 * frame settles it, a multiple frame settling every held tag up to the
 * one it names.  Random settlements and rounds over many tags (one task
 * held long at times, as a slow task does): every frame settles only
 * tags settled here with its kind, and after each round the broker holds
 * exactly the open tags.
 */
START_TEST(test_against_the_broker)
{
	enum { N = 20000 };
	static char held[N + 1];     /* the broker: 0 settled, else 1 */
	static char mine[N + 1];     /* ledger: '.', 'a', 'r', 'd'; 0 = told */
	struct tags *t = tags_new();
	unsigned seed = 20261202;
	uint64_t next = 1, oldest = 1;
	size_t frames = 0, multiples = 0;
	memset(held, 0, sizeof(held));
	memset(mine, 0, sizeof(mine));
	while (next <= N) {
		/* Deliveries, some settlements, then a round. */
		for (int k = rand_r(&seed) % 50; k > 0 && next <= N; k--) {
			ck_assert_int_eq(tags_open(t, next), 0);
			held[next] = 1;
			mine[next] = '.';
			next++;
		}
		while (oldest < next && mine[oldest] != '.')
			oldest++;
		for (int k = rand_r(&seed) % 60; k > 0; k--) {
			/* Now near the front (runs), now anywhere (lone tags);
			 * the oldest tags settle last now and then: a long task. */
			uint64_t tag = rand_r(&seed) % 3 == 0 ?
			    oldest + (uint64_t)rand_r(&seed) % 6 :
			    1 + (uint64_t)rand_r(&seed) % (next - 1);
			if (tag >= next || (tag < next / 2 && tag != oldest && rand_r(&seed) % 4))
				continue;
			if (mine[tag] != '.')
				continue;
			int r = rand_r(&seed) % 10;
			enum tags_how how = r < 7 ? TAGS_ACK : r < 9 ? TAGS_REQUEUE : TAGS_DROP;
			ck_assert_int_eq(tags_settle(t, tag, how), 0);
			mine[tag] = how == TAGS_ACK ? 'a' : how == TAGS_REQUEUE ? 'r' : 'd';
		}
		struct tags_frame f;
		tags_round(t);
		while (tags_next(t, &f)) {
			char kind = f.how == TAGS_ACK ? 'a' : f.how == TAGS_REQUEUE ? 'r' : 'd';
			uint64_t from = f.multiple ? 1 : f.tag;
			for (uint64_t x = from; x <= f.tag; x++) {
				if (!held[x])
					continue;
				ck_assert_msg(mine[x] == kind, "frame %llu%c%s settles tag %llu, "
				    "which is '%c' here", (unsigned long long)f.tag, kind,
				    f.multiple ? "*" : "", (unsigned long long)x, mine[x]);
				held[x] = 0;
				mine[x] = 0;
			}
			frames++;
			multiples += f.multiple;
			tags_sent(t, &f);
		}
		size_t open = 0;
		for (uint64_t x = 1; x < next; x++) {
			ck_assert_msg(held[x] == (mine[x] == '.'), "after a round tag %llu is %s "
			    "by the broker and '%c' here", (unsigned long long)x,
			    held[x] ? "held" : "settled", mine[x] ? mine[x] : '-');
			open += mine[x] == '.';
		}
		ck_assert_uint_eq(tags_held(t), open);
		ck_assert_uint_eq(tags_settled(t), 0);
	}
	/* Coalescing happened: far fewer frames than tags settled. */
	ck_assert_uint_gt(multiples, 0);
	tags_free(t);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("tags");
	TCase *tc = tcase_create("core");
	tcase_add_loop_test(tc, test_rounds, 0, (int)(sizeof(rounds) / sizeof(rounds[0])));
	tcase_add_test(tc, test_run_through_sent);
	tcase_add_test(tc, test_settle_once);
	tcase_add_test(tc, test_against_the_broker);
	tcase_set_timeout(tc, 60);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
