/*
 * handler: the code that runs a task, and the table of built-in handlers.
 *
 * Two kinds, because they need different homes:
 *
 *  - A CPU handler is a plain function that runs to completion.  It never
 *    touches the event loop or the broker, so it can run inline or in a
 *    pool worker process unchanged.  It must honour in->deadline (checking
 *    the monotonic clock between slices of work) and answer
 *    RESULT_TIMEOUT when it passes.
 *
 *  - An I/O handler is started from the event loop and answers later: its
 *    start() arms watchers of its own and returns; when the work is done it
 *    calls handler_call_done().  If the dispatcher has to stop it first
 *    (timeout, lost broker, shutdown) it calls call->cancel, which must stop
 *    every watcher and free every resource of the call, and never calls
 *    done afterwards.
 */
#ifndef TASKD_HANDLER_H
#define TASKD_HANDLER_H

#include <stdbool.h>
#include <stddef.h>
#include <ev.h>

#include "buf.h"
#include "conf.h"
#include "result.h"

struct coro;

enum handler_kind { HANDLER_IO, HANDLER_CPU };

/*
 * A configured task's own settings, as its handler reads them (exec argv,
 * http allow-list...).  Immutable and reference-counted: the registry holds
 * one reference per task and every task in flight holds another, so a
 * reload that frees the old conf never frees what a running handler reads.
 * Only the event-loop thread touches the count.
 */
struct handler_args {
	unsigned refs;
	char **exec;              /* NULL-terminated argv, or NULL */
	char **allow;             /* NULL-terminated URL prefixes, or NULL */
	size_t nallow;
	bool follow_redirects;    /* http: follow 3xx (default no) */
	size_t max_response;      /* http: response body cap in bytes */
	size_t max_output;        /* exec: stdout cap in bytes */
};

/* Deep copy of what handlers need from t, with one reference; NULL when
 * memory ran out.  max_output caps an exec task's stdout (the result must
 * fit in a message: limits.max_payload). */
struct handler_args *handler_args_new(const struct conf_task *t, size_t max_output);
/* Takes one more reference; NULL is passed through. */
struct handler_args *handler_args_ref(struct handler_args *a);
/* Drops one reference and frees on the last; NULL is ignored. */
void handler_args_unref(struct handler_args *a);

struct handler_input {
	const void *payload;
	size_t len;
	const char *content_type;  /* may be NULL */
	double deadline;           /* handler_clock() seconds; 0 = none */
	const struct handler_args *args; /* the task's settings; may be NULL */
};

struct handler_output {
	enum result_status status;
	const char *error_code;     /* static; set when status != OK */
	struct buf body;            /* the result when OK, else the message text */
	const char *content_type;   /* static or NULL (= the input's) */
};

struct handler_call {
	struct ev_loop *loop;
	struct handler_input in;
	struct handler_output out;
	/* Set by the dispatcher: called once when the handler has finished. */
	void (*done)(struct handler_call *call);
	/* Set by an I/O handler while it has something to stop; NULL otherwise. */
	void (*cancel)(struct handler_call *call);
	/* The handler's own state; NULL before start.  A pointer, not a
	 * watcher: ten thousand calls in flight each carry it. */
	void *state;
	/* Set by the dispatcher: the handler being run. */
	const struct handler *handler;
	/* A coroutine handler's coroutine while it runs (handler_co.c). */
	struct coro *coro;
};

struct handler {
	const char *name;
	enum handler_kind kind;
	/* CPU: returns when finished, out filled. */
	void (*run)(const struct handler_input *in, struct handler_output *out);
	/* I/O: returns at once; calls handler_call_done() later. */
	void (*start)(struct handler_call *call);
	/* I/O on a coroutine: a body that may wait (coro.h) and returns with
	 * call->out filled.  Such a handler sets start = handler_co_start,
	 * which runs the body on a coroutine and calls handler_call_done()
	 * when it returns; a cancel resumes the body at its wait point with
	 * CORO_CANCELLED so it unwinds, and done is never called. */
	void (*co)(struct handler_call *call);
};

/* The start() of every coroutine handler (handler_co.c). */
void handler_co_start(struct handler_call *call);
/* The handlers of exec tasks (handler_exec.c): kind io runs the program on
 * a coroutine; kind cpu only names it, since a pool worker runs it
 * (worker_exec.h). */
extern const struct handler handler_exec_io, handler_exec_cpu;

/* CLOCK_MONOTONIC in seconds: the clock of every deadline. */
double handler_clock(void);

/* The built-in handler called name, or NULL (handler_builtin.c). */
const struct handler *handler_find(const char *name);

/* For handlers: finish with status OK and the body already in out.body. */
void handler_call_done(struct handler_call *call);
/* Fills out with a failure: status, a design §4 error code and a message. */
void handler_fail(struct handler_output *out, enum result_status status,
    const char *code, const char *fmt, ...) __attribute__((format(printf, 4, 5)));

/* Parses a decimal count of milliseconds (the sleep and burn payload):
 * digits only, at most 24 hours.  Returns 0 and sets *ms, or -1. */
int handler_parse_ms(const void *payload, size_t len, long *ms);

#endif
