/*
 * rpcerr: the text of a failed rabbitmq-c RPC, one wording for every
 * program of taskd (the daemon's connector, taskctl, bench/baseline).
 *
 * rabbitmq-c reports an RPC's outcome as an amqp_rpc_reply_t: a library
 * error code, or the broker's channel.close / connection.close with a code
 * and a reason.  The reason comes from the broker, so control bytes in it
 * are replaced with '?' before it reaches a log or a terminal.
 */
#ifndef TASKD_RPCERR_H
#define TASKD_RPCERR_H

#include <amqp.h>
#include <amqp_framing.h>

/* Returns "WHAT: why" as a malloc'd string the caller frees ("WHAT: ok"
 * for a normal reply), or NULL when out of memory. */
char *rpcerr_text(amqp_rpc_reply_t r, const char *what);

#endif
