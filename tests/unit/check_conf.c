#include <check.h>
#include <dirent.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "buf.h"
#include "conf.h"
#include "log.h"
#include "tlsfiles.h"

#ifndef TEST_DATA
#error "build with -DTEST_DATA='\"/abs/path/to/tests/data\"'"
#endif

/*
 * Bad configs live in tests/data as bad-NAME.conf, each with bad-NAME.expect
 * holding the exact text conf_load() must return.  The test loads them by
 * absolute path and strips TEST_DATA "/" from the text before comparing, so
 * the .expect files name "bad-NAME.conf:LINE:" on any machine.
 */
static const char *const bad[] = {
	"bad-allow",
	"bad-control-chars",
	"bad-default-task",
	"bad-duplicate-key",
	"bad-enums",
	"bad-exec",
	"bad-groups",
	"bad-include",
	"bad-metrics",
	"bad-password-dir",
	"bad-password-file",
	"bad-plugins",
	"bad-plugins-type",
	"bad-pool",
	"bad-quorum",
	"bad-ranges",
	"bad-ranges-upper",
	"bad-relative-paths",
	"bad-syntax",
	"bad-task-names",
	"bad-task-shape",
	"bad-tasks-type",
	"bad-tls",
	"bad-tls-plain",
	"bad-types",
	"bad-unknown",
	"bad-uri",
	"bad-uri-empty",
	"bad-uri-list",
	"bad-uri-mixed",
	"bad-uri-port",
	"bad-uri-secret",
};
#define NBAD (sizeof(bad) / sizeof(bad[0]))

static char *
data_path(const char *name, const char *ext)
{
	struct buf b = { 0 };
	ck_assert_int_eq(buf_printf(&b, "%s/%s%s", TEST_DATA, name, ext), 0);
	return buf_steal(&b, NULL);
}

static char *
slurp(const char *path)
{
	struct buf b = { 0 };
	char chunk[4096];
	size_t n;
	FILE *f = fopen(path, "r");

	ck_assert_msg(f != NULL, "%s: %s", path, strerror(errno));
	while ((n = fread(chunk, 1, sizeof(chunk), f)) > 0)
		ck_assert_int_eq(buf_append(&b, chunk, n), 0);
	fclose(f);
	return buf_steal(&b, NULL);
}

/* s with every occurrence of what removed; frees s. */
static char *
strip(char *s, const char *what)
{
	struct buf b = { 0 };
	size_t wn = strlen(what);
	const char *p = s, *q;

	while ((q = strstr(p, what)) != NULL) {
		ck_assert_int_eq(buf_append(&b, p, (size_t)(q - p)), 0);
		p = q + wn;
	}
	ck_assert_int_eq(buf_puts(&b, p), 0);
	free(s);
	return buf_steal(&b, NULL);
}

static struct conf *
load_ok(const char *path)
{
	char *errs = NULL;
	struct conf *c = conf_load(path, &errs);

	ck_assert_msg(c != NULL, "%s did not load:\n%s", path, errs ? errs : "(no text)");
	ck_assert_ptr_null(errs);
	return c;
}

/* Loads path, which must fail, and returns its error text. */
static char *
load_bad(const char *path)
{
	char *errs = NULL;
	struct conf *c = conf_load(path, &errs);

	ck_assert_msg(c == NULL, "%s loaded", path);
	ck_assert_ptr_nonnull(errs);
	return errs;
}

START_TEST(test_bad)
{
	char *conf = data_path(bad[_i], ".conf");
	char *expect_path = data_path(bad[_i], ".expect");
	char *expect = slurp(expect_path);
	char *errs = strip(load_bad(conf), TEST_DATA "/");

	ck_assert_msg(strcmp(errs, expect) == 0, "%s:\n--- got\n%s--- want\n%s",
	    bad[_i], errs, expect);
	free(errs);
	free(expect);
	free(expect_path);
	free(conf);
}
END_TEST

