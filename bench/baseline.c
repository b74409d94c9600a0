/*
 * baseline: the broker's limit for taskd's echo path.
 *
 *   baseline -u amqp://guest:guest@127.0.0.1:PORT/ -q QUEUE [-p PREFETCH] [-n N]
 *
 * A deliberately minimal consumer that moves messages exactly the way taskd
 * does for an "echo" task, and nothing else: one connection, channel 1 with
 * basic.qos and a manual-ack consumer, channel 2 in confirm mode for the
 * replies.  Every delivery with a reply_to gets a reply (same body,
 * correlation_id copied, mandatory, default exchange), and is acked only
 * after the broker confirmed that reply; a delivery without reply_to is acked
 * at once, as taskd does after its handler finished.  What taskd adds on top
 * (task lookup, handlers, coroutines, the event loop) is the overhead a
 * benchmark against this program measures.
 *
 * The loop batches the way a careful event loop would: block for one frame,
 * take every frame already available, publish the replies of the complete
 * deliveries, then ack the longest confirmed prefix with one multiple ack.
 * Plain blocking rabbitmq-c calls, no threads.  Heartbeats are off: a run
 * lasts seconds and the traffic never stops.
 *
 * Exit: after N acked messages (-n), or on SIGTERM/SIGINT, printing the
 * count and elapsed time; status 1 on any broker or usage error.
 */

#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <amqp.h>
#include <amqp_framing.h>
#include <amqp_tcp_socket.h>

#include "rpcerr.h"

#define CH_CONSUME 1
#define CH_PUBLISH 2
/* A bound on frames taken per batch, so a flood of deliveries cannot
 * postpone publishing (and therefore acking) without limit. */
#define BATCH_FRAMES 8192

static volatile sig_atomic_t stop_requested;

/* A growable byte string; the bytes come from the broker, so no fixed size. */
struct bytes {
	uint8_t *p;
	size_t len;
	size_t cap;
};

/* One delivery, from basic.deliver until its ack. */
enum slot_state {
	SLOT_ASSEMBLING, /* deliver seen; header or body frames still due */
	SLOT_READY,      /* complete; reply not yet published */
	SLOT_PUBLISHED,  /* reply published as sequence number seq; no confirm yet */
	SLOT_CONFIRMED,  /* reply confirmed (or none needed): may be acked */
	SLOT_NACKED,     /* the broker refused the reply: requeue the delivery */
};

struct slot {
	enum slot_state state;
	uint64_t tag;           /* delivery tag on channel 1 */
	uint64_t seq;           /* publish sequence number on channel 2 */
	uint64_t body_left;     /* body bytes still expected */
	bool has_reply_to;
	bool has_corr;
	bool persistent;        /* delivery mode 2: so is its reply, as taskd's */
	struct bytes reply_to;
	struct bytes corr;
	struct bytes body;
};

/*
 * The deliveries not yet acked, in delivery order, as a ring indexed by
 * ever-increasing positions.  Order matters twice: replies are published in
 * this order (so their sequence numbers increase along the ring) and a
 * multiple ack covers a prefix of it.
 */
struct ring {
	struct slot *slots;
	uint64_t cap;           /* a power of two */
	uint64_t head;          /* oldest unacked delivery */
	uint64_t confirm;       /* everything before it is confirmed or nacked */
	uint64_t publish;       /* first delivery whose reply is not published */
	uint64_t tail;          /* one past the newest delivery */
};

struct baseline {
	amqp_connection_state_t conn;
	struct ring ring;
	uint64_t next_seq;      /* sequence number of the next publish */
	uint64_t returns_left;  /* body bytes of a basic.return still to skip */
	bool in_return;         /* a basic.return's header is due on channel 2 */
	uint64_t acked;
	uint64_t requeued;
	uint64_t returned;       /* replies to a missing queue */
	uint64_t returned_direct; /* replies to direct reply-to (see on_method) */
	uint64_t stop_after;    /* 0 = run until signalled */
	struct timespec first;  /* first delivery */
	struct timespec last;   /* last ack */
	bool started;
	bool full_props;        /* -H: replies shaped like taskd's results */
	const char *subset;     /* -S: only these of them (NULL = all) */
};

