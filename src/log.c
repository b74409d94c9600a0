#include "log.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* A message longer than this (before escaping) is cut, and says so: a
 * line stays below journald's LineMax (48 KiB) even when every byte of it
 * is escaped to four. */
#define LOG_MSG_MAX 8192

static enum log_level log_level = LOG_LEVEL_INFO;
static int log_journal;

static const char *const log_names[] = { "error", "warn", "info", "debug" };
/* sd-daemon(3) priorities: err, warning, info, debug. */
static const int log_prio[] = { 3, 4, 6, 7 };

void
log_init(void)
{
	/* JOURNAL_STREAM is "dev:ino" of the stream journald gave us; only when
	 * it is still our stderr do the prefixes mean anything to a reader. */
	const char *js = getenv("JOURNAL_STREAM");
	struct stat st;
	unsigned long long dev, ino;

	log_journal = 0;
	if (js != NULL && sscanf(js, "%llu:%llu", &dev, &ino) == 2 &&
	    fstat(STDERR_FILENO, &st) == 0 &&
	    (unsigned long long)st.st_dev == dev &&
	    (unsigned long long)st.st_ino == ino)
		log_journal = 1;
}

void
log_set_level(enum log_level level)
{
	log_level = level;
}

enum log_level
log_get_level(void)
{
	return log_level;
}

int
log_level_parse(const char *name)
{
	for (size_t i = 0; i < sizeof(log_names) / sizeof(log_names[0]); i++)
		if (strcmp(name, log_names[i]) == 0)
			return (int)i;
	return -1;
}

const char *
log_level_name(enum log_level level)
{
	return log_names[level];
}

/* The length of the well-formed UTF-8 sequence at s (n bytes left) that
 * is no control character, or 0.  Overlong forms, surrogates and code
 * points past U+10FFFF are not well formed (RFC 3629); C1 controls
 * (U+0080..U+009F, e.g. U+009B, a terminal's CSI) are controls. */
static size_t
log_utf8_len(const unsigned char *s, size_t n)
{
	size_t len;
	unsigned char lo = 0x80, hi = 0xbf;

	if (s[0] >= 0xc2 && s[0] <= 0xdf)
		len = 2;
	else if (s[0] >= 0xe0 && s[0] <= 0xef)
		len = 3;
	else if (s[0] >= 0xf0 && s[0] <= 0xf4)
		len = 4;
	else
		return 0;
	if (n < len)
		return 0;
	if (s[0] == 0xc2)
		lo = 0xa0;              /* C1 controls */
	else if (s[0] == 0xe0)
		lo = 0xa0;              /* overlong */
	else if (s[0] == 0xed)
		hi = 0x9f;              /* surrogates */
	else if (s[0] == 0xf0)
		lo = 0x90;              /* overlong */
	else if (s[0] == 0xf4)
		hi = 0x8f;              /* past U+10FFFF */
	if (s[1] < lo || s[1] > hi)
		return 0;
	for (size_t i = 2; i < len; i++)
		if (s[i] < 0x80 || s[i] > 0xbf)
			return 0;
	return len;
}

size_t
log_escape(char *out, size_t cap, const void *src, size_t n)
{
	static const char hex[] = "0123456789abcdef";
	const unsigned char *s = src;
	size_t o = 0, w = 0;
	bool full = cap == 0;

	for (size_t i = 0; i < n;) {
		unsigned char c = s[i], u[4];
		size_t ulen = c >= 0x80 ? log_utf8_len(s + i, n - i) : 0;
		if (ulen > 0) {
			memcpy(u, s + i, ulen);
			i += ulen;
		} else if (c == '\\') {
			u[0] = u[1] = '\\';
			ulen = 2;
			i++;
		} else if (c >= 0x20 && c < 0x7f) {
			u[0] = c;
			ulen = 1;
			i++;
		} else {
			u[0] = '\\';
			u[1] = 'x';
			u[2] = (unsigned char)hex[c >> 4];
			u[3] = (unsigned char)hex[c & 0xf];
			ulen = 4;
			i++;
		}
		/* Whole units only: a cut never leaves half an escape or half a
		 * UTF-8 sequence behind. */
		if (!full && w + ulen < cap) {
			memcpy(out + w, u, ulen);
			w += ulen;
		} else {
			full = true;
		}
		o += ulen;
	}
	if (cap > 0)
		out[w] = '\0';
	return o;
}

void
log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > log_level)
		return;

	/* The whole message is formatted, then escaped: any argument may hold
	 * a client's bytes (a reply address, a task name, a worker's words),
	 * and escaping here, once, means no call site can forget to.  No
	 * legitimate line holds a newline, so an escaped one is always data. */
	char small[512], esmall[1024];
	char *msg = small, *esc = esmall;
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(small, sizeof(small), fmt, ap);
	va_end(ap);
	if (n < 0) {
		n = (int)strlen(fmt);
		msg = (char *)fmt;
	}
	size_t len = (size_t)n, cut = 0;
	if (len > LOG_MSG_MAX) {
		cut = len - LOG_MSG_MAX;
		len = LOG_MSG_MAX;
	}
	if (msg == small && len >= sizeof(small)) {
		msg = malloc(len + 1);
		if (msg != NULL) {
			va_start(ap, fmt);
			(void)vsnprintf(msg, len + 1, fmt, ap);
			va_end(ap);
		} else {
			/* Out of memory: what fits in the small buffer. */
			msg = small;
			cut += len - (sizeof(small) - 1);
			len = sizeof(small) - 1;
		}
	}
	size_t need = log_escape(NULL, 0, msg, len) + 1;
	if (need > sizeof(esmall)) {
		esc = malloc(need);
		if (esc == NULL) {
			esc = esmall;
			need = sizeof(esmall);
		}
	}
	(void)log_escape(esc, need, msg, len);

	/* One fprintf per line so lines from workers never interleave mid-line. */
	char more[48] = "";
	if (cut > 0)
		snprintf(more, sizeof(more), "... (%zu more bytes)", cut);
	if (log_journal) {
		fprintf(stderr, "<%d>%s%s\n", log_prio[level], esc, more);
	} else {
		struct timespec ts;
		struct tm tm;
		char when[32];
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ld taskd[%ld]: %s: %s%s\n", when,
		    ts.tv_nsec / 1000000, (long)getpid(), log_names[level], esc, more);
	}
	fflush(stderr);
	if (msg != small && msg != fmt)
		free(msg);
	if (esc != esmall)
		free(esc);
}
