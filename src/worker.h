/*
 * worker: the child side of the CPU pool (the parent side is pool.c).
 *
 * A worker is the daemon's own binary started by the pool with
 * WORKER_ENV=<parent pid> in its environment and its channel on fd 3.  It
 * reads a HELLO frame (its slot, the plugins to load), then runs TASK
 * frames one at a time, blocking, and answers each with a RESULT frame.  It
 * has no event loop: reading fd 3 is its only wait.  End of file on fd 3
 * (the parent retired it or went away) makes it exit 0; PR_SET_PDEATHSIG,
 * set before the exec, kills it if the parent dies first.
 */
#ifndef TASKD_WORKER_H
#define TASKD_WORKER_H

#define WORKER_ENV "TASKD_WORKER"
#define WORKER_FD 3

/* Is this process a worker?  (WORKER_ENV is set.) */
int worker_wanted(void);

/* The worker's life; returns the process exit status. */
int worker_main(void);

#endif
