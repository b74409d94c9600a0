#include "connector.h"
#include "rpcerr.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/socket.h>
#include <unistd.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>

#include "buf.h"

/* Channels used only while setting up, to probe and declare queues: a
 * failed declare closes its channel, and these are thrown away. */
#define CH_PROBE 3

/* Shared by the loop and the attempt's thread, and freed by whichever
 * lets go last (refs), so that the loop can abandon an attempt without
 * waiting for the thread: a step may block in getaddrinfo, connect or the
 * TLS handshake for its whole timeout. */
struct connector {
	/* The loop's side. */
	struct ev_loop *loop;
	ev_async async;
	connector_done_fn *done;
	void *ctx;
	/* Copied before the thread starts; only read after. */
	struct connector_params params;
	/* The thread's until it hands over (under lock, with the async). */
	struct connector_result res;

	/* Under lock. */
	pthread_mutex_t lock;
	int refs;                /* 2 while both sides hold it */
	/* A duplicate of the attempt's socket, owned here (closed by the
	 * thread, under lock, when the attempt ends), or -1: shutdown(2) on it
	 * makes a step that waits on the socket fail at once.  A duplicate
	 * and not the library's own fd, which the library may close at any
	 * moment (an RPC timeout closes it), after which its number can be
	 * another fd of the daemon's. */
	int fd;
	bool abandoned;          /* the loop let go: no hand-over */

	/* The thread's alone (OpenSSL calls back on the thread): what the
	 * TLS layer said, to explain a failure. */
	SSL_CTX *ssl_ctx;        /* while the attempt's TLS socket lives */
	char alert[80];          /* the last alert the node sent, or "" */
	int alert_code;          /* its TLS AlertDescription */
	long verify_error;       /* the first X509_V_ERR_* of the node's chain */
	int verify_depth;
};

static void connector_unref(struct connector *c);

/* Attempt threads still alive, so that the daemon can give abandoned
 * ones a moment to end before it exits (connector_settle). */
static pthread_mutex_t live_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t live_gone = PTHREAD_COND_INITIALIZER;
static int live_threads;

/* Where the TLS handshake finds its attempt: ex_data of the SSL_CTX that
 * rabbitmq-c makes for each socket. */
static pthread_once_t ssl_index_once = PTHREAD_ONCE_INIT;
static int ssl_index = -1;

static void
ssl_index_init(void)
{
	ssl_index = SSL_CTX_get_ex_new_index(0, NULL, NULL, NULL, NULL);
}

static char *
xstrdup(const char *s)
{
	return s ? strdup(s) : NULL;
}

const struct uri *
connector_node(const struct connector_params *p)
{
	return &p->nodes[p->node < p->nnodes ? p->node : 0];
}

void
connector_params_clear(struct connector_params *p)
{
	for (size_t i = 0; i < p->nnodes; i++)
		uri_free(&p->nodes[i]);
	free(p->nodes);
	free(p->cacert);
	free(p->cert);
	free(p->key);
	free(p->queue);
	free(p->reply_queue);
	free(p->connection_name);
	memset(p, 0, sizeof(*p));
}

int
connector_params_copy(struct connector_params *dst, const struct connector_params *src)
{
	memset(dst, 0, sizeof(*dst));
	*dst = *src;
	dst->nodes = NULL;
	dst->nnodes = 0;
	dst->cacert = NULL;
	dst->cert = NULL;
	dst->key = NULL;
	dst->queue = NULL;
	dst->reply_queue = NULL;
	dst->connection_name = NULL;
	bool nodes_ok = (dst->nodes = calloc(src->nnodes ? src->nnodes : 1,
	    sizeof(*dst->nodes))) != NULL;
	for (size_t i = 0; nodes_ok && i < src->nnodes; i++) {
		if (uri_copy(&dst->nodes[i], &src->nodes[i]) < 0)
			nodes_ok = false;
		else
			dst->nnodes = i + 1;
	}
	dst->cacert = xstrdup(src->cacert);
	dst->cert = xstrdup(src->cert);
	dst->key = xstrdup(src->key);
	dst->queue = xstrdup(src->queue);
	dst->reply_queue = xstrdup(src->reply_queue);
	dst->connection_name = xstrdup(src->connection_name);
	if (!nodes_ok || (src->cert && !dst->cert) || (src->key && !dst->key) ||
	    (src->cacert && !dst->cacert) || (src->queue && !dst->queue) ||
	    (src->reply_queue && !dst->reply_queue) ||
	    (src->connection_name && !dst->connection_name)) {
		connector_params_clear(dst);
		return -1;
	}
	return 0;
}