static void
usage(FILE *f)
{
	fprintf(f, "usage: baseline -u URI -q QUEUE [-p PREFETCH] [-n STOP_AFTER_N] [-H [-S SUBSET]]\n"
	    "  -u URI       amqp://user:pass@host:port/vhost\n"
	    "  -q QUEUE     queue to consume (must exist)\n"
	    "  -p PREFETCH  basic.qos prefetch count (default 2000, 0 = unlimited)\n"
	    "  -n N         exit after N messages were acked\n"
	    "  -H           send replies with the properties and headers of a taskd\n"
	    "               result (design section 4), so the broker does the same work\n"
	    "  -S SUBSET    with -H, only some of them, to see what costs the broker:\n"
	    "               t type, a app_id, s timestamp, d delivery_mode, a digit N\n"
	    "               the first N taskd-* headers, L a 41-byte taskd-status value\n");
}

static void
on_signal(int sig)
{
	(void)sig;
	stop_requested = 1;
}

static double
seconds_between(const struct timespec *a, const struct timespec *b)
{
	return (double)(b->tv_sec - a->tv_sec) +
	    (double)(b->tv_nsec - a->tv_nsec) / 1e9;
}

static int
bytes_append(struct bytes *b, const void *p, size_t n)
{
	if (n > SIZE_MAX - b->len)
		return -1;
	if (b->len + n > b->cap) {
		size_t cap = b->cap ? b->cap : 64;
		while (cap < b->len + n) {
			if (cap > SIZE_MAX / 2)
				return -1;
			cap *= 2;
		}
		uint8_t *q = realloc(b->p, cap);
		if (q == NULL)
			return -1;
		b->p = q;
		b->cap = cap;
	}
	if (n > 0)
		memcpy(b->p + b->len, p, n);
	b->len += n;
	return 0;
}

static int
bytes_set(struct bytes *b, amqp_bytes_t src)
{
	b->len = 0;
	return bytes_append(b, src.bytes, src.len);
}

static amqp_bytes_t
bytes_view(const struct bytes *b)
{
	amqp_bytes_t v = { b->len, b->p };
	return v;
}

static struct slot *
ring_at(struct ring *r, uint64_t pos)
{
	return &r->slots[pos & (r->cap - 1)];
}

/* Appends a fresh slot, doubling the ring when full; NULL when out of memory.
 * The slot's buffers are kept from its previous use, so the steady state
 * allocates nothing. */
static struct slot *
ring_push(struct ring *r)
{
	if (r->tail - r->head == r->cap) {
		uint64_t cap = r->cap ? r->cap * 2 : 1024;
		struct slot *s = calloc(cap, sizeof(*s));
		if (s == NULL)
			return NULL;
		/* Full, so every slot is live: move each (buffers and all) to
		 * where its absolute position maps in the bigger ring. */
		for (uint64_t pos = r->head; pos < r->tail; pos++)
			s[pos & (cap - 1)] = *ring_at(r, pos);
		free(r->slots);
		r->slots = s;
		r->cap = cap;
	}
	struct slot *slot = ring_at(r, r->tail++);
	slot->state = SLOT_ASSEMBLING;
	slot->tag = 0;
	slot->seq = 0;
	slot->body_left = 0;
	slot->has_reply_to = false;
	slot->has_corr = false;
	slot->persistent = false;
	slot->reply_to.len = slot->corr.len = slot->body.len = 0;
	return slot;
}

static void
ring_free(struct ring *r)
{
	for (uint64_t i = 0; i < r->cap; i++) {
		free(r->slots[i].reply_to.p);
		free(r->slots[i].corr.p);
		free(r->slots[i].body.p);
	}
	free(r->slots);
	memset(r, 0, sizeof(*r));
}

static void
report_rpc(const char *what, amqp_rpc_reply_t r)
{
	char *text = rpcerr_text(r, what);
	fprintf(stderr, "baseline: %s\n", text != NULL ? text : what);
	free(text);
}

static int
check_rpc(amqp_connection_state_t conn, const char *what)
{
	amqp_rpc_reply_t r = amqp_get_rpc_reply(conn);
	if (r.reply_type == AMQP_RESPONSE_NORMAL)
		return 0;
	report_rpc(what, r);
	return -1;
}

