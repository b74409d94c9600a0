/*
 * nodes: which broker node of a cluster to try next.
 *
 * broker.uri may name several nodes of one RabbitMQ cluster.  taskd talks
 * to one at a time.  Each process walks the nodes in an order of its own,
 * shuffled once when the list is set, so that a fleet started together
 * spreads over the cluster instead of piling onto the first node written.
 *
 * A round is one try of every node.  A failure (an attempt that did not
 * come up, or a connection that died) moves on to the next node in the
 * order; the caller backs off only when a round ends, i.e. when every node
 * has failed since the last connection that came up.  So a dead node costs
 * one quick step to the next one, and a cluster that is down entirely
 * still gets the reconnect backoff, once per round rather than per node.
 *
 * Pure: no I/O, no clock; the caller passes the random seed.
 */
#ifndef TASKD_NODES_H
#define TASKD_NODES_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct nodes;

/* An order over n nodes (n >= 1), shuffled from seed.  Returns NULL when
 * out of memory.  Equal seeds give equal orders. */
struct nodes *nodes_new(size_t n, uint64_t seed);
void nodes_free(struct nodes *ns);

size_t nodes_count(const struct nodes *ns);
/* The index (into the caller's list) of the node to try now. */
size_t nodes_current(const struct nodes *ns);
/* The index of the i-th node of the order (i < count), for logs. */
size_t nodes_at(const struct nodes *ns, size_t i);

/* The current node failed (an attempt, or a connection that was up): the
 * next node of the order becomes current.  Returns true when that ends a
 * round (every node failed since the last success or the last round's
 * end): the caller backs off before the next attempt; false means try the
 * next node at once. */
bool nodes_fail(struct nodes *ns);
/* The current node is up: the next failure starts a new round there. */
void nodes_success(struct nodes *ns);

#endif
