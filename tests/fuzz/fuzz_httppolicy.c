/*
 * fuzz_httppolicy: the http handler's URL canonicaliser and allow-list
 * matcher (src/httppolicy.c).  The input is
 *
 *   entry '\n' url        (or only url, when there is no '\n')
 *
 * as untrusted bytes.  Besides memory errors it checks the contract of
 * httppolicy.h: a refusal says why; an accepted URL is canonical (a fixed
 * point, no dot segment, no byte a request line cannot carry, nothing a
 * second decoding would change) and falls under its own origin; an entry
 * has no query; a URL under an entry shares its scheme, host and port and
 * continues the entry's path at a segment boundary.
 */
#include <string.h>

#include "fuzz.h"
#include "httppolicy.h"

/* The path of a canonical URL: from the first '/' after "://". */
static const char *
path_of(const char *c)
{
	const char *a = strstr(c, "://");
	FUZZ_CHECK(a != NULL);
	const char *p = strchr(a + 3, '/');
	FUZZ_CHECK(p != NULL);
	return p;
}

static void
check_canonical(const char *c, size_t inlen)
{
	const char *why = "unset";
	size_t n = strlen(c);

	FUZZ_CHECK(strncmp(c, "http://", 7) == 0 || strncmp(c, "https://", 8) == 0);
	FUZZ_CHECK(n <= inlen + 64);
	for (size_t i = 0; i < n; i++) {
		unsigned char b = (unsigned char)c[i];
		FUZZ_CHECK(b > 0x20 && b < 0x7f && b != '\\' && b != '#');
	}
	const char *p = path_of(c);
	FUZZ_CHECK(memchr(c, '@', (size_t)(p - c)) == NULL);
	size_t plen = strcspn(p, "?");
	/* No dot segment survives, spelled plainly or escaped. */
	for (size_t i = 0; i < plen; i++) {
		if (p[i] != '/')
			continue;
		size_t j = i + 1, k = j;
		while (k < plen && p[k] != '/')
			k++;
		FUZZ_CHECK(!(k - j == 1 && p[j] == '.'));
		FUZZ_CHECK(!(k - j == 2 && p[j] == '.' && p[j + 1] == '.'));
	}
	for (size_t i = 0; i + 2 < plen; i++) {
		if (p[i] != '%')
			continue;
		/* Escapes left are upper case, and none is of a character
		 * that is sent plain or refused. */
		FUZZ_CHECK(strncmp(p + i, "%2E", 3) != 0 && strncmp(p + i, "%2F", 3) != 0 &&
		    strncmp(p + i, "%5C", 3) != 0 && strncmp(p + i, "%2e", 3) != 0);
	}
	char *again = httppolicy_url(c, n, &why);
	FUZZ_CHECK(again != NULL || why == NULL);
	if (again != NULL) {
		FUZZ_CHECK(strcmp(again, c) == 0);
		free(again);
	}
	/* Under its own origin, and under its own path as an entry. */
	size_t olen = (size_t)(p - c);
	char *origin = malloc(olen + 2);
	if (origin != NULL) {
		memcpy(origin, c, olen);
		origin[olen] = '/';
		origin[olen + 1] = '\0';
		FUZZ_CHECK(httppolicy_under(c, origin));
		free(origin);
	}
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *in = (const char *)data;
	const uint8_t *nl = memchr(data, '\n', size);
	const char *url = in;
	size_t ulen = size;
	char *entry = NULL;
	const char *why = NULL;

	if (nl != NULL) {
		size_t elen = (size_t)(nl - data);
		entry = malloc(elen + 1);
		if (entry == NULL)
			return 0;
		memcpy(entry, data, elen);
		entry[elen] = '\0';
		url = (const char *)nl + 1;
		ulen = size - elen - 1;
	}

	char *u = httppolicy_url(url, ulen, &why);
	if (u == NULL) {
		FUZZ_CHECK(why == NULL || why[0] != '\0');
	} else {
		check_canonical(u, ulen);
	}

	if (entry != NULL) {
		char *e = httppolicy_entry(entry, &why);
		if (e == NULL) {
			FUZZ_CHECK(why == NULL || why[0] != '\0');
		} else {
			check_canonical(e, strlen(entry));
			FUZZ_CHECK(strchr(e, '?') == NULL);
		}
		if (u != NULL && e != NULL && httppolicy_under(u, e)) {
			const char *up = path_of(u), *ep = path_of(e);
			size_t elen = strlen(ep);
			FUZZ_CHECK(up - u == ep - e && memcmp(u, e, (size_t)(up - u)) == 0);
			FUZZ_CHECK(strncmp(up, ep, elen) == 0);
			FUZZ_CHECK(up[elen] == '\0' || up[elen] == '/' || up[elen] == '?' ||
			    ep[elen - 1] == '/');
		}
		if (u != NULL) {
			char *const entries[] = { entry, NULL };
			int a = httppolicy_allowed(u, entries);
			FUZZ_CHECK(a == -1 || a == (e != NULL && httppolicy_under(u, e)));
		}
		(void)httppolicy_header_ok(entry);
		free(e);
	}
	free(u);
	free(entry);
	return 0;
}
