/*
 * uri: the broker address, "amqp[s]://user:pass@host:port/vhost".
 *
 * A pure parser: no I/O, no globals.  Percent-escapes in user, password and
 * vhost are decoded ("%2f" is the vhost "/"); a missing port is 5672 (amqp)
 * or 5671 (amqps); a missing path is the vhost "/"; missing credentials are
 * guest/guest, as rabbitmq-c does.
 */
#ifndef TASKD_URI_H
#define TASKD_URI_H

#include <stdbool.h>
#include <stddef.h>

struct uri {
	char *user;
	char *password;
	char *host;
	int port;
	char *vhost;
	bool tls;
};

/* Parses s into u (which the caller zeroes and later frees with uri_free).
 * Returns 0, or -1 with a one-line reason in err (never containing the
 * password). */
int uri_parse(const char *s, struct uri *u, char *err, size_t errlen);
void uri_free(struct uri *u);
/* Copies src into dst (zeroed by the caller). Returns 0 or -1 (no memory). */
int uri_copy(struct uri *dst, const struct uri *src);

/* Whether s, as written (escapes not decoded, not validated), carries a
 * password in its user info: "amqp://u:secret@h" does, "amqp://u@h" and
 * "amqp://u:@h" do not.  "guest" counts as none: it is RabbitMQ's
 * well-known default, refused from other hosts, and no secret.  For the
 * warning about a config file every user can read. */
bool uri_has_password(const char *s);

#endif
