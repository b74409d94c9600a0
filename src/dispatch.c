#include "dispatch.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "failovers.h"
#include "idset.h"
#include "envelope.h"
#include "handler.h"
#include "log.h"
#include "pool.h"
#include "result.h"
#include "stats.h"
#include "suspect.h"

enum task_state {
	TASK_WAITING,   /* admitted, waiting for an I/O slot */
	TASK_RUNNING,   /* its handler is working */
	TASK_RETRY,     /* waiting out the backoff before another attempt */
	TASK_PUBLISH,   /* result ready, waiting for the broker to take it */
	TASK_CONFIRM,   /* result published, waiting for the broker's confirm */
	TASK_HELD,      /* delivered before: waits until no original of a
	                 * counted copy is unsettled here (task_hold) */
	TASK_SUSPECT,   /* waits to run alone until the rest is done
	                 * (dispatch_isolate) */
	TASK_STASHED,   /* arrived while a cancel waits for a full window
	                 * (dispatch_quiet): routed once it is sent */
	TASK_VETTING,   /* delivered before: waits a little for news that an
	                 * earlier delivery ended in a failover (task_vet) */
	TASK_RETURNING, /* handed back during an isolation before the
	                 * cancel-ok: its copy (kept) waits for it
	                 * (task_hand_back) */
};

/* Running a suspect alone (suspect.h): the consumer is cancelled, late
 * arrivals go back to the queue, the rest finishes, the suspect runs, and
 * the consumer starts again at the window of the new level. */
enum iso_state {
	ISO_NONE,       /* consuming */
	ISO_QUIETING,   /* the cancel waits for a full window (dispatch_quiet) */
	ISO_EMPTYING,   /* consumer cancelled: waiting for the others */
	ISO_ALONE,      /* the suspect runs; no consumer */
};

/* A redelivered task of a classic queue on its way back to the queue's
 * tail, as a copy that carries its delivery count (envelope.h). */
struct recount {
	amqp_pool_t pool;
	amqp_basic_properties_t props;
	char *queue;
};

struct task {
	struct task *prev, *next;     /* every task (d->all) */
	struct task *qnext;           /* the waiting or the publish FIFO */
	struct dispatch *d;
	struct broker_delivery *dlv;
	struct envelope env;
	const struct handler *handler;
	struct handler_args *args;    /* our reference: survives a reload */
	struct recount *recount;      /* NULL unless the task goes back as a copy */
	struct recount *kept;         /* TASK_STASHED, TASK_VETTING: its copy,
	                               * made while the delivery's properties
	                               * were there */
	double timeout;
	int retries;
	int attempt;
	enum task_state state;
	double started;
	double published;             /* its result, for the confirm latency */
	struct stats_task *row;       /* counted there; NULL: as unknown */
	long before;                  /* earlier deliveries (copies carry it) */
	long counted;                 /* of them, not ended by a failover: what
	                               * limits.max_deliveries and the suspect
	                               * windows go by */
	double vet_until;             /* TASK_VETTING: ev_now when it goes on */
	bool alone;                   /* runs alone: its end is logged */
	/* One timer per task, for whichever wait its state has: the deadline
	 * while RUNNING, the backoff while RETRY, the pause after a nack. */
	ev_timer deadline;
	struct handler_call call;
};

struct fifo {
	struct task *head, *tail;
	size_t n;
};

/*
 * Freed tasks kept for the next deliveries.  With thousands of tasks in
 * flight, glibc's per-thread cache (7 blocks per size) misses on nearly
 * every task, and the miss costs hundreds of instructions at each end
 * (callgrind on an echo drain).  Bounded, so a burst's high-water mark is
 * not kept forever; none under ASan, which must see every use after free.
 */
#if defined(__SANITIZE_ADDRESS__)
#define TASK_SPARE_MAX 0
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define TASK_SPARE_MAX 0
#endif
#endif
#ifndef TASK_SPARE_MAX
#define TASK_SPARE_MAX 1024
#endif
/* A variable, not the macro, in the test: with 0 (ASan) the comparison
 * would be one the compiler calls always false. */
static const size_t task_spare_max = TASK_SPARE_MAX;

struct dispatch {
	struct ev_loop *loop;
	const struct conf *conf;
	const struct registry *reg;
	struct broker *broker;
	struct pool *pool;            /* CPU handlers run here; NULL = inline */
	char *node_id;                /* "host:pid", the taskd-worker header */
	struct task all;              /* list head */
	struct fifo waiting;
	struct fifo publish;
	struct fifo held;             /* TASK_HELD, in delivery order */
	size_t recounts;              /* tasks with a recount, until freed */
	ev_timer release;             /* starts the held tasks */
	struct suspect caution;       /* how much company a suspect may have */
	enum iso_state iso;
	struct task *suspect;         /* the one to run alone */
	bool cancel_seen;             /* no delivery can follow */
	bool bound_over;              /* shutdown.grace passed while emptying */
	struct recount *suspect_copy; /* how it goes back if it cannot run */
	/* A stop's suspect and its copy, published once no delivery can
	 * follow: a copy on the queue before the cancel-ok may come back to
	 * this node, which would requeue it counted. */
	struct task *parked;
	struct recount *parked_copy;
	size_t handed_back;           /* during this isolation */
	size_t stragglers;            /* of them, after the cancel-ok */
	bool resume_due;              /* consume once nothing is in flight */
	ev_timer iso_bound;           /* the wait for the others is over */
	ev_timer iso_step;            /* next step, once the acks are out */
	/* A cancel of the consumer, held until its window is full (or
	 * quiet_bound passed), so that nothing is on its way to it. */
	bool quieting;
	bool quiet_over;
	bool widen_due;               /* consume again at once after it */
	ev_timer quiet_bound;
	struct fifo stash;            /* TASK_STASHED, in delivery order */
	struct fifo returning;        /* TASK_RETURNING, in delivery order */
	uint64_t used_by;             /* broker_consumer() of the count below */
	int used;                     /* its deliveries not yet settled */
	bool admitting;
	bool draining;
	struct task *spare;           /* freed tasks, linked by qnext */
	size_t nspare;
	void (*idle)(void *ctx);
	void *idle_ctx;
	struct idset *cancels;        /* ids to answer "cancelled"; may be NULL */
	struct failovers *failovers;  /* deliveries ended by failovers; may be NULL */
	double failover_ttl;          /* how long the fleet remembers ours */
	struct fifo vetting;          /* TASK_VETTING, in delivery order */
	ev_timer vet;                 /* the first of them goes on */
	uint64_t rng[2];
	struct dispatch_stats st;
};

static void task_finished(struct task *t);
static struct recount *recount_new(struct dispatch *d,
    const amqp_basic_properties_t *props, long deliveries);
static void recount_free(struct recount *r);
static void task_send_copy(struct task *t, struct recount *r);
static void dispatch_iso_over(struct dispatch *d);
static void dispatch_iso_check(struct dispatch *d);
static void dispatch_iso_abort(struct dispatch *d);
static void dispatch_isolate(struct dispatch *d, struct task *t,
    const amqp_basic_properties_t *props);
static void dispatch_widen(struct dispatch *d);
static void task_hand_back(struct task *t, const amqp_basic_properties_t *props,
    long before);
static void task_route(struct task *t, const amqp_basic_properties_t *props);
static void task_recount_failovers(struct task *t);
static bool task_vet(struct task *t, const amqp_basic_properties_t *props);
static void task_admit(struct task *t, const amqp_basic_properties_t *props);
static void dispatch_quiet(struct dispatch *d);
static void dispatch_quiet_check(struct dispatch *d);

