/*
 * pool: the CPU worker processes (parent side; the child is worker.c).
 *
 * A CPU task needs a core of its own, so CPU handlers run in pre-forked
 * worker processes, one per usable core (cpus.h), never in the event loop.
 *
 *   dispatch --pool_submit(call)--> idle worker (TASK frame on its socketpair)
 *                                   or the bounded backlog when all are busy
 *   worker --RESULT frame--> pool --handler_call_done(call)--> dispatch
 *
 * A submitted call behaves like an I/O handler's (handler.h): done is called
 * once, later, from a callback of the loop, never from inside a pool_*
 * function (so a caller may still set up its own state after pool_submit
 * returned); call->cancel (timeout, shutdown) stops it, and for a task on a
 * worker that means SIGKILL to the worker (and to the process group of a
 * program an exec task started), after which done is never called.
 *
 * A worker that dies mid-task (signal, abort, OOM kill) or breaks the frame
 * protocol answers its task with RESULT_ERROR / "worker_crashed"; the
 * dispatcher decides about retries.  A task not one byte of which reached
 * its worker (the worker died idle and the parent had not seen it yet)
 * cannot have run: it goes to the next worker, first in the backlog, and
 * is no crash.  Breaking the protocol means sending anything but, in
 * order, one READY after HELLO and, per TASK, at most one CHILD and one
 * RESULT, each well-formed and within its size (frame_max_len): a worker
 * can make the parent hold one frame of at most limits.max_payload plus a
 * few KiB, never more, and is SIGKILLed at the first byte out of line
 * that the parent reads.
 *
 * Spawning: fork, then in the child only async-signal-safe steps (empty
 * signal mask, default dispositions, PR_SET_PDEATHSIG then a getppid()
 * check, own process group, the channel moved to fd 3, every other fd
 * closed) and an exec of the daemon's own binary (opened once at
 * pool_new(), so a package upgrade that replaces the file does not change
 * what workers run) with argv[0] "taskd: cpu worker N" and TASKD_WORKER in
 * the environment.  The exec gives every worker a clean address space: no
 * event loop, broker connection, coroutine or lock state of the parent,
 * even when the parent has threads (the broker connector, curl's
 * resolver) at the time it replaces a worker.
 *
 * Watching: each worker has an ev_child watcher (so the pool needs libev's
 * default loop) and an ev_io on its channel; the parent never blocks on a
 * worker.  A dead worker is replaced at once (after one second when it
 * died less than a second after it was started, so a worker that cannot
 * start does not spin).
 *
 * Recycling: after max_tasks_per_child tasks, or when a task left the
 * worker's RSS above max_memory, the worker is retired between tasks (its
 * channel closed: it exits) and replaced.
 */
#ifndef TASKD_POOL_H
#define TASKD_POOL_H

#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "handler.h"

struct pool;

struct pool_params {
	int size;                    /* worker processes, >= 1 */
	int max_tasks_per_child;     /* 0 = no limit */
	size_t max_memory;           /* RSS in bytes; 0 = no limit */
	size_t backlog;              /* tasks waiting for a worker, at most */
	size_t max_result;           /* largest result body a worker may send */
	const char *const *plugins;  /* NULL-terminated plugin paths, or NULL */
};

struct pool_stats {
	int size;              /* wanted workers */
	int alive;             /* worker processes not yet reaped */
	int busy;              /* running a task */
	size_t backlog;        /* tasks waiting for a worker */
	uint64_t spawned;      /* workers started */
	uint64_t crashed;      /* workers lost while running a task */
	uint64_t recycled;     /* retired by max_tasks_per_child / max_memory */
	uint64_t killed;       /* killed by a cancel (timeout, shutdown) */
};

/* Starts p->size workers.  loop must be libev's default loop (ev_child).
 * Returns NULL with err filled when the binary cannot be opened or nothing
 * could be forked. */
struct pool *pool_new(struct ev_loop *loop, const struct pool_params *p,
    char *err, size_t errlen);

/* Applies new parameters (SIGHUP): grows at once, shrinks by retiring idle
 * workers now and busy ones when their task ends; a change of plugins
 * replaces every worker as it becomes idle.  Tasks in flight are kept. */
void pool_configure(struct pool *pool, const struct pool_params *p);

/* Runs call on a worker: handler is a CPU handler's name, the call's
 * in.args->exec (if any) its argv.  Returns 0: call->cancel is set and done
 * comes later, from the loop, whatever happens meanwhile (even a worker
 * found dead on the way); or -1 when the pool cannot take it (the backlog
 * is full, or memory ran out): call untouched, done never called.  The
 * backlog bound may be passed by one task per worker found dead. */
int pool_submit(struct pool *pool, struct handler_call *call, const char *handler);

void pool_stats(const struct pool *pool, struct pool_stats *out);

/* Kills every worker and waits for them; no call may be pending. */
void pool_free(struct pool *pool);

#endif
