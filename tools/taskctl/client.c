/* client: the broker connection and message assembly (client.h). */

#include <err.h>
#include <stdlib.h>
#include <string.h>
#include <sys/time.h>

#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/ssl.h>

#include "cli.h"
#include "client.h"
#include "rpcerr.h"

/* Bounds on waiting for the broker during setup: a black-holed address or
 * a frozen broker must end in an error, not a hang. */
#define CONNECT_TIMEOUT_S 10
#define RPC_TIMEOUT_S 30

void
client_warn_rpc(const char *what, amqp_rpc_reply_t r)
{
	char *text = rpcerr_text(r, what);
	warnx("%s", text != NULL ? text : what);
	free(text);
}

int
client_check_rpc(amqp_connection_state_t conn, const char *what)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	client_warn_rpc(what, r);
	return -1;
}

static int
setup_tls(amqp_socket_t *sock, const struct client_opts *o)
{
	if (o->cacert != NULL) {
		if (amqp_ssl_socket_set_cacert(sock, o->cacert) != AMQP_STATUS_OK) {
			warnx("cannot load the CA bundle %s", o->cacert);
			return -1;
		}
	} else {
		/* rabbitmq-c 0.11 loads no CA store by itself; use the
		 * system's (SSL_CERT_FILE / SSL_CERT_DIR override it).  Peer
		 * and host name checks stay on, as rabbitmq-c defaults them. */
		SSL_CTX *ctx = amqp_ssl_socket_get_context(sock);
		if (ctx == NULL || SSL_CTX_set_default_verify_paths(ctx) != 1) {
			warnx("cannot load the system CA certificates");
			return -1;
		}
	}
	if (o->cert != NULL &&
	    amqp_ssl_socket_set_key(sock, o->cert, o->key) != AMQP_STATUS_OK) {
		warnx("cannot load the client certificate %s with key %s",
		    o->cert, o->key);
		return -1;
	}
	return 0;
}

/* One URI (a NUL-terminated copy, which amqp_parse_url writes into).
 * n is its place in the list, for messages that must not show it. */
static amqp_connection_state_t
connect_one(char *uri, int n, const struct client_opts *o, int heartbeat,
    const char *name)
{
	struct amqp_connection_info ci;
	amqp_connection_state_t conn = NULL;

	int rc = amqp_parse_url(uri, &ci);
	if (rc != AMQP_STATUS_OK) {
		/* Never echo the URI: it may hold a password. */
		warnx("broker URI %d: %s", n, amqp_error_string2(rc));
		return NULL;
	}
	conn = amqp_new_connection();
	if (conn == NULL) {
		warnx("out of memory");
		return NULL;
	}
	amqp_socket_t *sock;
	if (ci.ssl) {
		sock = amqp_ssl_socket_new(conn);
		if (sock == NULL) {
			warnx("cannot create a TLS socket");
			goto fail;
		}
		if (setup_tls(sock, o) < 0)
			goto fail;
	} else {
		sock = amqp_tcp_socket_new(conn);
		if (sock == NULL) {
			warnx("out of memory");
			goto fail;
		}
	}
	struct timeval tmo = { CONNECT_TIMEOUT_S, 0 };
	rc = amqp_socket_open_noblock(sock, ci.host, ci.port, &tmo);
	if (rc != AMQP_STATUS_OK) {
		warnx("cannot connect to %s:%d: %s", ci.host, ci.port,
		    amqp_error_string2(rc));
		goto fail;
	}
	if (amqp_set_handshake_timeout(conn, &tmo) != AMQP_STATUS_OK) {
		warnx("cannot set the handshake timeout");
		goto fail;
	}
	struct timeval rpc = { RPC_TIMEOUT_S, 0 };
	if (amqp_set_rpc_timeout(conn, &rpc) != AMQP_STATUS_OK) {
		warnx("cannot set the RPC timeout");
		goto fail;
	}

	/* The name shows in the management UI, so an operator can tell a
	 * benchmark from a worker. */
	amqp_table_entry_t prop;
	prop.key = amqp_cstring_bytes("connection_name");
	prop.value.kind = AMQP_FIELD_KIND_UTF8;
	prop.value.value.bytes = amqp_cstring_bytes(name);
	amqp_table_t props = { 1, &prop };
	/* "amqp://host:port/" parses to the empty vhost, which RabbitMQ never
	 * has; the default vhost is what such a URI means in practice. */
	const char *vhost = ci.vhost[0] != '\0' ? ci.vhost : "/";
	amqp_rpc_reply_t r = amqp_login_with_properties(conn, vhost, 0, 131072,
	    heartbeat, &props, AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		client_warn_rpc("login", r);
		goto fail;
	}
	amqp_channel_open(conn, CLIENT_CHANNEL);
	if (client_check_rpc(conn, "channel.open") < 0)
		goto fail;
	return conn;
fail:
	amqp_destroy_connection(conn);
	return NULL;
}

amqp_connection_state_t
client_connect(const struct client_opts *o, int heartbeat, const char *name)
{
	char *list = strdup(o->uris);
	if (list == NULL) {
		warnx("out of memory");
		return NULL;
	}
	amqp_connection_state_t conn = NULL;
	int n = 0;
	char *save = NULL;
	for (char *u = strtok_r(list, ",", &save); u != NULL && conn == NULL;
	    u = strtok_r(NULL, ",", &save)) {
		n++;
		conn = connect_one(u, n, o, heartbeat, name);
	}
	if (n == 0)
		warnx("no broker URI given");
	else if (conn == NULL && n > 1)
		warnx("none of the %d brokers accepted the connection", n);
	free(list);
	return conn;
}

