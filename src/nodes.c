#include "nodes.h"

#include <stdlib.h>

struct nodes {
	size_t n;
	size_t cur;       /* position in order[] */
	size_t failed;    /* failures in this round */
	size_t order[];   /* a permutation of 0..n-1 */
};

/* splitmix64: good enough to shuffle a handful of nodes, and the same
 * sequence for the same seed on every machine (the unit test relies on
 * that, not on the particular order). */
static uint64_t
mix(uint64_t *s)
{
	uint64_t z = (*s += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

struct nodes *
nodes_new(size_t n, uint64_t seed)
{
	if (n == 0)
		n = 1;
	struct nodes *ns = malloc(sizeof(*ns) + n * sizeof(ns->order[0]));
	if (ns == NULL)
		return NULL;
	ns->n = n;
	ns->cur = 0;
	ns->failed = 0;
	for (size_t i = 0; i < n; i++)
		ns->order[i] = i;
	/* Fisher-Yates; the modulo bias over 2^64 is nil for any real n. */
	for (size_t i = n - 1; i > 0; i--) {
		size_t j = (size_t)(mix(&seed) % (uint64_t)(i + 1));
		size_t t = ns->order[i];
		ns->order[i] = ns->order[j];
		ns->order[j] = t;
	}
	return ns;
}

void
nodes_free(struct nodes *ns)
{
	free(ns);
}

size_t
nodes_count(const struct nodes *ns)
{
	return ns->n;
}

size_t
nodes_current(const struct nodes *ns)
{
	return ns->order[ns->cur];
}

size_t
nodes_at(const struct nodes *ns, size_t i)
{
	return ns->order[i % ns->n];
}

bool
nodes_fail(struct nodes *ns)
{
	ns->cur = (ns->cur + 1) % ns->n;
	if (++ns->failed < ns->n)
		return false;
	ns->failed = 0;
	return true;
}

void
nodes_success(struct nodes *ns)
{
	ns->failed = 0;
}
