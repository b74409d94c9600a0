#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "result.h"
#include "stats.h"

static char *
render(void)
{
	struct buf b = { 0 };
	struct stats_gauges g = { .io_running = 3, .workers_busy = 2, .workers_idle = 1,
	    .broker_connected = 1, .ready = 1, .start_time = 1700000000.5 };
	ck_assert_int_eq(stats_render(&b, &g, "1.2.3"), 0);
	return buf_steal(&b, NULL);
}

static void
has_line(const char *text, const char *line)
{
	size_t n = strlen(line);
	for (const char *p = text; (p = strstr(p, line)) != NULL; p++)
		if ((p == text || p[-1] == '\n') && p[n] == '\n')
			return;
	fprintf(stderr, "%s", text);
	ck_abort_msg("no line \"%s\"", line);
}

START_TEST(test_counts)
{
	stats_reset();
	stats_task_answered("echo", RESULT_OK, 0.0004);
	stats_task_answered("echo", RESULT_OK, 0.2);
	stats_task_answered("sleep", RESULT_TIMEOUT, 1.5);
	stats_task_answered(NULL, RESULT_REJECTED, -1);
	stats_count(STATS_RECONNECTS);
	stats_confirmed(0.002);

	uint64_t by[STATS_STATUSES];
	stats_totals(by);
	ck_assert_uint_eq(by[RESULT_OK], 2);
	ck_assert_uint_eq(by[RESULT_TIMEOUT], 1);
	ck_assert_uint_eq(by[RESULT_REJECTED], 1);
	ck_assert_uint_eq(stats_ntasks(), 3);

	char *t = render();
	has_line(t, "taskd_tasks_total{task=\"echo\",status=\"ok\"} 2");
	has_line(t, "taskd_tasks_total{task=\"echo\",status=\"error\"} 0");
	has_line(t, "taskd_tasks_total{task=\"sleep\",status=\"timeout\"} 1");
	has_line(t, "taskd_tasks_total{task=\"" STATS_UNKNOWN_TASK "\",status=\"rejected\"} 1");
	/* Cumulative buckets: 0.0004 in the first, 0.2 from 0.25 on. */
	has_line(t, "taskd_task_duration_seconds_bucket{task=\"echo\",le=\"0.001\"} 1");
	has_line(t, "taskd_task_duration_seconds_bucket{task=\"echo\",le=\"0.1\"} 1");
	has_line(t, "taskd_task_duration_seconds_bucket{task=\"echo\",le=\"0.25\"} 2");
	has_line(t, "taskd_task_duration_seconds_bucket{task=\"echo\",le=\"+Inf\"} 2");
	has_line(t, "taskd_task_duration_seconds_count{task=\"echo\"} 2");
	has_line(t, "taskd_task_duration_seconds_count{task=\"sleep\"} 1");
	/* A task that never ran has no duration. */
	ck_assert_ptr_null(strstr(t, "taskd_task_duration_seconds_count{task=\"" STATS_UNKNOWN_TASK));
	has_line(t, "taskd_tasks_running{kind=\"io\"} 3");
	has_line(t, "taskd_cpu_workers{state=\"busy\"} 2");
	has_line(t, "taskd_cpu_workers{state=\"idle\"} 1");
	has_line(t, "taskd_broker_connected 1");
	has_line(t, "taskd_broker_reconnects_total 1");
	has_line(t, "taskd_build_info{version=\"1.2.3\"} 1");
	has_line(t, "taskd_confirm_duration_seconds_bucket{le=\"0.0025\"} 1");
	has_line(t, "taskd_confirm_duration_seconds_count 1");
	has_line(t, "taskd_start_time_seconds 1700000000.5");
	has_line(t, "# TYPE taskd_tasks_total counter");
	has_line(t, "# TYPE taskd_task_duration_seconds histogram");
	free(t);
	stats_reset();
	ck_assert_uint_eq(stats_ntasks(), 0);
}
END_TEST

/* A label value keeps the text format whatever it holds. */
START_TEST(test_escape)
{
	stats_reset();
	stats_task_answered("a\"b\\c\nd", RESULT_OK, 0);
	char *t = render();
	has_line(t, "taskd_tasks_total{task=\"a\\\"b\\\\c\\nd\",status=\"ok\"} 1");
	free(t);
	stats_reset();
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("stats");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_counts);
	tcase_add_test(tc, test_escape);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
