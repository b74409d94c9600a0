/*
 * A plugin for the pool's fault tests, never installed:
 *
 *   spin   (cpu) computes for ever and ignores its deadline: the pool must
 *                kill the worker at the deadline
 *   pid    (cpu) answers the worker's pid (to see recycling)
 *   grow   (cpu) allocates and touches payload-many MiB and keeps them
 *                (cpu.max_memory recycling)
 *   big    (cpu) answers payload-many MiB (the result size limit)
 *   flood  (cpu) breaks the worker's protocol by writing to the channel
 *                (fd 3) behind the worker's back; the payload says how:
 *                  child SEQ  CHILD frames for task SEQ, for ever (only
 *                             the first is allowed), in writes that end
 *                             mid-frame
 *                  ready      a READY frame while running a task
 *                  zero       a frame whose length is 0
 *                  huge       a frame whose length is past any limit
 *                  type       a frame of a type nobody sends
 *                It then answers normally, if the worker is still alive.
 *   hangup (cpu) answers, but shuts the reading side of the channel first
 *                and keeps the worker process alive for 5 s after it
 *                ends: the worker goes away while idle, and the daemon's
 *                next write to it fails before any end of file or exit
 *                status can tell (a dead worker not yet seen)
 *   segv   (io)  crashes the daemon itself with SIGSEGV: an io handler
 *                runs inside taskd, so this is a task that kills taskd
 *                (limits.max_deliveries)
 *
 * Built twice: as misbehave.so, and with -DWRONG_ABI as wrongabi.so, which
 * claims another ABI version and must be refused.
 */
#include <errno.h>
#include <sys/socket.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
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

/* The channel to the daemon (worker.h: WORKER_FD). */
#define CHANNEL 3

static int
write_all(const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(CHANNEL, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;   /* the daemon closed the channel: it saw us */
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* A frame header (src/frame.h): u32 length of what follows, u8 type. */
static size_t
header(unsigned char *b, uint32_t len, uint8_t type)
{
	memcpy(b, &len, 4);
	b[4] = type;
	return 5;
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + ts.tv_nsec / 1e9;
}

/* Writes buf[0..n) again and again, in 4000-byte writes (so a write ends
 * inside a frame), until the daemon closes the channel or 20 s pass. */
static void
repeat(const unsigned char *buf, size_t n)
{
	double end = now() + 20.0;
	size_t at = 0;
	while (now() < end) {
		size_t k = n - at < 4000 ? n - at : 4000;
		if (write_all(buf + at, k) < 0)
			return;
		at = (at + k) % n;
	}
}

static void
flood(const struct taskd_input *in, struct taskd_output *out)
{
	char mode[32] = "";
	if (in->len < sizeof(mode)) {
		memcpy(mode, in->payload, in->len);
		mode[in->len] = '\0';
	}
	unsigned char f[64];
	size_t n;
	if (strncmp(mode, "child ", 6) == 0) {
		/* 17-byte CHILD frames: seq, and our own process group (so the
		 * daemon's kill of "the program's group" hits only us). */
		uint64_t seq = strtoull(mode + 6, NULL, 10);
		int32_t pgid = (int32_t)getpgrp();
		static unsigned char many[17 * 1000];
		for (size_t i = 0; i < 1000; i++) {
			n = header(many + 17 * i, 13, 3);
			memcpy(many + 17 * i + n, &seq, 8);
			memcpy(many + 17 * i + n + 8, &pgid, 4);
		}
		repeat(many, sizeof(many));
	} else if (strcmp(mode, "ready") == 0) {
		uint32_t slot = 1;
		n = header(f, 5, 5);
		memcpy(f + n, &slot, 4);
		(void)write_all(f, n + 4);
	} else if (strcmp(mode, "zero") == 0) {
		uint32_t zero = 0;
		(void)write_all(&zero, 4);
	} else if (strcmp(mode, "huge") == 0) {
		n = header(f, 0xfffffff0u, 4);
		(void)write_all(f, n);
	} else if (strcmp(mode, "type") == 0) {
		n = header(f, 9, 99);
		memset(f + n, 0, 8);
		(void)write_all(f, n + 8);
	}
	/* The daemon needs a moment to read what we sent; a worker it has
	 * not killed by then answers. */
	usleep(200000);
	(void)taskd_output_append(out, "survived", 8);
}

static void
linger(void)
{
	sleep(5);
}

static void
hangup(const struct taskd_input *in, struct taskd_output *out)
{
	(void)in;
	/* The worker reads end of file at once and exits (after linger);
	 * the daemon, whose sending side this shuts, gets EPIPE. */
	if (shutdown(CHANNEL, SHUT_RD) < 0 || atexit(linger) != 0) {
		taskd_output_fail(out, TASKD_ERROR, "handler_failed", "cannot hang up");
		return;
	}
	(void)taskd_output_append(out, "hung up", 7);
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
	{ "flood", TASKD_KIND_CPU, flood },
	{ "hangup", TASKD_KIND_CPU, hangup },
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
