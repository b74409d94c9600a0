#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "httppolicy.h"

/* URLs and their canonical form. */
static const struct canon {
	const char *in, *out;
} canon[] = {
	{ "http://allowed.example/api/x", "http://allowed.example/api/x" },
	{ "HTTP://ALLOWED.Example/api/x", "http://allowed.example/api/x" },
	{ "HtTpS://allowed.example", "https://allowed.example/" },
	{ "http://allowed.example?q=1", "http://allowed.example/?q=1" },
	{ "http://allowed.example#top", "http://allowed.example/" },
	/* Default ports go, others stay; an empty port is the default. */
	{ "http://allowed.example:80/a", "http://allowed.example/a" },
	{ "https://allowed.example:443/a", "https://allowed.example/a" },
	{ "http://allowed.example:443/a", "http://allowed.example:443/a" },
	{ "https://allowed.example:80/a", "https://allowed.example:80/a" },
	{ "http://allowed.example:/a", "http://allowed.example/a" },
	{ "http://allowed.example:0080/a", "http://allowed.example/a" },
	{ "http://allowed.example:65535/", "http://allowed.example:65535/" },
	/* A trailing dot names the same host. */
	{ "http://allowed.example./api/", "http://allowed.example/api/" },
	/* Dot segments, plain and percent-encoded, are resolved. */
	{ "http://h/api/../admin", "http://h/admin" },
	{ "http://h/api/%2e%2e/admin", "http://h/admin" },
	{ "http://h/api/.%2e/admin", "http://h/admin" },
	{ "http://h/api/%2E./admin", "http://h/admin" },
	{ "http://h/api/./x", "http://h/api/x" },
	{ "http://h/api/%2e/x", "http://h/api/x" },
	{ "http://h/a/b/..", "http://h/a/" },
	{ "http://h/a/b/.", "http://h/a/b/" },
	{ "http://h/..", "http://h/" },
	{ "http://h/../../../etc/passwd", "http://h/etc/passwd" },
	{ "http://h/a//../b", "http://h/a/b" },
	{ "http://h/a//b", "http://h/a//b" },
	{ "http://h/a/..x/.x./...", "http://h/a/..x/.x./..." },
	/* Unreserved escapes decode, others go upper case. */
	{ "http://h/%61%70%69/%7e%5F", "http://h/api/~_" },
	{ "http://h/a%3ab%3F", "http://h/a%3Ab%3F" },
	{ "http://h/caf%C3%A9", "http://h/caf%C3%A9" },
	{ "http://h/%F0%9F%98%80", "http://h/%F0%9F%98%80" },
	{ "http://h/a;b=c/@:!$&'()*+,", "http://h/a;b=c/@:!$&'()*+," },
	{ "http://h/%25", "http://h/%25" },
	{ "http://h/%25zz", "http://h/%25zz" },
	/* The query stays as sent, dots and escapes included; only the
	 * path is resolved. */
	{ "http://h/a?x=../..&y=%2e%2E", "http://h/a?x=../..&y=%2e%2E" },
	{ "http://h/a?b?c/d", "http://h/a?b?c/d" },
	{ "http://h/a?", "http://h/a?" },
	/* IPv4 and IPv6 literals. */
	{ "http://127.0.0.1:8080/x", "http://127.0.0.1:8080/x" },
	{ "http://0.0.0.0/", "http://0.0.0.0/" },
	{ "http://127.0.0.1./", "http://127.0.0.1/" },
	{ "http://[::1]/", "http://[::1]/" },
	{ "http://[0:0:0:0:0:0:0:1]:81/", "http://[::1]:81/" },
	{ "http://[2001:DB8::A]/", "http://[2001:db8::a]/" },
	{ "http://[::ffff:127.0.0.1]/", "http://[::ffff:127.0.0.1]/" },
	{ "http://my_host-1.example/", "http://my_host-1.example/" },
};

START_TEST(test_canon)
{
	const struct canon *c = &canon[_i];
	const char *why = "unset";
	char *got = httppolicy_url(c->in, strlen(c->in), &why);

	ck_assert_msg(got != NULL, "%s refused: %s", c->in, why);
	ck_assert_msg(strcmp(got, c->out) == 0, "%s: got %s, want %s", c->in, got, c->out);
	/* Canonical is a fixed point. */
	char *again = httppolicy_url(got, strlen(got), &why);
	ck_assert_msg(again != NULL && strcmp(again, got) == 0, "%s: not stable", got);
	free(again);
	free(got);
}
END_TEST

