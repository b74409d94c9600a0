/*
 * idset: a set of ids (byte strings), each remembered until its expiry.
 * Fleet control keeps two: the task ids a cancel request named, so a task
 * that arrives later is answered "cancelled" without running (design §8),
 * and the deliveries that ended in a failover (failovers.h).
 *
 * Pure: a hash set of strings with an expiry each; time is the caller's
 * (wall-clock seconds, since expiries come from request timestamps that
 * other machines stamped).  Bounded: at most `max` ids at once; when full,
 * the one to expire first makes room (the owner calls idset_expire
 * regularly, so that is an expired one while the set is not flooded).
 */
#ifndef TASKD_IDSET_H
#define TASKD_IDSET_H

#include <stdbool.h>
#include <stddef.h>

struct idset;

/* Returns an empty set for at most max ids, or NULL (no memory). */
struct idset *idset_new(size_t max);
void idset_free(struct idset *c);

/* Remembers id[0..len) until expires (a later expiry wins for an id
 * already there).  Returns 0, or -1 when out of memory. */
int idset_add(struct idset *c, const char *id, size_t len, double expires);
/* Whether id[0..len) is remembered and not expired at now. */
bool idset_has(const struct idset *c, const char *id, size_t len, double now);
/* Forgets every id expired at now; returns how many are left. */
size_t idset_expire(struct idset *c, double now);
size_t idset_count(const struct idset *c);

#endif
