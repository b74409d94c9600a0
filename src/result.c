#include "result.h"

#include <stdint.h>
#include <string.h>

const char *
result_status_name(enum result_status s)
{
	switch (s) {
	case RESULT_OK: return "ok";
	case RESULT_ERROR: return "error";
	case RESULT_TIMEOUT: return "timeout";
	case RESULT_REJECTED: return "rejected";
	case RESULT_CANCELLED: return "cancelled";
	}
	return "error";
}

/* A string constant as AMQP bytes, its length known when compiled: every
 * result carries a dozen, and each would otherwise be a library call and a
 * strlen. */
#define LIT(s) ((amqp_bytes_t){ sizeof(s) - 1, (void *)(s) })

static amqp_bytes_t
str_bytes(const char *s)
{
	return (amqp_bytes_t){ strlen(s), (void *)s };
}

static void
header_str(amqp_table_entry_t *e, amqp_bytes_t key, amqp_bytes_t value)
{
	e->key = key;
	e->value.kind = AMQP_FIELD_KIND_UTF8;
	e->value.value.bytes = value;
}

void
result_build(struct result_msg *msg, const struct result_info *info)
{
	amqp_basic_properties_t *p = &msg->props;

	/* Only the properties: every header entry is written below. */
	memset(p, 0, sizeof(*p));
	p->_flags = AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
	    AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_HEADERS_FLAG |
	    AMQP_BASIC_DELIVERY_MODE_FLAG;
	p->correlation_id = info->correlation_len > 0 ?
	    (amqp_bytes_t){ info->correlation_len, (void *)info->correlation_id } :
	    str_bytes(info->correlation_id);
	p->timestamp = (uint64_t)info->timestamp;
	p->app_id = LIT("taskd");
	p->delivery_mode = info->persistent ? 2 : 1;
	if (info->task != NULL) {
		p->_flags |= AMQP_BASIC_TYPE_FLAG;
		p->type = str_bytes(info->task);
	}
	const char *ctype = info->status == RESULT_OK ? info->content_type :
	    "application/json";
	if (ctype != NULL) {
		p->_flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
		p->content_type = str_bytes(ctype);
	}

	header_str(&msg->headers[0], LIT("taskd-status"),
	    str_bytes(result_status_name(info->status)));
	header_str(&msg->headers[1], LIT("taskd-task-id"), str_bytes(info->task_id));
	header_str(&msg->headers[2], LIT("taskd-worker"), str_bytes(info->node_id));
	msg->headers[3].key = LIT("taskd-attempt");
	msg->headers[3].value.kind = AMQP_FIELD_KIND_I32;
	msg->headers[3].value.value.i32 = info->attempt;
	msg->headers[4].key = LIT("taskd-duration-us");
	msg->headers[4].value.kind = AMQP_FIELD_KIND_I64;
	msg->headers[4].value.value.i64 = info->duration_us;
	p->headers.num_entries = 5;
	p->headers.entries = msg->headers;
}

int
result_error_body(struct buf *out, const char *code, const char *message)
{
	if (buf_puts(out, "{\"error\": \"") < 0 ||
	    buf_json_string(out, code, strlen(code)) < 0 ||
	    buf_puts(out, "\", \"message\": \"") < 0 ||
	    buf_json_string(out, message, strlen(message)) < 0 ||
	    buf_puts(out, "\"}") < 0)
		return -1;
	return 0;
}

/* Finds needle in hay[0..len); returns what follows it, or NULL. */
static const char *
after(const char *hay, size_t len, const char *needle)
{
	size_t n = strlen(needle);
	const char *p = memmem(hay, len, needle, n);
	return p != NULL ? p + n : NULL;
}

size_t
result_broker_limit(const void *text, size_t len)
{
	const char *s = text, *end = s + len;
	const char *p = after(s, len, "message size ");
	if (p == NULL)
		return 0;
	p = after(p, (size_t)(end - p), "larger than ");
	if (p == NULL)
		return 0;
	static const char configured[] = "configured ";
	if ((size_t)(end - p) >= sizeof(configured) - 1 &&
	    memcmp(p, configured, sizeof(configured) - 1) == 0)
		p += sizeof(configured) - 1;
	static const char max[] = "max size ";
	if ((size_t)(end - p) < sizeof(max) - 1 || memcmp(p, max, sizeof(max) - 1) != 0)
		return 0;
	p += sizeof(max) - 1;
	size_t v = 0;
	const char *digits = p;
	for (; p < end && *p >= '0' && *p <= '9'; p++) {
		if (v > (SIZE_MAX - 9) / 10)
			return 0;
		v = v * 10 + (size_t)(*p - '0');
	}
	return p > digits ? v : 0;
}
