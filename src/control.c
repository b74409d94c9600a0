/* control: fleet control over AMQP (control.h, docs/protocol.md). */
#include "control.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <amqp_framing.h>

#include "buf.h"
#include "idset.h"
#include "ctlreq.h"
#include "failovers.h"
#include "log.h"
#include "pool.h"

#define CH_LIVE BROKER_CH_SIDE
#define CH_LOG (BROKER_CH_SIDE + 1)
/* Stream deliveries unacked at once (a stream consumer needs a prefetch). */
#define LOG_PREFETCH 200
/* How many cancelled ids a node remembers at most (a flood of cancels
 * must not eat the node's memory): each costs its id and ~40 bytes. */
#define CANCELS_MAX 100000
/* Deliveries ended by failovers remembered at most (a node has at most
 * its prefetch in flight at a failover; a fleet's worth fits). */
#define FAILOVERS_MAX 200000
/* Retry of a report the connection could not take at once. */
#define REPORT_RETRY 0.2
#define EXPIRE_EVERY 60.0
#define LOG_SEGMENT_BYTES 4000000
/* Times the live channel is opened again after the broker closed it, per
 * connection: a request that makes the broker close it must not turn
 * fleet control off, nor a refusal that repeats loop for ever. */
#define LIVE_REOPENS 5

/* One channel's message in progress (deliver -> header -> body). */
struct rx {
	bool in;              /* a deliver came; its content is due */
	bool header;          /* its header came */
	bool oversized;       /* body over CTLREQ_MAX_BODY: counted, not kept */
	uint64_t tag;
	uint64_t left;        /* body bytes still due */
	struct buf type, reply_to, corr;
	bool has_reply_to, has_corr;
	double timestamp;     /* seconds since the epoch; 0 = none */
	struct buf body;
};

enum log_step {
	LOG_DECLARE,          /* first try: declare the stream */
	LOG_USE,              /* it exists with other arguments: use it */
	LOG_OFF,              /* no stream on this connection */
};

struct control {
	struct ev_loop *loop;
	struct broker *broker;
	struct dispatch *dispatch;
	struct pool *pool;
	char *exchange, *node, *queue, *stream;
	double ttl;
	double started;       /* ev_now at start, for uptime */
	struct idset *cancels;
	struct failovers *failovers;
	ev_timer expire;
	ev_timer report;      /* retries telling the fleet of our failovers */
	struct rx live, log;
	enum log_step log_step;
	bool live_up, log_up; /* the channel is open on this connection */
	int live_reopens;     /* on this connection */
};

static void
rx_clear(struct rx *r)
{
	r->in = r->header = r->oversized = false;
	r->has_reply_to = r->has_corr = false;
	r->timestamp = 0;
	r->left = 0;
	buf_reset(&r->type);
	buf_reset(&r->reply_to);
	buf_reset(&r->corr);
	buf_reset(&r->body);
}

static void
rx_free(struct rx *r)
{
	buf_free(&r->type);
	buf_free(&r->reply_to);
	buf_free(&r->corr);
	buf_free(&r->body);
}

/* ---- requests ------------------------------------------------------------- */

/* The JSON text of s (NULL = null). */
static int
json_str(struct buf *b, const char *s)
{
	if (s == NULL)
		return buf_puts(b, "null");
	if (buf_puts(b, "\"") < 0 || buf_json_string(b, s, strlen(s)) < 0)
		return -1;
	return buf_puts(b, "\"");
}

struct status_ctx {
	struct buf *b;
	bool first;
	int rc;
};

static void
status_task(void *ctx, const struct dispatch_running *r)
{
	struct status_ctx *s = ctx;
	struct buf *b = s->b;
	if (s->rc < 0)
		return;
	if ((!s->first && buf_puts(b, ",") < 0) ||
	    buf_puts(b, "{\"id\":") < 0 || json_str(b, r->id) < 0 ||
	    buf_puts(b, ",\"task\":") < 0 || json_str(b, r->task) < 0 ||
	    buf_printf(b, ",\"kind\":\"%s\",\"seconds\":%.3f}", r->cpu ? "cpu" : "io",
	    r->seconds) < 0)
		s->rc = -1;
	s->first = false;
}