/* URLs refused, and the words the reason must hold. */
static const struct refuse {
	const char *in, *why;
} refuse[] = {
	{ "", "not an absolute http" },
	{ "allowed.example/api/", "not an absolute http" },
	{ "//allowed.example/api/", "not an absolute http" },
	{ "file:///etc/passwd", "not an absolute http" },
	{ "ftp://allowed.example/", "not an absolute http" },
	{ "gopher://allowed.example/", "not an absolute http" },
	{ "httpx://allowed.example/", "not an absolute http" },
	{ "http:/allowed.example/", "not an absolute http" },
	{ "http:allowed.example/", "not an absolute http" },
	{ "http", "not an absolute http" },
	/* User information, however it is dressed. */
	{ "http://allowed.example@evil.example/", "user information" },
	{ "http://allowed.example:80@evil.example/", "user information" },
	{ "http://u:p@allowed.example/", "user information" },
	{ "http://@allowed.example/", "user information" },
	{ "http://evil.example%40allowed.example/", "percent-encoding in the host" },
	/* Backslashes, spaces, control and non-ASCII bytes anywhere. */
	{ "http://allowed.example\\@evil.example/", "backslash" },
	{ "http:\\\\evil.example/", "backslash" },
	{ "http://allowed.example/api\\..\\admin", "backslash" },
	{ "http://allowed.example/api/ x", "space, control" },
	{ " http://allowed.example/", "space, control" },
	{ "http://allowed.example/\t", "space, control" },
	{ "http://allowed.example/api/\r\nHost: evil", "space, control" },
	{ "http://allowed.example/\x7f", "space, control" },
	{ "http://allowed.example/caf\xc3\xa9", "space, control" },
	{ "http://xn--caf-dma.example\xe3\x80\x82" "evil/", "space, control" },
	/* Hosts. */
	{ "http:///api/", "no host" },
	{ "http://:80/api/", "no host" },
	{ "http://./", "no host" },
	{ "http://allowed.example../", "empty label" },
	{ "http://.allowed.example/", "empty label" },
	{ "http://a..b/", "empty label" },
	{ "http://allowed.example*/", "not allowed in a host" },
	{ "http://allowed.example!/", "not allowed in a host" },
	{ "http://%61llowed.example/", "percent-encoding in the host" },
	{ "http://2130706433/", "numeric host" },
	{ "http://0x7f000001/", "numeric host" },
	{ "http://0x7f.1/", "numeric host" },
	{ "http://127.1/", "numeric host" },
	{ "http://127.0.0.01/", "numeric host" },
	{ "http://0177.0.0.1/", "numeric host" },
	{ "http://127.0.0.256/", "numeric host" },
	{ "http://1.2.3.4.5/", "numeric host" },
	{ "http://[::1/", "without its ']'" },
	{ "http://[::1]x/", "not a port" },
	{ "http://[fe80::1%25eth0]/", "IPv6 zone" },
	{ "http://[::g]/", "bad IPv6" },
	{ "http://[]/", "bad IPv6" },
	{ "http://[127.0.0.1]/", "bad IPv6" },
	/* Ports. */
	{ "http://allowed.example:0/", "bad port" },
	{ "http://allowed.example:65536/", "bad port" },
	{ "http://allowed.example:123456/", "bad port" },
	{ "http://allowed.example:8o/", "bad port" },
	{ "http://allowed.example:-1/", "bad port" },
	{ "http://allowed.example:80:80/", "bad port" },
	/* Paths. */
	{ "http://allowed.example/api/..%2fadmin", "encoded '/'" },
	{ "http://allowed.example/api/..%2Fadmin", "encoded '/'" },
	{ "http://allowed.example/api/..%5cadmin", "encoded '/'" },
	{ "http://allowed.example/api%2f..%2f..%2fadmin", "encoded '/'" },
	{ "http://allowed.example/api/%00", "encoded control" },
	{ "http://allowed.example/api/%0d%0aX:1", "encoded control" },
	{ "http://allowed.example/api/%7F", "encoded control" },
	{ "http://allowed.example/api/%252e%252e/admin", "double-encoded" },
	{ "http://allowed.example/api/%25%32%65", "double-encoded" },
	{ "http://allowed.example/api/%c0%ae%c0%ae/admin", "not UTF-8" },
	{ "http://allowed.example/api/%e0%80%ae/admin", "not UTF-8" },
	{ "http://allowed.example/api/%ed%a0%80", "not UTF-8" },
	{ "http://allowed.example/api/%f4%90%80%80", "not UTF-8" },
	{ "http://allowed.example/api/%c3", "not UTF-8" },
	{ "http://allowed.example/api/%c3x", "not UTF-8" },
	{ "http://allowed.example/api/%ff", "not UTF-8" },
	{ "http://allowed.example/api/..;/admin", "dot segment with parameters" },
	{ "http://allowed.example/api/.;x/admin", "dot segment with parameters" },
	{ "http://allowed.example/api/%2e%2e;/admin", "dot segment with parameters" },
	{ "http://allowed.example/api/%", "not an escape" },
	{ "http://allowed.example/api/%2", "not an escape" },
	{ "http://allowed.example/api/%zz", "not an escape" },
	{ "http://allowed.example/api/%u002e%u002e/", "not an escape" },
	{ "http://allowed.example/api/<script>", "not allowed in a URL path" },
	{ "http://allowed.example/api/\"", "not allowed in a URL path" },
	{ "http://allowed.example/api/{x}", "not allowed in a URL path" },
	{ "http://allowed.example/api/a|b", "not allowed in a URL path" },
	{ "http://allowed.example/api/[x]", "not allowed in a URL path" },
	{ "http://allowed.example/api/^", "not allowed in a URL path" },
	{ "http://allowed.example/api/`", "not allowed in a URL path" },
	{ "http://allowed.example/?a=%", "not an escape" },
	{ "http://allowed.example/?a=%g0", "not an escape" },
};

