/* handler_exec: exec tasks of kind io, on a coroutine (see exec.h). */
#include "handler.h"

static void
exec_io_start(struct handler_call *call)
{
	handler_fail(&call->out, RESULT_ERROR, "handler_failed",
	    "exec tasks of kind io are not implemented yet");
	handler_call_done(call);
}

const struct handler handler_exec_io = { "exec", HANDLER_IO, NULL, exec_io_start, NULL };