static int
connect_broker(struct baseline *b, const char *uri, const char *queue,
    uint16_t prefetch)
{
	struct amqp_connection_info ci;
	char *copy = strdup(uri);   /* amqp_parse_url writes into its argument */
	if (copy == NULL) {
		fprintf(stderr, "baseline: out of memory\n");
		return -1;
	}
	int rc = amqp_parse_url(copy, &ci);
	if (rc != AMQP_STATUS_OK) {
		fprintf(stderr, "baseline: bad URI: %s\n", amqp_error_string2(rc));
		free(copy);
		return -1;
	}
	if (ci.ssl) {
		fprintf(stderr, "baseline: amqps is not supported; "
		    "measure the broker over plain TCP\n");
		free(copy);
		return -1;
	}

	b->conn = amqp_new_connection();
	amqp_socket_t *sock = b->conn ? amqp_tcp_socket_new(b->conn) : NULL;
	if (sock == NULL) {
		fprintf(stderr, "baseline: out of memory\n");
		free(copy);
		return -1;
	}
	struct timeval tmo = { 10, 0 };
	rc = amqp_socket_open_noblock(sock, ci.host, ci.port, &tmo);
	if (rc != AMQP_STATUS_OK) {
		fprintf(stderr, "baseline: connect %s:%d: %s\n", ci.host, ci.port,
		    amqp_error_string2(rc));
		free(copy);
		return -1;
	}
	/* "amqp://host:port/" parses to the empty vhost, which RabbitMQ never
	 * has; the default vhost is what such a URI means in practice. */
	const char *vhost = ci.vhost[0] != '\0' ? ci.vhost : "/";
	amqp_rpc_reply_t r = amqp_login(b->conn, vhost, 0, 131072, 0,
	    AMQP_SASL_METHOD_PLAIN, ci.user, ci.password);
	free(copy);
	if (r.reply_type != AMQP_RESPONSE_NORMAL) {
		report_rpc("login", r);
		return -1;
	}

	amqp_channel_open(b->conn, CH_CONSUME);
	if (check_rpc(b->conn, "channel.open 1") < 0)
		return -1;
	amqp_channel_open(b->conn, CH_PUBLISH);
	if (check_rpc(b->conn, "channel.open 2") < 0)
		return -1;
	amqp_confirm_select(b->conn, CH_PUBLISH);
	if (check_rpc(b->conn, "confirm.select") < 0)
		return -1;
	amqp_basic_qos(b->conn, CH_CONSUME, 0, prefetch, 0);
	if (check_rpc(b->conn, "basic.qos") < 0)
		return -1;
	amqp_basic_consume(b->conn, CH_CONSUME, amqp_cstring_bytes(queue),
	    amqp_empty_bytes, 0, 0, 0, amqp_empty_table);
	if (check_rpc(b->conn, "basic.consume") < 0)
		return -1;
	return 0;
}

/* Channel 1: basic.deliver, then one header frame, then body frames. */
static int
on_deliver(struct baseline *b, const amqp_basic_deliver_t *d)
{
	struct slot *cur = b->ring.tail > b->ring.head ?
	    ring_at(&b->ring, b->ring.tail - 1) : NULL;
	if (cur != NULL && cur->state == SLOT_ASSEMBLING) {
		fprintf(stderr, "baseline: basic.deliver inside a message\n");
		return -1;
	}
	struct slot *s = ring_push(&b->ring);
	if (s == NULL) {
		fprintf(stderr, "baseline: out of memory\n");
		return -1;
	}
	s->tag = d->delivery_tag;
	if (!b->started) {
		b->started = true;
		/* CLOCK_MONOTONIC cannot fail given a valid pointer. */
		clock_gettime(CLOCK_MONOTONIC, &b->first);
	}
	return 0;
}

static struct slot *
assembling(struct baseline *b)
{
	if (b->ring.tail == b->ring.head)
		return NULL;
	struct slot *s = ring_at(&b->ring, b->ring.tail - 1);
	return s->state == SLOT_ASSEMBLING ? s : NULL;
}

static void
content_done(struct slot *s)
{
	/* Nowhere to reply: the work is done, so it may be acked at once. */
	s->state = s->has_reply_to ? SLOT_READY : SLOT_CONFIRMED;
}

