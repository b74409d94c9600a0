/*
 * taskctl: the command-line client of taskd.
 *
 *   taskctl [-u URI] [-q QUEUE] submit [--timeout SEC] [--no-wait] TASK [PAYLOAD|-]
 *   taskctl [-u URI] [-q QUEUE] bench [-n N] [-r RATE] [-c CONC] [-t TASK] ...
 *
 * It speaks only the wire protocol of design.md §4, like any other client
 * would, so it doubles as a check that the protocol is usable from outside.
 *
 * submit publishes one task and prints its result.  The result comes back
 * through RabbitMQ's direct reply-to (no queue to declare or clean up); the
 * task is published mandatory on a confirm-mode channel, so a missing queue
 * or a broker that refused the task is an error instead of a silent loss.
 *
 * bench publishes many tasks, as fast as it can or at a fixed rate, and
 * measures each one from its publish to its result.  One connection, one
 * channel: the socket is polled for both directions and incoming frames are
 * drained between small publish batches, so neither direction waits on the
 * other: results are read while tasks are still going out.
 *
 * Exit status: 0 ok; 2 a task ended with a status other than "ok"; 1 the
 * client failed (usage, connection, refusal, no result in time).
 */
#ifdef HAVE_CONFIG_H
#include "config.h"   /* _GNU_SOURCE, from AC_USE_SYSTEM_EXTENSIONS */
#endif

#include <err.h>
#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_ssl_socket.h>
#include <amqp_tcp_socket.h>
#include <openssl/ssl.h>

#include "buf.h"

#define DEFAULT_URI "amqp://guest:guest@127.0.0.1:5672/%2f"
#define DEFAULT_QUEUE "distributed_tasks"
#define DIRECT_REPLY_TO "amq.rabbitmq.reply-to"
#define CHANNEL 1

#define EXIT_OK 0
#define EXIT_CLIENT 1
#define EXIT_TASK 2

/* Bounds on waiting for the broker during setup: a black-holed address or
 * a frozen broker must end in an error, not a hang. */
#define CONNECT_TIMEOUT_S 10
#define RPC_TIMEOUT_S 30
/* taskd answers "timeout" itself when a task overruns the timeout we sent;
 * that answer needs a moment to travel, so waiting exactly the timeout would
 * race it. */
#define SUBMIT_GRACE_S 5.0
/* --no-wait without --timeout: how long to wait for the broker's confirm. */
#define CONFIRM_WAIT_S 30.0

#define BENCH_BATCH 256        /* publishes between two drains ... */
#define BENCH_BATCH_BYTES (256 * 1024)   /* ... and their payload bytes */
#define BENCH_DRAIN_MAX 4096   /* frames per drain, so publishing is not starved */
#define PROGRESS_NS 250000000ull

static volatile sig_atomic_t interrupted;

struct global {
	const char *uri;
	const char *queue;
};

/* ---- small helpers ------------------------------------------------------ */

static uint64_t
now_ns(void)
{
	struct timespec ts;
	/* CLOCK_MONOTONIC cannot fail with a valid pointer; latencies must not
	 * jump with the wall clock. */
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

static void
on_signal(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int
install_signals(bool catch_interrupt)
{
	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sigemptyset(&sa.sa_mask);
	/* A dropped TLS connection would raise SIGPIPE inside OpenSSL; a
	 * closed stdout must be an error we report, not a silent death. */
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) < 0)
		return -1;
	if (catch_interrupt) {
		/* bench reports what it measured so far when interrupted. */
		sa.sa_handler = on_signal;
		if (sigaction(SIGINT, &sa, NULL) < 0 ||
		    sigaction(SIGTERM, &sa, NULL) < 0)
			return -1;
	}
	return 0;
}

/* Parses a non-negative decimal count. */
static int
parse_count(const char *s, uint64_t max, uint64_t *out)
{
	char *end;
	if (s[0] == '-' || s[0] == '+' || s[0] == '\0')
		return -1;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0' || v > max)
		return -1;
	*out = v;
	return 0;
}

/* Parses a finite, non-negative number of seconds (or per second). */
static int
parse_number(const char *s, double *out)
{
	char *end;
	errno = 0;
	double v = strtod(s, &end);
	if (errno != 0 || end == s || *end != '\0' || !isfinite(v) || v < 0)
		return -1;
	*out = v;
	return 0;
}

