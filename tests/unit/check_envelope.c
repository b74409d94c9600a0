#include <check.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "envelope.h"

/* Bytes with a length, so rows can hold NULs and junk. */
struct sb {
	const char *s;   /* NULL = the property or header is absent */
	size_t len;
};
#define SB(x) { (x), sizeof(x) - 1 }
#define NONE { NULL, 0 }

/* Header values as rows: designated initializers keep the kind and the
 * union member next to each other. */
#define F_STR(x) { .kind = AMQP_FIELD_KIND_UTF8, .value.bytes = { sizeof(x) - 1, (void *)(x) } }
#define F_BYTES(x) { .kind = AMQP_FIELD_KIND_BYTES, .value.bytes = { sizeof(x) - 1, (void *)(x) } }

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

static const unsigned char zero16[16];

/* An AMQP message's properties, as the broker hands them to envelope_parse. */
struct msg {
	amqp_basic_properties_t p;
	amqp_table_entry_t h[4];
};

static void
msg_init(struct msg *m)
{
	memset(m, 0, sizeof(*m));
	m->p.headers.entries = m->h;
}

static amqp_bytes_t
bytes_of(struct sb v)
{
	amqp_bytes_t b = { v.len, (void *)v.s };
	return b;
}

static void
msg_header(struct msg *m, const char *key, amqp_field_value_t v)
{
	ck_assert_int_lt(m->p.headers.num_entries, 4);
	amqp_table_entry_t *e = &m->h[m->p.headers.num_entries++];
	e->key = amqp_cstring_bytes(key);
	e->value = v;
	m->p._flags |= AMQP_BASIC_HEADERS_FLAG;
}

static void
msg_prop(struct msg *m, amqp_flags_t flag, amqp_bytes_t *field, struct sb v)
{
	if (v.s == NULL)
		return;
	m->p._flags |= flag;
	*field = bytes_of(v);
}

/* Text a log line or a terminal shows as is: valid UTF-8 with no C0, DEL
 * or C1 control characters (U+0080..U+009F include CSI, an escape). */
static bool
displayable(const char *s)
{
	const unsigned char *p = (const unsigned char *)s;
	while (*p != '\0') {
		unsigned c = *p, n, cp;
		if (c < 0x20 || c == 0x7f)
			return false;
		if (c < 0x80) {
			p++;
			continue;
		}
		if (c >= 0xc2 && c <= 0xdf)
			n = 1, cp = c & 0x1f;
		else if (c >= 0xe0 && c <= 0xef)
			n = 2, cp = c & 0x0f;
		else if (c >= 0xf0 && c <= 0xf4)
			n = 3, cp = c & 0x07;
		else
			return false;
		for (unsigned i = 1; i <= n; i++) {
			if ((p[i] & 0xc0) != 0x80)
				return false;
			cp = (cp << 6) | (p[i] & 0x3f);
		}
		if (cp <= 0x9f || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
		    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
			return false;
		p += n + 1;
	}
	return true;
}

/* Parses and checks what must hold for every message, whatever it holds:
 * a rejected message is still answerable. */
static void
parse(const amqp_basic_properties_t *p, size_t body_len,
    const struct envelope_limits *lim, const unsigned char uuid[16],
    struct envelope *env)
{
	memset(env, 0, sizeof(*env));
	ck_assert_int_eq(envelope_parse(p, body_len, lim, uuid, env), 0);
	ck_assert_ptr_nonnull(env->task_id);
	ck_assert_uint_gt(strlen(env->task_id), 0);
	ck_assert_ptr_nonnull(env->correlation_id);
	ck_assert_uint_gt(strlen(env->correlation_id), 0);
	if (env->error == ENVELOPE_OK) {
		ck_assert_ptr_null(env->message);
		ck_assert_ptr_nonnull(env->task);
		ck_assert_uint_gt(strlen(env->task), 0);
	} else {
		ck_assert_ptr_nonnull(env->message);
		ck_assert_msg(displayable(env->message), "message not displayable: %s",
		    env->message);
	}
	if (env->reply_to_default)
		ck_assert_ptr_nonnull(env->reply_to);
}

static const struct envelope_limits lim_plain = { 1024, "", "replies" };
static const struct envelope_limits lim_default = { 1024, "echo", "replies" };

/* --- task name (design §4, first row) --- */

static const struct name_row {
	struct sb type;            /* type property */
	bool has_header;
	amqp_field_value_t header; /* header "task" */
	const char *default_task;
	enum envelope_error error;
	const char *task;          /* checked when error is OK or NO_TASK */
} name_rows[] = {
	/* the type property wins */
	{ SB("echo"), false, { 0 }, "", ENVELOPE_OK, "echo" },
	{ SB("echo"), true, F_STR("sha256"), "burn", ENVELOPE_OK, "echo" },
	{ SB("a.b:c-d_9"), false, { 0 }, "", ENVELOPE_OK, "a.b:c-d_9" },
	/* even over a header "task" of the wrong kind: it is not consulted */
	{ SB("echo"), true, { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 1 }, "",
	    ENVELOPE_OK, "echo" },
	/* else the header "task", as utf8 or as bytes */
	{ NONE, true, F_STR("sha256"), "", ENVELOPE_OK, "sha256" },
	{ NONE, true, F_BYTES("sha256"), "", ENVELOPE_OK, "sha256" },
	{ NONE, true, F_STR("sha256"), "echo", ENVELOPE_OK, "sha256" },
	/* an empty type property counts as absent */
	{ SB(""), true, F_STR("sha256"), "", ENVELOPE_OK, "sha256" },
	{ SB(""), false, { 0 }, "echo", ENVELOPE_OK, "echo" },
	/* else default_task */
	{ NONE, false, { 0 }, "echo", ENVELOPE_OK, "echo" },
	{ NONE, true, F_STR(""), "echo", ENVELOPE_OK, "echo" },
	/* nothing anywhere: rejected */
	{ NONE, false, { 0 }, "", ENVELOPE_NO_TASK, NULL },
	{ NONE, false, { 0 }, NULL, ENVELOPE_NO_TASK, NULL },
	{ SB(""), true, F_STR(""), "", ENVELOPE_NO_TASK, NULL },
	/* a header "task" that is not a string */
	{ NONE, true, { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 7 }, "echo",
	    ENVELOPE_BAD_HEADER, NULL },
	{ NONE, true, { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 }, "echo",
	    ENVELOPE_BAD_HEADER, NULL },
	{ NONE, true, { .kind = AMQP_FIELD_KIND_F64, .value.f64 = 1.0 }, "",
	    ENVELOPE_BAD_HEADER, NULL },
	{ NONE, true, { .kind = AMQP_FIELD_KIND_TABLE, .value.table = { 0, NULL } }, "",
	    ENVELOPE_BAD_HEADER, NULL },
	{ NONE, true, { .kind = AMQP_FIELD_KIND_ARRAY, .value.array = { 0, NULL } }, "",
	    ENVELOPE_BAD_HEADER, NULL },
	{ NONE, true, { .kind = AMQP_FIELD_KIND_VOID }, "echo",
	    ENVELOPE_BAD_HEADER, NULL },
	/* names that are not printable ASCII */
	{ SB("\x00\xff\x1b"), false, { 0 }, "echo", ENVELOPE_BAD_NAME, NULL },
	{ SB("echo\n"), false, { 0 }, "", ENVELOPE_BAD_NAME, NULL },
	{ SB("ec\0ho"), false, { 0 }, "", ENVELOPE_BAD_NAME, NULL },
	{ SB("my task"), false, { 0 }, "", ENVELOPE_BAD_NAME, NULL },
	{ SB("del\x7f"), false, { 0 }, "", ENVELOPE_BAD_NAME, NULL },
	{ SB("t\xc3\xa2" "che"), false, { 0 }, "", ENVELOPE_BAD_NAME, NULL },
	{ NONE, true, F_STR("\x1b[31mred"), "echo", ENVELOPE_BAD_NAME, NULL },
	{ NONE, true, F_BYTES("\xff\xfe"), "echo", ENVELOPE_BAD_NAME, NULL },
};

START_TEST(test_name)
{
	const struct name_row *r = &name_rows[_i];
	struct envelope_limits lim = { 1024, r->default_task, "replies" };
	struct msg m;
	struct envelope env;

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_TYPE_FLAG, &m.p.type, r->type);
	if (r->has_header)
		msg_header(&m, "task", r->header);
	parse(&m.p, 0, &lim, zero16, &env);
	ck_assert_msg(env.error == r->error, "row %d: error %d, want %d",
	    _i, (int)env.error, (int)r->error);
	if (r->error == ENVELOPE_OK || r->error == ENVELOPE_NO_TASK)
		ck_assert_pstr_eq(env.task, r->task);
	if (env.task != NULL)
		ck_assert_msg(displayable(env.task), "row %d: task not displayable", _i);
	envelope_free(&env);
}
END_TEST