/* A bad-*.conf that is not in the table above would never run. */
START_TEST(test_bad_all_listed)
{
	DIR *d = opendir(TEST_DATA);
	struct dirent *e;
	size_t seen = 0;

	ck_assert_ptr_nonnull(d);
	while ((e = readdir(d)) != NULL) {
		size_t n = strlen(e->d_name);
		if (strncmp(e->d_name, "bad-", 4) != 0 || n < 5 ||
		    strcmp(e->d_name + n - 5, ".conf") != 0)
			continue;
		bool listed = false;
		for (size_t i = 0; i < NBAD; i++)
			if (strlen(bad[i]) == n - 5 && strncmp(bad[i], e->d_name, n - 5) == 0)
				listed = true;
		ck_assert_msg(listed, "%s is not in the bad[] table of check_conf.c", e->d_name);
		seen++;
	}
	closedir(d);
	ck_assert_uint_eq(seen, NBAD);
}
END_TEST

START_TEST(test_full)
{
	char *path = data_path("good-full", ".conf");
	struct conf *c = load_ok(path);

	ck_assert_str_eq(c->path, path);
	ck_assert_str_eq(c->broker_uri,
	    "amqps://taskd:from-uri@rabbit.example.com:5999/jobs%2fprod");
	ck_assert(c->broker.tls);
	ck_assert_str_eq(c->broker.user, "taskd");
	/* password_file wins over the URI's password. */
	ck_assert_str_eq(c->broker.password, "Linux");
	ck_assert_str_eq(c->broker.host, "rabbit.example.com");
	ck_assert_int_eq(c->broker.port, 5999);
	ck_assert_str_eq(c->broker.vhost, "jobs/prod");
	ck_assert_int_eq(c->heartbeat, 15);
	ck_assert_int_eq(c->prefetch, 64);
	ck_assert_double_eq(c->connect_timeout, 2.5);
	ck_assert_double_eq(c->reconnect_max, 60);
	ck_assert_str_eq(c->password_file, "/proc/sys/kernel/ostype");
	ck_assert_str_eq(c->cacert, "/etc/ssl/certs/ca-certificates.crt");
	ck_assert_int_eq(c->max_unconfirmed, 500);
	ck_assert_uint_eq(c->max_message_size, 1048576u);

	ck_assert_str_eq(c->queue_name, "jobs");
	ck_assert(c->queue_durable);
	ck_assert_int_eq(c->queue_type, CONF_QUEUE_QUORUM);
	ck_assert_str_eq(c->default_task, "echo");
	ck_assert_str_eq(c->reply_queue, "");
	ck_assert_int_eq(c->io_max_concurrency, 250);
	ck_assert_uint_eq(c->io_stack_size, 131072);
	ck_assert_int_eq(c->cpu_workers, 3);
	ck_assert_int_eq(c->cpu_max_tasks_per_child, 500);
	ck_assert_uint_eq(c->cpu_max_memory, 268435456u);
	ck_assert_ptr_nonnull(c->plugins);
	ck_assert_str_eq(c->plugins[0], "/usr/lib/taskd/example.so");
	ck_assert_str_eq(c->plugins[1], "/opt/taskd/b.so");
	ck_assert_ptr_null(c->plugins[2]);
	ck_assert_double_eq(c->timeout, 120.5);
	ck_assert_uint_eq(c->max_payload, 1073741824u);
	ck_assert_int_eq(c->max_deliveries, 9);
	ck_assert_int_eq(c->log_level, LOG_LEVEL_DEBUG);
	ck_assert_double_eq(c->shutdown_grace, 7.5);

	ck_assert_uint_eq(c->ntasks, 4);
	const struct conf_task *t = &c->tasks[0];
	ck_assert_str_eq(t->name, "echo");
	ck_assert_str_eq(t->handler, "echo");
	ck_assert_ptr_null(t->exec);
	ck_assert_int_eq(t->kind, CONF_KIND_DEFAULT);
	ck_assert_double_eq(t->timeout, 120.5);   /* limits.timeout */
	ck_assert_int_eq(t->retries, 0);
	ck_assert_ptr_null(t->allow);
	ck_assert_uint_eq(t->nallow, 0);
	ck_assert_int_eq(t->line, 25);

	t = &c->tasks[1];
	ck_assert_str_eq(t->name, "fetch");
	ck_assert_str_eq(t->handler, "http");
	ck_assert_int_eq(t->kind, CONF_KIND_IO);
	ck_assert_double_eq(t->timeout, 10);
	ck_assert_int_eq(t->retries, 3);
	ck_assert_uint_eq(t->nallow, 2);
	ck_assert_str_eq(t->allow[0], "https://api.example.com/");
	ck_assert_str_eq(t->allow[1], "http://10.0.0.1:8080/v1/");
	ck_assert_ptr_null(t->allow[2]);
	ck_assert(t->follow_redirects);
	ck_assert_uint_eq(t->max_response, 65536);
	ck_assert_int_eq(t->line, 26);

	t = &c->tasks[2];
	ck_assert_str_eq(t->name, "cat:v1.2_x-y");
	ck_assert_ptr_null(t->handler);
	ck_assert_str_eq(t->exec[0], "/bin/cat");
	ck_assert_str_eq(t->exec[1], "-");
	ck_assert_ptr_null(t->exec[2]);
	ck_assert_int_eq(t->kind, CONF_KIND_CPU);
	ck_assert_double_eq(t->timeout, 30);
	ck_assert_int_eq(t->retries, 100);

	t = &c->tasks[3];
	ck_assert_str_eq(t->name, "plain");
	ck_assert_str_eq(t->exec[0], "/bin/cat");
	ck_assert_ptr_null(t->exec[1]);
	ck_assert_int_eq(t->kind, CONF_KIND_IO);   /* exec without kind */
	/* Given but empty is not the same as absent: it allows nothing. */
	ck_assert_ptr_nonnull(t->allow);
	ck_assert_ptr_null(t->allow[0]);
	ck_assert_uint_eq(t->nallow, 0);

	ck_assert_ptr_eq(conf_task_find(c, "fetch"), &c->tasks[1]);
	ck_assert_ptr_eq(conf_task_find(c, "cat:v1.2_x-y"), &c->tasks[2]);
	ck_assert_ptr_null(conf_task_find(c, "Echo"));
	ck_assert_ptr_null(conf_task_find(c, ""));
	conf_free(c);
	free(path);
}
END_TEST