/* Copies broker-supplied bytes into b as printable text for a message:
 * control bytes become '?', so a hostile status cannot drive the terminal. */
static int
printable(struct buf *b, amqp_bytes_t in)
{
	buf_reset(b);
	if (buf_reserve(b, in.len) < 0)
		return -1;
	const unsigned char *p = in.bytes;
	for (size_t i = 0; i < in.len; i++) {
		char c = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : (char)p[i];
		if (buf_append(b, &c, 1) < 0)
			return -1;
	}
	return 0;
}

/* Fills out with n random bytes from the kernel. */
static int
random_bytes(void *out, size_t n)
{
	/* Requests of up to 256 bytes are never short once the pool is
	 * initialised; anything else is an error, not a partial id. */
	ssize_t r;
	do
		r = getrandom(out, n, 0);
	while (r < 0 && errno == EINTR);
	return r == (ssize_t)n ? 0 : -1;
}

/* A random (version 4) UUID in its 36-character text form. */
static int
make_uuid(char out[37])
{
	unsigned char u[16];
	if (random_bytes(u, sizeof(u)) < 0)
		return -1;
	u[6] = (unsigned char)((u[6] & 0x0f) | 0x40);
	u[8] = (unsigned char)((u[8] & 0x3f) | 0x80);
	snprintf(out, 37,
	    "%02x%02x%02x%02x-%02x%02x-%02x%02x-%02x%02x-"
	    "%02x%02x%02x%02x%02x%02x",
	    u[0], u[1], u[2], u[3], u[4], u[5], u[6], u[7],
	    u[8], u[9], u[10], u[11], u[12], u[13], u[14], u[15]);
	return 0;
}

/* Finds a string header (the broker sends field kind 'S'; accept 'x' too). */
static bool
header_string(const amqp_basic_properties_t *p, const char *key,
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

/* A result is a failure when it carries a taskd-status other than "ok".
 * No status at all means a responder that is not taskd: take it as ok. */
static bool
status_ok(const amqp_basic_properties_t *p)
{
	amqp_bytes_t s;
	if (!header_string(p, "taskd-status", &s))
		return true;
	return s.len == 2 && memcmp(s.bytes, "ok", 2) == 0;
}

static bool
bytes_equal(amqp_bytes_t a, const char *s)
{
	size_t n = strlen(s);
	return a.len == n && (n == 0 || memcmp(a.bytes, s, n) == 0);
}

/* ---- the connection ----------------------------------------------------- */

static void
warn_close(const char *what, uint16_t code, amqp_bytes_t text)
{
	struct buf t = {0};
	if (printable(&t, text) < 0)
		warnx("%s: %u", what, code);
	else
		warnx("%s: %u %s", what, code, t.data);
	buf_free(&t);
}

/* Says why an RPC failed, including the broker's reason when it gave one. */
static void
warn_rpc(const char *what, amqp_rpc_reply_t r)
{
	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		return;
	case AMQP_RESPONSE_NONE:
		warnx("%s: no reply from the broker", what);
		return;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		warnx("%s: %s", what, amqp_error_string2(r.library_error));
		return;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			const amqp_connection_close_t *m = r.reply.decoded;
			warn_close(what, m->reply_code, m->reply_text);
		} else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			const amqp_channel_close_t *m = r.reply.decoded;
			warn_close(what, m->reply_code, m->reply_text);
		} else {
			warnx("%s: unexpected reply 0x%08x", what, r.reply.id);
		}
		return;
	}
}

static int
check_rpc(amqp_connection_state_t conn, const char *what)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	warn_rpc(what, r);
	return -1;
}

/*
 * Opens a connection to uri and channel 1.  heartbeat is in seconds (0 = off;
 * rabbitmq-c only heartbeats inside its own calls, so only a client that
 * waits in them may turn it on).  Returns the connection, or NULL after
 * saying why.
 */
