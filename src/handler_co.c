/* handler_co: runs a handler's body on a coroutine (see handler.h, coro.h). */
#include "coro.h"
#include "handler.h"

static void
handler_co_body(void *arg)
{
	struct handler_call *call = arg;
	call->handler->co(call);
}

/* On the main context, once the body has returned (never after a cancel). */
static void
handler_co_done(void *arg)
{
	struct handler_call *call = arg;
	call->coro = NULL;
	handler_call_done(call);
}

static void
handler_co_cancel(struct handler_call *call)
{
	struct coro *c = call->coro;

	call->coro = NULL;
	call->cancel = NULL;
	if (c != NULL)
		coro_cancel(c);
}

void
handler_co_start(struct handler_call *call)
{
	struct coro *c = coro_new(handler_co_body, handler_co_done, call);

	if (c == NULL) {
		handler_fail(&call->out, RESULT_ERROR, "handler_failed",
		    "no memory for a coroutine stack");
		handler_call_done(call);
		return;
	}
	call->coro = c;
	call->cancel = handler_co_cancel;
	/* May finish at once (echo): then done has run and call may be gone. */
	coro_resume(c);
}
