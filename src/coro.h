/*
 * coro: stackful coroutines inside the libev loop, and the ways a coroutine
 * waits.
 *
 * An I/O task spends its life waiting.  Each one runs on a coroutine of its
 * own: straight-line code that calls coro_wait_fd(), coro_sleep() or
 * coro_wait_child() where it would block, and each of those yields to the
 * loop until the event (or its deadline) comes.  Ten thousand tasks then
 * wait at once in one thread, each costing one stack.
 *
 * Concepts:
 *
 *  - The main context is the thread's own stack, where ev_run() runs.  Only
 *    it creates, resumes and cancels coroutines.  Library calls that keep
 *    state or call back (libev, curl, rabbitmq-c) and fork() happen there
 *    too; a coroutine asks for them through a waiting primitive.
 *  - A coroutine's stack is mmap'd with a PROT_NONE guard page below it
 *    (an overflow faults instead of corrupting a neighbour), committed only
 *    as pages are touched, and recycled through a free list when the
 *    coroutine returns.  The struct coro (the handle) is on the heap, not
 *    in the mapping, and owns it; both are given back together when the
 *    coroutine ends, and the handle is invalid from then on.
 *  - A waiting primitive starts watchers that live on the coroutine's own
 *    stack, switches to the main context, and stops them when it is
 *    resumed: the watcher callbacks only resume.  So a coroutine owns its
 *    watchers and nothing is left armed once it runs again.
 *  - Cancellation: coro_cancel() resumes a waiting coroutine at its wait
 *    point with CORO_CANCELLED and runs it until it returns.  The body must
 *    then unwind, freeing what it owns, without waiting again: every later
 *    wait answers CORO_CANCELLED at once.
 *  - A coroutine ends in exactly one place: on the main context, right
 *    after its last switch, inside the coro_resume() or coro_cancel() that
 *    ran it.  Its stack is given back there (cached, or unmapped when the
 *    free list is full or the stack has an old io.stack_size), then done
 *    runs.  No code of this module reads a coroutine after that.
 *  - Deadlines are CLOCK_MONOTONIC seconds (handler_clock()); 0 means none.
 *
 * The switch is a few instructions of assembly per architecture (x86-64,
 * aarch64: the callee-saved registers and the stack pointer; about 10 ns)
 * with a ucontext fallback elsewhere (about 330 ns: swapcontext makes a
 * sigprocmask syscall each time).  Switches are annotated for
 * AddressSanitizer and stacks registered with valgrind, so both see
 * coroutines as stacks rather than as stack corruption.
 *
 * Not thread-safe: one thread (the loop's) uses this module.
 */
#ifndef TASKD_CORO_H
#define TASKD_CORO_H

#include <poll.h>
#include <stdbool.h>
#include <stddef.h>
#include <sys/types.h>
#include <ev.h>

struct coro;

/* What a wait answers. */
enum coro_status {
	CORO_READY = 0,      /* the event came (fd ready, child exited, woken) */
	CORO_TIMEOUT = 1,    /* the deadline passed first */
	CORO_CANCELLED = -1, /* coro_cancel(): unwind now, wait no more */
};

/* The default and bounds of io.stack_size. */
#define CORO_STACK_DEFAULT (64 * 1024)
#define CORO_STACK_MIN (16 * 1024)
#define CORO_STACK_MAX (8 * 1024 * 1024)

/* Binds the module to loop (the default loop: ev_child needs it) with
 * stacks of stack_size bytes (rounded up to pages; the guard page comes on
 * top).  Call once from the main context before anything else.  Returns 0,
 * or -1 with errno set (EINVAL: size out of bounds). */
int coro_setup(struct ev_loop *loop, size_t stack_size);
/* Changes the size of stacks made from now on (a reload).  Cached stacks
 * of the old size are unmapped at once; coroutines alive keep their own
 * stack until they end, and it is unmapped then, never cached.  Returns 0,
 * or -1 (EINVAL). */
int coro_set_stack_size(size_t stack_size);
/* Frees the cached stacks.  Every coroutine must have finished. */
void coro_teardown(void);
/* Unmaps the cached stacks (an idle daemon gives their pages back);
 * coroutines alive keep theirs.  Later coroutines map new ones. */
