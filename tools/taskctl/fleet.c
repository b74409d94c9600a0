/* fleet: one control request and its replies (fleet.h). */

#include <err.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

#include "cli.h"
#include "fleet.h"

int
fleet_option(struct fleet_request *q, int opt)
{
	uint64_t n;
	switch (opt) {
	case FLEET_OPT_TIMEOUT:
		if (cli_parse_number(optarg, &q->timeout) < 0 || q->timeout <= 0 ||
		    q->timeout > 3600) {
			warnx("--timeout wants seconds, more than 0 and at most 3600");
			return -1;
		}
		return 1;
	case FLEET_OPT_EXPECT:
		if (cli_parse_count(optarg, 1000000, &n) < 0) {
			warnx("--expect wants a count of nodes");
			return -1;
		}
		q->expect = (unsigned)n;
		return 1;
	case FLEET_OPT_EXCHANGE:
		q->exchange = optarg;
		return 1;
	default:
		return 0;
	}
}

static int
publish(amqp_connection_state_t conn, const struct fleet_request *q, const char *id)
{
	amqp_basic_properties_t p;
	char expiration[32];

	memset(&p, 0, sizeof(p));
	p._flags = AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_CORRELATION_ID_FLAG |
	    AMQP_BASIC_REPLY_TO_FLAG | AMQP_BASIC_TIMESTAMP_FLAG |
	    AMQP_BASIC_CONTENT_TYPE_FLAG;
	p.type = amqp_cstring_bytes(q->type);
	p.correlation_id = amqp_cstring_bytes(id);
	p.reply_to = amqp_cstring_bytes(CLIENT_DIRECT_REPLY_TO);
	p.timestamp = (uint64_t)time(NULL);
	p.content_type = amqp_cstring_bytes("application/json");
	if (strcmp(q->type, "status") == 0) {
		/* Nobody waits for a status past the deadline: a node that
		 * comes late to its queue must not answer a dead request. */
		p._flags |= AMQP_BASIC_EXPIRATION_FLAG;
		snprintf(expiration, sizeof(expiration), "%.0f", q->timeout * 1000);
		p.expiration = amqp_cstring_bytes(expiration);
	}
	int rc = amqp_basic_publish(conn, CLIENT_CHANNEL, amqp_cstring_bytes(q->exchange),
	    amqp_empty_bytes, 1, 0, &p, amqp_cstring_bytes(q->body));
	if (rc != AMQP_STATUS_OK) {
		warnx("publish: %s", amqp_error_string2(rc));
		return -1;
	}
	return 0;
}

static void
take_reply(struct fleet_answer *a, const struct client_rx *rx, const char *id)
{
	const amqp_basic_properties_t *p = rx->props;
	if (!(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) ||
	    !client_bytes_equal(p->correlation_id, id))
		return;   /* an answer to an earlier request on this address */
	json_t *v = json_loadb(rx->body.data ? rx->body.data : "", rx->body.len, 0, NULL);
	if (!json_is_object(v)) {
		json_decref(v);
		a->bad++;
		return;
	}
	json_array_append_new(a->replies, v);
}

int
fleet_ask(struct taskctl *t, const struct fleet_request *q, struct fleet_answer *a)
{
	char id[37];
	struct client_rx rx = { .keep_body = true };
	bool confirmed = false, returned = false;
	int rc = -1;

	memset(a, 0, sizeof(*a));
	a->replies = json_array();
	if (a->replies == NULL) {
		warnx("out of memory");
		return -1;
	}
	if (cli_uuid(id) < 0) {
		warn("getrandom");
		return -1;
	}
	amqp_connection_state_t conn = client_connect(&t->conn, 0, "taskctl control");
	if (conn == NULL)
		return -1;
	amqp_confirm_select(conn, CLIENT_CHANNEL);
	if (client_check_rpc(conn, "confirm.select") < 0)
		goto out;
	/* Direct reply-to: the consumer must exist before the publish. */
	amqp_basic_consume(conn, CLIENT_CHANNEL, amqp_cstring_bytes(CLIENT_DIRECT_REPLY_TO),
	    amqp_empty_bytes, 0, 1, 0, amqp_empty_table);
	if (client_check_rpc(conn, "consume " CLIENT_DIRECT_REPLY_TO) < 0)
		goto out;
	/* The deadline is absolute, from before the request goes out. */
	uint64_t deadline = cli_now_ns() + (uint64_t)(q->timeout * 1e9);
	if (publish(conn, q, id) < 0)
		goto out;
	for (;;) {
		if (q->expect > 0 && json_array_size(a->replies) >= q->expect && confirmed)
			break;
		amqp_frame_t f;
		int got = client_read_frame(conn, &f, deadline);
		if (got < 0)
			goto out;
		if (got == 0)
			break;
		switch (client_rx_frame(&rx, &f)) {
		case CLIENT_RX_ERROR:
			goto out;
		case CLIENT_RX_MORE:
			break;
		case CLIENT_RX_MESSAGE:
			if (rx.returned)
				returned = true;
			else
				take_reply(a, &rx, id);
			break;
		case CLIENT_RX_OTHER:
			if (f.payload.method.id == AMQP_BASIC_ACK_METHOD) {
				confirmed = true;
			} else if (f.payload.method.id == AMQP_BASIC_NACK_METHOD) {
				warnx("the broker refused the request (basic.nack)");
				goto out;
			} else if (f.payload.method.id == AMQP_CHANNEL_CLOSE_METHOD) {
				const amqp_channel_close_t *m = f.payload.method.decoded;
				if (m->reply_code == AMQP_NOT_FOUND)
					warnx("no exchange '%s' on the broker: no taskd node "
					    "with fleet control has run here", q->exchange);
				else
					client_fatal_method(&f);
				goto out;
			} else {
				client_fatal_method(&f);
				goto out;
			}
			break;
		}
		client_rx_release(&rx, conn);
	}
	a->routed = confirmed && !returned;
	rc = 0;
out:
	client_rx_free(&rx);
	client_close(conn);
	if (rc < 0)
		fleet_answer_free(a);
	return rc;
}

void
fleet_answer_free(struct fleet_answer *a)
{
	json_decref(a->replies);
	memset(a, 0, sizeof(*a));
}
