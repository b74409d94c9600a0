/*
 * bench: publish many tasks, as fast as possible or at a fixed rate, and
 * measure each one from its publish to its result.
 *
 * One connection, one channel: the socket is polled for both directions
 * and incoming frames are drained between small publish batches, so
 * neither direction waits on the other: results are read while tasks are
 * still going out.
 */

#include <err.h>
#include <errno.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cli.h"
#include "taskctl.h"

#define BENCH_BATCH 256        /* publishes between two drains ... */
#define BENCH_BATCH_BYTES (256 * 1024)   /* ... and their payload bytes */
#define BENCH_DRAIN_MAX 4096   /* frames per drain, so publishing is not starved */
#define PROGRESS_NS 250000000ull

enum {
	OPT_JSON = TASKCTL_OPT_COMMAND,
	OPT_WAIT,
	OPT_TRANSIENT,
	OPT_NO_WAIT,
	OPT_REPLY_TO,
};

/* What became of each task, by sequence number. */
enum fate { FATE_PENDING, FATE_RESULT, FATE_RETURNED };

struct bench {
	amqp_connection_state_t conn;
	int fd;
	amqp_bytes_t reply_queue;       /* ours, server-named; malloc'd */
	char run[17];                   /* random per run: ids never collide */
	/* settings */
	uint64_t n;
	double rate;                    /* per second; 0 = unpaced */
	uint64_t conc;                  /* 0 = unbounded */
	const char *queue;
	const char *task;
	const char *payload;
	size_t payload_len;
	bool persistent;
	double wait;
	bool no_wait;                   /* publish only; results go elsewhere */
	const char *reply_to;           /* with no_wait: their queue, or NULL */
	/* per task */
	uint64_t *sent_at;              /* publish time, ns */
	unsigned char *fate;
	uint64_t *lat;                  /* latencies of the results, ns */
	/* counters */
	uint64_t sent, received, errors, returned, duplicates, strays;
	uint64_t start, first_pub, last_pub, last_result;
	struct client_rx rx;            /* the message in progress */
};

/* Maps a correlation id back to the sequence number, -1 if not ours. */
static int64_t
bench_seq(const struct bench *b, const amqp_basic_properties_t *p)
{
	if (!(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG))
		return -1;
	const char *s = p->correlation_id.bytes;
	size_t len = p->correlation_id.len, rl = strlen(b->run);
	if (len <= rl + 1 || len > rl + 1 + 20 ||
	    memcmp(s, b->run, rl) != 0 || s[rl] != '-')
		return -1;
	uint64_t v = 0;
	for (size_t i = rl + 1; i < len; i++) {
		if (s[i] < '0' || s[i] > '9')
			return -1;
		if (v > (UINT64_MAX - 9) / 10)
			return -1;
		v = v * 10 + (uint64_t)(s[i] - '0');
	}
	return v < b->sent ? (int64_t)v : -1;
}

/* A result is a failure when it carries a taskd-status other than "ok".
 * No status at all means a responder that is not taskd: take it as ok. */
static bool
status_ok(const amqp_basic_properties_t *p)
{
	amqp_bytes_t s;
	if (!client_header_string(p, "taskd-status", &s))
		return true;
	return client_bytes_equal(s, "ok");
}

/* A complete result, or a task of ours the broker returned. */
static void
bench_message(struct bench *b)
{
	uint64_t now = cli_now_ns();
	int64_t cur = bench_seq(b, b->rx.props);
	if (cur < 0) {
		b->strays++;
	} else if (b->fate[cur] != FATE_PENDING) {
		/* At-least-once: a redelivered task can be answered twice. */
		b->duplicates++;
	} else if (b->rx.returned) {
		b->fate[cur] = FATE_RETURNED;
		b->returned++;
	} else {
		b->fate[cur] = FATE_RESULT;
		b->lat[b->received++] = now - b->sent_at[cur];
		b->last_result = now;
		if (!status_ok(b->rx.props))
			b->errors++;
	}
}

