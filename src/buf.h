/*
 * buf: a growable byte buffer, and the JSON string escaping every error body
 * needs.  A buf starts zeroed ({0}) and owns its memory until buf_free().
 *
 * Appends return 0, or -1 when memory ran out; then the buffer keeps what it
 * had, so a caller can fail the one task and keep the daemon running.
 */
#ifndef TASKD_BUF_H
#define TASKD_BUF_H

#include <stddef.h>

struct buf {
	char *data;   /* NUL-terminated for convenience; may hold NULs itself */
	size_t len;
	size_t cap;
};

int buf_append(struct buf *b, const void *p, size_t n);
int buf_puts(struct buf *b, const char *s);
int buf_printf(struct buf *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
/* Appends p[0..n) as the inside of a JSON string: quotes, backslashes and
 * control bytes escaped, bytes that are not valid UTF-8 written as U+FFFD. */
int buf_json_string(struct buf *b, const void *p, size_t n);
/* Appends p[0..n) in base64 (RFC 4648, with padding): how a JSON document
 * carries bytes that are not text. */
int buf_base64(struct buf *b, const void *p, size_t n);
/* Appends the bytes that base64 text s[0..n) stands for.  Returns 0, -1
 * when memory ran out, or -2 when s is not base64 (a bad character, a bad
 * length, or data after the padding); b then keeps what it had. */
int buf_unbase64(struct buf *b, const char *s, size_t n);
/* Makes data non-NULL even for an empty buffer. */
int buf_reserve(struct buf *b, size_t extra);
/* Hands the bytes to the caller (who frees them) and resets b. */
char *buf_steal(struct buf *b, size_t *len);
void buf_reset(struct buf *b);
void buf_free(struct buf *b);

#endif