START_TEST(test_defaults)
{
	char *path = data_path("good-minimal", ".conf");
	struct conf *c = load_ok(path);

	ck_assert_str_eq(c->broker_uri, "amqp://guest:guest@127.0.0.1:5672/%2f");
	ck_assert_str_eq(c->broker.user, "guest");
	ck_assert_str_eq(c->broker.password, "guest");
	ck_assert_str_eq(c->broker.host, "127.0.0.1");
	ck_assert_int_eq(c->broker.port, 5672);
	ck_assert_str_eq(c->broker.vhost, "/");
	ck_assert(!c->broker.tls);
	ck_assert_int_eq(c->heartbeat, 30);
	ck_assert_int_eq(c->prefetch, 0);
	ck_assert_double_eq(c->connect_timeout, 10);
	ck_assert_double_eq(c->reconnect_max, 30);
	ck_assert_ptr_null(c->password_file);
	ck_assert_ptr_null(c->cacert);
	ck_assert_int_eq(c->max_unconfirmed, 1000);
	ck_assert_uint_eq(c->max_message_size, 134217728u);
	ck_assert_str_eq(c->queue_name, "distributed_tasks");
	ck_assert(c->queue_durable);
	ck_assert_int_eq(c->queue_type, CONF_QUEUE_CLASSIC);
	ck_assert_str_eq(c->default_task, "");
	ck_assert_str_eq(c->reply_queue, "distributed_results");
	ck_assert_int_eq(c->io_max_concurrency, 10000);
	ck_assert_uint_eq(c->io_stack_size, 65536);
	ck_assert_int_eq(c->cpu_workers, 0);
	ck_assert_int_eq(c->cpu_max_tasks_per_child, 0);
	ck_assert_uint_eq(c->cpu_max_memory, 0);
	ck_assert_ptr_null(c->plugins);
	ck_assert_double_eq(c->timeout, 300);
	ck_assert_uint_eq(c->max_payload, 16777216u);
	ck_assert_int_eq(c->max_deliveries, 5);
	ck_assert_int_eq(c->log_level, LOG_LEVEL_INFO);
	ck_assert_double_eq(c->shutdown_grace, 30);
	ck_assert_uint_eq(c->ntasks, 0);
	ck_assert_ptr_null(conf_task_find(c, "echo"));
	conf_free(c);
	free(path);
}
END_TEST

START_TEST(test_limits_after_tasks)
{
	char *path = data_path("good-limits-after-tasks", ".conf");
	struct conf *c = load_ok(path);

	ck_assert_uint_eq(c->ntasks, 1);
	ck_assert_double_eq(c->tasks[0].timeout, 42);
	ck_assert_int_eq(c->heartbeat, 5);
	ck_assert_int_eq(c->queue_type, CONF_QUEUE_QUORUM);   /* durable by default */
	conf_free(c);
	free(path);
}
END_TEST