static int
bench_frame(struct bench *b, const amqp_frame_t *f)
{
	switch (client_rx_frame(&b->rx, f)) {
	case CLIENT_RX_ERROR:
		return -1;
	case CLIENT_RX_MORE:
		return 0;
	case CLIENT_RX_MESSAGE:
		bench_message(b);
		return 0;
	case CLIENT_RX_OTHER:
		break;
	}
	return client_fatal_method(f);
}

/* Handles every frame already received, up to a bound.  Returns how many,
 * or -1. */
static int
bench_drain(struct bench *b)
{
	int count = 0;
	while (count < BENCH_DRAIN_MAX) {
		amqp_frame_t f;
		struct timeval zero = { 0, 0 };
		int rc = amqp_simple_wait_frame_noblock(b->conn, &f, &zero);
		if (rc == AMQP_STATUS_TIMEOUT)
			break;
		if (rc != AMQP_STATUS_OK) {
			warnx("connection lost: %s", amqp_error_string2(rc));
			return -1;
		}
		if (bench_frame(b, &f) < 0)
			return -1;
		count++;
	}
	/* Nothing points into the frames any more (but a half-read
	 * result's properties). */
	client_rx_release(&b->rx, b->conn);
	return count;
}

/* How many tasks may go out now: the pacing clock and the bound on
 * outstanding tasks both have a say. */
static uint64_t
bench_allowed(const struct bench *b, uint64_t now)
{
	uint64_t allowed = b->n - b->sent;
	if (b->rate > 0) {
		/* Task i is due at start + i / rate: catch up after a stall
		 * instead of drifting, as an open-loop load generator must. */
		double due = floor((double)(now - b->start) * b->rate / 1e9) + 1;
		uint64_t due_n = due >= (double)b->n ? b->n : (uint64_t)due;
		allowed = due_n > b->sent ? due_n - b->sent : 0;
	}
	if (b->conc > 0) {
		uint64_t out = b->sent - b->received - b->returned;
		uint64_t room = out < b->conc ? b->conc - out : 0;
		if (room < allowed)
			allowed = room;
	}
	/* Bound a batch by bytes as well, so big payloads do not keep us in
	 * send() for long while results wait to be read. */
	uint64_t batch = BENCH_BATCH_BYTES / (b->payload_len + 256);
	if (batch < 1)
		batch = 1;
	if (batch > BENCH_BATCH)
		batch = BENCH_BATCH;
	return allowed < batch ? allowed : batch;
}

static int
bench_publish(struct bench *b, uint64_t count)
{
	amqp_basic_properties_t props;
	char id[64];   /* run id, '-', at most 20 digits: our own, bounded */

	memset(&props, 0, sizeof(props));
	props._flags = AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_MESSAGE_ID_FLAG |
	    AMQP_BASIC_CORRELATION_ID_FLAG | AMQP_BASIC_REPLY_TO_FLAG |
	    AMQP_BASIC_DELIVERY_MODE_FLAG;
	props.type = amqp_cstring_bytes(b->task);
	props.reply_to = b->reply_queue;
	if (b->reply_queue.len == 0)
		props._flags &= ~AMQP_BASIC_REPLY_TO_FLAG;
	props.delivery_mode = b->persistent ? AMQP_DELIVERY_PERSISTENT :
	    AMQP_DELIVERY_NONPERSISTENT;
	amqp_bytes_t body = amqp_cstring_bytes(b->payload);
	amqp_bytes_t queue = amqp_cstring_bytes(b->queue);

	for (uint64_t i = 0; i < count; i++) {
		uint64_t seq = b->sent;
		snprintf(id, sizeof(id), "%s-%" PRIu64, b->run, seq);
		props.message_id = props.correlation_id = amqp_cstring_bytes(id);
		/* Stamped before the send: the send is part of the latency. */
		uint64_t t = cli_now_ns();
		/* Mandatory: if the queue vanishes, tasks come back instead of
		 * being dropped and waited for in vain. */
		int rc = amqp_basic_publish(b->conn, CLIENT_CHANNEL, amqp_empty_bytes,
		    queue, 1, 0, &props, body);
		if (rc != AMQP_STATUS_OK) {
			warnx("publish: %s", amqp_error_string2(rc));
			return -1;
		}
		b->sent_at[seq] = t;
		b->sent++;
		if (seq == 0)
			b->first_pub = t;
		b->last_pub = t;
	}
	return 0;
}

