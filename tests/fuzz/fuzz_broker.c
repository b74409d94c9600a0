/*
 * fuzz_broker: what the broker sends, read the way taskd reads it.  The
 * input is the byte stream a broker writes to taskd after the handshake:
 * AMQP frames, any number, in any order.  It goes through a socketpair
 * into rabbitmq-c's frame parser (amqp_simple_wait_frame_noblock, as in
 * the daemon) and from there through broker.c's frame handling: delivery
 * assembly (deliver -> header -> body frames), publisher confirms, returns,
 * channel and connection closes, blocked/unblocked.  Every delivery is
 * read with envelope_parse, as dispatch.c does, and then acked, rejected
 * or held, so the tag ring and the ack coalescing run too.
 *
 * broker.c keeps that code static behind a connection the connector
 * thread makes, so this file includes broker.c and hands it a connection
 * on a socketpair through broker_connected(), the connector's own
 * callback: no daemon source changes for the fuzzer.  (A seam that would
 * help: the frame handling as a function of its own, taking an
 * amqp_frame_t.)
 *
 * Checked besides memory errors: a delivery is complete when it is handed
 * over (its body all there, or dropped as oversized), it carries the
 * current generation, and every published result gets exactly one
 * confirm (acked, nacked or lost) by the time the broker is freed.
 */
#include "../../src/broker.c"

#include <amqp_tcp_socket.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "envelope.h"
#include "fuzz.h"

#define NRESULTS 4
#define NHELD 64

struct fuzz {
	struct broker *b;
	int confirmed[NRESULTS];
	uint64_t held[NHELD];
	size_t nheld;
	unsigned deliveries;
};

static struct ev_loop *loop;

static void
on_delivery(void *ctx, struct broker_delivery *d)
{
	struct fuzz *z = ctx;
	FUZZ_CHECK(d->gen == broker_generation(z->b));
	FUZZ_CHECK(d->props != NULL);
	if (d->oversized) {
		FUZZ_CHECK(d->body == NULL);
	} else {
		FUZZ_CHECK(d->received == d->len);
		FUZZ_CHECK((d->len == 0) == (d->body == NULL));
		/* Touch every byte: ASan sees a body shorter than declared. */
		unsigned sum = 0;
		for (size_t i = 0; i < d->len; i++)
			sum += d->body[i];
		(void)sum;
	}
	struct envelope_limits lim = {
		.max_payload = 4096, .default_task = "", .reply_queue = "distributed_results",
	};
	static const unsigned char uuid[16];
	struct envelope env = { 0 };
	if (envelope_parse(d->props, d->len, &lim, uuid, &env) == 0)
		envelope_free(&env);

	/* Settle as tasks do: at once, later, or out of order. */
	z->deliveries++;
	switch (d->tag % 4) {
	case 0:
		broker_ack(z->b, d->gen, d->tag);
		break;
	case 1:
		broker_reject(z->b, d->gen, d->tag, d->tag & 4);
		break;
	default:
		if (z->nheld < NHELD)
			z->held[z->nheld++] = d->tag;
		break;
	}
	broker_delivery_free(d);
}

static void
on_confirm(void *ctx, void *token, enum broker_confirm how)
{
	struct fuzz *z = ctx;
	(void)how;
	int *c = token;
	FUZZ_CHECK(c >= z->confirmed && c < z->confirmed + NRESULTS);
	(*c)++;
	FUZZ_CHECK(*c == 1);
}

static void on_up(void *ctx) { (void)ctx; }
static void on_down(void *ctx, uint64_t gen) { (void)ctx; (void)gen; }
static void on_writable(void *ctx) { (void)ctx; }

/* Reads and drops what taskd wrote (acks, close-ok...), so its writes
 * never wait for room. */
static void
sink(int fd)
{
	char buf[65536];
	while (read(fd, buf, sizeof(buf)) > 0)
		;
}

