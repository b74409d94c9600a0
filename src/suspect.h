/*
 * suspect: how much company a task that may crash taskd is allowed
 * (limits.max_deliveries; docs/decisions.md, "Suspects run alone").
 *
 * A crash of taskd counts one delivery for every task in flight, so the
 * count cannot tell the task that crashed taskd from the ones in flight
 * with it.  What keeps an innocent task from reaching the limit is to bound
 * the company of a task that has been through crashes: every crash raises
 * the count of its company by one, so a task delivered c times before may
 * run with at most window(c) - 1 others, window shrinking with c, down to
 * running alone on its last allowed delivery (c = max - 1).  An innocent
 * caught in a crash at level c then has at most count c + 1 <= max - 1: it
 * is never rejected, and the task that keeps crashing taskd alone is.
 *
 *   window(0) = prefetch
 *   window(c) = ceil(prefetch ^ ((max - 1 - c) / (max - 1)))   0 < c < max-1
 *   window(c) = 1                                              c >= max - 1
 *
 * Geometric, so that the tasks caught in one crash (at most the window)
 * pass the next level in about as many rounds as the level has room for:
 * with prefetch 10,000 and max 3, windows of 100 and 1.
 *
 * The level is the count the node's window is sized for.  A task above it
 * raises it (and must run alone first, since the tasks in flight were
 * taken under a wider window); a window's worth of tasks below it in a row
 * lowers it one step.  Pure: no I/O, no globals.
 */
#ifndef TASKD_SUSPECT_H
#define TASKD_SUSPECT_H

#include <stdbool.h>
#include <stddef.h>

struct suspect {
	int max;         /* limits.max_deliveries (0: no limit, no suspects) */
	int prefetch;    /* the full window */
	long level;      /* 0 .. max-1: the count the window is sized for */
	size_t calm;     /* tasks in a row with a count below the level */
};

enum suspect_verdict {
	SUSPECT_RUN,     /* runs in the current window */
	SUSPECT_ALONE,   /* the level rose to its count: it runs alone, and
	                  * then the window is suspect_window() */
	SUSPECT_WIDEN,   /* runs; the level went down a step: the window
	                  * grows to suspect_window() */
};

/* Level 0 (the full window). */
void suspect_init(struct suspect *s, int max, int prefetch);
/* New limits (a reload): the level is kept, at most max - 1. */
void suspect_configure(struct suspect *s, int max, int prefetch);
/* A task with count earlier deliveries (below max: above, it is rejected
 * before it gets here) is about to run. */
enum suspect_verdict suspect_arrival(struct suspect *s, long count);
/* How many tasks may be in flight at the current level (>= 1). */
int suspect_window(const struct suspect *s);
/* Whether a task with this count is on its last allowed delivery: one
 * more crash and it is rejected. */
bool suspect_last(const struct suspect *s, long count);

#endif
