/* handler_exec: exec tasks of kind io, on a coroutine (exec.h, coro.h).
 * The runner waits through this file's waiter, which yields the task's
 * coroutine instead of blocking the loop. */
#include "coro.h"
#include "exec.h"
#include "handler.h"
#include "worker_exec.h"

struct exec_co {
	struct coro_child child;
	bool watching;
};

static enum exec_wait
exec_co_status(enum coro_status s)
{
	switch (s) {
	case CORO_READY:
		return EXEC_WAIT_READY;
	case CORO_TIMEOUT:
		return EXEC_WAIT_TIMEOUT;
	case CORO_CANCELLED:
		break;
	}
	return EXEC_WAIT_CANCELLED;
}

static enum exec_wait
exec_co_poll(void *ctx, struct pollfd *fds, nfds_t n, double deadline)
{
	(void)ctx;
	return exec_co_status(coro_poll(fds, n, deadline));
}

static void
exec_co_watch_child(void *ctx, pid_t pid)
{
	struct exec_co *x = ctx;
	coro_child_watch(&x->child, pid);
	x->watching = true;
}

static enum exec_wait
exec_co_wait_child(void *ctx, pid_t pid, double deadline, int *status)
{
	(void)pid;
	struct exec_co *x = ctx;
	return exec_co_status(coro_wait_child(&x->child, deadline, status));
}

/* libev reaps every child, the SIGKILLed one included. */
static void
exec_co_reap(void *ctx, pid_t pid)
{
	(void)ctx;
	(void)pid;
}

static void
exec_io_co(struct handler_call *call)
{
	const struct handler_args *a = call->in.args;
	struct exec_co x = { .watching = false };
	const struct exec_waiter w = {
		.ctx = &x,
		.poll = exec_co_poll,
		.watch_child = exec_co_watch_child,
		.wait_child = exec_co_wait_child,
		.reap = exec_co_reap,
	};

	if (a == NULL || a->exec == NULL) {
		handler_fail(&call->out, RESULT_ERROR, "handler_failed",
		    "the task has no program to run");
		return;
	}
	(void)exec_run(a->exec, call->in.payload, call->in.len, call->in.deadline,
	    a->max_output, &w, &call->out);
	/* The watcher lives on this stack: disarm it before we return. */
	if (x.watching)
		coro_child_stop(&x.child);
}

const struct handler handler_exec_io = {
	"exec", HANDLER_IO, NULL, handler_co_start, exec_io_co,
};

/* Kind cpu has no body here: the pool sends the task to a worker, which
 * runs the program with worker_exec() under this name. */
const struct handler handler_exec_cpu = {
	WORKER_EXEC_HANDLER, HANDLER_CPU, NULL, NULL, NULL,
};
