/*
 * backoff: the reconnect delay schedule.  Exponential from `base` doubling
 * up to `cap`, with "equal jitter": the delay of attempt n is half the
 * exponential step plus a random part of the other half, so nodes that lost
 * the same broker do not come back in lock-step, yet never retry at once.
 * Pure: the caller passes the random number.
 */
#ifndef TASKD_BACKOFF_H
#define TASKD_BACKOFF_H

struct backoff {
	double base;     /* seconds, first step (> 0) */
	double cap;      /* seconds, largest step (>= base) */
	unsigned attempt; /* failures since the last success */
};

void backoff_init(struct backoff *b, double base, double cap);
/* Delay in seconds before the next attempt; counts an attempt.
 * rnd is uniform in [0, 1). The result lies in [step/2, step], step =
 * min(cap, base * 2^attempt). */
double backoff_next(struct backoff *b, double rnd);
/* A success: the next failure starts again from base. */
void backoff_reset(struct backoff *b);

#endif
