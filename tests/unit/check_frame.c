#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "frame.h"

/* Re-patches the length prefix after a test altered the frame's size. */
static void
fix_len(struct buf *b)
{
	uint32_t len = (uint32_t)(b->len - FRAME_HEADER);
	memcpy(b->data, &len, sizeof(len));
}

START_TEST(test_task_roundtrip)
{
	static const char *const argv[] = { "/bin/cat", "", "-n", NULL };
	unsigned char payload[300];
	for (size_t i = 0; i < sizeof(payload); i++)
		payload[i] = (unsigned char)i;   /* NULs included */
	struct frame_task in = {
		.seq = 42, .deadline = 1234.5, .flags = FRAME_MEASURE_RSS,
		.max_result = 1u << 20,
		.handler = "exec", .argv = argv, .content_type = "text/plain",
		.payload = payload, .len = sizeof(payload),
	}, out;
	struct buf b = { 0 };

	ck_assert_int_eq(frame_put_task(&b, &in), 0);
	ck_assert_uint_eq(frame_size(b.data, b.len, FRAME_MAX), b.len);
	ck_assert_int_eq(frame_type(b.data, b.len), FRAME_TASK);
	ck_assert_int_eq(frame_get_task(b.data, b.len, &out), 0);
	ck_assert_uint_eq(out.seq, 42);
	ck_assert(out.deadline == 1234.5);
	ck_assert_uint_eq(out.flags, FRAME_MEASURE_RSS);
	ck_assert_uint_eq(out.max_result, 1u << 20);
	ck_assert_str_eq(out.handler, "exec");
	ck_assert_str_eq(out.argv[0], "/bin/cat");
	ck_assert_str_eq(out.argv[1], "");
	ck_assert_str_eq(out.argv[2], "-n");
	ck_assert_ptr_null(out.argv[3]);
	ck_assert_str_eq(out.content_type, "text/plain");
	ck_assert_uint_eq(out.len, sizeof(payload));
	ck_assert(memcmp(out.payload, payload, sizeof(payload)) == 0);
	frame_free_vec(out.argv);

	/* Every truncation is refused, and so is a byte left over. */
	for (size_t n = 0; n < b.len; n++) {
		ck_assert_int_eq(frame_get_task(b.data, n, &out), -1);
		ck_assert_ptr_null(out.argv);
	}
	ck_assert_int_eq(buf_append(&b, "x", 1), 0);
	ck_assert_int_eq(frame_get_task(b.data, b.len, &out), -1);
	fix_len(&b);
	ck_assert_int_eq(frame_get_task(b.data, b.len, &out), -1);
	buf_free(&b);
}
END_TEST

START_TEST(test_task_minimal)
{
	struct frame_task in = { .seq = 1, .handler = "sha256" }, out;
	struct buf b = { 0 };
	ck_assert_int_eq(frame_put_task(&b, &in), 0);
	ck_assert_int_eq(frame_get_task(b.data, b.len, &out), 0);
	ck_assert_ptr_null(out.argv);
	ck_assert_ptr_null(out.content_type);
	ck_assert_uint_eq(out.len, 0);
	ck_assert(out.deadline == 0);
	buf_free(&b);

	/* A task must name its handler. */
	in.handler = "";
	ck_assert_int_eq(frame_put_task(&b, &in), 0);
	ck_assert_int_eq(frame_get_task(b.data, b.len, &out), -1);
	buf_free(&b);
}
END_TEST