/* 255 bytes is the longest name (an AMQP short string); 256 is refused,
 * whether it came in the type property or in the header. */
START_TEST(test_name_length)
{
	static char name[257];
	struct msg m;
	struct envelope env;

	memset(name, 'a', 256);
	for (int via_header = 0; via_header < 2; via_header++) {
		for (size_t len = 255; len <= 256; len++) {
			struct sb v = { name, len };
			msg_init(&m);
			if (via_header) {
				amqp_field_value_t f = { .kind = AMQP_FIELD_KIND_UTF8 };
				f.value.bytes = bytes_of(v);
				msg_header(&m, "task", f);
			} else {
				msg_prop(&m, AMQP_BASIC_TYPE_FLAG, &m.p.type, v);
			}
			parse(&m.p, 0, &lim_default, zero16, &env);
			if (len == 255) {
				ck_assert_int_eq(env.error, ENVELOPE_OK);
				ck_assert_uint_eq(strlen(env.task), 255);
			} else {
				ck_assert_int_eq(env.error, ENVELOPE_BAD_NAME);
			}
			envelope_free(&env);
		}
	}
}
END_TEST

/* The reason for refusing a junk name is logged and sent back in a JSON
 * body: it must not carry the junk's control characters with it. */
static const struct sb junk_names[] = {
	SB("\x00\xff\x1b"),
	SB("\x1b]0;pwned\x07"),
	SB("a\r\nFAKE LOG LINE"),
	SB("\xc2\x9b" "31m"),      /* U+009B: the 8-bit CSI escape */
	SB("\xed\xa0\x80"),        /* a UTF-16 surrogate */
};

START_TEST(test_name_junk_message)
{
	struct msg m;
	struct envelope env;

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_TYPE_FLAG, &m.p.type, junk_names[_i]);
	memset(&env, 0, sizeof(env));
	ck_assert_int_eq(envelope_parse(&m.p, 0, &lim_default, zero16, &env), 0);
	/* judged before freeing, asserted after: a failure leaks nothing */
	enum envelope_error e = env.error;
	bool msg_ok = env.message != NULL && displayable(env.message);
	bool task_ok = env.task == NULL || displayable(env.task);
	envelope_free(&env);
	ck_assert_int_eq(e, ENVELOPE_BAD_NAME);
	ck_assert_msg(msg_ok, "junk %d: message has control characters", _i);
	ck_assert_msg(task_ok, "junk %d: task has control characters", _i);
}
END_TEST

/* result_build copies task and correlation_id into the reply's type and
 * correlation_id properties, AMQP short strings of at most 255 bytes, and
 * reply_to becomes the publish routing key (also a short string).  A longer
 * value cannot be encoded: the publish fails, and the message, redelivered,
 * fails it again.  So whatever the message holds, these must fit. */
