#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "httpreq.h"

/* Request heads and what the parser must make of them. */
static const struct req_case {
	const char *in;
	enum httpreq_verdict v;
	enum httpreq_method method;   /* DONE only */
	const char *path;             /* DONE only */
	bool keep_alive;              /* DONE only */
} cases[] = {
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n", HTTPREQ_DONE, HTTPREQ_GET, "/metrics", true },
	{ "GET /metrics HTTP/1.0\r\n\r\n", HTTPREQ_DONE, HTTPREQ_GET, "/metrics", false },
	{ "GET /healthz HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", HTTPREQ_DONE,
	  HTTPREQ_GET, "/healthz", true },
	{ "GET /readyz HTTP/1.1\r\nConnection: Close\r\n\r\n", HTTPREQ_DONE, HTTPREQ_GET,
	  "/readyz", false },
	{ "GET /x HTTP/1.1\r\nconnection: TE, close\r\n\r\n", HTTPREQ_DONE, HTTPREQ_GET,
	  "/x", false },
	{ "HEAD /healthz HTTP/1.1\r\n\r\n", HTTPREQ_DONE, HTTPREQ_HEAD, "/healthz", true },
	{ "POST /metrics HTTP/1.1\r\nContent-Length: 0\r\n\r\n", HTTPREQ_DONE, HTTPREQ_OTHER,
	  "/metrics", true },
	{ "get /metrics HTTP/1.1\r\n\r\n", HTTPREQ_DONE, HTTPREQ_OTHER, "/metrics", true },
	/* The query string is not part of the path. */
	{ "GET /metrics?name[]=x HTTP/1.1\r\n\r\n", HTTPREQ_DONE, HTTPREQ_GET, "/metrics", true },
	/* Bare LF line ends, and blank lines before the request line. */
	{ "GET /metrics HTTP/1.1\nHost: x\n\n", HTTPREQ_DONE, HTTPREQ_GET, "/metrics", true },
	{ "\r\n\r\nGET / HTTP/1.1\r\n\r\n", HTTPREQ_DONE, HTTPREQ_GET, "/", true },
	{ "GET /metrics HTTP/1.1\r\nX-Empty:\r\nX-Tab:\tv\t\r\n\r\n", HTTPREQ_DONE,
	  HTTPREQ_GET, "/metrics", true },
	/* Not complete yet. */
	{ "", HTTPREQ_MORE, 0, NULL, false },
	{ "GET /metr", HTTPREQ_MORE, 0, NULL, false },
	{ "GET /metrics HTTP/1.1\r\n", HTTPREQ_MORE, 0, NULL, false },
	{ "GET /metrics HTTP/1.1\r\nHost: x\r\n\r", HTTPREQ_MORE, 0, NULL, false },
	/* Malformed. */
	{ "GET /metrics HTTP/1.1\r\nHost : x\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /metrics HTTP/1.1\r\n folded\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /metrics HTTP/1.1\r\nNoColon\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /metrics HTTP/1.1\r\nX: a\x01" "b\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET  /metrics HTTP/1.1\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET metrics HTTP/1.1\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET http://h/metrics HTTP/1.1\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /metrics\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /metrics HTTP/1.1 \r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /metrics HTTX/1.1\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /a\rb HTTP/1.1\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /metrics HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /metrics HTTP/1.1\r\nContent-Length: -0\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /metrics HTTP/1.1\r\nContent-Length:\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	{ "GET /metrics HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", HTTPREQ_BAD, 0,
	  NULL, false },
	{ "\x16\x03\x01\x02\x05\r\n\r\n", HTTPREQ_BAD, 0, NULL, false },
	/* Other versions. */
	{ "GET /metrics HTTP/2.0\r\n\r\n", HTTPREQ_VERSION, 0, NULL, false },
	{ "GET /metrics HTTP/0.9\r\n\r\n", HTTPREQ_VERSION, 0, NULL, false },
	{ "GET /metrics HTTP/1.2\r\n\r\n", HTTPREQ_VERSION, 0, NULL, false },
};

START_TEST(test_cases)
{
	const struct req_case *c = &cases[_i];
	struct httpreq r;
	enum httpreq_verdict v = httpreq_parse(c->in, strlen(c->in), &r);
	ck_assert_msg(v == c->v, "%s: verdict %d, expected %d", c->in, v, c->v);
	if (v != HTTPREQ_DONE)
		return;
	ck_assert_int_eq(r.method, c->method);
	ck_assert_msg(httpreq_path_is(&r, c->path), "%s: path '%.*s'", c->in,
	    (int)r.path_len, r.path);
	ck_assert_int_eq(r.keep_alive, c->keep_alive);
	ck_assert_uint_le(r.head_len, strlen(c->in));
}
END_TEST

/* Two pipelined requests: the first head ends where the second starts. */
START_TEST(test_pipelined)
{
	const char *in = "GET /healthz HTTP/1.1\r\n\r\nGET /readyz HTTP/1.1\r\n\r\n";
	struct httpreq r;
	ck_assert_int_eq(httpreq_parse(in, strlen(in), &r), HTTPREQ_DONE);
	ck_assert(httpreq_path_is(&r, "/healthz"));
	ck_assert_uint_eq(r.head_len, 25);
	ck_assert_int_eq(httpreq_parse(in + r.head_len, strlen(in) - r.head_len, &r),
	    HTTPREQ_DONE);
	ck_assert(httpreq_path_is(&r, "/readyz"));
}
END_TEST

/* A head over the bound is refused whatever it holds, and at exactly the
 * bound: the caller never needs to keep more. */
START_TEST(test_too_large)
{
	size_t n = HTTPREQ_HEAD_MAX + 100;
	char *in = malloc(n);
	ck_assert_ptr_nonnull(in);
	memcpy(in, "GET / HTTP/1.1\r\nX: ", 19);
	memset(in + 19, 'a', n - 19);
	struct httpreq r;
	ck_assert_int_eq(httpreq_parse(in, HTTPREQ_HEAD_MAX - 1, &r), HTTPREQ_MORE);
	ck_assert_int_eq(httpreq_parse(in, HTTPREQ_HEAD_MAX, &r), HTTPREQ_TOO_LARGE);
	ck_assert_int_eq(httpreq_parse(in, n, &r), HTTPREQ_TOO_LARGE);
	/* A complete head just under the bound still parses. */
	memcpy(in + HTTPREQ_HEAD_MAX - 4, "\r\n\r\n", 4);
	ck_assert_int_eq(httpreq_parse(in, HTTPREQ_HEAD_MAX, &r), HTTPREQ_DONE);
	ck_assert_uint_eq(r.head_len, HTTPREQ_HEAD_MAX);
	free(in);
}
END_TEST

/* A NUL anywhere is refused at once, before the head is complete. */
START_TEST(test_nul)
{
	const char in[] = "GET /me\0trics HTTP/1.1\r\n";
	struct httpreq r;
	ck_assert_int_eq(httpreq_parse(in, sizeof(in) - 1, &r), HTTPREQ_BAD);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("httpreq");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_cases, 0, (int)(sizeof(cases) / sizeof(cases[0])));
	tcase_add_test(tc, test_pipelined);
	tcase_add_test(tc, test_too_large);
	tcase_add_test(tc, test_nul);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
