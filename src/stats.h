/*
 * stats: what this process has done since it started, for the metrics
 * listener (Prometheus text format), STATUS= and any status report.
 *
 * One set per process, written from the one loop thread by the modules
 * where things happen (dispatch settles tasks, taskd counts reconnects)
 * and read by whoever reports.  Counters only ever grow; a reload keeps
 * them (a Prometheus counter must never go back).
 *
 * Labels come only from the configuration: a task is counted under its
 * configured name, and a message whose task name matched no configured
 * task under STATS_UNKNOWN_TASK, never under the client's string, so a
 * client cannot make up series (every distinct label value costs the
 * Prometheus server memory for good).
 */
#ifndef TASKD_STATS_H
#define TASKD_STATS_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

/* The label of tasks that named no configured task (and of messages that
 * could not be read far enough to tell). */
#define STATS_UNKNOWN_TASK "_unknown"

/* Room for the result statuses (enum result_status); a status past it is
 * counted as the last one. */
#define STATS_STATUSES 8

/* Upper bounds (seconds) of the task duration histogram's buckets
 * (taskd_task_duration_seconds; +Inf comes on top): from an echo (well
 * under a millisecond) to limits.timeout's default of five minutes. */
#define STATS_DURATION_BUCKETS \
	{ 0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300 }
#define STATS_NDURATION 16
/* And of the confirm latency histogram (taskd_confirm_duration_seconds):
 * a local broker confirms in well under a millisecond, a loaded or
 * distant one in tens of milliseconds, an alarmed one not at all. */
#define STATS_CONFIRM_BUCKETS \
	{ 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10 }
#define STATS_NCONFIRM 14

enum stats_counter {
	STATS_REDELIVERED,     /* deliveries of a task delivered before */
	STATS_DELIVERY_LIMIT,  /* refused: over limits.max_deliveries */
	STATS_RECONNECTS,      /* broker connections made after the first */
	STATS_NCOUNTERS,
};

struct stats_histogram {
	uint64_t buckets[17];  /* counts per bucket, not cumulative; last: +Inf */
	uint64_t count;
	double sum;
};

/* One configured task name ever seen since the start, or the unknown one. */
struct stats_task {
	char *name;
	uint64_t by_status[STATS_STATUSES];
	struct stats_histogram duration;   /* tasks that ran, by their last run */
};

/* The row of a configured task name (made on first use, kept until
 * stats_reset), or of STATS_UNKNOWN_TASK for NULL or when memory ran out.
 * A task looks its row up when it arrives, so that it is counted under its
 * name even if a reload drops that name before it is answered. */
struct stats_task *stats_task_row(const char *task);
/* Counts a task answered with status (enum result_status) in row.
 * seconds >= 0 is how long its last run took (observed into the duration
 * histogram); pass a negative value for a task that never ran. */
void stats_answered(struct stats_task *row, int status, double seconds);
/* stats_answered(stats_task_row(task), status, seconds). */
void stats_task_answered(const char *task, int status, double seconds);
/* One more of c. */
void stats_count(enum stats_counter c);
/* A result confirmed by the broker `seconds` after it was published. */
void stats_confirmed(double seconds);

uint64_t stats_get(enum stats_counter c);
/* Answers by status over every task: out[STATS_STATUSES]. */
void stats_totals(uint64_t *out);
/* The tasks seen, in the order first seen; valid until stats_reset. */
size_t stats_ntasks(void);
const struct stats_task *stats_task(size_t i);
const struct stats_histogram *stats_confirm_latency(void);

/* What a report shows beside the counters above: gauges, and counters
 * that other modules keep, read by the caller from the modules that own
 * them at the moment of the report. */
struct stats_gauges {
	uint64_t requeued;            /* tasks sent back to the queue unanswered */
	size_t io_running, cpu_running;  /* cpu: on a worker */
	size_t io_waiting;            /* admitted, waiting for an I/O slot */
	size_t cpu_waiting;           /* waiting for a free worker */
	size_t in_flight;             /* every task taken and not yet settled */
	int workers_busy, workers_idle;
	uint64_t workers_crashed;     /* pool restarts, by cause */
	uint64_t workers_recycled;
	uint64_t workers_killed;
	size_t coroutines;            /* alive */
	int broker_connected;         /* 0/1 */
	size_t results_unconfirmed;
	uint64_t results_returned;    /* by the broker: no such reply queue */
	int ready;                    /* /readyz would answer 200 */
	double start_time;            /* Unix time the process started */
	uint64_t http_refused;        /* metrics connections refused (over the bound) */
	long queue_ready;             /* the task queue's depth; -1: not known */
	long queue_consumers;
};

/* Appends every metric in the Prometheus text format 0.0.4 (# HELP,
 * # TYPE, samples; docs/operations.md lists them).  Returns 0, or -1 when
 * memory ran out (out then holds a partial text, to be discarded). */
int stats_render(struct buf *out, const struct stats_gauges *g, const char *version);

/* Forgets everything (at exit, and between unit tests). */
void stats_reset(void);

#endif
