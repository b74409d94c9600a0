/*
 * submit: publish one task and print its result.
 *
 * The result comes back through RabbitMQ's direct reply-to (no queue to
 * declare or clean up); the task is published mandatory on a confirm-mode
 * channel, so a missing queue or a broker that refused the task is an
 * error instead of a silent loss.
 */

#include <err.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "taskctl.h"

/* taskd answers "timeout" itself when a task overruns the timeout we sent;
 * that answer needs a moment to travel, so waiting exactly the timeout would
 * race it (taskctl.c's usage says the same number). */
#define SUBMIT_GRACE_S 5.0
/* --no-wait without --timeout: how long to wait for the broker's confirm. */
#define CONFIRM_WAIT_S 30.0

enum {
	OPT_TIMEOUT = TASKCTL_OPT_COMMAND,
	OPT_CONTENT_TYPE,
	OPT_NO_WAIT,
};

struct submit {
	amqp_connection_state_t conn;
	struct client_rx rx;
	char id[37];            /* message_id and correlation_id */
	bool wait;              /* a result is expected */
	bool confirmed;         /* the broker took the task */
	bool returned;          /* ... or could not route it */
	bool nacked;            /* ... or refused it */
	bool done;              /* our result is complete */
	struct buf status;      /* taskd-status, when the result carried one */
	bool has_status;
	struct buf body;
};

static int
read_payload(const char *arg, struct buf *out)
{
	if (arg == NULL)
		return buf_reserve(out, 0);
	if (strcmp(arg, "-") != 0)
		return buf_puts(out, arg);
	/* The payload may be any bytes of any length: grow as it comes. */
	char chunk[65536];
	size_t n;
	while ((n = fread(chunk, 1, sizeof(chunk), stdin)) > 0)
		if (buf_append(out, chunk, n) < 0) {
			warnx("out of memory reading stdin");
			return -1;
		}
	if (ferror(stdin)) {
		warn("reading stdin");
		return -1;
	}
	return 0;
}

/* A complete message: a basic.return of our task, or a result. */
static int
submit_message(struct submit *s)
{
	struct client_rx *rx = &s->rx;
	if (rx->returned) {
		s->returned = true;
		return 0;
	}
	/* Only the first result counts (a redelivered task may be answered
	 * twice: at-least-once); direct reply-to only brings our own
	 * results, but one for another id would be a bug worth not printing. */
	const amqp_basic_properties_t *p = rx->props;
	if (s->done || !(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) ||
	    !client_bytes_equal(p->correlation_id, s->id))
		return 0;
	amqp_bytes_t st;
	if (client_header_string(p, "taskd-status", &st)) {
		s->has_status = true;
		if (cli_printable(&s->status, st) < 0)
			goto nomem;
	}
	/* Take the body over instead of copying it: it may be large. */
	struct buf b = s->body;
	s->body = rx->body;
	rx->body = b;
	s->done = true;
	return 0;
nomem:
	warnx("out of memory");
	return -1;
}

static int
submit_frame(struct submit *s, const amqp_frame_t *f)
{
	switch (client_rx_frame(&s->rx, f)) {
	case CLIENT_RX_ERROR:
		return -1;
	case CLIENT_RX_MORE:
		return 0;
	case CLIENT_RX_MESSAGE:
		return submit_message(s);
	case CLIENT_RX_OTHER:
		break;
	}
	switch (f->payload.method.id) {
	case AMQP_BASIC_ACK_METHOD:
		s->confirmed = true;
		return 0;
	case AMQP_BASIC_NACK_METHOD:
		s->nacked = true;
		return 0;
	default:
		return client_fatal_method(f);
	}
}

static int
submit_publish(struct submit *s, const char *queue, const char *task,
    const struct buf *payload, double timeout, const char *content_type)
{
	amqp_basic_properties_t props;
	amqp_table_entry_t hdr;

	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
	    AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
	props.type = amqp_cstring_bytes(task);
	props.message_id = amqp_cstring_bytes(s->id);
	props.correlation_id = amqp_cstring_bytes(s->id);
	/* A task is work someone waits for: let it survive a broker restart. */
	props.delivery_mode = AMQP_DELIVERY_PERSISTENT;
	if (s->wait) {
		props._flags |= AMQP_BASIC_REPLY_TO_FLAG;
		props.reply_to = amqp_cstring_bytes(CLIENT_DIRECT_REPLY_TO);
	}
	if (content_type != NULL) {
		props._flags |= AMQP_BASIC_CONTENT_TYPE_FLAG;
		props.content_type = amqp_cstring_bytes(content_type);
	}
	if (timeout > 0) {
		hdr.key = amqp_cstring_bytes("timeout");
		hdr.value.kind = AMQP_FIELD_KIND_F64;
		hdr.value.value.f64 = timeout;
		props._flags |= AMQP_BASIC_HEADERS_FLAG;
		props.headers.num_entries = 1;
		props.headers.entries = &hdr;
	}
	amqp_bytes_t body = { payload->len, payload->data };
	int rc = amqp_basic_publish(s->conn, CLIENT_CHANNEL, amqp_empty_bytes,
	    amqp_cstring_bytes(queue), 1, 0, &props, body);
	if (rc != AMQP_STATUS_OK) {
		warnx("publish: %s", amqp_error_string2(rc));
		return -1;
	}
	return 0;
}

