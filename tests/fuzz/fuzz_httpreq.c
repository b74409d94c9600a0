/*
 * fuzz_httpreq: the metrics listener's request parser (src/httpreq.c).  The
 * input is what a client sends on the metrics port, fed as the listener
 * feeds it: whole, then byte by byte growing.  Besides memory errors it
 * checks the parser's contract: a complete head lies inside the input and
 * within HTTPREQ_HEAD_MAX, its path starts with '/' and lies inside the
 * head, a verdict never changes once the bytes that decided it are there,
 * and pipelined requests parse one after another.
 */
#include <string.h>

#include "fuzz.h"
#include "httpreq.h"

static void
check_done(const char *data, size_t len, const struct httpreq *r)
{
	FUZZ_CHECK(r->head_len > 0 && r->head_len <= len && r->head_len <= HTTPREQ_HEAD_MAX);
	FUZZ_CHECK(r->path >= data && r->path + r->path_len <= data + r->head_len);
	FUZZ_CHECK(r->path_len > 0 && r->path[0] == '/');
	FUZZ_CHECK(memchr(r->path, '?', r->path_len) == NULL);
	FUZZ_CHECK(r->minor == 0 || r->minor == 1);
	FUZZ_CHECK(r->method == HTTPREQ_GET || r->method == HTTPREQ_HEAD ||
	    r->method == HTTPREQ_OTHER);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	/* A copy of exactly size bytes, so ASan sees any read past it. */
	char *buf = malloc(size ? size : 1);
	if (buf == NULL)
		return 0;
	memcpy(buf, data, size);

	struct httpreq whole;
	enum httpreq_verdict v = httpreq_parse(buf, size, &whole);
	if (v == HTTPREQ_DONE)
		check_done(buf, size, &whole);
	if (v == HTTPREQ_MORE)
		FUZZ_CHECK(size < HTTPREQ_HEAD_MAX);

	/* Growing: MORE until some prefix decides, and then the same
	 * verdict (and head) as the whole input.  Every prefix is a parse
	 * each, so only the first GROW_MAX bytes grow one by one (a verdict
	 * past them is covered by the whole input's checks). */
	enum { GROW_MAX = 1024 };
	enum httpreq_verdict first = HTTPREQ_MORE;
	size_t grow = size < GROW_MAX ? size : GROW_MAX;
	for (size_t n = 0; n <= grow; n++) {
		struct httpreq r;
		enum httpreq_verdict p = httpreq_parse(buf, n, &r);
		if (p != HTTPREQ_MORE) {
			first = p;
			if (p == HTTPREQ_DONE) {
				check_done(buf, n, &r);
				FUZZ_CHECK(v == HTTPREQ_DONE && r.head_len == whole.head_len);
			}
			break;
		}
	}
	if (first != HTTPREQ_MORE)
		FUZZ_CHECK(first == v);
	else if (grow == size)
		FUZZ_CHECK(v == HTTPREQ_MORE);

	/* Pipelining: the rest parses from where the head ended. */
	size_t off = 0;
	struct httpreq r = whole;
	for (int i = 0; v == HTTPREQ_DONE && i < 64; i++) {
		off += r.head_len;
		v = httpreq_parse(buf + off, size - off, &r);
		if (v == HTTPREQ_DONE)
			check_done(buf + off, size - off, &r);
	}
	free(buf);
	return 0;
}
