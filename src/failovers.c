/* failovers: deliveries ended by a lost connection, not a crash (failovers.h). */
#include "failovers.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "idset.h"

struct lost {
	long before;
	char *id;
};

struct failovers {
	struct idset *seen;   /* "BEFORE:ID", one per delivery */
	struct buf key;       /* scratch for the keys */
	struct lost *out;     /* the outbox */
	size_t nout, cap, max;
	bool sorted;          /* out is in order of before */
};

struct failovers *
failovers_new(size_t max)
{
	struct failovers *f = calloc(1, sizeof(*f));
	if (f == NULL)
		return NULL;
	f->max = max > 0 ? max : 1;
	f->seen = idset_new(f->max);
	if (f->seen == NULL) {
		free(f);
		return NULL;
	}
	f->sorted = true;
	return f;
}

void
failovers_free(struct failovers *f)
{
	if (f == NULL)
		return;
	for (size_t i = 0; i < f->nout; i++)
		free(f->out[i].id);
	free(f->out);
	idset_free(f->seen);
	buf_free(&f->key);
	free(f);
}

static int
make_key(struct failovers *f, const char *id, size_t len, long before)
{
	buf_reset(&f->key);
	return buf_printf(&f->key, "%ld:", before) < 0 ||
	    buf_append(&f->key, id, len) < 0 ? -1 : 0;
}

int
failovers_add(struct failovers *f, const char *id, size_t len, long before,
    double expires)
{
	if (before < 0 || make_key(f, id, len, before) < 0)
		return -1;
	return idset_add(f->seen, f->key.data, f->key.len, expires);
}

int
failovers_lost(struct failovers *f, const char *id, size_t len, long before,
    double expires)
{
	if (failovers_add(f, id, len, before, expires) < 0)
		return -1;
	if (f->nout >= f->max)
		return 0;     /* remembered here; the fleet hears of the rest */
	if (f->nout == f->cap) {
		size_t cap = f->cap ? f->cap * 2 : 64;
		struct lost *o = realloc(f->out, cap * sizeof(*o));
		if (o == NULL)
			return -1;
		f->out = o;
		f->cap = cap;
	}
	char *copy = malloc(len + 1);
	if (copy == NULL)
		return -1;
	memcpy(copy, id, len);
	copy[len] = '\0';
	if (f->nout > 0 && f->out[f->nout - 1].before > before)
		f->sorted = false;
	f->out[f->nout++] = (struct lost){ before, copy };
	return 0;
}

long
failovers_discount(struct failovers *f, const char *id, size_t len, long before,
    long cap, double now)
{
	long n = 0;
	long from = before > FAILOVERS_LOOKBACK ? before - FAILOVERS_LOOKBACK : 0;
	for (long k = from; k < before && n < cap; k++)
		if (make_key(f, id, len, k) == 0 &&
		    idset_has(f->seen, f->key.data, f->key.len, now))
			n++;
	return n;
}

size_t
failovers_expire(struct failovers *f, double now)
{
	return idset_expire(f->seen, now);
}

size_t
failovers_count(const struct failovers *f)
{
	return idset_count(f->seen);
}

static int
by_before(const void *a, const void *b)
{
	long x = ((const struct lost *)a)->before, y = ((const struct lost *)b)->before;
	return (x > y) - (x < y);
}

bool
failovers_take(struct failovers *f, size_t max, struct failovers_report *r)
{
	memset(r, 0, sizeof(*r));
	if (f->nout == 0 || max == 0)
		return false;
	if (!f->sorted) {
		/* Stable enough: order within one count does not matter. */
		qsort(f->out, f->nout, sizeof(*f->out), by_before);
		f->sorted = true;
	}
	size_t n = 1;
	while (n < f->nout && n < max && f->out[n].before == f->out[0].before)
		n++;
	r->ids = malloc(n * sizeof(*r->ids));
	if (r->ids == NULL)
		return false;
	r->before = f->out[0].before;
	r->n = n;
	for (size_t i = 0; i < n; i++)
		r->ids[i] = f->out[i].id;
	f->nout -= n;
	memmove(f->out, f->out + n, f->nout * sizeof(*f->out));
	return true;
}

void
failovers_report_free(struct failovers_report *r)
{
	for (size_t i = 0; i < r->n; i++)
		free(r->ids[i]);
	free(r->ids);
	memset(r, 0, sizeof(*r));
}

size_t
failovers_outbox(const struct failovers *f)
{
	return f->nout;
}
