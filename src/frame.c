#include "frame.h"

#include <stdlib.h>
#include <string.h>

/* A vector longer than this is a bug or an attack, not an argv. */
#define FRAME_VEC_MAX 4096

/* ---- encoding ----------------------------------------------------------- */

static int
put(struct buf *b, const void *p, size_t n)
{
	return buf_append(b, p, n);
}

static int
put_u32(struct buf *b, uint32_t v)
{
	return put(b, &v, sizeof(v));
}

static int
put_bytes(struct buf *b, const void *p, size_t n)
{
	if (n > UINT32_MAX)
		return -1;
	if (put_u32(b, (uint32_t)n) < 0)
		return -1;
	return n == 0 ? 0 : put(b, p, n);
}

/* NULL is sent as the empty string: no field needs to tell them apart. */
static int
put_str(struct buf *b, const char *s)
{
	size_t n = s ? strlen(s) : 0;
	if (put_bytes(b, s ? s : "", n) < 0)
		return -1;
	return put(b, "", 1);
}

static int
put_vec(struct buf *b, const char *const *v)
{
	uint32_t n = 0;
	while (v != NULL && v[n] != NULL)
		n++;
	if (put_u32(b, n) < 0)
		return -1;
	for (uint32_t i = 0; i < n; i++)
		if (put_str(b, v[i]) < 0)
			return -1;
	return 0;
}

/* Starts a frame: the length is patched by end(). */
static size_t
begin(struct buf *b, uint8_t type)
{
	size_t at = b->len;
	uint32_t zero = 0;
	if (put(b, &zero, sizeof(zero)) < 0 || put(b, &type, 1) < 0)
		return (size_t)-1;
	return at;
}

static int
end(struct buf *b, size_t at, int rc)
{
	size_t n = b->len - at - FRAME_HEADER;
	if (rc < 0 || n > FRAME_MAX) {
		b->len = at;   /* drop the partial frame */
		if (b->data)
			b->data[at] = '\0';
		return -1;
	}
	uint32_t len = (uint32_t)n;
	memcpy(b->data + at, &len, sizeof(len));
	return 0;
}

int
frame_put_hello(struct buf *b, const struct frame_hello *m)
{
	size_t at = begin(b, FRAME_HELLO);
	if (at == (size_t)-1)
		return -1;
	int rc = put_u32(b, m->slot) < 0 || put_vec(b, m->plugins) < 0 ? -1 : 0;
	return end(b, at, rc);
}

int
frame_put_task(struct buf *b, const struct frame_task *m)
{
	size_t at = begin(b, FRAME_TASK);
	if (at == (size_t)-1)
		return -1;
	int rc = put(b, &m->seq, sizeof(m->seq)) < 0 ||
	    put(b, &m->deadline, sizeof(m->deadline)) < 0 ||
	    put_u32(b, m->flags) < 0 ||
	    put(b, &m->max_result, sizeof(m->max_result)) < 0 ||
	    put_str(b, m->handler) < 0 ||
	    put_vec(b, m->argv) < 0 || put_str(b, m->content_type) < 0 ||
	    put_bytes(b, m->payload, m->len) < 0 ? -1 : 0;
	return end(b, at, rc);
}

int
frame_put_child(struct buf *b, const struct frame_child *m)
{
	size_t at = begin(b, FRAME_CHILD);
	if (at == (size_t)-1)
		return -1;
	int rc = put(b, &m->seq, sizeof(m->seq)) < 0 ||
	    put(b, &m->pgid, sizeof(m->pgid)) < 0 ? -1 : 0;
	return end(b, at, rc);
}

int
frame_put_ready(struct buf *b, uint32_t slot)
{
	size_t at = begin(b, FRAME_READY);
	if (at == (size_t)-1)
		return -1;
	return end(b, at, put_u32(b, slot));
}

int
frame_put_result(struct buf *b, const struct frame_result *m)
{
	size_t at = begin(b, FRAME_RESULT);
	if (at == (size_t)-1)
		return -1;
	int rc = put(b, &m->seq, sizeof(m->seq)) < 0 ||
	    put(b, &m->status, 1) < 0 || put(b, &m->rss, sizeof(m->rss)) < 0 ||
	    put_str(b, m->error_code) < 0 || put_str(b, m->content_type) < 0 ||
	    put_bytes(b, m->body, m->len) < 0 ? -1 : 0;
	return end(b, at, rc);
}

/* ---- decoding ----------------------------------------------------------- */

struct rd {
	const unsigned char *p;
	size_t left;
	bool bad;
};

static void
get(struct rd *r, void *out, size_t n)
{
	if (r->bad || r->left < n) {
		r->bad = true;
		memset(out, 0, n);
		return;
	}
	memcpy(out, r->p, n);
	r->p += n;
	r->left -= n;
}

static const void *
get_bytes(struct rd *r, size_t *len)
{
	uint32_t n;
	get(r, &n, sizeof(n));
	if (r->bad || r->left < n) {
		r->bad = true;
		*len = 0;
		return NULL;
	}
	const void *p = r->p;
	r->p += n;
	r->left -= n;
	*len = n;
	return p;
}