static const struct short_row {
	const char *what;
	int where;          /* 0 type, 1 header task, 2 message_id */
	unsigned char fill;
	size_t len;
	char first;         /* replaces the first byte when not NUL */
} short_rows[] = {
	{ "256-byte header task", 1, 'a', 256, 0 },
	{ "10000-byte header task", 1, 'a', 10000, 0 },
	{ "255 ESC bytes as type", 0, 0x1b, 255, 0 },
	{ "255 0xff bytes as type", 0, 0xff, 255, 0 },
	{ "255 ESC bytes as message_id", 2, 0x1b, 255, 0 },
	{ "255 0xff bytes as message_id", 2, 0xff, 255, 0 },
	/* not all printable (the space), so not copied verbatim */
	{ "space and 254 quotes as message_id", 2, '"', 255, ' ' },
};

START_TEST(test_reply_fields_fit_short_strings)
{
	const struct short_row *r = &short_rows[_i];
	char *s = malloc(r->len);
	struct msg m;
	struct envelope env;

	ck_assert_ptr_nonnull(s);
	memset(s, r->fill, r->len);
	if (r->first != 0)
		s[0] = r->first;
	struct sb v = { s, r->len };
	msg_init(&m);
	if (r->where == 0) {
		msg_prop(&m, AMQP_BASIC_TYPE_FLAG, &m.p.type, v);
	} else if (r->where == 1) {
		amqp_field_value_t f = { .kind = AMQP_FIELD_KIND_UTF8 };
		f.value.bytes = bytes_of(v);
		msg_header(&m, "task", f);
	} else {
		msg_prop(&m, AMQP_BASIC_MESSAGE_ID_FLAG, &m.p.message_id, v);
	}
	parse(&m.p, 0, &lim_default, zero16, &env);
	free(s);
	size_t task_len = env.task ? strlen(env.task) : 0;
	size_t corr_len = env.correlation_len;
	size_t reply_len = env.reply_to ? strlen(env.reply_to) : 0;
	envelope_free(&env);
	ck_assert_msg(task_len <= 255, "%s: task is %zu bytes", r->what, task_len);
	ck_assert_msg(corr_len <= 255, "%s: correlation_id is %zu bytes", r->what,
	    corr_len);
	ck_assert_msg(reply_len <= 255, "%s: reply_to is %zu bytes", r->what,
	    reply_len);
}
END_TEST

/* --- task id and correlation --- */

/* The 8-4-4-4-12 lowercase hex form of RFC 4122, version 4, variant 10xx. */
static void
assert_uuid_v4(const char *s)
{
	ck_assert_msg(strlen(s) == 36, "uuid %s: length %zu", s, strlen(s));
	for (int i = 0; i < 36; i++) {
		if (i == 8 || i == 13 || i == 18 || i == 23)
			ck_assert_msg(s[i] == '-', "uuid %s: no '-' at %d", s, i);
		else
			ck_assert_msg(strchr("0123456789abcdef", s[i]) != NULL && s[i] != '\0',
			    "uuid %s: '%c' at %d", s, s[i], i);
	}
	ck_assert_msg(s[14] == '4', "uuid %s: version %c", s, s[14]);
	ck_assert_msg(strchr("89ab", s[19]) != NULL, "uuid %s: variant %c", s, s[19]);
}

/* The id is the caller's 16 bytes with only the version and variant bits
 * forced: exact strings for three patterns. */
START_TEST(test_uuid_exact)
{
	static const struct {
		unsigned char b[16];
		const char *want;
	} rows[] = {
		{ { 0 }, "00000000-0000-4000-8000-000000000000" },
		{ { 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
		    0xff, 0xff, 0xff, 0xff, 0xff },
		    "ffffffff-ffff-4fff-bfff-ffffffffffff" },
		{ { 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a,
		    0x0b, 0x0c, 0x0d, 0x0e, 0x0f },
		    "00010203-0405-4607-8809-0a0b0c0d0e0f" },
		{ { 0xde, 0xad, 0xbe, 0xef, 0xca, 0xfe, 0xba, 0xbe, 0x7f, 0x00, 0x12,
		    0x34, 0x56, 0x78, 0x9a, 0xbc },
		    "deadbeef-cafe-4abe-bf00-123456789abc" },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct envelope env;
		parse(NULL, 0, &lim_default, rows[i].b, &env);
		ck_assert_str_eq(env.task_id, rows[i].want);
		assert_uuid_v4(env.task_id);
		envelope_free(&env);
	}
}
END_TEST

/* Over many byte patterns, the format holds and every other bit is kept. */
START_TEST(test_uuid_random)
{
	uint64_t x = 0x9e3779b97f4a7c15u;
	for (int n = 0; n < 2000; n++) {
		unsigned char b[16];
		for (int i = 0; i < 16; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			b[i] = (unsigned char)x;
		}
		struct envelope env;
		parse(NULL, 0, &lim_default, b, &env);
		assert_uuid_v4(env.task_id);
		unsigned got[16];
		ck_assert_int_eq(sscanf(env.task_id,
		    "%2x%2x%2x%2x-%2x%2x-%2x%2x-%2x%2x-%2x%2x%2x%2x%2x%2x",
		    &got[0], &got[1], &got[2], &got[3], &got[4], &got[5], &got[6],
		    &got[7], &got[8], &got[9], &got[10], &got[11], &got[12], &got[13],
		    &got[14], &got[15]), 16);
		for (int i = 0; i < 16; i++) {
			unsigned keep = i == 6 ? 0x0f : i == 8 ? 0x3f : 0xff;
			ck_assert_uint_eq(got[i] & keep, b[i] & keep);
		}
		ck_assert_str_eq(env.correlation_id, env.task_id);
		envelope_free(&env);
	}
}
END_TEST

