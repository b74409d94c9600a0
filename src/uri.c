#include "uri.h"

#include <ctype.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* Our own parser rather than amqp_parse_url(): that one answers every
 * mistake with the same AMQP_STATUS_BAD_URL, and an operator staring at
 * `taskd -t` deserves to know which part of the address is wrong.
 *
 * No message quotes any part of the input.  A password with an unescaped
 * '/' or '@' shifts every boundary, so "the host" or "the port" may well be
 * a piece of the password; naming the part without echoing it is the only
 * safe way to keep secrets out of logs. */

#define URI_HOST_MAX 255

static int
fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	if (err != NULL && errlen > 0) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(err, errlen, fmt, ap);
		va_end(ap);
	}
	return -1;
}

static int
hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

/* Decodes the percent-escapes of s[0..n) into a new string.  Returns 0,
 * -1 on a malformed escape or a decoded NUL (which would silently cut the
 * string short), -2 when out of memory. */
static int
decode(const char *s, size_t n, char **out)
{
	char *d = malloc(n + 1), *q = d;

	if (d == NULL)
		return -2;
	for (size_t i = 0; i < n; i++) {
		if (s[i] != '%') {
			*q++ = s[i];
			continue;
		}
		int hi = i + 2 < n ? hexval(s[i + 1]) : -1;
		int lo = hi >= 0 ? hexval(s[i + 2]) : -1;
		if (hi < 0 || lo < 0 || (hi == 0 && lo == 0)) {
			free(d);
			return -1;
		}
		*q++ = (char)(hi * 16 + lo);
		i += 2;
	}
	*q = '\0';
	*out = d;
	return 0;
}

/* decode() with the error turned into a message naming `what`. */
static int
decode_part(const char *s, size_t n, char **out, const char *what,
    char *err, size_t errlen)
{
	switch (decode(s, n, out)) {
	case 0:
		return 0;
	case -1:
		return fail(err, errlen, "bad percent-escape in the %s "
		    "(use %%XX with two hex digits, not %%00)", what);
	default:
		return fail(err, errlen, "out of memory");
	}
}

static int
valid_host(const char *h, size_t n, int bracketed)
{
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if ((c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') ||
		    (c >= 'A' && c <= 'Z') || c == '.')
			continue;
		if (!bracketed && (c == '-' || c == '_'))
			continue;
		/* An IPv6 literal, with an optional zone ("fe80::1%eth0"). */
		if (bracketed && (c == ':' || c == '%'))
			continue;
		return 0;
	}
	return 1;
}

static int
parse_port(const char *p, size_t n, int *port, char *err, size_t errlen)
{
	long v = 0;

	if (n == 0)
		return fail(err, errlen, "the port after ':' is empty");
	for (size_t i = 0; i < n; i++) {
		if (p[i] < '0' || p[i] > '9')
			return fail(err, errlen, "the port must be a number "
			    "from 1 to 65535");
		v = v * 10 + (p[i] - '0');
		if (v > 65535)
			break;
	}
	if (v < 1 || v > 65535)
		return fail(err, errlen, "the port must be from 1 to 65535");
	*port = (int)v;
	return 0;
}

static char *
dup_or_null(const char *s)
{
	return s != NULL ? strdup(s) : NULL;
}

