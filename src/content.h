/*
 * content: a delivery put together from its frames, as the broker sends
 * them on the consume channel: basic.deliver (content_begin), a content
 * header with the properties and the body's size, then body frames until
 * that size is reached, each fed to content_frame.  A body over
 * max_payload is counted, never buffered (the delivery is handed over
 * oversized, to be answered "rejected").  A basic.return's content, which
 * comes on the publish channel, is read past (content_skip).
 *
 * Frames live in rabbitmq-c's pools, which its next read recycles, so the
 * properties are copied into a pool of the assembler's own, reused by
 * every delivery: they are valid until content_recycle, which the caller
 * runs after its delivery callback (broker.h: a task in flight keeps
 * none of them).
 */
#ifndef TASKD_CONTENT_H
#define TASKD_CONTENT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <amqp.h>

struct broker_delivery;
struct content;

enum content_step {
	CONTENT_MORE,       /* nothing complete yet */
	CONTENT_DONE,       /* a delivery is complete: content_take it */
	CONTENT_ERROR,      /* a protocol error or no memory: why says which;
	                     * the connection must go */
};

struct content *content_new(void);
void content_free(struct content *c);
/* Drops what was in progress (the connection is gone). */
void content_reset(struct content *c);

/* A basic.deliver: d (the caller's, filled with gen, tag, redelivered
 * and consumer) is assembled from the frames that follow, and owned
 * here until content_take.  CONTENT_ERROR when a delivery is already in
 * progress (d is freed). */
enum content_step content_begin(struct content *c, struct broker_delivery *d,
    const char **why);
/* The next basic.return's content is not a delivery: read past it. */
void content_skip(struct content *c);
/* A header or body frame of the consume or the publish channel. */
enum content_step content_frame(struct content *c, const amqp_frame_t *f,
    size_t max_payload, const char **why);
/* The complete delivery, now the caller's. */
struct broker_delivery *content_take(struct content *c);
/* The taken delivery's properties are no longer needed. */
void content_recycle(struct content *c);

#endif