static int
status_body(struct control *c, struct buf *b)
{
	struct dispatch_stats st;
	dispatch_stats(c->dispatch, &st);
	struct pool_stats ps = { 0 };
	if (c->pool != NULL)
		pool_stats(c->pool, &ps);
	const char *peer = broker_peer(c->broker);

	if (buf_puts(b, "{\"node\":") < 0 || json_str(b, c->node) < 0 ||
	    buf_puts(b, ",\"version\":") < 0 || json_str(b, PACKAGE_VERSION) < 0 ||
	    buf_printf(b, ",\"uptime_s\":%.3f,\"broker\":", ev_now(c->loop) - c->started) < 0 ||
	    json_str(b, peer) < 0 || buf_puts(b, ",\"tasks\":[") < 0)
		return -1;
	struct status_ctx s = { b, true, 0 };
	dispatch_each_running(c->dispatch, status_task, &s);
	if (s.rc < 0)
		return -1;
	int idle = ps.alive - ps.busy;
	return buf_printf(b, "],\"io_running\":%zu,\"cpu_running\":%zu,\"in_flight\":%zu,"
	    "\"pool\":{\"size\":%d,\"alive\":%d,\"busy\":%d,\"idle\":%d,\"backlog\":%zu,"
	    "\"spawned\":%" PRIu64 ",\"crashed\":%" PRIu64 ",\"recycled\":%" PRIu64
	    ",\"killed\":%" PRIu64 "},"
	    "\"totals\":{\"ok\":%" PRIu64 ",\"failed\":%" PRIu64 ",\"rejected\":%" PRIu64
	    ",\"cancelled\":%" PRIu64 ",\"requeued\":%" PRIu64 "},"
	    "\"cancels_remembered\":%zu,\"failovers_remembered\":%zu}",
	    st.io_running, st.cpu_running, st.in_flight,
	    ps.size, ps.alive, ps.busy, idle > 0 ? idle : 0, ps.backlog,
	    ps.spawned, ps.crashed, ps.recycled, ps.killed,
	    st.ok, st.failed, st.rejected, st.cancelled, st.requeued,
	    idset_count(c->cancels), failovers_count(c->failovers));
}

static const char *
found_name(enum dispatch_cancel f)
{
	switch (f) {
	case DISPATCH_CANCEL_NONE: return "not_here";
	case DISPATCH_CANCEL_DONE: return "finished";
	case DISPATCH_CANCEL_QUEUED: return "queued";
	case DISPATCH_CANCEL_IO: return "running_io";
	case DISPATCH_CANCEL_CPU: return "running_cpu";
	}
	return "not_here";
}

/* Applies a cancel: remembers the ids until the request's time plus the
 * TTL and, when live (from the node's own queue), stops the tasks here.
 * The stream's copy of a request only remembers: it can come before the
 * live copy, and a task it stopped would then be reported finished to
 * the client waiting for the live answer.  With reply, writes what was
 * found. */
static int
apply_cancel(struct control *c, const struct ctlreq *q, double stamp, bool live,
    struct buf *reply)
{
	double now = ev_now(c->loop);
	/* A clock ahead of ours must not make an id live longer than asked. */
	double expires = (stamp > 0 && stamp < now ? stamp : now) + c->ttl;
	if (expires <= now)
		return reply == NULL ? 0 : buf_puts(reply, "null");
	if (reply != NULL && (buf_puts(reply, "{\"node\":") < 0 ||
	    json_str(reply, c->node) < 0 ||
	    buf_printf(reply, ",\"ttl_s\":%.0f,\"ids\":[", c->ttl) < 0))
		return -1;
	for (size_t i = 0; i < q->nids; i++) {
		const char *id = q->ids[i];
		size_t n = strlen(id);
		if (idset_add(c->cancels, id, n, expires) < 0)
			log_warn("out of memory: cancel of task %s not remembered", id);
		enum dispatch_cancel f = live ? dispatch_cancel(c->dispatch, id, n) :
		    DISPATCH_CANCEL_NONE;
		if (reply != NULL && ((i > 0 && buf_puts(reply, ",") < 0) ||
		    buf_puts(reply, "{\"id\":") < 0 || json_str(reply, id) < 0 ||
		    buf_printf(reply, ",\"found\":\"%s\"}", found_name(f)) < 0))
			return -1;
	}
	return reply == NULL ? 0 : buf_puts(reply, "]}");
}

