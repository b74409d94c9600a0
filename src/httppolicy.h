/*
 * httppolicy: what the http handler may ask for.  Pure functions over
 * untrusted strings: no I/O, no curl, no allocation beyond the result.
 *
 * Every URL is reduced to one canonical spelling before anything compares
 * it, and that spelling is what curl is given, so the URL that was checked
 * is the URL that is fetched.  The canonical form of an absolute http(s)
 * URL is
 *
 *     scheme "://" host [":" port] path ["?" query]
 *
 * with the scheme and host in lower case, a host name's trailing dot
 * dropped, an IPv6 literal in its RFC 5952 form (inet_ntop), the port left
 * out when it is the scheme's default, the fragment dropped (it never
 * reaches the server), and the path made plain: percent-encoded
 * unreserved characters (%2e, %41, ...) decoded, other escapes in upper
 * case, then "." and ".." segments resolved (RFC 3986 5.2.4).
 *
 * Refused, because servers and proxies read them in more than one way:
 * user information ("http://allowed@evil/"), backslashes, spaces, control
 * and non-ASCII bytes anywhere; percent-encoding in the host, IPv6 zones,
 * numeric hosts other than plain dotted-quad IPv4 ("0x7f.1", "127.1",
 * "2130706433", "010.0.0.1"); in the path an encoded '/' or '\' (%2f,
 * %5c), encoded control bytes, a double encoding ("%252e"), escapes that
 * are not UTF-8 (overlong "%c0%ae"), a dot segment with parameters
 * ("..;/", which Tomcat reads as ".."), and characters RFC 3986 does not
 * allow in a path ('"', '<', '>', '[', ']', '^', '`', '{', '|', '}').
 *
 * An allow entry is a URL in the same form, without query or fragment.
 * A URL falls under an entry when scheme, host and port are equal and the
 * entry's path is a prefix of the URL's path ending at a segment boundary:
 * "http://h/api" admits /api, /api/x and /api?q but not /apix; "http://h/api/"
 * admits /api/ and below but not /api; "http://h" or "http://h/" admits
 * every path on that host and port.
 */
#ifndef TASKD_HTTPPOLICY_H
#define TASKD_HTTPPOLICY_H

#include <stdbool.h>
#include <stddef.h>

/*
 * The canonical form of the absolute http or https URL url[0..len), which
 * may hold any bytes.  Returns a malloc'd string the caller frees, or NULL
 * with *why set to a static text saying what was refused, or to NULL when
 * out of memory.
 */
char *httppolicy_url(const char *url, size_t len, const char **why);

/*
 * The same for an allow entry (a NUL-terminated string), which must not
 * have a query or a fragment either.  For config checks and matching.
 */
char *httppolicy_entry(const char *entry, const char **why);

/* Whether url falls under entry; both must be canonical (made by the two
 * functions above). */
bool httppolicy_under(const char *url, const char *entry);

/*
 * Whether the canonical url falls under one of entries (a NULL-terminated
 * array of allow entries as written in the config, or NULL for none).
 * Entries are made canonical here; one that is not a valid entry matches
 * nothing.  Returns -1 when out of memory, 1 when allowed, 0 when not.
 */
int httppolicy_allowed(const char *url, char *const *entries);

/*
 * Whether a task's payload may set request header `name` (any case).  Not
 * Host (the URL decides where the request goes), nor the hop-by-hop
 * headers and the framing headers that curl sets from the request itself
 * (Connection, Keep-Alive, Proxy-*, Proxy, TE, Trailer, Transfer-Encoding,
 * Upgrade, Content-Length): a client setting those could smuggle a second
 * request or reach another virtual host behind an allowed address.  '_'
 * counts as '-' (Content_Length is refused too).
 */
bool httppolicy_header_ok(const char *name);

#endif