static void
fifo_push(struct fifo *q, struct task *t)
{
	t->qnext = NULL;
	if (q->tail)
		q->tail->qnext = t;
	else
		q->head = t;
	q->tail = t;
	q->n++;
}

static struct task *
fifo_pop(struct fifo *q)
{
	struct task *t = q->head;
	if (t == NULL)
		return NULL;
	q->head = t->qnext;
	if (q->head == NULL)
		q->tail = NULL;
	q->n--;
	t->qnext = NULL;
	return t;
}

static void
fifo_remove(struct fifo *q, struct task *t)
{
	struct task **pp = &q->head, *prev = NULL;
	while (*pp != NULL && *pp != t) {
		prev = *pp;
		pp = &(*pp)->qnext;
	}
	if (*pp == NULL)
		return;
	*pp = t->qnext;
	if (q->tail == t)
		q->tail = prev;
	q->n--;
	t->qnext = NULL;
}

/* xorshift128+: task ids only need to be unique, not secret, and a
 * syscall per message would cost more than the rest of the parse. */
static uint64_t
dispatch_rand(struct dispatch *d)
{
	uint64_t x = d->rng[0], y = d->rng[1];
	d->rng[0] = y;
	x ^= x << 23;
	d->rng[1] = x ^ y ^ (x >> 17) ^ (y >> 26);
	return d->rng[1] + y;
}

static void
task_free(struct task *t)
{
	struct dispatch *d = t->d;
	ev_timer_stop(d->loop, &t->deadline);
	t->prev->next = t->next;
	t->next->prev = t->prev;
	d->st.in_flight--;
	if (t->dlv->consumer != 0 && t->dlv->consumer == d->used_by && d->used > 0)
		d->used--;
	recount_free(t->kept);
	envelope_free(&t->env);
	if (t->recount != NULL) {
		recount_free(t->recount);
		/* Its ack, if any, goes out before the loop waits; the release
		 * timer fires after that. */
		if (--d->recounts == 0 && d->held.head != NULL)
			ev_timer_start(d->loop, &d->release);
	}
	broker_delivery_free(t->dlv);
	buf_free(&t->call.out.body);
	handler_args_unref(t->args);
	bool was_suspect = t == d->suspect;
	if (t == d->parked) {
		d->parked = NULL;
		recount_free(d->parked_copy);
		d->parked_copy = NULL;
	}
	if (d->nspare < task_spare_max) {
		t->qnext = d->spare;
		d->spare = t;
		d->nspare++;
	} else {
		free(t);
	}
	if (was_suspect) {
		d->suspect = NULL;
		if (d->iso != ISO_NONE)
			dispatch_iso_over(d);
	} else if (d->iso == ISO_EMPTYING) {
		dispatch_iso_check(d);
	} else if (d->resume_due && d->st.in_flight == 0 && !ev_is_active(&d->iso_step)) {
		ev_timer_start(d->loop, &d->iso_step);
	}
	if (d->draining && d->st.in_flight == 0 && d->idle != NULL) {
		void (*idle)(void *) = d->idle;
		d->idle = NULL;
		idle(d->idle_ctx);
	}
}

/* Counts an answered task under the configured name it arrived with
 * (stats.h: never under a name only the client knows). */
static void
task_count(struct task *t, enum result_status s)
{
	stats_answered(t->row != NULL ? t->row : stats_task_row(NULL), (int)s,
	    t->handler != NULL ? handler_clock() - t->started : -1.0);
}

/* The task is over for this node: ack, or reject with or without requeue. */
static void
task_settle(struct task *t)
{
	struct dispatch *d = t->d;
	enum result_status s = t->call.out.status;

	if (t->alone && t->recount == NULL)
		log_info("task %s (%s) ran alone and was answered %s", t->env.task_id,
		    t->env.task, result_status_name(s));
	if (t->recount != NULL) {
		/* Its copy is in the queue: the original is done with. */
		broker_ack(d->broker, t->dlv->gen, t->dlv->tag);
		d->st.requeued++;
	} else if (s == RESULT_REJECTED) {
		broker_reject(d->broker, t->dlv->gen, t->dlv->tag, false);
		d->st.rejected++;
		task_count(t, s);
	} else {
		task_count(t, s);
		broker_ack(d->broker, t->dlv->gen, t->dlv->tag);
		if (s == RESULT_OK)
			d->st.ok++;
		else if (s == RESULT_CANCELLED)
			d->st.cancelled++;
		else
			d->st.failed++;
	}
	task_free(t);
}

static void
task_requeue(struct task *t)
{
	broker_reject(t->d->broker, t->dlv->gen, t->dlv->tag, true);
	t->d->st.requeued++;
	task_free(t);
}

static void
dispatch_flush(struct dispatch *d)
{
	uint64_t gen = broker_generation(d->broker);

	while (d->publish.head != NULL) {
		struct task *t = d->publish.head;
		if (t->dlv->gen != gen) {
			/* Its channel is gone; the broker redelivers it. */
			fifo_pop(&d->publish);
			task_free(t);
			continue;
		}
		if (t->recount != NULL) {
			int rc = broker_publish(d->broker, t->recount->queue,
			    &t->recount->props, t->dlv->body, t->dlv->len, t);
			if (rc != 0)
				return;
			fifo_pop(&d->publish);
			t->state = TASK_CONFIRM;
			t->published = handler_clock();
			continue;
		}
		struct result_info info = {
			.status = t->call.out.status,
			.task = t->env.task,
			.task_id = t->env.task_id,
			.correlation_id = t->env.correlation_id,
			.correlation_len = t->env.correlation_len,
			.content_type = t->call.out.content_type ? t->call.out.content_type :
			    t->env.content_type,
			.node_id = d->node_id,
			.attempt = t->attempt,
			.duration_us = (int64_t)((handler_clock() - t->started) * 1e6),
			.timestamp = time(NULL),
			.persistent = envelope_result_persistent(&t->env,
			    broker_reply_durable(d->broker)),
		};
		struct result_msg msg;
		result_build(&msg, &info);
		int rc = broker_publish(d->broker, t->env.reply_to, &msg.props,
		    t->call.out.body.data, t->call.out.body.len, t);
		if (rc != 0)
			return;  /* AGAIN: `writable` resumes; -1: `down` follows */
		fifo_pop(&d->publish);
		t->state = TASK_CONFIRM;
		t->published = handler_clock();
	}
}

/* The largest result body the broker takes: broker.max_message_size, or
 * less once the broker refused a result and named its real limit. */
static size_t
dispatch_max_message(const struct dispatch *d)
{
	size_t limit = d->conf->max_message_size;
	size_t learned = d->broker != NULL ? broker_max_message_size(d->broker) : 0;
	return learned > 0 && learned < limit ? learned : limit;
}