/* Waits until the socket is readable, writable (when want_write) or
 * timeout_ns passed.  Returns 1 when writable, 0 otherwise, -1 on error. */
static int
bench_poll(struct bench *b, bool want_write, uint64_t timeout_ns)
{
	struct pollfd p = { b->fd, POLLIN | (want_write ? POLLOUT : 0), 0 };
	int ms = (int)((timeout_ns + 999999) / 1000000);
	int rc = poll(&p, 1, ms);
	if (rc < 0) {
		if (errno == EINTR)
			return 0;
		warn("poll");
		return -1;
	}
	return rc > 0 && (p.revents & POLLOUT) ? 1 : 0;
}

static void
bench_progress(const struct bench *b, bool final)
{
	if (final) {
		fputs("\r\033[K", stderr);
		return;
	}
	/* The live rate is over the whole run so far: steadier to read than
	 * the last interval's. */
	uint64_t now = cli_now_ns();
	double secs = now > b->start ? (double)(now - b->start) / 1e9 : 0.0;
	fprintf(stderr, "\r\033[K%.1f s  sent %" PRIu64 "/%" PRIu64
	    "  received %" PRIu64 " (%.0f/s)  errors %" PRIu64, secs, b->sent,
	    b->n, b->received, secs > 0 ? (double)b->received / secs : 0.0,
	    b->errors);
}

/*
 * The load loop.  Each turn: take every frame already here, publish what
 * the pacing and the concurrency bound allow (only when the socket has room,
 * so a full send buffer never blocks us while results wait unread), and
 * sleep in poll() only when there was nothing to do.
 */
static int
bench_run(struct bench *b)
{
	bool tty = isatty(STDERR_FILENO);
	uint64_t next_progress = 0;

	b->start = cli_now_ns();
	b->last_pub = b->start;
	for (;;) {
		if (cli_interrupted) {
			warnx("interrupted");
			break;
		}
		int got = bench_drain(b);
		if (got < 0)
			return -1;
		uint64_t now = cli_now_ns();
		uint64_t allowed = bench_allowed(b, now);
		bool wrote = false;
		if (allowed > 0) {
			struct pollfd p = { b->fd, POLLOUT, 0 };
			if (poll(&p, 1, 0) > 0 && (p.revents & POLLOUT)) {
				if (bench_publish(b, allowed) < 0)
					return -1;
				wrote = true;
			}
		}
		if (b->sent == b->n &&
		    (b->no_wait || b->received + b->returned == b->n))
			break;

		/* Give up on results only once nothing more can be sent:
		 * all of them are out, or the concurrency bound is full.  A
		 * bound stall counts from the last progress of either kind. */
		now = cli_now_ns();
		uint64_t wait_ns = (uint64_t)(b->wait * 1e9);
		uint64_t out = b->sent - b->received - b->returned;
		uint64_t since;
		if (b->sent == b->n)
			since = b->last_pub;
		else if (b->conc > 0 && out >= b->conc)
			since = b->last_pub > b->last_result ? b->last_pub :
			    b->last_result;
		else
			since = 0;
		if (since != 0 && now >= since + wait_ns) {
			warnx("%" PRIu64 " results missing after waiting %.0f s",
			    b->sent - b->received - b->returned, b->wait);
			break;
		}
		if (tty && now >= next_progress) {
			bench_progress(b, false);
			next_progress = now + PROGRESS_NS;
		}
		if (got > 0 || wrote)
			continue;

		/* Idle: sleep until a frame comes, the socket takes more, the
		 * next task is due, or the deadline. */
		uint64_t sleep = PROGRESS_NS;
		if (since != 0 && since + wait_ns - now < sleep)
			sleep = since + wait_ns - now;
		if (b->rate > 0 && b->sent < b->n && allowed == 0) {
			uint64_t due = b->start +
			    (uint64_t)((double)b->sent * 1e9 / b->rate);
			if (due > now && due - now < sleep)
				sleep = due - now;
		}
		if (bench_poll(b, allowed > 0, sleep) < 0)
			return -1;
	}
	if (tty)
		bench_progress(b, true);
	return 0;
}

