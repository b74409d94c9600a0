#include "httpreq.h"

#include <string.h>
#include <strings.h>

/* RFC 9110 tchar: what a method or a header name is made of. */
static bool
is_tchar(unsigned char c)
{
	if (c >= '0' && c <= '9')
		return true;
	if ((c | 0x20) >= 'a' && (c | 0x20) <= 'z')
		return true;
	return c != '\0' && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

/* The end of the line starting at p (its CR or LF), or NULL when the line
 * holds a bare CR or a NUL. */
static const char *
line_end(const char *p, const char *end)
{
	const char *q = p;
	while (q < end && *q != '\n') {
		if (*q == '\0' || (*q == '\r' && q + 1 < end && q[1] != '\n'))
			return NULL;
		q++;
	}
	if (q > p && q[-1] == '\r')
		q--;
	return q;
}

/* Past the line ending at e (CRLF or a bare LF, which RFC 9112 lets a
 * recipient take). */
static const char *
next_line(const char *e)
{
	return *e == '\r' ? e + 2 : e + 1;
}

/* Whether a comma-separated header value holds the token tok. */
static bool
has_token(const char *v, const char *end, const char *tok)
{
	size_t n = strlen(tok);
	while (v < end) {
		while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
			v++;
		const char *s = v;
		while (v < end && *v != ',')
			v++;
		const char *e = v;
		while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
			e--;
		if ((size_t)(e - s) == n && strncasecmp(s, tok, n) == 0)
			return true;
	}
	return false;
}

static bool
name_is(const char *name, size_t len, const char *want)
{
	return strlen(want) == len && strncasecmp(name, want, len) == 0;
}

static enum httpreq_verdict
parse_request_line(const char *p, const char *e, struct httpreq *req)
{
	const char *m = p;
	while (p < e && is_tchar((unsigned char)*p))
		p++;
	if (p == m || p == e || *p != ' ')
		return HTTPREQ_BAD;
	size_t mlen = (size_t)(p - m);
	if (mlen == 3 && memcmp(m, "GET", 3) == 0)
		req->method = HTTPREQ_GET;
	else if (mlen == 4 && memcmp(m, "HEAD", 4) == 0)
		req->method = HTTPREQ_HEAD;
	else
		req->method = HTTPREQ_OTHER;
	p++;
	/* origin-form only: a path, maybe a query; no absolute URI, no '*'. */
	const char *t = p;
	if (p == e || *p != '/')
		return HTTPREQ_BAD;
	while (p < e && (unsigned char)*p > ' ' && (unsigned char)*p < 0x7f)
		p++;
	if (p == e || *p != ' ')
		return HTTPREQ_BAD;
	req->path = t;
	const char *q = memchr(t, '?', (size_t)(p - t));
	req->path_len = (size_t)((q != NULL ? q : p) - t);
	p++;
	if (e - p != 8 || memcmp(p, "HTTP/", 5) != 0 || p[6] != '.' ||
	    p[5] < '0' || p[5] > '9' || p[7] < '0' || p[7] > '9')
		return HTTPREQ_BAD;
	if (p[5] != '1' || p[7] > '1')
		return HTTPREQ_VERSION;
	req->minor = p[7] - '0';
	return HTTPREQ_DONE;
}

enum httpreq_verdict
httpreq_parse(const char *data, size_t len, struct httpreq *req)
{
	size_t n = len < HTTPREQ_HEAD_MAX ? len : HTTPREQ_HEAD_MAX;
	const char *end = data + n;
	const char *p = data;

	/* RFC 9112 2.2: empty lines before the request line are skipped
	 * (a client may send one after a body it thinks we read). */
	int blanks = 0;
	while (p < end && (*p == '\r' || *p == '\n') && blanks < 4) {
		p += *p == '\r' && p + 1 < end && p[1] == '\n' ? 2 : 1;
		blanks++;
	}

	/* Find the blank line first: nothing is judged on a partial head
	 * except its size and bytes no head may hold. */
	const char *blank = NULL;   /* the line that ends the head */
	const char *s = p;
	for (;;) {
		const char *e = line_end(s, end);
		if (e == NULL)
			return HTTPREQ_BAD;
		if (e == end || (*e == '\r' && e + 1 == end))
			return len >= HTTPREQ_HEAD_MAX ? HTTPREQ_TOO_LARGE : HTTPREQ_MORE;
		if (e == s && s != p) {
			blank = s;
			req->head_len = (size_t)(next_line(e) - data);
			break;
		}
		if (e == s)
			return HTTPREQ_BAD;   /* more blank lines than we skip */
		s = next_line(e);
	}

	const char *e = line_end(p, end);
	enum httpreq_verdict v = parse_request_line(p, e, req);
	if (v != HTTPREQ_DONE)
		return v;

	bool close = false, keep = false;
	for (s = next_line(e); s < blank; s = next_line(e)) {
		e = line_end(s, end);
		const char *name = s;
		while (s < e && is_tchar((unsigned char)*s))
			s++;
		/* No name, or white space before the colon (RFC 9112 5.1), or
		 * an obsolete folded line. */
		if (s == name || s == e || *s != ':')
			return HTTPREQ_BAD;
		size_t nlen = (size_t)(s - name);
		s++;
		while (s < e && (*s == ' ' || *s == '\t'))
			s++;
		const char *val = s;
		for (; s < e; s++)
			if (((unsigned char)*s < ' ' && *s != '\t') || *s == 0x7f)
				return HTTPREQ_BAD;
		if (name_is(name, nlen, "transfer-encoding"))
			return HTTPREQ_BAD;
		if (name_is(name, nlen, "content-length")) {
			const char *d = val;
			while (d < e && *d == '0')
				d++;
			while (d < e && (*d == ' ' || *d == '\t'))
				d++;
			if (d != e || val == e || *val < '0' || *val > '9')
				return HTTPREQ_BAD;
		}
		if (name_is(name, nlen, "connection")) {
			close = close || has_token(val, e, "close");
			keep = keep || has_token(val, e, "keep-alive");
		}
	}
	req->keep_alive = !close && (req->minor >= 1 || keep);
	return HTTPREQ_DONE;
}

bool
httpreq_path_is(const struct httpreq *req, const char *p)
{
	size_t n = strlen(p);
	return req->path_len == n && memcmp(req->path, p, n) == 0;
}