/* Another node's (or our own) failover: its deliveries do not count.
 * Nothing is answered. */
static void
apply_failover(struct control *c, const struct ctlreq *q, double stamp)
{
	double now = ev_now(c->loop);
	double expires = (stamp > 0 && stamp < now ? stamp : now) + c->ttl;
	if (expires <= now)
		return;
	for (size_t i = 0; i < q->nids; i++)
		if (failovers_add(c->failovers, q->ids[i], strlen(q->ids[i]), q->before,
		    expires) < 0) {
			log_warn("out of memory: a failover of %zu tasks will count as "
			    "deliveries", q->nids - i);
			break;
		}
	dispatch_failovers_heard(c->dispatch);
}

/* Tells the fleet (this node included: it hears its own, harmlessly) of
 * the deliveries that ended in our failovers, a report per count. */
static void
report_failovers(struct control *c)
{
	struct failovers_report r;
	size_t told = 0;
	ev_timer_stop(c->loop, &c->report);
	if (!c->live_up)
		return;
	while (failovers_take(c->failovers, CTLREQ_MAX_IDS, &r)) {
		struct buf b = { 0 };
		int rc = buf_puts(&b, "{\"ids\":[");
		for (size_t i = 0; i < r.n && rc == 0; i++)
			rc = (i > 0 && buf_puts(&b, ",") < 0) || json_str(&b, r.ids[i]) < 0 ? -1 : 0;
		if (rc == 0)
			rc = buf_printf(&b, "],\"before\":%ld}", r.before);
		if (rc == 0) {
			amqp_basic_properties_t p;
			memset(&p, 0, sizeof(p));
			p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_TYPE_FLAG |
			    AMQP_BASIC_APP_ID_FLAG | AMQP_BASIC_TIMESTAMP_FLAG;
			p.content_type = amqp_cstring_bytes("application/json");
			p.type = amqp_cstring_bytes("failover");
			p.app_id = amqp_cstring_bytes("taskd");
			p.timestamp = (uint64_t)ev_now(c->loop);
			rc = broker_side_publish(c->broker, CH_LIVE, c->exchange, "", &p,
			    b.data, b.len);
		}
		buf_free(&b);
		if (rc == BROKER_AGAIN) {
			/* Back in the outbox, for the retry. */
			double expires = ev_now(c->loop) + c->ttl;
			for (size_t i = 0; i < r.n; i++)
				(void)failovers_lost(c->failovers, r.ids[i], strlen(r.ids[i]),
				    r.before, expires);
			failovers_report_free(&r);
			ev_timer_start(c->loop, &c->report);
			break;
		}
		if (rc != 0) {
			log_warn("the failover of %zu tasks could not be told to the fleet: "
			    "their deliveries count", r.n);
			failovers_report_free(&r);
			break;
		}
		told += r.n;
		failovers_report_free(&r);
	}
	if (told > 0)
		log_info("told the fleet of %zu task%s whose delivery ended with the lost "
		    "connection (not counted against limits.max_deliveries)", told,
		    told == 1 ? "" : "s");
}

static void
report_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	report_failovers(w->data);
}

static void
send_reply(struct control *c, const struct rx *r, const struct buf *body)
{
	amqp_basic_properties_t p;
	memset(&p, 0, sizeof(p));
	p._flags = AMQP_BASIC_CONTENT_TYPE_FLAG | AMQP_BASIC_TYPE_FLAG |
	    AMQP_BASIC_APP_ID_FLAG;
	p.content_type = amqp_cstring_bytes("application/json");
	p.type = amqp_cstring_bytes(r->type.data);
	p.app_id = amqp_cstring_bytes("taskd");
	if (r->has_corr) {
		p._flags |= AMQP_BASIC_CORRELATION_ID_FLAG;
		p.correlation_id = (amqp_bytes_t){ r->corr.len, r->corr.data };
	}
	int rc = broker_side_publish(c->broker, CH_LIVE, "", r->reply_to.data, &p,
	    body->data, body->len);
	if (rc == BROKER_AGAIN)
		log_warn("control reply to '%s' dropped: the broker connection cannot "
		    "take it now", r->reply_to.data);
}

