/*
 * broker: the one AMQP connection, owned by the event loop.
 *
 * States (one at a time):
 *   BROKER_IDLE        not started, or stopped
 *   BROKER_CONNECTING  the connector thread is setting up a connection
 *   BROKER_UP          consuming on channel 1, publishing on channel 2
 *   BROKER_WAITING     the last attempt failed or the connection died; a
 *                      backoff timer will start the next attempt
 *
 * A cluster (params.nnodes > 1): one node at a time, in an order of this
 * process's own; a failed attempt or a lost connection moves on to the
 * next node at once, and the reconnect backoff applies once every node
 * has failed in a row (nodes.h).  Log lines name the node.
 *
 * The loop never blocks on the broker: setup runs on the connector thread;
 * once UP, frames are drained with zero timeouts from an ev_io, an ev_idle
 * (bytes already buffered never wake the fd again) and a timer at half the
 * heartbeat (rabbitmq-c only sends and checks heartbeats inside its calls).
 * Publishing is refused (BROKER_AGAIN) instead of blocking when the
 * connection is down or blocked by the broker, the socket is not writable,
 * or max_unconfirmed results await their confirm; `writable` is called when
 * it may be tried again.  Whether the socket can take a write is asked of
 * the kernel once per budget of bytes, not per write (broker_room in
 * broker.c has the reasoning).
 *
 * Deliveries and acks carry the connection's generation: delivery tags are
 * per channel, so an ack from an older generation is dropped, never sent
 * (it could ack a different message).  When a connection dies, every result
 * awaiting a confirm is reported BROKER_LOST and its task must not be acked;
 * the broker redelivers it (at-least-once).
 *
 * Settlements are coalesced.  broker_ack and broker_reject only mark the
 * delivery settled; once per loop iteration (an ev_prepare, before the loop
 * waits) the settled tags go out in delivery order: the longest prefix of
 * delivered tags that are all settled as one frame with multiple=true per
 * run of one kind (basic.ack, or basic.nack with or without requeue),
 * naming the run's last tag, plus one plain ack or reject for each settled
 * tag after the first unsettled one (a multiple frame there would settle a
 * running task).  Every frame is written within the same budget as a
 * publish; when the socket has no room (a broker under a resource alarm
 * stops reading) the rest waits for it, and the loop goes on.  Pending
 * settlements are flushed before broker_stop closes the connection and
 * before a reconfigure closes it (each with a short bound); when the
 * connection dies they are dropped with its tags (the broker redelivers
 * those tasks) and never sent on a later connection.
 */
#ifndef TASKD_BROKER_H
#define TASKD_BROKER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <amqp.h>
#include <ev.h>

#include "connector.h"

enum broker_state { BROKER_IDLE, BROKER_CONNECTING, BROKER_UP, BROKER_WAITING };

enum broker_confirm {
	BROKER_ACKED,   /* the broker has the result */
	BROKER_NACKED,  /* the broker refused it: requeue the task */
	BROKER_LOST,    /* the connection died first: drop the task */
};

#define BROKER_AGAIN 1

/* A task message as it arrived, copied out of the library's buffers.  One
 * allocation holds it and its body, and it carries no properties beyond the
 * delivery callback: ten thousand tasks in flight each keep one. */
struct broker_delivery {
	uint64_t gen;
	uint64_t tag;
	bool redelivered;
	uint64_t consumer;              /* broker_consumer() it came to, else 0 */
	bool oversized;                 /* body dropped: over max_payload */
	/* Deep copy in the broker's own pool, valid only during the delivery
	 * callback (read what you need, e.g. envelope_parse, there). */
	const amqp_basic_properties_t *props;
	unsigned char *body;            /* NULL when oversized or empty */
	size_t len;                     /* the declared body size */
	size_t received;                /* bytes of body seen so far */
};

void broker_delivery_free(struct broker_delivery *d);

struct broker_ops {
	/* A complete task message; the callee owns d (d->props: see above). */
	void (*delivery)(void *ctx, struct broker_delivery *d);
	/* The fate of a result published with broker_publish(token). */
	void (*confirm)(void *ctx, void *token, enum broker_confirm how);
	/* Consuming (again). */
	void (*up)(void *ctx);
	/* The connection of generation gen is gone; called before the LOST
	 * confirms of its results.  Never from inside a broker_* call the
	 * owner makes (a publish that finds the connection dead returns -1
	 * and the loop tells the loss right after), except broker_stop,
	 * which tells a loss still due before it returns.  Meanwhile
	 * broker_publish answers BROKER_AGAIN and settlements of gen are
	 * dropped. */
	void (*down)(void *ctx, uint64_t gen);
	/* Publishing may succeed again. */
	void (*writable)(void *ctx);
	/* Every basic.cancel sent by broker_cancel_consumer was answered and
	 * no consumer was started since: no delivery follows until
	 * broker_consume.  May be NULL. */
	void (*cancelled)(void *ctx);
};

struct broker;

/* params is copied.  max_payload bounds what is buffered of one message. */
struct broker *broker_new(struct ev_loop *loop, const struct connector_params *params,
    size_t max_payload, int max_unconfirmed, double reconnect_max,
    const struct broker_ops *ops, void *ctx);
/* Starts connecting (IDLE -> CONNECTING). */
void broker_start(struct broker *b);
/* Makes the connection again at once with the settings in force: an
 * attempt under way or scheduled starts over, and a connection that is up
 * is closed cleanly first (once results already published are confirmed,
 * for at most a moment).  Nothing before broker_start.  Also how taskd
 * gets a fresh consumer after cancelling its own. */
