/*
 * connector: brings up one broker connection, ready to use, without ever
 * blocking the event loop.
 *
 * rabbitmq-c 0.11 only offers blocking setup (name lookup, TCP connect, TLS
 * handshake, login and every RPC), so the whole setup runs on a short-lived
 * thread of its own, each step bounded by connect_timeout.  When it is done
 * the thread hands the connection to the loop through an ev_async and ends;
 * from then on only the loop thread touches it.  Nothing else is shared.
 *
 * A ready connection has:
 *   channel 1: basic.qos(prefetch) and a manual-ack consumer on the queue
 *   channel 2: confirm.select, for publishing results
 * and the task queue (and the reply queue, when one is configured) exists:
 * used as it is, or declared when missing (design §5).
 */
#ifndef TASKD_CONNECTOR_H
#define TASKD_CONNECTOR_H

#include <stdbool.h>
#include <amqp.h>
#include <ev.h>

#include "uri.h"

#define CONNECTOR_CH_CONSUME 1
#define CONNECTOR_CH_PUBLISH 2

struct connector_params {
	struct uri uri;
	char *cacert;          /* NULL = system CA paths */
	int heartbeat;
	int prefetch;
	double timeout;        /* per step */
	char *queue;
	bool durable;
	bool quorum;
	char *reply_queue;     /* NULL or "" = none */
	char *connection_name;
};

struct connector_result {
	amqp_connection_state_t conn;  /* NULL on failure */
	char *error;                   /* why it failed (malloc'd), else NULL */
	char *warning;                 /* e.g. "queue is not durable", or NULL */
	bool declared;                 /* taskd created the task queue */
	bool reply_durable;            /* the reply queue is durable */
	int heartbeat;                 /* negotiated */
	char *consumer_tag;            /* of the consumer on channel 1 */
};

struct connector;

/* Called on the loop thread once the attempt is over; the callee owns
 * res->conn and the strings (free them with connector_result_clear). */
typedef void connector_done_fn(void *ctx, struct connector_result *res);

/* Starts an attempt.  params is copied.  Returns NULL when no thread could
 * be started (then nothing was started). */
struct connector *connector_start(struct ev_loop *loop,
    const struct connector_params *params, connector_done_fn *done, void *ctx);
/* Aborts an attempt still under way (its socket is shut down so any blocked
 * step fails at once), waits for the thread and frees everything; done is
 * not called.  After done has been called, it only frees. */
void connector_free(struct connector *c);

void connector_result_clear(struct connector_result *res);
void connector_params_clear(struct connector_params *p);
int connector_params_copy(struct connector_params *dst, const struct connector_params *src);

/* A rabbitmq-c RPC reply as one line of text (malloc'd). */
char *connector_reply_text(amqp_rpc_reply_t r, const char *what);

#endif
