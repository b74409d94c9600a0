/*
 * taskd: the daemon's life cycle around one event loop.
 *
 * States:
 *   TASKD_RUNNING   consuming and running tasks
 *   TASKD_SWITCHING SIGHUP changed the broker settings: tasks in flight
 *                   finish, then the connection is made again with them
 *   TASKD_DRAINING  SIGTERM/SIGINT seen: consumer cancelled, tasks in flight
 *                   finish (bounded by shutdown.grace), then it stops
 *   TASKD_STOPPED   the loop has returned
 *
 * SIGHUP reloads: a new conf and task table are built whole and swapped in
 * only when both are valid; a bad file is logged and the old one stays.
 */
#ifndef TASKD_TASKD_H
#define TASKD_TASKD_H

#include "conf.h"
#include "registry.h"

/* Runs the daemon until it stops.  Takes ownership of conf and reg.
 * Returns the process exit status (0 clean stop, 1 fatal error). */
int taskd_run(struct conf *conf, struct registry *reg);

/* The number of CPUs this process may use (affinity mask). */
int taskd_usable_cpus(void);

#endif