/* Turns the handler's output into what gets published and sends it. */
static void
task_answer(struct task *t)
{
	struct dispatch *d = t->d;
	struct handler_output *out = &t->call.out;
	size_t limit = dispatch_max_message(d);

	/* RabbitMQ closes the channel over a message above its limit: the task
	 * would come back and fail the same way for ever.  An error fits. */
	if (out->status == RESULT_OK && out->body.len > limit && t->env.reply_to != NULL) {
		size_t n = out->body.len;
		handler_fail(out, RESULT_ERROR, "result_too_large",
		    "the result is %zu bytes; the broker takes at most %zu (%s)", n, limit,
		    limit < d->conf->max_message_size ? "it refused a larger result" :
		    "broker.max_message_size");
		log_warn("task %s (%s): its result of %zu bytes is larger than the broker "
		    "takes (%zu): answered result_too_large", t->env.task_id,
		    t->env.task ? t->env.task : "no name", n, limit);
	}
	if (out->status != RESULT_OK) {
		/* out.body holds the human message; the wire wants JSON. */
		struct buf json = { 0 };
		const char *code = out->error_code ? out->error_code : "handler_failed";
		if (buf_reserve(&out->body, 0) < 0 ||
		    result_error_body(&json, code, out->body.data) < 0) {
			buf_free(&json);
			buf_reset(&out->body);
		} else {
			buf_free(&out->body);
			out->body = json;
		}
		if (out->status == RESULT_REJECTED)
			log_warn("task %s (%s) rejected: %s", t->env.task_id,
			    t->env.task ? t->env.task : "no name", code);
		/* Only a broker limit set absurdly low gets here: the status
		 * header still tells what happened. */
		if (out->body.len > limit)
			buf_reset(&out->body);
	}
	if (t->env.reply_to == NULL) {
		task_settle(t);
		return;
	}
	t->state = TASK_PUBLISH;
	fifo_push(&d->publish, t);
	if (d->publish.head == t)
		dispatch_flush(d);
}

static void
task_reject(struct task *t, const char *code, const char *message)
{
	handler_fail(&t->call.out, RESULT_REJECTED, code, "%s", message);
	t->started = handler_clock();
	task_answer(t);
}

static void dispatch_admit(struct dispatch *d);

/* Sends a redelivered task of a classic queue back to its queue's tail as
 * a copy that says how often it was delivered, instead of running it: the
 * broker's `redelivered` flag cannot count past one, and a task that
 * kills taskd must still meet limits.max_deliveries.  The original is
 * acked once the copy is confirmed (task_settle).  Returns 0, or -1 when
 * memory ran out (nothing is sent; the caller requeues). */
/* The copy that carries the count: made now from props, or the one kept
 * while the task was stashed (props NULL). */
static struct recount *
task_recount(struct task *t, const amqp_basic_properties_t *props, long deliveries)
{
	if (props == NULL) {
		struct recount *r = t->kept;
		t->kept = NULL;
		return r;
	}
	return recount_new(t->d, props, deliveries);
}

static int
task_send_back(struct task *t, const amqp_basic_properties_t *props, long deliveries)
{
	struct recount *r = task_recount(t, props, deliveries);
	if (r == NULL)
		return -1;
	task_send_copy(t, r);
	return 0;
}

/* The copy's properties, or NULL when memory ran out. */
static struct recount *
recount_new(struct dispatch *d, const amqp_basic_properties_t *props, long deliveries)
{
	struct recount *r = calloc(1, sizeof(*r));
	if (r == NULL)
		return NULL;
	init_amqp_pool(&r->pool, 1024);
	r->queue = strdup(d->conf->queue_name);
	if (r->queue == NULL || envelope_recount(props, deliveries, &r->pool, &r->props) < 0) {
		recount_free(r);
		return NULL;
	}
	return r;
}

static void
recount_free(struct recount *r)
{
	if (r == NULL)
		return;
	empty_amqp_pool(&r->pool);
	free(r->queue);
	free(r);
}

/* Publishes the copy r (now the task's) instead of running the task. */
static void
task_send_copy(struct task *t, struct recount *r)
{
	t->recount = r;    /* task_free frees it from here on */
	t->d->recounts++;
	t->state = TASK_PUBLISH;
	fifo_push(&t->d->publish, t);
	if (t->d->publish.head == t)
		dispatch_flush(t->d);
}

/* A running task leaves its slot: I/O admission or the CPU pool. */
static void
task_leave_slot(struct task *t)
{
	if (t->handler->kind == HANDLER_CPU)
		t->d->st.cpu_running--;
	else
		t->d->st.io_running--;
}

static void
task_call_done(struct handler_call *call)
{
	struct task *t = (struct task *)((char *)call - offsetof(struct task, call));
	struct dispatch *d = t->d;

	ev_timer_stop(d->loop, &t->deadline);
	task_leave_slot(t);
	task_finished(t);
	dispatch_admit(d);
}

static void
task_deadline_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct task *t = w->data;
	struct dispatch *d = t->d;

	if (t->call.cancel != NULL) {
		t->call.cancel(&t->call);
		t->call.cancel = NULL;
	}
	task_leave_slot(t);
	handler_fail(&t->call.out, RESULT_TIMEOUT, "timeout",
	    "the task did not finish within %.3f s", t->timeout);
	task_finished(t);
	dispatch_admit(d);
}

static void
task_run(struct task *t)
{
	struct dispatch *d = t->d;
	struct handler_call *call = &t->call;

	t->state = TASK_RUNNING;
	t->started = handler_clock();
	ev_set_cb(&t->deadline, task_deadline_cb);  /* after a retry's backoff */
	buf_reset(&call->out.body);
	call->out.status = RESULT_OK;
	call->out.error_code = NULL;
	call->out.content_type = NULL;
	call->loop = d->loop;
	call->in.payload = t->dlv->body;
	call->in.len = t->dlv->body ? t->dlv->len : 0;
	call->in.content_type = t->env.content_type;
	call->in.deadline = t->started + t->timeout;
	call->in.args = t->args;
	call->handler = t->handler;
	call->done = task_call_done;
	call->cancel = NULL;

	if (t->handler->kind == HANDLER_CPU && d->pool == NULL) {
		/* No pool (tools, benchmarks): the handler runs unchanged in
		 * the loop. */
		d->st.cpu_running++;
		if (t->handler->run != NULL)
			t->handler->run(&call->in, &call->out);
		else
			handler_fail(&call->out, RESULT_ERROR, "handler_failed",
			    "handler '%s' runs only in a cpu worker", t->handler->name);
		d->st.cpu_running--;
		task_finished(t);
		return;
	}
	if (t->handler->kind == HANDLER_CPU) {
		/* Same shape as an I/O handler: the pool calls done, and the
		 * deadline's cancel kills the worker.  done never comes from
		 * inside pool_submit (pool.h), so t is ours until we return. */
		if (pool_submit(d->pool, call, t->handler->name) < 0) {
			log_warn("task %s sent back to the queue: the cpu pool cannot take "
			    "it (backlog full or out of memory)", t->env.task_id);
			task_requeue(t);
			return;
		}
		d->st.cpu_running++;
		ev_timer_set(&t->deadline, t->timeout, 0.0);
		ev_timer_start(d->loop, &t->deadline);
		return;
	}
	d->st.io_running++;
	ev_timer_set(&t->deadline, t->timeout, 0.0);
	ev_timer_start(d->loop, &t->deadline);
	/* May finish at once (echo) and free t: touch nothing after. */
	t->handler->start(call);
}

static void
dispatch_admit(struct dispatch *d)
{
	/* A handler finishing inside start() calls back here; the outer loop
	 * carries on instead of recursing once per waiting task. */
	if (d->admitting)
		return;
	d->admitting = true;
	while (d->waiting.head != NULL &&
	    d->st.io_running < (size_t)d->conf->io_max_concurrency) {
		struct task *t = fifo_pop(&d->waiting);
		task_run(t);
	}
	d->admitting = false;
}

