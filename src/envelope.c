#include "envelope.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "buf.h"

/* Task names are looked up in the task table and echoed in the result's
 * `type` property and in logs: anything beyond printable ASCII is junk. */
#define ENVELOPE_NAME_MAX 255

static bool
printable(amqp_bytes_t b)
{
	const unsigned char *p = b.bytes;
	for (size_t i = 0; i < b.len; i++)
		if (p[i] < 0x21 || p[i] > 0x7e)
			return false;
	return true;
}

static bool
printable_sp(amqp_bytes_t b)
{
	const unsigned char *p = b.bytes;
	for (size_t i = 0; i < b.len; i++)
		if (p[i] < 0x20 || p[i] > 0x7e)
			return false;
	return true;
}

/* No control characters, valid UTF-8: safe to copy as it is. */
static bool
displayable(amqp_bytes_t b)
{
	const unsigned char *p = b.bytes;
	for (size_t i = 0; i < b.len; ) {
		if (p[i] < 0x80) {
			if (p[i] < 0x20 || p[i] == 0x7f)
				return false;
			i++;
			continue;
		}
		struct buf t = { 0 };
		size_t n = 1;
		while (i + n < b.len && n < 4 && (p[i + n] & 0xc0) == 0x80)
			n++;
		/* buf_json_string leaves a valid, non-control sequence alone */
		bool same = buf_json_string(&t, p + i, n) == 0 && t.len == n &&
		    memcmp(t.data, p + i, n) == 0;
		buf_free(&t);
		if (!same)
			return false;
		i += n;
	}
	return true;
}

/*
 * Every string of an envelope but the error text lives in one block
 * (env->strings), built in a buf as the properties are read: one allocation
 * per task instead of one per field, on the path every task takes.  The
 * block may move while it grows, so strings are known by their offsets
 * until envelope_parse ends.
 */
#define NO_STRING SIZE_MAX

/* Appends n bytes and a NUL; returns their offset, or NO_STRING. */
static size_t
put_bytes(struct buf *sb, const void *p, size_t n)
{
	size_t off = sb->len;
	/* n + 2: the NUL, and the byte buf keeps free past len */
	if (n > SIZE_MAX - 2 ||
	    (sb->cap - sb->len < n + 2 && buf_reserve(sb, n + 2) < 0))
		return NO_STRING;
	if (n > 0)
		memcpy(sb->data + sb->len, p, n);
	sb->len += n;
	sb->data[sb->len++] = '\0';
	sb->data[sb->len] = '\0';
	return off;
}

/* b, or a quoted, escaped rendering when it holds bytes that would corrupt
 * a log line or a JSON body. */
static size_t
put_display(struct buf *sb, amqp_bytes_t b)
{
	if (displayable(b))
		return put_bytes(sb, b.bytes, b.len);
	size_t off = sb->len;
	if (buf_json_string(sb, b.bytes, b.len) < 0 ||
	    put_bytes(sb, NULL, 0) == NO_STRING) {
		sb->len = off;
		return NO_STRING;
	}
	return off;
}

