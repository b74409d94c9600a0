/*
 * dispatch: the life of a task, from delivery to ack.
 *
 *   delivery -> envelope -> task table -> run (I/O in the loop, CPU
 *   handler) -> result -> publish -> broker confirms -> ack
 *
 * The ack rule (design §5): a task is acked only after the broker
 * confirmed its result, or, with no reply address, after it ran.  A
 * message that cannot run (unknown task, malformed, too large) is answered
 * "rejected" and rejected without requeue, so a dead-letter policy applies
 * and it never loops.  A nacked result sends its task back to the queue.
 * When the connection dies, tasks of that connection are dropped: the
 * broker redelivers them (at-least-once).
 *
 * Admission: at most io_max_concurrency I/O tasks run at once; the rest
 * wait in a FIFO that prefetch bounds (the broker never sends more than
 * prefetch unacked messages).
 */
#ifndef TASKD_DISPATCH_H
#define TASKD_DISPATCH_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "broker.h"
#include "conf.h"
#include "registry.h"

struct dispatch;

struct dispatch_stats {
	uint64_t ok;          /* answered "ok" */
	uint64_t failed;      /* answered error or timeout */
	uint64_t rejected;    /* answered "rejected" */
	uint64_t requeued;    /* sent back to the queue */
	uint64_t cancelled;   /* answered "cancelled" (dispatch_cancel) */
	size_t io_running;
	size_t cpu_running;
	size_t io_waiting;    /* admitted, waiting for an I/O slot */
	size_t in_flight;     /* every task not yet acked */
};

/* The broker callbacks; pass the dispatch as their ctx. */
extern const struct broker_ops dispatch_broker_ops;

/* conf and reg must stay alive until dispatch_reconfigure() replaces them
 * or the dispatch is freed.  node_id ("host:pid") is the taskd-worker
 * header value. */
struct dispatch *dispatch_new(struct ev_loop *loop, const struct conf *conf,
    const struct registry *reg, const char *node_id);
void dispatch_attach(struct dispatch *d, struct broker *b);
/* CPU handlers run on pool's workers from now on (NULL: inline in the
 * loop).  The pool must outlive the dispatch's running tasks. */
struct pool;
void dispatch_set_pool(struct dispatch *d, struct pool *pool);
/* Swaps in a new task table and limits; tasks in flight keep their own. */
void dispatch_reconfigure(struct dispatch *d, const struct conf *conf,
    const struct registry *reg);

/* Graceful stop, step 1: take no new task (arrivals and tasks still waiting
 * for a slot go back to the queue).  idle(ctx) is called once nothing is
 * in flight. */
void dispatch_drain(struct dispatch *d, void (*idle)(void *ctx), void *ctx);
/* Graceful stop, step 2 (grace period over): stop every running task and
 * send it back to the queue. */
void dispatch_abandon(struct dispatch *d);
/* After a drain that was not a stop (a reconnect for new broker settings):
 * take tasks again. */
void dispatch_resume(struct dispatch *d);

void dispatch_stats(const struct dispatch *d, struct dispatch_stats *out);

/* Cancel (design §8, docs/protocol.md).  What dispatch_cancel found of the
 * id, the furthest along first: */
enum dispatch_cancel {
	DISPATCH_CANCEL_NONE,     /* no task of that id is here */
	DISPATCH_CANCEL_DONE,     /* it had finished: its result is on its way */
	DISPATCH_CANCEL_QUEUED,   /* it had not started (waiting for a slot,
	                           * held, or between retries): now answered */
	DISPATCH_CANCEL_IO,       /* it ran as an I/O task: its coroutine was
	                           * cancelled, and it is answered */
	DISPATCH_CANCEL_CPU,      /* it ran on a CPU worker: the worker was
	                           * killed (the pool replaces it), and it is
	                           * answered */
};
/* Stops every task here whose id is id[0..len) and answers it "cancelled"
 * (error code "cancelled"); it is acked once that result is confirmed, and
 * never retried.  A task running alone as a suspected crasher is left to
 * run.  Returns what it found (the highest value over the tasks of that
 * id, which a redelivery can make more than one). */
enum dispatch_cancel dispatch_cancel(struct dispatch *d, const char *id, size_t len);
/* A task that arrives with an id in c (at ev_now's wall-clock time) is
 * answered "cancelled" without running.  c must outlive d; NULL = none. */
struct idset;
void dispatch_set_cancels(struct dispatch *d, struct idset *c);
/* Deliveries that ended in failovers (failovers.h) do not count against
 * limits.max_deliveries: this node notes its own in f when its connection
 * is lost (remembered for ttl seconds), and a task delivered before waits
 * up to DISPATCH_VET_WAIT for news of its failover before it is counted.
 * f must outlive d; NULL = none (every delivery counts). */
#define DISPATCH_VET_WAIT 2.0
struct failovers;
void dispatch_set_failovers(struct dispatch *d, struct failovers *f, double ttl);
/* News of failovers reached f: tasks it clears stop waiting. */
void dispatch_failovers_heard(struct dispatch *d);

/* A running task, for status (valid during the callback only). */
struct dispatch_running {
	const char *id;
	const char *task;
	bool cpu;             /* on a CPU worker, else an I/O coroutine */
	double seconds;       /* since its current attempt started */
};
/* Calls fn for every running task, in arrival order. */
void dispatch_each_running(const struct dispatch *d,
    void (*fn)(void *ctx, const struct dispatch_running *r), void *ctx);
void dispatch_free(struct dispatch *d);

#endif