/* Into the I/O admission queue, or straight to the CPU pool. */
static void
task_start(struct task *t)
{
	if (t->handler->kind == HANDLER_IO) {
		t->state = TASK_WAITING;
		fifo_push(&t->d->waiting, t);
		dispatch_admit(t->d);
	} else {
		task_run(t);
	}
}

/*
 * A task delivered before may be the one that killed taskd.  It is the
 * counted copy of one whose original this process acks only once the copy
 * is confirmed, and the broker may hand the copy out before that confirm:
 * were the copy to crash taskd before the original's ack is on the wire,
 * the original would come back uncounted, for ever.  So such a task waits
 * until no recount is unsettled here, then one more loop iteration, in
 * which the pending acks are sent.
 */
static void
task_hold(struct task *t)
{
	struct dispatch *d = t->d;
	t->state = TASK_HELD;
	fifo_push(&d->held, t);
	if (d->recounts == 0)
		ev_timer_start(d->loop, &d->release);
}

static void
dispatch_release_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct dispatch *d = w->data;
	struct task *t;
	if (d->recounts > 0)
		return;    /* the last one's task_free starts us again */
	while ((t = fifo_pop(&d->held)) != NULL)
		task_start(t);
}

static void
task_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	task_start(w->data);
}

static void
task_finished(struct task *t)
{
	struct dispatch *d = t->d;
	enum result_status s = t->call.out.status;

	/* A crashed worker is the machine's fault as much as a timeout is;
	 * both get the task's retries. */
	bool crashed = s == RESULT_ERROR && t->call.out.error_code != NULL &&
	    strcmp(t->call.out.error_code, "worker_crashed") == 0;
	bool retry = (s == RESULT_TIMEOUT || crashed) && t->attempt <= t->retries;
	if (retry && d->draining) {
		/* Its retries are owed to it, and this node will not run it
		 * again: back to the queue, unanswered, for one that will
		 * (attempt 1 there; the delivery limit still counts it). */
		log_info("task %s sent back to the queue: %s during the stop, "
		    "with retries left", t->env.task_id, crashed ? "its worker was lost" :
		    "it timed out");
		task_requeue(t);
		return;
	}
	if (retry) {
		/* Backoff doubles from half a second: a task that timed out
		 * because the machine was busy gets room before running again. */
		double delay = fmin(30.0, 0.5 * pow(2.0, t->attempt - 1));
		t->attempt++;
		t->state = TASK_RETRY;
		ev_timer_init(&t->deadline, task_retry_cb, delay, 0.0);
		ev_timer_start(d->loop, &t->deadline);
		return;
	}
	task_answer(t);
}

static void
dispatch_on_delivery(void *ctx, struct broker_delivery *dlv)
{
	struct dispatch *d = ctx;
	struct task *t = d->spare;

	if (t != NULL) {
		d->spare = t->qnext;
		d->nspare--;
		memset(t, 0, sizeof(*t));
	} else {
		t = calloc(1, sizeof(*t));
	}
	if (t == NULL) {
		log_error("out of memory: task sent back to the queue");
		broker_reject(d->broker, dlv->gen, dlv->tag, true);
		broker_delivery_free(dlv);
		return;
	}
	t->d = d;
	t->dlv = dlv;
	t->attempt = 1;
	ev_timer_init(&t->deadline, task_deadline_cb, 0.0, 0.0);
	t->deadline.data = t;
	t->next = &d->all;
	t->prev = d->all.prev;
	d->all.prev->next = t;
	d->all.prev = t;
	d->st.in_flight++;
	if (dlv->consumer != 0) {
		if (dlv->consumer != d->used_by) {
			d->used_by = dlv->consumer;
			d->used = 0;
		}
		d->used++;
	}

	if (d->draining) {
		task_requeue(t);
		return;
	}

	uint64_t r[2] = { dispatch_rand(d), dispatch_rand(d) };
	struct envelope_limits lim = {
		.max_payload = d->conf->max_payload,
		.default_task = d->conf->default_task,
		.reply_queue = d->conf->reply_queue,
	};
	if (envelope_parse(dlv->props, dlv->len, &lim, (const unsigned char *)r,
	    &t->env) < 0) {
		log_error("out of memory: task sent back to the queue");
		task_requeue(t);
		return;
	}
	if (t->env.error != ENVELOPE_OK) {
		task_reject(t, envelope_error_code(t->env.error), t->env.message);
		return;
	}
	const struct registry_entry *e = registry_find(d->reg, t->env.task);
	t->row = stats_task_row(e != NULL ? e->name : NULL);
	if (dlv->oversized) {
		task_reject(t, "payload_too_large", "the payload could not be buffered");
		return;
	}
	if (d->cancels != NULL && idset_has(d->cancels, t->env.task_id,
	    strlen(t->env.task_id), ev_now(d->loop))) {
		log_info("task %s (%s) answered cancelled on arrival: a cancel request "
		    "named it", t->env.task_id, t->env.task ? t->env.task : "no name");
		handler_fail(&t->call.out, RESULT_CANCELLED, "cancelled",
		    "cancelled by request before it ran");
		t->started = handler_clock();
		task_answer(t);
		return;
	}
	t->before = envelope_deliveries(&t->env, dlv->redelivered);
	if (t->before > 0)
		stats_count(STATS_REDELIVERED);
	task_recount_failovers(t);
	if (task_vet(t, dlv->props))
		return;
	task_admit(t, dlv->props);
}

/* How many of the task's earlier deliveries count against the limit: not
 * those that ended in a failover (failovers.h), at most max_deliveries of
 * which are excused. */
static void
task_recount_failovers(struct task *t)
{
	struct dispatch *d = t->d;
	long excused = 0;
	if (d->failovers != NULL && t->before > 0 && t->env.id_given)
		excused = failovers_discount(d->failovers, t->env.task_id,
		    strlen(t->env.task_id), t->before, d->conf->max_deliveries,
		    ev_now(d->loop));
	t->counted = t->before - excused;
}

/*
 * A task delivered before comes back at once when the taskd that had it
 * loses its connection, often before that taskd, connected again, has
 * told the fleet (failovers.h).  One whose count would matter (it would
 * be rejected, or run with less company) waits up to DISPATCH_VET_WAIT for
 * that news before it is counted; a crash costs its redelivery that wait.
 * props are the delivery's: the copy it may need is made now.
 */
static bool
task_vet(struct task *t, const amqp_basic_properties_t *props)
{
	struct dispatch *d = t->d;
	/* Only a redelivery can be a failover's (a copy taskd published is
	 * not redelivered: its count was vetted when it was made). */
	if (d->failovers == NULL || d->conf->max_deliveries <= 0 || t->counted == 0 ||
	    !t->env.id_given || !t->dlv->redelivered)
		return false;
	if (t->dlv->len <= dispatch_max_message(d))
		t->kept = recount_new(d, props, t->before);
	t->vet_until = ev_now(d->loop) + DISPATCH_VET_WAIT;
	t->state = TASK_VETTING;
	fifo_push(&d->vetting, t);
	if (!ev_is_active(&d->vet)) {
		ev_timer_set(&d->vet, DISPATCH_VET_WAIT, 0.0);
		ev_timer_start(d->loop, &d->vet);
	}
	return true;
}