/* The shipped sample config must always load. */
START_TEST(test_shipped)
{
	char *path = data_path("../../etc/taskd", ".conf");
	struct conf *c = load_ok(path);

	ck_assert_uint_ge(c->ntasks, 4);
	conf_free(c);
	free(path);
}
END_TEST

START_TEST(test_missing_file)
{
	char *errs = load_bad("/nonexistent/taskd.conf");

	ck_assert_str_eq(errs, "/nonexistent/taskd.conf: cannot read: No such file or directory\n");
	free(errs);
}
END_TEST

/* ---- cases that need a file only known at run time ---------------------- */

static char tmpdir[64];

static void
tmp_setup(void)
{
	strcpy(tmpdir, "/tmp/check_conf.XXXXXX");
	ck_assert_ptr_nonnull(mkdtemp(tmpdir));
}

static void
tmp_teardown(void)
{
	DIR *d = opendir(tmpdir);
	struct dirent *e;

	while (d != NULL && (e = readdir(d)) != NULL) {
		if (e->d_name[0] == '.')
			continue;
		char *p = NULL;
		ck_assert_int_ge(asprintf(&p, "%s/%s", tmpdir, e->d_name), 0);
		unlink(p);
		free(p);
	}
	if (d != NULL)
		closedir(d);
	rmdir(tmpdir);
}

/* Writes len bytes of text to tmpdir/name with mode; returns the path. */
static char *
tmp_file(const char *name, const char *text, size_t len, mode_t mode)
{
	char *p = NULL;

	ck_assert_int_ge(asprintf(&p, "%s/%s", tmpdir, name), 0);
	FILE *f = fopen(p, "w");
	ck_assert_ptr_nonnull(f);
	ck_assert_uint_eq(fwrite(text, 1, len, f), len);
	ck_assert_int_eq(fclose(f), 0);
	ck_assert_int_eq(chmod(p, mode), 0);
	return p;
}