/* A complete request from the live queue (answer = true) or the log. */
static void
handle(struct control *c, struct rx *r, bool answer)
{
	struct ctlreq q;
	char err[200];
	struct buf out = { 0 };
	int rc = 0;

	if (buf_reserve(&r->type, 0) < 0 || buf_reserve(&r->reply_to, 0) < 0)
		return;
	if (r->oversized) {
		snprintf(err, sizeof(err), "the body is larger than %d bytes", CTLREQ_MAX_BODY);
		rc = -1;
	} else {
		rc = ctlreq_parse(r->type.len ? r->type.data : NULL, r->type.len,
		    r->body.data, r->body.len, &q, err, sizeof(err));
	}
	if (rc < 0) {
		if (answer)
			log_warn("control request refused: %s", err);
		if (answer && r->has_reply_to)
			rc = buf_puts(&out, "{\"node\":") < 0 || json_str(&out, c->node) < 0 ||
			    buf_puts(&out, ",\"error\":") < 0 || json_str(&out, err) < 0 ||
			    buf_puts(&out, "}") < 0 ? -1 : 1;
	} else if (q.kind == CTLREQ_FAILOVER) {
		apply_failover(c, &q, r->timestamp);
		ctlreq_free(&q);
	} else if (q.kind == CTLREQ_STATUS) {
		if (answer && r->has_reply_to)
			rc = status_body(c, &out) < 0 ? -1 : 1;
		ctlreq_free(&q);
	} else {
		if (answer)
			log_info("cancel request for %zu task id%s", q.nids, q.nids == 1 ? "" : "s");
		bool reply = answer && r->has_reply_to;
		rc = apply_cancel(c, &q, r->timestamp, answer, reply ? &out : NULL) < 0 ? -1 :
		    reply ? 1 : 0;
		ctlreq_free(&q);
	}
	if (rc > 0)
		send_reply(c, r, &out);
	else if (rc < 0 && answer)
		log_warn("out of memory answering a control request");
	buf_free(&out);
}

/* ---- channels -------------------------------------------------------------- */

static int
send_m(struct control *c, amqp_channel_t ch, amqp_method_number_t id, void *m)
{
	return broker_side_method(c->broker, ch, id, m);
}

static int
open_channel(struct control *c, amqp_channel_t ch)
{
	amqp_channel_open_t o = { amqp_empty_bytes };
	amqp_exchange_declare_t x = {
		.exchange = amqp_cstring_bytes(c->exchange),
		.type = amqp_cstring_bytes("fanout"),
		.durable = 1,
		.arguments = amqp_empty_table,
	};
	if (send_m(c, ch, AMQP_CHANNEL_OPEN_METHOD, &o) != 0)
		return -1;
	return send_m(c, ch, AMQP_EXCHANGE_DECLARE_METHOD, &x);
}

static int
bind_and_consume(struct control *c, amqp_channel_t ch, const char *queue, bool ack,
    amqp_table_t args)
{
	amqp_queue_bind_t b = {
		.queue = amqp_cstring_bytes(queue),
		.exchange = amqp_cstring_bytes(c->exchange),
		.routing_key = amqp_empty_bytes,
		.arguments = amqp_empty_table,
	};
	amqp_basic_consume_t cm = {
		.queue = amqp_cstring_bytes(queue),
		.consumer_tag = amqp_empty_bytes,
		.no_ack = !ack,
		.exclusive = !ack,
		.arguments = args,
	};
	if (send_m(c, ch, AMQP_QUEUE_BIND_METHOD, &b) != 0)
		return -1;
	return send_m(c, ch, AMQP_BASIC_CONSUME_METHOD, &cm);
}