void
connector_result_clear(struct connector_result *res)
{
	if (res->conn != NULL)
		amqp_destroy_connection(res->conn);
	free(res->error);
	free(res->warning);
	free(res->consumer_tag);
	memset(res, 0, sizeof(*res));
}

static bool
channel_closed(amqp_rpc_reply_t r, unsigned *code, char **text)
{
	if (r.reply_type != AMQP_RESPONSE_SERVER_EXCEPTION ||
	    r.reply.id != AMQP_CHANNEL_CLOSE_METHOD)
		return false;
	amqp_channel_close_t *m = r.reply.decoded;
	*code = m->reply_code;
	if (text != NULL) {
		*text = malloc(m->reply_text.len + 1);
		if (*text != NULL) {
			memcpy(*text, m->reply_text.bytes, m->reply_text.len);
			(*text)[m->reply_text.len] = '\0';
		}
	}
	return true;
}

/* After the broker closed a channel: acknowledge, so the number is free. */
static int
channel_close_ok(amqp_connection_state_t conn, amqp_channel_t ch)
{
	amqp_channel_close_ok_t ok = { 0 };
	return amqp_send_method(conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
}

static bool
aborted(struct connector *c)
{
	pthread_mutex_lock(&c->lock);
	bool a = c->abandoned;
	pthread_mutex_unlock(&c->lock);
	return a;
}

/* Design §5: a queue is used as it exists and declared only when missing.
 * A passive declare tells whether it exists; durability is not in its
 * reply, so a second probe re-declares it durable on a throw-away channel
 * and reads a 406 "inequivalent arg 'durable'" as "exists, not durable". */
static int
declare_or_use(struct connector *c, amqp_connection_state_t conn,
    const char *name, bool durable, bool quorum, bool *created,
    bool *is_durable)
{
	amqp_bytes_t q = amqp_cstring_bytes(name);
	amqp_rpc_reply_t r;
	unsigned code = 0;

	*created = false;
	*is_durable = durable;
	if (amqp_channel_open(conn, CH_PROBE) == NULL) {
		c->res.error = rpcerr_text(amqp_get_rpc_reply(conn), "channel.open");
		return -1;
	}
	amqp_queue_declare(conn, CH_PROBE, q, 1, 0, 0, 0, amqp_empty_table);
	r = amqp_get_rpc_reply(conn);
	if (r.reply_type == AMQP_RESPONSE_NORMAL) {
		amqp_queue_declare(conn, CH_PROBE, q, 0, 1, 0, 0, amqp_empty_table);
		r = amqp_get_rpc_reply(conn);
		char *text = NULL;
		if (r.reply_type == AMQP_RESPONSE_NORMAL) {
			*is_durable = true;
		} else if (channel_closed(r, &code, &text)) {
			if (code == AMQP_PRECONDITION_FAILED && text != NULL &&
			    strstr(text, "'durable'") != NULL)
				*is_durable = false;
			/* Any other mismatch (arguments, type) says nothing about
			 * durability: the queue is used as it is. */
			else
				*is_durable = true;
			free(text);
			if (channel_close_ok(conn, CH_PROBE) != AMQP_STATUS_OK) {
				c->res.error = strdup("channel.close-ok failed");
				return -1;
			}
			return 0;
		} else {
			c->res.error = rpcerr_text(r, "queue.declare");
			return -1;
		}
	} else if (channel_closed(r, &code, NULL) && code == AMQP_NOT_FOUND) {
		if (channel_close_ok(conn, CH_PROBE) != AMQP_STATUS_OK ||
		    amqp_channel_open(conn, CH_PROBE) == NULL) {
			c->res.error = rpcerr_text(amqp_get_rpc_reply(conn),
			    "channel.open");
			return -1;
		}
		amqp_table_entry_t arg;
		amqp_table_t args = amqp_empty_table;
		if (quorum) {
			arg.key = amqp_cstring_bytes("x-queue-type");
			arg.value.kind = AMQP_FIELD_KIND_UTF8;
			arg.value.value.bytes = amqp_cstring_bytes("quorum");
			args.num_entries = 1;
			args.entries = &arg;
		}
		amqp_queue_declare(conn, CH_PROBE, q, 0, durable, 0, 0, args);
		r = amqp_get_rpc_reply(conn);
		if (r.reply_type != AMQP_RESPONSE_NORMAL) {
			char what[300];
			snprintf(what, sizeof(what), "declaring queue '%s'", name);
			c->res.error = rpcerr_text(r, what);
			return -1;
		}
		*created = true;
	} else {
		char what[300];
		snprintf(what, sizeof(what), "checking queue '%s'", name);
		c->res.error = rpcerr_text(r, what);
		return -1;
	}
	amqp_channel_close(conn, CH_PROBE, AMQP_REPLY_SUCCESS);
	r = amqp_get_rpc_reply(conn);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		c->res.error = rpcerr_text(r, "channel.close");
		return -1;
	}
	return 0;
}

