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
deep_body(void *arg)
{
	(void)arg;
	deep(NULL, 80); /* ~90 KiB: more than the default 64 KiB */
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

/* ---- finishing at scale: every path that ends a coroutine ------------ */

/* More than the free list keeps (256), so that finished stacks are
 * unmapped while the ones before them are cached. */
enum { BURST = 600 };
static struct coro *burst[BURST];
static int burst_unwound;

static void
long_sleep_body(void *arg)
{
	(void)arg;
	ck_assert_int_eq(coro_sleep(60), CORO_CANCELLED);
	burst_unwound++;
}

static void
assert_none_alive(void)
{
	struct coro_stats st;
	coro_stats(&st);
	ck_assert_uint_eq(st.alive, 0);
	ck_assert_uint_le(st.stacks_free, 256);
}

/* The defect: cancelling more coroutines than the free list keeps read
 * a coroutine whose stack (holding the struct) had just been unmapped. */
START_TEST(test_cancel_burst)
{
	burst_unwound = 0;
	for (int i = 0; i < BURST; i++) {
		burst[i] = coro_new(long_sleep_body, never_done, NULL);
		ck_assert_ptr_nonnull(burst[i]);
		coro_resume(burst[i]);
	}
	for (int i = 0; i < BURST; i++)
		coro_cancel(burst[i]);
	ck_assert_int_eq(burst_unwound, BURST);
	assert_none_alive();
	/* The loop holds nothing of them any more. */
	double t0 = now();
	ev_run(loop, EVRUN_NOWAIT);
	ck_assert(now() - t0 < 1);
}
END_TEST

/* The same burst, cancelled at each kind of wait point, the ones waiting
 * on a wake-up already woken (queued on the ready list). */
static void
mixed_body(void *arg)
{
	long i = (long)arg;
	int fds[2];
	struct coro_child w;
	int status;
	enum coro_status s = CORO_READY;

	switch (i % 5) {
	case 0:
		s = coro_sleep(60);
		break;
	case 1:
		ck_assert_int_eq(pipe2(fds, O_NONBLOCK | O_CLOEXEC), 0);
		s = coro_wait_fd(fds[0], POLLIN, now() + 60);
		close(fds[0]);
		close(fds[1]);
		break;
	case 2:
		s = coro_wait(now() + 60);
		break;
	case 3: {
		pid_t pid = fork();
		if (pid == 0) {
			pause();
			_exit(0);
		}
		ck_assert_int_ge(pid, 0);
		coro_child_watch(&w, pid);
		s = coro_wait_child(&w, now() + 60, &status);
		coro_child_stop(&w);
		kill(pid, SIGKILL);
		break;
	}
	case 4:
		s = coro_wait(0); /* woken below, never resumed before the cancel */
		break;
	}
	ck_assert_int_eq(s, CORO_CANCELLED);
	burst_unwound++;
}

START_TEST(test_cancel_burst_each_wait)
{
	enum { N = 300 }; /* 60 children at most */
	burst_unwound = 0;
	for (long i = 0; i < N; i++) {
		burst[i] = coro_new(mixed_body, never_done, (void *)i);
		ck_assert_ptr_nonnull(burst[i]);
		coro_resume(burst[i]);
	}
	for (long i = 4; i < N; i += 5)
		coro_wake(burst[i]);
	/* Backwards: the newest stacks go first, the free list fills with
	 * them and the oldest are unmapped. */
	for (int i = N - 1; i >= 0; i--)
		coro_cancel(burst[i]);
	ck_assert_int_eq(burst_unwound, N);
	assert_none_alive();
	double t0 = now();
	ev_run(loop, EVRUN_NOWAIT);
	ck_assert(now() - t0 < 1);
}
END_TEST

/* Cancelled from a timer callback each, all in one loop iteration: the
 * dispatcher's deadlines of tasks that timed out together. */
static void
cancel_timer_cb(struct ev_loop *l, ev_timer *w, int revents)
{
	(void)l;
	(void)revents;
	coro_cancel(w->data);
}

START_TEST(test_cancel_from_timers)
{
	static ev_timer timers[BURST];
	burst_unwound = 0;
	for (int i = 0; i < BURST; i++) {
		struct coro *c = coro_new(long_sleep_body, never_done, NULL);
		ck_assert_ptr_nonnull(c);
		coro_resume(c);
		ev_timer_init(&timers[i], cancel_timer_cb, 0.01, 0.0);
		timers[i].data = c;
		ev_timer_start(loop, &timers[i]);
	}
	run_until(&burst_unwound, BURST);
	assert_none_alive();
}
END_TEST

/* Finishing normally, all at once: every done runs, after the stack is
 * given back, and a done may start a new coroutine at once (reusing the
 * stack just freed). */
static int chained;

static void
short_sleep_body(void *arg)
{
	(void)arg;
	ck_assert_int_eq(coro_sleep(0.01), CORO_READY);
}

static void
chain_done(void *arg)
{
	ck_assert_ptr_null(coro_self());
	finished++;
	if (arg != NULL) {
		struct coro *c = coro_new(nothing_body, count_done, NULL);
		ck_assert_ptr_nonnull(c);
		coro_resume(c); /* finishes at once: done runs inside */
		chained++;
	}
}

START_TEST(test_finish_burst)
{
	finished = 0;
	chained = 0;
	for (long i = 0; i < BURST; i++) {
		struct coro *c = coro_new(short_sleep_body, chain_done, (void *)(i % 2));
		ck_assert_ptr_nonnull(c);
		coro_resume(c);
	}
	run_until(&finished, BURST + BURST / 2);
	ck_assert_int_eq(chained, BURST / 2);
	assert_none_alive();
}
END_TEST

/* A done that cancels every other coroutine (the dispatcher's "connection
 * lost" path, reached from a task's answer). */
static int cascade_done;

static void
cascade_first_done(void *arg)
{
	(void)arg;
	cascade_done++;
	for (int i = 1; i < BURST; i++)
		coro_cancel(burst[i]);
}

START_TEST(test_cancel_all_from_done)
{
	burst_unwound = 0;
	cascade_done = 0;
	burst[0] = coro_new(short_sleep_body, cascade_first_done, NULL);
	coro_resume(burst[0]);
	for (int i = 1; i < BURST; i++) {
		burst[i] = coro_new(long_sleep_body, never_done, NULL);
		coro_resume(burst[i]);
	}
	run_until(&cascade_done, 1);
	ck_assert_int_eq(burst_unwound, BURST - 1);
	assert_none_alive();
}
END_TEST

/* io.stack_size changed by a reload while coroutines of the old size are
 * alive: each keeps its own stack until it ends, the free list only ever
 * holds stacks of the new size, and nothing of the old size is reused. */
START_TEST(test_stack_size_change_alive)
{
	struct coro_stats a, b;
	burst_unwound = 0;
	finished = 0;
	for (int i = 0; i < BURST; i++) {
		burst[i] = coro_new(long_sleep_body, never_done, NULL);
		coro_resume(burst[i]);
	}
	/* A finished one of the old size in the free list too. */
	coro_resume(coro_new(nothing_body, count_done, NULL));
	coro_stats(&a);
	ck_assert_uint_eq(a.stacks_free, 1);

	ck_assert_int_eq(coro_set_stack_size(128 * 1024), 0);
	coro_stats(&b);
	ck_assert_uint_eq(b.stacks_free, 0); /* the old size dropped at once */
	/* New coroutines get new stacks, deeper than the old size allowed. */
	for (int i = 0; i < 10; i++)
		coro_resume(coro_new(deep_body, count_done, NULL));
	ck_assert_int_eq(finished, 11);
	coro_stats(&b);
	ck_assert_uint_eq(b.stacks_made, a.stacks_made + 1);
	ck_assert_uint_eq(b.stacks_free, 1);

	/* Old-size coroutines ending: none of their stacks is cached for
	 * the new size. */
	for (int i = 0; i < BURST; i++)
		coro_cancel(burst[i]);
	ck_assert_int_eq(burst_unwound, BURST);
	coro_stats(&b);
	ck_assert_uint_eq(b.stacks_free, 1);
	assert_none_alive();

	/* And back to the old size while new-size ones wait. */
	burst_unwound = 0;
	for (int i = 0; i < 300; i++) {
		burst[i] = coro_new(long_sleep_body, never_done, NULL);
		coro_resume(burst[i]);
	}
	ck_assert_int_eq(coro_set_stack_size(CORO_STACK_DEFAULT), 0);
	for (int i = 0; i < 300; i++)
		coro_cancel(burst[i]);
	ck_assert_int_eq(burst_unwound, 300);
	coro_stats(&b);
	ck_assert_uint_eq(b.stacks_free, 0);
	assert_none_alive();
}
END_TEST

/* Cancels from inside: a coroutine cancelling another one (done on the
 * main stack for it), and a coroutine cancelling itself, directly or from
 * a function it runs on the main stack (it unwinds at its next wait). */
static struct coro *victim, *self_co;
static enum coro_status self_wait;

static void
canceller_body(void *arg)
{
	(void)arg;
	coro_cancel(victim);
	/* The victim has unwound by now. */
	ck_assert_int_eq(burst_unwound, 1);
	ck_assert_int_eq(coro_sleep(0), CORO_READY);
}

static void
cancel_self_on_main(void *arg)
{
	(void)arg;
	ck_assert_ptr_null(coro_self());
	coro_cancel(self_co);
}

static void
self_cancel_body(void *arg)
{
	if (arg != NULL)
		coro_call_main(cancel_self_on_main, NULL);
	else
		coro_cancel(coro_self());
	self_wait = coro_sleep(60);
	unwound++;
}

START_TEST(test_cancel_from_inside)
{
	burst_unwound = 0;
	finished = 0;
	victim = coro_new(long_sleep_body, never_done, NULL);
	coro_resume(victim);
	coro_resume(coro_new(canceller_body, count_done, NULL));
	ck_assert_int_eq(burst_unwound, 1);
	run_until(&finished, 1);

	for (long how = 0; how < 2; how++) {
		unwound = 0;
		self_wait = CORO_READY;
		self_co = coro_new(self_cancel_body, never_done, (void *)how);
		coro_resume(self_co);
		ck_assert_int_eq(unwound, 1);
		ck_assert_int_eq(self_wait, CORO_CANCELLED);
		assert_none_alive();
	}
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
	tcase_add_test(tc, test_cancel_burst);
	tcase_add_test(tc, test_cancel_burst_each_wait);
	tcase_add_test(tc, test_cancel_from_timers);
	tcase_add_test(tc, test_finish_burst);
	tcase_add_test(tc, test_cancel_all_from_done);
	tcase_add_test(tc, test_stack_size_change_alive);
	tcase_add_test(tc, test_cancel_from_inside);
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