static int
live_start(struct control *c)
{
	amqp_queue_declare_t q = {
		.queue = amqp_cstring_bytes(c->queue),
		.exclusive = 1,
		.auto_delete = 1,
		.arguments = amqp_empty_table,
	};
	if (open_channel(c, CH_LIVE) != 0)
		return -1;
	/* The news of our failover first, before anything on this channel
	 * the broker could refuse (a refusal closes the channel, and what
	 * was published after it on the channel is dropped). */
	c->live_up = true;
	report_failovers(c);
	if (send_m(c, CH_LIVE, AMQP_QUEUE_DECLARE_METHOD, &q) != 0)
		return -1;
	return bind_and_consume(c, CH_LIVE, c->queue, false, amqp_empty_table);
}

static int
log_start(struct control *c)
{
	char age[32];
	snprintf(age, sizeof(age), "%.0fs", ceil(c->ttl));
	amqp_table_entry_t qargs[3];
	qargs[0].key = amqp_cstring_bytes("x-queue-type");
	qargs[0].value.kind = AMQP_FIELD_KIND_UTF8;
	qargs[0].value.value.bytes = amqp_cstring_bytes("stream");
	qargs[1].key = amqp_cstring_bytes("x-max-age");
	qargs[1].value.kind = AMQP_FIELD_KIND_UTF8;
	qargs[1].value.value.bytes = amqp_cstring_bytes(age);
	/* Retention drops whole segments only: small ones, so old requests
	 * really go (the default segment is 500 MB). */
	qargs[2].key = amqp_cstring_bytes("x-stream-max-segment-size-bytes");
	qargs[2].value.kind = AMQP_FIELD_KIND_I64;
	qargs[2].value.value.i64 = LOG_SEGMENT_BYTES;
	amqp_queue_declare_t q = {
		.queue = amqp_cstring_bytes(c->stream),
		.durable = 1,
		.arguments = { 3, qargs },
	};
	amqp_basic_qos_t qos = { .prefetch_count = LOG_PREFETCH };
	/* Every request of the last TTL (the broker finds the first chunk
	 * at or after this time). */
	amqp_table_entry_t carg;
	carg.key = amqp_cstring_bytes("x-stream-offset");
	carg.value.kind = AMQP_FIELD_KIND_TIMESTAMP;
	double from = ev_now(c->loop) - c->ttl;
	carg.value.value.u64 = from > 0 ? (uint64_t)from : 0;

	if (open_channel(c, CH_LOG) != 0)
		return -1;
	if (c->log_step == LOG_DECLARE &&
	    send_m(c, CH_LOG, AMQP_QUEUE_DECLARE_METHOD, &q) != 0)
		return -1;
	if (send_m(c, CH_LOG, AMQP_BASIC_QOS_METHOD, &qos) != 0)
		return -1;
	c->log_up = true;
	return bind_and_consume(c, CH_LOG, c->stream, true, (amqp_table_t){ 1, &carg });
}

static int name_queue(struct control *c);

static void
control_up(void *ctx)
{
	struct control *c = ctx;
	rx_clear(&c->live);
	rx_clear(&c->log);
	c->live_up = c->log_up = false;
	c->live_reopens = 0;
	if (c->exchange[0] == '\0')
		return;
	c->log_step = LOG_DECLARE;
	if (name_queue(c) < 0) {
		log_warn("out of memory: fleet control is off until the next connection");
		return;
	}
	if (live_start(c) != 0)
		return;
	(void)log_start(c);
}

/* The broker closed one of our channels: say so, and for the log try once
 * more without declaring the stream (it exists with other settings: another
 * node's cancel_ttl), then go without it. */
static void
channel_closed(struct control *c, amqp_channel_t ch, const amqp_channel_close_t *m)
{
	amqp_channel_close_ok_t ok = { 0 };
	if (send_m(c, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok) != 0)
		return;
	int code = m->reply_code;
	int n = (int)m->reply_text.len;
	const char *text = m->reply_text.bytes;
	if (ch == CH_LIVE) {
		c->live_up = false;
		rx_clear(&c->live);
		if (c->live_reopens++ < LIVE_REOPENS) {
			log_warn("the broker closed the fleet control channel (%d %.*s): "
			    "opening it again", code, n, text);
			(void)live_start(c);
		} else {
			log_warn("fleet control is off until the next connection: the broker "
			    "closed its channel again: %d %.*s", code, n, text);
		}
		return;
	}
	c->log_up = false;
	rx_clear(&c->log);
	if (c->log_step == LOG_DECLARE) {
		c->log_step = LOG_USE;
		log_info("control log '%s' exists with other settings (%d %.*s): using it "
		    "as it is", c->stream, code, n, text);
		(void)log_start(c);
		return;
	}
	c->log_step = LOG_OFF;
	log_warn("no control log on this connection (%d %.*s): cancels reach only "
	    "the nodes up when they are sent", code, n, text);
}