void coro_trim(void);

/* Makes a coroutine that will run fn(arg) and, once fn has returned and
 * the coroutine is recycled, call done(arg) on the main context (done may
 * be NULL).  It does not run until coro_resume().  Returns NULL with errno
 * set when no stack could be had (ENOMEM). */
struct coro *coro_new(void (*fn)(void *arg), void (*done)(void *arg), void *arg);

/* Main context only: runs c until it waits or returns.  When it returns,
 * c is recycled and done(arg) called before coro_resume() returns; c must
 * not be used after that. */
void coro_resume(struct coro *c);

/* Cancels c (waiting, or made and not yet resumed): resumes it with
 * CORO_CANCELLED and runs it until it returns; c is recycled when
 * coro_cancel() returns, and done is NOT called.  c must not be used after.
 * Called on a coroutine for another one, the resume runs on the main stack
 * (as coro_call_main does) with the same result.
 * From inside c itself (on c, or in a function c runs by coro_call_main)
 * it cannot be resumed: c is only marked cancelled, its next wait answers
 * CORO_CANCELLED, and it is recycled when its body returns, without done.
 * The caller must then keep what the body uses until that return. */
void coro_cancel(struct coro *c);

/* The coroutine running now, or NULL on the main context. */
struct coro *coro_self(void);
/* The loop given to coro_setup(). */
struct ev_loop *coro_loop(void);

/* --- waiting: only on a coroutine ------------------------------------- */

/* Waits until one of fds[0..n) is ready for its .events (POLLIN, POLLOUT);
 * sets each .revents as poll(2) would (POLLHUP/POLLERR show as ready).
 * Entries with fd < 0 are ignored.  n at most CORO_POLL_MAX. */
#define CORO_POLL_MAX 8
enum coro_status coro_poll(struct pollfd *fds, nfds_t n, double deadline);
/* The one-fd form: events is POLLIN and/or POLLOUT. */
enum coro_status coro_wait_fd(int fd, short events, double deadline);
/* Sleeps for seconds (<= 0: yields once, letting the loop run).  Answers
 * CORO_READY or CORO_CANCELLED. */
enum coro_status coro_sleep(double seconds);

/*
 * Child processes.  libev reaps every child itself (waitpid() would race
 * it), so a child's exit is caught by an ev_child watcher that must be
 * armed before the loop runs again after the spawn, or the status is lost.
 * coro_child_watch() arms it (on the coroutine's stack, in w), right after
 * the spawn; coro_wait_child() then waits for the exit; coro_child_stop()
 * disarms it (always call it before w goes out of scope).
 */
struct coro_child {
	ev_child w;
	struct coro *waiter;
	bool exited;
	int status;   /* the wait status, once exited */
};
void coro_child_watch(struct coro_child *w, pid_t pid);
/* Waits for the exit; on CORO_READY *status is the wait status. */
enum coro_status coro_wait_child(struct coro_child *w, double deadline, int *status);
void coro_child_stop(struct coro_child *w);

/*
 * Waiting for something the main context signals (e.g. curl finished a
 * transfer): the coroutine calls coro_wait(deadline); code on the main
 * context calls coro_wake(c).  The wake-up is delivered from the loop's
 * next prepare phase, never from inside the caller (who may be inside a
 * library callback).  A wake for a coroutine that is not in coro_wait()
 * is remembered until it waits (one wake, not a count).
 */
enum coro_status coro_wait(double deadline);
void coro_wake(struct coro *c);

/*
 * Runs fn(arg) on the main context's stack and returns when it has: for
 * library calls that may call back or go deep (curl_multi_add_handle,
 * curl_multi_remove_handle...), which must not run on a small coroutine
 * stack.  Not a wait: it works after a cancel too.  Costs two switches.
 */
void coro_call_main(void (*fn)(void *arg), void *arg);

/* --- statistics ---------------------------------------------------------- */
struct coro_stats {
	size_t alive;        /* coroutines made and not yet recycled */
	size_t stacks_free;  /* stacks in the free list */
	size_t stacks_made;  /* mmap calls since setup */
	unsigned long long switches;
};
void coro_stats(struct coro_stats *st);

#endif
