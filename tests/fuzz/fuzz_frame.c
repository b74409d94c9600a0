/*
 * fuzz_frame: the pool's messages (src/frame.c), both directions.  The
 * input is a byte stream as one end of the socketpair reads it: frames
 * are cut with frame_size, as pool.c and worker.c do, and each is decoded
 * as its type says (READY, CHILD and RESULT as the parent does, HELLO and
 * TASK as a worker does).
 *
 * Checked besides memory errors: a frame that decodes re-encodes to the
 * very same bytes (the format has one spelling per message), and decoded
 * strings lie inside the frame.
 */
#include <string.h>

#include "buf.h"
#include "frame.h"
#include "fuzz.h"

static const unsigned char *lo, *hi;

static void
inside(const void *p, size_t n)
{
	if (p == NULL)
		return;
	FUZZ_CHECK((const unsigned char *)p >= lo && (const unsigned char *)p + n <= hi);
}

static void
inside_str(const char *s)
{
	if (s != NULL)
		inside(s, strlen(s) + 1);
}

static void
inside_vec(const char *const *v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		if (v[i][0] != '\0')   /* "" may be the decoder's own */
			inside_str(v[i]);
}

static void
same_bytes(struct buf *b, const unsigned char *p, size_t n)
{
	FUZZ_CHECK(b->len == n && memcmp(b->data, p, n) == 0);
	buf_free(b);
}

static void
one(const unsigned char *p, size_t n)
{
	struct buf b = { 0 };
	lo = p;
	hi = p + n;
	switch (frame_type(p, n)) {
	case FRAME_HELLO: {
		struct frame_hello m;
		if (frame_get_hello(p, n, &m) == 0) {
			inside_vec(m.plugins);
			if (frame_put_hello(&b, &m) == 0)
				same_bytes(&b, p, n);
			frame_free_vec(m.plugins);
		}
		break;
	}
	case FRAME_TASK: {
		struct frame_task m;
		if (frame_get_task(p, n, &m) == 0) {
			inside_str(m.handler);
			inside_str(m.content_type);
			inside_vec(m.argv);
			inside(m.payload, m.len);
			if (frame_put_task(&b, &m) == 0)
				same_bytes(&b, p, n);
			frame_free_vec(m.argv);
		}
		break;
	}
	case FRAME_CHILD: {
		struct frame_child m;
		if (frame_get_child(p, n, &m) == 0) {
			FUZZ_CHECK(m.pgid > 1);
			if (frame_put_child(&b, &m) == 0)
				same_bytes(&b, p, n);
		}
		break;
	}
	case FRAME_READY: {
		uint32_t slot;
		if (frame_get_ready(p, n, &slot) == 0 && frame_put_ready(&b, slot) == 0)
			same_bytes(&b, p, n);
		break;
	}
	case FRAME_RESULT: {
		struct frame_result m;
		if (frame_get_result(p, n, &m) == 0) {
			inside_str(m.error_code);
			inside_str(m.content_type);
			inside(m.body, m.len);
			if (frame_put_result(&b, &m) == 0)
				same_bytes(&b, p, n);
		}
		break;
	}
	default:
		break;
	}
	buf_free(&b);
	/* Every decoder refuses a frame of another type. */
	struct frame_hello h;
	struct frame_task t;
	struct frame_child c;
	struct frame_result r;
	uint32_t slot;
	int type = frame_type(p, n);
	if (type != FRAME_HELLO && frame_get_hello(p, n, &h) == 0)
		FUZZ_CHECK(0);
	if (type != FRAME_TASK && frame_get_task(p, n, &t) == 0)
		FUZZ_CHECK(0);
	if (type != FRAME_CHILD)
		FUZZ_CHECK(frame_get_child(p, n, &c) < 0);
	if (type != FRAME_READY)
		FUZZ_CHECK(frame_get_ready(p, n, &slot) < 0);
	if (type != FRAME_RESULT)
		FUZZ_CHECK(frame_get_result(p, n, &r) < 0);
}

static void
none(const unsigned char *p, size_t n)
{
	struct frame_hello h;
	struct frame_task t;
	struct frame_child c;
	struct frame_result r;
	uint32_t slot;
	FUZZ_CHECK(frame_get_hello(p, n, &h) < 0 && frame_get_task(p, n, &t) < 0 &&
	    frame_get_child(p, n, &c) < 0 && frame_get_ready(p, n, &slot) < 0 &&
	    frame_get_result(p, n, &r) < 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	size_t at = 0;
	while (at < size) {
		size_t left = size - at;
		size_t n = frame_size(data + at, left, FRAME_MAX);
		if (n == 0 || n == (size_t)-1)
			break;           /* more needed, or a bad length: the pool stops */
		if (n > left) {
			/* Incomplete: a prefix never decodes as a whole frame. */
			none(data + at, left);
			break;
		}
		/* Each frame in a buffer of its own size: reads past it are
		 * caught. */
		unsigned char *f = malloc(n);
		if (f == NULL)
			break;
		memcpy(f, data + at, n);
		one(f, n);
		free(f);
		at += n;
	}
	return 0;
}