static int
copy_str(struct buf *dst, amqp_bytes_t s)
{
	buf_reset(dst);
	return buf_append(dst, s.bytes, s.len) < 0 || buf_reserve(dst, 0) < 0 ? -1 : 0;
}

static void
rx_header(struct rx *r, const amqp_frame_t *f)
{
	const amqp_basic_properties_t *p = f->payload.properties.decoded;
	r->header = true;
	r->left = f->payload.properties.body_size;
	r->oversized = r->left > CTLREQ_MAX_BODY;
	int rc = 0;
	if (p->_flags & AMQP_BASIC_TYPE_FLAG)
		rc |= copy_str(&r->type, p->type);
	if (p->_flags & AMQP_BASIC_REPLY_TO_FLAG) {
		r->has_reply_to = p->reply_to.len > 0;
		rc |= copy_str(&r->reply_to, p->reply_to);
	}
	if (p->_flags & AMQP_BASIC_CORRELATION_ID_FLAG) {
		r->has_corr = true;
		rc |= copy_str(&r->corr, p->correlation_id);
	}
	if (p->_flags & AMQP_BASIC_TIMESTAMP_FLAG)
		r->timestamp = (double)p->timestamp;
	if (rc != 0)
		r->oversized = true;   /* no memory: refuse it as too large */
	/* An address with a NUL in it is nothing we can answer; the bare
	 * direct reply-to name (without the suffix the broker gives the
	 * requester) would make the broker close our channel. */
	if ((r->reply_to.len > 0 && memchr(r->reply_to.data, '\0', r->reply_to.len)) ||
	    (r->reply_to.len > 0 && strcmp(r->reply_to.data, "amq.rabbitmq.reply-to") == 0))
		r->has_reply_to = false;
}

static void
rx_done(struct control *c, amqp_channel_t ch, struct rx *r)
{
	bool live = ch == CH_LIVE;
	uint64_t tag = r->tag;
	handle(c, r, live);
	rx_clear(r);
	if (!live) {
		amqp_basic_ack_t a = { .delivery_tag = tag, .multiple = 0 };
		(void)send_m(c, CH_LOG, AMQP_BASIC_ACK_METHOD, &a);
	}
}

static void
control_frame(void *ctx, const amqp_frame_t *f)
{
	struct control *c = ctx;
	amqp_channel_t ch = f->channel;
	struct rx *r = ch == CH_LIVE ? &c->live : ch == CH_LOG ? &c->log : NULL;
	if (r == NULL)
		return;
	switch (f->frame_type) {
	case AMQP_FRAME_METHOD:
		switch (f->payload.method.id) {
		case AMQP_BASIC_DELIVER_METHOD: {
			const amqp_basic_deliver_t *d = f->payload.method.decoded;
			rx_clear(r);
			r->in = true;
			r->tag = d->delivery_tag;
			break;
		}
		case AMQP_CHANNEL_CLOSE_METHOD:
			channel_closed(c, ch, f->payload.method.decoded);
			break;
		case AMQP_BASIC_CANCEL_METHOD:
			log_warn("the broker cancelled the control consumer on channel %u "
			    "(queue deleted?); back at the next connection", ch);
			break;
		default:
			break;   /* the -ok answers of what we sent */
		}
		break;
	case AMQP_FRAME_HEADER:
		if (!r->in || r->header)
			break;
		rx_header(r, f);
		if (r->left == 0)
			rx_done(c, ch, r);
		break;
	case AMQP_FRAME_BODY: {
		size_t n = f->payload.body_fragment.len;
		if (!r->in || !r->header || n > r->left)
			break;
		if (!r->oversized &&
		    buf_append(&r->body, f->payload.body_fragment.bytes, n) < 0)
			r->oversized = true;
		r->left -= n;
		if (r->left == 0)
			rx_done(c, ch, r);
		break;
	}
	default:
		break;
	}
}

