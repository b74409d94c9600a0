/*
 * loadgen: the client side of a benchmark, measured on its own.
 *
 *   loadgen publish -u URI -q QUEUE -n N [-m 1|2] [-R REPLY_QUEUE] [-t TYPE] [-b BODY]
 *   loadgen collect -u URI -q REPLY_QUEUE -n N
 *
 * publish sends N tasks the way a client sends them (type, message_id,
 * correlation_id, reply_to, delivery mode -m: 2 persistent, the default, or 1
 * transient) with publisher confirms, at most WINDOW unconfirmed, and returns
 * once the broker confirmed all of them.
 *
 * collect consumes REPLY_QUEUE as results arrive (as a client does: the
 * results never pile up in the queue), with manual acks coalesced into one
 * multiple ack per batch, and exits after N results.  It prints "consuming"
 * once its consumer is registered, so a harness can start the worker only
 * then.
 *
 * Both print one JSON line at the end: counts, CLOCK_MONOTONIC seconds of the
 * first and last message (the same clock as Python's time.monotonic(), so a
 * harness can time from an event of its own), and the CPU time this process
 * spent between them, so a bottleneck in the client is visible next to the
 * worker's and the broker's CPU.
 *
 * Exit status 1 on any broker or usage error.  Plain blocking rabbitmq-c.
 */

#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#define CH 1
/* Unconfirmed publishes allowed: enough to keep the broker busy, few enough
 * that a slow broker is felt as back-pressure rather than memory. */
#define WINDOW 10000
/* Frames between two acks (collect) and two buffer releases. */
#define BATCH 2000

static double
now_s(void)
{
	struct timespec t;
	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec + (double)t.tv_nsec / 1e9;
}