START_TEST(test_refuse)
{
	const struct refuse *r = &refuse[_i];
	const char *why = NULL;
	char *got = httppolicy_url(r->in, strlen(r->in), &why);

	ck_assert_msg(got == NULL, "%s: accepted as %s", r->in, got);
	ck_assert_msg(why != NULL && strstr(why, r->why) != NULL,
	    "%s: reason '%s', want '%s'", r->in, why ? why : "(none)", r->why);
}
END_TEST

/* Bytes a C string cannot hold: a NUL is refused, not a terminator. */
START_TEST(test_embedded_nul)
{
	static const char u[] = "http://allowed.example/api/\0/../../admin";
	const char *why = NULL;

	ck_assert_ptr_null(httppolicy_url(u, sizeof(u) - 1, &why));
	ck_assert_ptr_nonnull(strstr(why, "control byte"));
}
END_TEST

/* Does the URL (canonicalised first, must be accepted) fall under the
 * entry? */
static const struct match {
	const char *entry, *url;
	bool under;
} match[] = {
	{ "http://allowed.example/api/", "http://allowed.example/api/x", true },
	{ "http://allowed.example/api/", "http://allowed.example/api/", true },
	{ "http://allowed.example/api/", "http://allowed.example/api/a/b?c=d", true },
	{ "http://allowed.example/api/", "http://allowed.example/api", false },
	{ "http://allowed.example/api/", "http://allowed.example/apix", false },
	{ "http://allowed.example/api/", "http://allowed.example/admin", false },
	{ "http://allowed.example/api/", "http://allowed.example/api/%2e%2e/admin", false },
	{ "http://allowed.example/api/", "http://allowed.example/api/.%2e/admin", false },
	{ "http://allowed.example/api/", "http://allowed.example/api/../admin", false },
	{ "http://allowed.example/api/", "http://allowed.example/api/x/../../admin", false },
	{ "http://allowed.example/api/", "http://allowed.example/api/x/../y", true },
	{ "http://allowed.example/api/", "http://allowed.example/%61pi/x", true },
	{ "http://allowed.example/api/", "http://allowed.example//api/x", false },
	{ "http://allowed.example/api/", "http://allowed.example/API/x", false },
	{ "http://allowed.example/api/", "http://allowed.example/?/api/", false },
	{ "http://allowed.example/api/", "http://allowed.example/#/api/", false },
	{ "http://allowed.example/api/", "http://allowed.example/x?y=/api/", false },
	/* No trailing slash: segment boundaries. */
	{ "http://allowed.example/api", "http://allowed.example/api", true },
	{ "http://allowed.example/api", "http://allowed.example/api/x", true },
	{ "http://allowed.example/api", "http://allowed.example/api?x", true },
	{ "http://allowed.example/api", "http://allowed.example/api#x", true },
	{ "http://allowed.example/api", "http://allowed.example/apix", false },
	{ "http://allowed.example/api", "http://allowed.example/api.json", false },
	{ "http://allowed.example/api", "http://allowed.example/api;x", false },
	{ "http://allowed.example/api", "http://allowed.example/ap", false },
	/* Scheme, host, port. */
	{ "http://allowed.example/api/", "HTTP://ALLOWED.EXAMPLE/api/x", true },
	{ "http://allowed.example/api/", "http://allowed.example:80/api/x", true },
	{ "http://allowed.example/api/", "http://allowed.example./api/x", true },
	{ "http://allowed.example/api/", "https://allowed.example/api/x", false },
	{ "http://allowed.example/api/", "http://allowed.example:8080/api/x", false },
	{ "http://allowed.example/api/", "http://allowed.example:443/api/x", false },
	{ "http://allowed.example/api/", "http://allowed.example.evil.example/api/x", false },
	{ "http://allowed.example/api/", "http://evil-allowed.example/api/x", false },
	{ "http://allowed.example/api/", "http://sub.allowed.example/api/x", false },
	{ "http://allowed.example/api/", "http://allowed.exampl/api/x", false },
	{ "HTTP://Allowed.Example:80/api/", "http://allowed.example/api/x", true },
	{ "https://allowed.example:443/", "https://allowed.example/x", true },
	{ "https://allowed.example:8443/", "https://allowed.example/x", false },
	/* A whole host. */
	{ "http://allowed.example", "http://allowed.example/any/thing?q", true },
	{ "http://allowed.example", "http://allowed.example", true },
	{ "http://allowed.example", "http://allowed.example.evil.example/", false },
	{ "http://allowed.example/", "http://allowed.example:81/", false },
	/* Literals. */
	{ "http://127.0.0.1:8080/ok/", "http://127.0.0.1:8080/ok/x", true },
	{ "http://127.0.0.1:8080/ok/", "http://127.0.0.1:8081/ok/x", false },
	{ "http://[::1]/", "http://[0::1]/x", true },
	{ "http://[::1]/", "http://[::2]/x", false },
	/* The entry is made canonical too. */
	{ "http://allowed.example/a/../api/", "http://allowed.example/api/x", true },
	{ "http://allowed.example/%61pi", "http://allowed.example/api/x", true },
};

