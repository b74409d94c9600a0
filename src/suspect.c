#include "suspect.h"

#include <math.h>

void
suspect_init(struct suspect *s, int max, int prefetch)
{
	s->max = max;
	s->prefetch = prefetch > 0 ? prefetch : 1;
	s->level = 0;
	s->calm = 0;
}

void
suspect_configure(struct suspect *s, int max, int prefetch)
{
	long level = s->level;
	suspect_init(s, max, prefetch);
	if (max > 1 && level > max - 1)
		level = max - 1;
	s->level = max > 1 ? level : 0;
}

static int
window_at(const struct suspect *s, long level)
{
	if (level <= 0 || s->max <= 1)
		return s->prefetch;
	if (level >= s->max - 1)
		return 1;
	double w = ceil(pow((double)s->prefetch,
	    (double)(s->max - 1 - level) / (double)(s->max - 1)));
	if (w < 1.0)
		return 1;
	return w > (double)s->prefetch ? s->prefetch : (int)w;
}

int
suspect_window(const struct suspect *s)
{
	return window_at(s, s->level);
}

bool
suspect_last(const struct suspect *s, long count)
{
	return s->max > 0 && count >= s->max - 1;
}

enum suspect_verdict
suspect_arrival(struct suspect *s, long count)
{
	if (s->max <= 1)
		return SUSPECT_RUN;   /* nothing delivered before runs at all */
	if (count > s->level) {
		s->level = count < s->max - 1 ? count : s->max - 1;
		s->calm = 0;
		return SUSPECT_ALONE;
	}
	if (count == s->level) {
		s->calm = 0;
		return SUSPECT_RUN;
	}
	/* Below the level: a window's worth in a row, and the suspects of
	 * this level are through (or elsewhere). */
	if (++s->calm < (size_t)window_at(s, s->level))
		return SUSPECT_RUN;
	s->level--;
	s->calm = 0;
	return SUSPECT_WIDEN;
}
