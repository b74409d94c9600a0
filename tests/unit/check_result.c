#include <check.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <amqp.h>
#include <amqp_framing.h>
#include <jansson.h>

#include "buf.h"
#include "result.h"

#define NROWS(a) ((int)(sizeof(a) / sizeof((a)[0])))

/* Bytes with a length, so rows can hold NULs. */
struct sb {
	const char *s;
	size_t len;
};
#define SB(x) { (x), sizeof(x) - 1 }

/* ---------------------------------------------------------------------
 * The oracle is jansson, a JSON parser written apart from buf.c: the tests
 * check "a JSON parser accepts it and reads back this text" rather than
 * only comparing bytes.  jansson follows RFC 8259: no raw control
 * characters in strings, only the listed escapes, UTF-8 text, no lone
 * surrogates.
 */

/* Whether s[0..n) is UTF-8 (no overlong forms, surrogates or values past
 * U+10FFFF), as jansson judges a string it is given. */
static bool
valid_utf8(const void *s, size_t n)
{
	json_t *j = json_stringn(s, n);
	json_decref(j);
	return j != NULL;
}

static void
take_string(json_t *v, struct buf *out)
{
	/* "" decodes to a string too, never to NULL */
	ck_assert_int_eq(buf_reserve(out, 0), 0);
	ck_assert_int_eq(buf_append(out, json_string_value(v), json_string_length(v)), 0);
}

/* Accepts exactly {"error": <string>, "message": <string>}, with nothing
 * after it, and hands back both strings decoded. */
static bool
json_error_body(const char *s, size_t n, struct buf *code, struct buf *msg)
{
	json_error_t err;
	json_t *o = json_loadb(s, n, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &err);
	json_t *c = json_object_get(o, "error"), *m = json_object_get(o, "message");
	bool ok = json_is_object(o) && json_object_size(o) == 2 &&
	    json_is_string(c) && json_is_string(m);
	if (ok) {
		take_string(c, code);
		take_string(m, msg);
	}
	json_decref(o);
	return ok;
}

/* The oracle must refuse what is not JSON, or the tests that rely on it
 * prove nothing. */
START_TEST(test_validator)
{
	static const struct sb bad[] = {
		SB("{\"error\": \"x\", \"message\": \"a\nb\"}"),
		SB("{\"error\": \"x\", \"message\": \"a\\qb\"}"),
		SB("{\"error\": \"x\", \"message\": \"\\ud800\"}"),
		SB("{\"error\": \"x\", \"message\": \"\\udc00\"}"),
		SB("{\"error\": \"x\", \"message\": \"\xff\"}"),
		SB("{\"error\": \"x\", \"message\": \"\xc0\xaf\"}"),
		SB("{\"error\": \"x\", \"message\": \"\\u12\"}"),
		SB("{\"error\": \"x\", \"message\": \"a\"} x"),
		SB("{\"error\": \"x\", \"message\": \"a}"),
		SB("{\"error\": \"x\" \"message\": \"a\"}"),
		SB("{\"error\": \"x\", \"message\": \"a\\\"}"),
		SB("{\"error\": \"x\", \"message\": \"a\0\"}"),
		SB("{\"err\": \"x\", \"message\": \"a\"}"),
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct buf c = { 0 }, m = { 0 };
		bool ok = json_error_body(bad[i].s, bad[i].len, &c, &m);
		buf_free(&c);
		buf_free(&m);
		ck_assert_msg(!ok, "validator accepted bad row %zu", i);
	}

	static const char good[] =
	    "{\"error\":\"x\",\"message\":\"\\ud83d\\ude00 \\u00e9\\n\\/\"}";
	struct buf c = { 0 }, m = { 0 };
	ck_assert(json_error_body(good, sizeof(good) - 1, &c, &m));
	ck_assert_str_eq(c.data, "x");
	ck_assert_str_eq(m.data, "\xf0\x9f\x98\x80 \xc3\xa9\n/");
	buf_free(&c);
	buf_free(&m);
}
END_TEST

/* ---------------------------------------------------------------------
 * result_error_body
 */