/* Writes the result body exactly as received. */
static int
submit_print(const struct submit *s)
{
	if (s->body.len > 0 &&
	    fwrite(s->body.data, 1, s->body.len, stdout) != s->body.len)
		goto fail;
	/* Keep an interactive prompt on its own line; pipes get the bytes. */
	if (s->body.len > 0 && s->body.data[s->body.len - 1] != '\n' &&
	    isatty(STDOUT_FILENO) && fputc('\n', stdout) == EOF)
		goto fail;
	if (fflush(stdout) == EOF)
		goto fail;
	return 0;
fail:
	warn("writing the result");
	return -1;
}

int
submit_main(struct taskctl *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		TASKCTL_LONGOPTS,
		{ "timeout", required_argument, NULL, OPT_TIMEOUT },
		{ "content-type", required_argument, NULL, OPT_CONTENT_TYPE },
		{ "no-wait", no_argument, NULL, OPT_NO_WAIT },
		{ NULL, 0, NULL, 0 },
	};
	double timeout = 0;
	const char *content_type = NULL;
	bool no_wait = false;
	int opt;

	optind = 0;   /* GNU getopt: start over on the command's arguments */
	while ((opt = getopt_long(argc, argv, TASKCTL_SHORTOPTS, longopts,
	    NULL)) != -1) {
		if (taskctl_common_option(t, opt))
			continue;
		switch (opt) {
		case OPT_TIMEOUT:
			if (cli_parse_number(optarg, &timeout) < 0 || timeout <= 0) {
				warnx("--timeout wants a positive number of seconds");
				return EXIT_CLIENT;
			}
			break;
		case OPT_CONTENT_TYPE:
			content_type = optarg;
			break;
		case OPT_NO_WAIT:
			no_wait = true;
			break;
		case 'h':
			taskctl_usage();
			return EXIT_OK;
		default:
			taskctl_usage_hint();
			return EXIT_CLIENT;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		taskctl_usage_hint();
		return EXIT_CLIENT;
	}
	if (taskctl_check(t) < 0)
		return EXIT_CLIENT;
	const char *task = argv[optind];
	const char *payload_arg = argc - optind == 2 ? argv[optind + 1] : NULL;

	struct submit s;
	memset(&s, 0, sizeof(s));
	s.rx.keep_body = true;
	struct buf payload = { 0 };
	int status = EXIT_CLIENT;

	s.wait = !no_wait;
	if (cli_signals(false) < 0) {
		warn("sigaction");
		goto out;
	}
	if (read_payload(payload_arg, &payload) < 0)
		goto out;
	if (cli_uuid(s.id) < 0) {
		warn("getrandom");
		goto out;
	}
	/* Heartbeats let an unbounded wait notice a dead broker. */
	s.conn = client_connect(&t->conn, s.wait ? 30 : 0, "taskctl submit");
	if (s.conn == NULL)
		goto out;
	/* Confirms turn "the queue is missing" and "the broker refused it"
	 * into errors; mandatory makes an unroutable task come back. */
	amqp_confirm_select(s.conn, CLIENT_CHANNEL);
	if (client_check_rpc(s.conn, "confirm.select") < 0)
		goto out;
	if (s.wait) {
		/* Direct reply-to demands the consumer exist before the
		 * publish that names it, on the same channel, without acks. */
		amqp_basic_consume(s.conn, CLIENT_CHANNEL,
		    amqp_cstring_bytes(CLIENT_DIRECT_REPLY_TO), amqp_empty_bytes,
		    0, 1, 0, amqp_empty_table);
		if (client_check_rpc(s.conn, "consume " CLIENT_DIRECT_REPLY_TO) < 0)
			goto out;
	}
	if (submit_publish(&s, t->queue, task, &payload, timeout,
	    content_type) < 0)
		goto out;

	/* 0 = wait for as long as the connection lives. */
	double limit = 0;
	if (timeout > 0)
		limit = timeout + (s.wait ? SUBMIT_GRACE_S : 0);
	else if (!s.wait)
		limit = CONFIRM_WAIT_S;
	uint64_t deadline = limit > 0 ?
	    cli_now_ns() + (uint64_t)(limit * 1e9) : 0;

	/* A persistent task may be answered before the broker has it on
	 * disk and confirms it, so the two may come in either order. */
	while (!s.returned && !s.nacked && !(s.confirmed && (!s.wait || s.done))) {
		amqp_frame_t f;
		int got = client_read_frame(s.conn, &f, deadline);
		if (got < 0)
			goto out;
		if (got == 0) {
			warnx("task %s: no %s within %.1f s", s.id,
			    s.confirmed ? "result" : "confirm from the broker",
			    limit);
			goto out;
		}
		if (submit_frame(&s, &f) < 0)
			goto out;
		client_rx_release(&s.rx, s.conn);
	}
	if (s.returned) {
		warnx("task not delivered: no queue '%s' on the broker", t->queue);
		goto out;
	}
	if (s.nacked) {
		warnx("task refused by the broker (basic.nack)");
		goto out;
	}
	if (!s.wait) {
		status = EXIT_OK;
		goto out;
	}
	if (submit_print(&s) < 0)
		goto out;
	if (s.has_status && strcmp(s.status.data, "ok") != 0) {
		warnx("task %s: %s", s.id, s.status.data);
		status = EXIT_TASK;
	} else {
		status = EXIT_OK;
	}
out:
	client_close(s.conn);
	client_rx_free(&s.rx);
	buf_free(&payload);
	buf_free(&s.status);
	buf_free(&s.body);
	return status;
}
