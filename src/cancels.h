/*
 * cancels: the task ids a cancel request named, each remembered until its
 * expiry (control.cancel_ttl after the request), so a task that arrives
 * later is answered "cancelled" without running (design §8).
 *
 * Pure: a hash set of strings with an expiry each; time is the caller's
 * (wall-clock seconds, since expiries come from request timestamps that
 * other machines stamped).  Bounded: at most `max` ids at once; when full,
 * the one to expire first makes room (the owner calls cancels_expire
 * regularly, so that is an expired one while the set is not flooded).
 */
#ifndef TASKD_CANCELS_H
#define TASKD_CANCELS_H

#include <stdbool.h>
#include <stddef.h>

struct cancels;

/* Returns an empty set for at most max ids, or NULL (no memory). */
struct cancels *cancels_new(size_t max);
void cancels_free(struct cancels *c);

/* Remembers id[0..len) until expires (a later expiry wins for an id
 * already there).  Returns 0, or -1 when out of memory. */
int cancels_add(struct cancels *c, const char *id, size_t len, double expires);
/* Whether id[0..len) is remembered and not expired at now. */
bool cancels_has(const struct cancels *c, const char *id, size_t len, double now);
/* Forgets every id expired at now; returns how many are left. */
size_t cancels_expire(struct cancels *c, double now);
size_t cancels_count(const struct cancels *c);

#endif