static int
on_header(struct baseline *b, const amqp_frame_t *f)
{
	struct slot *s = assembling(b);
	if (s == NULL || s->body_left != 0 || s->body.len != 0) {
		fprintf(stderr, "baseline: content header without basic.deliver\n");
		return -1;
	}
	const amqp_basic_properties_t *p = f->payload.properties.decoded;
	if ((p->_flags & AMQP_BASIC_REPLY_TO_FLAG) && p->reply_to.len > 0) {
		if (bytes_set(&s->reply_to, p->reply_to) < 0)
			goto nomem;
		s->has_reply_to = true;
	}
	if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
		if (bytes_set(&s->corr, p->correlation_id) < 0)
			goto nomem;
		s->has_corr = true;
	}
	s->persistent = (p->_flags & AMQP_BASIC_DELIVERY_MODE_FLAG) &&
	    p->delivery_mode == 2;
	s->body_left = f->payload.properties.body_size;
	if (s->body_left == 0)
		content_done(s);
	return 0;
nomem:
	fprintf(stderr, "baseline: out of memory\n");
	return -1;
}

static int
on_body(struct baseline *b, const amqp_frame_t *f)
{
	struct slot *s = assembling(b);
	size_t n = f->payload.body_fragment.len;
	if (s == NULL || n > s->body_left) {
		fprintf(stderr, "baseline: unexpected body frame\n");
		return -1;
	}
	/* The body is only kept when it will be echoed. */
	if (s->has_reply_to &&
	    bytes_append(&s->body, f->payload.body_fragment.bytes, n) < 0) {
		fprintf(stderr, "baseline: out of memory\n");
		return -1;
	}
	s->body_left -= n;
	if (s->body_left == 0)
		content_done(s);
	return 0;
}

/* Channel 2: basic.ack / basic.nack for our replies.  Sequence numbers
 * increase along the ring, so "multiple" marks a run from the cursor. */
static void
on_confirm(struct baseline *b, uint64_t tag, bool multiple, bool ok)
{
	struct ring *r = &b->ring;
	enum slot_state to = ok ? SLOT_CONFIRMED : SLOT_NACKED;

	for (uint64_t pos = r->confirm; pos < r->publish; pos++) {
		struct slot *s = ring_at(r, pos);
		if (s->state != SLOT_PUBLISHED)
			continue;
		if (s->seq > tag)
			break;
		if (multiple || s->seq == tag)
			s->state = to;
		if (s->seq == tag)
			break;
	}
	/* Advance the cursor over what is settled, so later scans start late. */
	while (r->confirm < r->publish &&
	    ring_at(r, r->confirm)->state != SLOT_PUBLISHED)
		r->confirm++;
}

static int
on_method(struct baseline *b, const amqp_frame_t *f)
{
	amqp_method_t m = f->payload.method;

	switch (m.id) {
	case AMQP_BASIC_DELIVER_METHOD:
		if (f->channel != CH_CONSUME)
			break;
		return on_deliver(b, m.decoded);
	case AMQP_BASIC_ACK_METHOD: {
		const amqp_basic_ack_t *a = m.decoded;
		on_confirm(b, a->delivery_tag, a->multiple, true);
		return 0;
	}
	case AMQP_BASIC_NACK_METHOD: {
		const amqp_basic_nack_t *n = m.decoded;
		on_confirm(b, n->delivery_tag, n->multiple, false);
		return 0;
	}
	case AMQP_BASIC_RETURN_METHOD: {
		/* The client's reply queue is gone; the confirm that follows
		 * still settles the reply, as in taskd.  Skip the content.
		 * RabbitMQ 3.x routes direct reply-to outside the routing
		 * table, so a mandatory reply there always comes back as
		 * NO_ROUTE, delivered or not: count those apart. */
		const amqp_basic_return_t *r = m.decoded;
		static const char direct[] = "amq.rabbitmq.reply-to.";
		if (r->routing_key.len >= sizeof(direct) - 1 &&
		    memcmp(r->routing_key.bytes, direct, sizeof(direct) - 1) == 0)
			b->returned_direct++;
		else
			b->returned++;
		b->in_return = true;
		return 0;
	}
	case AMQP_CHANNEL_CLOSE_METHOD: {
		const amqp_channel_close_t *c = m.decoded;
		fprintf(stderr, "baseline: broker closed channel %u: %u %.*s\n",
		    f->channel, c->reply_code, (int)c->reply_text.len,
		    (const char *)c->reply_text.bytes);
		return -1;
	}
	case AMQP_CONNECTION_CLOSE_METHOD: {
		const amqp_connection_close_t *c = m.decoded;
		fprintf(stderr, "baseline: broker closed the connection: %u %.*s\n",
		    c->reply_code, (int)c->reply_text.len,
		    (const char *)c->reply_text.bytes);
		return -1;
	}
	default:
		break;
	}
	fprintf(stderr, "baseline: unexpected method 0x%08x on channel %u\n",
	    m.id, f->channel);
	return -1;
}

