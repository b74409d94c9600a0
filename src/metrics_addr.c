/* metrics.listen's form, apart from the listener so that conf (and
 * `taskd -t`) check it without pulling in the event loop. */
#include "metrics.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int
metrics_parse_listen(const char *listen, char *hostbuf, size_t hostlen,
    int *port, char *err, size_t errlen)
{
	const char *colon = strrchr(listen, ':');
	if (colon == NULL || colon == listen) {
		snprintf(err, errlen, "\"%s\" is not HOST:PORT (e.g. \"127.0.0.1:9810\", "
		    "\"[::1]:9810\", \"*:9810\")", listen);
		return -1;
	}
	const char *h = listen, *he = colon;
	if (*h == '[') {
		if (he[-1] != ']' || he - h < 3) {
			snprintf(err, errlen, "\"%s\": an IPv6 address goes in brackets, "
			    "\"[::1]:9810\"", listen);
			return -1;
		}
		h++;
		he--;
	} else if (memchr(h, ':', (size_t)(he - h)) != NULL) {
		snprintf(err, errlen, "\"%s\": an IPv6 address goes in brackets, "
		    "\"[::1]:9810\"", listen);
		return -1;
	}
	for (const char *c = h; c < he; c++)
		if (!((*c >= '0' && *c <= '9') || ((*c | 0x20) >= 'a' && (*c | 0x20) <= 'z') ||
		    strchr(".-_:%*", *c) != NULL)) {
			snprintf(err, errlen, "\"%s\": the host holds '%c'", listen, *c);
			return -1;
		}
	char *end;
	long p = strtol(colon + 1, &end, 10);
	if (colon[1] < '0' || colon[1] > '9' || *end != '\0' || p < 0 || p > 65535) {
		snprintf(err, errlen, "\"%s\": the port must be 0..65535 (0: any free port)",
		    listen);
		return -1;
	}
	size_t n = (size_t)(he - h);
	if (n + 1 > hostlen) {
		snprintf(err, errlen, "\"%s\": the host is too long", listen);
		return -1;
	}
	memcpy(hostbuf, h, n);
	hostbuf[n] = '\0';
	if (strcmp(hostbuf, "*") == 0)
		hostbuf[0] = '\0';
	else if (strchr(hostbuf, '*') != NULL) {
		snprintf(err, errlen, "\"%s\": '*' stands alone, for every address", listen);
		return -1;
	}
	*port = (int)p;
	return 0;
}