static amqp_connection_state_t
client_connect(const char *uri, int heartbeat, const char *name)
{
	struct amqp_connection_info ci;
	amqp_connection_state_t conn = NULL;
	char *copy = strdup(uri);   /* amqp_parse_url writes into its argument */

	if (copy == NULL) {
		warnx("out of memory");
		return NULL;
	}
	int rc = amqp_parse_url(copy, &ci);
	if (rc != AMQP_STATUS_OK) {
		/* Never echo the URI: it may hold a password. */
		warnx("bad broker URI: %s", amqp_error_string2(rc));
		goto fail;
	}
	conn = amqp_new_connection();
	if (conn == NULL) {
		warnx("out of memory");
		goto fail;
	}
	amqp_socket_t *sock;
	if (ci.ssl) {
		sock = amqp_ssl_socket_new(conn);
		if (sock == NULL) {
			warnx("cannot create a TLS socket");
			goto fail;
		}
		/* rabbitmq-c 0.11 loads no CA store by itself; use the system's
		 * (SSL_CERT_FILE / SSL_CERT_DIR override it).  Peer and host
		 * name checks stay on, as rabbitmq-c defaults them. */
		SSL_CTX *ctx = amqp_ssl_socket_get_context(sock);
		if (ctx == NULL || SSL_CTX_set_default_verify_paths(ctx) != 1) {
			warnx("cannot load the system CA certificates");
			goto fail;
		}
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
		warn_rpc("login", r);
		goto fail;
	}
	amqp_channel_open(conn, CHANNEL);
	if (check_rpc(conn, "channel.open") < 0)
		goto fail;
	free(copy);
	return conn;
fail:
	if (conn != NULL)
		amqp_destroy_connection(conn);
	free(copy);
	return NULL;
}