/* Keeps a duplicate of the socket (or cuts it, when the loop has let go
 * already) as soon as the fd exists: amqp_socket_open_noblock runs the
 * TLS handshake before it returns, and a peer that never answers it
 * would otherwise hold the attempt for the whole connect timeout. */
static void
handshake_started(const SSL *ssl, int where, int ret)
{
	if (ssl_index < 0)
		return;
	struct connector *c = SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ssl_index);
	if (c == NULL)
		return;
	/* The node's reason for refusing us (our certificate) comes as an
	 * alert; under TLS 1.3 only after our side of the handshake is done,
	 * at the first read of the login. */
	if ((where & SSL_CB_ALERT) && (where & SSL_CB_READ)) {
		c->alert_code = ret & 0xff;
		/* OpenSSL 3.0 has no name for TLS 1.3's certificate_required. */
		snprintf(c->alert, sizeof(c->alert), "%s", c->alert_code == 116 ?
		    "certificate required" : SSL_alert_desc_string_long(ret));
		return;
	}
	int fd = SSL_get_fd(ssl);
	if (!(where & SSL_CB_HANDSHAKE_START) || fd < 0)
		return;
	pthread_mutex_lock(&c->lock);
	if (c->abandoned)
		shutdown(fd, SHUT_RDWR);
	else if (c->fd < 0)
		c->fd = fcntl(fd, F_DUPFD_CLOEXEC, 0);
	pthread_mutex_unlock(&c->lock);
}

/* Keeps the first complaint about the node's chain, and fails the
 * handshake on it (verification is never optional). */
static int
verify_cb(int ok, X509_STORE_CTX *store)
{
	if (ok || ssl_index < 0)
		return ok;
	SSL *ssl = X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx());
	struct connector *c = ssl != NULL ?
	    SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), ssl_index) : NULL;
	if (c != NULL && c->verify_error == X509_V_OK) {
		c->verify_error = X509_STORE_CTX_get_error(store);
		c->verify_depth = X509_STORE_CTX_get_error_depth(store);
	}
	return 0;
}

/* Why the node refused us, from its alert (RFC 8446 6.2), with what to
 * do about it. */
static const char *
alert_hint(int code, bool have_cert)
{
	switch (code) {
	case 116:   /* certificate_required */
		return "the node demands a client certificate (set broker.cert "
		    "and broker.key)";
	case 40:    /* handshake_failure: TLS 1.2's way to say the same */
		return have_cert ? "the node refused the handshake (broker.cert "
		    "not accepted?)" : "the node demands a client certificate "
		    "(set broker.cert and broker.key)";
	case 48:    /* unknown_ca */
		return "the node does not trust the CA that signed broker.cert";
	case 45:    /* certificate_expired */
		return "the node says broker.cert has expired";
	case 44:    /* certificate_revoked */
		return "the node says broker.cert is revoked";
	case 42: case 43: case 46:   /* bad, unsupported, unknown certificate */
		return "the node refused broker.cert";
	default:
		return "the node ended the TLS session";
	}
}