static int
on_frame(struct baseline *b, const amqp_frame_t *f)
{
	switch (f->frame_type) {
	case AMQP_FRAME_METHOD:
		return on_method(b, f);
	case AMQP_FRAME_HEADER:
		if (f->channel == CH_PUBLISH && b->in_return) {
			b->in_return = false;
			b->returns_left = f->payload.properties.body_size;
			return 0;
		}
		return on_header(b, f);
	case AMQP_FRAME_BODY:
		if (f->channel == CH_PUBLISH) {
			size_t n = f->payload.body_fragment.len;
			b->returns_left -= n < b->returns_left ? n : b->returns_left;
			return 0;
		}
		return on_body(b, f);
	default:
		return 0;
	}
}

/* Reads one frame: waits up to timeout (NULL = forever).  Returns 1 for a
 * frame handled, 0 when none came in time, -1 on error. */
static int
read_one(struct baseline *b, struct timeval *timeout)
{
	amqp_frame_t f;
	int rc = amqp_simple_wait_frame_noblock(b->conn, &f, timeout);
	if (rc == AMQP_STATUS_TIMEOUT)
		return 0;
	if (rc != AMQP_STATUS_OK) {
		fprintf(stderr, "baseline: read: %s\n", amqp_error_string2(rc));
		return -1;
	}
	return on_frame(b, &f) < 0 ? -1 : 1;
}

/* What a taskd result carries besides the correlation: the broker parses
 * and stores every one of these, which is a large part of its cost per
 * message, so a fair peer sends them too.  Values of typical length. */
static void
full_props(amqp_basic_properties_t *p, amqp_table_entry_t h[5], const char *subset)
{
	static const struct { const char *k, *v; } str[] = {
		{ "taskd-status", "ok" },
		{ "taskd-task-id", "5b0c7f0e-0d5e-4c59-9a53-9d3c7a1f2e11" },
		{ "taskd-worker", "baseline-host:4242" },
	};
	for (int i = 0; i < 3; i++) {
		h[i].key = amqp_cstring_bytes(str[i].k);
		h[i].value.kind = AMQP_FIELD_KIND_UTF8;
		h[i].value.value.bytes = amqp_cstring_bytes(str[i].v);
	}
	h[3].key = amqp_cstring_bytes("taskd-attempt");
	h[3].value.kind = AMQP_FIELD_KIND_I32;
	h[3].value.value.i32 = 1;
	h[4].key = amqp_cstring_bytes("taskd-duration-us");
	h[4].value.kind = AMQP_FIELD_KIND_I64;
	h[4].value.value.i64 = 12;
	p->_flags = AMQP_BASIC_TYPE_FLAG | AMQP_BASIC_APP_ID_FLAG |
	    AMQP_BASIC_TIMESTAMP_FLAG | AMQP_BASIC_DELIVERY_MODE_FLAG |
	    AMQP_BASIC_HEADERS_FLAG;
	p->type = amqp_cstring_bytes("echo");
	p->app_id = amqp_cstring_bytes("taskd");
	p->timestamp = (uint64_t)time(NULL);
	p->delivery_mode = 1;
	p->headers.num_entries = 5;
	p->headers.entries = h;
	if (subset == NULL)
		return;
	static const struct { char c; amqp_flags_t flag; } fields[] = {
		{ 't', AMQP_BASIC_TYPE_FLAG }, { 'a', AMQP_BASIC_APP_ID_FLAG },
		{ 's', AMQP_BASIC_TIMESTAMP_FLAG }, { 'd', AMQP_BASIC_DELIVERY_MODE_FLAG },
	};
	p->_flags = 0;
	p->headers.num_entries = 0;
	for (size_t i = 0; i < sizeof(fields) / sizeof(fields[0]); i++)
		if (strchr(subset, fields[i].c) != NULL)
			p->_flags |= fields[i].flag;
	for (const char *c = subset; *c != '\0'; c++)
		if (*c >= '1' && *c <= '5')
			p->headers.num_entries = *c - '0';
	if (p->headers.num_entries > 0)
		p->_flags |= AMQP_BASIC_HEADERS_FLAG;
	if (strchr(subset, 'L') != NULL)
		h[0].value.value.bytes =
		    amqp_cstring_bytes("ok-ok-ok-ok-ok-ok-ok-ok-ok-ok-ok-ok-ok-ok");
}

