/* content: a delivery put together from its frames (content.h). */
#include "content.h"

#include <stdlib.h>
#include <string.h>

#include "broker.h"
#include "connector.h"

struct content {
	struct broker_delivery *cur;    /* being assembled */
	bool header;                    /* its content header has come */
	bool done;                      /* complete, not yet taken */
	amqp_basic_properties_t props;  /* cur's, deep-copied into pool */
	amqp_pool_t pool;
	bool skip_header;               /* a basic.return's header is due */
	uint64_t skip;                  /* its body bytes still to read past */
};

struct content *
content_new(void)
{
	struct content *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	init_amqp_pool(&c->pool, 1024);
	return c;
}

void
content_free(struct content *c)
{
	if (c == NULL)
		return;
	content_reset(c);
	empty_amqp_pool(&c->pool);
	free(c);
}

void
content_reset(struct content *c)
{
	broker_delivery_free(c->cur);
	c->cur = NULL;
	c->header = c->done = false;
	c->skip = 0;
	c->skip_header = false;
}

static int
bytes_dup(amqp_pool_t *pool, amqp_bytes_t *dst, amqp_bytes_t src)
{
	if (src.len == 0) {
		*dst = amqp_empty_bytes;
		return 0;
	}
	amqp_pool_alloc_bytes(pool, src.len, dst);
	if (dst->bytes == NULL)
		return -1;
	memcpy(dst->bytes, src.bytes, src.len);
	return 0;
}

static int
props_copy(amqp_basic_properties_t *d, const amqp_basic_properties_t *s, amqp_pool_t *pool)
{
	*d = *s;
	amqp_flags_t f = s->_flags;
	if (((f & AMQP_BASIC_CONTENT_TYPE_FLAG) && bytes_dup(pool, &d->content_type, s->content_type)) ||
	    ((f & AMQP_BASIC_CONTENT_ENCODING_FLAG) && bytes_dup(pool, &d->content_encoding, s->content_encoding)) ||
	    ((f & AMQP_BASIC_CORRELATION_ID_FLAG) && bytes_dup(pool, &d->correlation_id, s->correlation_id)) ||
	    ((f & AMQP_BASIC_REPLY_TO_FLAG) && bytes_dup(pool, &d->reply_to, s->reply_to)) ||
	    ((f & AMQP_BASIC_EXPIRATION_FLAG) && bytes_dup(pool, &d->expiration, s->expiration)) ||
	    ((f & AMQP_BASIC_MESSAGE_ID_FLAG) && bytes_dup(pool, &d->message_id, s->message_id)) ||
	    ((f & AMQP_BASIC_TYPE_FLAG) && bytes_dup(pool, &d->type, s->type)) ||
	    ((f & AMQP_BASIC_USER_ID_FLAG) && bytes_dup(pool, &d->user_id, s->user_id)) ||
	    ((f & AMQP_BASIC_APP_ID_FLAG) && bytes_dup(pool, &d->app_id, s->app_id)) ||
	    ((f & AMQP_BASIC_CLUSTER_ID_FLAG) && bytes_dup(pool, &d->cluster_id, s->cluster_id)))
		return -1;
	if ((f & AMQP_BASIC_HEADERS_FLAG) &&
	    amqp_table_clone(&s->headers, &d->headers, pool) != AMQP_STATUS_OK)
		return -1;
	return 0;
}

enum content_step
content_begin(struct content *c, struct broker_delivery *d, const char **why)
{
	if (c->cur != NULL) {
		broker_delivery_free(d);
		*why = "protocol error: a delivery began inside another";
		return CONTENT_ERROR;
	}
	recycle_amqp_pool(&c->pool);
	c->cur = d;
	c->header = c->done = false;
	return CONTENT_MORE;
}

void
content_skip(struct content *c)
{
	c->skip_header = true;
}

static enum content_step
content_header(struct content *c, const amqp_frame_t *f, size_t max_payload,
    const char **why)
{
	if (f->channel == CONNECTOR_CH_PUBLISH && c->skip_header) {
		c->skip_header = false;
		c->skip = f->payload.properties.body_size;
		return CONTENT_MORE;
	}
	if (f->channel != CONNECTOR_CH_CONSUME || c->cur == NULL || c->header) {
		*why = "protocol error: unexpected content header";
		return CONTENT_ERROR;
	}
	c->header = true;
	struct broker_delivery *d = c->cur;
	uint64_t size = f->payload.properties.body_size;
	if (props_copy(&c->props, f->payload.properties.decoded, &c->pool) < 0) {
		*why = "out of memory";
		return CONTENT_ERROR;
	}
	d->props = &c->props;
	d->len = (size_t)size;
	if (size > max_payload) {
		/* Counted, never buffered: the answer is "rejected". */
		d->oversized = true;
	} else if (size > 0) {
		/* The body goes right after the struct: one block. */
		struct broker_delivery *nd = realloc(d, sizeof(*d) + (size_t)size);
		if (nd == NULL) {
			d->oversized = true;
		} else {
			c->cur = d = nd;
			d->body = (unsigned char *)(d + 1);
		}
	}
	c->done = size == 0;
	return c->done ? CONTENT_DONE : CONTENT_MORE;
}

static enum content_step
content_body(struct content *c, const amqp_frame_t *f, const char **why)
{
	size_t n = f->payload.body_fragment.len;
	if (f->channel == CONNECTOR_CH_PUBLISH && c->skip > 0) {
		c->skip -= n < c->skip ? n : c->skip;
		return CONTENT_MORE;
	}
	struct broker_delivery *d = c->cur;
	if (f->channel != CONNECTOR_CH_CONSUME || d == NULL || !c->header ||
	    n > d->len - d->received) {
		*why = "protocol error: unexpected body";
		return CONTENT_ERROR;
	}
	if (d->body != NULL)
		memcpy(d->body + d->received, f->payload.body_fragment.bytes, n);
	d->received += n;
	c->done = d->received == d->len;
	return c->done ? CONTENT_DONE : CONTENT_MORE;
}

enum content_step
content_frame(struct content *c, const amqp_frame_t *f, size_t max_payload,
    const char **why)
{
	switch (f->frame_type) {
	case AMQP_FRAME_HEADER:
		return content_header(c, f, max_payload, why);
	case AMQP_FRAME_BODY:
		return content_body(c, f, why);
	default:
		return CONTENT_MORE;
	}
}

struct broker_delivery *
content_take(struct content *c)
{
	struct broker_delivery *d = c->done ? c->cur : NULL;
	if (d != NULL) {
		c->cur = NULL;
		c->done = false;
	}
	return d;
}

void
content_recycle(struct content *c)
{
	/* Keeps the pool's first page for the next delivery. */
	recycle_amqp_pool(&c->pool);
	memset(&c->props, 0, sizeof(c->props));
}
