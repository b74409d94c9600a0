/*
 * fuzz_uri: the broker address parser (src/uri.c).  The input is the text
 * of broker.uri.  Besides memory errors it checks the parser's contract:
 * a failure says why in one non-empty line, a success has a host of host
 * characters only, a port in range and every part, and uri_copy
 * reproduces it.
 */
#include <ctype.h>
#include <string.h>

#include "fuzz.h"
#include "uri.h"

static int
same(const char *a, const char *b)
{
	return (a == NULL && b == NULL) || (a && b && strcmp(a, b) == 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = malloc(size + 1);
	if (s == NULL)
		return 0;
	memcpy(s, data, size);
	s[size] = '\0';

	struct uri u = { 0 };
	char err[256] = "";
	if (uri_parse(s, &u, err, sizeof(err)) == 0) {
		FUZZ_CHECK(u.user && u.password && u.host && u.vhost);
		FUZZ_CHECK(u.host[0] != '\0');
		/* The host goes into log lines and getaddrinfo: letters, digits,
		 * '.', '-', '_', and for an IPv6 literal ':' and a zone
		 * ("fe80::1%eth0", RFC 6874: unreserved characters). */
		for (const char *h = u.host; *h != '\0'; h++)
			FUZZ_CHECK(isalnum((unsigned char)*h) || strchr(".-_:%~", *h));
		FUZZ_CHECK(u.port >= 1 && u.port <= 65535);
		struct uri c = { 0 };
		if (uri_copy(&c, &u) == 0) {
			FUZZ_CHECK(same(c.user, u.user) && same(c.password, u.password) &&
			    same(c.host, u.host) && same(c.vhost, u.vhost) &&
			    c.port == u.port && c.tls == u.tls);
			uri_free(&c);
		}
		uri_free(&u);
		FUZZ_CHECK(u.password == NULL);
	} else {
		FUZZ_CHECK(err[0] != '\0' && strchr(err, '\n') == NULL);
		/* A failed parse leaves nothing to free. */
		FUZZ_CHECK(u.user == NULL && u.password == NULL && u.host == NULL &&
		    u.vhost == NULL);
		/* A short error buffer truncates, never overflows. */
		char tiny[8];
		FUZZ_CHECK(uri_parse(s, &u, tiny, sizeof(tiny)) < 0);
		FUZZ_CHECK(strlen(tiny) < sizeof(tiny));
	}
	free(s);
	return 0;
}
