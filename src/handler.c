/* handler: what every handler shares (the clock of deadlines, finishing a
 * call, filling a failure); it links with buf.c alone, so a handler's unit
 * test links only its module.  The table of built-in handlers is in
 * handler_builtin.c. */
#include "handler.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

double
handler_clock(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void
handler_call_done(struct handler_call *call)
{
	call->cancel = NULL;
	call->done(call);
}

void
handler_fail(struct handler_output *out, enum result_status status,
    const char *code, const char *fmt, ...)
{
	char msg[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	out->status = status;
	out->error_code = code;
	buf_reset(&out->body);
	/* Out of memory leaves an empty message; the code still says it all. */
	(void)buf_puts(&out->body, msg);
}

int
handler_parse_ms(const void *payload, size_t len, long *ms)
{
	const unsigned char *p = payload;
	long v = 0;

	/* Tolerate the trailing newline shell clients add. */
	while (len > 0 && (p[len - 1] == '\n' || p[len - 1] == '\r'))
		len--;
	if (len == 0 || len > 9)
		return -1;
	for (size_t i = 0; i < len; i++) {
		if (p[i] < '0' || p[i] > '9')
			return -1;
		v = v * 10 + (p[i] - '0');
	}
	if (v > 86400L * 1000)
		return -1;
	*ms = v;
	return 0;
}
