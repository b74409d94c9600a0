#ifdef HAVE_CONFIG_H
#include "config.h"
#endif

#include <check.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "coro.h"

static struct ev_loop *loop;

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
setup(void)
{
	loop = ev_default_loop(EVFLAG_SIGNALFD);
	ck_assert_ptr_nonnull(loop);
	ck_assert_int_eq(coro_setup(loop, CORO_STACK_DEFAULT), 0);
}

static void
teardown(void)
{
	struct coro_stats st;
	coro_stats(&st);
	ck_assert_uint_eq(st.alive, 0);
	coro_teardown();
}

/* Runs the loop until *flag turns true or 10 s pass. */
static void
run_until(const int *flag, int want)
{
	double until = now() + 10;
	while (*flag < want && now() < until)
		ev_run(loop, EVRUN_ONCE);
	ck_assert_msg(*flag >= want, "waited 10 s for %d events, saw %d", want, *flag);
}

/* ---- switching ------------------------------------------------------- */

static char trace[64];
static size_t ntrace;
static int finished;

static void
note(char c)
{
	if (ntrace < sizeof(trace) - 1)
		trace[ntrace++] = c;
	trace[ntrace] = '\0';
}

static void
pingpong_body(void *arg)
{
	(void)arg;
	note('a');
	ck_assert_ptr_nonnull(coro_self());
	ck_assert_int_eq(coro_sleep(0), CORO_READY);
	note('c');
}

static void
count_done(void *arg)
{
	(void)arg;
	ck_assert_ptr_null(coro_self()); /* done runs on the main context */
	finished++;
}

START_TEST(test_switch)
{
	ntrace = 0;
	finished = 0;
	struct coro *c = coro_new(pingpong_body, count_done, NULL);
	ck_assert_ptr_nonnull(c);
	coro_resume(c);       /* runs until the sleep */
	note('b');
	ck_assert_ptr_null(coro_self());
	ck_assert_int_eq(finished, 0);
	run_until(&finished, 1);
	ck_assert_str_eq(trace, "abc");
}
END_TEST

/* Values that must survive switches in callee-saved registers, floating
 * point included. */
static void
registers_body(void *arg)
{
	volatile double x = 1.5;
	long acc = 0;
	for (int i = 0; i < 100; i++) {
		double y = x * i;
		acc += i;
		coro_sleep(0);
		ck_assert(y == 1.5 * i);
	}
	*(long *)arg = acc;
}

START_TEST(test_registers_survive)
{
	long r1 = 0, r2 = 0;
	finished = 0;
	coro_resume(coro_new(registers_body, count_done, &r1));
	coro_resume(coro_new(registers_body, count_done, &r2));
	run_until(&finished, 2);
	ck_assert_int_eq(r1, 4950);
	ck_assert_int_eq(r2, 4950);
}
END_TEST

/* ---- sleeps ---------------------------------------------------------- */

static int order[8];
static int norder;

static void
sleeper_body(void *arg)
{
	int ms = (int)(long)arg;
	ck_assert_int_eq(coro_sleep(ms / 1000.0), CORO_READY);
	order[norder++] = ms;
}

START_TEST(test_sleep_order)
{
	static const int ms[] = { 50, 10, 40, 20, 30, 0 };
	norder = 0;
	finished = 0;
	double t0 = now();
	for (size_t i = 0; i < 6; i++)
		coro_resume(coro_new(sleeper_body, count_done, (void *)(long)ms[i]));
	run_until(&finished, 6);
	static const int want[] = { 0, 10, 20, 30, 40, 50 };
	for (int i = 0; i < 6; i++)
		ck_assert_int_eq(order[i], want[i]);
	ck_assert(now() - t0 >= 0.049);
}
END_TEST

static void
many_body(void *arg)
{
	(void)arg;
	ck_assert_int_eq(coro_sleep(0.05), CORO_READY);
}

START_TEST(test_many)
{
	enum { N = 5000 };
	finished = 0;
	double t0 = now();
	for (int i = 0; i < N; i++) {
		struct coro *c = coro_new(many_body, count_done, NULL);
		ck_assert_ptr_nonnull(c);
		coro_resume(c);
	}
	struct coro_stats st;
	coro_stats(&st);
	ck_assert_uint_eq(st.alive, N);
	run_until(&finished, N);
	/* All waited at once, not one after the other. */
	ck_assert_msg(now() - t0 < 5, "5000 sleeps of 50 ms took %.1f s", now() - t0);
}
END_TEST

/* ---- stacks ---------------------------------------------------------- */

static void
nothing_body(void *arg)
{
	(void)arg;
}