static bool
is_direct(const struct bytes *q)
{
	static const char direct[] = "amq.rabbitmq.reply-to";
	static const char named[] = "amq.gen-";
	return (q->len >= sizeof(direct) - 1 &&
	    memcmp(q->p, direct, sizeof(direct) - 1) == 0) ||
	    (q->len >= sizeof(named) - 1 && memcmp(q->p, named, sizeof(named) - 1) == 0);
}

/* Publishes the replies of every complete delivery, in ring order. */
static int
publish_ready(struct baseline *b)
{
	struct ring *r = &b->ring;

	for (; r->publish < r->tail; r->publish++) {
		struct slot *s = ring_at(r, r->publish);
		if (s->state == SLOT_ASSEMBLING)
			break;
		if (s->state != SLOT_READY)
			continue;   /* no reply_to: already settled */
		amqp_basic_properties_t props;
		memset(&props, 0, sizeof(props));
		amqp_table_entry_t h[5];
		if (b->full_props)
			full_props(&props, h, b->subset);
		if (s->has_corr) {
			props._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
			props.correlation_id = bytes_view(&s->corr);
		}
		/* A persistent task's reply to a named queue is persistent in
		 * taskd (envelope_result_persistent), so the broker writes it to
		 * disk: the same work here. */
		if (s->persistent && !is_direct(&s->reply_to)) {
			props._flags |= AMQP_BASIC_DELIVERY_MODE_FLAG;
			props.delivery_mode = 2;
		}
		int rc = amqp_basic_publish(b->conn, CH_PUBLISH, amqp_empty_bytes,
		    bytes_view(&s->reply_to), 1, 0, &props, bytes_view(&s->body));
		if (rc != AMQP_STATUS_OK) {
			fprintf(stderr, "baseline: publish: %s\n",
			    amqp_error_string2(rc));
			return -1;
		}
		s->seq = ++b->next_seq;
		s->state = SLOT_PUBLISHED;
	}
	/* Slots without a reply may sit in front of the confirm cursor. */
	while (r->confirm < r->publish &&
	    ring_at(r, r->confirm)->state != SLOT_PUBLISHED)
		r->confirm++;
	return 0;
}

/* Acks the settled prefix of the ring: one multiple ack for each run of
 * confirmed deliveries, a requeueing nack for each refused reply. */
static int
ack_settled(struct baseline *b)
{
	struct ring *r = &b->ring;
	uint64_t last = 0;
	int rc;

	while (r->head < r->confirm) {
		struct slot *s = ring_at(r, r->head);
		if (s->state == SLOT_CONFIRMED) {
			last = s->tag;
			b->acked++;
		} else if (s->state == SLOT_NACKED) {
			if (last != 0) {
				rc = amqp_basic_ack(b->conn, CH_CONSUME, last, 1);
				if (rc != AMQP_STATUS_OK)
					goto fail;
				last = 0;
			}
			rc = amqp_basic_nack(b->conn, CH_CONSUME, s->tag, 0, 1);
			if (rc != AMQP_STATUS_OK)
				goto fail;
			b->requeued++;
		} else {
			break;
		}
		r->head++;
	}
	if (last != 0) {
		rc = amqp_basic_ack(b->conn, CH_CONSUME, last, 1);
		if (rc != AMQP_STATUS_OK)
			goto fail;
		clock_gettime(CLOCK_MONOTONIC, &b->last);
	}
	return 0;
fail:
	fprintf(stderr, "baseline: ack: %s\n", amqp_error_string2(rc));
	return -1;
}

