#include <check.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "log.h"

#define S(lit) lit, sizeof(lit) - 1

/* Input bytes and their rendering. */
static const struct {
	const char *in;
	size_t len;
	const char *out;
} cases[] = {
	{ S(""), "" },
	{ S("plain ASCII, quotes ' \" and <angle>"), "plain ASCII, quotes ' \" and <angle>" },
	/* The forged journald line: the newline goes, the prefix is text. */
	{ S("a\n<0>forged"), "a\\x0a<0>forged" },
	{ S("cr\rlf\ntab\tnul\0end"), "cr\\x0dlf\\x0atab\\x09nul\\x00end" },
	{ S("\x01\x1f\x7f"), "\\x01\\x1f\\x7f" },
	/* ESC sequences: a terminal never sees the ESC. */
	{ S("\x1b[2J\x1b]0;t\x07"), "\\x1b[2J\\x1b]0;t\\x07" },
	/* A backslash is doubled, so "\x0a" in the input stays told apart. */
	{ S("\\x0a \\"), "\\\\x0a \\\\" },
	/* Well-formed UTF-8 stays: 2, 3 and 4 bytes, the ends of each range. */
	{ S("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"), "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80" },
	{ S("\xc2\xa0\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf"),
	  "\xc2\xa0\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf" },
	{ S("\xed\x9f\xbf"), "\xed\x9f\xbf" },          /* U+D7FF, below the surrogates */
	/* C1 controls (U+0080..U+009F; U+009B is CSI) are controls. */
	{ S("\xc2\x80\xc2\x9b\xc2\x9f"), "\\xc2\\x80\\xc2\\x9b\\xc2\\x9f" },
	/* Not well formed: each byte escaped, the next byte starts afresh. */
	{ S("\xff\xfe"), "\\xff\\xfe" },
	{ S("\x80 lone continuation"), "\\x80 lone continuation" },
	{ S("\xc3"), "\\xc3" },                          /* cut short at the end */
	{ S("\xc3(x"), "\\xc3(x" },                      /* cut short by ASCII */
	{ S("\xe2\x82"), "\\xe2\\x82" },
	{ S("\xc0\xaf"), "\\xc0\\xaf" },                 /* overlong '/' */
	{ S("\xc1\xbf"), "\\xc1\\xbf" },
	{ S("\xe0\x80\xaf"), "\\xe0\\x80\\xaf" },        /* overlong, 3 bytes */
	{ S("\xf0\x80\x80\xaf"), "\\xf0\\x80\\x80\\xaf" },
	{ S("\xed\xa0\x80"), "\\xed\\xa0\\x80" },        /* surrogate U+D800 */
	{ S("\xf4\x90\x80\x80"), "\\xf4\\x90\\x80\\x80" }, /* past U+10FFFF */
	{ S("\xf5\x80\x80\x80"), "\\xf5\\x80\\x80\\x80" },
	/* A valid sequence right after an invalid lead byte survives. */
	{ S("\xe2\xc3\xa9"), "\\xe2\xc3\xa9" },
};

START_TEST(test_table)
{
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		char out[256];
		size_t want = strlen(cases[i].out);
		size_t n = log_escape(out, sizeof(out), cases[i].in, cases[i].len);
		ck_assert_msg(n == want && strcmp(out, cases[i].out) == 0,
		    "case %zu: got \"%s\" (%zu), want \"%s\" (%zu)", i, out, n,
		    cases[i].out, want);
		/* The size query agrees with the rendering. */
		ck_assert_uint_eq(log_escape(NULL, 0, cases[i].in, cases[i].len), want);
	}
}
END_TEST

/* Every byte value alone: the output is printable ASCII, or the byte
 * itself only for printable ASCII; nothing else ever passes. */
START_TEST(test_every_byte)
{
	for (int c = 0; c < 256; c++) {
		unsigned char in = (unsigned char)c;
		char out[8];
		size_t n = log_escape(out, sizeof(out), &in, 1);
		if (c >= 0x20 && c < 0x7f && c != '\\') {
			ck_assert_uint_eq(n, 1);
			ck_assert_int_eq((unsigned char)out[0], c);
		} else if (c == '\\') {
			ck_assert_str_eq(out, "\\\\");
		} else {
			char want[8];
			snprintf(want, sizeof(want), "\\x%02x", c);
			ck_assert_str_eq(out, want);
		}
	}
}
END_TEST

/* A short buffer gets whole units only, NUL-terminated, and the return
 * value still tells the full length. */
