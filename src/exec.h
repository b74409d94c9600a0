/*
 * exec: run a configured program as a task.  No shell: argv is executed as
 * written (argv[0] an absolute path), the payload is written to its stdin,
 * what it writes to stdout is the result, the tail of its stderr goes into
 * the error message, and a non-zero exit (or death by a signal) is an
 * "error".
 *
 * The same runner serves both homes of an exec task:
 *
 *  - kind "io": on a coroutine inside the daemon's event loop; the waiter
 *    yields the coroutine (coro.h) until an fd is ready or the child exits;
 *  - kind "cpu": inside a pool worker process that has no event loop; the
 *    waiter blocks in poll(2) and waitpid(2).
 *
 * exec_run() itself never touches libev, never blocks and never waits for
 * anything except through the waiter, so it does not care which one it has.
 *
 * The child is started with posix_spawn(3) in a process group of its own,
 * with an empty signal mask and every signal at its default action (the
 * daemon blocks signals for its signalfd; a child must not inherit that), a
 * clean environment (PATH=/usr/local/bin:/usr/bin:/bin and LANG=C.UTF-8
 * only: nothing of the daemon's environment, its secrets included, leaks),
 * stdin/stdout/stderr on pipes and no other fd open (closefrom 3).  The
 * working directory is the daemon's (/ under systemd).
 *
 * The caller must ignore SIGPIPE (signal(SIGPIPE, SIG_IGN)): a child that
 * exits without reading its whole stdin makes our write fail with EPIPE,
 * which is not an error (the exit status decides).
 *
 * Timeout: when the deadline passes (the waiter answers EXEC_WAIT_TIMEOUT)
 * the whole process group is killed with SIGKILL, the child is handed to
 * the waiter's reap(), and the result is RESULT_TIMEOUT with error code
 * "timeout".  Cancellation (the waiter answers EXEC_WAIT_CANCELLED) does the
 * same kill and reap, leaves out untouched and returns EXEC_CANCELLED.
 * Either way, and also after a normal exit (a daemonised grandchild must
 * not outlive its task), the group is sent SIGKILL before exec_run()
 * returns: every fd it opened is closed and no process of the task's group
 * is left running.
 */
#ifndef TASKD_EXEC_H
#define TASKD_EXEC_H

#include <poll.h>
#include <stddef.h>
#include <sys/types.h>

#include "handler.h"

/* What a waiter's callbacks answer. */
enum exec_wait {
	EXEC_WAIT_READY = 0,      /* the fd is ready / the child has exited */
	EXEC_WAIT_TIMEOUT = 1,    /* the deadline passed first */
	EXEC_WAIT_CANCELLED = -1, /* stop now: the task is being cancelled */
};

/*
 * How exec_run() waits.  ctx is passed back to every callback.
 *
 * poll(ctx, fds, n, deadline): waits until at least one of fds[0..n) is
 *   ready for its .events (POLLIN / POLLOUT), sets each .revents as poll(2)
 *   does (POLLHUP and POLLERR included), and answers EXEC_WAIT_READY; or
 *   answers EXEC_WAIT_TIMEOUT once deadline (handler_clock() seconds, 0 =
 *   none) has passed, or EXEC_WAIT_CANCELLED.  Entries with fd < 0 are
 *   ignored, as poll(2) does.  n is at most 3.
 *   Blocking waiter: loop poll(2) with the time left until the deadline,
 *   retrying on EINTR; never answer CANCELLED unless the worker must stop.
 *
 * watch_child(ctx, pid): called once, right after the spawn and before any
 *   other callback: the child exists from now on.  The loop waiter arms its
 *   ev_child watcher here (libev reaps every child as soon as the loop runs
 *   and would otherwise lose the status).  May be NULL (blocking waiter).
 *
 * wait_child(ctx, pid, deadline, &status): waits until pid has exited and
 *   stores its wait status (as waitpid(2) gives it) in *status; answers
 *   EXEC_WAIT_READY, or EXEC_WAIT_TIMEOUT / EXEC_WAIT_CANCELLED as above
 *   (the child is then still running and not reaped).  It is called after
 *   stdout and stderr reached end of file, so the child has usually exited.
 *   Blocking waiter: pidfd_open(pid) + poll(2) until the deadline, then
 *   waitpid(pid, &status, 0); or waitpid(pid, &status, WNOHANG) in a loop
 *   with short sleeps.  The loop waiter uses an ev_child watcher: libev
 *   reaps every child itself, so waitpid() is not an option there.
 *
 * reap(ctx, pid): pid has been sent SIGKILL and exec_run() will not wait
 *   for it any more; make sure it does not stay a zombie.  Must not fail and
 *   must not take long.  Blocking waiter: waitpid(pid, NULL, 0) (retry on
 *   EINTR; a SIGKILLed child dies at once).  Loop waiter: nothing, libev
 *   reaps it.
 */
struct exec_waiter {
	void *ctx;
	enum exec_wait (*poll)(void *ctx, struct pollfd *fds, nfds_t n,
	    double deadline);
	void (*watch_child)(void *ctx, pid_t pid);
	enum exec_wait (*wait_child)(void *ctx, pid_t pid, double deadline,
	    int *status);
	void (*reap)(void *ctx, pid_t pid);
};

/* What exec_run() returns. */
enum exec_end {
	EXEC_FINISHED = 0,   /* out is filled: ok, error or timeout */
	EXEC_CANCELLED = -1, /* the waiter cancelled; out is unspecified */
};

/* How many bytes of stderr's tail go into an error message. */
#define EXEC_STDERR_TAIL 2048

/*
 * Runs argv (NULL-terminated, argv[0] an absolute path) with payload[0..len)
 * on its stdin, until it exits, the deadline (handler_clock() seconds, 0 =
 * none) passes, or the waiter cancels.
 *
 * out (whose body the caller owns and has reset) is filled as a handler's:
 *  - exit 0: RESULT_OK, body = stdout, content_type NULL (the input's);
 *  - exit non-zero or a signal: RESULT_ERROR, "handler_failed", message
 *    "<argv[0]> exited with status N: <last lines of stderr>";
 *  - stdout longer than max_output bytes: the group is killed, RESULT_ERROR,
 *    "handler_failed", "output larger than N bytes";
 *  - the program could not be started: RESULT_ERROR, "handler_failed",
 *    with strerror;
 *  - out of memory: RESULT_ERROR, "handler_failed";
 *  - deadline: RESULT_TIMEOUT, "timeout".
 * Returns EXEC_FINISHED, or EXEC_CANCELLED when the waiter cancelled.
 */
enum exec_end exec_run(char *const argv[], const void *payload, size_t len,
    double deadline, size_t max_output, const struct exec_waiter *w,
    struct handler_output *out);

#endif
