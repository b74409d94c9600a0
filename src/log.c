#include "log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

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

void
log_msg(enum log_level level, const char *fmt, ...)
{
	if (level > log_level)
		return;

	/* One fprintf per line so lines from workers never interleave mid-line. */
	char msg[2048];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);

	if (log_journal) {
		fprintf(stderr, "<%d>%s\n", log_prio[level], msg);
	} else {
		struct timespec ts;
		struct tm tm;
		char when[32];
		clock_gettime(CLOCK_REALTIME, &ts);
		localtime_r(&ts.tv_sec, &tm);
		strftime(when, sizeof(when), "%Y-%m-%d %H:%M:%S", &tm);
		fprintf(stderr, "%s.%03ld taskd[%ld]: %s: %s\n", when,
		    ts.tv_nsec / 1000000, (long)getpid(), log_names[level], msg);
	}
	fflush(stderr);
}