static const struct id_row {
	struct sb message_id;
	struct sb correlation_id;
	const char *task_id;         /* NULL = a generated UUID */
	const char *correlation;     /* NULL = the task id */
} id_rows[] = {
	{ SB("m-1"), SB("c-1"), "m-1", "c-1" },
	{ SB("m-1"), NONE, "m-1", NULL },
	{ SB("m-1"), SB(""), "m-1", NULL },
	{ NONE, SB("c-1"), NULL, "c-1" },
	{ SB(""), SB("c-1"), NULL, "c-1" },
	{ NONE, NONE, NULL, NULL },
	{ SB(""), SB(""), NULL, NULL },
	/* ids are opaque: copied as given, spaces and non-ASCII included */
	{ SB("order 42 / caf\xc3\xa9"), SB("{\"k\": 1}"), "order 42 / caf\xc3\xa9",
	    "{\"k\": 1}" },
	{ SB("job \"a b\""), NONE, "job \"a b\"", "job \"a b\"" },
};

START_TEST(test_ids)
{
	const struct id_row *r = &id_rows[_i];
	static const unsigned char u[16] = { 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11,
	    12, 13, 14, 15, 16 };
	struct msg m;
	struct envelope env;

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_MESSAGE_ID_FLAG, &m.p.message_id, r->message_id);
	msg_prop(&m, AMQP_BASIC_CORRELATION_ID_FLAG, &m.p.correlation_id,
	    r->correlation_id);
	parse(&m.p, 0, &lim_default, u, &env);
	/* copied out so a failure below leaks nothing */
	char task_id[256], corr[256];
	snprintf(task_id, sizeof(task_id), "%s", env.task_id);
	snprintf(corr, sizeof(corr), "%s", env.correlation_id);
	enum envelope_error e = env.error;
	/* two strings, not one shared: envelope_free frees both */
	bool shared = env.correlation_id == env.task_id;
	envelope_free(&env);
	ck_assert_int_eq(e, ENVELOPE_OK);
	ck_assert(!shared);
	const char *want_id = r->task_id != NULL ? r->task_id :
	    "01020304-0506-4708-890a-0b0c0d0e0f10";
	const char *want_corr = r->correlation != NULL ? r->correlation : want_id;
	ck_assert_str_eq(task_id, want_id);
	ck_assert_str_eq(corr, want_corr);
}
END_TEST

/* A message_id with control bytes becomes the result's taskd-task-id header
 * and appears in logs; it is made displayable, not dropped. */
START_TEST(test_message_id_junk)
{
	struct msg m;
	struct envelope env;
	static const struct sb id = SB("a\x01\x1b[2Jb\xff");

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_MESSAGE_ID_FLAG, &m.p.message_id, id);
	parse(&m.p, 0, &lim_default, zero16, &env);
	ck_assert_int_eq(env.error, ENVELOPE_OK);
	ck_assert_msg(displayable(env.task_id), "task_id %s", env.task_id);
	ck_assert_ptr_eq(strstr(env.task_id, "00000000-"), NULL);
	ck_assert_msg(env.task_id[0] == 'a', "task_id %s", env.task_id);
	envelope_free(&env);
}
END_TEST

/* The correlation goes back byte for byte: one holding a NUL must not be
 * cut to its prefix, which is another client's valid correlation. */
START_TEST(test_correlation_nul)
{
	struct msg m;
	struct envelope env;

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_CORRELATION_ID_FLAG, &m.p.correlation_id,
	    (struct sb)SB("ab\0cd"));
	parse(&m.p, 0, &lim_default, zero16, &env);
	bool same = env.correlation_len == 5 &&
	    memcmp(env.correlation_id, "ab\0cd", 5) == 0;
	envelope_free(&env);
	ck_assert_msg(same, "correlation_id \"ab\\0cd\" not copied byte for byte");
}
END_TEST

/* --- reply address --- */

static const struct reply_row {
	struct sb reply_to;
	const char *reply_queue;
	const char *want;            /* NULL = no result is sent */
	bool is_default;
} reply_rows[] = {
	{ SB("amq.rabbitmq.reply-to.g1h2AA"), "replies", "amq.rabbitmq.reply-to.g1h2AA",
	    false },
	{ SB("client-q"), "", "client-q", false },
	{ SB("client-q"), NULL, "client-q", false },
	{ NONE, "replies", "replies", true },
	{ SB(""), "replies", "replies", true },
	{ SB("replies"), "replies", "replies", true },   /* named, still the one */
	{ SB("replies2"), "replies", "replies2", false },
	{ NONE, "", NULL, false },
	{ SB(""), "", NULL, false },
	{ NONE, NULL, NULL, false },
};

START_TEST(test_reply_to)
{
	const struct reply_row *r = &reply_rows[_i];
	struct envelope_limits lim = { 1024, "echo", r->reply_queue };
	struct msg m;
	struct envelope env;

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_REPLY_TO_FLAG, &m.p.reply_to, r->reply_to);
	parse(&m.p, 0, &lim, zero16, &env);
	ck_assert_int_eq(env.error, ENVELOPE_OK);
	ck_assert_pstr_eq(env.reply_to, r->want);
	ck_assert_int_eq(env.reply_to_default, r->is_default);
	envelope_free(&env);
}
END_TEST

/* Result persistence: durable reply.queue → persistent; a client's queue
 * → as the task was; direct reply-to and server-named queues → never. */
static const struct persist_row {
	struct sb reply_to;
	const char *reply_queue;
	uint8_t delivery_mode;       /* 0 = property absent */
	bool reply_durable;
	bool want;
} persist_rows[] = {
	{ NONE, "replies", 0, true, true },
	{ NONE, "replies", 0, false, false },
	{ NONE, "replies", 2, false, false },
	{ SB("replies"), "replies", 1, true, true },
	{ SB("replies"), "replies", 2, false, false },
	{ SB("client-q"), "replies", 2, false, true },
	{ SB("client-q"), "replies", 2, true, true },
	{ SB("client-q"), "replies", 1, true, false },
	{ SB("client-q"), "replies", 0, true, false },
	{ SB("client-q"), "", 2, false, true },
	{ SB("amq.rabbitmq.reply-to.g1h2AA"), "replies", 2, true, false },
	{ SB("amq.gen-JzTY20BRgKO"), "replies", 2, true, false },
	{ NONE, "", 2, true, false },               /* no result at all */
};

