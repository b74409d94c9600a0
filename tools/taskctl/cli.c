/* cli: exit codes, parsing, clock, ids, signals (cli.h). */

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include "cli.h"

volatile sig_atomic_t cli_interrupted;

static void
on_signal(int sig)
{
	(void)sig;
	cli_interrupted = 1;
}

int
cli_signals(bool catch_interrupt)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) < 0)
		return -1;
	if (catch_interrupt) {
		sa.sa_handler = on_signal;
		if (sigaction(SIGINT, &sa, NULL) < 0 ||
		    sigaction(SIGTERM, &sa, NULL) < 0)
			return -1;
	}
	return 0;
}

uint64_t
cli_now_ns(void)
{
	struct timespec ts;
	/* Cannot fail with a valid pointer; latencies and deadlines must not
	 * jump with the wall clock. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

int
cli_parse_count(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	if (s[0] == '-' || s[0] == '+' || s[0] == '\0')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = v;
	return 0;
}

int
cli_parse_number(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0)
		return -1;
	*out = v;
	return 0;
}

int
cli_random(void *out, size_t n)
{
	/* Requests of up to 256 bytes are never short once the pool is
	 * initialised; anything else is an error, not a partial id. */
	ssize_t r;
	do
		r = getrandom(out, n, 0);
	while (r < 0 && errno == EINTR);
	return r == (ssize_t)n ? 0 : -1;
}

int
cli_uuid(char out[37])
{
	unsigned char u[16];
	if (cli_random(u, sizeof(u)) < 0)
		return -1;
	u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
	u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
	snprintf(out, 37,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x",
	    u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
	    u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
	return 0;
}

int
cli_printable(struct buf *b, amqp_bytes_t in)
{
	buf_reset(b);
	if (buf_reserve(b, in.len) < 0)
		return -1;
	const unsigned char *p = in.bytes;
	for (size_t i = 0; i < in.len; i++) {
		char c = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : (char)p[i];
		if (buf_append(b, &c, 1) < 0)
			return -1;
	}
	return 0;
}
