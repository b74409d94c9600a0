/*
 * fleet: one fleet-control request and its replies (docs/protocol.md,
 * "Fleet control"), shared by status and cancel.
 *
 * The request goes to the control exchange, mandatory, on a confirm-mode
 * channel, with reply_to = direct reply-to and a fresh correlation_id;
 * replies are collected until the absolute deadline, or until `expect`
 * nodes answered (0 = until the deadline).  A missing exchange (no taskd
 * ever ran on this broker) is an error, not an empty answer.
 */
#ifndef TASKCTL_FLEET_H
#define TASKCTL_FLEET_H

#include <stddef.h>

#include <jansson.h>

#include "taskctl.h"

#define FLEET_DEFAULT_EXCHANGE "taskd.control"

struct fleet_request {
	const char *exchange;
	const char *type;          /* "status" | "cancel" */
	const char *body;          /* JSON text, or "" */
	double timeout;            /* seconds from now */
	unsigned expect;           /* stop after this many replies; 0 = none */
};

struct fleet_answer {
	json_t *replies;           /* a JSON array of the reply objects */
	size_t bad;                /* replies that were not JSON objects */
	bool routed;               /* the broker confirmed the request, routed */
};

/* Sends the request and collects replies.  Returns 0 and fills a (free with
 * fleet_answer_free), or -1 after saying why. */
int fleet_ask(struct taskctl *t, const struct fleet_request *q,
    struct fleet_answer *a);
void fleet_answer_free(struct fleet_answer *a);

/* Takes the options status and cancel share (--timeout, --expect,
 * --exchange); opt as getopt_long returned it.  Returns 1 when taken, 0
 * when not, -1 for a bad value (said). */
#define FLEET_OPT_TIMEOUT (TASKCTL_OPT_COMMAND + 0x40)
#define FLEET_OPT_EXPECT (TASKCTL_OPT_COMMAND + 0x41)
#define FLEET_OPT_EXCHANGE (TASKCTL_OPT_COMMAND + 0x42)
#define FLEET_LONGOPTS \
	{ "timeout", required_argument, NULL, FLEET_OPT_TIMEOUT }, \
	{ "expect", required_argument, NULL, FLEET_OPT_EXPECT }, \
	{ "exchange", required_argument, NULL, FLEET_OPT_EXCHANGE }
int fleet_option(struct fleet_request *q, int opt);

#endif