START_TEST(test_result_persistent)
{
	const struct persist_row *r = &persist_rows[_i];
	struct envelope_limits lim = { 1024, "echo", r->reply_queue };
	struct msg m;
	struct envelope env;

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_REPLY_TO_FLAG, &m.p.reply_to, r->reply_to);
	if (r->delivery_mode != 0) {
		m.p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
		m.p.delivery_mode = r->delivery_mode;
	}
	parse(&m.p, 0, &lim, zero16, &env);
	ck_assert_int_eq(env.error, ENVELOPE_OK);
	ck_assert_msg(envelope_result_persistent(&env, r->reply_durable) == r->want,
	    "row %d: reply_to %s, delivery_mode %u, reply.queue durable %d: want %d",
	    _i, env.reply_to ? env.reply_to : "(none)", r->delivery_mode,
	    r->reply_durable, r->want);
	envelope_free(&env);
}
END_TEST

/* A message refused for any reason still goes back to where it asked. */
START_TEST(test_reply_to_when_rejected)
{
	struct msg m;
	struct envelope env;

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_REPLY_TO_FLAG, &m.p.reply_to, (struct sb)SB("mine"));
	msg_prop(&m, AMQP_BASIC_CORRELATION_ID_FLAG, &m.p.correlation_id,
	    (struct sb)SB("c-9"));
	parse(&m.p, 0, &lim_plain, zero16, &env);
	ck_assert_int_eq(env.error, ENVELOPE_NO_TASK);
	ck_assert_str_eq(env.reply_to, "mine");
	ck_assert_str_eq(env.correlation_id, "c-9");
	envelope_free(&env);
}
END_TEST

/* --- timeout header --- */

static const struct timeout_row {
	amqp_field_value_t v;
	double want;                 /* 0 = ENVELOPE_BAD_HEADER */
} timeout_rows[] = {
	/* every numeric kind AMQP has */
	{ { .kind = AMQP_FIELD_KIND_I8, .value.i8 = 5 }, 5 },
	{ { .kind = AMQP_FIELD_KIND_I8, .value.i8 = 127 }, 127 },
	{ { .kind = AMQP_FIELD_KIND_U8, .value.u8 = 200 }, 200 },
	{ { .kind = AMQP_FIELD_KIND_I16, .value.i16 = 300 }, 300 },
	{ { .kind = AMQP_FIELD_KIND_U16, .value.u16 = 65535 }, 65535 },
	{ { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 30 }, 30 },
	{ { .kind = AMQP_FIELD_KIND_U32, .value.u32 = 4000000000u }, 4000000000.0 },
	{ { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 7 }, 7 },
	{ { .kind = AMQP_FIELD_KIND_U64, .value.u64 = UINT64_C(1) << 40 }, 1099511627776.0 },
	{ { .kind = AMQP_FIELD_KIND_F32, .value.f32 = 1.5f }, 1.5 },
	{ { .kind = AMQP_FIELD_KIND_F64, .value.f64 = 0.25 }, 0.25 },
	{ { .kind = AMQP_FIELD_KIND_DECIMAL, .value.decimal = { 2, 150 } }, 1.5 },
	{ { .kind = AMQP_FIELD_KIND_DECIMAL, .value.decimal = { 0, 9 } }, 9 },
	{ { .kind = AMQP_FIELD_KIND_DECIMAL, .value.decimal = { 3, 1 } }, 0.001 },
	/* a decimal string, for clients that only send strings */
	{ F_STR("2.5"), 2.5 },
	{ F_STR("10"), 10 },
	{ F_BYTES("10"), 10 },
	{ F_STR("1e2"), 100 },
	/* not a positive finite number */
	{ F_STR("abc"), 0 },
	{ F_STR(""), 0 },
	{ F_STR("5s"), 0 },
	{ F_STR("5\0junk"), 0 },
	{ F_STR("0"), 0 },
	{ F_STR("-3"), 0 },
	{ F_STR("nan"), 0 },
	{ F_STR("NaN"), 0 },
	{ F_STR("inf"), 0 },
	{ F_STR("infinity"), 0 },
	{ F_STR("1e400"), 0 },
	{ { .kind = AMQP_FIELD_KIND_I8, .value.i8 = 0 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_I8, .value.i8 = -1 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_U8, .value.u8 = 0 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_I16, .value.i16 = -300 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 0 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_I32, .value.i32 = -30 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_I32, .value.i32 = INT32_MIN }, 0 },
	{ { .kind = AMQP_FIELD_KIND_I64, .value.i64 = -5 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_I64, .value.i64 = INT64_MIN }, 0 },
	{ { .kind = AMQP_FIELD_KIND_U64, .value.u64 = 0 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_F32, .value.f32 = NAN }, 0 },
	{ { .kind = AMQP_FIELD_KIND_F32, .value.f32 = INFINITY }, 0 },
	{ { .kind = AMQP_FIELD_KIND_F32, .value.f32 = -0.5f }, 0 },
	{ { .kind = AMQP_FIELD_KIND_F64, .value.f64 = NAN }, 0 },
	{ { .kind = AMQP_FIELD_KIND_F64, .value.f64 = INFINITY }, 0 },
	{ { .kind = AMQP_FIELD_KIND_F64, .value.f64 = -INFINITY }, 0 },
	{ { .kind = AMQP_FIELD_KIND_F64, .value.f64 = 0.0 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_F64, .value.f64 = -0.0 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_F64, .value.f64 = -1.0 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_DECIMAL, .value.decimal = { 2, 0 } }, 0 },
	/* not numbers at all */
	{ { .kind = AMQP_FIELD_KIND_TABLE, .value.table = { 0, NULL } }, 0 },
	{ { .kind = AMQP_FIELD_KIND_ARRAY, .value.array = { 0, NULL } }, 0 },
	{ { .kind = AMQP_FIELD_KIND_BOOLEAN, .value.boolean = 1 }, 0 },
	{ { .kind = AMQP_FIELD_KIND_VOID }, 0 },
	{ { .kind = AMQP_FIELD_KIND_TIMESTAMP, .value.u64 = 1700000000 }, 0 },
};