static const struct body_row {
	const char *message;
	const char *body;      /* exact output */
	const char *decoded;   /* what a JSON parser reads back */
} body_rows[] = {
	{ "no task named 'x' is configured",
	    "{\"error\": \"unknown_task\", \"message\": \"no task named 'x' is configured\"}",
	    "no task named 'x' is configured" },
	{ "", "{\"error\": \"unknown_task\", \"message\": \"\"}", "" },
	{ "say \"hi\"", "{\"error\": \"unknown_task\", \"message\": \"say \\\"hi\\\"\"}",
	    "say \"hi\"" },
	{ "C:\\dir\\", "{\"error\": \"unknown_task\", \"message\": \"C:\\\\dir\\\\\"}",
	    "C:\\dir\\" },
	{ "\"}, \"error\": \"ok",
	    "{\"error\": \"unknown_task\", \"message\": \"\\\"}, \\\"error\\\": \\\"ok\"}",
	    "\"}, \"error\": \"ok" },
	{ "a\nb\tc\r\x01\x1b[31m\x1f\x7f",
	    "{\"error\": \"unknown_task\", \"message\": "
	    "\"a\\u000ab\\u0009c\\u000d\\u0001\\u001b[31m\\u001f\\u007f\"}",
	    "a\nb\tc\r\x01\x1b[31m\x1f\x7f" },
	{ "bad \xff\xfe bytes",
	    "{\"error\": \"unknown_task\", \"message\": \"bad \\ufffd\\ufffd bytes\"}",
	    "bad \xef\xbf\xbd\xef\xbf\xbd bytes" },
	{ "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
	    "{\"error\": \"unknown_task\", \"message\": \"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"}",
	    "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
	{ "cut \xe2\x82",
	    "{\"error\": \"unknown_task\", \"message\": \"cut \\ufffd\\ufffd\"}",
	    "cut \xef\xbf\xbd\xef\xbf\xbd" },
	{ "</script>\\u0000",
	    "{\"error\": \"unknown_task\", \"message\": \"</script>\\\\u0000\"}",
	    "</script>\\u0000" },
};

START_TEST(test_error_body)
{
	const struct body_row *r = &body_rows[_i];
	struct buf out = { 0 }, code = { 0 }, msg = { 0 };

	ck_assert_int_eq(result_error_body(&out, "unknown_task", r->message), 0);
	ck_assert_str_eq(out.data, r->body);
	ck_assert_uint_eq(out.len, strlen(r->body));
	ck_assert_msg(json_error_body(out.data, out.len, &code, &msg),
	    "not a valid error body: %s", out.data);
	ck_assert_str_eq(code.data, "unknown_task");
	ck_assert_uint_eq(msg.len, strlen(r->decoded));
	ck_assert_mem_eq(msg.data, r->decoded, msg.len);
	buf_free(&out);
	buf_free(&code);
	buf_free(&msg);
}
END_TEST

/* The code is escaped as well, and the body is appended after whatever the
 * buffer already held. */
START_TEST(test_error_body_code_and_append)
{
	struct buf out = { 0 };

	ck_assert_int_eq(buf_puts(&out, "prefix:"), 0);
	ck_assert_int_eq(result_error_body(&out, "we\"ird\\", "m"), 0);
	ck_assert_str_eq(out.data,
	    "prefix:{\"error\": \"we\\\"ird\\\\\", \"message\": \"m\"}");
	buf_free(&out);
}
END_TEST

/* Random hostile text: every body parses, and text that was valid UTF-8
 * reads back unchanged. */
START_TEST(test_error_body_random)
{
	uint64_t x = 0x243f6a8885a308d3u;
	for (int n = 0; n < 5000; n++) {
		char msg[80];
		x ^= x << 13, x ^= x >> 7, x ^= x << 17;
		size_t len = x % (sizeof(msg) - 1);
		for (size_t i = 0; i < len; i++) {
			x ^= x << 13, x ^= x >> 7, x ^= x << 17;
			/* mostly the bytes that need care, not plain letters */
			static const char pick[] = "\"\\\x01\x1f\x7f\x80\xbf\xc2\xa9\xe2\x82"
			    "\xac\xed\xa0\xf0\x9f\x98\xf4\x90\xff a";
			msg[i] = (x >> 32) % 3 == 0 ? (char)(1 + (x >> 8) % 255) :
			    pick[(x >> 16) % (sizeof(pick) - 1)];
		}
		msg[len] = '\0';

		struct buf out = { 0 }, code = { 0 }, dec = { 0 };
		ck_assert_int_eq(result_error_body(&out, "handler_failed", msg), 0);
		bool ok = json_error_body(out.data, out.len, &code, &dec);
		bool same = dec.len == len && memcmp(dec.data, msg, len) == 0;
		bool was_utf8 = valid_utf8(msg, len);
		buf_free(&out);
		buf_free(&code);
		buf_free(&dec);
		ck_assert_msg(ok, "iteration %d: invalid JSON", n);
		if (was_utf8)
			ck_assert_msg(same, "iteration %d: valid UTF-8 not kept", n);
	}
}
END_TEST