/* Vetting tasks whose wait is over go on, counted again, in line. */
static void
dispatch_vetted(struct dispatch *d)
{
	double now = ev_now(d->loop);
	struct task *t;
	ev_timer_stop(d->loop, &d->vet);
	while ((t = d->vetting.head) != NULL) {
		if (t->vet_until > now) {
			ev_timer_set(&d->vet, t->vet_until - now, 0.0);
			ev_timer_start(d->loop, &d->vet);
			break;
		}
		fifo_pop(&d->vetting);
		task_recount_failovers(t);
		task_admit(t, NULL);
	}
}

static void
dispatch_vet_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	dispatch_vetted(w->data);
}

void
dispatch_failovers_heard(struct dispatch *d)
{
	/* The tasks the news cleared go on now, in delivery order; the rest
	 * wait on (news of their own failover may still come). */
	struct fifo cleared = { 0 }, still = { 0 };
	struct task *t;
	while ((t = fifo_pop(&d->vetting)) != NULL) {
		long was = t->counted;
		task_recount_failovers(t);
		if (t->counted < was)
			t->vet_until = 0;
		fifo_push(t->counted < was ? &cleared : &still, t);
	}
	while ((t = fifo_pop(&still)) != NULL)
		fifo_push(&cleared, t);
	d->vetting = cleared;
	if (d->vetting.head != NULL && d->vetting.head->vet_until == 0)
		dispatch_vetted(d);
}

/* A parsed delivery, counted: rejected past the limit, stashed during a
 * quiet cancel, else routed.  props are the delivery's, or NULL when it
 * waited (its copy is t->kept). */
static void
task_admit(struct task *t, const amqp_basic_properties_t *props)
{
	struct dispatch *d = t->d;
	struct broker_delivery *dlv = t->dlv;
	long before = t->counted;
	int max = d->conf->max_deliveries;
	if (max > 0 && before >= max) {
		stats_count(STATS_DELIVERY_LIMIT);
		/* It ran (or was handed out) max times and never got settled:
		 * most likely it takes taskd down with it.  Rejected without
		 * requeue, so a dead-letter policy keeps it for a human. */
		char m[300];
		char excused[64] = "";
		if (t->before > before)
			snprintf(excused, sizeof(excused), ", %ld more ended in failovers",
			    t->before - before);
		snprintf(m, sizeof(m), "delivered %ld times, more than limits.max_deliveries "
		    "(%d): it never finished (does it crash taskd?) [x-taskd-deliveries %ld, "
		    "x-delivery-count %ld%s%s]", before + 1, max, t->env.taskd_count,
		    t->env.broker_count, dlv->redelivered ? ", redelivered" : "", excused);
		task_reject(t, "delivery_limit", m);
		return;
	}
	if (d->quieting) {
		/* Its properties go with this callback: keep the copy it may
		 * need, whichever way it is routed. */
		if (props != NULL && dlv->len <= dispatch_max_message(d))
			t->kept = recount_new(d, props, t->before);
		t->state = TASK_STASHED;
		fifo_push(&d->stash, t);
		dispatch_quiet_check(d);
		return;
	}
	task_route(t, props);
}

/* Where a parsed delivery within the limit goes: back to the queue, to
 * wait, to run alone, or to run.  props are the delivery's, or NULL for a
 * stashed one (its copy is t->kept). */
static void
task_route(struct task *t, const amqp_basic_properties_t *props)
{
	struct dispatch *d = t->d;
	struct broker_delivery *dlv = t->dlv;
	long before = t->counted;
	int max = d->conf->max_deliveries;
	const struct registry_entry *e = registry_find(d->reg, t->env.task);
	if (e == NULL) {
		struct buf m = { 0 };
		(void)buf_puts(&m, "no task named '");
		(void)buf_puts(&m, t->env.task);
		(void)buf_puts(&m, "' is configured");
		task_reject(t, "unknown_task", m.data ? m.data : "unknown task");
		buf_free(&m);
		return;
	}
	/* A classic queue does not count deliveries (a quorum queue sets
	 * x-delivery-count): this redelivery goes back as a counted copy.
	 * A body the broker would refuse cannot: it runs, uncounted. */
	if (max > 0 && dlv->redelivered && !(d->conf->queue_type == CONF_QUEUE_QUORUM &&
	    t->env.broker_count >= 0)) {
		if (dlv->len <= dispatch_max_message(d)) {
			if (task_send_back(t, props, t->before) < 0) {
				log_error("out of memory: task sent back to the queue");
				task_requeue(t);
			}
			return;
		}
		log_warn("task %s (%s) redelivered but too large to count its deliveries",
		    t->env.task_id, t->env.task);
	}
	if (d->iso != ISO_NONE) {
		/* Came after the cancel: it must not be in flight while the
		 * suspect runs, nor pay for it. */
		if (d->cancel_seen)
			d->stragglers++;
		task_hand_back(t, props, t->before);
		return;
	}
	t->handler = e->handler;
	t->args = handler_args_ref(e->args);
	t->retries = e->retries;
	t->timeout = e->timeout;
	/* A client may only shorten the operator's limit. */
	if (t->env.timeout > 0 && t->env.timeout < t->timeout)
		t->timeout = t->env.timeout;

	if (max > 0) {
		switch (suspect_arrival(&d->caution, before)) {
		case SUSPECT_ALONE:
			dispatch_isolate(d, t, props);
			return;
		case SUSPECT_WIDEN:
			dispatch_widen(d);
			break;
		case SUSPECT_RUN:
			break;
		}
		if (before > 0 && suspect_last(&d->caution, before) &&
		    suspect_window(&d->caution) == 1) {
			/* The window of one makes it run alone. */
			t->alone = true;
			log_warn("task %s (%s), delivered %ld time%s before (its last allowed "
			    "delivery), may be what crashed taskd: running it alone",
			    t->env.task_id, t->env.task, before, before == 1 ? "" : "s");
		}
	}
	if (before > 0) {
		task_hold(t);
		return;
	}
	task_start(t);
}

void
dispatch_set_cancels(struct dispatch *d, struct idset *c)
{
	d->cancels = c;
}

void
dispatch_set_failovers(struct dispatch *d, struct failovers *f, double ttl)
{
	/* Tasks vetting now wait out their time, then count in full. */
	d->failovers = f;
	d->failover_ttl = ttl;
}

/* Stops t (found by dispatch_cancel) and answers it.  Returns what it was. */
static enum dispatch_cancel
task_cancel(struct task *t)
{
	struct dispatch *d = t->d;
	enum dispatch_cancel how = DISPATCH_CANCEL_QUEUED;

	switch (t->state) {
	case TASK_RUNNING:
		/* As a deadline does it: for a CPU task the pool kills the
		 * worker and starts another (pool.h). */
		ev_timer_stop(d->loop, &t->deadline);
		if (t->call.cancel != NULL) {
			t->call.cancel(&t->call);
			t->call.cancel = NULL;
		}
		task_leave_slot(t);
		how = t->handler->kind == HANDLER_CPU ? DISPATCH_CANCEL_CPU :
		    DISPATCH_CANCEL_IO;
		break;
	case TASK_WAITING:
		fifo_remove(&d->waiting, t);
		t->started = handler_clock();
		break;
	case TASK_HELD:
		fifo_remove(&d->held, t);
		t->started = handler_clock();
		break;
	case TASK_VETTING:
		fifo_remove(&d->vetting, t);
		t->started = handler_clock();
		break;
	case TASK_RETRY:
		ev_timer_stop(d->loop, &t->deadline);
		break;
	default:
		return DISPATCH_CANCEL_NONE;
	}
	log_info("task %s (%s) cancelled by request%s", t->env.task_id,
	    t->env.task ? t->env.task : "no name",
	    how == DISPATCH_CANCEL_CPU ? ": its worker was killed" :
	    how == DISPATCH_CANCEL_IO ? " while running" : " before it ran");
	handler_fail(&t->call.out, RESULT_CANCELLED, "cancelled",
	    "cancelled by request");
	task_answer(t);
	return how;
}