int
LLVMFuzzerInitialize(int *argc, char ***argv)
{
	(void)argc;
	(void)argv;
	signal(SIGPIPE, SIG_IGN);
	log_set_level(LOG_LEVEL_ERROR);
	loop = ev_loop_new(EVFLAG_AUTO);
	FUZZ_CHECK(loop != NULL);
	return 0;
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	if (loop == NULL)
		LLVMFuzzerInitialize(NULL, NULL);

	int sv[2];
	FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) == 0);
	/* Both ends non-blocking: rabbitmq-c opens its sockets so, and
	 * relies on it for its zero timeouts. */
	FUZZ_CHECK(fcntl(sv[0], F_SETFL, O_NONBLOCK) == 0 && fcntl(sv[1], F_SETFL, O_NONBLOCK) == 0);

	amqp_connection_state_t conn = amqp_new_connection();
	amqp_socket_t *sock = amqp_tcp_socket_new(conn);
	FUZZ_CHECK(conn != NULL && sock != NULL);
	amqp_tcp_socket_set_sockfd(sock, sv[0]);   /* conn owns sv[0] now */
	/* A new connection expects the protocol header first (the reply to
	 * the client's own); after login it is idle between frames.  Give it
	 * the header, then tune it as RabbitMQ does (frame_max 131072). */
	static const unsigned char header[] = { 'A', 'M', 'Q', 'P', 0, 0, 9, 1 };
	FUZZ_CHECK(write(sv[1], header, sizeof(header)) == sizeof(header));
	amqp_frame_t f;
	struct timeval zero = { 0, 0 };
	FUZZ_CHECK(amqp_simple_wait_frame_noblock(conn, &f, &zero) == AMQP_STATUS_OK);
	FUZZ_CHECK(f.frame_type == 'A');   /* the library's private pseudo-frame */
	FUZZ_CHECK(amqp_tune_connection(conn, 0, 131072, 0) == AMQP_STATUS_OK);
	FUZZ_CHECK(amqp_release_buffers_ok(conn));

	struct uri node = { .user = "guest", .password = "guest", .host = "fuzz",
	    .port = 5672, .vhost = "/" };
	struct connector_params params = {
		.nodes = &node,
		.nnodes = 1,
		.prefetch = 100,
		.timeout = 1,
		.queue = "distributed_tasks",
		.durable = true,
		.reply_queue = "distributed_results",
	};
	struct broker_ops ops = {
		.delivery = on_delivery, .confirm = on_confirm, .up = on_up,
		.down = on_down, .writable = on_writable,
	};
	struct fuzz z = { 0 };
	z.b = broker_new(loop, &params, 4096, NRESULTS, 1.0, &ops, &z);
	FUZZ_CHECK(z.b != NULL);
	struct connector_result res = {
		.conn = conn, .heartbeat = 0, .reply_durable = true,
		.consumer_tag = strdup("amq.ctag-fuzz"),
	};
	broker_connected(z.b, &res);
	FUZZ_CHECK(broker_state(z.b) == BROKER_UP);
	uint64_t gen = broker_generation(z.b);

	/* Results in flight, for the input's basic.ack/nack to confirm. */
	amqp_basic_properties_t rp = { ._flags = AMQP_BASIC_CORRELATION_ID_FLAG,
	    .correlation_id = amqp_cstring_bytes("c") };
	for (int i = 0; i < NRESULTS; i++)
		if (broker_publish(z.b, "distributed_results", &rp, "r", 1,
		    &z.confirmed[i]) != 0)
			z.confirmed[i] = 1;   /* not sent: no confirm due */
	sink(sv[1]);

	/* Feed the input; the socket may take it in pieces, which is how
	 * partial frames reach the parser. */
	size_t off = 0;
	bool shut = false, acked_held = false;
	for (int round = 0; round < 1000000; round++) {
		bool up = broker_state(z.b) == BROKER_UP && broker_generation(z.b) == gen;
		if (!up)
			break;
		if (off < size) {
			ssize_t w = write(sv[1], data + off, size - off);
			if (w > 0)
				off += (size_t)w;
			else
				FUZZ_CHECK(errno == EAGAIN);
		}
		broker_drain(z.b);
		if (broker_state(z.b) == BROKER_UP)
			(void)broker_flush(z.b, 0);
		sink(sv[1]);
		if (broker_state(z.b) != BROKER_UP || off < size)
			continue;
		struct pollfd pfd = { .fd = sv[0], .events = POLLIN };
		bool more = poll(&pfd, 1, 0) == 1 || amqp_data_in_buffer(z.b->conn) ||
		    amqp_frames_enqueued(z.b->conn);
		if (more)
			continue;
		if (!acked_held) {
			/* Everything read: settle the held tasks, out of order. */
			acked_held = true;
			for (size_t i = z.nheld; i-- > 0; )
				broker_ack(z.b, gen, z.held[i]);
			(void)broker_flush(z.b, 0);
		} else if (!shut) {
			/* The broker goes away: EOF ends the connection. */
			shut = true;
			FUZZ_CHECK(shutdown(sv[1], SHUT_WR) == 0);
		}
	}
	FUZZ_CHECK(broker_state(z.b) != BROKER_UP);
	close(sv[1]);
	broker_free(z.b);
	for (int i = 0; i < NRESULTS; i++)
		FUZZ_CHECK(z.confirmed[i] == 1);
	return 0;
}