/* ---------------------------------------------------------------------
 * buf_json_string
 */

static const struct json_row {
	struct sb in;
	const char *out;
} json_rows[] = {
	{ SB(""), "" },
	{ SB("plain text 123"), "plain text 123" },
	{ SB("\""), "\\\"" },
	{ SB("\\"), "\\\\" },
	{ SB("/"), "/" },
	{ SB("\0"), "\\u0000" },
	{ SB("a\0b"), "a\\u0000b" },
	{ SB("\n\t\r\b\f"), "\\u000a\\u0009\\u000d\\u0008\\u000c" },
	{ SB("\x1f\x20\x7e\x7f"), "\\u001f ~\\u007f" },
	/* valid UTF-8 is kept, 2, 3 and 4 bytes, up to U+10FFFF (U+0080..U+009F
	 * are left out: escaping those C1 controls would be as right) */
	{ SB("\xc2\xa0"), "\xc2\xa0" },
	{ SB("\xc3\xa9"), "\xc3\xa9" },
	{ SB("\xdf\xbf"), "\xdf\xbf" },
	{ SB("\xe0\xa0\x80"), "\xe0\xa0\x80" },
	{ SB("\xe2\x82\xac"), "\xe2\x82\xac" },
	{ SB("\xe2\x80\xa8"), "\xe2\x80\xa8" },    /* U+2028 is legal in JSON */
	{ SB("\xed\x9f\xbf"), "\xed\x9f\xbf" },    /* U+D7FF, below the surrogates */
	{ SB("\xee\x80\x80"), "\xee\x80\x80" },    /* U+E000, above them */
	{ SB("\xef\xbf\xbf"), "\xef\xbf\xbf" },
	{ SB("\xf0\x90\x80\x80"), "\xf0\x90\x80\x80" },
	{ SB("\xf0\x9f\x98\x80"), "\xf0\x9f\x98\x80" },
	{ SB("\xf4\x8f\xbf\xbf"), "\xf4\x8f\xbf\xbf" },
	/* overlong encodings: each byte is junk */
	{ SB("\xc0\xaf"), "\\ufffd\\ufffd" },
	{ SB("\xc1\xbf"), "\\ufffd\\ufffd" },
	{ SB("\xc0\x80"), "\\ufffd\\ufffd" },
	{ SB("\xe0\x80\xaf"), "\\ufffd\\ufffd\\ufffd" },
	{ SB("\xe0\x9f\xbf"), "\\ufffd\\ufffd\\ufffd" },
	{ SB("\xf0\x80\x80\xaf"), "\\ufffd\\ufffd\\ufffd\\ufffd" },
	{ SB("\xf0\x8f\xbf\xbf"), "\\ufffd\\ufffd\\ufffd\\ufffd" },
	/* UTF-16 surrogates are not UTF-8 */
	{ SB("\xed\xa0\x80"), "\\ufffd\\ufffd\\ufffd" },
	{ SB("\xed\xbf\xbf"), "\\ufffd\\ufffd\\ufffd" },
	{ SB("\xed\xa0\xbd\xed\xb8\x80"),
	    "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd" },
	/* past U+10FFFF, and bytes that never start anything */
	{ SB("\xf4\x90\x80\x80"), "\\ufffd\\ufffd\\ufffd\\ufffd" },
	{ SB("\xf5\x80\x80\x80"), "\\ufffd\\ufffd\\ufffd\\ufffd" },
	{ SB("\xf8\x88\x80\x80\x80"), "\\ufffd\\ufffd\\ufffd\\ufffd\\ufffd" },
	{ SB("\xfe\xff"), "\\ufffd\\ufffd" },
	{ SB("\x80"), "\\ufffd" },
	{ SB("\xbf\x80"), "\\ufffd\\ufffd" },
	/* truncated sequences, at the end and before ASCII */
	{ SB("\xc3"), "\\ufffd" },
	{ SB("a\xc3"), "a\\ufffd" },
	{ SB("\xe2\x82"), "\\ufffd\\ufffd" },
	{ SB("\xf0\x9f\x98"), "\\ufffd\\ufffd\\ufffd" },
	{ SB("\xe2\x82x"), "\\ufffd\\ufffdx" },
	{ SB("\xc3(\xc3\xa9"), "\\ufffd(\xc3\xa9" },
	{ SB("\xf0\x9f\"\x98\x80"), "\\ufffd\\ufffd\\\"\\ufffd\\ufffd" },
	{ SB("\xe2\x82\n"), "\\ufffd\\ufffd\\u000a" },
};