enum dispatch_cancel
dispatch_cancel(struct dispatch *d, const char *id, size_t len)
{
	enum dispatch_cancel found = DISPATCH_CANCEL_NONE;
	bool again = true;

	/* Answering a task may start or finish others (admission), so the
	 * scan starts over after each one it stopped. */
	while (again) {
		again = false;
		for (struct task *t = d->all.next; t != &d->all; t = t->next) {
			if (t->env.task_id == NULL || strlen(t->env.task_id) != len ||
			    memcmp(t->env.task_id, id, len) != 0)
				continue;
			if (t->state == TASK_PUBLISH || t->state == TASK_CONFIRM) {
				if (found < DISPATCH_CANCEL_DONE)
					found = DISPATCH_CANCEL_DONE;
				continue;
			}
			enum dispatch_cancel how = task_cancel(t);
			if (how == DISPATCH_CANCEL_NONE)
				continue;
			if (how > found)
				found = how;
			again = true;
			break;
		}
	}
	if (found >= DISPATCH_CANCEL_QUEUED)
		dispatch_admit(d);
	return found;
}

void
dispatch_each_running(const struct dispatch *d,
    void (*fn)(void *ctx, const struct dispatch_running *r), void *ctx)
{
	double now = handler_clock();
	for (const struct task *t = d->all.next; t != &d->all; t = t->next) {
		if (t->state != TASK_RUNNING || t->handler == NULL)
			continue;
		struct dispatch_running r = {
			.id = t->env.task_id,
			.task = t->env.task,
			.cpu = t->handler->kind == HANDLER_CPU,
			.seconds = now - t->started,
		};
		fn(ctx, &r);
	}
}

/*
 * Suspects run alone (suspect.h; docs/decisions.md).  A task whose count is
 * above the current level may be what crashed taskd, and the tasks in
 * flight were taken under a wider window: the consumer is cancelled, what
 * arrives after that goes back to the queue with its count unchanged
 * (task_hand_back), what was taken before finishes, and only then does the
 * suspect run, alone.  Once it is answered, the consumer starts again with
 * the window of the new level.  Waiting for the others is bounded by
 * shutdown.grace: past it the suspect runs beside what still runs (they
 * were taken at a lower level, so a crash leaves them within the limit).
 */

/* Goes back to the tail of the queue as a copy that keeps its count:
 * basic.reject with requeue would raise it (x-delivery-count on a quorum
 * queue, redelivered on a classic one).  Before the cancel-ok the copy
 * waits: published at once (on the publish channel, which the broker
 * orders apart from the cancel on the consume channel), it can be handed
 * to this very consumer before the cancel is taken, and the cancel then
 * takes it back counted, as a crash would (seen: an innocent task,
 * copied twice, rejected as delivery_limit in the PoisonLoop test). */
static void
task_hand_back(struct task *t, const amqp_basic_properties_t *props, long before)
{
	struct dispatch *d = t->d;
	d->handed_back++;
	struct recount *r = t->dlv->len > dispatch_max_message(d) ? NULL :
	    task_recount(t, props, before);
	if (r == NULL) {
		/* A copy the broker would refuse, or no memory: it costs a
		 * delivery, as a stop would. */
		log_warn("task %s (%s) sent back to the queue uncopied: its delivery counts",
		    t->env.task_id, t->env.task ? t->env.task : "no name");
		task_requeue(t);
		return;
	}
	if (!d->cancel_seen) {
		t->kept = r;
		t->state = TASK_RETURNING;
		fifo_push(&d->returning, t);
		return;
	}
	task_send_copy(t, r);
}

/* No delivery can follow now: the copies that waited for that go out. */
static void
dispatch_send_returning(struct dispatch *d)
{
	struct task *t;
	while ((t = fifo_pop(&d->returning)) != NULL) {
		struct recount *r = t->kept;
		t->kept = NULL;
		task_send_copy(t, r);
	}
}

static void
dispatch_isolate(struct dispatch *d, struct task *t, const amqp_basic_properties_t *props)
{
	/* Kept for a stop before it runs: a requeue would count a delivery,
	 * on its last allowed one a rejection it did nothing for. */
	if (dispatch_max_message(d) >= t->dlv->len)
		d->suspect_copy = task_recount(t, props, t->before);
	d->iso = ISO_QUIETING;
	d->suspect = t;
	d->handed_back = 0;
	d->stragglers = 0;
	d->resume_due = false;
	t->state = TASK_SUSPECT;
	t->alone = true;
	log_warn("task %s (%s), delivered %ld time%s before%s, may be what crashed taskd: "
	    "running it alone once the %zu others in flight are done (taking no new tasks)",
	    t->env.task_id, t->env.task, t->counted, t->counted == 1 ? "" : "s",
	    suspect_last(&d->caution, t->counted) ? " (its last allowed delivery)" : "",
	    d->st.in_flight - 1);
	dispatch_quiet(d);
}

/* The quiet cancel of an isolation is out: what was stashed meanwhile goes
 * back (task_route), the rest finishes. */
static int
dispatch_iso_cancel(struct dispatch *d)
{
	int rc = broker_cancel_consumer(d->broker);
	if (rc < 0)
		return -1;   /* the connection died: `down` ends all this */
	d->iso = ISO_EMPTYING;
	d->cancel_seen = rc == 0;
	d->bound_over = false;
	ev_timer_set(&d->iso_bound, d->conf->shutdown_grace, 0.0);
	ev_timer_start(d->loop, &d->iso_bound);
	dispatch_iso_check(d);
	return 0;
}

/*
 * A quiet cancel.  A quorum queue (RabbitMQ 3.10) hands a delivery that is
 * on its way to a consumer when the cancel reaches it back to the queue
 * with its x-delivery-count raised, as if taskd had crashed with it: on a
 * task's last allowed delivery, a rejection it did nothing for.  Nothing
 * is on its way once the consumer's window is full, so the cancel waits
 * for that, stashing what arrives meanwhile (routed once the cancel is
 * out), for at most QUIET_BOUND: a queue with too few tasks to fill the
 * window has nothing to send either.  A queue that had tasks ready at the
 * last look (the tick asks every 2 s) fills the window, only maybe slowly
 * on a loaded machine: up to QUIET_BOUND_BUSY then.
 */
#define QUIET_BOUND 0.5
#define QUIET_BOUND_BUSY 5.0

static void
dispatch_quiet(struct dispatch *d)
{
	if (d->quieting)
		return;
	d->quieting = true;
	d->quiet_over = false;
	long ready = 0, consumers = 0;
	bool busy = broker_queue_depth(d->broker, &ready, &consumers) && ready > 0;
	ev_timer_set(&d->quiet_bound, busy ? QUIET_BOUND_BUSY : QUIET_BOUND, 0.0);
	ev_timer_start(d->loop, &d->quiet_bound);
	dispatch_quiet_check(d);
}

