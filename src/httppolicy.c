/* httppolicy: canonical URLs, allow-list matching, request headers; see
 * httppolicy.h. */
#include "httppolicy.h"

#include <arpa/inet.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#define HOST_MAX 253
#define LABEL_MAX 63

/* Room the canonical form may need beyond the input's length: a longer
 * IPv6 spelling, a "/" for an empty path and one after a final "..". */
#define CANON_SLACK (INET6_ADDRSTRLEN + 16)

/* What the parts of a URL were found to be; pointers into the input. */
struct parts {
	const char *scheme;     /* "http" or "https" */
	const char *host;
	size_t hostlen;
	bool ipv6;
	unsigned port;          /* 0: the scheme's default */
	const char *path;       /* "" when the URL has none */
	size_t pathlen;
	const char *query;      /* after '?', or NULL */
	size_t querylen;
	bool fragment;
};

static bool
is_alpha(unsigned char c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}

static bool
is_digit(unsigned char c)
{
	return c >= '0' && c <= '9';
}

static int
hexval(unsigned char c)
{
	if (is_digit(c))
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	if (c >= 'A' && c <= 'F')
		return c - 'A' + 10;
	return -1;
}

static unsigned char
lower(unsigned char c)
{
	return c >= 'A' && c <= 'Z' ? (unsigned char)(c + 'a' - 'A') : c;
}

static bool
is_unreserved(unsigned char c)
{
	return is_alpha(c) || is_digit(c) || c == '-' || c == '.' || c == '_' || c == '~';
}

/* RFC 3986 pchar without the escapes: unreserved, sub-delims, ':', '@'. */
static bool
is_pchar(unsigned char c)
{
	return is_unreserved(c) || strchr("!$&'()*+,;=:@", c) != NULL;
}

/* Scheme, authority and where path, query and fragment lie. */
static const char *
split(const char *u, size_t len, struct parts *p)
{
	const char *end = u + len, *s = u;

	memset(p, 0, sizeof(*p));
	/* Before any part is read: bytes no part may hold.  A space or a
	 * control byte is where request splitting starts; a backslash is a
	 * '/' to browsers and some servers; a byte above 0x7f has no one
	 * reading. */
	for (const char *q = u; q < end; q++) {
		unsigned char c = (unsigned char)*q;
		if (c <= 0x20 || c >= 0x7f)
			return "a space, control byte or non-ASCII byte in the URL";
		if (c == '\\')
			return "a backslash in the URL";
	}
	while (s < end && *s != ':')
		s++;
	size_t slen = (size_t)(s - u);
	if (slen == 4 && strncasecmp(u, "http", 4) == 0)
		p->scheme = "http";
	else if (slen == 5 && strncasecmp(u, "https", 5) == 0)
		p->scheme = "https";
	else
		return "not an absolute http or https URL";
	if (end - s < 3 || memcmp(s, "://", 3) != 0)
		return "not an absolute http or https URL";
	s += 3;

	const char *auth = s;
	while (s < end && *s != '/' && *s != '?' && *s != '#')
		s++;
	const char *aend = s;
	if (memchr(auth, '@', (size_t)(aend - auth)) != NULL)
		return "user information (user@) in the URL";
	const char *h = auth;
	if (h < aend && *h == '[') {
		const char *close = memchr(h, ']', (size_t)(aend - h));
		if (close == NULL)
			return "an IPv6 address without its ']'";
		p->host = h + 1;
		p->hostlen = (size_t)(close - h - 1);
		p->ipv6 = true;
		h = close + 1;
	} else {
		while (h < aend && *h != ':')
			h++;
		p->host = auth;
		p->hostlen = (size_t)(h - auth);
	}
	if (h < aend) {
		if (*h != ':')
			return "something after the IPv6 address that is not a port";
		h++;
		if (aend - h > 5)
			return "a bad port";
		unsigned port = 0;
		for (; h < aend; h++) {
			if (!is_digit((unsigned char)*h))
				return "a bad port";
			port = port * 10 + (unsigned)(*h - '0');
		}
		/* "http://h:/" is the default port, as RFC 3986 3.2.3 says. */
		if (port > 65535 || (port == 0 && h[-1] != ':'))
			return "a bad port";
		p->port = port;
	}
	if ((strcmp(p->scheme, "http") == 0 && p->port == 80) ||
	    (strcmp(p->scheme, "https") == 0 && p->port == 443))
		p->port = 0;

	p->path = s;
	while (s < end && *s != '?' && *s != '#')
		s++;
	p->pathlen = (size_t)(s - p->path);
	if (s < end && *s == '?') {
		p->query = ++s;
		while (s < end && *s != '#')
			s++;
		p->querylen = (size_t)(s - p->query);
	}
	p->fragment = s < end;
	return NULL;
}

