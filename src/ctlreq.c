/* ctlreq: a fleet-control request, parsed (ctlreq.h). */
#include "ctlreq.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

static int
fail(struct ctlreq *r, char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	ctlreq_free(r);
	return -1;
}

static bool
same(const char *p, size_t n, const char *s)
{
	return n == strlen(s) && memcmp(p, s, n) == 0;
}

static int
parse_ids(struct ctlreq *r, const void *body, size_t len, bool before, char *err,
    size_t errlen)
{
	if (len > CTLREQ_MAX_BODY)
		return fail(r, err, errlen, "the body is %zu bytes, more than %d", len,
		    CTLREQ_MAX_BODY);
	json_error_t je;
	json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
	if (root == NULL)
		return fail(r, err, errlen, "the body is not JSON (at byte %d)", je.position);
	json_t *ids = json_is_object(root) ? json_object_get(root, "ids") : NULL;
	size_t n = json_is_array(ids) ? json_array_size(ids) : 0;
	if (!json_is_array(ids) || n == 0 || n > CTLREQ_MAX_IDS) {
		json_decref(root);
		return fail(r, err, errlen, "the body must be {\"ids\": [...]} with 1 to %d "
		    "task ids", CTLREQ_MAX_IDS);
	}
	if (before) {
		json_t *b = json_object_get(root, "before");
		json_int_t v = json_is_integer(b) ? json_integer_value(b) : -1;
		if (v < 0 || v > CTLREQ_MAX_BEFORE) {
			json_decref(root);
			return fail(r, err, errlen, "\"before\" must be an integer from 0 to %ld",
			    CTLREQ_MAX_BEFORE);
		}
		r->before = (long)v;
	}
	r->ids = calloc(n, sizeof(*r->ids));
	if (r->ids == NULL) {
		json_decref(root);
		return fail(r, err, errlen, "out of memory");
	}
	for (size_t i = 0; i < n; i++) {
		json_t *v = json_array_get(ids, i);
		size_t l = json_is_string(v) ? json_string_length(v) : 0;
		const char *s = json_is_string(v) ? json_string_value(v) : NULL;
		if (s == NULL || l == 0 || l > CTLREQ_MAX_ID_LEN || memchr(s, '\0', l)) {
			json_decref(root);
			return fail(r, err, errlen, "task id %zu is not a string of 1 to %d "
			    "bytes", i + 1, CTLREQ_MAX_ID_LEN);
		}
		r->ids[i] = strndup(s, l);
		if (r->ids[i] == NULL) {
			json_decref(root);
			return fail(r, err, errlen, "out of memory");
		}
		r->nids = i + 1;
	}
	json_decref(root);
	return 0;
}

int
ctlreq_parse(const char *type, size_t type_len, const void *body, size_t len,
    struct ctlreq *r, char *err, size_t errlen)
{
	memset(r, 0, sizeof(*r));
	if (type == NULL)
		return fail(r, err, errlen, "the request has no type");
	if (same(type, type_len, "status")) {
		r->kind = CTLREQ_STATUS;
		return 0;
	}
	if (same(type, type_len, "cancel")) {
		r->kind = CTLREQ_CANCEL;
		return parse_ids(r, body, len, false, err, errlen);
	}
	if (same(type, type_len, "failover")) {
		r->kind = CTLREQ_FAILOVER;
		return parse_ids(r, body, len, true, err, errlen);
	}
	return fail(r, err, errlen, "unknown request type (status, cancel and failover "
	    "are known)");
}

void
ctlreq_free(struct ctlreq *r)
{
	for (size_t i = 0; i < r->nids; i++)
		free(r->ids[i]);
	free(r->ids);
	memset(r, 0, sizeof(*r));
}