START_TEST(test_stack_reuse)
{
	struct coro_stats a, b;
	finished = 0;
	coro_resume(coro_new(nothing_body, count_done, NULL));
	ck_assert_int_eq(finished, 1); /* finished inside resume */
	coro_stats(&a);
	ck_assert_uint_eq(a.stacks_free, 1);
	for (int i = 0; i < 100; i++)
		coro_resume(coro_new(nothing_body, count_done, NULL));
	coro_stats(&b);
	ck_assert_uint_eq(b.stacks_made, a.stacks_made);
	ck_assert_int_eq(finished, 101);

	/* A new size drops the old stacks instead of reusing them. */
	ck_assert_int_eq(coro_set_stack_size(128 * 1024), 0);
	coro_resume(coro_new(nothing_body, count_done, NULL));
	coro_stats(&b);
	ck_assert_uint_eq(b.stacks_made, a.stacks_made + 1);
	ck_assert_int_eq(coro_set_stack_size(1024), -1);
	ck_assert_int_eq(errno, EINVAL);
}
END_TEST

static void
deep(volatile char *prev, int n)
{
	volatile char pad[1024];
	pad[0] = prev ? prev[0] : 1;
	if (n > 0)
		deep(pad, n - 1);
}

static void
overflow_body(void *arg)
{
	(void)arg;
	deep(NULL, 1000); /* 1 MB on a 64 KiB stack */
}

/* Overflowing a stack hits the guard page: a fault, not silent damage. */
START_TEST(test_guard_page)
{
	pid_t pid = fork();
	ck_assert_int_ge(pid, 0);
	if (pid == 0) {
		/* The expected crash report is noise in the test log. */
		int null = open("/dev/null", O_WRONLY);
		if (null >= 0)
			dup2(null, 2);
		coro_resume(coro_new(overflow_body, NULL, NULL));
		_exit(0);
	}
	int status;
	ck_assert_int_eq(waitpid(pid, &status, 0), pid);
#ifdef __SANITIZE_ADDRESS__
	/* ASan catches the fault itself, reports a stack overflow, exits 1. */
	ck_assert_msg(!(WIFEXITED(status) && WEXITSTATUS(status) == 0),
	    "the overflow did not fault: status %#x", status);
#else
	ck_assert_msg(WIFSIGNALED(status) && WTERMSIG(status) == SIGSEGV,
	    "the overflow did not fault: status %#x", status);
#endif
}
END_TEST

/* ---- fds, wake-ups, children ------------------------------------------ */

static int pipefd[2];
static enum coro_status got;

static void
read_body(void *arg)
{
	double deadline = *(double *)arg;
	got = coro_wait_fd(pipefd[0], POLLIN, deadline);
}

START_TEST(test_wait_fd)
{
	ck_assert_int_eq(pipe2(pipefd, O_NONBLOCK | O_CLOEXEC), 0);
	finished = 0;
	double deadline = now() + 5;
	coro_resume(coro_new(read_body, count_done, &deadline));
	ev_run(loop, EVRUN_NOWAIT);
	ck_assert_int_eq(finished, 0);
	ck_assert_int_eq(write(pipefd[1], "x", 1), 1);
	run_until(&finished, 1);
	ck_assert_int_eq(got, CORO_READY);

	/* Nothing to read: the deadline answers. */
	char c;
	ck_assert_int_eq(read(pipefd[0], &c, 1), 1);
	deadline = now() + 0.05;
	coro_resume(coro_new(read_body, count_done, &deadline));
	run_until(&finished, 2);
	ck_assert_int_eq(got, CORO_TIMEOUT);
	ck_assert(now() >= deadline);
	close(pipefd[0]);
	close(pipefd[1]);
}
END_TEST

static struct coro *waiter;

static void
wake_body(void *arg)
{
	(void)arg;
	got = coro_wait(now() + 5);
}

START_TEST(test_wake)
{
	finished = 0;
	waiter = coro_new(wake_body, count_done, NULL);
	coro_resume(waiter);
	coro_wake(waiter);
	/* Delivered from the loop, not from inside coro_wake(). */
	ck_assert_int_eq(finished, 0);
	run_until(&finished, 1);
	ck_assert_int_eq(got, CORO_READY);
}
END_TEST

static void
child_body(void *arg)
{
	struct coro_child w;
	int status = -1;
	pid_t pid = fork();
	if (pid == 0)
		_exit(7);
	coro_child_watch(&w, pid);
	got = coro_wait_child(&w, now() + 5, &status);
	coro_child_stop(&w);
	*(int *)arg = status;
}