static void
dispatch_quiet_check(struct dispatch *d)
{
	if (!d->quieting)
		return;
	int window = 0;
	uint64_t c = broker_consumer(d->broker, &window);
	if (c != 0 && !d->quiet_over && !(c == d->used_by && d->used >= window))
		return;
	d->quieting = false;
	ev_timer_stop(d->loop, &d->quiet_bound);
	if (d->iso == ISO_QUIETING) {
		if (dispatch_iso_cancel(d) < 0)
			return;
	} else if (d->widen_due) {
		d->widen_due = false;
		if (broker_cancel_consumer(d->broker) < 0 ||
		    broker_consume(d->broker, suspect_window(&d->caution)) < 0)
			return;
	}
	/* In delivery order; a task among them may start another quiet
	 * cancel, and the rest waits for that one. */
	struct task *t;
	while (!d->quieting && (t = fifo_pop(&d->stash)) != NULL)
		task_route(t, NULL);
}

static void
dispatch_quiet_bound_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct dispatch *d = w->data;
	d->quiet_over = true;
	dispatch_quiet_check(d);
}

/* Whether the suspect may start: alone once nothing else is in flight and
 * nothing more can arrive; past the bound once no copy awaits its confirm
 * (the tasks left running were taken at a lower level, but an unconfirmed
 * copy's original may have any count). */
static bool
dispatch_iso_ready(const struct dispatch *d)
{
	if (d->cancel_seen && d->st.in_flight == 1)
		return true;
	return d->bound_over && d->recounts == 0;
}

/* The step waits one loop iteration, in which the last acks go out (a
 * crash before them would bring those tasks back counted). */
static void
dispatch_iso_check(struct dispatch *d)
{
	if (d->iso == ISO_EMPTYING && dispatch_iso_ready(d) && !ev_is_active(&d->iso_step))
		ev_timer_start(d->loop, &d->iso_step);
}

static void
dispatch_on_cancelled(void *ctx)
{
	struct dispatch *d = ctx;
	d->cancel_seen = true;
	dispatch_send_returning(d);
	if (d->parked != NULL) {
		struct task *t = d->parked;
		struct recount *copy = d->parked_copy;
		d->parked = NULL;
		d->parked_copy = NULL;
		task_send_copy(t, copy);
	}
	dispatch_iso_check(d);
}

static void
dispatch_iso_bound_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct dispatch *d = w->data;
	if (d->iso != ISO_EMPTYING || d->suspect == NULL)
		return;
	log_warn("task %s (%s) runs beside the %zu tasks still in flight after %.0f s "
	    "(shutdown.grace), once no copy awaits its confirm", d->suspect->env.task_id,
	    d->suspect->env.task, d->st.in_flight - 1, d->conf->shutdown_grace);
	d->bound_over = true;
	dispatch_iso_check(d);
}

static void
dispatch_iso_step_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct dispatch *d = w->data;
	switch (d->iso) {
	case ISO_EMPTYING:
		if (d->suspect == NULL || !dispatch_iso_ready(d))
			return;    /* a late arrival: its task_free checks again */
		ev_timer_stop(d->loop, &d->iso_bound);
		recount_free(d->suspect_copy);
		d->suspect_copy = NULL;
		d->iso = ISO_ALONE;
		log_info("task %s (%s) runs alone now", d->suspect->env.task_id,
		    d->suspect->env.task);
		task_start(d->suspect);   /* may finish at once */
		break;
	case ISO_NONE:
		/* The suspect's ack is out, and those of the tasks handed back
		 * while it ran (a quorum queue may still deliver after the
		 * cancel-ok): a crash now would count them.  Take tasks again. */
		if (!d->resume_due || d->st.in_flight > 0)
			return;    /* the last task_free starts us again */
		d->resume_due = false;
		if (!d->draining)
			(void)broker_consume(d->broker, suspect_window(&d->caution));
		break;
	case ISO_QUIETING:
	case ISO_ALONE:
		break;
	}
}

/* The suspect is done with (answered, or dropped with its connection). */
static void
dispatch_iso_over(struct dispatch *d)
{
	recount_free(d->suspect_copy);
	d->suspect_copy = NULL;
	ev_timer_stop(d->loop, &d->iso_bound);
	ev_timer_stop(d->loop, &d->iso_step);
	d->iso = ISO_NONE;
	d->resume_due = true;
	log_info("taking tasks again, at most %d at a time (%zu handed back meanwhile, "
	    "%zu of them after the cancel-ok, their counts unchanged)",
	    suspect_window(&d->caution), d->handed_back, d->stragglers);
	if (d->st.in_flight == 0)
		ev_timer_start(d->loop, &d->iso_step);
}

/* Ends an isolation without consuming again: a stop, a switch, a lost
 * connection take it from here. */
static void
dispatch_iso_abort(struct dispatch *d)
{
	recount_free(d->suspect_copy);
	d->suspect_copy = NULL;
	ev_timer_stop(d->loop, &d->iso_bound);
	ev_timer_stop(d->loop, &d->iso_step);
	/* Stashed tasks stay stashed for the caller to drop or requeue. */
	ev_timer_stop(d->loop, &d->quiet_bound);
	d->quieting = false;
	d->widen_due = false;
	d->iso = ISO_NONE;
	d->suspect = NULL;
	d->resume_due = false;
}

/* The level went down a step: a new consumer with the wider window. */
static void
dispatch_widen(struct dispatch *d)
{
	log_info("no task delivered more than %ld time%s before among the last ones: "
	    "taking up to %d at a time", d->caution.level, d->caution.level == 1 ? "" : "s",
	    suspect_window(&d->caution));
	d->widen_due = true;
	dispatch_quiet(d);
}

static void
task_nack_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	task_requeue(w->data);
}

static void
dispatch_on_confirm(void *ctx, void *token, enum broker_confirm how)
{
	(void)ctx;
	struct task *t = token;
	switch (how) {
	case BROKER_ACKED:
		stats_confirmed(handler_clock() - t->published);
		task_settle(t);
		break;
	case BROKER_NACKED:
		/* Typically a full reply queue (overflow reject-publish): an
		 * immediate requeue would spin the task through the broker at
		 * full speed, so it waits a second first. */
		ev_timer_init(&t->deadline, task_nack_cb, 1.0, 0.0);
		t->deadline.data = t;
		ev_timer_start(t->d->loop, &t->deadline);
		break;
	case BROKER_LOST:
		task_free(t);
		break;
	}
}

static void
dispatch_on_up(void *ctx)
{
	struct dispatch *d = ctx;
	/* A new connection consumes with the full window. */
	suspect_init(&d->caution, d->conf->max_deliveries, broker_prefetch(d->broker));
}

/* Stops a task wherever it is, without answering it. */
static void
task_drop(struct task *t)
{
	struct dispatch *d = t->d;
	switch (t->state) {
	case TASK_WAITING:
		fifo_remove(&d->waiting, t);
		break;
	case TASK_RUNNING:
		/* A CPU task without a cancel ran inline and is already over. */
		if (t->handler != NULL && (t->handler->kind == HANDLER_IO ||
		    t->call.cancel != NULL)) {
			if (t->call.cancel != NULL) {
				t->call.cancel(&t->call);
				t->call.cancel = NULL;
			}
			ev_timer_stop(d->loop, &t->deadline);
			task_leave_slot(t);
		}
		break;
	case TASK_PUBLISH:
		fifo_remove(&d->publish, t);
		break;
	case TASK_HELD:
		fifo_remove(&d->held, t);
		break;
	case TASK_STASHED:
		fifo_remove(&d->stash, t);
		break;
	case TASK_VETTING:
		fifo_remove(&d->vetting, t);
		break;
	case TASK_RETURNING:
		fifo_remove(&d->returning, t);
		break;
	case TASK_SUSPECT:
	case TASK_RETRY:
	case TASK_CONFIRM:
		break;
	}
}

