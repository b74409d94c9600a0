/*
 * worker_exec: exec tasks of kind cpu, run inside a CPU worker with the
 * exec runner (exec.h) and a blocking waiter: poll(2) on the program's
 * pipes, a pidfd for its exit, waitpid(2) to reap it.  The worker has no
 * event loop, so blocking here is its whole job.
 */
#ifndef TASKD_WORKER_EXEC_H
#define TASKD_WORKER_EXEC_H

#include <stdint.h>
#include <sys/types.h>

#include "handler.h"

/* The handler name the pool sends for exec tasks. */
#define WORKER_EXEC_HANDLER "exec"

/* Runs argv with in's payload until in->deadline; fills out.  started(ctx,
 * seq, pgid) is called once the program runs, with its process group.
 * max_output caps stdout as exec_run() does (0: no cap): the daemon sends
 * limits.max_payload, so an exec task of kind cpu is stopped, and answered,
 * exactly like one of kind io. */
void worker_exec(const char *const *argv, const struct handler_input *in,
    size_t max_output, uint64_t seq,
    void (*started)(void *ctx, uint64_t seq, pid_t pgid),
    void *ctx, struct handler_output *out);

#endif