int
uri_parse(const char *s, struct uri *u, char *err, size_t errlen)
{
	struct uri r = { 0 };
	const char *p;

	if (s == NULL)
		return fail(err, errlen, "no address");
	if (strncasecmp(s, "amqp://", 7) == 0) {
		p = s + 7;
	} else if (strncasecmp(s, "amqps://", 8) == 0) {
		p = s + 8;
		r.tls = true;
	} else {
		return fail(err, errlen, "the scheme must be amqp:// or amqps://");
	}
	r.port = r.tls ? 5671 : 5672;

	size_t alen = strcspn(p, "/?#");
	const char *rest = p + alen;

	/* The usual way to get here is a password holding a raw '/', which
	 * ends the authority early; say how to fix it. */
	if (strchr(rest, '@') != NULL)
		return fail(err, errlen, "'@' after the host: percent-encode "
		    "'/', '?', '#' and '@' in the user, password and "
		    "vhost (%%2F, %%3F, %%23, %%40)");
	if (strchr(rest, '?') != NULL)
		return fail(err, errlen, "query parameters are not supported "
		    "(use the broker.* settings)");
	if (strchr(rest, '#') != NULL)
		return fail(err, errlen, "a '#' fragment is not allowed");

	/* The last '@' ends the credentials: a host never holds one, a
	 * password sometimes does. */
	const char *at = NULL;
	for (const char *q = p; q < rest; q++)
		if (*q == '@')
			at = q;

	const char *hp = p;
	if (at != NULL) {
		const char *colon = memchr(p, ':', (size_t)(at - p));
		const char *uend = colon != NULL ? colon : at;
		if (decode_part(p, (size_t)(uend - p), &r.user, "user", err,
		    errlen) < 0)
			goto bad;
		if (colon != NULL) {
			if (decode_part(colon + 1, (size_t)(at - colon - 1),
			    &r.password, "password", err, errlen) < 0)
				goto bad;
		}
		hp = at + 1;
	}

	const char *host, *hend, *port = NULL;
	if (*hp == '[') {
		const char *close = memchr(hp, ']', (size_t)(rest - hp));
		if (close == NULL) {
			fail(err, errlen, "'[' without ']' in the host");
			goto bad;
		}
		host = hp + 1;
		hend = close;
		if (close + 1 < rest) {
			if (close[1] != ':') {
				fail(err, errlen, "unexpected text after ']' in the host");
				goto bad;
			}
			port = close + 2;
		}
	} else {
		host = hp;
		hend = memchr(hp, ':', (size_t)(rest - hp));
		if (hend != NULL)
			port = hend + 1;
		else
			hend = rest;
	}
	if (hend == host) {
		fail(err, errlen, "the host is empty");
		goto bad;
	}
	if (hend - host > URI_HOST_MAX) {
		fail(err, errlen, "the host is longer than %d bytes", URI_HOST_MAX);
		goto bad;
	}
	if (!valid_host(host, (size_t)(hend - host), *hp == '[')) {
		fail(err, errlen, "the host holds a character not allowed in a "
		    "host name or address");
		goto bad;
	}
	if (*hp == '[') {
		/* RFC 6874: the zone's '%' is written %25 inside the brackets. */
		if (decode_part(host, (size_t)(hend - host), &r.host, "host", err,
		    errlen) < 0)
			goto bad;
		/* ... and a zone is unreserved characters: an escape must not
		 * smuggle a newline or a control character into the host, which
		 * log lines quote. */
		for (const char *q = r.host; *q != '\0'; q++)
			if (!isalnum((unsigned char)*q) && strchr(".:%-_~", *q) == NULL) {
				fail(err, errlen, "the host holds a character not "
				    "allowed in a host name or address");
				goto bad;
			}
	} else if ((r.host = strndup(host, (size_t)(hend - host))) == NULL) {
		goto nomem;
	}
	if (port != NULL &&
	    parse_port(port, (size_t)(rest - port), &r.port, err, errlen) < 0)
		goto bad;

	/* "amqp://h" and "amqp://h/" both mean the default vhost "/": the
	 * empty vhost the AMQP URI spec derives from the latter exists on no
	 * broker, so taking it literally only turns a typo into "access
	 * refused" at connect time. */
	if (*rest == '/' && rest[1] != '\0') {
		if (strchr(rest + 1, '/') != NULL) {
			fail(err, errlen, "the vhost must be one path segment "
			    "(write a '/' inside it as %%2F)");
			goto bad;
		}
		if (decode_part(rest + 1, strlen(rest + 1), &r.vhost, "vhost",
		    err, errlen) < 0)
			goto bad;
	}

	/* Missing credentials mean RabbitMQ's guest account, as rabbitmq-c
	 * and every other AMQP client do. */
	if (r.user == NULL && (r.user = strdup("guest")) == NULL)
		goto nomem;
	if (r.password == NULL && (r.password = strdup("guest")) == NULL)
		goto nomem;
	if (r.vhost == NULL && (r.vhost = strdup("/")) == NULL)
		goto nomem;
	*u = r;
	return 0;

nomem:
	fail(err, errlen, "out of memory");
bad:
	uri_free(&r);
	return -1;
}

void
uri_free(struct uri *u)
{
	free(u->user);
	if (u->password != NULL) {
		/* Do not leave the broker password lying in freed heap. */
		explicit_bzero(u->password, strlen(u->password));
		free(u->password);
	}
	free(u->host);
	free(u->vhost);
	memset(u, 0, sizeof(*u));
}

int
uri_copy(struct uri *dst, const struct uri *src)
{
	struct uri r = { 0 };

	r.user = dup_or_null(src->user);
	r.password = dup_or_null(src->password);
	r.host = dup_or_null(src->host);
	r.vhost = dup_or_null(src->vhost);
	r.port = src->port;
	r.tls = src->tls;
	if ((src->user != NULL && r.user == NULL) ||
	    (src->password != NULL && r.password == NULL) ||
	    (src->host != NULL && r.host == NULL) ||
	    (src->vhost != NULL && r.vhost == NULL)) {
		uri_free(&r);
		return -1;
	}
	*dst = r;
	return 0;
}

bool
uri_has_password(const char *s)
{
	const char *p = strstr(s, "://");
	if (p == NULL)
		return false;
	p += 3;
	size_t auth = strcspn(p, "/?#");
	const char *at = memrchr(p, '@', auth);
	if (at == NULL)
		return false;
	const char *colon = memchr(p, ':', (size_t)(at - p));
	if (colon == NULL || colon + 1 == at)
		return false;
	size_t n = (size_t)(at - colon - 1);
	return !(n == 5 && memcmp(colon + 1, "guest", 5) == 0);
}
