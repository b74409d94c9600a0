#include "buf.h"

#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
buf_reserve(struct buf *b, size_t extra)
{
	/* cap > len whenever data is set, so this cannot wrap */
	if (b->data != NULL && extra < b->cap - b->len)
		return 0;
	if (extra > SIZE_MAX / 2 - b->len)
		return -1;
	size_t cap = b->cap ? b->cap : 64;
	while (cap < b->len + extra + 1)
		cap *= 2;
	char *p = realloc(b->data, cap);
	if (p == NULL)
		return -1;
	b->data = p;
	b->cap = cap;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_append(struct buf *b, const void *p, size_t n)
{
	if (buf_reserve(b, n) < 0)
		return -1;
	if (n > 0)
		memcpy(b->data + b->len, p, n);
	b->len += n;
	b->data[b->len] = '\0';
	return 0;
}

int
buf_puts(struct buf *b, const char *s)
{
	return buf_append(b, s, strlen(s));
}

int
buf_printf(struct buf *b, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(NULL, 0, fmt, ap);
	va_end(ap);
	if (n < 0 || buf_reserve(b, (size_t)n) < 0)
		return -1;
	va_start(ap, fmt);
	vsnprintf(b->data + b->len, (size_t)n + 1, fmt, ap);
	va_end(ap);
	b->len += (size_t)n;
	return 0;
}

/* Length of the valid UTF-8 sequence at p (1..4), or 0 when it is not one. */
static size_t
utf8_seq(const unsigned char *p, size_t n)
{
	unsigned char c = p[0];
	size_t len;
	uint32_t cp;

	if (c < 0x80)
		return 1;
	if (c >= 0xc2 && c <= 0xdf) {
		len = 2;
		cp = c & 0x1f;
	} else if (c >= 0xe0 && c <= 0xef) {
		len = 3;
		cp = c & 0x0f;
	} else if (c >= 0xf0 && c <= 0xf4) {
		len = 4;
		cp = c & 0x07;
	} else {
		return 0;
	}
	if (n < len)
		return 0;
	for (size_t i = 1; i < len; i++) {
		if ((p[i] & 0xc0) != 0x80)
			return 0;
		cp = (cp << 6) | (p[i] & 0x3f);
	}
	/* Overlong forms, surrogates and values past U+10FFFF are not UTF-8. */
	if ((len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000) ||
	    (cp >= 0xd800 && cp <= 0xdfff) || cp > 0x10ffff)
		return 0;
	return len;
}

int
buf_json_string(struct buf *b, const void *p, size_t n)
{
	const unsigned char *s = p;
	size_t i = 0;

	while (i < n) {
		unsigned char c = s[i];
		int rc;
		if (c == '"' || c == '\\') {
			char esc[2] = { '\\', (char)c };
			rc = buf_append(b, esc, 2);
			i++;
		} else if (c < 0x20 || c == 0x7f) {
			rc = buf_printf(b, "\\u%04x", c);
			i++;
		} else {
			size_t len = utf8_seq(s + i, n - i);
			if (len == 0) {
				rc = buf_puts(b, "\\ufffd");
				i++;
			} else if (len == 2 && c == 0xc2 && s[i + 1] < 0xa0) {
				/* C1 controls: legal JSON, but CSI & co. reach terminals */
				rc = buf_printf(b, "\\u%04x", s[i + 1]);
				i += 2;
			} else {
				rc = buf_append(b, s + i, len);
				i += len;
			}
		}
		if (rc < 0)
			return -1;
	}
	return 0;
}

static const char base64_abc[] =
    "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

int
buf_base64(struct buf *b, const void *p, size_t n)
{
	const unsigned char *s = p;

	if (n > (SIZE_MAX / 4) * 3 - 2 || buf_reserve(b, (n + 2) / 3 * 4) < 0)
		return -1;
	char *o = b->data + b->len;
	size_t i = 0;
	for (; i + 3 <= n; i += 3) {
		uint32_t v = (uint32_t)s[i] << 16 | (uint32_t)s[i + 1] << 8 | s[i + 2];
		*o++ = base64_abc[v >> 18];
		*o++ = base64_abc[(v >> 12) & 63];
		*o++ = base64_abc[(v >> 6) & 63];
		*o++ = base64_abc[v & 63];
	}
	if (i < n) {
		uint32_t v = (uint32_t)s[i] << 16 | (i + 1 < n ? (uint32_t)s[i + 1] << 8 : 0);
		*o++ = base64_abc[v >> 18];
		*o++ = base64_abc[(v >> 12) & 63];
		*o++ = i + 1 < n ? base64_abc[(v >> 6) & 63] : '=';
		*o++ = '=';
	}
	b->len = (size_t)(o - b->data);
	b->data[b->len] = '\0';
	return 0;
}

static int
base64_value(unsigned char c)
{
	if (c >= 'A' && c <= 'Z')
		return c - 'A';
	if (c >= 'a' && c <= 'z')
		return c - 'a' + 26;
	if (c >= '0' && c <= '9')
		return c - '0' + 52;
	if (c == '+')
		return 62;
	if (c == '/')
		return 63;
	return -1;
}

int
buf_unbase64(struct buf *b, const char *s, size_t n)
{
	if (n % 4 != 0)
		return -2;
	if (buf_reserve(b, n / 4 * 3) < 0)
		return -1;
	size_t start = b->len;
	unsigned char *o = (unsigned char *)b->data + b->len;
	for (size_t i = 0; i < n; i += 4) {
		bool last = i + 4 == n;
		int pad = last && s[i + 3] == '=' ? (s[i + 2] == '=' ? 2 : 1) : 0;
		uint32_t v = 0;
		for (int k = 0; k < 4 - pad; k++) {
			int d = base64_value((unsigned char)s[i + (size_t)k]);
			if (d < 0)
				goto bad;
			v = v << 6 | (uint32_t)d;
		}
		v <<= 6 * pad;
		/* Padding's zero bits must really be zero: one text, one meaning. */
		if ((pad == 1 && (v & 0xff) != 0) || (pad == 2 && (v & 0xffff) != 0))
			goto bad;
		*o++ = (unsigned char)(v >> 16);
		if (pad < 2)
			*o++ = (unsigned char)(v >> 8);
		if (pad < 1)
			*o++ = (unsigned char)v;
	}
	b->len = (size_t)((char *)o - b->data);
	b->data[b->len] = '\0';
	return 0;
bad:
	b->len = start;
	b->data[b->len] = '\0';
	return -2;
}

char *
buf_steal(struct buf *b, size_t *len)
{
	if (buf_reserve(b, 0) < 0)
		return NULL;
	char *p = b->data;
	if (len != NULL)
		*len = b->len;
	b->data = NULL;
	b->len = b->cap = 0;
	return p;
}

void
buf_reset(struct buf *b)
{
	b->len = 0;
	if (b->data != NULL)
		b->data[0] = '\0';
}

void
buf_free(struct buf *b)
{
	free(b->data);
	b->data = NULL;
	b->len = b->cap = 0;
}
