/*
 * httpreq: the head of one HTTP/1.x request, parsed from bytes a client
 * sent.  Pure: no I/O, no allocation; the caller owns the bytes and keeps
 * reading until the head is complete.
 *
 * Only what the metrics listener needs is understood: the method, the
 * path (its query string cut off), the version and whether the connection
 * stays open.  A request that carries a body (Content-Length above 0 or any
 * Transfer-Encoding) is refused: none of our resources takes one, and
 * skipping bodies would be a way to keep a connection busy.
 *
 * The head is bounded (HTTPREQ_HEAD_MAX): past it the verdict is
 * HTTPREQ_TOO_LARGE, whatever the bytes, so a client can never make the
 * caller buffer more.
 */
#ifndef TASKD_HTTPREQ_H
#define TASKD_HTTPREQ_H

#include <stdbool.h>
#include <stddef.h>

/* The largest request head taken (request line and headers, with the
 * blank line); Prometheus sends about 300 bytes. */
#define HTTPREQ_HEAD_MAX 8192

enum httpreq_verdict {
	HTTPREQ_MORE,       /* no blank line yet: read more and call again */
	HTTPREQ_DONE,       /* a complete, well-formed head: see struct httpreq */
	HTTPREQ_BAD,        /* malformed: answer 400 and close */
	HTTPREQ_TOO_LARGE,  /* the head is over HTTPREQ_HEAD_MAX: 431, close */
	HTTPREQ_VERSION,    /* not HTTP/1.0 or 1.1: 505, close */
};

enum httpreq_method {
	HTTPREQ_GET,
	HTTPREQ_HEAD,
	HTTPREQ_OTHER,      /* any other token: answer 405 */
};

struct httpreq {
	enum httpreq_method method;
	const char *path;   /* into the caller's bytes; not NUL-terminated */
	size_t path_len;    /* without the query string */
	int minor;          /* HTTP/1.<minor> */
	bool keep_alive;    /* the client may send another request after */
	size_t head_len;    /* bytes of the head, blank line included */
};

/* Parses the request head at the start of data[0..len).  On HTTPREQ_DONE,
 * *req describes it and data + req->head_len is where the next request
 * starts.  Any other verdict leaves *req unspecified.  Calling again with
 * more bytes of the same request is how a partial head is completed. */
enum httpreq_verdict httpreq_parse(const char *data, size_t len, struct httpreq *req);

/* Whether the path is exactly p (a NUL-terminated string). */
bool httpreq_path_is(const struct httpreq *req, const char *p);

#endif