START_TEST(test_wait_child)
{
	int status = -1;
	finished = 0;
	coro_resume(coro_new(child_body, count_done, &status));
	run_until(&finished, 1);
	ck_assert_int_eq(got, CORO_READY);
	ck_assert(WIFEXITED(status));
	ck_assert_int_eq(WEXITSTATUS(status), 7);
}
END_TEST

static void *main_stack_var;

static void
on_main(void *arg)
{
	volatile char here;
	ck_assert_ptr_null(coro_self());
	main_stack_var = (void *)&here;
	(*(int *)arg)++;
}

static void
call_main_body(void *arg)
{
	volatile char mine;
	coro_call_main(on_main, arg);
	/* It ran on another stack: far from this frame. */
	long d = (char *)main_stack_var - (char *)&mine;
	ck_assert(d > 1024 * 1024 || d < -1024 * 1024);
	coro_call_main(on_main, arg);
}

START_TEST(test_call_main)
{
	int calls = 0;
	finished = 0;
	coro_resume(coro_new(call_main_body, count_done, &calls));
	ck_assert_int_eq(calls, 2);
	ck_assert_int_eq(finished, 1);
}
END_TEST

/* ---- cancellation at each wait point --------------------------------- */

enum wait_point { AT_SLEEP, AT_FD, AT_CHILD, AT_WAIT, AT_POLL };
static enum coro_status first, second;
static int unwound;
static pid_t cancelled_child;

static void
cancel_body(void *arg)
{
	enum wait_point at = (enum wait_point)(long)arg;
	int fds[2];
	struct coro_child w;
	int status;

	ck_assert_int_eq(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
	switch (at) {
	case AT_SLEEP:
		first = coro_sleep(10);
		break;
	case AT_FD:
		first = coro_wait_fd(fds[0], POLLIN, now() + 10);
		break;
	case AT_POLL: {
		struct pollfd p[2] = { { fds[0], POLLIN, 0 }, { -1, POLLIN, 0 } };
		first = coro_poll(p, 2, 0);
		break;
	}
	case AT_CHILD:
		cancelled_child = fork();
		if (cancelled_child == 0) {
			pause();
			_exit(0);
		}
		coro_child_watch(&w, cancelled_child);
		first = coro_wait_child(&w, now() + 10, &status);
		coro_child_stop(&w);
		kill(cancelled_child, SIGKILL);
		break;
	case AT_WAIT:
		first = coro_wait(now() + 10);
		break;
	}
	/* Once cancelled, every wait refuses at once. */
	second = coro_sleep(10);
	close(fds[0]);
	close(fds[1]);
	unwound++;
}

static void
never_done(void *arg)
{
	(void)arg;
	ck_abort_msg("done called after a cancel");
}

START_TEST(test_cancel_each_wait)
{
	for (long at = AT_SLEEP; at <= AT_POLL; at++) {
		unwound = 0;
		first = second = CORO_READY;
		struct coro *c = coro_new(cancel_body, never_done, (void *)at);
		coro_resume(c);
		ev_run(loop, EVRUN_NOWAIT);
		ck_assert_int_eq(unwound, 0);
		double t0 = now();
		coro_cancel(c);
		ck_assert_int_eq(unwound, 1);
		ck_assert_msg(first == CORO_CANCELLED, "wait point %ld answered %d", at, first);
		ck_assert_int_eq(second, CORO_CANCELLED);
		ck_assert(now() - t0 < 1);
		struct coro_stats st;
		coro_stats(&st);
		ck_assert_uint_eq(st.alive, 0);
	}
	/* The loop has nothing left of them: it returns at once. */
	double t0 = now();
	ev_run(loop, EVRUN_NOWAIT);
	ck_assert(now() - t0 < 1);
	/* The child was killed by the body; libev reaps it. */
	double until = now() + 5;
	while (kill(cancelled_child, 0) == 0 && now() < until)
		ev_run(loop, EVRUN_ONCE);
	ck_assert_int_eq(kill(cancelled_child, 0), -1);
}
END_TEST

static Suite *
coro_suite(void)
{
	Suite *s = suite_create("coro");
	TCase *tc = tcase_create("coro");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 30);
	tcase_add_test(tc, test_switch);
	tcase_add_test(tc, test_registers_survive);
	tcase_add_test(tc, test_sleep_order);
	tcase_add_test(tc, test_many);
	tcase_add_test(tc, test_stack_reuse);
	tcase_add_test(tc, test_guard_page);
	tcase_add_test(tc, test_wait_fd);
	tcase_add_test(tc, test_wake);
	tcase_add_test(tc, test_wait_child);
	tcase_add_test(tc, test_cancel_each_wait);
	tcase_add_test(tc, test_call_main);
	suite_add_tcase(s, tc);
	return s;
}

int
main(void)
{
	SRunner *sr = srunner_create(coro_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