START_TEST(test_timeout)
{
	const struct timeout_row *r = &timeout_rows[_i];
	struct msg m;
	struct envelope env;

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_CORRELATION_ID_FLAG, &m.p.correlation_id,
	    (struct sb)SB("c-1"));
	msg_header(&m, "timeout", r->v);
	parse(&m.p, 0, &lim_default, zero16, &env);
	if (r->want > 0) {
		ck_assert_msg(env.error == ENVELOPE_OK, "row %d: error %d: %s", _i,
		    (int)env.error, env.message);
		ck_assert_double_eq_tol(env.timeout, r->want, 1e-9 * r->want);
	} else {
		ck_assert_msg(env.error == ENVELOPE_BAD_HEADER, "row %d: error %d, "
		    "timeout %g", _i, (int)env.error, env.timeout);
		ck_assert_str_eq(envelope_error_code(env.error), "bad_header");
		ck_assert_ptr_nonnull(strstr(env.message, "timeout"));
		/* still answerable under the client's correlation */
		ck_assert_str_eq(env.correlation_id, "c-1");
		ck_assert_str_eq(env.reply_to, "replies");
	}
	envelope_free(&env);
}
END_TEST

/* No header: 0, meaning the task's configured timeout applies.  Other
 * headers, and a headers table the flags do not announce, are ignored. */
START_TEST(test_timeout_absent)
{
	struct msg m;
	struct envelope env;
	amqp_field_value_t junk = { .kind = AMQP_FIELD_KIND_TABLE };
	amqp_field_value_t five = { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 5 };

	msg_init(&m);
	msg_header(&m, "x-timeout", junk);
	msg_header(&m, "Timeout", junk);
	msg_header(&m, "timeou", junk);
	parse(&m.p, 0, &lim_default, zero16, &env);
	ck_assert_int_eq(env.error, ENVELOPE_OK);
	ck_assert_double_eq(env.timeout, 0);
	envelope_free(&env);

	msg_init(&m);
	msg_header(&m, "timeout", junk);
	msg_header(&m, "task", five);
	m.p._flags &= ~AMQP_BASIC_HEADERS_FLAG;
	parse(&m.p, 0, &lim_default, zero16, &env);
	ck_assert_int_eq(env.error, ENVELOPE_OK);
	ck_assert_str_eq(env.task, "echo");
	ck_assert_double_eq(env.timeout, 0);
	envelope_free(&env);
}
END_TEST

/* --- payload size --- */

START_TEST(test_payload_limit)
{
	static const struct {
		size_t max, len;
		bool ok;
	} rows[] = {
		{ 1024, 0, true },
		{ 1024, 1024, true },
		{ 1024, 1025, false },
		{ 0, 0, true },
		{ 0, 1, false },
		{ SIZE_MAX, SIZE_MAX, true },
		{ 1024, SIZE_MAX, false },
	};
	for (size_t i = 0; i < sizeof(rows) / sizeof(rows[0]); i++) {
		struct envelope_limits lim = { rows[i].max, "echo", "replies" };
		struct envelope env;
		parse(NULL, rows[i].len, &lim, zero16, &env);
		if (rows[i].ok) {
			ck_assert_int_eq(env.error, ENVELOPE_OK);
		} else {
			ck_assert_int_eq(env.error, ENVELOPE_TOO_LARGE);
			ck_assert_str_eq(envelope_error_code(env.error), "payload_too_large");
			/* the numbers help whoever reads the reply */
			char n[32];
			snprintf(n, sizeof(n), "%zu", rows[i].len);
			ck_assert_ptr_nonnull(strstr(env.message, n));
			ck_assert_str_eq(env.task, "echo");
		}
		envelope_free(&env);
	}
}
END_TEST

/* --- a message with no properties at all --- */

START_TEST(test_null_props)
{
	struct envelope env;

	parse(NULL, 3, &lim_default, zero16, &env);
	ck_assert_int_eq(env.error, ENVELOPE_OK);
	ck_assert_str_eq(env.task, "echo");
	ck_assert_str_eq(env.task_id, "00000000-0000-4000-8000-000000000000");
	ck_assert_str_eq(env.correlation_id, env.task_id);
	ck_assert_str_eq(env.reply_to, "replies");
	ck_assert(env.reply_to_default);
	ck_assert_ptr_null(env.content_type);
	ck_assert_double_eq(env.timeout, 0);
	envelope_free(&env);

	parse(NULL, 0, &lim_plain, zero16, &env);
	ck_assert_int_eq(env.error, ENVELOPE_NO_TASK);
	ck_assert_ptr_null(env.task);
	ck_assert_str_eq(env.task_id, "00000000-0000-4000-8000-000000000000");
	envelope_free(&env);

	/* flags say nothing: the fields' bytes are not read */
	struct msg m;
	msg_init(&m);
	m.p.type = amqp_cstring_bytes("sha256");
	m.p.message_id = amqp_cstring_bytes("m-1");
	m.p.reply_to = amqp_cstring_bytes("elsewhere");
	parse(&m.p, 0, &lim_default, zero16, &env);
	ck_assert_str_eq(env.task, "echo");
	ck_assert_str_eq(env.task_id, "00000000-0000-4000-8000-000000000000");
	ck_assert_str_eq(env.reply_to, "replies");
	envelope_free(&env);
}
END_TEST

