#include <check.h>
#include <stdlib.h>
#include <string.h>

#include "uri.h"

static const struct good {
	const char *in;
	const char *user, *password, *host;
	int port;
	const char *vhost;
	bool tls;
} good[] = {
	{ "amqp://guest:guest@127.0.0.1:5672/%2f", "guest", "guest", "127.0.0.1", 5672, "/", false },
	{ "amqp://localhost", "guest", "guest", "localhost", 5672, "/", false },
	{ "amqp://localhost/", "guest", "guest", "localhost", 5672, "/", false },
	{ "amqps://broker.example.com", "guest", "guest", "broker.example.com", 5671, "/", true },
	{ "AMQPS://h:1", "guest", "guest", "h", 1, "/", true },
	{ "amqp://u:p@h:65535/v", "u", "p", "h", 65535, "v", false },
	{ "amqp://u@h/v", "u", "guest", "h", 5672, "v", false },
	{ "amqp://u:@h", "u", "", "h", 5672, "/", false },
	{ "amqp://:p@h", "", "p", "h", 5672, "/", false },
	/* Escapes decode in user, password and vhost. */
	{ "amqp://us%65r:p%40ss%2Fw%3a@h/my%2Fvhost", "user", "p@ss/w:", "h", 5672, "my/vhost", false },
	/* The last '@' ends the credentials, the first ':' the user. */
	{ "amqp://u:a:b@c@h", "u", "a:b@c", "h", 5672, "/", false },
	{ "amqp://[::1]:5673/x", "guest", "guest", "::1", 5673, "x", false },
	{ "amqp://[fe80::1%25eth0]", "guest", "guest", "fe80::1%eth0", 5672, "/", false },
	{ "amqp://my_host-1.local:0005672", "guest", "guest", "my_host-1.local", 5672, "/", false },
};

START_TEST(test_good)
{
	const struct good *g = &good[_i];
	struct uri u = { 0 };
	char err[256] = "";

	ck_assert_msg(uri_parse(g->in, &u, err, sizeof(err)) == 0, "%s: %s", g->in, err);
	ck_assert_str_eq(u.user, g->user);
	ck_assert_str_eq(u.password, g->password);
	ck_assert_str_eq(u.host, g->host);
	ck_assert_int_eq(u.port, g->port);
	ck_assert_str_eq(u.vhost, g->vhost);
	ck_assert(u.tls == g->tls);
	uri_free(&u);
	ck_assert_ptr_null(u.password);
}
END_TEST

/* The secret in every bad address is "s3cret": no message may show it. */
static const struct bad {
	const char *in;
	const char *err;
} bad[] = {
	{ "http://u:s3cret@h/", "the scheme must be amqp:// or amqps://" },
	{ "u:s3cret@h", "the scheme must be amqp:// or amqps://" },
	{ "", "the scheme must be amqp:// or amqps://" },
	{ " amqp://h", "the scheme must be amqp:// or amqps://" },
	{ "amqp://", "the host is empty" },
	{ "amqp://u:s3cret@", "the host is empty" },
	{ "amqp://u:s3cret@/v", "the host is empty" },
	{ "amqp://u:s3cret@:5672", "the host is empty" },
	{ "amqp://[]:5672", "the host is empty" },
	{ "amqp://h:0", "the port must be from 1 to 65535" },
	{ "amqp://h:65536", "the port must be from 1 to 65535" },
	{ "amqp://h:99999999999999999999", "the port must be from 1 to 65535" },
	{ "amqp://h:", "the port after ':' is empty" },
	{ "amqp://h:-1", "the port must be a number from 1 to 65535" },
	{ "amqp://h:56x", "the port must be a number from 1 to 65535" },
	/* A raw '/' in the password makes "s3" the host and "cret" the
	 * port, and must not show either. */
	{ "amqp://u:s3:cret/x@h", "'@' after the host: percent-encode '/', '?', '#' and '@' in the user, password and vhost (%2F, %3F, %23, %40)" },
	{ "amqp://u:s3cret@h:56s3cret", "the port must be a number from 1 to 65535" },
	{ "amqp://u:s3cret@h/v?heartbeat=5", "query parameters are not supported (use the broker.* settings)" },
	{ "amqp://u:s3cret@h/v#frag", "a '#' fragment is not allowed" },
	{ "amqp://u:s3cret@h/a/b", "the vhost must be one path segment (write a '/' inside it as %2F)" },
	{ "amqp://u:s3cret%zz@h", "bad percent-escape in the password (use %XX with two hex digits, not %00)" },
	{ "amqp://u:s3cret%2@h", "bad percent-escape in the password (use %XX with two hex digits, not %00)" },
	{ "amqp://u:s3cret%@h", "bad percent-escape in the password (use %XX with two hex digits, not %00)" },
	{ "amqp://u%00:s3cret@h", "bad percent-escape in the user (use %XX with two hex digits, not %00)" },
	{ "amqp://h/v%0", "bad percent-escape in the vhost (use %XX with two hex digits, not %00)" },
	{ "amqp://u:s3cret@h s", "the host holds a character not allowed in a host name or address" },
	{ "amqp://u:s3cret@h%41", "the host holds a character not allowed in a host name or address" },
	{ "amqp://[::1", "'[' without ']' in the host" },
	{ "amqp://[::1]x", "unexpected text after ']' in the host" },
	{ "amqp://[my_host]", "the host holds a character not allowed in a host name or address" },
};

