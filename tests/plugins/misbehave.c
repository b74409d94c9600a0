/*
 * A plugin for the pool's fault tests, never installed:
 *
 *   spin   (cpu) computes for ever and ignores its deadline: the pool must
 *                kill the worker at the deadline
 *   pid    (cpu) answers the worker's pid (to see recycling)
 *   grow   (cpu) allocates and touches payload-many MiB and keeps them
 *                (cpu.max_memory recycling)
 *   big    (cpu) answers payload-many MiB (the result size limit)
 *   segv   (io)  crashes the daemon itself with SIGSEGV: an io handler
 *                runs inside taskd, so this is a task that kills taskd
 *                (limits.max_deliveries)
 *
 * Built twice: as misbehave.so, and with -DWRONG_ABI as wrongabi.so, which
 * claims another ABI version and must be refused.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <taskd/plugin.h>

static volatile unsigned long sink;

static void
spin(const struct taskd_input *in, struct taskd_output *out)
{
	(void)in;
	(void)out;
	for (;;)
		sink++;
}

static void
pid(const struct taskd_input *in, struct taskd_output *out)
{
	(void)in;
	char b[32];
	int n = snprintf(b, sizeof(b), "%ld", (long)getpid());
	(void)taskd_output_append(out, b, (size_t)n);
}

/* Not static: a store the compiler could prove unread would be dropped,
 * and the allocation with it. */
void *misbehave_kept;

static void
grow(const struct taskd_input *in, struct taskd_output *out)
{
	char num[16] = "1";
	if (in->len > 0 && in->len < sizeof(num)) {
		memcpy(num, in->payload, in->len);
		num[in->len] = '\0';
	}
	size_t mib = (size_t)strtoul(num, NULL, 10);
	char *p = malloc(mib << 20);
	if (p != NULL) {
		memset(p, 1, mib << 20);
		misbehave_kept = p;   /* on purpose: the worker keeps it */
	}
	pid(in, out);
}

static void
big(const struct taskd_input *in, struct taskd_output *out)
{
	static const char chunk[4096];
	char num[16] = "1";
	if (in->len > 0 && in->len < sizeof(num)) {
		memcpy(num, in->payload, in->len);
		num[in->len] = '\0';
	}
	size_t n = (size_t)strtoul(num, NULL, 10) << 8;   /* 4 KiB chunks */
	for (size_t i = 0; i < n; i++)
		if (taskd_output_append(out, chunk, sizeof(chunk)) < 0)
			return;
}

/* Not static, and written through a volatile pointer: the compiler must
 * not prove the store undefined and drop it. */
int *volatile misbehave_nowhere;

static void
segv(const struct taskd_input *in, struct taskd_output *out)
{
	(void)in;
	(void)out;
	*misbehave_nowhere = 1;
}

static const struct taskd_handler handlers[] = {
	{ "spin", TASKD_KIND_CPU, spin },
	{ "pid", TASKD_KIND_CPU, pid },
	{ "grow", TASKD_KIND_CPU, grow },
	{ "big", TASKD_KIND_CPU, big },
	{ "segv", TASKD_KIND_IO, segv },
	{ NULL, 0, NULL },
};

const struct taskd_plugin taskd_plugin = {
#ifdef WRONG_ABI
	.abi = TASKD_PLUGIN_ABI + 41,
#else
	.abi = TASKD_PLUGIN_ABI,
#endif
	.name = "misbehave",
	.version = "0",
	.handlers = handlers,
};