/* --- content type --- */

static const struct ctype_row {
	struct sb ct;
	const char *want;            /* NULL = dropped */
} ctype_rows[] = {
	{ SB("application/json"), "application/json" },
	{ SB("text/plain"), "text/plain" },
	/* the common form with parameters has a space: still printable */
	{ SB("application/json; charset=utf-8"), "application/json; charset=utf-8" },
	{ SB("text/plain;charset=utf-8"), "text/plain;charset=utf-8" },
	{ NONE, NULL },
	{ SB(""), NULL },
	{ SB("text/plain\r\nX-Injected: 1"), NULL },
	{ SB("text/\x1b[31mplain"), NULL },
	{ SB("text/pl\0ain"), NULL },
	{ SB("text/\xff"), NULL },
	{ SB("text/plain\x7f"), NULL },
};

START_TEST(test_content_type)
{
	const struct ctype_row *r = &ctype_rows[_i];
	struct msg m;
	struct envelope env;

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_CONTENT_TYPE_FLAG, &m.p.content_type, r->ct);
	parse(&m.p, 0, &lim_default, zero16, &env);
	enum envelope_error e = env.error;
	bool same = env.content_type == NULL ? r->want == NULL :
	    r->want != NULL && strcmp(env.content_type, r->want) == 0;
	envelope_free(&env);
	ck_assert_int_eq(e, ENVELOPE_OK);
	ck_assert_msg(same, "content_type %.*s: want %s", (int)r->ct.len,
	    r->ct.s ? r->ct.s : "(absent)", r->want ? r->want : "(dropped)");
}
END_TEST

/* --- error codes of design §4 --- */

START_TEST(test_error_codes)
{
	ck_assert_str_eq(envelope_error_code(ENVELOPE_NO_TASK), "unknown_task");
	ck_assert_str_eq(envelope_error_code(ENVELOPE_BAD_NAME), "unknown_task");
	ck_assert_str_eq(envelope_error_code(ENVELOPE_BAD_HEADER), "bad_header");
	ck_assert_str_eq(envelope_error_code(ENVELOPE_TOO_LARGE), "payload_too_large");
	/* a value from a future enum still yields a code a client can read */
	const char *c = envelope_error_code((enum envelope_error)99);
	ck_assert_ptr_nonnull(c);
	ck_assert_uint_gt(strlen(c), 0);
}
END_TEST

/* envelope_free leaves a zeroed envelope, so a second call is harmless and
 * the struct can be parsed into again. */
/* Delivery counts: x-delivery-count (the broker's) and x-taskd-deliveries
 * (ours), read from any integer kind; anything else counts as absent.  Ours
 * counts the deliveries of earlier copies, the broker's (or redelivered)
 * those of this one: they add up. */
static const struct count_row {
	amqp_field_value_t broker;   /* VOID kind = header absent */
	amqp_field_value_t own;
	bool redelivered;
	long want;
} count_rows[] = {
	{ { .kind = AMQP_FIELD_KIND_VOID }, { .kind = AMQP_FIELD_KIND_VOID }, false, 0 },
	{ { .kind = AMQP_FIELD_KIND_VOID }, { .kind = AMQP_FIELD_KIND_VOID }, true, 1 },
	{ { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 3 }, { .kind = AMQP_FIELD_KIND_VOID }, true, 3 },
	{ { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 0 }, { .kind = AMQP_FIELD_KIND_VOID }, false, 0 },
	{ { .kind = AMQP_FIELD_KIND_VOID }, { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 4 }, false, 4 },
	{ { .kind = AMQP_FIELD_KIND_VOID }, { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 4 }, true, 5 },
	{ { .kind = AMQP_FIELD_KIND_U8, .value.u8 = 9 }, { .kind = AMQP_FIELD_KIND_I16, .value.i16 = 2 }, true, 11 },
	/* a quorum queue's copy handed back with 2: the broker starts at 0 */
	{ { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 0 }, { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 2 }, false, 2 },
	{ { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 2 }, { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 2 }, true, 4 },
	{ { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 1 }, { .kind = AMQP_FIELD_KIND_I32, .value.i32 = 6 }, true, 7 },
	/* a client cannot lower a count, nor overflow one */
	{ { .kind = AMQP_FIELD_KIND_I64, .value.i64 = -100 }, { .kind = AMQP_FIELD_KIND_I64, .value.i64 = -100 }, true, 1 },
	{ { .kind = AMQP_FIELD_KIND_F64, .value.f64 = 2.5 }, F_STR("7"), true, 1 },
	{ { .kind = AMQP_FIELD_KIND_VOID }, { .kind = AMQP_FIELD_KIND_I64, .value.i64 = INT64_MAX }, true, 1000000001 },
	{ { .kind = AMQP_FIELD_KIND_U64, .value.u64 = UINT64_MAX }, { .kind = AMQP_FIELD_KIND_VOID }, false, 1000000000 },
};

START_TEST(test_delivery_counts)
{
	const struct count_row *r = &count_rows[_i];
	struct msg m;
	struct envelope env;

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_TYPE_FLAG, &m.p.type, (struct sb)SB("echo"));
	if (r->broker.kind != AMQP_FIELD_KIND_VOID)
		msg_header(&m, "x-delivery-count", r->broker);
	if (r->own.kind != AMQP_FIELD_KIND_VOID)
		msg_header(&m, ENVELOPE_TASKD_COUNT, r->own);
	parse(&m.p, 0, &lim_default, zero16, &env);
	ck_assert_msg(env.error == ENVELOPE_OK, "row %d: %s", _i, env.message);
	ck_assert_msg(envelope_deliveries(&env, r->redelivered) == r->want,
	    "row %d: %ld deliveries, want %ld", _i,
	    envelope_deliveries(&env, r->redelivered), r->want);
	envelope_free(&env);
}
END_TEST

