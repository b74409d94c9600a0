/*
 * Submit one task to taskd and print its result: RPC over RabbitMQ's direct
 * reply-to, with rabbitmq-c (Debian: librabbitmq-dev).
 *
 *     submit TASK [PAYLOAD]
 *     cc -o submit submit.c $(pkg-config --cflags --libs librabbitmq)
 *
 * Environment: AMQP_URL (default amqp://guest:guest@localhost:5672/%2f),
 * TASKD_QUEUE (default distributed_tasks), TASK_TIMEOUT in seconds (default
 * 30).  Prints the result body; exit status 0 when taskd-status is "ok", 2
 * for any other status, 1 when no result came.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#define REPLY_TO "amq.rabbitmq.reply-to"

static const char *
env_or(const char *name, const char *fallback)
{
	const char *v = getenv(name);
	return v != NULL && v[0] != '\0' ? v : fallback;
}

static int
die(const char *what)
{
	fprintf(stderr, "submit: %s\n", what);
	return 1;
}

static int
rpc_ok(amqp_connection_state_t conn)
{
	return amqp_get_rpc_reply(conn).reply_type == AMQP_RESPONSE_NORMAL;
}

/* The string header `key` of a result, or an empty string. */
static amqp_bytes_t
header(const amqp_basic_properties_t *p, const char *key)
{
	if (p->_flags & AMQP_BASIC_HEADERS_FLAG)
		for (int i = 0; i < p->headers.num_entries; i++) {
			const amqp_table_entry_t *e = &p->headers.entries[i];
			if (e->key.len == strlen(key) &&
			    memcmp(e->key.bytes, key, e->key.len) == 0 &&
			    (e->value.kind == AMQP_FIELD_KIND_UTF8 ||
			    e->value.kind == AMQP_FIELD_KIND_BYTES))
				return e->value.value.bytes;
		}
	return amqp_empty_bytes;
}

int
main(int argc, char **argv)
{
	if (argc < 2 || argc > 3) {
		fprintf(stderr, "usage: submit TASK [PAYLOAD]\n");
		return 1;
	}
	char url[1024];
	snprintf(url, sizeof(url), "%s",
	    env_or("AMQP_URL", "amqp://guest:guest@localhost:5672/%2f"));
	const char *queue = env_or("TASKD_QUEUE", "distributed_tasks");
	int timeout = atoi(env_or("TASK_TIMEOUT", "30"));

	struct amqp_connection_info ci;
	if (amqp_parse_url(url, &ci) != AMQP_STATUS_OK)
		return die("bad AMQP_URL");
	amqp_connection_state_t conn = amqp_new_connection();
	amqp_socket_t *sock = amqp_tcp_socket_new(conn);
	struct timeval connect_tmo = { 10, 0 };
	if (sock == NULL ||
	    amqp_socket_open_noblock(sock, ci.host, ci.port, &connect_tmo) != 0)
		return die("cannot connect to the broker");
	if (amqp_login(conn, ci.vhost, 0, 131072, 0, AMQP_SASL_METHOD_PLAIN,
	    ci.user, ci.password).reply_type != AMQP_RESPONSE_NORMAL)
		return die("login refused");
	amqp_channel_open(conn, 1);
	if (!rpc_ok(conn))
		return die("cannot open a channel");

	/* Direct reply-to: consume before publishing, on the same channel. */
	amqp_basic_consume(conn, 1, amqp_cstring_bytes(REPLY_TO), amqp_empty_bytes,
	    0, 1, 0, amqp_empty_table);
	if (!rpc_ok(conn))
		return die("cannot consume " REPLY_TO);

	unsigned char r[8];
	char corr[17];
	if (getrandom(r, sizeof(r), 0) != (ssize_t)sizeof(r))
		return die("getrandom failed");
	for (int i = 0; i < 8; i++)
		snprintf(corr + 2 * i, 3, "%02x", r[i]);

	amqp_table_entry_t tmo_header = { amqp_cstring_bytes("timeout"),
	    { .kind = AMQP_FIELD_KIND_I32, .value.i32 = timeout } };
	amqp_basic_properties_t props = {
		._flags = AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
		    AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
		    AMQP_BASIC_HEADERS_FLAG,
		.type = amqp_cstring_bytes(argv[1]),
		.message_id = amqp_cstring_bytes(corr),
		.correlation_id = amqp_cstring_bytes(corr),
		.reply_to = amqp_cstring_bytes(REPLY_TO),
		.headers = { 1, &tmo_header },
	};
	/* Mandatory: a missing task queue comes back as basic.return. */
	if (amqp_basic_publish(conn, 1, amqp_empty_bytes,
	    amqp_cstring_bytes(queue), 1, 0, &props,
	    amqp_cstring_bytes(argc == 3 ? argv[2] : "")) != AMQP_STATUS_OK)
		return die("publish failed");

	/* taskd answers "timeout" itself after `timeout` s; allow it time to. */
	time_t deadline = time(NULL) + timeout + 5;
	for (;;) {
		struct timeval left = { deadline - time(NULL), 0 };
		if (left.tv_sec <= 0)
			return die("no result in time: is taskd running?");
		amqp_envelope_t env;
		amqp_maybe_release_buffers(conn);
		amqp_rpc_reply_t rr = amqp_consume_message(conn, &env, &left, 0);
		if (rr.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    rr.library_error == AMQP_STATUS_TIMEOUT)
			continue;
		if (rr.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION &&
		    rr.library_error == AMQP_STATUS_UNEXPECTED_STATE) {
			/* Not a delivery: a basic.return means no such queue. */
			amqp_frame_t f;
			if (amqp_simple_wait_frame(conn, &f) == AMQP_STATUS_OK &&
			    f.frame_type == AMQP_FRAME_METHOD &&
			    f.payload.method.id == AMQP_BASIC_RETURN_METHOD) {
				fprintf(stderr, "submit: no queue named '%s'\n", queue);
				return 1;
			}
			continue;
		}
		if (rr.reply_type != AMQP_RESPONSE_NORMAL)
			return die("connection lost");

		amqp_basic_properties_t *p = &env.message.properties;
		if (!(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) ||
		    p->correlation_id.len != strlen(corr) ||
		    memcmp(p->correlation_id.bytes, corr, strlen(corr)) != 0) {
			amqp_destroy_envelope(&env);   /* not ours */
			continue;
		}
		amqp_bytes_t status = header(p, "taskd-status");
		int ok = status.len == 2 && memcmp(status.bytes, "ok", 2) == 0;
		fwrite(env.message.body.bytes, 1, env.message.body.len, stdout);
		putchar('\n');
		if (!ok)
			fprintf(stderr, "taskd-status: %.*s\n", (int)status.len,
			    (char *)status.bytes);
		amqp_destroy_envelope(&env);
		amqp_channel_close(conn, 1, AMQP_REPLY_SUCCESS);
		amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
		amqp_destroy_connection(conn);
		return ok ? 0 : 2;
	}
}