/* Writes the host's canonical form at out; returns its length, or 0 with
 * *why set. */
static size_t
canon_host(const struct parts *p, char *out, const char **why)
{
	const char *h = p->host;
	size_t n = p->hostlen;

	if (p->ipv6) {
		char tmp[INET6_ADDRSTRLEN + 1];
		struct in6_addr a;
		if (memchr(h, '%', n) != NULL) {
			*why = "an IPv6 zone (%) in the host";
			return 0;
		}
		if (n == 0 || n >= sizeof(tmp)) {
			*why = "a bad IPv6 address";
			return 0;
		}
		memcpy(tmp, h, n);
		tmp[n] = '\0';
		if (inet_pton(AF_INET6, tmp, &a) != 1 ||
		    inet_ntop(AF_INET6, &a, tmp, sizeof(tmp)) == NULL) {
			*why = "a bad IPv6 address";
			return 0;
		}
		size_t t = strlen(tmp);
		out[0] = '[';
		memcpy(out + 1, tmp, t);
		out[t + 1] = ']';
		return t + 2;
	}
	/* One trailing dot names the same host (an absolute name). */
	if (n > 0 && h[n - 1] == '.')
		n--;
	if (n == 0) {
		*why = "no host in the URL";
		return 0;
	}
	if (n > HOST_MAX) {
		*why = "a host name longer than 253 bytes";
		return 0;
	}
	size_t label = 0, last = 0;
	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)h[i];
		if (c == '.') {
			if (label == 0) {
				*why = "an empty label in the host name";
				return 0;
			}
			label = 0;
			last = i + 1;
		} else if (is_alpha(c) || is_digit(c) || c == '-' || c == '_') {
			if (++label > LABEL_MAX) {
				*why = "a host name label longer than 63 bytes";
				return 0;
			}
		} else {
			*why = c == '%' ? "percent-encoding in the host" :
			    "a character not allowed in a host name";
			return 0;
		}
		out[i] = (char)lower(c);
	}
	if (label == 0) {
		*why = "an empty label in the host name";
		return 0;
	}
	/* A last label that is a number, or hex, makes resolvers read the
	 * whole name as an IPv4 address, in forms (127.1, 0x7f.1, 2130706433,
	 * 010.0.0.1 in octal) that a string compare cannot equate.  Only
	 * the plain dotted quad is let through. */
	bool numeric = true;
	for (size_t i = last; i < n; i++)
		if (!is_digit((unsigned char)h[i]))
			numeric = false;
	if (n - last >= 2 && h[last] == '0' && lower((unsigned char)h[last + 1]) == 'x')
		numeric = true;
	if (numeric) {
		int parts = 0;
		for (size_t i = 0; i < n;) {
			size_t j = i;
			unsigned v = 0;
			while (j < n && is_digit((unsigned char)h[j]) && j - i < 4)
				v = v * 10 + (unsigned)(h[j++] - '0');
			if (j == i || j - i > 3 || v > 255 || (h[i] == '0' && j - i > 1) ||
			    (j < n && h[j] != '.')) {
				*why = "a numeric host that is not a plain dotted-quad IPv4 address";
				return 0;
			}
			parts++;
			i = j + 1;
		}
		if (parts != 4) {
			*why = "a numeric host that is not a plain dotted-quad IPv4 address";
			return 0;
		}
	}
	return n;
}

/*
 * Step one for the path: escapes checked and made plain into out (never
 * longer than the input); returns the length, or (size_t)-1 with *why.
 */