START_TEST(test_result_roundtrip)
{
	struct frame_result in = {
		.seq = 7, .status = 2, .rss = 123456789, .error_code = "timeout",
		.content_type = NULL, .body = "too slow", .len = 8,
	}, out;
	struct buf b = { 0 };
	ck_assert_int_eq(frame_put_result(&b, &in), 0);
	ck_assert_int_eq(frame_get_result(b.data, b.len, &out), 0);
	ck_assert_uint_eq(out.seq, 7);
	ck_assert_uint_eq(out.status, 2);
	ck_assert_uint_eq(out.rss, 123456789);
	ck_assert_str_eq(out.error_code, "timeout");
	ck_assert_ptr_null(out.content_type);
	ck_assert_uint_eq(out.len, 8);
	ck_assert(memcmp(out.body, "too slow", 8) == 0);
	for (size_t n = 0; n < b.len; n++)
		ck_assert_int_eq(frame_get_result(b.data, n, &out), -1);
	/* The wrong decoder refuses it. */
	struct frame_task t;
	ck_assert_int_eq(frame_get_task(b.data, b.len, &t), -1);
	buf_free(&b);
}
END_TEST

START_TEST(test_string_checks)
{
	struct frame_result in = { .seq = 1, .error_code = "abc" }, out;
	struct buf b = { 0 };
	ck_assert_int_eq(frame_put_result(&b, &in), 0);
	/* The error code's bytes sit after 4+1 header, 8 seq, 1 status, 8 rss
	 * and its own 4-byte length. */
	size_t at = FRAME_HEADER + 1 + 8 + 1 + 8 + 4;
	ck_assert(memcmp(b.data + at, "abc", 4) == 0);
	b.data[at + 1] = '\0';          /* an interior NUL */
	ck_assert_int_eq(frame_get_result(b.data, b.len, &out), -1);
	b.data[at + 1] = 'b';
	b.data[at + 3] = 'x';           /* the terminating NUL missing */
	ck_assert_int_eq(frame_get_result(b.data, b.len, &out), -1);
	b.data[at + 3] = '\0';
	ck_assert_int_eq(frame_get_result(b.data, b.len, &out), 0);
	/* A string length that runs past the end. */
	uint32_t huge = 0xfffffff0u;
	memcpy(b.data + at - 4, &huge, 4);
	ck_assert_int_eq(frame_get_result(b.data, b.len, &out), -1);
	buf_free(&b);
}
END_TEST

START_TEST(test_hello_child)
{
	static const char *const plugins[] = { "/usr/lib/taskd/a.so", "/b.so", NULL };
	struct frame_hello h = { .slot = 3, .plugins = plugins }, ho;
	struct frame_child c = { .seq = 9, .pgid = 4321 }, co;
	struct buf b = { 0 };

	ck_assert_int_eq(frame_put_hello(&b, &h), 0);
	size_t first = frame_size(b.data, b.len, FRAME_MAX);
	ck_assert_int_eq(frame_put_child(&b, &c), 0);
	/* Two frames back to back: each decodes on its own. */
	ck_assert_int_eq(frame_get_hello(b.data, first, &ho), 0);
	ck_assert_uint_eq(ho.slot, 3);
	ck_assert_str_eq(ho.plugins[1], "/b.so");
	ck_assert_ptr_null(ho.plugins[2]);
	frame_free_vec(ho.plugins);
	ck_assert_uint_eq(frame_size(b.data + first, b.len - first, FRAME_MAX), b.len - first);
	ck_assert_int_eq(frame_get_child(b.data + first, b.len - first, &co), 0);
	ck_assert_int_eq(co.pgid, 4321);
	ck_assert_uint_eq(co.seq, 9);
	buf_free(&b);

	/* READY carries the slot and nothing else. */
	uint32_t slot = 0;
	ck_assert_int_eq(frame_put_ready(&b, 5), 0);
	ck_assert_int_eq(frame_get_ready(b.data, b.len, &slot), 0);
	ck_assert_uint_eq(slot, 5);
	ck_assert_int_eq(frame_get_child(b.data, b.len, &co), -1);
	ck_assert_int_eq(buf_append(&b, "", 1), 0);
	ck_assert_int_eq(frame_get_ready(b.data, b.len, &slot), -1);
	buf_free(&b);

	/* A process group of 0 or 1 would make kill() hit the wrong target. */
	c.pgid = 1;
	ck_assert_int_eq(frame_put_child(&b, &c), 0);
	ck_assert_int_eq(frame_get_child(b.data, b.len, &co), -1);
	buf_free(&b);
}
END_TEST

