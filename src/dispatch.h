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
void dispatch_free(struct dispatch *d);

#endif
