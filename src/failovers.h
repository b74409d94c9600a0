/*
 * failovers: the deliveries that ended because a live taskd lost its
 * broker connection, so that they do not count against
 * limits.max_deliveries as crashes do (docs/decisions.md, "Failovers are
 * not crashes").
 *
 * The broker cannot tell a failover from a crash: either way the tasks
 * unacked on the connection go back to the queue, and a quorum queue
 * raises their x-delivery-count.  Only the taskd that lost the
 * connection knows, and only if it lives: it notes each such delivery
 * here (failovers_lost) and, once connected again, tells the fleet
 * through the control exchange; every node that hears of it
 * (failovers_add) discounts it from that task's count.
 *
 * A delivery is named by its task id and the count it arrived with
 * (`before`, its earlier deliveries), so hearing of it twice (a node's
 * live queue and the control stream) discounts it once.  A task is
 * excused at most `max_deliveries` failovers: a task that makes taskd
 * lose its connection itself (a handler blocking the loop past the
 * heartbeat, a result the broker refuses with a connection error) still
 * cannot loop for ever.
 *
 * Pure: no I/O; time is the caller's wall clock (reports come from other
 * machines).  Bounded: at most `max` remembered deliveries and `max` in
 * the outbox.
 */
#ifndef TASKD_FAILOVERS_H
#define TASKD_FAILOVERS_H

#include <stdbool.h>
#include <stddef.h>

/* How far back failovers_discount looks: deliveries before the last
 * FAILOVERS_LOOKBACK of a task are not excused. */
#define FAILOVERS_LOOKBACK 64

struct failovers;

struct failovers *failovers_new(size_t max);
void failovers_free(struct failovers *f);

/* The delivery of task id[0..len) that had `before` earlier deliveries
 * ended in a failover: remembered until expires.  Returns 0, or -1 when
 * out of memory. */
int failovers_add(struct failovers *f, const char *id, size_t len, long before,
    double expires);
/* As failovers_add, for one of this node's own deliveries: also queued in
 * the outbox, to be told to the fleet. */
int failovers_lost(struct failovers *f, const char *id, size_t len, long before,
    double expires);
/* How many of the `before` earlier deliveries of id ended in failovers
 * (at most cap). */
long failovers_discount(struct failovers *f, const char *id, size_t len, long before,
    long cap, double now);
/* Forgets what expired at now; returns how many deliveries are left. */
size_t failovers_expire(struct failovers *f, double now);
size_t failovers_count(const struct failovers *f);

/* A report for the fleet: n task ids whose deliveries, each with `before`
 * earlier ones, ended in one of this node's failovers. */
struct failovers_report {
	long before;
	size_t n;
	char **ids;           /* NUL-terminated */
};
/* Moves up to max ids with one `before` (the smallest waiting) from the
 * outbox into r; false when the outbox is empty.  Free r with
 * failovers_report_free. */
bool failovers_take(struct failovers *f, size_t max, struct failovers_report *r);
void failovers_report_free(struct failovers_report *r);
size_t failovers_outbox(const struct failovers *f);

#endif