static void
expire_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	struct control *c = w->data;
	idset_expire(c->cancels, ev_now(loop));
	failovers_expire(c->failovers, ev_now(loop));
}

static const struct broker_side_ops control_side_ops = {
	.up = control_up,
	.frame = control_frame,
};

/* The node's queue gets a name of its own on every connection: unique
 * even when two nodes share a host name and pid (containers), and not the
 * old connection's, whose exclusive queue may outlive it for a while (a
 * frozen node keeps it until it notices the connection is gone). */
static int
name_queue(struct control *c)
{
	unsigned char r[4] = { 0 };
	if (getrandom(r, sizeof(r), GRND_NONBLOCK) != (ssize_t)sizeof(r))
		memset(r, 0, sizeof(r));
	struct buf q = { 0 };
	if (buf_printf(&q, "%s.node.%s.%02x%02x%02x%02x", c->exchange, c->node,
	    r[0], r[1], r[2], r[3]) < 0) {
		buf_free(&q);
		return -1;
	}
	free(c->queue);
	c->queue = buf_steal(&q, NULL);
	return 0;
}

static int
set_names(struct control *c, const struct control_params *p)
{
	char *x = strdup(p->exchange), *n = strdup(p->node);
	struct buf s = { 0 };
	if (x == NULL || n == NULL || buf_printf(&s, "%s.log", p->exchange) < 0) {
		free(x);
		free(n);
		buf_free(&s);
		return -1;
	}
	free(c->exchange);
	free(c->node);
	free(c->stream);
	c->exchange = x;
	c->node = n;
	c->stream = buf_steal(&s, NULL);
	if (name_queue(c) < 0)
		return -1;
	c->ttl = p->cancel_ttl;
	return 0;
}

/* Failovers are told and heard only with fleet control on. */
static void
attach_failovers(struct control *c)
{
	dispatch_set_failovers(c->dispatch, c->exchange[0] != '\0' ? c->failovers : NULL,
	    c->ttl);
}

struct control *
control_new(struct ev_loop *loop, struct broker *b, struct dispatch *d,
    struct pool *pool, const struct control_params *params)
{
	struct control *c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	c->loop = loop;
	c->broker = b;
	c->dispatch = d;
	c->pool = pool;
	c->started = ev_now(loop);
	c->cancels = idset_new(CANCELS_MAX);
	c->failovers = failovers_new(FAILOVERS_MAX);
	if (c->cancels == NULL || c->failovers == NULL || set_names(c, params) < 0) {
		control_free(c);
		return NULL;
	}
	ev_timer_init(&c->expire, expire_cb, EXPIRE_EVERY, EXPIRE_EVERY);
	c->expire.data = c;
	ev_timer_start(loop, &c->expire);
	ev_timer_init(&c->report, report_cb, REPORT_RETRY, 0.0);
	c->report.data = c;
	dispatch_set_cancels(d, c->cancels);
	attach_failovers(c);
	broker_set_side(b, &control_side_ops, c);
	return c;
}

int
control_reconfigure(struct control *c, const struct control_params *params)
{
	if (set_names(c, params) < 0)
		return -1;
	attach_failovers(c);
	return 0;
}

void
control_free(struct control *c)
{
	if (c == NULL)
		return;
	if (c->broker != NULL)
		broker_set_side(c->broker, NULL, NULL);
	if (c->dispatch != NULL) {
		dispatch_set_cancels(c->dispatch, NULL);
		dispatch_set_failovers(c->dispatch, NULL, 0);
	}
	ev_timer_stop(c->loop, &c->expire);
	ev_timer_stop(c->loop, &c->report);
	idset_free(c->cancels);
	failovers_free(c->failovers);
	rx_free(&c->live);
	rx_free(&c->log);
	free(c->exchange);
	free(c->node);
	free(c->queue);
	free(c->stream);
	free(c);
}
