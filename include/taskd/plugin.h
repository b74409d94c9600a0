/*
 * taskd/plugin.h: the interface between taskd and a plugin.
 *
 * A plugin is a shared object named in the configuration:
 *
 *     plugins = [ "/usr/lib/taskd/wordcount.so" ];
 *     tasks = ( { name = "wc"; handler = "wordcount"; } );
 *
 * It exports one symbol, `taskd_plugin` (TASKD_PLUGIN_SYMBOL), a struct
 * taskd_plugin whose abi field is TASKD_PLUGIN_ABI at the time it was built.
 * taskd refuses a plugin built for another ABI, one that lacks the symbol,
 * and a file that is writable by its group or by others.
 *
 * Build one with:
 *     cc -shared -fPIC $(pkg-config --cflags taskd) -o x.so x.c
 * The taskd_* functions below are resolved against the running daemon; do
 * not link anything of taskd into the plugin.
 *
 * Handlers come in two kinds, as taskd's own:
 *
 *  - TASKD_KIND_CPU: run() is called in a CPU worker process, one task at a
 *    time, and may compute for as long as the task's deadline allows.  It
 *    should check taskd_clock() against in->deadline between slices of work
 *    and fail with TASKD_TIMEOUT when it passes; a handler that does not is
 *    killed with its worker at the deadline.  It must not keep state that
 *    another task relies on: workers are replaced at any time.
 *
 *  - TASKD_KIND_IO: run() is called on a coroutine in the daemon's event
 *    loop, among thousands of other tasks.  It must never block: it waits
 *    only through taskd_wait_fd() and taskd_sleep(), and must give up when
 *    they answer TASKD_WAIT_CANCELLED.
 *
 * A handler reports through out: taskd_output_append() the result (status
 * ok unless a failure is set), or taskd_output_fail() an error.  Both kinds
 * are called with the plugin loaded before any worker is started, so
 * global state set up by init() is there in both places.
 */
#ifndef TASKD_PLUGIN_H
#define TASKD_PLUGIN_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define TASKD_PLUGIN_ABI 1
#define TASKD_PLUGIN_SYMBOL "taskd_plugin"

enum taskd_kind {
	TASKD_KIND_IO = 1,
	TASKD_KIND_CPU = 2,
};

/* The status of a failed task (design: taskd-status header). */
enum taskd_status {
	TASKD_ERROR = 1,      /* "error": the handler failed */
	TASKD_TIMEOUT = 2,    /* "timeout": the deadline passed */
	TASKD_REJECTED = 3,   /* "rejected": the payload can never succeed */
};

struct taskd_input {
	const void *payload;        /* the message body */
	size_t len;
	const char *content_type;   /* may be NULL */
	double deadline;            /* taskd_clock() seconds; 0 = none */
};

/* Where the handler writes its answer; owned by taskd. */
struct taskd_output;

struct taskd_handler {
	const char *name;           /* what `handler = "..."` names */
	enum taskd_kind kind;
	void (*run)(const struct taskd_input *in, struct taskd_output *out);
};

struct taskd_plugin {
	unsigned abi;                           /* TASKD_PLUGIN_ABI */
	const char *name;                       /* for logs */
	const char *version;
	const struct taskd_handler *handlers;   /* ends with a NULL name */
	/* Called once after loading; non-zero refuses the plugin.  May be
	 * NULL. */
	int (*init)(void);
};

/* CLOCK_MONOTONIC in seconds: the clock of every deadline. */
double taskd_clock(void);

/* Appends n bytes to the result.  Returns 0, or -1 when memory ran out. */
int taskd_output_append(struct taskd_output *out, const void *p, size_t n);

/* The result's content type; s must stay valid for ever (a literal).  By
 * default the task's own content type is used. */
void taskd_output_set_content_type(struct taskd_output *out, const char *s);

/* Fails the task: status, an error code (a literal: "bad_payload",
 * "handler_failed", ...) and a message for the client.  What was appended
 * before is discarded. */
void taskd_output_fail(struct taskd_output *out, enum taskd_status status,
    const char *code, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Waiting, for TASKD_KIND_IO handlers only (on the loop's coroutine). */
enum taskd_wait {
	TASKD_WAIT_READY = 0,       /* the fd is ready / the time has passed */
	TASKD_WAIT_TIMEOUT = 1,     /* the deadline passed first */
	TASKD_WAIT_CANCELLED = -1,  /* the task is being stopped: return now */
};
#define TASKD_READ 1
#define TASKD_WRITE 2

/* Waits until fd is ready for events (TASKD_READ, TASKD_WRITE or both)
 * or until deadline (taskd_clock() seconds; 0 = the task's own). */
enum taskd_wait taskd_wait_fd(int fd, int events, double deadline);

/* Waits seconds (never past the task's deadline). */
enum taskd_wait taskd_sleep(double seconds);

#ifdef __cplusplus
}
#endif

#endif