START_TEST(test_json_string)
{
	const struct json_row *r = &json_rows[_i];
	/* An exact-size copy, so a read past the end shows under ASan. */
	char *in = malloc(r->in.len ? r->in.len : 1);
	struct buf b = { 0 };

	ck_assert_ptr_nonnull(in);
	memcpy(in, r->in.s, r->in.len);
	ck_assert_int_eq(buf_json_string(&b, in, r->in.len), 0);
	free(in);
	ck_assert_msg(b.len == strlen(r->out) && memcmp(b.data ? b.data : "", r->out,
	    b.len) == 0, "row %d: got \"%s\", want \"%s\"", _i, b.data ? b.data : "",
	    r->out);
	/* whatever came in, what goes out is UTF-8 without control bytes */
	ck_assert(valid_utf8(b.data ? b.data : "", b.len));
	for (size_t i = 0; i < b.len; i++)
		ck_assert((unsigned char)b.data[i] >= 0x20 && b.data[i] != 0x7f);
	buf_free(&b);
}
END_TEST

/* ---------------------------------------------------------------------
 * buf
 */

/* The first allocation is 64 bytes: strings on either side of it, then
 * many small appends, must come out whole and NUL-terminated. */
START_TEST(test_printf_growth)
{
	static const size_t lens[] = { 0, 1, 62, 63, 64, 65, 127, 128, 129, 1000, 5000 };
	for (size_t i = 0; i < sizeof(lens) / sizeof(lens[0]); i++) {
		size_t n = lens[i];
		char *s = malloc(n + 1);
		ck_assert_ptr_nonnull(s);
		for (size_t j = 0; j < n; j++)
			s[j] = (char)('a' + j % 26);
		s[n] = '\0';

		struct buf b = { 0 };
		ck_assert_int_eq(buf_printf(&b, "%s", s), 0);
		ck_assert_uint_eq(b.len, n);
		ck_assert_ptr_nonnull(b.data);
		ck_assert_str_eq(b.data, s);
		ck_assert_uint_gt(b.cap, b.len);
		/* once more, starting mid-buffer */
		ck_assert_int_eq(buf_printf(&b, "<%s|%d>", s, (int)n), 0);
		ck_assert_uint_eq(b.len, 2 * n + 3 + (size_t)snprintf(NULL, 0, "%d", (int)n));
		ck_assert_mem_eq(b.data, s, n);
		ck_assert_int_eq(b.data[n], '<');
		ck_assert_mem_eq(b.data + n + 1, s, n);
		ck_assert_int_eq(b.data[b.len], '\0');
		ck_assert_uint_gt(b.cap, b.len);
		buf_free(&b);
		free(s);
	}

	/* 60 bytes in, then a format that crosses the 64-byte boundary */
	struct buf b = { 0 };
	ck_assert_int_eq(buf_append(&b, "xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx", 60), 0);
	ck_assert_int_eq(buf_printf(&b, "%08x-%s", 0xdeadbeefu, "tail"), 0);
	ck_assert_str_eq(b.data + 60, "deadbeef-tail");
	ck_assert_uint_eq(b.len, 73);
	buf_free(&b);

	/* 2000 small appends equal one snprintf of the same text */
	char want[16000];
	size_t wl = 0;
	for (int i = 0; i < 2000; i++) {
		ck_assert_int_eq(buf_printf(&b, "%d,", i), 0);
		wl += (size_t)snprintf(want + wl, sizeof(want) - wl, "%d,", i);
	}
	ck_assert_uint_eq(b.len, wl);
	ck_assert_str_eq(b.data, want);
	buf_free(&b);

	/* "%c" of NUL: counted, and the buffer still ends in one */
	ck_assert_int_eq(buf_printf(&b, "a%cb", 0), 0);
	ck_assert_uint_eq(b.len, 3);
	ck_assert_mem_eq(b.data, "a\0b", 4);
	buf_free(&b);
}
END_TEST

