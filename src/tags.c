/* tags: the delivery-tag ledger of the consume channel (tags.h). */
#include "tags.h"

#include <stdlib.h>

enum state {
	ST_OPEN,       /* delivered, its task not settled */
	ST_ACK,        /* settled (the three kinds of enum tags_how) */
	ST_REQUEUE,
	ST_DROP,
	ST_SENT,       /* settled on the wire by itself: no longer held */
};

struct entry {
	uint64_t tag;
	enum state st;
};

/* A ring in delivery (= increasing tag) order whose size is a power of
 * two; ST_SENT entries inside it are skipped, and compacted away. */
struct tags {
	struct entry *ring;
	size_t cap, head, count;
	size_t settled;       /* entries in ST_ACK, _REQUEUE, _DROP */
	size_t sent;          /* entries in ST_SENT */
	size_t cursor;        /* where the round looks for lone tags next */
};

static enum state
state_of(enum tags_how how)
{
	switch (how) {
	case TAGS_ACK: return ST_ACK;
	case TAGS_REQUEUE: return ST_REQUEUE;
	case TAGS_DROP: return ST_DROP;
	}
	return ST_ACK;
}

static enum tags_how
how_of(enum state st)
{
	return st == ST_REQUEUE ? TAGS_REQUEUE : st == ST_DROP ? TAGS_DROP : TAGS_ACK;
}

static bool
is_settled(enum state st)
{
	return st == ST_ACK || st == ST_REQUEUE || st == ST_DROP;
}

static struct entry *
at(const struct tags *t, size_t i)
{
	return &t->ring[(t->head + i) & (t->cap - 1)];
}

struct tags *
tags_new(void)
{
	return calloc(1, sizeof(struct tags));
}

void
tags_free(struct tags *t)
{
	if (t == NULL)
		return;
	free(t->ring);
	free(t);
}

void
tags_clear(struct tags *t)
{
	t->head = t->count = t->settled = t->sent = t->cursor = 0;
}

int
tags_open(struct tags *t, uint64_t tag)
{
	if (t->count == t->cap) {
		size_t cap = t->cap ? t->cap * 2 : 64;
		struct entry *r = malloc(cap * sizeof(*r));
		if (r == NULL)
			return -1;
		for (size_t i = 0; i < t->count; i++)
			r[i] = *at(t, i);
		free(t->ring);
		t->ring = r;
		t->cap = cap;
		t->head = 0;
	}
	struct entry *e = at(t, t->count++);
	e->tag = tag;
	e->st = ST_OPEN;
	return 0;
}

/* The index of tag's entry, or count when there is none.  Tags increase,
 * so a binary search; until a compaction leaves a hole, a tag's offset
 * from the front is its index. */
static size_t
find(const struct tags *t, uint64_t tag)
{
	if (t->count == 0)
		return 0;
	uint64_t off = tag - at(t, 0)->tag;
	if (tag >= at(t, 0)->tag && off < t->count && at(t, (size_t)off)->tag == tag)
		return (size_t)off;
	size_t lo = 0, hi = t->count;
	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;
		uint64_t m = at(t, mid)->tag;
		if (m == tag)
			return mid;
		if (m < tag)
			lo = mid + 1;
		else
			hi = mid;
	}
	return t->count;
}

int
tags_settle(struct tags *t, uint64_t tag, enum tags_how how)
{
	size_t i = find(t, tag);
	if (i == t->count || at(t, i)->st != ST_OPEN)
		return -1;
	at(t, i)->st = state_of(how);
	t->settled++;
	return 0;
}

size_t
tags_settled(const struct tags *t)
{
	return t->settled;
}

size_t
tags_held(const struct tags *t)
{
	return t->count - t->sent;
}

/* Drops lone-sent entries once they are most of the ring, so the ring
 * stays about twice the tags held even while one long task holds the
 * front.  Order is kept: writes trail reads. */
static void
compact(struct tags *t)
{
	if (t->sent < 64 || t->sent * 2 < t->count)
		return;
	size_t w = 0;
	for (size_t r = 0; r < t->count; r++) {
		struct entry *e = at(t, r);
		if (e->st != ST_SENT)
			*at(t, w++) = *e;
	}
	t->count = w;
	t->sent = 0;
}

void
tags_round(struct tags *t)
{
	compact(t);
	t->cursor = 0;
}

bool
tags_next(struct tags *t, struct tags_frame *f)
{
	if (t->settled == 0)
		return false;
	/* The front's lone-sent tags are settled for the broker already. */
	while (t->count > 0 && at(t, 0)->st == ST_SENT) {
		t->head = (t->head + 1) & (t->cap - 1);
		t->count--;
		t->sent--;
		if (t->cursor > 0)
			t->cursor--;
	}
	if (t->count == 0)
		return false;
	enum state kind = at(t, 0)->st;
	if (kind != ST_OPEN) {
		/* A run of the front's kind, through tags sent alone, up to an
		 * open tag or one of another kind. */
		size_t last = 0;
		for (size_t i = 1; i < t->count; i++) {
			enum state st = at(t, i)->st;
			if (st == kind)
				last = i;
			else if (st != ST_SENT)
				break;
		}
		*f = (struct tags_frame){ at(t, last)->tag, how_of(kind), true };
		return true;
	}
	for (size_t i = t->cursor > 1 ? t->cursor : 1; i < t->count; i++) {
		struct entry *e = at(t, i);
		if (is_settled(e->st)) {
			t->cursor = i;
			*f = (struct tags_frame){ e->tag, how_of(e->st), false };
			return true;
		}
	}
	t->cursor = t->count;
	return false;
}

void
tags_sent(struct tags *t, const struct tags_frame *f)
{
	if (f->multiple) {
		while (t->count > 0 && at(t, 0)->tag <= f->tag) {
			enum state st = at(t, 0)->st;
			if (st == ST_SENT)
				t->sent--;
			else if (is_settled(st))
				t->settled--;
			t->head = (t->head + 1) & (t->cap - 1);
			t->count--;
		}
		t->cursor = 0;
		return;
	}
	size_t i = find(t, f->tag);
	if (i == t->count || !is_settled(at(t, i)->st))
		return;
	at(t, i)->st = ST_SENT;
	t->settled--;
	t->sent++;
	t->cursor = i + 1;
}