/* The reason of a failed TLS step as one line, into res.error. */
static void
tls_failure(struct connector *c, const char *step, int rc)
{
	const struct uri *u = connector_node(&c->params);
	struct buf b = { 0 };
	unsigned long e = ERR_peek_last_error();
	char detail[200] = "";

	if (e != 0)
		ERR_error_string_n(e, detail, sizeof(detail));
	if (c->verify_error != X509_V_OK) {
		long v = c->verify_error;
		const char *what = X509_verify_cert_error_string(v);
		if (v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
			(void)buf_printf(&b, "TLS: the node's certificate is not for "
			    "the name '%s' (connect by a name the certificate "
			    "lists)", u->host);
		else if (v == X509_V_ERR_CERT_HAS_EXPIRED && c->verify_depth == 0)
			(void)buf_printf(&b, "TLS: the node's certificate has "
			    "expired");
		else if (v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT_LOCALLY ||
		    v == X509_V_ERR_SELF_SIGNED_CERT_IN_CHAIN ||
		    v == X509_V_ERR_DEPTH_ZERO_SELF_SIGNED_CERT ||
		    v == X509_V_ERR_UNABLE_TO_GET_ISSUER_CERT)
			(void)buf_printf(&b, "TLS: the node's certificate is not "
			    "signed by a CA we trust (%s; check broker.cacert)", what);
		else
			(void)buf_printf(&b, "TLS: the node's certificate is not "
			    "trusted: %s (depth %d)", what, c->verify_depth);
	} else if (c->alert[0] != '\0') {
		(void)buf_printf(&b, "TLS: %s (alert '%s' during the %s)",
		    alert_hint(c->alert_code, c->params.cert != NULL), c->alert, step);
	} else {
		(void)buf_printf(&b, "%s failed: %s%s%s", step, amqp_error_string2(rc),
		    detail[0] ? ": " : "", detail);
	}
	c->res.error = buf_steal(&b, NULL);
	ERR_clear_error();
}

static int
connector_run(struct connector *c, amqp_connection_state_t conn)
{
	const struct connector_params *p = &c->params;
	struct timeval tv;
	amqp_socket_t *sock;
	SSL_CTX *ctx = NULL;
	amqp_rpc_reply_t r;
	int rc;

	tv.tv_sec = (time_t)p->timeout;
	tv.tv_usec = (suseconds_t)((p->timeout - (double)tv.tv_sec) * 1e6);

	const struct uri *u = connector_node(p);
	if (u->tls) {
		sock = amqp_ssl_socket_new(conn);
		if (sock == NULL) {
			c->res.error = strdup("cannot create a TLS socket");
			return -1;
		}
		ctx = amqp_ssl_socket_get_context(sock);
		ERR_clear_error();
		/* 0.11 loads no default CA paths and would trust nothing. */
		if (p->cacert != NULL)
			rc = amqp_ssl_socket_set_cacert(sock, p->cacert);
		else
			rc = SSL_CTX_set_default_verify_paths(ctx) == 1 ?
			    AMQP_STATUS_OK : -1;
		if (rc != AMQP_STATUS_OK) {
			struct buf b = { 0 };
			(void)buf_printf(&b, "cannot load the CA certificates from %s",
			    p->cacert ? p->cacert : "the system store");
			c->res.error = buf_steal(&b, NULL);
			return -1;
		}
		if (p->cert != NULL && p->key != NULL &&
		    amqp_ssl_socket_set_key(sock, p->cert, p->key) != AMQP_STATUS_OK) {
			char detail[200] = "unreadable";
			unsigned long e = ERR_peek_last_error();
			if (e != 0)
				ERR_error_string_n(e, detail, sizeof(detail));
			struct buf b = { 0 };
			(void)buf_printf(&b, "cannot use the client certificate %s with "
			    "the key %s: %s", p->cert, p->key, detail);
			c->res.error = buf_steal(&b, NULL);
			return -1;
		}
		/* Verification is always on: rabbitmq-c checks the chain and the
		 * name after the handshake; asking OpenSSL as well, within it,
		 * fails the handshake at once and tells which check failed. */
		X509_VERIFY_PARAM *vp = SSL_CTX_get0_param(ctx);
		X509_VERIFY_PARAM_set_hostflags(vp, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
		if (X509_VERIFY_PARAM_set1_ip_asc(vp, u->host) != 1)
			(void)X509_VERIFY_PARAM_set1_host(vp, u->host, 0);
		SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, verify_cb);
		ERR_clear_error();
		pthread_once(&ssl_index_once, ssl_index_init);
		if (ssl_index >= 0 && SSL_CTX_set_ex_data(ctx, ssl_index, c) == 1) {
			SSL_CTX_set_info_callback(ctx, handshake_started);
			c->ssl_ctx = ctx;
		}
	} else {
		sock = amqp_tcp_socket_new(conn);
		if (sock == NULL) {
			c->res.error = strdup("cannot create a socket");
			return -1;
		}
	}
	if (amqp_set_handshake_timeout(conn, &tv) != AMQP_STATUS_OK ||
	    amqp_set_rpc_timeout(conn, &tv) != AMQP_STATUS_OK) {
		c->res.error = strdup("cannot set the broker timeouts");
		return -1;
	}

	rc = amqp_socket_open_noblock(sock, u->host, u->port, &tv);
	if (rc != AMQP_STATUS_OK) {
		if (u->tls && rc != AMQP_STATUS_SOCKET_ERROR &&
		    rc != AMQP_STATUS_TIMEOUT && rc != AMQP_STATUS_HOSTNAME_RESOLUTION_FAILED) {
			tls_failure(c, "TLS handshake", rc);
			return -1;
		}
		struct buf b = { 0 };
		(void)buf_printf(&b, "cannot connect: %s", amqp_error_string2(rc));
		c->res.error = buf_steal(&b, NULL);
		return -1;
	}
	/* From here on the loop can cut any step short.  Without a duplicate
	 * (EMFILE) it cannot, and the step's own timeout still bounds it. */
	pthread_mutex_lock(&c->lock);
	bool gone = c->abandoned;
	if (!gone && c->fd < 0)
		c->fd = fcntl(amqp_get_sockfd(conn), F_DUPFD_CLOEXEC, 0);
	pthread_mutex_unlock(&c->lock);
	if (gone)
		return -1;

	/* Advertise what the loop handles: without these the broker sends no
	 * basic.cancel when the queue goes and no connection.blocked. */
	amqp_table_entry_t caps[4], props[3];
	const char *capnames[] = { "consumer_cancel_notify", "connection.blocked",
	    "publisher_confirms", "basic.nack" };
	for (int i = 0; i < 4; i++) {
		caps[i].key = amqp_cstring_bytes(capnames[i]);
		caps[i].value.kind = AMQP_FIELD_KIND_BOOLEAN;
		caps[i].value.value.boolean = 1;
	}
	props[0].key = amqp_cstring_bytes("capabilities");
	props[0].value.kind = AMQP_FIELD_KIND_TABLE;
	props[0].value.value.table.num_entries = 4;
	props[0].value.value.table.entries = caps;
	props[1].key = amqp_cstring_bytes("connection_name");
	props[1].value.kind = AMQP_FIELD_KIND_UTF8;
	props[1].value.value.bytes = amqp_cstring_bytes(p->connection_name);
	props[2].key = amqp_cstring_bytes("product");
	props[2].value.kind = AMQP_FIELD_KIND_UTF8;
	props[2].value.value.bytes = amqp_cstring_bytes("taskd " PACKAGE_VERSION);
	amqp_table_t client_props = { 3, props };

	r = amqp_login_with_properties(conn, u->vhost, 0, AMQP_DEFAULT_FRAME_SIZE,
	    p->heartbeat, &client_props, AMQP_SASL_METHOD_PLAIN, u->user,
	    u->password);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		if (u->tls && r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    c->alert[0] != '\0') {
			tls_failure(c, "login", r.library_error);
			return -1;
		}
		char what[300];
		snprintf(what, sizeof(what), "login to vhost '%s' as '%s'",
		    u->vhost, u->user);
		c->res.error = rpcerr_text(r, what);
		return -1;
	}
	c->res.heartbeat = amqp_get_heartbeat(conn);

	bool created, durable;
	if (aborted(c) || declare_or_use(c, conn, p->queue, p->durable, p->quorum,
	    &created, &durable) < 0)
		return -1;
	c->res.declared = created;
	if (!durable) {
		struct buf b = { 0 };
		(void)buf_printf(&b, "queue '%s' exists but is not durable: its tasks "
		    "are lost when the broker restarts", p->queue);
		c->res.warning = buf_steal(&b, NULL);
	}
	if (p->reply_queue != NULL && p->reply_queue[0] != '\0') {
		if (aborted(c) || declare_or_use(c, conn, p->reply_queue, true, p->quorum,
		    &created, &durable) < 0)
			return -1;
		c->res.reply_durable = durable;
	}

	if (aborted(c) || amqp_channel_open(conn, CONNECTOR_CH_CONSUME) == NULL) {
		c->res.error = rpcerr_text(amqp_get_rpc_reply(conn), "channel.open");
		return -1;
	}
	if (amqp_basic_qos(conn, CONNECTOR_CH_CONSUME, 0, (uint16_t)p->prefetch, 0) == NULL) {
		c->res.error = rpcerr_text(amqp_get_rpc_reply(conn), "basic.qos");
		return -1;
	}
	if (amqp_channel_open(conn, CONNECTOR_CH_PUBLISH) == NULL) {
		c->res.error = rpcerr_text(amqp_get_rpc_reply(conn), "channel.open");
		return -1;
	}
	if (amqp_confirm_select(conn, CONNECTOR_CH_PUBLISH) == NULL) {
		c->res.error = rpcerr_text(amqp_get_rpc_reply(conn), "confirm.select");
		return -1;
	}
	/* Consume last: deliveries may follow at once, and the loop (not this
	 * thread) must be the one to read them.  The consume-ok reply itself is
	 * read here; any delivery read along with it stays queued inside the
	 * connection, and the loop drains it first. */
	amqp_basic_consume_ok_t *ok = amqp_basic_consume(conn, CONNECTOR_CH_CONSUME,
	    amqp_cstring_bytes(p->queue), amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
	if (ok == NULL) {
		c->res.error = rpcerr_text(amqp_get_rpc_reply(conn), "basic.consume");
		return -1;
	}
	c->res.consumer_tag = malloc(ok->consumer_tag.len + 1);
	if (c->res.consumer_tag == NULL) {
		c->res.error = strdup("out of memory");
		return -1;
	}
	memcpy(c->res.consumer_tag, ok->consumer_tag.bytes, ok->consumer_tag.len);
	c->res.consumer_tag[ok->consumer_tag.len] = '\0';
	return 0;
}

/* The attempt's TLS callbacks end with its thread: TLS 1.3 runs the info
 * callback again for messages after the handshake, when the connection
 * is the loop's and c may be long gone. */
static void
connector_tls_done(struct connector *c)
{
	if (c->ssl_ctx == NULL)
		return;
	SSL_CTX_set_info_callback(c->ssl_ctx, NULL);
	SSL_CTX_set_ex_data(c->ssl_ctx, ssl_index, NULL);
	c->ssl_ctx = NULL;
}

static void *
connector_main(void *arg)
{
	struct connector *c = arg;
	amqp_connection_state_t conn = amqp_new_connection();

	if (conn == NULL) {
		c->res.error = strdup("out of memory");
	} else if (connector_run(c, conn) == 0) {
		connector_tls_done(c);
		c->res.conn = conn;
	} else {
		connector_tls_done(c);
		if (c->res.error == NULL)
			c->res.error = strdup("aborted");
		amqp_destroy_connection(conn);
	}
	/* Hand over, unless the loop has let go; then the result dies with
	 * the last reference (a connection that came up is closed here). */
	pthread_mutex_lock(&c->lock);
	if (c->fd >= 0) {
		close(c->fd);
		c->fd = -1;
	}
	if (!c->abandoned)
		ev_async_send(c->loop, &c->async);
	pthread_mutex_unlock(&c->lock);
	connector_unref(c);

	pthread_mutex_lock(&live_lock);
	if (--live_threads == 0)
		pthread_cond_broadcast(&live_gone);
	pthread_mutex_unlock(&live_lock);
	return NULL;
}

static void
connector_async_cb(struct ev_loop *loop, ev_async *w, int revents)
{
	(void)revents;
	struct connector *c = (struct connector *)((char *)w - offsetof(struct connector, async));

	ev_async_stop(loop, &c->async);
	/* The lock orders the thread's writes to res before these reads. */
	pthread_mutex_lock(&c->lock);
	struct connector_result res = c->res;
	memset(&c->res, 0, sizeof(c->res));
	pthread_mutex_unlock(&c->lock);
	/* Last: done may free c. */
	c->done(c->ctx, &res);
}

static void
connector_unref(struct connector *c)
{
	pthread_mutex_lock(&c->lock);
	int left = --c->refs;
	pthread_mutex_unlock(&c->lock);
	if (left > 0)
		return;
	connector_result_clear(&c->res);
	connector_params_clear(&c->params);
	pthread_mutex_destroy(&c->lock);
	free(c);
}

struct connector *
connector_start(struct ev_loop *loop, const struct connector_params *params,
    connector_done_fn *done, void *ctx)
{
	struct connector *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	if (connector_params_copy(&c->params, params) < 0) {
		free(c);
		return NULL;
	}
	c->loop = loop;
	c->done = done;
	c->ctx = ctx;
	c->fd = -1;
	c->refs = 2;
	pthread_mutex_init(&c->lock, NULL);
	ev_async_init(&c->async, connector_async_cb);
	ev_async_start(loop, &c->async);

	/* Detached: nobody waits for the thread; the last reference frees. */
	pthread_attr_t attr;
	int rc = pthread_attr_init(&attr);
	if (rc == 0) {
		rc = pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
		/* The thread must never take a signal: the loop reads them from
		 * a signalfd, which only works while every thread blocks them. */
		sigset_t all, old;
		sigfillset(&all);
		pthread_sigmask(SIG_SETMASK, &all, &old);
		pthread_t thread;
		pthread_mutex_lock(&live_lock);
		if (rc == 0)
			rc = pthread_create(&thread, &attr, connector_main, c);
		if (rc == 0)
			live_threads++;
		pthread_mutex_unlock(&live_lock);
		pthread_sigmask(SIG_SETMASK, &old, NULL);
		pthread_attr_destroy(&attr);
	}
	if (rc != 0) {
		ev_async_stop(loop, &c->async);
		connector_params_clear(&c->params);
		pthread_mutex_destroy(&c->lock);
		free(c);
		errno = rc;
		return NULL;
	}
	return c;
}

void
connector_free(struct connector *c)
{
	if (c == NULL)
		return;
	/* No hand-over from now on: a result already sent is dropped with
	 * the watcher, and the thread skips sending one. */
	ev_async_stop(c->loop, &c->async);
	pthread_mutex_lock(&c->lock);
	c->abandoned = true;
	if (c->fd >= 0)
		shutdown(c->fd, SHUT_RDWR);
	pthread_mutex_unlock(&c->lock);
	connector_unref(c);
}

bool
connector_settle(double seconds)
{
	struct timespec until;
	clock_gettime(CLOCK_REALTIME, &until);
	until.tv_sec += (time_t)seconds;
	until.tv_nsec += (long)((seconds - (double)(time_t)seconds) * 1e9);
	if (until.tv_nsec >= 1000000000L) {
		until.tv_sec++;
		until.tv_nsec -= 1000000000L;
	}
	pthread_mutex_lock(&live_lock);
	while (live_threads > 0 &&
	    pthread_cond_timedwait(&live_gone, &live_lock, &until) == 0)
		;
	bool settled = live_threads == 0;
	pthread_mutex_unlock(&live_lock);
	return settled;
}