static char *
tmp_conf(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Writes tmpdir/t.conf from a printf format; returns its path. */
static char *
tmp_conf(const char *fmt, ...)
{
	char *text = NULL;
	va_list ap;

	va_start(ap, fmt);
	ck_assert_int_ge(vasprintf(&text, fmt, ap), 0);
	va_end(ap);
	char *p = tmp_file("t.conf", text, strlen(text), 0644);
	free(text);
	return p;
}

#define PW_CONF \
	"broker = {\n" \
	"  uri = \"amqp://taskd:in-uri@rabbit/%%2f\";\n" \
	"  password_file = \"%s\";\n" \
	"};\n"

START_TEST(test_password_file)
{
	static const char content[] = "pa ss:w@rd\r\nsecond line\n";
	char *pw = tmp_file("pw", content, sizeof(content) - 1, 0600);
	char *conf = tmp_conf(PW_CONF, pw);
	struct conf *c = load_ok(conf);

	ck_assert_str_eq(c->broker.user, "taskd");
	ck_assert_str_eq(c->broker.password, "pa ss:w@rd");   /* CR LF stripped */
	conf_free(c);

	/* No newline at all is fine too. */
	free(tmp_file("pw", "x", 1, 0600));
	c = load_ok(conf);
	ck_assert_str_eq(c->broker.password, "x");
	conf_free(c);
	free(conf);
	free(pw);
}
END_TEST

/* Each unusable password file, with the message it must give once the
 * temporary directory is stripped from it. */
static const struct {
	const char *content;
	size_t len;
	const char *want;
} bad_pw[] = {
	{ "", 0, "t.conf:3: broker.password_file: pw is empty\n" },
	{ "\nsecret\n", 8, "t.conf:3: broker.password_file: the first line of pw is empty\n" },
	{ "\r\n", 2, "t.conf:3: broker.password_file: the first line of pw is empty\n" },
	{ "se\0cret\n", 8, "t.conf:3: broker.password_file: pw holds a NUL byte\n" },
};

START_TEST(test_password_file_bad)
{
	char *pw = tmp_file("pw", bad_pw[_i].content, bad_pw[_i].len, 0600);
	char *conf = tmp_conf(PW_CONF, pw);
	char *prefix = NULL;

	ck_assert_int_ge(asprintf(&prefix, "%s/", tmpdir), 0);
	char *errs = strip(load_bad(conf), prefix);
	ck_assert_str_eq(errs, bad_pw[_i].want);
	ck_assert(strstr(errs, "cret") == NULL);
	free(errs);
	free(prefix);
	free(conf);
	free(pw);
}
END_TEST

START_TEST(test_password_unreadable)
{
	if (geteuid() == 0)
		return;   /* root reads mode 000 files anyway */
	char *pw = tmp_file("pw", "secret\n", 7, 0000);
	char *conf = tmp_conf(PW_CONF, pw);
	char *prefix = NULL;

	ck_assert_int_ge(asprintf(&prefix, "%s/", tmpdir), 0);
	char *errs = strip(load_bad(conf), prefix);
	ck_assert_str_eq(errs, "t.conf:3: broker.password_file: cannot read pw: Permission denied\n");
	free(errs);
	free(prefix);
	free(conf);
	free(pw);
}
END_TEST

/* A password_file next to a bad URI: both reported, nothing leaked. */
START_TEST(test_password_with_bad_uri)
{
	char *pw = tmp_file("pw", "s3cret\n", 7, 0600);
	char *text = NULL;

	ck_assert_int_ge(asprintf(&text, "broker = {\n  uri = \"amqp://u:s3cret@:1/\";\n"
	    "  password_file = \"%s\";\n};\n", pw), 0);
	char *conf = tmp_file("t.conf", text, strlen(text), 0644);
	char *errs = load_bad(conf);
	ck_assert_ptr_nonnull(strstr(errs, ":2: broker.uri: the host is empty\n"));
	ck_assert_ptr_null(strstr(errs, "s3cret"));
	free(errs);
	free(conf);
	free(text);
	free(pw);
}
END_TEST

START_TEST(test_exec_not_executable)
{
	char *prog = tmp_file("prog", "#!/bin/sh\n", 10, 0644);
	char *conf = tmp_conf("tasks = (\n  { name = \"t\";\n    exec = [ \"%s\" ]; }\n);\n", prog);
	char *prefix = NULL;

	ck_assert_int_ge(asprintf(&prefix, "%s/", tmpdir), 0);
	char *errs = strip(load_bad(conf), prefix);
	ck_assert_str_eq(errs, "t.conf:3: tasks[0].exec[0]: prog: not executable: Permission denied\n");
	free(errs);

	/* Once executable, the same file is accepted. */
	ck_assert_int_eq(chmod(prog, 0755), 0);
	struct conf *c = load_ok(conf);
	ck_assert_str_eq(c->tasks[0].exec[0], prog);
	conf_free(c);
	free(prefix);
	free(conf);
	free(prog);
}
END_TEST

/* Reloading the same file many times leaks nothing (run under valgrind)
 * and gives the same result each time. */
START_TEST(test_repeat)
{
	for (int i = 0; i < 20; i++) {
		char *path = data_path(bad[(size_t)i % NBAD], ".conf");
		char *errs = NULL;
		ck_assert_ptr_null(conf_load(path, &errs));
		free(errs);
		free(path);
		path = data_path("good-full", ".conf");
		conf_free(load_ok(path));
		free(path);
	}
	conf_free(NULL);
}
END_TEST

/* broker.uri as a list: every node parsed, in the order written (the
 * shuffle is the broker's), the password file applied to each. */
START_TEST(test_cluster)
{
	char *path = data_path("good-cluster", ".conf");
	struct conf *c = load_ok(path);

	ck_assert_uint_eq(c->nnodes, 3);
	ck_assert_str_eq(c->broker_uris[0], "amqps://taskd@n1.example.com/jobs");
	ck_assert_ptr_null(c->broker_uris[3]);
	ck_assert_str_eq(c->broker_uri, c->broker_uris[0]);
	const char *hosts[] = { "n1.example.com", "n2.example.com", "::1" };
	const int ports[] = { 5671, 5999, 5671 };
	for (size_t i = 0; i < 3; i++) {
		ck_assert_str_eq(c->nodes[i].host, hosts[i]);
		ck_assert_int_eq(c->nodes[i].port, ports[i]);
		ck_assert(c->nodes[i].tls);
		ck_assert_str_eq(c->nodes[i].user, "taskd");
		ck_assert_str_eq(c->nodes[i].password, "Linux");
		ck_assert_str_eq(c->nodes[i].vhost, "jobs");
	}
	/* The first node stays conf->broker, for what names one node. */
	ck_assert_str_eq(c->broker.host, "n1.example.com");
	ck_assert_str_eq(c->broker.password, "Linux");
	conf_free(c);
	free(path);

	/* A string is a list of one. */
	path = data_path("good-minimal", ".conf");
	c = load_ok(path);
	ck_assert_uint_eq(c->nnodes, 1);
	ck_assert_str_eq(c->nodes[0].host, "127.0.0.1");
	ck_assert_ptr_null(c->broker_uris[1]);
	conf_free(c);
	free(path);
}
END_TEST

/* The PEM checks behind broker.cacert, broker.cert and broker.key. */
START_TEST(test_tlsfiles)
{
	char err[512];
	int which = -1;
	const char *ca = TEST_DATA "/tls/ca.pem", *cert = TEST_DATA "/tls/node.pem";
	const char *key = TEST_DATA "/tls/node.key", *other = TEST_DATA "/tls/other.key";
	const char *enc = TEST_DATA "/tls/encrypted.key", *junk = TEST_DATA "/tls/not-pem.txt";

	ck_assert_int_eq(tlsfiles_check_ca(ca, err, sizeof(err)), 0);
	ck_assert_int_eq(tlsfiles_check_pair(cert, key, &which, err, sizeof(err)), 0);

	ck_assert_int_eq(tlsfiles_check_ca(junk, err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "holds no PEM certificate") != NULL, "%s", err);
	ck_assert_int_eq(tlsfiles_check_ca(TEST_DATA "/tls/none.pem", err, sizeof(err)), -1);
	ck_assert_msg(strstr(err, "cannot read") != NULL && strstr(err, "No such file"), "%s", err);

	ck_assert_int_eq(tlsfiles_check_pair(cert, other, &which, err, sizeof(err)), -1);
	ck_assert_int_eq(which, 1);
	ck_assert_msg(strstr(err, "is not the private key of the certificate in") != NULL, "%s", err);
	ck_assert_int_eq(tlsfiles_check_pair(cert, enc, &which, err, sizeof(err)), -1);
	ck_assert_int_eq(which, 1);
	ck_assert_msg(strstr(err, "is encrypted") != NULL, "%s", err);
	ck_assert_int_eq(tlsfiles_check_pair(cert, junk, &which, err, sizeof(err)), -1);
	ck_assert_int_eq(which, 1);
	ck_assert_msg(strstr(err, "holds no PEM private key") != NULL, "%s", err);
	ck_assert_int_eq(tlsfiles_check_pair(junk, key, &which, err, sizeof(err)), -1);
	ck_assert_int_eq(which, 0);
	ck_assert_msg(strstr(err, "holds no PEM certificate") != NULL, "%s", err);
	/* A key is not a certificate. */
	ck_assert_int_eq(tlsfiles_check_pair(key, key, &which, err, sizeof(err)), -1);
	ck_assert_int_eq(which, 0);
}
END_TEST

int
main(void)
{
	/* libconfig resolves @include against the working directory. */
	if (chdir(TEST_DATA) < 0) {
		perror(TEST_DATA);
		return EXIT_FAILURE;
	}

	Suite *s = suite_create("conf");
	TCase *tc = tcase_create("data");
	tcase_add_loop_test(tc, test_bad, 0, (int)NBAD);
	tcase_add_test(tc, test_bad_all_listed);
	tcase_add_test(tc, test_full);
	tcase_add_test(tc, test_defaults);
	tcase_add_test(tc, test_limits_after_tasks);
	tcase_add_test(tc, test_shipped);
	tcase_add_test(tc, test_missing_file);
	tcase_add_test(tc, test_repeat);
	tcase_add_test(tc, test_cluster);
	tcase_add_test(tc, test_tlsfiles);
	suite_add_tcase(s, tc);

	tc = tcase_create("runtime");
	tcase_add_checked_fixture(tc, tmp_setup, tmp_teardown);
	tcase_add_test(tc, test_password_file);
	tcase_add_loop_test(tc, test_password_file_bad, 0,
	    (int)(sizeof(bad_pw) / sizeof(bad_pw[0])));
	tcase_add_test(tc, test_password_unreadable);
	tcase_add_test(tc, test_password_with_bad_uri);
	tcase_add_test(tc, test_exec_not_executable);
	suite_add_tcase(s, tc);

	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
