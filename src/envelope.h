/*
 * envelope: what a task message asks for, read from its AMQP properties
 * (design §4).  Pure: no I/O, no globals; every input byte is untrusted.
 *
 *   task name    type property, else header "task", else default_task
 *   task id      message_id, else a fresh UUID (from the caller's bytes)
 *   correlation  correlation_id, else the task id
 *   reply to     reply_to, else the configured reply queue ("" = none)
 *   timeout      header "timeout" (seconds, a number; may only shorten)
 *   content type content_type
 *
 * Parsing never fails as a whole: a message that cannot run still has a
 * task id, a correlation and a reply address, so it can be answered
 * "rejected".  `error` says why it cannot run.
 */
#ifndef TASKD_ENVELOPE_H
#define TASKD_ENVELOPE_H

#include <stdbool.h>
#include <stddef.h>
#include <amqp.h>

enum envelope_error {
	ENVELOPE_OK = 0,
	ENVELOPE_NO_TASK,       /* no name anywhere and no default_task */
	ENVELOPE_BAD_NAME,      /* name is not printable ASCII or too long */
	ENVELOPE_BAD_HEADER,    /* e.g. timeout not a positive finite number */
	ENVELOPE_TOO_LARGE,     /* body over max_payload */
};

struct envelope_limits {
	size_t max_payload;
	const char *default_task;  /* "" = none */
	const char *reply_queue;   /* "" = none */
};

struct envelope {
	enum envelope_error error;
	char *message;        /* human text for error != OK, else NULL */
	char *task;           /* NUL-free name as given (may be NULL on NO_TASK) */
	char *task_id;
	bool id_given;        /* task_id is the message_id, not one made here */
	/* Copied byte for byte (it is the client's key, and AMQP allows any
	 * bytes in it, NUL included): always use it with correlation_len. */
	char *correlation_id;
	size_t correlation_len;
	char *reply_to;       /* NULL = no result is sent */
	bool reply_to_default;/* reply_to is the configured reply queue */
	bool persistent;      /* the task was published persistent */
	char *content_type;   /* NULL when absent */
	double timeout;       /* seconds, 0 = not given */
	/* Earlier deliveries, as the message says (see envelope_deliveries):
	 * the broker's x-delivery-count (quorum queues), -1 when absent; and
	 * taskd's own x-taskd-deliveries (classic queues), 0 when absent or
	 * not a non-negative integer. */
	long broker_count;
	long taskd_count;
	/* The one block that holds task, task_id, correlation_id, reply_to
	 * and content_type (so a task costs one allocation, not five); freed
	 * by envelope_free, never by itself. */
	char *strings;
};

/* Reads props (may be NULL: a propertyless message) of a message whose body
 * is body_len bytes.  uuid16 is 16 random bytes used for the task id when
 * the message has none.  Returns 0, or -1 when memory ran out (then env is
 * freed).  env must be zeroed by the caller and freed with envelope_free. */
int envelope_parse(const amqp_basic_properties_t *props, size_t body_len,
    const struct envelope_limits *lim, const unsigned char uuid16[16],
    struct envelope *env);
void envelope_free(struct envelope *env);

/* Whether the result goes out persistent.  Design §4: persistent when the
 * reply queue is durable.  taskd knows that of its own reply.queue
 * (reply_durable); a client's queue it cannot ask about without side
 * effects, so there a result is as durable as the task that asked for it:
 * persistent when the task was, except to direct reply-to and server-named
 * queues, which never outlive their connection.  RabbitMQ writes a
 * persistent message to disk only in a durable queue, so the flag costs
 * nothing where the queue is transient. */
bool envelope_result_persistent(const struct envelope *env, bool reply_durable);

/*
 * Delivery counting (limits.max_deliveries; docs/decisions.md).
 *
 * A quorum queue counts for us: the broker sets x-delivery-count, the
 * number of earlier deliveries.  A classic queue only says `redelivered`
 * (at least one earlier delivery), which a crash of taskd cannot add to.
 * So taskd sends a redelivered task back to the tail of its queue as a
 * copy whose x-taskd-deliveries header holds its deliveries so far, and
 * acks the original once the copy is confirmed; the count travels with
 * the message, across crashes, restarts and nodes.
 */
#define ENVELOPE_TASKD_COUNT "x-taskd-deliveries"

/* Earlier deliveries of this task: taskd's own count (of the copies before
 * this one) plus this copy's, which is the broker's count, or the one
 * `redelivered` proves.  Never negative. */
long envelope_deliveries(const struct envelope *env, bool redelivered);

/* Fills *out with a deep copy (in pool, which the caller owns, inits and
 * empties) of props for the copy of a redelivered task that goes back to
 * the queue: every property as it was, x-delivery-count and
 * x-taskd-deliveries removed, and x-taskd-deliveries = deliveries added.
 * props may be NULL.  Returns 0, or -1 when memory ran out. */
int envelope_recount(const amqp_basic_properties_t *props, long deliveries,
    amqp_pool_t *pool, amqp_basic_properties_t *out);

/* The error code of design §4 for a parse error ("bad_header", ...). */
const char *envelope_error_code(enum envelope_error e);

#endif