START_TEST(test_steal)
{
	struct buf b = { 0 };
	size_t len = 99;

	/* never appended to: still a string the caller can use and free */
	char *s = buf_steal(&b, &len);
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s, "");
	ck_assert_uint_eq(len, 0);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
	free(s);

	/* len may be NULL */
	s = buf_steal(&b, NULL);
	ck_assert_ptr_nonnull(s);
	ck_assert_str_eq(s, "");
	free(s);

	/* emptied by reset: "" again, not the old bytes */
	ck_assert_int_eq(buf_puts(&b, "old"), 0);
	buf_reset(&b);
	s = buf_steal(&b, &len);
	ck_assert_str_eq(s, "");
	ck_assert_uint_eq(len, 0);
	free(s);

	/* bytes with a NUL inside: len tells the whole length */
	ck_assert_int_eq(buf_append(&b, "ab\0cd", 5), 0);
	s = buf_steal(&b, &len);
	ck_assert_uint_eq(len, 5);
	ck_assert_mem_eq(s, "ab\0cd", 6);
	ck_assert_ptr_null(b.data);
	/* the buffer is reusable and independent of the stolen bytes */
	ck_assert_int_eq(buf_puts(&b, "new"), 0);
	ck_assert_str_eq(b.data, "new");
	ck_assert_mem_eq(s, "ab\0cd", 6);
	free(s);
	buf_free(&b);
}
END_TEST

START_TEST(test_reserve_reset_free)
{
	struct buf b = { 0 };

	ck_assert_int_eq(buf_reserve(&b, 0), 0);
	ck_assert_ptr_nonnull(b.data);
	ck_assert_str_eq(b.data, "");
	ck_assert_int_eq(buf_reserve(&b, 1000), 0);
	ck_assert_uint_ge(b.cap, 1001);
	ck_assert_uint_eq(b.len, 0);

	ck_assert_int_eq(buf_append(&b, NULL, 0), 0);
	ck_assert_int_eq(buf_puts(&b, "hello"), 0);
	ck_assert_int_eq(buf_puts(&b, ""), 0);
	ck_assert_str_eq(b.data, "hello");
	size_t cap = b.cap;

	/* reset empties but keeps the memory for reuse */
	buf_reset(&b);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_str_eq(b.data, "");
	ck_assert_uint_eq(b.cap, cap);
	buf_free(&b);
	ck_assert_ptr_null(b.data);
	ck_assert_uint_eq(b.len, 0);
	ck_assert_uint_eq(b.cap, 0);
	buf_free(&b);       /* twice is harmless */
	buf_reset(&b);      /* and so is resetting a freed buffer */
	ck_assert_ptr_null(b.data);
}
END_TEST

/* A size no memory can hold fails, and the buffer keeps what it had.
 * len + extra + 1 must not wrap around to something that "fits": that
 * would let buf_append copy SIZE_MAX bytes into a 64-byte buffer. */
START_TEST(test_reserve_overflow)
{
	static const size_t extras[] = { SIZE_MAX, SIZE_MAX - 1, SIZE_MAX - 5,
	    SIZE_MAX - 64, SIZE_MAX / 2 + 1 };
	for (size_t i = 0; i < sizeof(extras) / sizeof(extras[0]); i++) {
		struct buf b = { 0 };
		/* both with no memory yet and with some */
		ck_assert_int_eq(buf_reserve(&b, extras[i]), -1);
		ck_assert_ptr_null(b.data);
		ck_assert_int_eq(buf_puts(&b, "hello"), 0);
		char *before = b.data;
		size_t cap = b.cap;
		int rc = buf_reserve(&b, extras[i]);
		bool kept = b.data == before && b.cap == cap && b.len == 5 &&
		    strcmp(b.data, "hello") == 0;
		buf_free(&b);
		ck_assert_msg(rc == -1, "buf_reserve(len 5, cap %zu, extra SIZE_MAX - %zu) "
		    "returned %d", cap, SIZE_MAX - extras[i], rc);
		ck_assert(kept);
	}
}
END_TEST

/* ---------------------------------------------------------------------
 * base64 (RFC 4648 §10 test vectors, then round trips of every length)
 */

static const struct b64_row {
	const char *plain;
	const char *coded;
} b64_rows[] = {
	{ "", "" }, { "f", "Zg==" }, { "fo", "Zm8=" }, { "foo", "Zm9v" },
	{ "foob", "Zm9vYg==" }, { "fooba", "Zm9vYmE=" }, { "foobar", "Zm9vYmFy" },
};

