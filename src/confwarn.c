#include "confwarn.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <sys/stat.h>

#include "log.h"
#include "uri.h"

/* Mappings besides coroutine stacks: libraries, heap, curl, the pool's
 * buffers (a running taskd maps a few hundred). */
#define CONFWARN_MAPS_RESERVE 1000

/* RabbitMQ's default consumer_timeout: a delivery unacked this long makes
 * the broker close the channel under the task. */
#define CONFWARN_CONSUMER_TIMEOUT 1800.0

/* Where a finding points ("FILE" or "FILE:LINE") and what it says. */
typedef void confwarn_sink(void *ctx, const char *where, const char *what);

static void
confwarn_say(confwarn_sink *sink, void *ctx, const char *where, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
confwarn_say(confwarn_sink *sink, void *ctx, const char *where, const char *fmt, ...)
{
	/* Above any path plus its sentence; log.c cuts lines there anyway. */
	char what[8192];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(what, sizeof(what), fmt, ap);
	va_end(ap);
	if (n < 0)
		return;
	sink(ctx, where, what);
}

/* vm.max_map_count, or 0 when it cannot be read (not Linux, no /proc). */
static long
confwarn_max_map_count(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	long n = 0;

	if (f == NULL)
		return 0;
	if (fscanf(f, "%ld", &n) != 1)
		n = 0;
	fclose(f);
	return n;
}

static bool
confwarn_readable_by_all(const char *path)
{
	struct stat st;
	return stat(path, &st) == 0 && (st.st_mode & S_IROTH);
}

static void
confwarn_each(const struct conf *conf, confwarn_sink *sink, void *ctx)
{
	/* Each coroutine stack is two mappings (guard + stack); the process
	 * needs some more for its libraries and heap.  Past the limit a task
	 * is answered "error" instead of waiting, so say so before it happens. */
	long maps = confwarn_max_map_count();
	long want = 2L * conf->io_max_concurrency + CONFWARN_MAPS_RESERVE;
	if (maps > 0 && want > maps)
		confwarn_say(sink, ctx, conf->path, "io.max_concurrency: %d coroutines "
		    "need about %ld memory mappings, above vm.max_map_count (%ld): "
		    "tasks past about %ld would fail with \"no memory for a coroutine "
		    "stack\" (raise vm.max_map_count with sysctl, or lower "
		    "io.max_concurrency)", conf->io_max_concurrency, want, maps,
		    (maps - CONFWARN_MAPS_RESERVE) / 2);
	for (size_t i = 0; i < conf->ntasks; i++) {
		if (conf->tasks[i].timeout < CONFWARN_CONSUMER_TIMEOUT)
			continue;
		char where[4096 + 16];
		snprintf(where, sizeof(where), "%s:%d", conf->path, conf->tasks[i].line);
		confwarn_say(sink, ctx, where, "tasks[%zu].timeout: %.0f s is not below "
		    "the broker's consumer timeout (%.0f s by default): the broker "
		    "would close the channel under a task that runs that long",
		    i, conf->tasks[i].timeout, CONFWARN_CONSUMER_TIMEOUT);
	}

	/* A secret that every local user can read. */
	bool pw = false;
	for (size_t i = 0; conf->broker_uris != NULL && conf->broker_uris[i] != NULL; i++)
		pw = pw || uri_has_password(conf->broker_uris[i]);
	if (pw && confwarn_readable_by_all(conf->path))
		confwarn_say(sink, ctx, conf->path, "broker.uri holds a password and "
		    "the file is readable by every user (chmod o-r, or move the "
		    "password to broker.password_file)");
	if (conf->password_file != NULL && confwarn_readable_by_all(conf->password_file))
		confwarn_say(sink, ctx, conf->path, "broker.password_file %s is "
		    "readable by every user (chmod o-r)", conf->password_file);
}

static void
confwarn_to_log(void *ctx, const char *where, const char *what)
{
	(void)ctx;
	log_warn("%s: %s", where, what);
}

void
confwarn_log(const struct conf *conf)
{
	confwarn_each(conf, confwarn_to_log, NULL);
}

static void
confwarn_to_file(void *ctx, const char *where, const char *what)
{
	fprintf(ctx, "%s: warning: %s\n", where, what);
}

void
confwarn_print(const struct conf *conf, FILE *out)
{
	confwarn_each(conf, confwarn_to_file, out);
}