static size_t
plain_path(const char *s, size_t n, char *out, const char **why)
{
	size_t o = 0;
	/* UTF-8 of the decoded bytes: how many continuation bytes are still
	 * due, and the range the next one must be in (no overlong forms, no
	 * surrogates, nothing above U+10FFFF). */
	int need = 0;
	unsigned char lo = 0x80, hi = 0xbf;

	for (size_t i = 0; i < n; i++) {
		unsigned char c = (unsigned char)s[i];
		if (c != '%') {
			if (need > 0)
				goto not_utf8;
			if (c != '/' && !is_pchar(c)) {
				*why = "a character not allowed in a URL path";
				return (size_t)-1;
			}
			out[o++] = (char)c;
			continue;
		}
		if (n - i < 3 || hexval((unsigned char)s[i + 1]) < 0 ||
		    hexval((unsigned char)s[i + 2]) < 0) {
			*why = "a '%' in the path that is not an escape (%XX)";
			return (size_t)-1;
		}
		unsigned char b = (unsigned char)(hexval((unsigned char)s[i + 1]) * 16 +
		    hexval((unsigned char)s[i + 2]));
		i += 2;
		if (need > 0) {
			if (b < lo || b > hi)
				goto not_utf8;
			need--;
			lo = 0x80;
			hi = 0xbf;
		} else if (b >= 0x80) {
			if (b >= 0xc2 && b <= 0xdf) {
				need = 1;
			} else if (b >= 0xe0 && b <= 0xef) {
				need = 2;
				lo = b == 0xe0 ? 0xa0 : 0x80;
				hi = b == 0xed ? 0x9f : 0xbf;
			} else if (b >= 0xf0 && b <= 0xf4) {
				need = 3;
				lo = b == 0xf0 ? 0x90 : 0x80;
				hi = b == 0xf4 ? 0x8f : 0xbf;
			} else {
				goto not_utf8;
			}
		} else if (b == '/' || b == '\\') {
			*why = "an encoded '/' or '\\' (%2F, %5C) in the path";
			return (size_t)-1;
		} else if (b < 0x20 || b == 0x7f) {
			*why = "an encoded control byte in the path";
			return (size_t)-1;
		} else if (is_unreserved(b)) {
			out[o++] = (char)b;
			continue;
		}
		static const char hex[] = "0123456789ABCDEF";
		out[o++] = '%';
		out[o++] = hex[b >> 4];
		out[o++] = hex[b & 15];
	}
	if (need > 0)
		goto not_utf8;
	/* A '%' followed by hex, however it was spelled ("%252e",
	 * "%25%32%65"): a server that decodes twice reads an escape the
	 * checks above never saw. */
	for (size_t i = 0; i + 4 < o; i++)
		if (memcmp(out + i, "%25", 3) == 0 && hexval((unsigned char)out[i + 3]) >= 0 &&
		    hexval((unsigned char)out[i + 4]) >= 0) {
			*why = "a double-encoded escape (%25XX) in the path";
			return (size_t)-1;
		}
	return o;
not_utf8:
	*why = "escapes in the path that are not UTF-8 (such as an overlong %C0%AE)";
	return (size_t)-1;
}

/*
 * Step two: "." and ".." segments resolved (RFC 3986 5.2.4) from
 * in[0..n) (a plain path, "" or starting with '/') into out; returns the
 * length, or (size_t)-1 with *why.
 */
static size_t
resolve_dots(const char *in, size_t n, char *out, const char **why)
{
	size_t o = 0;
	bool slash_end = true;  /* the output must end in '/' */

	if (n > 0 && in[0] != '/') {
		*why = "a path that does not start with '/'";
		return (size_t)-1;
	}
	for (size_t i = 0; i < n;) {
		size_t start = i + 1, end = start;
		while (end < n && in[end] != '/')
			end++;
		const char *seg = in + start;
		size_t len = end - start;
		const char *semi = memchr(seg, ';', len);
		size_t bare = semi != NULL ? (size_t)(semi - seg) : len;
		bool dot = bare == 1 && seg[0] == '.';
		bool dotdot = bare == 2 && seg[0] == '.' && seg[1] == '.';
		if ((dot || dotdot) && semi != NULL) {
			*why = "a dot segment with parameters (\"..;\") in the path";
			return (size_t)-1;
		}
		if (dot) {
			slash_end = true;
		} else if (dotdot) {
			while (o > 0 && out[o - 1] != '/')
				o--;
			if (o > 0)
				o--;    /* the '/' before the segment */
			slash_end = true;
		} else {
			out[o++] = '/';
			memcpy(out + o, seg, len);
			o += len;
			slash_end = false;
		}
		i = end;
	}
	if (slash_end)
		out[o++] = '/';
	return o;
}

