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

struct taskd;

/* Builds the daemon around conf and reg: the event loop, the dispatcher,
 * the broker connection (not yet made), the CPU workers, fleet control and
 * the metrics listener.  On success the daemon owns conf and reg (a reload
 * replaces them) and logs its start line and the warnings about conf
 * (confwarn.h).  Returns NULL, the reason logged and whatever was built
 * torn down, when a part cannot be had; conf and reg are then still the
 * caller's. */
struct taskd *taskd_start(struct conf *conf, struct registry *reg);

/* Connects and runs until a stop signal's drain is over.  Returns the
 * process exit status (0 clean stop, 1 fatal error). */
int taskd_run(struct taskd *t);

/* Stops and frees what taskd_start() built, the broker's last acks
 * flushed, in one order whether or not the daemon ran, with the conf and
 * registry in force.  t may be NULL. */
void taskd_free(struct taskd *t);

/* The number of CPUs this process may use (affinity mask). */
int taskd_usable_cpus(void);

#endif