static const amqp_field_value_t *
header_find(const amqp_basic_properties_t *p, const char *key)
{
	if (p == NULL || !(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return NULL;
	size_t klen = strlen(key);
	for (int i = 0; i < p->headers.num_entries; i++) {
		const amqp_table_entry_t *e = &p->headers.entries[i];
		if (e->key.len == klen && memcmp(e->key.bytes, key, klen) == 0)
			return &e->value;
	}
	return NULL;
}

/* A number in any of AMQP's numeric kinds, or a decimal string (some client
 * libraries only send strings).  Returns 0 and sets *out, or -1. */
static int
field_number(const amqp_field_value_t *v, double *out)
{
	switch (v->kind) {
	case AMQP_FIELD_KIND_I8: *out = v->value.i8; return 0;
	case AMQP_FIELD_KIND_U8: *out = v->value.u8; return 0;
	case AMQP_FIELD_KIND_I16: *out = v->value.i16; return 0;
	case AMQP_FIELD_KIND_U16: *out = v->value.u16; return 0;
	case AMQP_FIELD_KIND_I32: *out = v->value.i32; return 0;
	case AMQP_FIELD_KIND_U32: *out = v->value.u32; return 0;
	case AMQP_FIELD_KIND_I64: *out = (double)v->value.i64; return 0;
	case AMQP_FIELD_KIND_U64: *out = (double)v->value.u64; return 0;
	case AMQP_FIELD_KIND_F32: *out = v->value.f32; return 0;
	case AMQP_FIELD_KIND_F64: *out = v->value.f64; return 0;
	case AMQP_FIELD_KIND_DECIMAL: {
		double d = v->value.decimal.value;
		for (unsigned i = 0; i < v->value.decimal.decimals; i++)
			d /= 10.0;
		*out = d;
		return 0;
	}
	case AMQP_FIELD_KIND_UTF8:
	case AMQP_FIELD_KIND_BYTES: {
		amqp_bytes_t b = v->value.bytes;
		if (b.len == 0 || b.len > 64 || memchr(b.bytes, '\0', b.len))
			return -1;
		char tmp[65];
		memcpy(tmp, b.bytes, b.len);
		tmp[b.len] = '\0';
		char *end;
		double d = strtod(tmp, &end);
		if (end == tmp || *end != '\0')
			return -1;
		*out = d;
		return 0;
	}
	default:
		return -1;
	}
}

/* An integer-valued number of an AMQP integer kind, capped: a count. */
static int
field_integer(const amqp_field_value_t *v, double *out)
{
	switch (v->kind) {
	case AMQP_FIELD_KIND_I8: case AMQP_FIELD_KIND_U8:
	case AMQP_FIELD_KIND_I16: case AMQP_FIELD_KIND_U16:
	case AMQP_FIELD_KIND_I32: case AMQP_FIELD_KIND_U32:
	case AMQP_FIELD_KIND_I64: case AMQP_FIELD_KIND_U64:
		if (field_number(v, out) < 0)
			return -1;
		if (*out > 1e9)
			*out = 1e9;
		return 0;
	default:
		return -1;
	}
}

/* Records why the message cannot run: text, then an optional detail. */
static int
fail(struct envelope *env, enum envelope_error e, const char *text, const char *detail)
{
	struct buf m = { 0 };
	env->error = e;
	if (buf_puts(&m, text) < 0 || (detail && buf_puts(&m, detail) < 0)) {
		buf_free(&m);
		return -1;
	}
	env->message = buf_steal(&m, NULL);
	return env->message ? 0 : -1;
}

static void
format_uuid(const unsigned char r[16], char out[37])
{
	unsigned char u[16];
	memcpy(u, r, 16);
	u[6] = (u[6] & 0x0f) | 0x40;  /* version 4 */
	u[8] = (u[8] & 0x3f) | 0x80;  /* RFC 4122 variant */
	snprintf(out, 37,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-%02x%02x%02x%02x%02x%02x",
	    u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7], u[8], u[9], u[10],
	    u[11], u[12], u[13], u[14], u[15]);
}

int
envelope_parse(const amqp_basic_properties_t *p, size_t body_len,
    const struct envelope_limits *lim, const unsigned char uuid16[16],
    struct envelope *env)
{
	amqp_flags_t f = p ? p->_flags : 0;
	struct buf sb = { 0 };
	size_t o_id = NO_STRING, o_corr = NO_STRING, o_reply = NO_STRING;
	size_t o_ctype = NO_STRING, o_task = NO_STRING;
	bool has_id = (f & AMQP_BASIC_MESSAGE_ID_FLAG) && p->message_id.len > 0;

	env->broker_count = -1;
	env->id_given = false;
	env->persistent = (f & AMQP_BASIC_DELIVERY_MODE_FLAG) &&
	    p->delivery_mode == AMQP_DELIVERY_PERSISTENT;

	/* Room for the usual case at once: every field displayable as it is. */
	size_t guess = 48 + (has_id ? 2 * p->message_id.len : 0);
	if (f & AMQP_BASIC_CORRELATION_ID_FLAG)
		guess += p->correlation_id.len;
	if (f & AMQP_BASIC_REPLY_TO_FLAG)
		guess += p->reply_to.len;
	if (f & AMQP_BASIC_CONTENT_TYPE_FLAG)
		guess += p->content_type.len;
	if (f & AMQP_BASIC_TYPE_FLAG)
		guess += p->type.len;
	if (lim->reply_queue != NULL)
		guess += strlen(lim->reply_queue);
	if (lim->default_task != NULL)
		guess += strlen(lim->default_task);
	if (buf_reserve(&sb, guess) < 0)
		goto nomem;

	/* Identity first: even a message we refuse is answered under it. */
	if (has_id) {
		o_id = put_display(&sb, p->message_id);
		env->id_given = true;
	} else {
		char id[37];
		format_uuid(uuid16, id);
		o_id = put_bytes(&sb, id, 36);
	}
	if (o_id == NO_STRING)
		goto nomem;

	if ((f & AMQP_BASIC_CORRELATION_ID_FLAG) && p->correlation_id.len > 0) {
		o_corr = put_bytes(&sb, p->correlation_id.bytes, p->correlation_id.len);
		env->correlation_len = p->correlation_id.len;
	} else if (has_id) {
		/* The client's own message_id, not our display copy of it. */
		o_corr = put_bytes(&sb, p->message_id.bytes, p->message_id.len);
		env->correlation_len = p->message_id.len;
	} else {
		/* The generated id: 36 bytes, copied from a local since the
		 * block may move while it grows. */
		char id[37];
		memcpy(id, sb.data + o_id, 37);
		o_corr = put_bytes(&sb, id, 36);
		env->correlation_len = 36;
	}
	if (o_corr == NO_STRING)
		goto nomem;

	if ((f & AMQP_BASIC_REPLY_TO_FLAG) && p->reply_to.len > 0) {
		o_reply = put_bytes(&sb, p->reply_to.bytes, p->reply_to.len);
		if (o_reply == NO_STRING)
			goto nomem;
		/* Named explicitly, it is still the queue whose durability taskd
		 * knows. */
		env->reply_to_default = lim->reply_queue != NULL &&
		    strlen(lim->reply_queue) == p->reply_to.len &&
		    memcmp(lim->reply_queue, p->reply_to.bytes, p->reply_to.len) == 0;
	} else if (lim->reply_queue != NULL && lim->reply_queue[0] != '\0') {
		o_reply = put_bytes(&sb, lim->reply_queue, strlen(lim->reply_queue));
		env->reply_to_default = true;
		if (o_reply == NO_STRING)
			goto nomem;
	}

	if ((f & AMQP_BASIC_CONTENT_TYPE_FLAG) && p->content_type.len > 0 &&
	    printable_sp(p->content_type)) {
		o_ctype = put_bytes(&sb, p->content_type.bytes, p->content_type.len);
		if (o_ctype == NO_STRING)
			goto nomem;
	}

	/* The task name. */
	amqp_bytes_t name = { 0, NULL };
	const amqp_field_value_t *h;
	if ((f & AMQP_BASIC_TYPE_FLAG) && p->type.len > 0) {
		name = p->type;
	} else if ((h = header_find(p, "task")) != NULL) {
		if (h->kind != AMQP_FIELD_KIND_UTF8 && h->kind != AMQP_FIELD_KIND_BYTES) {
			if (fail(env, ENVELOPE_BAD_HEADER,
			    "header 'task' must be a string", NULL) < 0)
				goto nomem;
			goto done;
		}
		name = h->value.bytes;
	}
	if (name.len > 0) {
		o_task = put_display(&sb, name);
		if (o_task == NO_STRING)
			goto nomem;
		if (!printable(name) || name.len > ENVELOPE_NAME_MAX) {
			if (fail(env, ENVELOPE_BAD_NAME,
			    "task name is not printable ASCII of at most 255 bytes: ",
			    sb.data + o_task) < 0)
				goto nomem;
			o_task = NO_STRING;
			goto done;
		}
	} else if (lim->default_task != NULL && lim->default_task[0] != '\0') {
		o_task = put_bytes(&sb, lim->default_task, strlen(lim->default_task));
		if (o_task == NO_STRING)
			goto nomem;
	} else {
		if (fail(env, ENVELOPE_NO_TASK,
		    "the message names no task (type property or 'task' header) "
		    "and no default_task is configured", NULL) < 0)
			goto nomem;
		goto done;
	}

	if ((h = header_find(p, "timeout")) != NULL) {
		double t;
		if (field_number(h, &t) < 0 || !isfinite(t) || t <= 0) {
			if (fail(env, ENVELOPE_BAD_HEADER,
			    "header 'timeout' must be a positive number of seconds",
			    NULL) < 0)
				goto nomem;
			goto done;
		}
		env->timeout = t;
	}

	/* Delivery counts: read whatever else is wrong, a bad one only
	 * counts as absent (a client cannot make its task loop longer). */
	env->broker_count = -1;
	double n;
	if ((h = header_find(p, "x-delivery-count")) != NULL &&
	    field_integer(h, &n) == 0 && n >= 0)
		env->broker_count = (long)n;
	if ((h = header_find(p, ENVELOPE_TASKD_COUNT)) != NULL &&
	    field_integer(h, &n) == 0 && n >= 0)
		env->taskd_count = (long)n;

	if (body_len > lim->max_payload) {
		char what[96];
		snprintf(what, sizeof(what), "%zu bytes, the limit is %zu",
		    body_len, lim->max_payload);
		if (fail(env, ENVELOPE_TOO_LARGE, "payload too large: ", what) < 0)
			goto nomem;
	}

done:
	env->strings = buf_steal(&sb, NULL);
	if (env->strings == NULL)
		goto nomem;
	env->task_id = env->strings + o_id;
	env->correlation_id = env->strings + o_corr;
	env->reply_to = o_reply != NO_STRING ? env->strings + o_reply : NULL;
	env->content_type = o_ctype != NO_STRING ? env->strings + o_ctype : NULL;
	env->task = o_task != NO_STRING ? env->strings + o_task : NULL;
	return 0;

nomem:
	buf_free(&sb);
	envelope_free(env);
	return -1;
}

bool
envelope_result_persistent(const struct envelope *env, bool reply_durable)
{
	static const char direct[] = "amq.rabbitmq.reply-to";
	static const char server_named[] = "amq.gen-";

	if (env->reply_to == NULL)
		return false;
	if (env->reply_to_default)
		return reply_durable;
	if (strncmp(env->reply_to, direct, sizeof(direct) - 1) == 0 ||
	    strncmp(env->reply_to, server_named, sizeof(server_named) - 1) == 0)
		return false;
	return env->persistent;
}

long
envelope_deliveries(const struct envelope *env, bool redelivered)
{
	/* x-taskd-deliveries is what earlier copies went through; the
	 * broker's count (or the redelivered flag) what this copy did since
	 * it was published.  A copy goes out without x-delivery-count, so on a
	 * quorum queue the two add up. */
	long since = redelivered ? 1 : 0;
	if (env->broker_count > since)
		since = env->broker_count;
	return env->taskd_count + since;
}

static int
pool_bytes(amqp_pool_t *pool, amqp_bytes_t *b)
{
	if (b->len == 0) {
		*b = amqp_empty_bytes;
		return 0;
	}
	void *p = amqp_pool_alloc(pool, b->len);
	if (p == NULL)
		return -1;
	memcpy(p, b->bytes, b->len);
	b->bytes = p;
	return 0;
}

static bool
key_is(amqp_bytes_t k, const char *s)
{
	return k.len == strlen(s) && memcmp(k.bytes, s, k.len) == 0;
}

int
envelope_recount(const amqp_basic_properties_t *props, long deliveries,
    amqp_pool_t *pool, amqp_basic_properties_t *out)
{
	amqp_basic_properties_t none;
	memset(&none, 0, sizeof(none));
	const amqp_basic_properties_t *p = props != NULL ? props : &none;

	*out = *p;
	amqp_flags_t f = p->_flags;
	if (((f & AMQP_BASIC_CONTENT_TYPE_FLAG) && pool_bytes(pool, &out->content_type)) ||
	    ((f & AMQP_BASIC_CONTENT_ENCODING_FLAG) && pool_bytes(pool, &out->content_encoding)) ||
	    ((f & AMQP_BASIC_CORRELATION_ID_FLAG) && pool_bytes(pool, &out->correlation_id)) ||
	    ((f & AMQP_BASIC_REPLY_TO_FLAG) && pool_bytes(pool, &out->reply_to)) ||
	    ((f & AMQP_BASIC_EXPIRATION_FLAG) && pool_bytes(pool, &out->expiration)) ||
	    ((f & AMQP_BASIC_MESSAGE_ID_FLAG) && pool_bytes(pool, &out->message_id)) ||
	    ((f & AMQP_BASIC_TYPE_FLAG) && pool_bytes(pool, &out->type)) ||
	    ((f & AMQP_BASIC_USER_ID_FLAG) && pool_bytes(pool, &out->user_id)) ||
	    ((f & AMQP_BASIC_APP_ID_FLAG) && pool_bytes(pool, &out->app_id)) ||
	    ((f & AMQP_BASIC_CLUSTER_ID_FLAG) && pool_bytes(pool, &out->cluster_id)))
		return -1;

	/* The headers minus both counts, then ours. */
	int n = (f & AMQP_BASIC_HEADERS_FLAG) ? p->headers.num_entries : 0;
	amqp_table_t kept = { 0, NULL };
	kept.entries = amqp_pool_alloc(pool, sizeof(amqp_table_entry_t) * (size_t)(n + 1));
	if (kept.entries == NULL)
		return -1;
	for (int i = 0; i < n; i++) {
		const amqp_table_entry_t *e = &p->headers.entries[i];
		if (key_is(e->key, "x-delivery-count") || key_is(e->key, ENVELOPE_TASKD_COUNT))
			continue;
		kept.entries[kept.num_entries++] = *e;
	}
	amqp_table_entry_t *mine = &kept.entries[kept.num_entries++];
	mine->key = amqp_cstring_bytes(ENVELOPE_TASKD_COUNT);
	mine->value.kind = AMQP_FIELD_KIND_I64;
	mine->value.value.i64 = deliveries;
	/* The clone copies keys and values (ours is static) into pool. */
	if (amqp_table_clone(&kept, &out->headers, pool) != AMQP_STATUS_OK)
		return -1;
	out->_flags |= AMQP_BASIC_HEADERS_FLAG;
	return 0;
}

void
envelope_free(struct envelope *env)
{
	free(env->message);
	free(env->strings);
	memset(env, 0, sizeof(*env));
}

const char *
envelope_error_code(enum envelope_error e)
{
	switch (e) {
	case ENVELOPE_OK: return "ok";
	case ENVELOPE_NO_TASK: return "unknown_task";
	case ENVELOPE_BAD_NAME: return "unknown_task";
	case ENVELOPE_BAD_HEADER: return "bad_header";
	case ENVELOPE_TOO_LARGE: return "payload_too_large";
	}
	return "rejected";
}