START_TEST(test_base64_vectors)
{
	const struct b64_row *r = &b64_rows[_i];
	struct buf b = { 0 };

	ck_assert_int_eq(buf_base64(&b, r->plain, strlen(r->plain)), 0);
	ck_assert_uint_eq(b.len, strlen(r->coded));
	ck_assert(b.len == 0 || strcmp(b.data, r->coded) == 0);
	buf_reset(&b);
	ck_assert_int_eq(buf_unbase64(&b, r->coded, strlen(r->coded)), 0);
	ck_assert_uint_eq(b.len, strlen(r->plain));
	ck_assert(b.len == 0 || memcmp(b.data, r->plain, b.len) == 0);
	buf_free(&b);
}
END_TEST

START_TEST(test_base64_round_trip)
{
	unsigned char in[300];
	for (size_t i = 0; i < sizeof(in); i++)
		in[i] = (unsigned char)(255 - i * 7);
	for (size_t n = 0; n <= sizeof(in); n++) {
		struct buf coded = { 0 }, back = { 0 };
		ck_assert_int_eq(buf_puts(&back, "keep:"), 0);   /* appends */
		ck_assert_int_eq(buf_base64(&coded, in, n), 0);
		ck_assert_uint_eq(coded.len, (n + 2) / 3 * 4);
		ck_assert_int_eq(buf_unbase64(&back, coded.data ? coded.data : "",
		    coded.len), 0);
		ck_assert_uint_eq(back.len, 5 + n);
		ck_assert(memcmp(back.data, "keep:", 5) == 0);
		ck_assert(n == 0 || memcmp(back.data + 5, in, n) == 0);
		buf_free(&coded);
		buf_free(&back);
	}
}
END_TEST

/* Text that is not base64 is refused whole, and the buffer keeps what it
 * had. */
START_TEST(test_base64_refused)
{
	static const char *const bad[] = {
		"Zg=", "Zm9", "Z", "Zg=a", "Z===", "====", "Zm9v\n", "Zm 9v",
		"Zm9-", "Zm9_", "Zg==Zg==", "Zh==", "Zm9=", "Zm8=Zm8=", "\xc3\xa9" "AA",
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct buf b = { 0 };
		ck_assert_int_eq(buf_puts(&b, "kept"), 0);
		int rc = buf_unbase64(&b, bad[i], strlen(bad[i]));
		ck_assert_msg(rc == -2, "\"%s\" decoded (rc %d)", bad[i], rc);
		ck_assert_uint_eq(b.len, 4);
		ck_assert_str_eq(b.data, "kept");
		buf_free(&b);
	}
}
END_TEST

/* ---------------------------------------------------------------------
 * result_build
 */

static const amqp_table_entry_t *
header(const amqp_basic_properties_t *p, const char *key)
{
	const amqp_table_entry_t *found = NULL;
	size_t kl = strlen(key);
	for (int i = 0; i < p->headers.num_entries; i++) {
		const amqp_table_entry_t *e = &p->headers.entries[i];
		if (e->key.len == kl && memcmp(e->key.bytes, key, kl) == 0) {
			ck_assert_msg(found == NULL, "header %s twice", key);
			found = e;
		}
	}
	ck_assert_msg(found != NULL, "header %s missing", key);
	return found;
}

static void
assert_bytes(amqp_bytes_t b, const char *want)
{
	ck_assert_msg(b.len == strlen(want) && memcmp(b.bytes, want, b.len) == 0,
	    "got \"%.*s\", want \"%s\"", (int)b.len, (const char *)b.bytes, want);
}

static void
assert_str_header(const amqp_basic_properties_t *p, const char *key, const char *want)
{
	const amqp_table_entry_t *e = header(p, key);
	ck_assert_msg(e->value.kind == AMQP_FIELD_KIND_UTF8, "%s: kind '%c'", key,
	    e->value.kind);
	assert_bytes(e->value.value.bytes, want);
}

/* Every property the reply has, checked against info: exactly these flags,
 * and these values. */
