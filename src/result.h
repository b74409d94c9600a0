/*
 * result: a finished task turned into the reply message of design §4.
 * Pure: builds properties and headers; publishing is the broker's job.
 *
 *   properties  correlation_id, type (task name), content_type, timestamp,
 *               app_id "taskd", delivery_mode 2 when `persistent`
 *   headers     taskd-status, taskd-task-id, taskd-worker, taskd-attempt,
 *               taskd-duration-us
 *   body        the handler's output when ok, else
 *               {"error": "<code>", "message": "<text>"}
 */
#ifndef TASKD_RESULT_H
#define TASKD_RESULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <time.h>
#include <amqp.h>

#include "buf.h"

enum result_status {
	RESULT_OK,
	RESULT_ERROR,
	RESULT_TIMEOUT,
	RESULT_REJECTED,
	RESULT_CANCELLED,   /* stopped by a cancel request (docs/protocol.md) */
};

/* "ok" | "error" | "timeout" | "rejected" | "cancelled" */
const char *result_status_name(enum result_status s);

struct result_info {
	enum result_status status;
	const char *task;           /* may be NULL (a message naming none) */
	const char *task_id;
	const char *correlation_id;
	size_t correlation_len;     /* 0: correlation_id is a C string */
	const char *content_type;   /* of the body when ok; NULL = none */
	const char *node_id;        /* "host:pid": the taskd-worker header */
	int attempt;                /* 1 = first run */
	int64_t duration_us;
	time_t timestamp;
	bool persistent;
};

/* A built result: props point into this struct, which owns every byte. */
struct result_msg {
	amqp_basic_properties_t props;
	amqp_table_entry_t headers[5];
};

/* Fills msg from info.  Strings in info must outlive msg (props reference
 * them, nothing is copied).  Never fails. */
void result_build(struct result_msg *msg, const struct result_info *info);

/* Appends the JSON error body {"error": code, "message": text} to out.
 * Returns 0 or -1 (no memory). */
int result_error_body(struct buf *out, const char *code, const char *message);

/* The broker's largest message body, read from the reply text of the
 * channel.close with which RabbitMQ refuses a publish over its
 * max_message_size: "PRECONDITION_FAILED - message size 262144 is larger
 * than configured max size 65536" ("... than max size N" at its ceiling).
 * AMQP 0-9-1 advertises the limit nowhere else.  text[0..len) need not be
 * NUL-terminated.  Returns N, or 0 when text is no such refusal. */
size_t result_broker_limit(const void *text, size_t len);

#endif