static int
cmp_u64(const void *a, const void *b)
{
	uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
	return x < y ? -1 : x > y;
}

/* Nearest-rank percentile of the sorted latencies, in ms. */
static double
percentile_ms(const uint64_t *sorted, uint64_t n, double pct)
{
	double r = ceil(pct / 100.0 * (double)n);
	uint64_t rank = (uint64_t)r;
	if (rank < 1)
		rank = 1;
	if (rank > n)
		rank = n;
	return (double)sorted[rank - 1] / 1e6;
}

/*
 * --no-wait: a synchronous request after the last publish is answered only
 * once the broker has routed every publish before it on the channel, so its
 * answer means the tasks are in the queue (or came back as returns, which
 * rabbitmq-c keeps for the drain that follows).
 */
static int
bench_barrier(struct bench *b)
{
	amqp_queue_declare(b->conn, CLIENT_CHANNEL, amqp_cstring_bytes(b->queue),
	    1, 0, 0, 0, amqp_empty_table);
	if (client_check_rpc(b->conn, "task queue") < 0)
		return -1;
	b->last_result = cli_now_ns();
	return bench_drain(b) < 0 ? -1 : 0;
}

static int
bench_report_published(struct bench *b, bool json)
{
	double elapsed = b->sent > 0 && b->last_result > b->first_pub ?
	    (double)(b->last_result - b->first_pub) / 1e9 : 0.0;
	double rate = elapsed > 0 ? (double)b->sent / elapsed : 0.0;
	if (json)
		printf("{\"sent\":%" PRIu64 ",\"returned\":%" PRIu64
		    ",\"elapsed_s\":%.3f,\"rate\":%.1f}\n", b->sent, b->returned,
		    elapsed, rate);
	else
		printf("published %" PRIu64 " in %.3f s: %.1f tasks/s\n", b->sent,
		    elapsed, rate);
	if (b->returned > 0)
		warnx("%" PRIu64 " tasks returned unroutable: no queue '%s'?",
		    b->returned, b->queue);
	if (fflush(stdout) == EOF) {
		warn("writing the report");
		return -1;
	}
	return 0;
}

static int
bench_report(struct bench *b, bool json)
{
	uint64_t end = b->received > 0 ? b->last_result : cli_now_ns();
	double elapsed = b->sent > 0 && end > b->first_pub ?
	    (double)(end - b->first_pub) / 1e9 : 0.0;
	double rate = elapsed > 0 ? (double)b->received / elapsed : 0.0;
	double p50 = 0, p90 = 0, p99 = 0, max = 0;

	if (b->received > 0) {
		qsort(b->lat, b->received, sizeof(*b->lat), cmp_u64);
		p50 = percentile_ms(b->lat, b->received, 50);
		p90 = percentile_ms(b->lat, b->received, 90);
		p99 = percentile_ms(b->lat, b->received, 99);
		max = (double)b->lat[b->received - 1] / 1e6;
	}
	if (json) {
		printf("{\"sent\":%" PRIu64 ",\"received\":%" PRIu64
		    ",\"errors\":%" PRIu64 ",\"elapsed_s\":%.3f,\"rate\":%.1f",
		    b->sent, b->received, b->errors, elapsed, rate);
		/* No result, no latency: null rather than a made-up 0. */
		if (b->received > 0)
			printf(",\"p50_ms\":%.3f,\"p90_ms\":%.3f,\"p99_ms\":%.3f"
			    ",\"max_ms\":%.3f}\n", p50, p90, p99, max);
		else
			printf(",\"p50_ms\":null,\"p90_ms\":null,\"p99_ms\":null"
			    ",\"max_ms\":null}\n");
	} else {
		printf("sent      %" PRIu64 "\n", b->sent);
		printf("received  %" PRIu64 "\n", b->received);
		printf("errors    %" PRIu64 "\n", b->errors);
		printf("elapsed   %.3f s\n", elapsed);
		printf("rate      %.1f results/s\n", rate);
		if (b->received > 0)
			printf("latency   p50 %.3f ms  p90 %.3f ms  p99 %.3f ms"
			    "  max %.3f ms\n", p50, p90, p99, max);
	}
	if (b->returned > 0)
		warnx("%" PRIu64 " tasks returned unroutable: no queue '%s'?",
		    b->returned, b->queue);
	if (b->duplicates > 0)
		warnx("%" PRIu64 " duplicate results (tasks redelivered)",
		    b->duplicates);
	if (b->strays > 0)
		warnx("%" PRIu64 " results with an unknown correlation id",
		    b->strays);
	if (fflush(stdout) == EOF) {
		warn("writing the report");
		return -1;
	}
	return 0;
}