START_TEST(test_truncation)
{
	static const char in[] = "ab\n\xc3\xa9z";   /* ab \x0a é z: 2 + 4 + 2 + 1 */
	static const struct { size_t cap; const char *out; } cuts[] = {
		{ 1, "" }, { 2, "a" }, { 3, "ab" }, { 4, "ab" }, { 6, "ab" },
		{ 7, "ab\\x0a" }, { 8, "ab\\x0a" }, { 9, "ab\\x0a\xc3\xa9" },
		{ 10, "ab\\x0a\xc3\xa9z" },
	};
	for (size_t i = 0; i < sizeof(cuts) / sizeof(cuts[0]); i++) {
		char out[16];
		memset(out, 'X', sizeof(out));
		size_t n = log_escape(out, cuts[i].cap, in, sizeof(in) - 1);
		ck_assert_uint_eq(n, 9);
		ck_assert_msg(strcmp(out, cuts[i].out) == 0, "cap %zu: got \"%s\", want \"%s\"",
		    cuts[i].cap, out, cuts[i].out);
		ck_assert_int_eq(out[cuts[i].cap], 'X');  /* nothing past cap */
	}
}
END_TEST

/* Reads back what log_msg wrote to stderr (redirected to a file). */
static char *
capture(const char *path, int journal, void (*emit)(void))
{
	FILE *f = fopen(path, "w+");
	ck_assert_ptr_nonnull(f);
	int saved = dup(STDERR_FILENO);
	ck_assert_int_ge(saved, 0);
	fflush(stderr);
	ck_assert_int_eq(dup2(fileno(f), STDERR_FILENO), STDERR_FILENO);
	if (journal) {
		struct stat st;
		ck_assert_int_eq(fstat(fileno(f), &st), 0);
		char js[64];
		snprintf(js, sizeof(js), "%llu:%llu", (unsigned long long)st.st_dev,
		    (unsigned long long)st.st_ino);
		setenv("JOURNAL_STREAM", js, 1);
	} else {
		unsetenv("JOURNAL_STREAM");
	}
	log_init();
	emit();
	fflush(stderr);
	dup2(saved, STDERR_FILENO);
	close(saved);
	long size = ftell(f);
	ck_assert_int_ge(size, 0);
	char *buf = calloc(1, (size_t)size + 1);
	ck_assert_ptr_nonnull(buf);
	rewind(f);
	ck_assert_uint_eq(fread(buf, 1, (size_t)size, f), (size_t)size);
	fclose(f);
	unsetenv("JOURNAL_STREAM");
	log_init();
	return buf;
}

static void
emit_hostile(void)
{
	log_set_level(LOG_LEVEL_INFO);
	log_warn("reply address '%s' has no queue", "q\n<0>forged\x1b[2J");
	log_info("%s", "a\xff\n<3>b");
	log_debug("%s", "below the level: not written\n<0>");
}

START_TEST(test_journal_line)
{
	char path[] = "/tmp/check_log.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	char *got = capture(path, 1, emit_hostile);
	ck_assert_str_eq(got,
	    "<4>reply address 'q\\x0a<0>forged\\x1b[2J' has no queue\n"
	    "<6>a\\xff\\x0a<3>b\n");
	free(got);
	unlink(path);
}
END_TEST

START_TEST(test_plain_line)
{
	char path[] = "/tmp/check_log.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	char *got = capture(path, 0, emit_hostile);
	/* "YYYY-MM-DD HH:MM:SS.mmm taskd[PID]: warn: ..." then info. */
	char *nl = strchr(got, '\n');
	ck_assert_ptr_nonnull(nl);
	ck_assert_ptr_nonnull(strstr(got, "]: warn: reply address 'q\\x0a<0>forged\\x1b[2J' has no queue\n"));
	ck_assert_ptr_nonnull(strstr(nl + 1, "]: info: a\\xff\\x0a<3>b\n"));
	ck_assert_ptr_null(strchr(strchr(nl + 1, '\n') + 1, '\n'));   /* two lines */
	free(got);
	unlink(path);
}
END_TEST

static void
emit_long(void)
{
	/* 20,000 newlines: cut to 8 KiB before escaping, and the line says so. */
	size_t n = 20000;
	char *s = malloc(n + 1);
	ck_assert_ptr_nonnull(s);
	memset(s, '\n', n);
	s[n] = '\0';
	log_warn("%s", s);
	free(s);
}

START_TEST(test_long_message_cut)
{
	char path[] = "/tmp/check_log.XXXXXX";
	int fd = mkstemp(path);
	ck_assert_int_ge(fd, 0);
	close(fd);
	char *got = capture(path, 1, emit_long);
	size_t len = strlen(got);
	ck_assert_uint_eq(len, 3 + 8192 * 4 + strlen("... (11808 more bytes)") + 1);
	ck_assert_ptr_eq(strchr(got, '\n'), got + len - 1);
	ck_assert_ptr_nonnull(strstr(got, "\\x0a... (11808 more bytes)\n"));
	free(got);
	unlink(path);
}
END_TEST

int
main(void)
{
	Suite *s = suite_create("log");
	TCase *tc = tcase_create("escape");
	tcase_add_test(tc, test_table);
	tcase_add_test(tc, test_every_byte);
	tcase_add_test(tc, test_truncation);
	tcase_add_test(tc, test_journal_line);
	tcase_add_test(tc, test_plain_line);
	tcase_add_test(tc, test_long_message_cut);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
