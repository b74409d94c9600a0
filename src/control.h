/*
 * control: fleet control over AMQP (design §8, docs/protocol.md "Fleet
 * control"), served from the event loop on the broker's side channels.
 *
 * On every connection the node opens two channels of its own:
 *
 *   live  (BROKER_CH_SIDE)      the fanout exchange control.exchange
 *         (durable), and an exclusive, auto-delete queue of this node
 *         bound to it, consumed without acks.  Each request in it is
 *         answered at once to its reply_to with its correlation_id:
 *         status with this node's state, cancel with what the node found
 *         of each id.
 *   log   (BROKER_CH_SIDE + 1)  the stream "<exchange>.log", bound to the
 *         same exchange, so it keeps every request for cancel_ttl
 *         (x-max-age).  The node reads it from cancel_ttl ago at every
 *         connection, and applies the cancels in it without answering: a
 *         node started (or reconnected) after a cancel still learns it.
 *
 * A cancel stops the tasks of that id running here (dispatch_cancel) and
 * remembers the id until the request's timestamp plus cancel_ttl, so a
 * task arriving later is answered "cancelled" without running.  Requests
 * never wait behind tasks: they are read and answered in the same loop
 * iteration as the frames that bring them, whatever the task slots do.
 */
#ifndef TASKD_CONTROL_H
#define TASKD_CONTROL_H

#include <ev.h>

#include "broker.h"
#include "dispatch.h"

struct pool;

struct control_params {
	const char *exchange;   /* "" = fleet control off */
	double cancel_ttl;      /* seconds a cancelled id is remembered */
	const char *node;       /* this node's id ("host:pid") */
};

struct control;

/* Serves control requests on b's side channels from its next connection
 * on, and gives dispatch the set of cancelled ids.  b, d and pool (may be
 * NULL) must outlive it; params are copied.  Returns NULL when out of
 * memory. */
struct control *control_new(struct ev_loop *loop, struct broker *b,
    struct dispatch *d, struct pool *pool, const struct control_params *params);
/* New settings; the exchange takes effect at the next connection. */
int control_reconfigure(struct control *c, const struct control_params *params);
/* Detaches from the broker and the dispatch, and frees. */
void control_free(struct control *c);

#endif