static void
assert_result(const amqp_basic_properties_t *p, const struct result_info *in)
{
	const char *ctype = in->status == RESULT_OK ? in->content_type :
	    "application/json";
	amqp_flags_t want = AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
	    AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
	    AMQP_BASIC_HEADERS_FLAG;
	if (in->task != NULL)
		want |= AMQP_BASIC_TYPE_FLAG;
	if (ctype != NULL)
		want |= AMQP_BASIC_CONTENT_TYPE_FLAG;
	ck_assert_msg(p->_flags == want, "flags %#x, want %#x", (unsigned)p->_flags,
	    (unsigned)want);

	assert_bytes(p->correlation_id, in->correlation_id);
	if (in->task != NULL)
		assert_bytes(p->type, in->task);
	if (ctype != NULL)
		assert_bytes(p->content_type, ctype);
	ck_assert_uint_eq(p->timestamp, (uint64_t)in->timestamp);
	assert_bytes(p->app_id, "taskd");
	ck_assert_uint_eq(p->delivery_mode, in->persistent ? 2 : 1);

	ck_assert_int_eq(p->headers.num_entries, 5);
	assert_str_header(p, "taskd-status", result_status_name(in->status));
	assert_str_header(p, "taskd-task-id", in->task_id);
	assert_str_header(p, "taskd-worker", in->node_id);
	const amqp_table_entry_t *e = header(p, "taskd-attempt");
	ck_assert_int_eq(e->value.kind, AMQP_FIELD_KIND_I32);
	ck_assert_int_eq(e->value.value.i32, in->attempt);
	e = header(p, "taskd-duration-us");
	ck_assert_int_eq(e->value.kind, AMQP_FIELD_KIND_I64);
	ck_assert_int_eq(e->value.value.i64, in->duration_us);
}

static const struct build_row {
	enum result_status status;
	const char *status_name;
	const char *task;
	const char *content_type;
	bool persistent;
} build_rows[] = {
	{ RESULT_OK, "ok", "echo", "text/plain", true },
	{ RESULT_OK, "ok", "echo", "text/plain", false },
	{ RESULT_OK, "ok", "sha256", NULL, true },          /* no content type */
	{ RESULT_OK, "ok", NULL, "application/octet-stream", false },
	{ RESULT_ERROR, "error", "echo", "text/plain", true },  /* JSON, not the handler's */
	{ RESULT_ERROR, "error", "echo", NULL, false },
	{ RESULT_TIMEOUT, "timeout", "sleep", NULL, true },
	{ RESULT_REJECTED, "rejected", NULL, "text/plain", false },
	{ RESULT_REJECTED, "rejected", "nosuch", NULL, true },
};

START_TEST(test_build)
{
	const struct build_row *r = &build_rows[_i];
	struct result_info in = {
		.status = r->status,
		.task = r->task,
		.task_id = "0b6c1f5e-8a3d-4f2a-9c1e-2d7b5a4e3f10",
		.correlation_id = "corr-77",
		.content_type = r->content_type,
		.node_id = "node1.example:4242",
		.attempt = 3,
		.duration_us = INT64_C(123456789012),
		.timestamp = 1700000000,
		.persistent = r->persistent,
	};
	struct result_msg msg;

	/* a reused, dirty struct: nothing stale may show through */
	memset(&msg, 0xa5, sizeof(msg));
	result_build(&msg, &in);
	ck_assert_str_eq(result_status_name(r->status), r->status_name);
	assert_result(&msg.props, &in);
	/* the headers live in msg itself, not in anything that goes away */
	ck_assert_ptr_eq(msg.props.headers.entries, msg.headers);
	/* nothing is copied: props point at the caller's strings */
	ck_assert_ptr_eq(msg.props.correlation_id.bytes, in.correlation_id);
	ck_assert_ptr_eq(header(&msg.props, "taskd-task-id")->value.value.bytes.bytes,
	    in.task_id);
}
END_TEST

/* What the broker sends is what the encoder makes of the props: encode,
 * decode with rabbitmq-c, and check the round trip. */
START_TEST(test_build_wire)
{
	struct result_info in = {
		.status = RESULT_ERROR,
		.task = "http",
		.task_id = "m-1",
		.correlation_id = "c-1",
		.content_type = "text/html",
		.node_id = "h:1",
		.attempt = 1,
		.duration_us = INT64_MAX,
		.timestamp = 4102444800,   /* 2100: past 32-bit time */
		.persistent = true,
	};
	struct result_msg msg;
	char wire[4096];
	amqp_bytes_t enc = { sizeof(wire), wire };
	amqp_pool_t pool;
	void *decoded = NULL;

	result_build(&msg, &in);
	int n = amqp_encode_properties(AMQP_BASIC_CLASS, &msg.props, enc);
	ck_assert_msg(n > 0, "encode: %d", n);
	enc.len = (size_t)n;
	init_amqp_pool(&pool, 4096);
	int rc = amqp_decode_properties(AMQP_BASIC_CLASS, &pool, enc, &decoded);
	if (rc == 0)
		assert_result(decoded, &in);
	empty_amqp_pool(&pool);
	ck_assert_int_eq(rc, 0);
}
END_TEST

