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

#include <stddef.h>
#include <ev.h>

#include "buf.h"
#include "result.h"

enum handler_kind { HANDLER_IO, HANDLER_CPU };

struct handler_input {
	const void *payload;
	size_t len;
	const char *content_type;  /* may be NULL */
	double deadline;           /* handler_clock() seconds; 0 = none */
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
	/* The handler's own state (e.g. its timer); zero before start. */
	ev_timer timer;
};

struct handler {
	const char *name;
	enum handler_kind kind;
	/* CPU: returns when finished, out filled. */
	void (*run)(const struct handler_input *in, struct handler_output *out);
	/* I/O: returns at once; calls handler_call_done() later. */
	void (*start)(struct handler_call *call);
};

/* CLOCK_MONOTONIC in seconds: the clock of every deadline. */
double handler_clock(void);

/* The built-in handler called name, or NULL. */
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
