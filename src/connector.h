/*
 * connector: brings up one broker connection, ready to use, without ever
 * blocking the event loop.
 *
 * rabbitmq-c 0.11 only offers blocking setup (name lookup, TCP connect, TLS
 * handshake, login and every RPC), so the whole setup runs on a short-lived
 * thread of its own, each step bounded by connect_timeout.  When it is done
 * the thread hands the connection to the loop through an ev_async and ends;
 * from then on only the loop thread touches it.
 *
 * Ownership.  The struct connector is shared by the loop and the thread
 * and freed by whichever lets go last.  Until the hand-over the thread
 * owns the connection (and the library owns its socket); the connector
 * owns a duplicate of that socket, used only to shut it down, which the
 * thread closes when the attempt ends.  After the hand-over the done
 * callback owns the connection.  An attempt the loop abandons
 * (connector_free before done) is never handed over: the thread closes
 * its connection itself when its current step ends.
 *
 * Abandoning is immediate.  Once the TCP connection is up, shutting the
 * duplicate down makes the blocked step (the TLS handshake, login, an
 * RPC) fail at once, so the thread and its socket go within milliseconds;
 * the handshake's socket is learnt from OpenSSL's info callback, since
 * rabbitmq-c's amqp_socket_open_noblock gives no fd out until the
 * handshake is over.  Before that (name lookup, TCP connect) the thread
 * lives on until that step fails or times out, bounded by the connect
 * timeout (the lookup by the resolver's own), then frees everything; the
 * loop does not wait for it.
 *
 * TLS (amqps): the node's certificate and its name are always verified
 * (against cacert, else the system store; the name is the URI's host, also
 * sent as SNI), a client certificate is offered when cert and key are set,
 * and the handshake is bounded by the timeout.  A failure says why in
 * words an operator can act on: the node refused our certificate (none
 * given, unknown CA, expired), the node's certificate is not trusted, its
 * name does not match, the key cannot be read.
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
	/* The nodes of the cluster (one for a single broker); an attempt
	 * connects to nodes[node].  Every node has the same scheme. */
	struct uri *nodes;
	size_t nnodes;
	size_t node;
	char *cacert;          /* NULL = system CA paths */
	char *cert;            /* NULL, or the client certificate (PEM) */
	char *key;             /* its private key (PEM), with cert */
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
/* Abandons an attempt still under way and returns at once, without
 * waiting for the thread: done is not called, and the thread frees what
 * is left when its current step ends (above).  After done has been
 * called, it only lets go of c.  Loop thread only. */
void connector_free(struct connector *c);

/* Waits up to seconds for every attempt thread, abandoned ones included,
 * to end; true when none is left.  Called once at exit, so that the
 * process does not end under a thread that still holds memory. */
bool connector_settle(double seconds);

void connector_result_clear(struct connector_result *res);
void connector_params_clear(struct connector_params *p);
int connector_params_copy(struct connector_params *dst, const struct connector_params *src);

/* The node an attempt with p connects to. */
const struct uri *connector_node(const struct connector_params *p);


#endif