START_TEST(test_match)
{
	const struct match *m = &match[_i];
	const char *why = NULL;
	char *u = httppolicy_url(m->url, strlen(m->url), &why);
	char *e = httppolicy_entry(m->entry, &why);

	ck_assert_msg(u != NULL, "%s refused: %s", m->url, why);
	ck_assert_msg(e != NULL, "entry %s refused: %s", m->entry, why);
	ck_assert_msg(httppolicy_under(u, e) == m->under, "%s under %s: got %d, want %d",
	    m->url, m->entry, !m->under, m->under);
	char *const entries[] = { "http://other.example/", (char *)m->entry, NULL };
	ck_assert_int_eq(httppolicy_allowed(u, entries), m->under ? 1 : 0);
	free(u);
	free(e);
}
END_TEST

START_TEST(test_allowed_edges)
{
	const char *why;
	char *u = httppolicy_url("http://h/x", 10, &why);
	char *const bad_entries[] = { "not a url", "http://h/?q", "", NULL };
	char *const none[] = { NULL };

	ck_assert_ptr_nonnull(u);
	ck_assert_int_eq(httppolicy_allowed(u, NULL), 0);
	ck_assert_int_eq(httppolicy_allowed(u, none), 0);
	/* Entries that are not valid match nothing, not everything. */
	ck_assert_int_eq(httppolicy_allowed(u, bad_entries), 0);
	free(u);
}
END_TEST

