#include <check.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "exec.h"
#include "worker_exec.h"

/* exec_run() is driven here by its blocking waiter, the one a CPU worker
 * uses (worker_exec.c), so the test runs the code the daemon runs instead
 * of a copy of it; the io waiter (handler_exec.c) is covered by the
 * integration tests. */
static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* The program's pid, as worker_exec() reports it: its process group. */
static pid_t started_pid;
static int started_calls;

static void
on_started(void *ctx, uint64_t seq, pid_t pgid)
{
	ck_assert_ptr_eq(ctx, &started_pid);
	ck_assert_uint_eq(seq, 42);
	ck_assert_int_gt(pgid, 1);
	ck_assert_msg(started_calls == 0 || started_pid == pgid,
	    "started reported %d, then %d", (int)started_pid, (int)pgid);
	started_pid = pgid;
	started_calls++;
}

static struct handler_output out;

static void
setup(void)
{
	memset(&out, 0, sizeof(out));
	signal(SIGPIPE, SIG_IGN);
	started_pid = 0;
	started_calls = 0;
}

static void
teardown(void)
{
	buf_free(&out.body);
}

static void
run(char *const argv[], const char *payload, size_t len, double timeout)
{
	const struct handler_input in = {
		.payload = payload, .len = len,
		.deadline = timeout > 0 ? now() + timeout : 0,
	};
	worker_exec((const char *const *)argv, &in, 1 << 20, 42, on_started,
	    &started_pid, &out);
}

START_TEST(test_stdin_to_stdout)
{
	char *argv[] = { "/bin/cat", NULL };
	run(argv, "hello", 5, 5);
	ck_assert_int_eq(out.status, RESULT_OK);
	ck_assert_uint_eq(out.body.len, 5);
	ck_assert_mem_eq(out.body.data, "hello", 5);
	ck_assert_int_ge(started_calls, 1);
}
END_TEST

/* More than a pipe holds, both ways at once: no deadlock. */
START_TEST(test_large_payload)
{
	size_t n = 900 * 1024;
	char *big = malloc(n);
	for (size_t i = 0; i < n; i++)
		big[i] = (char)('a' + i % 26);
	char *argv[] = { "/bin/cat", NULL };
	run(argv, big, n, 10);
	ck_assert_int_eq(out.status, RESULT_OK);
	ck_assert_uint_eq(out.body.len, n);
	ck_assert(memcmp(out.body.data, big, n) == 0);
	free(big);
}
END_TEST

START_TEST(test_failure_with_stderr)
{
	char *argv[] = { "/bin/sh", "-c",
	    "for i in 1 2 3 4 5 6 7 8 9 10 11 12; do echo line$i >&2; done; exit 3", NULL };
	run(argv, "", 0, 5);
	ck_assert_int_eq(out.status, RESULT_ERROR);
	ck_assert_str_eq(out.error_code, "handler_failed");
	/* The last ten lines, not the first ones. */
	ck_assert_str_eq(out.body.data, "/bin/sh exited with status 3: line3\n"
	    "line4\nline5\nline6\nline7\nline8\nline9\nline10\nline11\nline12");
}
END_TEST

START_TEST(test_killed_by_signal)
{
	char *argv[] = { "/bin/sh", "-c", "kill -TERM $$", NULL };
	run(argv, "", 0, 5);
	ck_assert_int_eq(out.status, RESULT_ERROR);
	ck_assert_msg(strstr(out.body.data, "killed by signal 15") != NULL, "%s",
	    out.body.data);
}
END_TEST

/* Alive and not a zombie waiting for its parent to reap it. */
static int
running(pid_t pid)
{
	char path[64], line[256];
	snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (f == NULL)
		return 0;
	int alive = fgets(line, sizeof(line), f) != NULL &&
	    strstr(line, ") Z ") == NULL;
	fclose(f);
	return alive;
}