void
client_close(amqp_connection_state_t conn)
{
	if (conn == NULL)
		return;
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
}

int
client_read_frame(amqp_connection_state_t conn, amqp_frame_t *f,
    uint64_t deadline)
{
	struct timeval tv, *tvp = NULL;
	if (deadline != 0) {
		uint64_t now = cli_now_ns();
		uint64_t left = deadline > now ? deadline - now : 0;
		tv.tv_sec = (time_t)(left / 1000000000ull);
		tv.tv_usec = (suseconds_t)(left % 1000000000ull / 1000);
		tvp = &tv;
	}
	int rc = amqp_simple_wait_frame_noblock(conn, f, tvp);
	if (rc == AMQP_STATUS_TIMEOUT)
		return 0;
	if (rc != AMQP_STATUS_OK) {
		warnx("connection lost: %s", amqp_error_string2(rc));
		return -1;
	}
	return 1;
}

static void
warn_close(const char *what, uint16_t code, amqp_bytes_t text)
{
	struct buf t = { 0 };
	if (cli_printable(&t, text) < 0)
		warnx("%s: %u", what, code);
	else
		warnx("%s: %u %s", what, code, t.data);
	buf_free(&t);
}

int
client_fatal_method(const amqp_frame_t *f)
{
	if (f->payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
		const amqp_channel_close_t *m = f->payload.method.decoded;
		warn_close("broker closed the channel", m->reply_code,
		    m->reply_text);
	} else if (f->payload.method.id == AMQP_CONNECTION_CLOSE_METHOD) {
		const amqp_connection_close_t *m = f->payload.method.decoded;
		warn_close("broker closed the connection", m->reply_code,
		    m->reply_text);
	} else {
		warnx("unexpected method 0x%08x from the broker",
		    f->payload.method.id);
	}
	return -1;
}

bool
client_header_string(const amqp_basic_properties_t *p, const char *key,
    amqp_bytes_t *out)
{
	if (!(p->_flags & AMQP_BASIC_HEADERS_FLAG))
		return false;
	size_t klen = strlen(key);
	for (int i = 0; i < p->headers.num_entries; i++) {
		const amqp_table_entry_t *e = &p->headers.entries[i];
		if (e->key.len != klen || memcmp(e->key.bytes, key, klen) != 0)
			continue;
		if (e->value.kind != AMQP_FIELD_KIND_UTF8 &&
		    e->value.kind != AMQP_FIELD_KIND_BYTES)
			return false;
		*out = e->value.value.bytes;
		return true;
	}
	return false;
}

bool
client_bytes_equal(amqp_bytes_t a, const char *s)
{
	size_t n = strlen(s);
	return a.len == n && (n == 0 || memcmp(a.bytes, s, n) == 0);
}

/* ---- message assembly ----------------------------------------------------- */

enum client_rx_result
client_rx_frame(struct client_rx *rx, const amqp_frame_t *f)
{
	switch (f->frame_type) {
	case AMQP_FRAME_METHOD:
		if (f->payload.method.id != AMQP_BASIC_DELIVER_METHOD &&
		    f->payload.method.id != AMQP_BASIC_RETURN_METHOD)
			return CLIENT_RX_OTHER;
		if (rx->state != CLIENT_RX_IDLE) {
			warnx("a message from the broker was cut short");
			return CLIENT_RX_ERROR;
		}
		rx->state = CLIENT_RX_METHOD;
		rx->returned = f->payload.method.id == AMQP_BASIC_RETURN_METHOD;
		rx->props = NULL;
		buf_reset(&rx->body);
		return CLIENT_RX_MORE;
	case AMQP_FRAME_HEADER:
		if (rx->state != CLIENT_RX_METHOD) {
			warnx("unexpected content header from the broker");
			return CLIENT_RX_ERROR;
		}
		rx->props = f->payload.properties.decoded;
		rx->body_left = f->payload.properties.body_size;
		if (rx->keep_body && buf_reserve(&rx->body, 0) < 0) {
			warnx("out of memory");
			return CLIENT_RX_ERROR;
		}
		if (rx->body_left == 0) {
			rx->state = CLIENT_RX_IDLE;
			return CLIENT_RX_MESSAGE;
		}
		rx->state = CLIENT_RX_BODY;
		return CLIENT_RX_MORE;
	case AMQP_FRAME_BODY: {
		size_t n = f->payload.body_fragment.len;
		if (rx->state != CLIENT_RX_BODY || n > rx->body_left) {
			warnx("unexpected content body from the broker");
			return CLIENT_RX_ERROR;
		}
		if (rx->keep_body &&
		    buf_append(&rx->body, f->payload.body_fragment.bytes, n) < 0) {
			warnx("out of memory");
			return CLIENT_RX_ERROR;
		}
		rx->body_left -= n;
		if (rx->body_left > 0)
			return CLIENT_RX_MORE;
		rx->state = CLIENT_RX_IDLE;
		return CLIENT_RX_MESSAGE;
	}
	default:
		return CLIENT_RX_MORE;
	}
}

void
client_rx_release(struct client_rx *rx, amqp_connection_state_t conn)
{
	/* Mid-body the properties are still needed; a deliver method whose
	 * header has not come yet holds nothing we keep. */
	if (rx->state != CLIENT_RX_BODY) {
		rx->props = NULL;
		amqp_maybe_release_buffers(conn);
	}
}

void
client_rx_free(struct client_rx *rx)
{
	buf_free(&rx->body);
	memset(rx, 0, sizeof(*rx));
}
