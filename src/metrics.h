/*
 * metrics: the HTTP listener at metrics.listen, served from the event loop.
 *
 *   GET /metrics   the Prometheus text format 0.0.4 (what ops->render writes)
 *   GET /healthz   200 "ok" whenever the loop turns: the answer itself is
 *                  the proof, so it needs no other check
 *   GET /readyz    200 while ops->ready says so (consuming), else 503
 *   HEAD of each; anything else 404, another method 405.
 *
 * Nothing here ever blocks the loop: sockets are non-blocking, a response
 * that does not fit the socket waits for EV_WRITE, and every connection
 * has bounds a client cannot stretch:
 *   - at most METRICS_MAX_CONNS at once; one more evicts the connection
 *     that has been quiet longest, so idle connections can never lock the
 *     probes out (a flood of new ones competes, and is counted refused);
 *   - a request head of at most HTTPREQ_HEAD_MAX bytes (431 past it);
 *   - METRICS_TIMEOUT seconds for a whole request to arrive, for its
 *     response to leave, and for a kept-alive connection to say more.
 * HTTP/1.0 and 1.1 with keep-alive; requests on one connection are answered
 * in order, one at a time.
 */
#ifndef TASKD_METRICS_H
#define TASKD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <ev.h>

#include "buf.h"

#define METRICS_MAX_CONNS 64
#define METRICS_TIMEOUT 10.0

struct metrics_ops {
	/* Appends the body of /metrics to out; 0, or -1 (out of memory: the
	 * client gets a 500). */
	int (*render)(void *ctx, struct buf *out);
	/* Whether /readyz answers 200. */
	bool (*ready)(void *ctx);
};

struct metrics;

/* Listens on listen ("HOST:PORT", "[V6]:PORT", "*:PORT" for every
 * address; port 0 takes a free one, see metrics_address).  The host is
 * resolved here, so a literal address is best.  ops and ctx must outlive
 * the listener.  Returns NULL with err filled ("cannot listen on ...:
 * why") when the address is bad or bind/listen fails. */
struct metrics *metrics_new(struct ev_loop *loop, const char *addr,
    const struct metrics_ops *ops, void *ctx, char *err, size_t errlen);

/* The address really bound, e.g. "127.0.0.1:9810" (the port resolved). */
const char *metrics_address(const struct metrics *m);
/* The listen string it was made with. */
const char *metrics_listen(const struct metrics *m);
/* Connections evicted or refused because the bound was reached. */
uint64_t metrics_refused(const struct metrics *m);

/* Closes the listener and every connection. NULL is fine. */
void metrics_free(struct metrics *m);

/* Splits a metrics.listen value into host (NULL for "*") and port,
 * checking the form only (conf uses it; nothing is resolved).  host is
 * written into hostbuf.  Returns 0, or -1 with err filled. */
int metrics_parse_listen(const char *listen, char *hostbuf, size_t hostlen,
    int *port, char *err, size_t errlen);

#endif