/* The deadline kills the whole group: the grandchild too. */
START_TEST(test_timeout_kills_group)
{
	char path[] = "/tmp/check_exec.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	char script[200];
	snprintf(script, sizeof(script), "sleep 30 & echo $! > %s; wait", path);
	char *argv[] = { "/bin/sh", "-c", script, NULL };
	double t0 = now();
	run(argv, "", 0, 0.3);
	ck_assert(now() - t0 < 5);
	ck_assert_int_eq(out.status, RESULT_TIMEOUT);
	ck_assert_str_eq(out.error_code, "timeout");
	ck_assert_int_ne(started_pid, 0);
	ck_assert_int_eq(kill(started_pid, 0), -1); /* the child is gone, reaped */

	FILE *f = fopen(path, "r");
	int grandchild = 0;
	ck_assert_ptr_nonnull(f);
	ck_assert_int_eq(fscanf(f, "%d", &grandchild), 1);
	fclose(f);
	unlink(path);
	double until = now() + 5;
	while (running(grandchild) && now() < until)
		usleep(10000);
	ck_assert_msg(!running(grandchild), "grandchild %d survived", grandchild);
}
END_TEST

START_TEST(test_output_cap)
{
	char *argv[] = { "/bin/sh", "-c", "head -c 3000000 /dev/zero", NULL };
	run(argv, "", 0, 5);
	ck_assert_int_eq(out.status, RESULT_ERROR);
	ck_assert_msg(strstr(out.body.data, "output larger than") != NULL, "%s",
	    out.body.data);
}
END_TEST

START_TEST(test_cannot_start)
{
	char *argv[] = { "/nonexistent/program", NULL };
	run(argv, "x", 1, 5);
	ck_assert_int_eq(out.status, RESULT_ERROR);
	ck_assert_msg(strstr(out.body.data, "No such file") != NULL, "%s",
	    out.body.data);
}
END_TEST

/* No shell, no inherited environment, no inherited fds, no blocked signals. */
START_TEST(test_clean_child)
{
	setenv("TASKD_SECRET", "hunter2", 1);
	char *argv[] = { "/bin/sh", "-c",
	    "env | sort; ls /proc/self/fd | wc -l; grep SigBlk /proc/self/status", NULL };
	sigset_t block, old;
	sigemptyset(&block);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &old);
	run(argv, "", 0, 5);
	sigprocmask(SIG_SETMASK, &old, NULL);
	ck_assert_int_eq(out.status, RESULT_OK);
	ck_assert_msg(strstr(out.body.data, "TASKD_SECRET") == NULL, "%s", out.body.data);
	ck_assert_msg(strstr(out.body.data, "LANG=C.UTF-8\nPATH=/usr/local/bin:/usr/bin:/bin\n"),
	    "%s", out.body.data);
	/* 0, 1, 2 and the one ls opens to list the directory. */
	ck_assert_msg(strstr(out.body.data, "\n4\n") != NULL, "%s", out.body.data);
	ck_assert_msg(strstr(out.body.data, "SigBlk:\t0000000000000000") != NULL, "%s",
	    out.body.data);
}
END_TEST

/* A program that ignores its input must not fail the write side. */
START_TEST(test_unread_stdin)
{
	size_t n = 1 << 20;
	char *big = calloc(1, n);
	char *argv[] = { "/bin/true", NULL };
	run(argv, big, n, 5);
	ck_assert_int_eq(out.status, RESULT_OK);
	free(big);
}
END_TEST

static Suite *
exec_suite(void)
{
	Suite *s = suite_create("exec");
	TCase *tc = tcase_create("exec");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_stdin_to_stdout);
	tcase_add_test(tc, test_large_payload);
	tcase_add_test(tc, test_failure_with_stderr);
	tcase_add_test(tc, test_killed_by_signal);
	tcase_add_test(tc, test_timeout_kills_group);
	tcase_add_test(tc, test_output_cap);
	tcase_add_test(tc, test_cannot_start);
	tcase_add_test(tc, test_clean_child);
	tcase_add_test(tc, test_unread_stdin);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(exec_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