START_TEST(test_bad)
{
	const struct bad *b = &bad[_i];
	struct uri u = { 0 };
	char err[256] = "";

	ck_assert_msg(uri_parse(b->in, &u, err, sizeof(err)) == -1, "%s parsed", b->in);
	ck_assert_str_eq(err, b->err);
	ck_assert_msg(strstr(err, "s3") == NULL && strstr(err, "cret") == NULL,
	    "%s: error shows the password: %s", b->in, err);
	/* Nothing half-built is handed back. */
	ck_assert_ptr_null(u.user);
	ck_assert_ptr_null(u.host);
}
END_TEST

START_TEST(test_long_host)
{
	char s[400];
	struct uri u = { 0 };
	char err[256];

	strcpy(s, "amqp://");
	memset(s + 7, 'a', 256);
	s[7 + 256] = '\0';
	ck_assert_int_eq(uri_parse(s, &u, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "the host is longer than 255 bytes");
	s[7 + 255] = '\0';
	ck_assert_int_eq(uri_parse(s, &u, err, sizeof(err)), 0);
	ck_assert_uint_eq(strlen(u.host), 255);
	uri_free(&u);
}
END_TEST

START_TEST(test_small_err_buffer)
{
	struct uri u = { 0 };
	char err[8];

	ck_assert_int_eq(uri_parse("ftp://x", &u, err, sizeof(err)), -1);
	ck_assert_str_eq(err, "the sch");
	/* No buffer at all is allowed too. */
	ck_assert_int_eq(uri_parse("ftp://x", &u, NULL, 0), -1);
	ck_assert_int_eq(uri_parse(NULL, &u, NULL, 0), -1);
}
END_TEST

START_TEST(test_copy)
{
	struct uri a = { 0 }, b = { 0 };
	char err[256];

	ck_assert_int_eq(uri_parse("amqps://u:p@h:1/v", &a, err, sizeof(err)), 0);
	ck_assert_int_eq(uri_copy(&b, &a), 0);
	uri_free(&a);
	ck_assert_str_eq(b.user, "u");
	ck_assert_str_eq(b.password, "p");
	ck_assert_str_eq(b.host, "h");
	ck_assert_int_eq(b.port, 1);
	ck_assert_str_eq(b.vhost, "v");
	ck_assert(b.tls);
	uri_free(&b);

	/* A zeroed uri copies to a zeroed uri. */
	ck_assert_int_eq(uri_copy(&b, &a), 0);
	ck_assert_ptr_null(b.host);
	uri_free(&b);
}
END_TEST

START_TEST(test_has_password)
{
	ck_assert(uri_has_password("amqp://u:secret@h:5672/v"));
	ck_assert(uri_has_password("amqps://:p@h"));
	/* The last '@' of the authority ends the credentials. */
	ck_assert(uri_has_password("amqp://u:a:b@c@h/v"));
	/* As written: an escaped "guest" is not the well-known default. */
	ck_assert(uri_has_password("amqp://u:%67uest@h"));
	ck_assert(uri_has_password("amqp://u:guests@h"));
	ck_assert(!uri_has_password("amqp://guest:guest@h"));
	ck_assert(!uri_has_password("amqp://u:guest@h"));
	ck_assert(!uri_has_password("amqp://u@h"));
	ck_assert(!uri_has_password("amqp://u:@h"));
	ck_assert(!uri_has_password("amqp://h:5672"));
	ck_assert(!uri_has_password("amqp://h"));
	/* An '@' past the authority is the vhost's, not credentials. */
	ck_assert(!uri_has_password("amqp://h:1/u:p@x"));
	ck_assert(!uri_has_password("amqp://h?u:p@x"));
	ck_assert(!uri_has_password("no scheme u:p@h"));
	ck_assert(!uri_has_password(""));
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("uri");
	TCase *tc = tcase_create("parse");

	tcase_add_loop_test(tc, test_good, 0, (int)(sizeof(good) / sizeof(good[0])));
	tcase_add_loop_test(tc, test_bad, 0, (int)(sizeof(bad) / sizeof(bad[0])));
	tcase_add_test(tc, test_long_host);
	tcase_add_test(tc, test_small_err_buffer);
	tcase_add_test(tc, test_copy);
	tcase_add_test(tc, test_has_password);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