START_TEST(test_size)
{
	unsigned char hdr[8] = { 0 };
	uint32_t len;
	ck_assert_uint_eq(frame_size(hdr, 3, 100), 0);          /* need more */
	ck_assert_uint_eq(frame_size(hdr, 4, 100), (size_t)-1); /* zero length */
	len = 101;
	memcpy(hdr, &len, 4);
	ck_assert_uint_eq(frame_size(hdr, 8, 100), (size_t)-1); /* too large */
	len = 100;
	memcpy(hdr, &len, 4);
	ck_assert_uint_eq(frame_size(hdr, 8, 100), 104);
	ck_assert_int_eq(frame_type(hdr, 4), 0);
}
END_TEST

START_TEST(test_vector_bound)
{
	/* An argv count far beyond the bytes that follow is refused before any
	 * allocation of that size. */
	struct frame_task in = { .seq = 1, .handler = "x" }, out;
	struct buf b = { 0 };
	ck_assert_int_eq(frame_put_task(&b, &in), 0);
	size_t at = FRAME_HEADER + 1 + 8 + 8 + 4 + 8 + 4 + 2;  /* argc */
	uint32_t n = 4000;
	memcpy(b.data + at, &n, 4);
	ck_assert_int_eq(frame_get_task(b.data, b.len, &out), -1);
	ck_assert_ptr_null(out.argv);
	buf_free(&b);
}
END_TEST

/* frame_max_len is what the parent lets a worker send: every well-formed
 * frame at its largest must fit, and not one byte more. */
START_TEST(test_max_len)
{
	struct buf b = { 0 };
	ck_assert_int_eq(frame_put_ready(&b, 7), 0);
	ck_assert_uint_eq(b.len - FRAME_HEADER, frame_max_len(FRAME_READY, 0));
	buf_reset(&b);
	struct frame_child c = { .seq = 9, .pgid = 1234 };
	ck_assert_int_eq(frame_put_child(&b, &c), 0);
	ck_assert_uint_eq(b.len - FRAME_HEADER, frame_max_len(FRAME_CHILD, 0));
	buf_reset(&b);

	static char code[FRAME_STR_MAX + 1], type[FRAME_STR_MAX + 1];
	memset(code, 'c', FRAME_STR_MAX);
	memset(type, 't', FRAME_STR_MAX);
	size_t body = 3000;
	char *p = calloc(1, body);
	ck_assert_ptr_nonnull(p);
	struct frame_result r = {
		.seq = 1, .status = 1, .rss = 5, .error_code = code, .content_type = type,
		.body = p, .len = body,
	};
	ck_assert_int_eq(frame_put_result(&b, &r), 0);
	size_t max = frame_max_len(FRAME_RESULT, body);
	ck_assert_uint_eq(b.len - FRAME_HEADER, max);
	ck_assert_uint_eq(frame_size(b.data, b.len, max), b.len);
	ck_assert_uint_eq(frame_size(b.data, b.len, frame_max_len(FRAME_RESULT, body - 1)),
	    (size_t)-1);
	free(p);
	buf_free(&b);

	/* Types a worker never sends, and a body limit past the format's. */
	ck_assert_uint_eq(frame_max_len(FRAME_TASK, 0), 0);
	ck_assert_uint_eq(frame_max_len(FRAME_HELLO, 0), 0);
	ck_assert_uint_eq(frame_max_len(99, 0), 0);
	ck_assert_uint_eq(frame_max_len(FRAME_RESULT, (size_t)-1), FRAME_MAX);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("frame");
	TCase *tc = tcase_create("core");
	tcase_add_test(tc, test_task_roundtrip);
	tcase_add_test(tc, test_task_minimal);
	tcase_add_test(tc, test_result_roundtrip);
	tcase_add_test(tc, test_string_checks);
	tcase_add_test(tc, test_hello_child);
	tcase_add_test(tc, test_size);
	tcase_add_test(tc, test_vector_bound);
	tcase_add_test(tc, test_max_len);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? 0 : 1;
}