/* Closes politely; the broker then drops our reply queue and consumer. */
static void
client_close(amqp_connection_state_t conn)
{
	if (conn == NULL)
		return;
	amqp_connection_close(conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(conn);
}

/* Reads one frame, waiting at most until deadline (0 = forever).  Returns 1
 * with a frame, 0 at the deadline, -1 after saying why not. */
static int
read_frame(amqp_connection_state_t conn, amqp_frame_t *f, uint64_t deadline)
{
	struct timeval tv, *tvp = NULL;
	if (deadline != 0) {
		uint64_t now = now_ns();
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

/* Handles the methods that end a session the same way in every command. */
static int
fatal_method(const amqp_frame_t *f)
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

/* ---- usage -------------------------------------------------------------- */

static void
usage(void)
{
	printf(
"usage: taskctl [-u URI] [-q QUEUE] submit [options] TASK [PAYLOAD|-]\n"
"       taskctl [-u URI] [-q QUEUE] bench [options]\n"
"       taskctl -h\n"
"\n"
"  -u, --uri URI      broker (default %s)\n"
"  -q, --queue QUEUE  task queue (default %s)\n"
"\n"
"submit: publish one task and print its result on stdout.\n"
"  PAYLOAD is the body; \"-\" reads it from stdin; none = empty.\n"
"  --timeout SEC        task timeout sent to taskd; also bounds the wait\n"
"                       (SEC plus %.0f s); without it taskctl waits until\n"
"                       the result comes or the connection fails\n"
"  --content-type TYPE  content_type of the payload\n"
"  --no-wait            publish with no reply address and return once\n"
"                       the broker confirmed the task\n"
"  A status other than ok is printed on stderr.\n"
"\n"
"bench: publish many tasks and measure results per second and latency.\n"
"  -n N            tasks to publish (default 10000)\n"
"  -r RATE         tasks per second (default: as fast as possible)\n"
"  -c CONCURRENCY  at most this many tasks outstanding (default: no bound)\n"
"  -t TASK         task name (default echo)\n"
"  -P PAYLOAD      task body (default empty)\n"
"  --wait SEC      wait at most SEC after the last publish (default 60)\n"
"  --transient     publish non-persistent tasks (default persistent)\n"
"  --json          print one JSON object instead of the table\n"
"  --no-wait       only publish (e.g. to fill a queue): report the publish\n"
"                  rate once the broker has all N; no results are awaited\n"
"  --reply-to Q    with --no-wait: results go to queue Q (default: none\n"
"                  set, so taskd sends them to its reply.queue)\n"
"\n"
"exit status: 0 ok, 2 a task's status was not ok, 1 client failure\n"
"(cannot connect, task refused, no result in time).\n",
	    /* The URI holds "%2f": an argument, never part of the format. */
	    DEFAULT_URI, DEFAULT_QUEUE, SUBMIT_GRACE_S);
}

/* For a usage mistake: the gist, not the whole manual. */
static void
usage_hint(void)
{
	fprintf(stderr, "usage: taskctl [-u URI] [-q QUEUE] submit [options] "
	    "TASK [PAYLOAD|-]\n"
	    "       taskctl [-u URI] [-q QUEUE] bench [options]\n"
	    "Try 'taskctl -h' for the options.\n");
}

/* Options every command takes, so they may follow the command name too. */
static bool
common_option(struct global *g, int opt)
{
	switch (opt) {
	case 'u':
		g->uri = optarg;
		return true;
	case 'q':
		g->queue = optarg;
		return true;
	default:
		return false;
	}
}

/* ---- submit ------------------------------------------------------------- */

struct submit {
	amqp_connection_state_t conn;
	char id[37];            /* message_id and correlation_id */
	bool wait;              /* a result is expected */
	bool confirmed;         /* the broker took the task */
	bool returned;          /* ... or could not route it */
	bool nacked;            /* ... or refused it */
	/* The content of the frame sequence in progress. */
	enum { IN_NONE, IN_RESULT, IN_RETURN, IN_OTHER } in;
	bool header_seen;
	uint64_t body_left;
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

static int
submit_header(struct submit *s, const amqp_frame_t *f)
{
	const amqp_basic_properties_t *p = f->payload.properties.decoded;

	s->header_seen = true;
	s->body_left = f->payload.properties.body_size;
	if (s->in == IN_RESULT) {
		/* Direct reply-to only brings our own results, but a result
		 * for another id would be a bug worth not printing. */
		if (!(p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) ||
		    !bytes_equal(p->correlation_id, s->id)) {
			s->in = IN_OTHER;
		} else {
			amqp_bytes_t st;
			if (header_string(p, "taskd-status", &st)) {
				s->has_status = true;
				if (printable(&s->status, st) < 0)
					goto nomem;
			}
		}
	}
	return 0;
nomem:
	warnx("out of memory");
	return -1;
}

static void
submit_content_done(struct submit *s)
{
	if (s->in == IN_RESULT)
		s->done = true;
	else if (s->in == IN_RETURN)
		s->returned = true;
	s->in = IN_NONE;
}

static int
submit_frame(struct submit *s, const amqp_frame_t *f)
{
	switch (f->frame_type) {
	case AMQP_FRAME_METHOD:
		switch (f->payload.method.id) {
		case AMQP_BASIC_ACK_METHOD:
			s->confirmed = true;
			return 0;
		case AMQP_BASIC_NACK_METHOD:
			s->nacked = true;
			return 0;
		case AMQP_BASIC_RETURN_METHOD:
			s->in = IN_RETURN;
			s->header_seen = false;
			return 0;
		case AMQP_BASIC_DELIVER_METHOD:
			/* Only the first result counts; a redelivered task
			 * may be answered twice (at-least-once). */
			s->in = s->done ? IN_OTHER : IN_RESULT;
			s->header_seen = false;
			if (!s->done)
				buf_reset(&s->body);
			return 0;
		default:
			return fatal_method(f);
		}
	case AMQP_FRAME_HEADER:
		if (s->in == IN_NONE || s->header_seen) {
			warnx("unexpected content header from the broker");
			return -1;
		}
		if (submit_header(s, f) < 0)
			return -1;
		if (s->body_left == 0)
			submit_content_done(s);
		return 0;
	case AMQP_FRAME_BODY: {
		size_t n = f->payload.body_fragment.len;
		if (s->in == IN_NONE || !s->header_seen || n > s->body_left) {
			warnx("unexpected content body from the broker");
			return -1;
		}
		if (s->in == IN_RESULT &&
		    buf_append(&s->body, f->payload.body_fragment.bytes, n) < 0) {
			warnx("out of memory");
			return -1;
		}
		s->body_left -= n;
		if (s->body_left == 0)
			submit_content_done(s);
		return 0;
	}
	default:
		return 0;
	}
}

static int
submit_publish(struct submit *s, const struct global *g, const char *task,
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
		props.reply_to = amqp_cstring_bytes(DIRECT_REPLY_TO);
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
	int rc = amqp_basic_publish(s->conn, CHANNEL, amqp_empty_bytes,
	    amqp_cstring_bytes(g->queue), 1, 0, &props, body);
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

static int
cmd_submit(struct global *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "uri", required_argument, NULL, 'u' },
		{ "queue", required_argument, NULL, 'q' },
		{ "timeout", required_argument, NULL, 'T' },
		{ "content-type", required_argument, NULL, 'C' },
		{ "no-wait", no_argument, NULL, 'W' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	double timeout = 0;
	const char *content_type = NULL;
	bool no_wait = false;
	int opt;

	optind = 0;   /* GNU getopt: start over on the command's arguments */
	while ((opt = getopt_long(argc, argv, "hu:q:", longopts, NULL)) != -1) {
		if (common_option(g, opt))
			continue;
		switch (opt) {
		case 'T':
			if (parse_number(optarg, &timeout) < 0 || timeout <= 0) {
				warnx("--timeout wants a positive number of seconds");
				return EXIT_CLIENT;
			}
			break;
		case 'C':
			content_type = optarg;
			break;
		case 'W':
			no_wait = true;
			break;
		case 'h':
			usage();
			return EXIT_OK;
		default:
			usage_hint();
			return EXIT_CLIENT;
		}
	}
	if (argc - optind < 1 || argc - optind > 2) {
		usage_hint();
		return EXIT_CLIENT;
	}
	const char *task = argv[optind];
	const char *payload_arg = argc - optind == 2 ? argv[optind + 1] : NULL;

	struct submit s;
	memset(&s, 0, sizeof(s));
	struct buf payload = {0};
	int status = EXIT_CLIENT;

	s.wait = !no_wait;
	if (install_signals(false) < 0) {
		warn("sigaction");
		goto out;
	}
	if (read_payload(payload_arg, &payload) < 0)
		goto out;
	if (make_uuid(s.id) < 0) {
		warn("getrandom");
		goto out;
	}
	/* Heartbeats let an unbounded wait notice a dead broker. */
	s.conn = client_connect(g->uri, s.wait ? 30 : 0, "taskctl submit");
	if (s.conn == NULL)
		goto out;
	/* Confirms turn "the queue is missing" and "the broker refused it"
	 * into errors; mandatory makes an unroutable task come back. */
	amqp_confirm_select(s.conn, CHANNEL);
	if (check_rpc(s.conn, "confirm.select") < 0)
		goto out;
	if (s.wait) {
		/* Direct reply-to demands the consumer exist before the
		 * publish that names it, on the same channel, without acks. */
		amqp_basic_consume(s.conn, CHANNEL,
		    amqp_cstring_bytes(DIRECT_REPLY_TO), amqp_empty_bytes,
		    0, 1, 0, amqp_empty_table);
		if (check_rpc(s.conn, "consume " DIRECT_REPLY_TO) < 0)
			goto out;
	}
	if (submit_publish(&s, g, task, &payload, timeout, content_type) < 0)
		goto out;

	/* 0 = wait for as long as the connection lives. */
	double limit = 0;
	if (timeout > 0)
		limit = timeout + (s.wait ? SUBMIT_GRACE_S : 0);
	else if (!s.wait)
		limit = CONFIRM_WAIT_S;
	uint64_t deadline = limit > 0 ? now_ns() + (uint64_t)(limit * 1e9) : 0;

	/* A persistent task may be answered before the broker has it on
	 * disk and confirms it, so the two may come in either order. */
	while (!s.returned && !s.nacked && !(s.confirmed && (!s.wait || s.done))) {
		amqp_frame_t f;
		int got = read_frame(s.conn, &f, deadline);
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
		amqp_maybe_release_buffers(s.conn);
	}
	if (s.returned) {
		warnx("task not delivered: no queue '%s' on the broker", g->queue);
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
	buf_free(&payload);
	buf_free(&s.status);
	buf_free(&s.body);
	return status;
}

/* ---- bench -------------------------------------------------------------- */

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
	/* the frame sequence in progress */
	enum { BIN_NONE, BIN_RESULT, BIN_RETURN } in;
	bool header_seen;
	uint64_t body_left;
	int64_t cur;                    /* its task, -1 = not one of ours */
	bool cur_ok;
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

static void
bench_content_done(struct bench *b)
{
	uint64_t now = now_ns();
	if (b->cur < 0) {
		b->strays++;
	} else if (b->fate[b->cur] != FATE_PENDING) {
		/* At-least-once: a redelivered task can be answered twice. */
		b->duplicates++;
	} else if (b->in == BIN_RETURN) {
		b->fate[b->cur] = FATE_RETURNED;
		b->returned++;
	} else {
		b->fate[b->cur] = FATE_RESULT;
		b->lat[b->received++] = now - b->sent_at[b->cur];
		b->last_result = now;
		if (!b->cur_ok)
			b->errors++;
	}
	b->in = BIN_NONE;
}

static int
bench_frame(struct bench *b, const amqp_frame_t *f)
{
	switch (f->frame_type) {
	case AMQP_FRAME_METHOD:
		switch (f->payload.method.id) {
		case AMQP_BASIC_DELIVER_METHOD:
			b->in = BIN_RESULT;
			break;
		case AMQP_BASIC_RETURN_METHOD:
			b->in = BIN_RETURN;
			break;
		default:
			return fatal_method(f);
		}
		b->header_seen = false;
		b->cur = -1;
		return 0;
	case AMQP_FRAME_HEADER: {
		if (b->in == BIN_NONE || b->header_seen) {
			warnx("unexpected content header from the broker");
			return -1;
		}
		const amqp_basic_properties_t *p = f->payload.properties.decoded;
		b->header_seen = true;
		b->cur = bench_seq(b, p);
		b->cur_ok = status_ok(p);
		b->body_left = f->payload.properties.body_size;
		if (b->body_left == 0)
			bench_content_done(b);
		return 0;
	}
	case AMQP_FRAME_BODY: {
		size_t n = f->payload.body_fragment.len;
		if (b->in == BIN_NONE || !b->header_seen || n > b->body_left) {
			warnx("unexpected content body from the broker");
			return -1;
		}
		/* The result body is not needed: only count it off. */
		b->body_left -= n;
		if (b->body_left == 0)
			bench_content_done(b);
		return 0;
	}
	default:
		return 0;
	}
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
	/* Nothing points into the frames any more. */
	amqp_maybe_release_buffers(b->conn);
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
		uint64_t t = now_ns();
		/* Mandatory: if the queue vanishes, tasks come back instead of
		 * being dropped and waited for in vain. */
		int rc = amqp_basic_publish(b->conn, CHANNEL, amqp_empty_bytes,
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
	uint64_t now = now_ns();
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

	b->start = now_ns();
	b->last_pub = b->start;
	for (;;) {
		if (interrupted) {
			warnx("interrupted");
			break;
		}
		int got = bench_drain(b);
		if (got < 0)
			return -1;
		uint64_t now = now_ns();
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
		now = now_ns();
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
	amqp_queue_declare(b->conn, CHANNEL, amqp_cstring_bytes(b->queue),
	    1, 0, 0, 0, amqp_empty_table);
	if (check_rpc(b->conn, "task queue") < 0)
		return -1;
	b->last_result = now_ns();
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
	uint64_t end = b->received > 0 ? b->last_result : now_ns();
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
	amqp_queue_declare(b->conn, CHANNEL, amqp_cstring_bytes(b->queue),
	    1, 0, 0, 0, amqp_empty_table);
	if (check_rpc(b->conn, "task queue") < 0)
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
	amqp_queue_declare_ok_t *ok = amqp_queue_declare(b->conn, CHANNEL,
	    amqp_empty_bytes, 0, 0, 1, 1, amqp_empty_table);
	if (ok == NULL) {
		check_rpc(b->conn, "declare reply queue");
		return -1;
	}
	b->reply_queue = amqp_bytes_malloc_dup(ok->queue);
	if (b->reply_queue.bytes == NULL) {
		warnx("out of memory");
		return -1;
	}
	/* No acks: a result is consumed the moment it arrives, so the broker
	 * never holds back results for want of our acks. */
	amqp_basic_consume(b->conn, CHANNEL, b->reply_queue, amqp_empty_bytes,
	    0, 1, 1, amqp_empty_table);
	if (check_rpc(b->conn, "consume reply queue") < 0)
		return -1;
	amqp_maybe_release_buffers(b->conn);
	b->fd = amqp_get_sockfd(b->conn);
	return 0;
}

static int
cmd_bench(struct global *g, int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "uri", required_argument, NULL, 'u' },
		{ "queue", required_argument, NULL, 'q' },
		{ "json", no_argument, NULL, 'J' },
		{ "wait", required_argument, NULL, 'W' },
		{ "transient", no_argument, NULL, 'X' },
		{ "no-wait", no_argument, NULL, 'N' },
		{ "reply-to", required_argument, NULL, 'R' },
		{ "help", no_argument, NULL, 'h' },
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
	while ((opt = getopt_long(argc, argv, "hu:q:n:r:c:t:P:", longopts,
	    NULL)) != -1) {
		if (common_option(g, opt))
			continue;
		switch (opt) {
		case 'n':
			/* Bounded so the per-task arrays stay allocatable. */
			if (parse_count(optarg, UINT32_MAX, &b.n) < 0 || b.n == 0) {
				warnx("-n wants a count from 1 to %" PRIu32, UINT32_MAX);
				return EXIT_CLIENT;
			}
			break;
		case 'r':
			if (parse_number(optarg, &b.rate) < 0) {
				warnx("-r wants a rate in tasks per second");
				return EXIT_CLIENT;
			}
			break;
		case 'c':
			if (parse_count(optarg, UINT64_MAX, &b.conc) < 0) {
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
		case 'J':
			json = true;
			break;
		case 'W':
			if (parse_number(optarg, &b.wait) < 0) {
				warnx("--wait wants a number of seconds");
				return EXIT_CLIENT;
			}
			break;
		case 'X':
			b.persistent = false;
			break;
		case 'N':
			b.no_wait = true;
			break;
		case 'R':
			b.reply_to = optarg;
			break;
		case 'h':
			usage();
			return EXIT_OK;
		default:
			usage_hint();
			return EXIT_CLIENT;
		}
	}
	if (optind != argc) {
		usage_hint();
		return EXIT_CLIENT;
	}
	if (b.reply_to != NULL && !b.no_wait) {
		warnx("--reply-to needs --no-wait (otherwise results come to taskctl)");
		return EXIT_CLIENT;
	}
	b.queue = g->queue;
	b.payload_len = strlen(b.payload);

	int status = EXIT_CLIENT;
	unsigned char r[8];
	if (install_signals(true) < 0) {
		warn("sigaction");
		goto out;
	}
	if (random_bytes(r, sizeof(r)) < 0) {
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
	b.conn = client_connect(g->uri, 0, "taskctl bench");
	if (b.conn == NULL || bench_setup(&b) < 0)
		goto out;
	int rc = bench_run(&b);
	if (b.no_wait) {
		if (rc < 0 || bench_barrier(&b) < 0 ||
		    bench_report_published(&b, json) < 0)
			goto out;
		status = interrupted || b.sent < b.n || b.returned > 0 ?
		    EXIT_CLIENT : EXIT_OK;
		goto out;
	}
	if (bench_report(&b, json) < 0 || rc < 0)
		goto out;
	if (interrupted || b.received + b.returned < b.sent || b.returned > 0 ||
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
	return status;
}

/* ---- main --------------------------------------------------------------- */

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		{ "uri", required_argument, NULL, 'u' },
		{ "queue", required_argument, NULL, 'q' },
		{ "help", no_argument, NULL, 'h' },
		{ NULL, 0, NULL, 0 },
	};
	struct global g = { DEFAULT_URI, DEFAULT_QUEUE };
	int opt;

	/* "+": stop at the command name; its options are its own. */
	while ((opt = getopt_long(argc, argv, "+hu:q:", longopts, NULL)) != -1) {
		if (common_option(&g, opt))
			continue;
		if (opt == 'h') {
			usage();
			return EXIT_OK;
		}
		usage_hint();
		return EXIT_CLIENT;
	}
	if (optind >= argc) {
		usage_hint();
		return EXIT_CLIENT;
	}
	const char *cmd = argv[optind];
	if (strcmp(cmd, "submit") == 0)
		return cmd_submit(&g, argc - optind, argv + optind);
	if (strcmp(cmd, "bench") == 0)
		return cmd_bench(&g, argc - optind, argv + optind);
	warnx("unknown command '%s'", cmd);
	usage_hint();
	return EXIT_CLIENT;
}
