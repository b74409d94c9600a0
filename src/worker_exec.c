#include "worker_exec.h"

#include <errno.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "exec.h"

struct blocking {
	uint64_t seq;
	void (*started)(void *ctx, uint64_t seq, pid_t pgid);
	void *ctx;
	pid_t reported;
};

/* Milliseconds until deadline for poll(2): -1 for none, 0 once passed. */
static int
ms_left(double deadline)
{
	if (deadline <= 0)
		return -1;
	double left = deadline - handler_clock();
	if (left <= 0)
		return 0;
	return left > 86400 ? 86400000 : (int)ceil(left * 1000.0);
}

/* The worker's only child is the program exec_run() just started, in a
 * process group of its own (exec.h).  The parent is told at once, so a
 * deadline kill of this worker also reaches a program that never closes
 * its output (exec_run() only names the pid once output has ended). */
static void
report_started(struct blocking *b)
{
	char path[64];
	long pid = 0;
	snprintf(path, sizeof(path), "/proc/self/task/%ld/children", (long)getpid());
	FILE *f = fopen(path, "re");
	if (f == NULL)
		return;
	if (fscanf(f, "%ld", &pid) == 1 && pid > 1) {
		b->reported = (pid_t)pid;
		b->started(b->ctx, b->seq, (pid_t)pid);
	}
	fclose(f);
}

static enum exec_wait
bl_poll(void *ctx, struct pollfd *fds, nfds_t n, double deadline)
{
	struct blocking *b = ctx;
	if (b->reported == 0 && b->started != NULL)
		report_started(b);
	for (;;) {
		int ms = ms_left(deadline);
		if (ms == 0)
			return EXEC_WAIT_TIMEOUT;
		int r = poll(fds, n, ms);
		if (r > 0)
			return EXEC_WAIT_READY;
		if (r < 0 && errno != EINTR)
			return EXEC_WAIT_CANCELLED;  /* cannot wait: stop the program */
	}
}

static enum exec_wait
bl_wait_child(void *ctx, pid_t pid, double deadline, int *status)
{
	struct blocking *b = ctx;
	/* The program's own group: a timeout kill in the parent reaches it
	 * and whatever it started. */
	if (b->reported != pid && b->started != NULL) {
		b->reported = pid;
		b->started(b->ctx, b->seq, pid);
	}
	int pfd = (int)syscall(SYS_pidfd_open, pid, 0);
	if (pfd >= 0) {
		struct pollfd p = { .fd = pfd, .events = POLLIN };
		enum exec_wait w = bl_poll(ctx, &p, 1, deadline);
		close(pfd);
		if (w != EXEC_WAIT_READY)
			return w;
	}
	for (;;) {
		pid_t r = waitpid(pid, status, 0);
		if (r == pid)
			return EXEC_WAIT_READY;
		if (r < 0 && errno != EINTR)
			return EXEC_WAIT_CANCELLED;
	}
}

static void
bl_reap(void *ctx, pid_t pid)
{
	(void)ctx;
	while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
		;
}

void
worker_exec(const char *const *argv, const struct handler_input *in,
    size_t max_output, uint64_t seq,
    void (*started)(void *ctx, uint64_t seq, pid_t pgid),
    void *ctx, struct handler_output *out)
{
	struct blocking b = { .seq = seq, .started = started, .ctx = ctx };
	struct exec_waiter w = {
		.ctx = &b, .poll = bl_poll, .wait_child = bl_wait_child, .reap = bl_reap,
	};
	/* The worker has no conf: the cap travels with the task (frame.h
	 * max_result), and "none" must still end somewhere. */
	size_t max = max_output > 0 ? max_output : SIZE_MAX;
	if (exec_run((char *const *)argv, in->payload, in->len, in->deadline, max,
	    &w, out) != EXEC_FINISHED)
		handler_fail(out, RESULT_ERROR, "handler_failed",
		    "%s could not be waited for", argv[0]);
}