/* Checks the task queue exists, then declares and consumes our private
 * reply queue. */
static int
bench_setup(struct bench *b)
{
	/* Passive: a benchmark must not create the queue with settings of
	 * its own choosing; taskd (or the operator) owns it. */
	amqp_queue_declare(b->conn, CLIENT_CHANNEL, amqp_cstring_bytes(b->queue),
	    1, 0, 0, 0, amqp_empty_table);
	if (client_check_rpc(b->conn, "task queue") < 0)
		return -1;
	if (b->no_wait) {
		/* Results go to the queue named, or to taskd's reply.queue. */
		if (b->reply_to != NULL) {
			b->reply_queue = amqp_bytes_malloc_dup(
			    amqp_cstring_bytes(b->reply_to));
			if (b->reply_queue.bytes == NULL) {
				warnx("out of memory");
				return -1;
			}
		}
		amqp_maybe_release_buffers(b->conn);
		b->fd = amqp_get_sockfd(b->conn);
		return 0;
	}
	amqp_queue_declare_ok_t *ok = amqp_queue_declare(b->conn, CLIENT_CHANNEL,
	    amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
	if (ok == NULL) {
		client_check_rpc(b->conn, "declare reply queue");
		return -1;
	}
	b->reply_queue = amqp_bytes_malloc_dup(ok->queue);
	if (b->reply_queue.bytes == NULL) {
		warnx("out of memory");
		return -1;
	}
	/* No acks: a result is consumed the moment it arrives, so the broker
	 * never holds back results for want of our acks. */
	amqp_basic_consume(b->conn, CLIENT_CHANNEL, b->reply_queue, amqp_empty_bytes,
	    0, 1, 1, amqp_empty_table);
	if (client_check_rpc(b->conn, "consume reply queue") < 0)
		return -1;
	amqp_maybe_release_buffers(b->conn);
	b->fd = amqp_get_sockfd(b->conn);
	return 0;
}

int
bench_main(struct taskctl *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		TASKCTL_LONGOPTS,
		{ "json", no_argument, NULL, OPT_JSON },
		{ "wait", required_argument, NULL, OPT_WAIT },
		{ "transient", no_argument, NULL, OPT_TRANSIENT },
		{ "no-wait", no_argument, NULL, OPT_NO_WAIT },
		{ "reply-to", required_argument, NULL, OPT_REPLY_TO },
		{ NULL, 0, NULL, 0 },
	};
	struct bench b;
	bool json = false;
	int opt;

	memset(&b, 0, sizeof(b));
	b.n = 10000;
	b.task = "echo";
	b.payload = "";
	b.persistent = true;
	b.wait = 60;

	optind = 0;   /* GNU getopt: start over on the command's arguments */
	while ((opt = getopt_long(argc, argv, TASKCTL_SHORTOPTS "n:r:c:t:P:", longopts,
	    NULL)) != -1) {
		if (taskctl_common_option(t, opt))
			continue;
		switch (opt) {
		case 'n':
			/* Bounded so the per-task arrays stay allocatable. */
			if (cli_parse_count(optarg, UINT32_MAX, &b.n) < 0 || b.n == 0) {
				warnx("-n wants a count from 1 to %" PRIu32, UINT32_MAX);
				return EXIT_CLIENT;
			}
			break;
		case 'r':
			if (cli_parse_number(optarg, &b.rate) < 0) {
				warnx("-r wants a rate in tasks per second");
				return EXIT_CLIENT;
			}
			break;
		case 'c':
			if (cli_parse_count(optarg, UINT64_MAX, &b.conc) < 0) {
				warnx("-c wants a count");
				return EXIT_CLIENT;
			}
			break;
		case 't':
			b.task = optarg;
			break;
		case 'P':
			b.payload = optarg;
			break;
		case OPT_JSON:
			json = true;
			break;
		case OPT_WAIT:
			if (cli_parse_number(optarg, &b.wait) < 0) {
				warnx("--wait wants a number of seconds");
				return EXIT_CLIENT;
			}
			break;
		case OPT_TRANSIENT:
			b.persistent = false;
			break;
		case OPT_NO_WAIT:
			b.no_wait = true;
			break;
		case OPT_REPLY_TO:
			b.reply_to = optarg;
			break;
		case 'h':
			taskctl_usage();
			return EXIT_OK;
		default:
			taskctl_usage_hint();
			return EXIT_CLIENT;
		}
	}
	if (optind != argc) {
		taskctl_usage_hint();
		return EXIT_CLIENT;
	}
	if (b.reply_to != NULL && !b.no_wait) {
		warnx("--reply-to needs --no-wait (otherwise results come to taskctl)");
		return EXIT_CLIENT;
	}
	if (taskctl_check(t) < 0)
		return EXIT_CLIENT;
	b.queue = t->queue;
	b.payload_len = strlen(b.payload);

	int status = EXIT_CLIENT;
	unsigned char r[8];
	if (cli_signals(true) < 0) {
		warn("sigaction");
		goto out;
	}
	if (cli_random(r, sizeof(r)) < 0) {
		warn("getrandom");
		goto out;
	}
	for (size_t i = 0; i < sizeof(r); i++)
		snprintf(b.run + 2 * i, 3, "%02x", r[i]);
	b.sent_at = calloc(b.n, sizeof(*b.sent_at));
	b.lat = calloc(b.n, sizeof(*b.lat));
	b.fate = calloc(b.n, sizeof(*b.fate));
	if (b.sent_at == NULL || b.lat == NULL || b.fate == NULL) {
		warnx("out of memory for %" PRIu64 " tasks", b.n);
		goto out;
	}
	/* No heartbeats: they only run inside rabbitmq-c calls, and this
	 * loop sleeps in its own poll(); the --wait bound covers a dead
	 * broker instead. */
	b.conn = client_connect(&t->conn, 0, "taskctl bench");
	if (b.conn == NULL || bench_setup(&b) < 0)
		goto out;
	int rc = bench_run(&b);
	if (b.no_wait) {
		if (rc < 0 || bench_barrier(&b) < 0 ||
		    bench_report_published(&b, json) < 0)
			goto out;
		status = cli_interrupted || b.sent < b.n || b.returned > 0 ?
		    EXIT_CLIENT : EXIT_OK;
		goto out;
	}
	if (bench_report(&b, json) < 0 || rc < 0)
		goto out;
	if (cli_interrupted || b.received + b.returned < b.sent || b.returned > 0 ||
	    b.sent < b.n)
		status = EXIT_CLIENT;
	else if (b.errors > 0)
		status = EXIT_TASK;
	else
		status = EXIT_OK;
out:
	client_close(b.conn);
	amqp_bytes_free(b.reply_queue);
	free(b.sent_at);
	free(b.lat);
	free(b.fate);
	client_rx_free(&b.rx);
	return status;
}