static double
cpu_s(void)
{
	struct rusage ru;
	if (getrusage(RUSAGE_SELF, &ru) < 0)
		return 0.0;
	return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
	    (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static int
fail_rpc(const char *what, amqp_rpc_reply_t r)
{
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	if (r.reply_type == AMQP_RESPONSE_LIBRARY_EXCEPTION)
		fprintf(stderr, "loadgen: %s: %s\n", what,
		    amqp_error_string2(r.library_error));
	else
		fprintf(stderr, "loadgen: %s: refused by the broker (method 0x%08x)\n",
		    what, r.reply.id);
	return -1;
}

static amqp_connection_state_t
open_conn(const char *uri)
{
	struct amqp_connection_info ci;
	char *copy = strdup(uri);
	if (copy == NULL || amqp_parse_url(copy, &ci) != AMQP_STATUS_OK || ci.ssl) {
		fprintf(stderr, "loadgen: bad URI (plain amqp:// only): %s\n", uri);
		free(copy);
		return NULL;
	}
	amqp_connection_state_t c = amqp_new_connection();
	amqp_socket_t *s = c ? amqp_tcp_socket_new(c) : NULL;
	if (s == NULL) {
		fprintf(stderr, "loadgen: out of memory\n");
		free(copy);
		return NULL;
	}
	int rc = amqp_socket_open(s, ci.host, ci.port);
	if (rc != AMQP_STATUS_OK) {
		fprintf(stderr, "loadgen: connect %s:%d: %s\n", ci.host, ci.port,
		    amqp_error_string2(rc));
		free(copy);
		amqp_destroy_connection(c);
		return NULL;
	}
	const char *vhost = ci.vhost[0] != '\0' ? ci.vhost : "/";
	amqp_rpc_reply_t r = amqp_login(c, vhost, 0, 131072, 0,
	    AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
	free(copy);
	if (fail_rpc("login", r) < 0) {
		amqp_destroy_connection(c);
		return NULL;
	}
	amqp_channel_open(c, CH);
	if (fail_rpc("channel.open", amqp_get_rpc_reply(c)) < 0) {
		amqp_destroy_connection(c);
		return NULL;
	}
	return c;
}

static void
close_conn(amqp_connection_state_t c)
{
	amqp_channel_close(c, CH, AMQP_REPLY_SUCCESS);
	amqp_connection_close(c, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(c);
}

/* Reads one frame; handles confirms.  Returns 0, or -1 on error. */
static int
publish_read(amqp_connection_state_t c, struct timeval *tmo, uint64_t *confirmed,
    uint64_t *nacked, bool *got)
{
	amqp_frame_t f;
	*got = false;
	int rc = amqp_simple_wait_frame_noblock(c, &f, tmo);
	if (rc == AMQP_STATUS_TIMEOUT)
		return 0;
	if (rc != AMQP_STATUS_OK) {
		fprintf(stderr, "loadgen: read: %s\n", amqp_error_string2(rc));
		return -1;
	}
	*got = true;
	if (f.frame_type != AMQP_FRAME_METHOD)
		return 0;
	switch (f.payload.method.id) {
	case AMQP_BASIC_ACK_METHOD: {
		const amqp_basic_ack_t *a = f.payload.method.decoded;
		/* Confirms come in order; multiple covers up to the tag. */
		if (a->delivery_tag > *confirmed)
			*confirmed = a->delivery_tag;
		return 0;
	}
	case AMQP_BASIC_NACK_METHOD: {
		const amqp_basic_nack_t *n = f.payload.method.decoded;
		if (n->delivery_tag > *confirmed) {
			*nacked += n->multiple ? n->delivery_tag - *confirmed : 1;
			*confirmed = n->delivery_tag;
		}
		return 0;
	}
	case AMQP_CHANNEL_CLOSE_METHOD:
	case AMQP_CONNECTION_CLOSE_METHOD:
		fprintf(stderr, "loadgen: the broker closed the channel\n");
		return -1;
	default:
		return 0;
	}
}

static int
do_publish(const char *uri, const char *queue, uint64_t n, int mode,
    const char *reply, const char *type, const char *body)
{
	amqp_connection_state_t c = open_conn(uri);
	if (c == NULL)
		return -1;
	amqp_confirm_select(c, CH);
	if (fail_rpc("confirm.select", amqp_get_rpc_reply(c)) < 0) {
		amqp_destroy_connection(c);
		return -1;
	}
	uint64_t sent = 0, confirmed = 0, nacked = 0;
	double t0 = now_s(), c0 = cpu_s();
	char id[32];
	int status = 0;
	while (confirmed < n) {
		while (sent < n && sent - confirmed < WINDOW) {
			amqp_basic_properties_t p;
			memset(&p, 0, sizeof(p));
			snprintf(id, sizeof(id), "b-%" PRIu64, sent);
			p._flags = AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
			    AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG;
			p.type = amqp_cstring_bytes(type);
			p.message_id = amqp_cstring_bytes(id);
			p.correlation_id = p.message_id;
			p.delivery_mode = (uint8_t)mode;
			if (reply != NULL) {
				p._flags |= AMQP_BASIC_REPLY_TO_FLAG;
				p.reply_to = amqp_cstring_bytes(reply);
			}
			int rc = amqp_basic_publish(c, CH, amqp_empty_bytes,
			    amqp_cstring_bytes(queue), 0, 0, &p, amqp_cstring_bytes(body));
			if (rc != AMQP_STATUS_OK) {
				fprintf(stderr, "loadgen: publish: %s\n", amqp_error_string2(rc));
				status = -1;
				goto out;
			}
			sent++;
			/* Take confirms already in without waiting. */
			if (sent % 256 == 0) {
				struct timeval zero = { 0, 0 };
				bool got = true;
				while (got) {
					if (publish_read(c, &zero, &confirmed, &nacked, &got) < 0) {
						status = -1;
						goto out;
					}
				}
				amqp_maybe_release_buffers(c);
			}
		}
		struct timeval wait = { 30, 0 };
		bool got;
		if (publish_read(c, &wait, &confirmed, &nacked, &got) < 0) {
			status = -1;
			goto out;
		}
		if (!got) {
			fprintf(stderr, "loadgen: no confirm within 30 s\n");
			status = -1;
			goto out;
		}
		amqp_maybe_release_buffers(c);
	}
out:;
	double t1 = now_s(), c1 = cpu_s();
	printf("{\"sent\":%" PRIu64 ",\"confirmed\":%" PRIu64 ",\"nacked\":%" PRIu64
	    ",\"first\":%.6f,\"last\":%.6f,\"rate\":%.1f,\"cpu_s\":%.4f}\n",
	    sent, confirmed, nacked, t0, t1, t1 > t0 ? (double)sent / (t1 - t0) : 0.0,
	    c1 - c0);
	fflush(stdout);
	close_conn(c);
	return status == 0 && nacked == 0 ? 0 : -1;
}

static int
do_collect(const char *uri, const char *queue, uint64_t n)
{
	amqp_connection_state_t c = open_conn(uri);
	if (c == NULL)
		return -1;
	/* A prefetch well above a batch, so acks never starve the consumer. */
	amqp_basic_qos(c, CH, 0, 5 * BATCH, 0);
	if (fail_rpc("basic.qos", amqp_get_rpc_reply(c)) < 0)
		goto fail;
	amqp_basic_consume(c, CH, amqp_cstring_bytes(queue), amqp_empty_bytes,
	    0, 0, 0, amqp_empty_table);
	if (fail_rpc("basic.consume", amqp_get_rpc_reply(c)) < 0)
		goto fail;
	printf("consuming\n");
	fflush(stdout);

	uint64_t got = 0, last_tag = 0, acked_tag = 0, frames = 0;
	double t0 = 0, t1 = 0, c0 = 0;
	while (got < n) {
		amqp_frame_t f;
		/* Block only when nothing is buffered: ack what we have first. */
		struct timeval zero = { 0, 0 }, wait = { 60, 0 };
		int rc = amqp_simple_wait_frame_noblock(c, &f, &zero);
		if (rc == AMQP_STATUS_TIMEOUT) {
			if (last_tag > acked_tag) {
				if (amqp_basic_ack(c, CH, last_tag, 1) != AMQP_STATUS_OK)
					goto fail;
				acked_tag = last_tag;
			}
			amqp_maybe_release_buffers(c);
			rc = amqp_simple_wait_frame_noblock(c, &f, &wait);
		}
		if (rc != AMQP_STATUS_OK) {
			fprintf(stderr, "loadgen: read after %" PRIu64 " results: %s\n",
			    got, amqp_error_string2(rc));
			goto fail;
		}
		if (f.frame_type != AMQP_FRAME_METHOD)
			continue;
		if (f.payload.method.id != AMQP_BASIC_DELIVER_METHOD) {
			fprintf(stderr, "loadgen: unexpected method 0x%08x\n",
			    f.payload.method.id);
			goto fail;
		}
		const amqp_basic_deliver_t *d = f.payload.method.decoded;
		last_tag = d->delivery_tag;
		if (got++ == 0) {
			t0 = now_s();
			c0 = cpu_s();
		}
		if (got == n)
			t1 = now_s();
		if (++frames % BATCH == 0) {
			if (amqp_basic_ack(c, CH, last_tag, 1) != AMQP_STATUS_OK)
				goto fail;
			acked_tag = last_tag;
		}
	}
	if (last_tag > acked_tag)
		(void)amqp_basic_ack(c, CH, last_tag, 1);
	printf("{\"received\":%" PRIu64 ",\"first\":%.6f,\"last\":%.6f,\"cpu_s\":%.4f}\n",
	    got, t0, t1, cpu_s() - c0);
	fflush(stdout);
	close_conn(c);
	return 0;
fail:
	amqp_destroy_connection(c);
	return -1;
}

static void
usage(FILE *f)
{
	fprintf(f, "usage: loadgen publish -u URI -q QUEUE -n N [-m 1|2] [-R REPLY_QUEUE] [-t TYPE] [-b BODY]\n"
	    "       loadgen collect -u URI -q REPLY_QUEUE -n N\n");
}

int
main(int argc, char **argv)
{
	if (argc < 2) {
		usage(stderr);
		return 1;
	}
	const char *cmd = argv[1];
	const char *uri = NULL, *queue = NULL, *reply = NULL, *type = "echo", *body = "";
	unsigned long long n = 0;
	int mode = 2, opt;
	optind = 2;
	while ((opt = getopt(argc, argv, "u:q:n:m:R:t:b:h")) != -1) {
		switch (opt) {
		case 'u': uri = optarg; break;
		case 'q': queue = optarg; break;
		case 'R': reply = optarg; break;
		case 't': type = optarg; break;
		case 'b': body = optarg; break;
		case 'n': {
			char *end;
			errno = 0;
			n = strtoull(optarg, &end, 10);
			if (errno != 0 || *end != '\0' || n == 0) {
				fprintf(stderr, "loadgen: -n wants a positive count\n");
				return 1;
			}
			break;
		}
		case 'm':
			if (strcmp(optarg, "1") != 0 && strcmp(optarg, "2") != 0) {
				fprintf(stderr, "loadgen: -m wants 1 (transient) or 2 (persistent)\n");
				return 1;
			}
			mode = optarg[0] - '0';
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (uri == NULL || queue == NULL || n == 0 || optind != argc) {
		usage(stderr);
		return 1;
	}
	int rc;
	if (strcmp(cmd, "publish") == 0)
		rc = do_publish(uri, queue, n, mode, reply, type, body);
	else if (strcmp(cmd, "collect") == 0)
		rc = do_collect(uri, queue, n);
	else {
		usage(stderr);
		return 1;
	}
	return rc < 0 ? 1 : 0;
}