static int
run(struct baseline *b)
{
	while (!stop_requested) {
		/* Short waits so a signal is noticed: rabbitmq-c retries EINTR. */
		struct timeval wait = { 0, 200000 };
		int got = read_one(b, &wait);
		if (got < 0)
			return -1;
		if (got == 0)
			continue;
		struct timeval zero = { 0, 0 };
		for (int i = 1; i < BATCH_FRAMES; i++) {
			got = read_one(b, &zero);
			if (got < 0)
				return -1;
			if (got == 0)
				break;
		}
		if (publish_ready(b) < 0 || ack_settled(b) < 0)
			return -1;
		/* Everything needed later was copied out of the frames. */
		amqp_maybe_release_buffers(b->conn);
		if (b->stop_after != 0 && b->acked >= b->stop_after)
			break;
	}
	return 0;
}

static void
report(const struct baseline *b)
{
	double secs = 0.0;
	if (b->started && b->acked > 0)
		secs = seconds_between(&b->first, &b->last);
	printf("baseline: %" PRIu64 " messages in %.3f s: %.0f msg/s\n",
	    b->acked, secs, secs > 0 ? (double)b->acked / secs : 0.0);
	if (b->returned > 0 || b->returned_direct > 0 || b->requeued > 0)
		printf("baseline: returned: %" PRIu64 " replies to missing queues, "
		    "%" PRIu64 " to direct reply-to (RabbitMQ 3.x returns those "
		    "even when delivered); %" PRIu64 " deliveries requeued after "
		    "a nack\n", b->returned, b->returned_direct, b->requeued);
	fflush(stdout);
}

static void
disconnect(struct baseline *b)
{
	if (b->conn == NULL)
		return;
	/* Unacked deliveries go back to the queue when the channel closes. */
	amqp_channel_close(b->conn, CH_PUBLISH, AMQP_REPLY_SUCCESS);
	amqp_channel_close(b->conn, CH_CONSUME, AMQP_REPLY_SUCCESS);
	amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
	amqp_destroy_connection(b->conn);
	b->conn = NULL;
}

static int
parse_count(const char *s, unsigned long long max, unsigned long long *out)
{
	char *end;
	errno = 0;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || end == s || *end != '\0' || s[0] == '-' || v > max)
		return -1;
	*out = v;
	return 0;
}

int
main(int argc, char **argv)
{
	const char *uri = NULL, *queue = NULL;
	unsigned long long prefetch = 2000, stop_after = 0;
	int opt;

	bool full = false;
	const char *subset = NULL;
	while ((opt = getopt(argc, argv, "hHS:u:q:p:n:")) != -1) {
		switch (opt) {
		case 'u':
			uri = optarg;
			break;
		case 'q':
			queue = optarg;
			break;
		case 'p':
			if (parse_count(optarg, UINT16_MAX, &prefetch) < 0) {
				fprintf(stderr, "baseline: -p wants 0..65535\n");
				return 1;
			}
			break;
		case 'n':
			if (parse_count(optarg, UINT64_MAX, &stop_after) < 0) {
				fprintf(stderr, "baseline: -n wants a count\n");
				return 1;
			}
			break;
		case 'H':
			full = true;
			break;
		case 'S':
			if (optarg[strspn(optarg, "tasd12345L")] != '\0') {
				fprintf(stderr, "baseline: -S wants letters of tasdL and a digit 1-5\n");
				return 1;
			}
			subset = optarg;
			break;
		case 'h':
			usage(stdout);
			return 0;
		default:
			usage(stderr);
			return 1;
		}
	}
	if (uri == NULL || queue == NULL || optind != argc) {
		usage(stderr);
		return 1;
	}

	struct sigaction sa;
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_signal;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL) < 0 || sigaction(SIGINT, &sa, NULL) < 0) {
		perror("baseline: sigaction");
		return 1;
	}
	/* A broker that drops the connection must not kill us mid-report. */
	sa.sa_handler = SIG_IGN;
	if (sigaction(SIGPIPE, &sa, NULL) < 0) {
		perror("baseline: sigaction");
		return 1;
	}

	struct baseline b;
	memset(&b, 0, sizeof(b));
	b.stop_after = stop_after;
	b.full_props = full || subset != NULL;
	b.subset = subset;
	int status = 0;
	if (connect_broker(&b, uri, queue, (uint16_t)prefetch) < 0 || run(&b) < 0)
		status = 1;
	report(&b);
	disconnect(&b);
	ring_free(&b.ring);
	return status;
}