/* t's delivery ends with the connection, and this taskd lives on: not a
 * crash, as the fleet is told once we are connected again (failovers.h).
 * A task settled but for its ack is in the same case: the ack is lost. */
static void
task_note_failover(struct task *t, double now)
{
	struct dispatch *d = t->d;
	if (d->failovers == NULL || !t->env.id_given || t->env.task_id == NULL)
		return;
	if (failovers_lost(d->failovers, t->env.task_id, strlen(t->env.task_id),
	    t->before, now + d->failover_ttl) < 0)
		log_warn("out of memory: the failover of task %s will count as a delivery",
		    t->env.task_id);
}

static void
dispatch_on_down(void *ctx, uint64_t gen)
{
	struct dispatch *d = ctx;
	size_t n = 0;
	double now = ev_now(d->loop);

	/* The suspect, if any, comes back redelivered, and the next
	 * connection starts with the full window. */
	dispatch_iso_abort(d);
	/* Tags of that channel are dead: these tasks come back by redelivery.
	 * Results awaiting a confirm are dropped by the LOST confirms that
	 * follow. */
	struct task *t = d->all.next;
	while (t != &d->all) {
		struct task *next = t->next;
		if (t->dlv->gen <= gen) {
			task_note_failover(t, now);
			if (t->state != TASK_CONFIRM) {
				task_drop(t);
				task_free(t);
				n++;
			}
		}
		t = next;
	}
	if (n > 0)
		log_info("dropped %zu tasks of the lost connection; the broker redelivers them", n);
	if (d->vetting.head == NULL)
		ev_timer_stop(d->loop, &d->vet);
	dispatch_admit(d);
}

static void
dispatch_on_writable(void *ctx)
{
	dispatch_flush(ctx);
}

const struct broker_ops dispatch_broker_ops = {
	.delivery = dispatch_on_delivery,
	.confirm = dispatch_on_confirm,
	.up = dispatch_on_up,
	.down = dispatch_on_down,
	.writable = dispatch_on_writable,
	.cancelled = dispatch_on_cancelled,
};

struct dispatch *
dispatch_new(struct ev_loop *loop, const struct conf *conf,
    const struct registry *reg, const char *node_id)
{
	struct dispatch *d = calloc(1, sizeof(*d));
	if (d == NULL)
		return NULL;
	d->node_id = strdup(node_id);
	if (d->node_id == NULL) {
		free(d);
		return NULL;
	}
	d->loop = loop;
	d->conf = conf;
	d->reg = reg;
	d->all.next = d->all.prev = &d->all;
	ev_timer_init(&d->release, dispatch_release_cb, 0.0, 0.0);
	d->release.data = d;
	suspect_init(&d->caution, conf->max_deliveries, 1);
	ev_timer_init(&d->iso_bound, dispatch_iso_bound_cb, 0.0, 0.0);
	ev_timer_init(&d->iso_step, dispatch_iso_step_cb, 0.0, 0.0);
	ev_timer_init(&d->quiet_bound, dispatch_quiet_bound_cb, 0.0, 0.0);
	ev_timer_init(&d->vet, dispatch_vet_cb, 0.0, 0.0);
	d->iso_bound.data = d->iso_step.data = d->quiet_bound.data = d->vet.data = d;
	if (getrandom(d->rng, sizeof(d->rng), 0) != sizeof(d->rng)) {
		struct timespec ts;
		clock_gettime(CLOCK_REALTIME, &ts);
		d->rng[0] = (uint64_t)ts.tv_nsec ^ ((uint64_t)ts.tv_sec << 32);
		d->rng[1] = (uint64_t)(uintptr_t)d ^ 0x9e3779b97f4a7c15ULL;
	}
	if (d->rng[0] == 0 && d->rng[1] == 0)
		d->rng[1] = 1;
	return d;
}

void
dispatch_attach(struct dispatch *d, struct broker *b)
{
	d->broker = b;
}

void
dispatch_set_pool(struct dispatch *d, struct pool *pool)
{
	d->pool = pool;
}

void
dispatch_reconfigure(struct dispatch *d, const struct conf *conf,
    const struct registry *reg)
{
	d->conf = conf;
	d->reg = reg;
	suspect_configure(&d->caution, conf->max_deliveries,
	    d->broker != NULL ? broker_prefetch(d->broker) : 1);
	dispatch_admit(d);
}

void
dispatch_drain(struct dispatch *d, void (*idle)(void *ctx), void *ctx)
{
	d->draining = true;
	d->idle = idle;
	d->idle_ctx = ctx;
	/* A suspect still waiting goes back like the others; one running
	 * alone finishes like any running task. */
	struct task *t = d->suspect;
	struct recount *copy = d->suspect_copy;
	d->suspect_copy = NULL;
	dispatch_iso_abort(d);
	if (t != NULL && t->state == TASK_SUSPECT) {
		if (copy == NULL) {
			task_requeue(t);
		} else if (broker_consumer(d->broker, NULL) == 0 && !broker_cancelling(d->broker)) {
			task_send_copy(t, copy);
		} else {
			d->parked = t;
			d->parked_copy = copy;
		}
	} else {
		recount_free(copy);
	}
	/* Not started yet: another node can run them now. */
	while ((t = fifo_pop(&d->waiting)) != NULL)
		task_requeue(t);
	while ((t = fifo_pop(&d->held)) != NULL)
		task_requeue(t);
	while ((t = fifo_pop(&d->stash)) != NULL)
		task_requeue(t);
	while ((t = fifo_pop(&d->vetting)) != NULL)
		task_requeue(t);
	ev_timer_stop(d->loop, &d->vet);
	t = d->all.next;
	while (t != &d->all) {
		struct task *next = t->next;
		if (t->state == TASK_RETRY)
			task_requeue(t);
		t = next;
	}
	if (d->st.in_flight == 0 && d->idle != NULL) {
		d->idle = NULL;
		idle(ctx);
	}
}

void
dispatch_abandon(struct dispatch *d)
{
	struct task *t = d->all.next;
	while (t != &d->all) {
		struct task *next = t->next;
		if (t->state != TASK_CONFIRM) {
			task_drop(t);
			task_requeue(t);
		}
		t = next;
	}
}

void
dispatch_resume(struct dispatch *d)
{
	d->draining = false;
	d->idle = NULL;
	d->idle_ctx = NULL;
	dispatch_admit(d);
}

void
dispatch_stats(const struct dispatch *d, struct dispatch_stats *out)
{
	*out = d->st;
	out->io_waiting = d->waiting.n;
}

void
dispatch_free(struct dispatch *d)
{
	if (d == NULL)
		return;
	dispatch_iso_abort(d);
	struct task *t = d->all.next;
	d->idle = NULL;
	while (t != &d->all) {
		struct task *next = t->next;
		task_drop(t);
		task_free(t);
		t = next;
	}
	ev_timer_stop(d->loop, &d->release);
	ev_timer_stop(d->loop, &d->iso_bound);
	ev_timer_stop(d->loop, &d->iso_step);
	ev_timer_stop(d->loop, &d->quiet_bound);
	ev_timer_stop(d->loop, &d->vet);
	while (d->spare != NULL) {
		struct task *next = d->spare->qnext;
		free(d->spare);
		d->spare = next;
	}
	free(d->node_id);
	free(d);
}
