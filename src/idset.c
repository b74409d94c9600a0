/* idset: remembered ids with an expiry (idset.h). */
#include "idset.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

struct entry {
	struct entry *next;     /* in its bucket */
	double expires;
	size_t len;
	char id[];
};

struct idset {
	struct entry **buckets;
	size_t nbuckets;        /* a power of two */
	size_t count, max;
};

/* FNV-1a: ids are short, and a client choosing colliding ids only slows
 * its own requests (the set is bounded). */
static size_t
hash(const char *p, size_t n)
{
	uint64_t h = 1469598103934665603ull;
	for (size_t i = 0; i < n; i++) {
		h ^= (unsigned char)p[i];
		h *= 1099511628211ull;
	}
	return (size_t)h;
}

struct idset *
idset_new(size_t max)
{
	struct idset *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->nbuckets = 64;
	c->max = max > 0 ? max : 1;
	c->buckets = calloc(c->nbuckets, sizeof(*c->buckets));
	if (c->buckets == NULL) {
		free(c);
		return NULL;
	}
	return c;
}

void
idset_free(struct idset *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->nbuckets; i++) {
		struct entry *e = c->buckets[i], *n;
		for (; e != NULL; e = n) {
			n = e->next;
			free(e);
		}
	}
	free(c->buckets);
	free(c);
}

static struct entry **
find(const struct idset *c, const char *id, size_t len)
{
	struct entry **pp = &c->buckets[hash(id, len) & (c->nbuckets - 1)];
	for (; *pp != NULL; pp = &(*pp)->next)
		if ((*pp)->len == len && memcmp((*pp)->id, id, len) == 0)
			return pp;
	return pp;
}

static void
grow(struct idset *c)
{
	size_t n = c->nbuckets * 2;
	struct entry **b = calloc(n, sizeof(*b));
	if (b == NULL)
		return;   /* longer chains, still correct */
	for (size_t i = 0; i < c->nbuckets; i++) {
		struct entry *e = c->buckets[i], *next;
		for (; e != NULL; e = next) {
			next = e->next;
			size_t h = hash(e->id, e->len) & (n - 1);
			e->next = b[h];
			b[h] = e;
		}
	}
	free(c->buckets);
	c->buckets = b;
	c->nbuckets = n;
}

/* Full: drops the id that expires first. */
static void
evict_one(struct idset *c)
{
	struct entry **victim = NULL;
	for (size_t i = 0; i < c->nbuckets; i++)
		for (struct entry **pp = &c->buckets[i]; *pp != NULL; pp = &(*pp)->next)
			if (victim == NULL || (*pp)->expires < (*victim)->expires)
				victim = pp;
	if (victim != NULL) {
		struct entry *e = *victim;
		*victim = e->next;
		free(e);
		c->count--;
	}
}

int
idset_add(struct idset *c, const char *id, size_t len, double expires)
{
	struct entry **pp = find(c, id, len);
	if (*pp != NULL) {
		if (expires > (*pp)->expires)
			(*pp)->expires = expires;
		return 0;
	}
	if (c->count >= c->max) {
		/* The owner expires the set regularly; past that, the one
		 * to expire first makes room (an O(n) scan, only when full). */
		evict_one(c);
		pp = find(c, id, len);
	}
	struct entry *e = malloc(sizeof(*e) + len + 1);
	if (e == NULL)
		return -1;
	memcpy(e->id, id, len);
	e->id[len] = '\0';
	e->len = len;
	e->expires = expires;
	e->next = NULL;
	*pp = e;
	c->count++;
	if (c->count > c->nbuckets)
		grow(c);
	return 0;
}

bool
idset_has(const struct idset *c, const char *id, size_t len, double now)
{
	struct entry *e = *find(c, id, len);
	return e != NULL && e->expires > now;
}

size_t
idset_expire(struct idset *c, double now)
{
	for (size_t i = 0; i < c->nbuckets; i++) {
		struct entry **pp = &c->buckets[i];
		while (*pp != NULL) {
			if ((*pp)->expires <= now) {
				struct entry *e = *pp;
				*pp = e->next;
				free(e);
				c->count--;
			} else {
				pp = &(*pp)->next;
			}
		}
	}
	return c->count;
}

size_t
idset_count(const struct idset *c)
{
	return c->count;
}
