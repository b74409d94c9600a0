/*
 * ctlreq: what a fleet-control request asks for (docs/protocol.md,
 * "Fleet control").  Pure; every byte is untrusted (anyone who may publish
 * to the control exchange can send one).
 *
 *   type "status"   body ignored
 *   type "cancel"   body {"ids": ["TASK_ID", ...]}: 1 to CTLREQ_MAX_IDS
 *                   ids, each a non-empty string of at most
 *                   CTLREQ_MAX_ID_LEN bytes (an AMQP message_id's bound)
 *   type "failover" body {"ids": [...], "before": N}: a node tells the
 *                   fleet that these tasks' deliveries (each with N
 *                   earlier ones) ended in its failover, not a crash
 *                   (failovers.h); N an integer 0 to CTLREQ_MAX_BEFORE
 */
#ifndef TASKD_CTLREQ_H
#define TASKD_CTLREQ_H

#include <stddef.h>

#define CTLREQ_MAX_IDS 1000
#define CTLREQ_MAX_ID_LEN 255
#define CTLREQ_MAX_BEFORE 1000000000L
/* A request body above this is refused unread. */
#define CTLREQ_MAX_BODY (CTLREQ_MAX_IDS * (CTLREQ_MAX_ID_LEN + 8) + 64)

enum ctlreq_kind {
	CTLREQ_STATUS,
	CTLREQ_CANCEL,
	CTLREQ_FAILOVER,
};

struct ctlreq {
	enum ctlreq_kind kind;
	char **ids;        /* CANCEL, FAILOVER: nids NUL-terminated copies */
	size_t nids;
	long before;       /* FAILOVER */
};

/* Parses a request of type type[0..type_len) with body[0..len).  Returns 0
 * and fills r (free it with ctlreq_free), or -1 with a one-line reason in
 * err (errlen > 0) and r left empty. */
int ctlreq_parse(const char *type, size_t type_len, const void *body, size_t len,
    struct ctlreq *r, char *err, size_t errlen);
void ctlreq_free(struct ctlreq *r);

#endif