static const struct entry_bad {
	const char *in, *why;
} entry_bad[] = {
	{ "http://allowed.example/api/?x=1", "query or a fragment" },
	{ "http://allowed.example/api/?", "query or a fragment" },
	{ "http://allowed.example/#x", "query or a fragment" },
	{ "http://u@allowed.example/", "user information" },
	{ "allowed.example/api/", "not an absolute http" },
	{ "", "not an absolute http" },
	{ "http://allowed.example/api/%2f", "encoded '/'" },
};

START_TEST(test_entry_bad)
{
	const struct entry_bad *b = &entry_bad[_i];
	const char *why = NULL;
	char *got = httppolicy_entry(b->in, &why);

	ck_assert_msg(got == NULL, "entry %s accepted as %s", b->in, got);
	ck_assert_msg(strstr(why, b->why) != NULL, "%s: reason '%s', want '%s'",
	    b->in, why, b->why);
}
END_TEST

static const struct header {
	const char *name;
	bool ok;
} header[] = {
	{ "Accept", true }, { "X-Asked", true }, { "Authorization", true },
	{ "Content-Type", true }, { "Cookie", true }, { "User-Agent", true },
	{ "Hostname", true }, { "X-Host", true }, { "Tease", true },
	{ "Host", false }, { "host", false }, { "HOST", false },
	{ "Connection", false }, { "Keep-Alive", false }, { "keep-alive", false },
	{ "Proxy-Authorization", false }, { "Proxy-Connection", false },
	{ "proxy-anything", false }, { "Proxy", false },
	{ "TE", false }, { "te", false }, { "Trailer", false },
	{ "Transfer-Encoding", false }, { "transfer-encoding", false },
	{ "Upgrade", false }, { "Content-Length", false }, { "CONTENT-LENGTH", false },
	{ "Content_Length", false }, { "Transfer_Encoding", false },
	{ "proxy_authorization", false }, { "Keep_Alive", false },
	{ "X_Forwarded_For", true }, { "Content-Lengths", true }, { "Hos", true },
	{ "", true },
};

START_TEST(test_header)
{
	ck_assert_msg(httppolicy_header_ok(header[_i].name) == header[_i].ok,
	    "%s: want %s", header[_i].name, header[_i].ok ? "allowed" : "refused");
}
END_TEST

/* Nothing longer than its input plus the room canon() takes, however the
 * URL is made: a long path of ".." and a long host stay in bounds (ASan
 * watches the writes). */
START_TEST(test_long)
{
	size_t n = 100000;
	char *u = malloc(n + 32);
	const char *why;

	ck_assert_ptr_nonnull(u);
	strcpy(u, "http://h");
	size_t o = strlen(u);
	while (o + 3 < n) {
		memcpy(u + o, "/..", 3);
		o += 3;
	}
	char *c = httppolicy_url(u, o, &why);
	ck_assert_ptr_nonnull(c);
	ck_assert_str_eq(c, "http://h/");
	free(c);
	memset(u, 'a', n);
	memcpy(u, "http://", 7);
	c = httppolicy_url(u, n, &why);
	ck_assert_ptr_null(c);
	ck_assert_ptr_nonnull(strstr(why, "longer than"));
	free(u);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("httppolicy");
	TCase *tc = tcase_create("core");

	tcase_add_loop_test(tc, test_canon, 0, (int)(sizeof(canon) / sizeof(canon[0])));
	tcase_add_loop_test(tc, test_refuse, 0, (int)(sizeof(refuse) / sizeof(refuse[0])));
	tcase_add_test(tc, test_embedded_nul);
	tcase_add_loop_test(tc, test_match, 0, (int)(sizeof(match) / sizeof(match[0])));
	tcase_add_test(tc, test_allowed_edges);
	tcase_add_loop_test(tc, test_entry_bad, 0,
	    (int)(sizeof(entry_bad) / sizeof(entry_bad[0])));
	tcase_add_loop_test(tc, test_header, 0, (int)(sizeof(header) / sizeof(header[0])));
	tcase_add_test(tc, test_long);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
