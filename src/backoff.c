#include "backoff.h"

#include <limits.h>
#include <math.h>

void
backoff_init(struct backoff *b, double base, double cap)
{
	/* Callers pass validated config; still, a zero base would retry in a
	 * tight loop forever, so never let the schedule degenerate. */
	if (!(base > 0))
		base = 0.001;
	if (!(cap >= base))
		cap = base;
	b->base = base;
	b->cap = cap;
	b->attempt = 0;
}

double
backoff_next(struct backoff *b, double rnd)
{
	/* Past the cap the exponent no longer matters; ldexp() would still
	 * be right, this only keeps the arithmetic obviously finite. */
	double step = b->attempt >= 64 ? b->cap : ldexp(b->base, (int)b->attempt);
	if (step > b->cap)
		step = b->cap;

	if (!(rnd >= 0))
		rnd = 0;
	if (rnd > 1)
		rnd = 1;

	if (b->attempt < UINT_MAX)
		b->attempt++;
	return step / 2 + rnd * (step / 2);
}

void
backoff_reset(struct backoff *b)
{
	b->attempt = 0;
}