void broker_reconnect(struct broker *b);
/* Whether params differ from the connection settings in force, i.e. whether
 * broker_reconfigure with them would reconnect. */
bool broker_params_differ(const struct broker *b, const struct connector_params *params);
/* Replaces the settings.  When connection settings differ, the connection
 * is closed and made again with the new ones (returns 1); else 0.  A
 * caller that wants tasks in flight to finish first drains them before. */
int broker_reconfigure(struct broker *b, const struct connector_params *params,
    size_t max_payload, int max_unconfirmed, double reconnect_max);

enum broker_state broker_state(const struct broker *b);
/* The node connected to (UP), or the one tried next. */
const struct uri *broker_node(const struct broker *b);
uint64_t broker_generation(const struct broker *b);
bool broker_reply_durable(const struct broker *b);

/* Publishes a result on the default exchange with the mandatory flag.
 * Returns 0 (confirm(token) will follow), BROKER_AGAIN (nothing sent; try
 * after `writable`), or -1 when the connection just died (token unused). */
int broker_publish(struct broker *b, const char *routing_key,
    const amqp_basic_properties_t *props, const void *body, size_t len,
    void *token);
/* Acks, or rejects with/without requeue, a delivery (coalesced and sent
 * within the write budget: see above).  A delivery of an older generation,
 * or one already settled, is silently dropped. */
void broker_ack(struct broker *b, uint64_t gen, uint64_t tag);
void broker_reject(struct broker *b, uint64_t gen, uint64_t tag, bool requeue);
/* Stops the consumer (basic.cancel) so no new task arrives, for a graceful
 * stop or to run a task alone; deliveries already on the wire still come,
 * and `cancelled` reports when none can follow.  Returns 1 when that
 * report is to come, 0 when there is no consumer to stop and no report
 * due (the connection is not up, or the report was made), -1 when the
 * connection just died. */
int broker_cancel_consumer(struct broker *b);
/* Starts a consumer again on the same channel (after
 * broker_cancel_consumer), taking at most prefetch unacked tasks: basic.qos
 * then basic.consume, neither waiting for its answer.  Tasks still unacked
 * from the cancelled consumer stay as they are (a cancel requeues nothing).
 * Does nothing unless the connection is up and no consumer is registered.
 * Returns 0, or -1 when the connection just died. */
int broker_consume(struct broker *b, int prefetch);
/* The consumer registered now (an id never reused, also across
 * connections) and its window (prefetch) in *window; 0 while none is.
 * A cancel sent while fewer than window of its deliveries are unsettled
 * may meet deliveries on their way, which a quorum queue hands back with
 * their x-delivery-count raised (docs/decisions.md). */
uint64_t broker_consumer(const struct broker *b, int *window);
/* Asks the broker how many tasks wait in the task queue (a passive
 * queue.declare, answered in the background); one question at a time.
 * Returns 0, or -1 when the connection just died. */
int broker_probe_queue(struct broker *b);
/* The last answer on this connection: tasks ready in the queue and its
 * consumers (every node's).  False while none has come. */
bool broker_queue_depth(const struct broker *b, long *ready, long *consumers);
/* Whether a cancel-ok is still due, so that deliveries may still come
 * (`cancelled` is called when none can). */
bool broker_cancelling(const struct broker *b);
/* The prefetch of the connection settings in force (what a new connection
 * consumes with). */
int broker_prefetch(const struct broker *b);

/* The broker's largest message body as it told us by refusing a larger
 * result (RabbitMQ closes the publishing channel with its max_message_size
 * in the reply text), or 0 while it has not. */
size_t broker_max_message_size(const struct broker *b);

/* Counters for status lines. */
uint64_t broker_returned(const struct broker *b);
size_t broker_unconfirmed(const struct broker *b);

/*
 * Side channels: channels from BROKER_CH_SIDE up belong to one other
 * module (fleet control, control.h), which opens them on every new
 * connection and gets their frames; the broker only carries them.  A
 * channel.close on one of them is the side's to answer, not a reason to
 * reconnect.  The side's writes go through the same send budget as
 * results, so they never block the loop.
 */
#define BROKER_CH_SIDE 3

struct broker_side_ops {
	/* The connection is up (again): channels >= BROKER_CH_SIDE are
	 * closed and free to open. */
	void (*up)(void *ctx);
	/* A frame on a side channel.  The frame's memory is the library's
	 * and valid during the call only. */
	void (*frame)(void *ctx, const amqp_frame_t *f);
};
/* Sets the side (ops is copied; NULL ends it).  At most one. */
void broker_set_side(struct broker *b, const struct broker_side_ops *ops, void *ctx);
/* Sends a method on a side channel without waiting for its answer (small
 * frames: charged to the send budget, never refused for room).  Returns 0,
 * BROKER_AGAIN when the connection is not up, -1 when it just died. */
int broker_side_method(struct broker *b, amqp_channel_t ch, amqp_method_number_t id,
    void *decoded);
/* Publishes on a side channel (no confirm, not mandatory).  Returns 0,
 * BROKER_AGAIN (not up, blocked, or no room in the socket: nothing was
 * sent), or -1 when the connection just died. */
int broker_side_publish(struct broker *b, amqp_channel_t ch, const char *exchange,
    const char *routing_key, const amqp_basic_properties_t *props,
    const void *body, size_t len);
/* "host:port" of the broker node the connection is to, or NULL unless up. */
const char *broker_peer(const struct broker *b);

/* Closes the connection (politely when it is up, bounded by a short
 * timeout), stops every watcher; the broker goes IDLE. */
void broker_stop(struct broker *b);
void broker_free(struct broker *b);

#endif