/* The empty string decodes as NULL ("none"). */
static const char *
get_str(struct rd *r)
{
	size_t n;
	const char *s = get_bytes(r, &n);
	if (r->bad || r->left < 1 || r->p[0] != '\0' || memchr(s, '\0', n) != NULL) {
		r->bad = true;
		return NULL;
	}
	r->p++;
	r->left--;
	return n == 0 ? NULL : s;
}

static const char *const *
get_vec(struct rd *r, bool empty_is_null)
{
	uint32_t n;
	get(r, &n, sizeof(n));
	if (r->bad || n > FRAME_VEC_MAX || n > r->left / 5) {
		r->bad = true;
		return NULL;
	}
	if (n == 0 && empty_is_null)
		return NULL;
	const char **v = calloc(n + 1, sizeof(*v));
	if (v == NULL) {
		r->bad = true;
		return NULL;
	}
	for (uint32_t i = 0; i < n; i++) {
		v[i] = get_str(r);
		if (v[i] == NULL)   /* an empty argument is allowed in argv */
			v[i] = r->bad ? NULL : "";
		if (r->bad) {
			free(v);
			return NULL;
		}
	}
	return v;
}

static bool
open_frame(struct rd *r, const void *p, size_t n, uint8_t type)
{
	uint32_t len;
	uint8_t t;
	r->p = p;
	r->left = n;
	r->bad = false;
	get(r, &len, sizeof(len));
	if (r->bad || len != n - FRAME_HEADER)
		return false;
	get(r, &t, 1);
	return !r->bad && t == type;
}

size_t
frame_size(const void *p, size_t n, size_t max)
{
	uint32_t len;
	if (n < FRAME_HEADER)
		return 0;
	memcpy(&len, p, sizeof(len));
	if (len == 0 || len > max)
		return (size_t)-1;
	return (size_t)len + FRAME_HEADER;
}

size_t
frame_max_len(int type, size_t max_body)
{
	/* type byte, then the fields as the encoders above write them */
	const size_t str = 4 + FRAME_STR_MAX + 1;
	switch (type) {
	case FRAME_READY:
		return 1 + 4;
	case FRAME_CHILD:
		return 1 + 8 + 4;
	case FRAME_RESULT:
		if (max_body > FRAME_MAX - 1024 - 2 * str)
			return FRAME_MAX;
		return 1 + 8 + 1 + 8 + 2 * str + 4 + max_body;
	default:
		return 0;
	}
}

int
frame_type(const void *p, size_t n)
{
	if (n < FRAME_HEADER + 1)
		return 0;
	return ((const unsigned char *)p)[FRAME_HEADER];
}

void
frame_free_vec(const char *const *v)
{
	free((void *)(uintptr_t)v);
}

int
frame_get_hello(const void *p, size_t n, struct frame_hello *m)
{
	struct rd r;
	memset(m, 0, sizeof(*m));
	if (!open_frame(&r, p, n, FRAME_HELLO))
		return -1;
	get(&r, &m->slot, sizeof(m->slot));
	m->plugins = get_vec(&r, false);
	if (r.bad || r.left != 0) {
		frame_free_vec(m->plugins);
		m->plugins = NULL;
		return -1;
	}
	return 0;
}

int
frame_get_task(const void *p, size_t n, struct frame_task *m)
{
	struct rd r;
	memset(m, 0, sizeof(*m));
	if (!open_frame(&r, p, n, FRAME_TASK))
		return -1;
	get(&r, &m->seq, sizeof(m->seq));
	get(&r, &m->deadline, sizeof(m->deadline));
	get(&r, &m->flags, sizeof(m->flags));
	get(&r, &m->max_result, sizeof(m->max_result));
	m->handler = get_str(&r);
	m->argv = get_vec(&r, true);
	m->content_type = get_str(&r);
	m->payload = get_bytes(&r, &m->len);
	if (r.bad || r.left != 0 || m->handler == NULL) {
		frame_free_vec(m->argv);
		m->argv = NULL;
		return -1;
	}
	return 0;
}

int
frame_get_child(const void *p, size_t n, struct frame_child *m)
{
	struct rd r;
	memset(m, 0, sizeof(*m));
	if (!open_frame(&r, p, n, FRAME_CHILD))
		return -1;
	get(&r, &m->seq, sizeof(m->seq));
	get(&r, &m->pgid, sizeof(m->pgid));
	return r.bad || r.left != 0 || m->pgid <= 1 ? -1 : 0;
}

int
frame_get_ready(const void *p, size_t n, uint32_t *slot)
{
	struct rd r;
	*slot = 0;
	if (!open_frame(&r, p, n, FRAME_READY))
		return -1;
	get(&r, slot, sizeof(*slot));
	return r.bad || r.left != 0 ? -1 : 0;
}

int
frame_get_result(const void *p, size_t n, struct frame_result *m)
{
	struct rd r;
	memset(m, 0, sizeof(*m));
	if (!open_frame(&r, p, n, FRAME_RESULT))
		return -1;
	get(&r, &m->seq, sizeof(m->seq));
	get(&r, &m->status, 1);
	get(&r, &m->rss, sizeof(m->rss));
	m->error_code = get_str(&r);
	m->content_type = get_str(&r);
	m->body = get_bytes(&r, &m->len);
	return r.bad || r.left != 0 ? -1 : 0;
}