/* The copy that goes back to the queue: every property as it was, in
 * memory of its own (the delivery's is recycled), both counts replaced by
 * ours, other headers kept. */
START_TEST(test_recount_copy)
{
	struct msg m;
	amqp_field_value_t old = { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 2 };
	amqp_field_value_t xdc = { .kind = AMQP_FIELD_KIND_I64, .value.i64 = 7 };
	amqp_pool_t pool;
	amqp_basic_properties_t out;
	char type[] = "echo", mid[] = "m-1", rto[] = "replies", task[] = "sha256";
	amqp_field_value_t th = { .kind = AMQP_FIELD_KIND_UTF8,
	    .value.bytes = { sizeof(task) - 1, task } };

	msg_init(&m);
	msg_prop(&m, AMQP_BASIC_TYPE_FLAG, &m.p.type, (struct sb){ type, 4 });
	msg_prop(&m, AMQP_BASIC_MESSAGE_ID_FLAG, &m.p.message_id, (struct sb){ mid, 3 });
	msg_prop(&m, AMQP_BASIC_REPLY_TO_FLAG, &m.p.reply_to, (struct sb){ rto, 7 });
	m.p._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG | AMQP_BASIC_PRIORITY_FLAG;
	m.p.delivery_mode = 2;
	m.p.priority = 3;
	msg_header(&m, ENVELOPE_TASKD_COUNT, old);
	msg_header(&m, "task", th);
	msg_header(&m, "x-delivery-count", xdc);

	init_amqp_pool(&pool, 512);
	ck_assert_int_eq(envelope_recount(&m.p, 3, &pool, &out), 0);
	/* Scribble over the source: the copy must not share its bytes. */
	memset(type, 'X', 4);
	memset(mid, 'X', 3);
	memset(task, 'X', 6);
	ck_assert_uint_eq(out.type.len, 4);
	ck_assert(memcmp(out.type.bytes, "echo", 4) == 0);
	ck_assert(memcmp(out.message_id.bytes, "m-1", 3) == 0);
	ck_assert(memcmp(out.reply_to.bytes, "replies", 7) == 0);
	ck_assert_int_eq(out.delivery_mode, 2);
	ck_assert_int_eq(out.priority, 3);
	ck_assert(out._flags & AMQP_BASIC_HEADERS_FLAG);
	ck_assert_int_eq(out.headers.num_entries, 2);
	ck_assert(memcmp(out.headers.entries[0].key.bytes, "task", 4) == 0);
	ck_assert(memcmp(out.headers.entries[0].value.value.bytes.bytes, "sha256", 6) == 0);
	const amqp_table_entry_t *e = &out.headers.entries[1];
	ck_assert_uint_eq(e->key.len, strlen(ENVELOPE_TASKD_COUNT));
	ck_assert(memcmp(e->key.bytes, ENVELOPE_TASKD_COUNT, e->key.len) == 0);
	ck_assert_int_eq(e->value.kind, AMQP_FIELD_KIND_I64);
	ck_assert_int_eq(e->value.value.i64, 3);

	/* Read back, it counts 3 (4 once redelivered), not the broker's 7. */
	struct envelope env;
	parse(&out, 0, &lim_default, zero16, &env);
	ck_assert_int_eq(envelope_deliveries(&env, false), 3);
	ck_assert_int_eq(envelope_deliveries(&env, true), 4);
	envelope_free(&env);
	empty_amqp_pool(&pool);

	/* A message without properties gets just the header. */
	init_amqp_pool(&pool, 512);
	ck_assert_int_eq(envelope_recount(NULL, 1, &pool, &out), 0);
	ck_assert_int_eq(out._flags, AMQP_BASIC_HEADERS_FLAG);
	ck_assert_int_eq(out.headers.num_entries, 1);
	ck_assert_int_eq(out.headers.entries[0].value.value.i64, 1);
	empty_amqp_pool(&pool);
}
END_TEST

START_TEST(test_free_twice)
{
	struct envelope env;

	parse(NULL, 0, &lim_default, zero16, &env);
	envelope_free(&env);
	ck_assert_ptr_null(env.task);
	ck_assert_ptr_null(env.task_id);
	ck_assert_ptr_null(env.reply_to);
	envelope_free(&env);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("envelope");
	TCase *tc = tcase_create("parse");

	tcase_add_loop_test(tc, test_name, 0, NROWS(name_rows));
	tcase_add_test(tc, test_name_length);
	tcase_add_loop_test(tc, test_name_junk_message, 0, NROWS(junk_names));
	tcase_add_loop_test(tc, test_reply_fields_fit_short_strings, 0,
	    NROWS(short_rows));
	tcase_add_test(tc, test_uuid_exact);
	tcase_add_test(tc, test_uuid_random);
	tcase_add_loop_test(tc, test_ids, 0, NROWS(id_rows));
	tcase_add_test(tc, test_message_id_junk);
	tcase_add_test(tc, test_correlation_nul);
	tcase_add_loop_test(tc, test_reply_to, 0, NROWS(reply_rows));
	tcase_add_test(tc, test_reply_to_when_rejected);
	tcase_add_loop_test(tc, test_result_persistent, 0, NROWS(persist_rows));
	tcase_add_loop_test(tc, test_timeout, 0, NROWS(timeout_rows));
	tcase_add_test(tc, test_timeout_absent);
	tcase_add_test(tc, test_payload_limit);
	tcase_add_test(tc, test_null_props);
	tcase_add_loop_test(tc, test_content_type, 0, NROWS(ctype_rows));
	tcase_add_test(tc, test_error_codes);
	tcase_add_test(tc, test_free_twice);
	tcase_add_loop_test(tc, test_delivery_counts, 0, NROWS(count_rows));
	tcase_add_test(tc, test_recount_copy);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