static char *
canon(const char *u, size_t len, bool entry, const char **why)
{
	struct parts p;
	const char *w;
	char *out = NULL, *tmp = NULL;

	*why = NULL;
	if ((w = split(u, len, &p)) != NULL) {
		*why = w;
		return NULL;
	}
	if (entry && (p.query != NULL || p.fragment)) {
		*why = "an allow entry with a query or a fragment";
		return NULL;
	}
	if (len > SIZE_MAX - CANON_SLACK ||
	    (out = malloc(len + CANON_SLACK)) == NULL ||
	    (tmp = malloc(p.pathlen + 1)) == NULL) {
		free(out);
		*why = NULL;
		return NULL;
	}
	size_t o = strlen(p.scheme);
	memcpy(out, p.scheme, o);
	memcpy(out + o, "://", 3);
	o += 3;
	size_t hn = canon_host(&p, out + o, why);
	if (hn == 0)
		goto fail;
	o += hn;
	if (p.port != 0) {
		char port[8];
		size_t k = sizeof(port);
		unsigned v = p.port;
		do {
			port[--k] = (char)('0' + v % 10);
			v /= 10;
		} while (v != 0);
		port[--k] = ':';
		memcpy(out + o, port + k, sizeof(port) - k);
		o += sizeof(port) - k;
	}
	size_t pn = plain_path(p.path, p.pathlen, tmp, why);
	if (pn == (size_t)-1)
		goto fail;
	size_t rn = resolve_dots(tmp, pn, out + o, why);
	if (rn == (size_t)-1)
		goto fail;
	o += rn;
	if (p.query != NULL) {
		/* Kept as sent: a query is the server's to read, and only the
		 * path is compared.  Escapes must still be escapes. */
		for (size_t i = 0; i < p.querylen; i++)
			if (p.query[i] == '%' && (p.querylen - i < 3 ||
			    hexval((unsigned char)p.query[i + 1]) < 0 ||
			    hexval((unsigned char)p.query[i + 2]) < 0)) {
				*why = "a '%' in the query that is not an escape (%XX)";
				goto fail;
			}
		out[o++] = '?';
		memcpy(out + o, p.query, p.querylen);
		o += p.querylen;
	}
	out[o] = '\0';
	free(tmp);
	return out;
fail:
	free(tmp);
	free(out);
	return NULL;
}

char *
httppolicy_url(const char *url, size_t len, const char **why)
{
	return canon(url, len, false, why);
}

char *
httppolicy_entry(const char *entry, const char **why)
{
	return canon(entry, strlen(entry), true, why);
}

/* Where the path starts in a canonical URL: the first '/' after "://". */
static const char *
path_of(const char *c)
{
	const char *a = strstr(c, "://");
	const char *s = a != NULL ? strchr(a + 3, '/') : NULL;
	return s != NULL ? s : c + strlen(c);
}

bool
httppolicy_under(const char *url, const char *entry)
{
	const char *up = path_of(url), *ep = path_of(entry);

	if (up - url != ep - entry || memcmp(url, entry, (size_t)(up - url)) != 0)
		return false;
	size_t ulen = strcspn(up, "?"), elen = strlen(ep);
	if (elen == 0 || elen > ulen || memcmp(up, ep, elen) != 0)
		return false;
	return ulen == elen || ep[elen - 1] == '/' || up[elen] == '/';
}

int
httppolicy_allowed(const char *url, char *const *entries)
{
	const char *why;

	if (entries == NULL)
		return 0;
	for (char *const *e = entries; *e != NULL; e++) {
		char *c = httppolicy_entry(*e, &why);
		if (c == NULL) {
			if (why == NULL)
				return -1;
			continue;
		}
		bool ok = httppolicy_under(url, c);
		free(c);
		if (ok)
			return 1;
	}
	return 0;
}

/* Whether header name starts with (or, when whole, is) ref: any case, and
 * '_' taken for '-', as CGI-style gateways map both to the same variable
 * (Content_Length would reach an application as CONTENT_LENGTH). */
static bool
header_is(const char *name, const char *ref, bool whole)
{
	for (; *ref != '\0'; name++, ref++) {
		unsigned char c = lower((unsigned char)*name);
		if (c == '_')
			c = '-';
		if (c != (unsigned char)*ref)
			return false;
	}
	return !whole || *name == '\0';
}

bool
httppolicy_header_ok(const char *name)
{
	static const char *const refused[] = {
		"host", "connection", "keep-alive", "proxy", "te", "trailer",
		"transfer-encoding", "upgrade", "content-length",
	};

	if (header_is(name, "proxy-", false))
		return false;
	for (size_t i = 0; i < sizeof(refused) / sizeof(refused[0]); i++)
		if (header_is(name, refused[i], true))
			return false;
	return true;
}