/* Extremes pass through unclipped. */
START_TEST(test_build_extremes)
{
	struct result_info in = {
		.status = RESULT_OK,
		.task = "t",
		.task_id = "",
		.correlation_id = "",
		.content_type = "",
		.node_id = "",
		.attempt = INT32_MAX,
		.duration_us = 0,
		.timestamp = 0,
		.persistent = false,
	};
	struct result_msg msg;

	result_build(&msg, &in);
	assert_result(&msg.props, &in);
	in.attempt = 1;
	in.duration_us = INT64_MAX;
	result_build(&msg, &in);
	assert_result(&msg.props, &in);
}
END_TEST

START_TEST(test_status_names)
{
	ck_assert_str_eq(result_status_name(RESULT_OK), "ok");
	ck_assert_str_eq(result_status_name(RESULT_ERROR), "error");
	ck_assert_str_eq(result_status_name(RESULT_TIMEOUT), "timeout");
	ck_assert_str_eq(result_status_name(RESULT_REJECTED), "rejected");
	/* never NULL, never something a client does not know */
	ck_assert_str_eq(result_status_name((enum result_status)42), "error");
}
END_TEST

/* RabbitMQ 3.10's refusals (rabbit_channel:check_msg_size), as received,
 * and texts that must not be mistaken for one. */
static const struct {
	const char *text;
	size_t want;
} limit_rows[] = {
	{ "PRECONDITION_FAILED - message size 262144 is larger than configured max size 65536", 65536 },
	{ "PRECONDITION_FAILED - message size 600000000 is larger than max size 536870912", 536870912 },
	{ "message size 2 is larger than configured max size 1", 1 },
	{ "PRECONDITION_FAILED - message size 262144 is larger than configured max size ", 0 },
	{ "PRECONDITION_FAILED - message size 262144 is larger than configured max size x1", 0 },
	{ "PRECONDITION_FAILED - message size 262144 is larger than configured max size 99999999999999999999999", 0 },
	{ "PRECONDITION_FAILED - inequivalent arg 'durable' for queue 'q'", 0 },
	{ "NOT_FOUND - no queue 'x' in vhost '/'", 0 },
	{ "larger than max size 5", 0 },
	{ "", 0 },
};

START_TEST(test_broker_limit)
{
	const char *t = limit_rows[_i].text;
	size_t len = strlen(t);
	/* Not NUL-terminated on the wire: copy it without the NUL, so a read
	 * past the end shows under ASan. */
	char *copy = malloc(len ? len : 1);
	ck_assert_ptr_nonnull(copy);
	memcpy(copy, t, len);
	ck_assert_uint_eq(result_broker_limit(copy, len), limit_rows[_i].want);
	/* Cut anywhere inside the number, the text is shorter, never longer. */
	if (limit_rows[_i].want > 0)
		ck_assert_uint_eq(result_broker_limit(copy, len - 1), limit_rows[_i].want / 10);
	free(copy);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("result");
	TCase *tb = tcase_create("buf");
	TCase *tr = tcase_create("result");

	tcase_add_test(tb, test_validator);
	tcase_add_loop_test(tb, test_json_string, 0, NROWS(json_rows));
	tcase_add_test(tb, test_printf_growth);
	tcase_add_test(tb, test_steal);
	tcase_add_test(tb, test_reserve_reset_free);
	tcase_add_test(tb, test_reserve_overflow);
	tcase_add_loop_test(tb, test_base64_vectors, 0, NROWS(b64_rows));
	tcase_add_test(tb, test_base64_round_trip);
	tcase_add_test(tb, test_base64_refused);
	suite_add_tcase(s, tb);

	tcase_add_loop_test(tr, test_error_body, 0, NROWS(body_rows));
	tcase_add_test(tr, test_error_body_code_and_append);
	tcase_add_test(tr, test_error_body_random);
	tcase_add_loop_test(tr, test_build, 0, NROWS(build_rows));
	tcase_add_test(tr, test_build_wire);
	tcase_add_test(tr, test_build_extremes);
	tcase_add_test(tr, test_status_names);
	tcase_add_loop_test(tr, test_broker_limit, 0, NROWS(limit_rows));
	suite_add_tcase(s, tr);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
