/* The built-in handlers of design §4: echo, sleep (I/O), sha256, burn (CPU). */
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <openssl/evp.h>

#include "coro.h"
#include "handler.h"

/* echo and sleep run on coroutines (handler_co.c): straight-line code
 * where sleep waits, instead of a timer callback. */
static void
echo_co(struct handler_call *call)
{
	/* An empty echo allocates nothing: the common no-op task. */
	if (call->in.len > 0 &&
	    buf_append(&call->out.body, call->in.payload, call->in.len) < 0) {
		handler_fail(&call->out, RESULT_ERROR, "handler_failed", "out of memory");
	} else {
		call->out.status = RESULT_OK;
		call->out.content_type = NULL; /* the input's */
	}
}

const struct handler handler_echo = { "echo", HANDLER_IO, NULL, handler_co_start, echo_co };

static void
sleep_co(struct handler_call *call)
{
	long ms;
	if (handler_parse_ms(call->in.payload, call->in.len, &ms) < 0) {
		handler_fail(&call->out, RESULT_REJECTED, "bad_payload",
		    "sleep wants a whole number of milliseconds (0..86400000)");
		return;
	}
	if (coro_sleep((double)ms / 1000.0) == CORO_CANCELLED)
		return;
	if (buf_append(&call->out.body, call->in.payload, call->in.len) < 0) {
		handler_fail(&call->out, RESULT_ERROR, "handler_failed", "out of memory");
		return;
	}
	call->out.status = RESULT_OK;
	call->out.content_type = "text/plain";
}

const struct handler handler_sleep = { "sleep", HANDLER_IO, NULL, handler_co_start, sleep_co };

static void
sha256_run(const struct handler_input *in, struct handler_output *out)
{
	unsigned char md[EVP_MAX_MD_SIZE];
	unsigned int mdlen = 0;
	static const char hex[] = "0123456789abcdef";

	if (EVP_Digest(in->payload, in->len, md, &mdlen, EVP_sha256(), NULL) != 1) {
		handler_fail(out, RESULT_ERROR, "handler_failed", "sha256 failed");
		return;
	}
	buf_reset(&out->body);
	for (unsigned int i = 0; i < mdlen; i++) {
		char pair[2] = { hex[md[i] >> 4], hex[md[i] & 15] };
		if (buf_append(&out->body, pair, 2) < 0) {
			handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory");
			return;
		}
	}
	out->status = RESULT_OK;
	out->content_type = "text/plain";
}

const struct handler handler_sha256 = { "sha256", HANDLER_CPU, sha256_run, NULL, NULL };

static double
cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* Work the optimiser cannot drop: a xorshift chain folded into a volatile. */
static volatile uint64_t burn_sink;

static void
burn_run(const struct handler_input *in, struct handler_output *out)
{
	long ms;
	if (handler_parse_ms(in->payload, in->len, &ms) < 0) {
		handler_fail(out, RESULT_REJECTED, "bad_payload",
		    "burn wants a whole number of milliseconds (0..86400000)");
		return;
	}
	/* CPU time is what the task asks for, so a busy machine stretches the
	 * wall time, not the work; the deadline is wall (monotonic) time. */
	double until = cpu_now() + (double)ms / 1000.0;
	uint64_t x = 88172645463325252ULL;
	for (;;) {
		for (int i = 0; i < 20000; i++) {
			x ^= x << 13;
			x ^= x >> 7;
			x ^= x << 17;
		}
		burn_sink += x;
		if (cpu_now() >= until)
			break;
		if (in->deadline > 0 && handler_clock() >= in->deadline) {
			handler_fail(out, RESULT_TIMEOUT, "timeout",
			    "burn did not finish before the task's deadline");
			return;
		}
	}
	buf_reset(&out->body);
	if (buf_append(&out->body, in->payload, in->len) < 0) {
		handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory");
		return;
	}
	out->status = RESULT_OK;
	out->content_type = "text/plain";
}

const struct handler handler_burn = { "burn", HANDLER_CPU, burn_run, NULL, NULL };

extern const struct handler handler_http;

static const struct handler *const handler_table[] = {
	&handler_echo, &handler_sleep, &handler_sha256, &handler_burn,
	&handler_http,
};

const struct handler *
handler_find(const char *name)
{
	for (size_t i = 0; i < sizeof(handler_table) / sizeof(handler_table[0]); i++)
		if (strcmp(handler_table[i]->name, name) == 0)
			return handler_table[i];
	return NULL;
}
