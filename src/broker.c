#include "broker.h"

#include <poll.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "backoff.h"
#include "content.h"
#include "log.h"
#include "nodes.h"
#include "result.h"
#include "tags.h"

/* Frames handled per callback before yielding to other watchers; the idle
 * watcher resumes where it stopped. */
#define BROKER_DRAIN_MAX 512

/* A reconnect for changed settings waits this long (s) at most for the
 * confirms of results already out (a confirm takes milliseconds unless the
 * broker is stuck), then gives the acks this long (ms) to reach the socket. */
#define BROKER_REPLAN_WAIT 2.0
#define BROKER_REPLAN_FLUSH_MS 500

/* What a write may add to the socket's send queue, as the kernel counts it
 * (sk_wmem_queued: payload plus the skb's own size, about 1.5 KiB for a
 * small segment; TLS records add less): an ack or reject is one small
 * write; a publish is three frames (method, header, body: written with
 * MSG_MORE, so mostly one skb) with the result's properties.  Rounded up:
 * the budget below only has to stay an upper bound. */
#define BROKER_COST_ACK 2048
#define BROKER_COST_PUBLISH 4096

struct pending {
	uint64_t seq;
	void *token;   /* NULL once confirmed out of order */
};

struct broker {
	struct ev_loop *loop;
	struct broker_ops ops;
	void *ctx;
	struct connector_params params;
	size_t max_payload;
	int max_unconfirmed;
	double reconnect_max;

	enum broker_state state;
	amqp_connection_state_t conn;   /* only while UP */
	uint64_t gen;                   /* bumped for every new connection */
	int heartbeat;
	bool reply_durable;
	bool blocked;                   /* connection.blocked by the broker */
	char *consumer_tag;
	bool consuming;                 /* consumer_tag is registered */
	unsigned cancels;               /* basic.cancel sent, cancel-ok due */
	unsigned consumes;              /* consumers started by broker_consume */
	uint64_t consumer_id;           /* of consumer_tag; never reused */
	/* The task queue's depth by the last passive declare's answer. */
	bool probing;                   /* a declare is out, its answer due */
	long queue_ready;               /* -1: not known on this connection */
	long queue_consumers;
	int window;                     /* consumer_tag's prefetch */
	struct connector *connector;    /* only while CONNECTING */
	struct backoff backoff;
	bool attempted;                 /* a first attempt has ended */
	/* Which node of params.nodes to try next (per process, shuffled);
	 * the backoff applies once per round of them (nodes.h). */
	struct nodes *order;
	bool planned;                   /* a loss we caused: stay on the node */
	int consume_prefetch;           /* of the consumer in force */

	ev_io io_r;
	ev_io io_w;
	ev_idle idle;
	ev_timer hb;
	ev_timer retry;
	/* A reconnect the operator asked for (changed settings) waits for the
	 * confirms of results already published, so their tasks get acked
	 * instead of coming back; active only while one is due. */
	ev_timer replan;
	/* A lost connection not yet told to the owner (broker_lost): set
	 * with `lost` started, told from its callback or sooner. */
	bool lost_due;
	ev_timer lost;
	ev_tstamp last_rx;

	/* Results awaiting their confirm, in publish (= sequence) order. */
	struct pending *ring;
	size_t ring_cap, head, count;
	uint64_t next_seq;

	/* Delivery tags of the current generation that the broker still
	 * counts as unacked, or that we settled but have not yet told it
	 * about.  Settled tags wait for broker_flush, which sends them within
	 * the write budget: acks and rejects alike, so that neither ever
	 * writes into a full send buffer (a broker under a resource alarm
	 * stops reading). */
	struct tags *tags;
	/* Active while tags are settled and io_w is not (a flush that ran
	 * out of room waits for io_w instead). */
	ev_prepare flush;
	/* Bytes (as BROKER_COST_*) that may still be written without asking
	 * the kernel; see broker_room. */
	size_t room;

	struct content *content;        /* deliveries from their frames */
	uint64_t returned;
	/* The broker's max_message_size, once it refused a result over it
	 * (0 = not known); kept across reconnects. */
	size_t max_message;
	/* The side channels' owner (broker.h), and the peer while UP. */
	struct broker_side_ops side;
	void *side_ctx;
	char peer[300];
};

static void broker_lost(struct broker *b, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));
static void broker_attempt(struct broker *b);
static void broker_after_call(struct broker *b);
static void broker_replan_cb(struct ev_loop *loop, ev_timer *w, int revents);

void
broker_delivery_free(struct broker_delivery *d)
{
	/* The body shares d's allocation (broker_frame). */
	free(d);
}

static void
broker_watchers_stop(struct broker *b)
{
	ev_io_stop(b->loop, &b->io_r);
	ev_io_stop(b->loop, &b->io_w);
	ev_idle_stop(b->loop, &b->idle);
	ev_timer_stop(b->loop, &b->hb);
	ev_timer_stop(b->loop, &b->replan);
}

static void
broker_schedule(struct broker *b, double delay)
{
	b->state = BROKER_WAITING;
	ev_timer_stop(b->loop, &b->retry);
	ev_timer_set(&b->retry, delay, 0.0);
	ev_timer_start(b->loop, &b->retry);
}

static double
broker_rand(void)
{
	return (double)random() / ((double)RAND_MAX + 1.0);
}

/* The node an attempt goes to, for log lines: "host:port". */
static const char *
broker_node_name(const struct broker *b, char *buf, size_t len)
{
	const struct uri *u = &b->params.nodes[nodes_current(b->order)];
	snprintf(buf, len, u->host != NULL && strchr(u->host, ':') != NULL ?
	    "[%s]:%d" : "%s:%d", u->host, u->port);
	return buf;
}

/* The current node failed: moves on to the next one, and returns the
 * delay before trying it, 0 while the round has untried nodes (nodes.h).
 * next names it for the log line. */
static double
broker_next_node(struct broker *b, char *next, size_t len)
{
	bool round = nodes_fail(b->order);
	broker_node_name(b, next, len);
	return round ? backoff_next(&b->backoff, broker_rand()) : 0.0;
}

/* A seed of this process's own, so that a fleet spreads over the nodes. */
static uint64_t
broker_seed(void)
{
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), GRND_NONBLOCK) == (ssize_t)sizeof(seed))
		return seed;
	return (uint64_t)getpid() * 0x9e3779b97f4a7c15ULL ^ (uint64_t)time(NULL);
}

/* Whether a write costing `cost` (BROKER_COST_* plus its bytes) can go out
 * without the library waiting for the peer: rabbitmq-c writes all of a
 * frame or waits, with no deadline, in poll(POLLOUT).
 *
 * Asking the kernel (poll) before every write costs a system call per
 * task.  Instead, one poll buys a budget.  Linux reports POLLOUT on a TCP
 * socket only when its free space (sk_sndbuf - sk_wmem_queued) is at least
 * half of what is queued, i.e. at least a third of the send buffer, and a
 * write sleeps only once the queue has reached the whole buffer.  So after
 * POLLOUT, writes adding up to sndbuf/6 (half of the guaranteed third, a
 * margin for our estimate of the kernel's accounting) cannot block; when
 * the budget is spent the next write polls again.  The buffer's size is
 * read at each poll: it grows with TCP autotuning and only shrinks under
 * global TCP memory pressure.  A write larger than the budget (a big
 * result) polls first, and may then wait for the peer as every write did
 * before: POLLOUT never promised room for a whole large message.
 * wait_ms > 0 only from broker_stop, which may block briefly. */
static bool
broker_room(struct broker *b, size_t cost, int wait_ms)
{
	if (cost <= b->room) {
		b->room -= cost;
		return true;
	}
	int fd = amqp_get_sockfd(b->conn);
	struct pollfd pfd = { .fd = fd, .events = POLLOUT };
	if (poll(&pfd, 1, wait_ms) != 1 || !(pfd.revents & POLLOUT)) {
		b->room = 0;
		if (!ev_is_active(&b->io_w))
			ev_io_start(b->loop, &b->io_w);
		return false;
	}
	int sndbuf = 0;
	socklen_t sl = sizeof(sndbuf);
	size_t room = 0;
	if (getsockopt(fd, SOL_SOCKET, SO_SNDBUF, &sndbuf, &sl) == 0 && sndbuf > 0)
		room = (size_t)sndbuf / 6;
	b->room = room > cost ? room - cost : 0;
	return true;
}

/* Charges a write that is sent without asking (the consumer's cancel: one
 * small frame per drain): the next write that asks polls sooner. */
static void
broker_charge(struct broker *b, size_t cost)
{
	b->room = cost < b->room ? b->room - cost : 0;
}

static void
broker_tags_clear(struct broker *b)
{
	tags_clear(b->tags);
	ev_prepare_stop(b->loop, &b->flush);
}

/* A settlement on the consume channel: multiple covers every tag up to
 * this one that the broker still holds.  A single reject is a plain
 * basic.reject; a multiple one needs basic.nack (RabbitMQ's extension). */
static int
broker_send_settle(struct broker *b, const struct tags_frame *f)
{
	switch (f->how) {
	case TAGS_ACK:
		return amqp_basic_ack(b->conn, CONNECTOR_CH_CONSUME, f->tag, f->multiple);
	case TAGS_REQUEUE:
	case TAGS_DROP:
		if (!f->multiple)
			return amqp_basic_reject(b->conn, CONNECTOR_CH_CONSUME, f->tag,
			    f->how == TAGS_REQUEUE);
		return amqp_basic_nack(b->conn, CONNECTOR_CH_CONSUME, f->tag, 1,
		    f->how == TAGS_REQUEUE);
	}
	return AMQP_STATUS_OK;
}

/* Room for one settlement frame; with wait_ms > 0, waiting for it until
 * deadline at most. */
static bool
broker_flush_room(struct broker *b, int wait_ms, ev_tstamp deadline)
{
	int ms = 0;
	if (wait_ms > 0) {
		ev_tstamp left = deadline - ev_time();
		ms = left > 0 ? (int)(left * 1000.0) : 0;
	}
	return broker_room(b, BROKER_COST_ACK, ms);
}

/* Sends what broker_ack and broker_reject settled, in the frames the
 * ledger gives (tags.h has the rule), each within the write budget.  When
 * the budget runs out it stops where it is (io_w resumes it), so a broker
 * that stops reading never makes the loop wait.  wait_ms > 0 (a stop, a
 * reconnect) lets it wait that long in all for room.  Returns false when
 * settled tags are left. */
static bool
broker_flush(struct broker *b, int wait_ms)
{
	if (b->state != BROKER_UP || tags_settled(b->tags) == 0)
		return true;
	ev_tstamp deadline = ev_time() + wait_ms / 1000.0;
	bool done = true;
	struct tags_frame f;

	tags_round(b->tags);
	while (tags_next(b->tags, &f)) {
		if (!broker_flush_room(b, wait_ms, deadline)) {
			done = false;
			break;
		}
		int rc = broker_send_settle(b, &f);
		if (rc != AMQP_STATUS_OK) {
			broker_lost(b, "settling tasks: %s", amqp_error_string2(rc));
			return true;
		}
		tags_sent(b->tags, &f);
	}
	ev_prepare_stop(b->loop, &b->flush);
	broker_after_call(b);
	return done;
}

static void
broker_flush_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)revents;
	broker_flush(w->data, 0);
}

/* The connection is gone (or must go): drop it, fail what awaited it, and
 * schedule the next attempt.  Logged here, once, as the event it is. */
static void
broker_lost(struct broker *b, const char *fmt, ...)
{
	char why[512];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(why, sizeof(why), fmt, ap);
	va_end(ap);

	/* Stop watching first: on a heartbeat timeout the library has already
	 * closed the fd, and the number may be reused. */
	broker_watchers_stop(b);
	if (b->conn != NULL) {
		amqp_destroy_connection(b->conn);
		b->conn = NULL;
	}
	content_reset(b->content);
	b->blocked = false;
	free(b->consumer_tag);
	b->consumer_tag = NULL;
	b->consuming = false;
	b->cancels = 0;
	/* Pending acks die with their channel: the broker redelivers those
	 * tasks, and their tags mean nothing on the next connection. */
	broker_tags_clear(b);

	char node[300], next[300];
	broker_node_name(b, node, sizeof(node));
	if (b->planned) {
		/* Settings changed or a fresh consumer was asked for: the
		 * caller connects again at once, to the same node first. */
		b->planned = false;
		log_info("closing the connection to node %s: %s", node, why);
	} else {
		double delay = broker_next_node(b, next, sizeof(next));
		if (delay > 0)
			log_warn("broker connection lost: node %s: %s; reconnecting "
			    "in %.1f s (node %s)", node, why, delay, next);
		else
			log_warn("broker connection lost: node %s: %s; reconnecting "
			    "to node %s now", node, why, next);
		broker_schedule(b, delay);
	}

	/* The loss is often found inside a call the owner made (a publish,
	 * a flush) while it walks its own lists: tell it from the loop, never
	 * from inside that call. */
	b->lost_due = true;
	ev_timer_stop(b->loop, &b->lost);
	ev_timer_set(&b->lost, 0.0, 0.0);
	ev_timer_start(b->loop, &b->lost);
}

/* Every result that awaited a confirm of the connection that is gone:
 * lost, in publish order. */
static void
broker_confirms_lost(struct broker *b)
{
	while (b->count > 0) {
		void *token = b->ring[b->head].token;
		b->head = (b->head + 1) % b->ring_cap;
		b->count--;
		if (token != NULL)
			b->ops.confirm(b->ctx, token, BROKER_LOST);
	}
	b->head = 0;
}

/* Tells the owner that connection b->gen is gone: `down`, then every
 * result that awaited its confirm.  Runs before anything can reuse the
 * ring or the generation (broker_connected, broker_stop). */
static void
broker_notify_lost(struct broker *b)
{
	if (!b->lost_due)
		return;
	b->lost_due = false;
	ev_timer_stop(b->loop, &b->lost);
	b->ops.down(b->ctx, b->gen);
	broker_confirms_lost(b);
}

static void
broker_lost_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	broker_notify_lost(w->data);
}

static void
broker_confirms(struct broker *b, uint64_t tag, bool multiple, enum broker_confirm how)
{
	uint64_t gen = b->gen;
	size_t before = b->count;

	for (size_t i = 0; i < b->count; i++) {
		struct pending *p = &b->ring[(b->head + i) % b->ring_cap];
		if (p->seq > tag)
			break;
		if ((multiple || p->seq == tag) && p->token != NULL) {
			void *token = p->token;
			p->token = NULL;
			b->ops.confirm(b->ctx, token, how);
			if (b->gen != gen || b->state != BROKER_UP)
				return;
		}
	}
	while (b->count > 0 && b->ring[b->head].token == NULL) {
		b->head = (b->head + 1) % b->ring_cap;
		b->count--;
	}
	if (b->count == 0 && ev_is_active(&b->replan)) {
		/* Not from here, inside the frame drain: on the next turn of
		 * the loop, after the acks these confirms settle are queued. */
		ev_timer_stop(b->loop, &b->replan);
		ev_timer_set(&b->replan, 0.0, 0.0);
		ev_timer_start(b->loop, &b->replan);
	}
	if (before >= (size_t)b->max_unconfirmed && b->count < before)
		b->ops.writable(b->ctx);
}

/* A delivery is complete: to its owner; its properties were for the
 * callback only. */
static void
broker_complete(struct broker *b)
{
	struct broker_delivery *d = content_take(b->content);
	if (d == NULL)
		return;
	b->ops.delivery(b->ctx, d);
	content_recycle(b->content);
}

static void
broker_method(struct broker *b, amqp_channel_t ch, amqp_method_t *m)
{
	switch (m->id) {
	case AMQP_BASIC_DELIVER_METHOD: {
		amqp_basic_deliver_t *dv = m->decoded;
		struct broker_delivery *d = calloc(1, sizeof(*d));
		if (d == NULL) {
			broker_lost(b, "out of memory");
			return;
		}
		d->gen = b->gen;
		d->tag = dv->delivery_tag;
		d->redelivered = dv->redelivered;
		/* A cancelled consumer's deliveries may still come (before its
		 * cancel-ok): they count against no window of the current one. */
		if (b->consumer_tag != NULL && dv->consumer_tag.len == strlen(b->consumer_tag) &&
		    memcmp(dv->consumer_tag.bytes, b->consumer_tag, dv->consumer_tag.len) == 0)
			d->consumer = b->consumer_id;
		const char *why;
		if (content_begin(b->content, d, &why) == CONTENT_ERROR) {
			broker_lost(b, "%s", why);
			return;
		}
		if (tags_open(b->tags, d->tag) < 0) {
			broker_lost(b, "out of memory");
			return;
		}
		break;
	}
	case AMQP_BASIC_ACK_METHOD: {
		amqp_basic_ack_t *a = m->decoded;
		broker_confirms(b, a->delivery_tag, a->multiple, BROKER_ACKED);
		break;
	}
	case AMQP_BASIC_NACK_METHOD: {
		amqp_basic_nack_t *n = m->decoded;
		log_warn("the broker refused a result (basic.nack); its task goes back to the queue");
		broker_confirms(b, n->delivery_tag, n->multiple, BROKER_NACKED);
		break;
	}
	case AMQP_BASIC_RETURN_METHOD: {
		amqp_basic_return_t *r = m->decoded;
		content_skip(b->content);
		/* RabbitMQ 3.10 returns every mandatory publish to a direct
		 * reply-to address as NO_ROUTE, also when it was delivered, so
		 * a return there says nothing. */
		static const char direct[] = "amq.rabbitmq.reply-to.";
		if (r->routing_key.len >= sizeof direct - 1 &&
		    memcmp(r->routing_key.bytes, direct, sizeof direct - 1) == 0)
			break;
		b->returned++;
		log_warn("a result was returned by the broker: %u %.*s (reply address '%.*s' has no queue)",
		    r->reply_code, (int)r->reply_text.len, (char *)r->reply_text.bytes,
		    (int)r->routing_key.len, (char *)r->routing_key.bytes);
		break;
	}
	case AMQP_CHANNEL_CLOSE_METHOD: {
		amqp_channel_close_t *c = m->decoded;
		amqp_channel_close_ok_t ok = { 0 };
		(void)amqp_send_method(b->conn, ch, AMQP_CHANNEL_CLOSE_OK_METHOD, &ok);
		if (ch == CONNECTOR_CH_PUBLISH && c->reply_code == AMQP_PRECONDITION_FAILED) {
			size_t n = result_broker_limit(c->reply_text.bytes, c->reply_text.len);
			if (n > 0)
				b->max_message = n;
		}
		broker_lost(b, "the broker closed channel %u: %u %.*s", ch, c->reply_code,
		    (int)c->reply_text.len, (char *)c->reply_text.bytes);
		return;
	}
	case AMQP_CONNECTION_CLOSE_METHOD: {
		amqp_connection_close_t *c = m->decoded;
		amqp_connection_close_ok_t ok = { 0 };
		(void)amqp_send_method(b->conn, 0, AMQP_CONNECTION_CLOSE_OK_METHOD, &ok);
		broker_lost(b, "the broker closed the connection: %u %.*s", c->reply_code,
		    (int)c->reply_text.len, (char *)c->reply_text.bytes);
		return;
	}
	case AMQP_QUEUE_DECLARE_OK_METHOD: {
		amqp_queue_declare_ok_t *ok = m->decoded;
		b->probing = false;
		b->queue_ready = (long)ok->message_count;
		b->queue_consumers = (long)ok->consumer_count;
		break;
	}
	case AMQP_BASIC_CANCEL_OK_METHOD:
		/* Deliveries of a cancelled consumer come before its cancel-ok. */
		if (b->cancels > 0 && --b->cancels == 0 && !b->consuming &&
		    b->ops.cancelled != NULL)
			b->ops.cancelled(b->ctx);
		break;
	case AMQP_BASIC_CANCEL_METHOD: {
		/* Sent because we advertised consumer_cancel_notify: the queue
		 * was deleted, or a node holding it went (a quorum queue's
		 * leader moving does not cancel; a classic queue's node going
		 * does).  Consume again on the same channel, so the tasks in
		 * flight keep their tags; a queue that is gone answers 404,
		 * which closes the channel, and reconnecting redeclares it.  A
		 * cancel of a consumer we cancelled ourselves needs nothing. */
		amqp_basic_cancel_t *bc = m->decoded;
		if (!b->consuming || b->consumer_tag == NULL ||
		    bc->consumer_tag.len != strlen(b->consumer_tag) ||
		    memcmp(bc->consumer_tag.bytes, b->consumer_tag, bc->consumer_tag.len) != 0)
			break;
		char node[300];
		log_warn("node %s cancelled the consumer (queue deleted, or a node "
		    "of it went): consuming again", broker_node_name(b, node, sizeof(node)));
		b->consuming = false;
		(void)broker_consume(b, b->consume_prefetch);
		return;
	}
	case AMQP_CONNECTION_BLOCKED_METHOD: {
		amqp_connection_blocked_t *bl = m->decoded;
		b->blocked = true;
		log_warn("the broker blocked publishing: %.*s; results wait",
		    (int)bl->reason.len, (char *)bl->reason.bytes);
		break;
	}
	case AMQP_CONNECTION_UNBLOCKED_METHOD:
		b->blocked = false;
		log_info("the broker unblocked publishing");
		b->ops.writable(b->ctx);
		break;
	default:
		log_debug("ignoring %s on channel %u", amqp_method_name(m->id), ch);
		break;
	}
}

static void
broker_frame(struct broker *b, amqp_frame_t *f)
{
	if (f->channel >= BROKER_CH_SIDE) {
		if (b->side.frame != NULL)
			b->side.frame(b->side_ctx, f);
		return;
	}
	switch (f->frame_type) {
	case AMQP_FRAME_METHOD:
		broker_method(b, f->channel, &f->payload.method);
		break;
	case AMQP_FRAME_HEADER:
	case AMQP_FRAME_BODY: {
		const char *why = NULL;
		switch (content_frame(b->content, f, b->max_payload, &why)) {
		case CONTENT_DONE:
			broker_complete(b);
			break;
		case CONTENT_ERROR:
			broker_lost(b, "%s on channel %u", why, f->channel);
			break;
		case CONTENT_MORE:
			break;
		}
		break;
	}
	default:
		break;
	}
}

static void
broker_drain(struct broker *b)
{
	uint64_t gen = b->gen;

	for (int n = 0; n < BROKER_DRAIN_MAX; n++) {
		amqp_frame_t f;
		struct timeval zero = { 0, 0 };
		int rc = amqp_simple_wait_frame_noblock(b->conn, &f, &zero);
		if (rc == AMQP_STATUS_TIMEOUT) {
			ev_idle_stop(b->loop, &b->idle);
			amqp_maybe_release_buffers(b->conn);
			return;
		}
		if (rc != AMQP_STATUS_OK) {
			broker_lost(b, "%s", rc == AMQP_STATUS_HEARTBEAT_TIMEOUT ?
			    "no heartbeat from the broker" : amqp_error_string2(rc));
			return;
		}
		b->last_rx = ev_now(b->loop);
		broker_frame(b, &f);
		if (b->gen != gen || b->state != BROKER_UP)
			return;
	}
	/* More may be buffered inside the library, where the fd cannot tell. */
	amqp_maybe_release_buffers(b->conn);
	ev_idle_start(b->loop, &b->idle);
}

/* After a call that may have read frames into the library's queue. */
static void
broker_after_call(struct broker *b)
{
	if (b->conn != NULL &&
	    (amqp_frames_enqueued(b->conn) || amqp_data_in_buffer(b->conn)))
		ev_idle_start(b->loop, &b->idle);
}

static void
broker_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	struct broker *b = w->data;
	b->last_rx = ev_now(b->loop);
	broker_drain(b);
}

static void
broker_idle_cb(struct ev_loop *loop, ev_idle *w, int revents)
{
	(void)loop;
	(void)revents;
	broker_drain(w->data);
}

static void
broker_hb_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	broker_drain(w->data);
}

static void
broker_writable_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)revents;
	struct broker *b = w->data;
	ev_io_stop(loop, w);
	uint64_t gen = b->gen;
	if (!broker_flush(b, 0) || b->gen != gen)
		return;
	b->ops.writable(b->ctx);
}

static void
broker_connected(void *ctx, struct connector_result *res)
{
	struct broker *b = ctx;
	const struct connector_params *p = &b->params;

	/* The attempt is over and res is ours: the connector can go. */
	connector_free(b->connector);
	b->connector = NULL;
	if (res->conn == NULL) {
		char node[300], next[300];
		broker_node_name(b, node, sizeof(node));
		double delay = broker_next_node(b, next, sizeof(next));
		if (nodes_count(b->order) == 1)
			log_warn("cannot reach the broker: node %s: %s; retrying in %.1f s",
			    node, res->error ? res->error : "unknown error", delay);
		else if (delay > 0)
			log_warn("cannot reach the broker: node %s: %s; every node "
			    "failed, retrying in %.1f s (node %s)", node,
			    res->error ? res->error : "unknown error", delay, next);
		else
			log_warn("cannot reach the broker: node %s: %s; trying node %s",
			    node, res->error ? res->error : "unknown error", next);
		connector_result_clear(res);
		broker_schedule(b, delay);
		if (!b->attempted) {
			b->attempted = true;
			b->ops.down(b->ctx, b->gen);
		}
		return;
	}
	b->attempted = true;
	b->conn = res->conn;
	res->conn = NULL;
	b->heartbeat = res->heartbeat;
	b->reply_durable = res->reply_durable;
	b->consumer_tag = res->consumer_tag;
	res->consumer_tag = NULL;
	b->consumer_id++;
	b->window = p->prefetch;
	b->probing = false;
	b->queue_ready = b->queue_consumers = -1;
	b->consuming = true;
	b->cancels = 0;
	if (res->warning != NULL)
		log_warn("%s", res->warning);
	if (res->declared)
		log_info("declared queue '%s' (%s, %s)", p->queue,
		    p->durable ? "durable" : "transient", p->quorum ? "quorum" : "classic");
	connector_result_clear(res);

	broker_notify_lost(b);
	b->gen++;
	b->state = BROKER_UP;
	b->blocked = false;
	b->next_seq = 0;
	b->head = b->count = 0;
	broker_tags_clear(b);
	b->room = 0;
	backoff_reset(&b->backoff);
	nodes_success(b->order);
	b->consume_prefetch = p->prefetch;
	b->last_rx = ev_now(b->loop);

	int fd = amqp_get_sockfd(b->conn);
	ev_io_set(&b->io_r, fd, EV_READ);
	ev_io_start(b->loop, &b->io_r);
	ev_io_set(&b->io_w, fd, EV_WRITE);
	if (b->heartbeat > 0) {
		/* rabbitmq-c sends and checks heartbeats only inside its calls. */
		ev_timer_set(&b->hb, b->heartbeat / 2.0, b->heartbeat / 2.0);
		ev_timer_start(b->loop, &b->hb);
	}
	char node[300];
	const struct uri *u = connector_node(p);
	if (nodes_count(b->order) > 1)
		log_info("connected to node %s (of %zu) vhost '%s', consuming '%s' "
		    "(prefetch %d, heartbeat %d s)", broker_node_name(b, node, sizeof(node)),
		    nodes_count(b->order), u->vhost, p->queue, p->prefetch, b->heartbeat);
	else
		log_info("connected to %s vhost '%s', consuming '%s' (prefetch %d, "
		    "heartbeat %d s)", broker_node_name(b, node, sizeof(node)), u->vhost,
		    p->queue, p->prefetch, b->heartbeat);

	snprintf(b->peer, sizeof(b->peer), "%s:%d", u->host, u->port);
	b->ops.up(b->ctx);
	if (b->side.up != NULL && b->state == BROKER_UP)
		b->side.up(b->side_ctx);
	/* Deliveries may already sit in the library's buffer. */
	ev_idle_start(b->loop, &b->idle);
	b->ops.writable(b->ctx);
}

static void
broker_attempt(struct broker *b)
{
	b->state = BROKER_CONNECTING;
	b->params.node = nodes_current(b->order);
	b->connector = connector_start(b->loop, &b->params, broker_connected, b);
	if (b->connector == NULL) {
		double delay = backoff_next(&b->backoff, broker_rand());
		log_error("cannot start a connection attempt (out of resources); retrying in %.1f s",
		    delay);
		broker_schedule(b, delay);
	}
}

static void
broker_retry_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	broker_attempt(w->data);
}

struct broker *
broker_new(struct ev_loop *loop, const struct connector_params *params,
    size_t max_payload, int max_unconfirmed, double reconnect_max,
    const struct broker_ops *ops, void *ctx)
{
	struct broker *b = calloc(1, sizeof(*b));
	if (b == NULL)
		return NULL;
	if (connector_params_copy(&b->params, params) < 0) {
		free(b);
		return NULL;
	}
	b->ring = calloc((size_t)max_unconfirmed, sizeof(*b->ring));
	b->tags = tags_new();
	b->content = content_new();
	b->order = b->ring && b->tags && b->content ?
	    nodes_new(b->params.nnodes, broker_seed()) : NULL;
	if (b->order == NULL) {
		content_free(b->content);
		tags_free(b->tags);
		free(b->ring);
		connector_params_clear(&b->params);
		free(b);
		return NULL;
	}
	b->ring_cap = (size_t)max_unconfirmed;
	b->loop = loop;
	b->ops = *ops;
	b->ctx = ctx;
	b->max_payload = max_payload;
	b->max_unconfirmed = max_unconfirmed;
	b->reconnect_max = reconnect_max;
	backoff_init(&b->backoff, 0.5, reconnect_max);
	ev_io_init(&b->io_r, broker_io_cb, -1, EV_READ);
	ev_io_init(&b->io_w, broker_writable_cb, -1, EV_WRITE);
	ev_idle_init(&b->idle, broker_idle_cb);
	ev_timer_init(&b->hb, broker_hb_cb, 1.0, 1.0);
	ev_timer_init(&b->retry, broker_retry_cb, 0.0, 0.0);
	ev_timer_init(&b->replan, broker_replan_cb, 0.0, 0.0);
	ev_timer_init(&b->lost, broker_lost_cb, 0.0, 0.0);
	ev_prepare_init(&b->flush, broker_flush_cb);
	b->io_r.data = b->io_w.data = b->idle.data = b->hb.data = b->retry.data = b;
	b->replan.data = b;
	b->lost.data = b;
	b->flush.data = b;
	return b;
}

void
broker_start(struct broker *b)
{
	if (b->state == BROKER_IDLE)
		broker_attempt(b);
}

static bool
params_same(const struct connector_params *a, const struct connector_params *c)
{
#define SAME_STR(x, y) ((x) == (y) || ((x) && (y) && strcmp((x), (y)) == 0))
	if (a->nnodes != c->nnodes)
		return false;
	for (size_t i = 0; i < a->nnodes; i++) {
		const struct uri *x = &a->nodes[i], *y = &c->nodes[i];
		if (!(SAME_STR(x->user, y->user) && SAME_STR(x->password, y->password) &&
		    SAME_STR(x->host, y->host) && x->port == y->port &&
		    SAME_STR(x->vhost, y->vhost) && x->tls == y->tls))
			return false;
	}
	return SAME_STR(a->cacert, c->cacert) && SAME_STR(a->cert, c->cert) &&
	    SAME_STR(a->key, c->key) && a->heartbeat == c->heartbeat &&
	    a->prefetch == c->prefetch && a->timeout == c->timeout &&
	    SAME_STR(a->queue, c->queue) && a->durable == c->durable &&
	    a->quorum == c->quorum && SAME_STR(a->reply_queue, c->reply_queue);
#undef SAME_STR
}

/* Drops the connection and connects with the new settings at once. */
static void
broker_replan(struct broker *b)
{
	ev_timer_stop(b->loop, &b->replan);
	/* Answered tasks need not come back. */
	(void)broker_flush(b, BROKER_REPLAN_FLUSH_MS);
	if (b->state == BROKER_UP) {
		b->planned = true;
		broker_lost(b, "broker settings changed");
	}
	ev_timer_stop(b->loop, &b->retry);
	broker_attempt(b);
}

static void
broker_replan_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct broker *b = w->data;
	if (b->state == BROKER_UP)
		broker_replan(b);
}

void
broker_reconnect(struct broker *b)
{
	switch (b->state) {
	case BROKER_IDLE:
		return;
	case BROKER_CONNECTING:
		connector_free(b->connector);
		b->connector = NULL;
		broker_attempt(b);
		return;
	case BROKER_WAITING:
		ev_timer_stop(b->loop, &b->retry);
		broker_attempt(b);
		return;
	case BROKER_UP:
		break;
	}
	if (b->count > 0) {
		/* Results still await their confirm: give them a moment, or their
		 * answered tasks would run again. */
		ev_timer_stop(b->loop, &b->replan);
		ev_timer_set(&b->replan, BROKER_REPLAN_WAIT, 0.0);
		ev_timer_start(b->loop, &b->replan);
		return;
	}
	broker_replan(b);
}

bool
broker_params_differ(const struct broker *b, const struct connector_params *params)
{
	return !params_same(&b->params, params);
}

int
broker_reconfigure(struct broker *b, const struct connector_params *params,
    size_t max_payload, int max_unconfirmed, double reconnect_max)
{
	b->max_payload = max_payload;
	b->reconnect_max = reconnect_max;
	b->backoff.cap = reconnect_max;
	if ((size_t)max_unconfirmed > b->ring_cap && b->count == 0) {
		struct pending *r = calloc((size_t)max_unconfirmed, sizeof(*r));
		if (r != NULL) {
			free(b->ring);
			b->ring = r;
			b->ring_cap = (size_t)max_unconfirmed;
			b->head = 0;
		}
	}
	if ((size_t)max_unconfirmed <= b->ring_cap)
		b->max_unconfirmed = max_unconfirmed;

	if (params_same(&b->params, params))
		return 0;
	struct connector_params copy;
	if (connector_params_copy(&copy, params) < 0)
		return 0;
	/* A new node list gets a new order; the same list keeps its own,
	 * and its place in it. */
	bool same_nodes = copy.nnodes == b->params.nnodes;
	for (size_t i = 0; same_nodes && i < copy.nnodes; i++)
		same_nodes = strcmp(copy.nodes[i].host, b->params.nodes[i].host) == 0 &&
		    copy.nodes[i].port == b->params.nodes[i].port;
	if (!same_nodes) {
		struct nodes *order = nodes_new(copy.nnodes, broker_seed());
		if (order == NULL) {
			connector_params_clear(&copy);
			return 0;
		}
		nodes_free(b->order);
		b->order = order;
	}
	connector_params_clear(&b->params);
	b->params = copy;
	backoff_reset(&b->backoff);
	broker_reconnect(b);
	return 1;
}

const struct uri *
broker_node(const struct broker *b)
{
	return &b->params.nodes[nodes_current(b->order)];
}

enum broker_state
broker_state(const struct broker *b)
{
	return b->state;
}

uint64_t
broker_generation(const struct broker *b)
{
	return b->gen;
}

bool
broker_reply_durable(const struct broker *b)
{
	return b->reply_durable;
}

uint64_t
broker_returned(const struct broker *b)
{
	return b->returned;
}

size_t
broker_max_message_size(const struct broker *b)
{
	return b->max_message;
}

size_t
broker_unconfirmed(const struct broker *b)
{
	return b->count;
}

/* rabbitmq-c 0.11 (#780): after two heartbeats without input, a publish
 * waits for input with no deadline.  When nothing has come in for that
 * long, refuse to send and let the heartbeat timer's drain declare the
 * connection dead. */
static bool
broker_silent(const struct broker *b)
{
	return b->heartbeat > 0 && ev_now(b->loop) - b->last_rx >= 1.5 * b->heartbeat;
}

int
broker_publish(struct broker *b, const char *routing_key,
    const amqp_basic_properties_t *props, const void *body, size_t len, void *token)
{
	if (b->state != BROKER_UP || b->blocked || broker_silent(b) ||
	    b->count >= (size_t)b->max_unconfirmed)
		return BROKER_AGAIN;

	/* A full send buffer would make the library wait with no deadline. */
	if (!broker_room(b, BROKER_COST_PUBLISH + len, 0))
		return BROKER_AGAIN;

	amqp_bytes_t rk = amqp_cstring_bytes(routing_key);
	amqp_bytes_t msg = { len, (void *)body };
	int rc = amqp_basic_publish(b->conn, CONNECTOR_CH_PUBLISH, amqp_empty_bytes, rk,
	    1, 0, props, msg);
	if (rc != AMQP_STATUS_OK) {
		broker_lost(b, "publishing a result: %s", amqp_error_string2(rc));
		return -1;
	}
	struct pending *p = &b->ring[(b->head + b->count) % b->ring_cap];
	p->seq = ++b->next_seq;
	p->token = token;
	b->count++;
	broker_after_call(b);
	return 0;
}

void
broker_set_side(struct broker *b, const struct broker_side_ops *ops, void *ctx)
{
	if (ops != NULL)
		b->side = *ops;
	else
		memset(&b->side, 0, sizeof(b->side));
	b->side_ctx = ctx;
}

int
broker_side_method(struct broker *b, amqp_channel_t ch, amqp_method_number_t id,
    void *decoded)
{
	if (b->state != BROKER_UP)
		return BROKER_AGAIN;
	broker_charge(b, BROKER_COST_ACK);
	int rc = amqp_send_method(b->conn, ch, id, decoded);
	if (rc != AMQP_STATUS_OK) {
		broker_lost(b, "sending %s: %s", amqp_method_name(id), amqp_error_string2(rc));
		return -1;
	}
	broker_after_call(b);
	return 0;
}

int
broker_side_publish(struct broker *b, amqp_channel_t ch, const char *exchange,
    const char *routing_key, const amqp_basic_properties_t *props,
    const void *body, size_t len)
{
	if (b->state != BROKER_UP || b->blocked || broker_silent(b))
		return BROKER_AGAIN;
	if (!broker_room(b, BROKER_COST_PUBLISH + len, 0))
		return BROKER_AGAIN;
	amqp_bytes_t msg = { len, (void *)body };
	int rc = amqp_basic_publish(b->conn, ch, amqp_cstring_bytes(exchange),
	    amqp_cstring_bytes(routing_key), 0, 0, props, msg);
	if (rc != AMQP_STATUS_OK) {
		broker_lost(b, "publishing a control reply: %s", amqp_error_string2(rc));
		return -1;
	}
	broker_after_call(b);
	return 0;
}

const char *
broker_peer(const struct broker *b)
{
	return b->state == BROKER_UP ? b->peer : NULL;
}

/* Marks a delivery settled; broker_flush sends it before the loop next
 * waits (broker_flush_cb), or when the socket has room again
 * (broker_writable_cb). */
static void
broker_settle(struct broker *b, uint64_t gen, uint64_t tag, enum tags_how how)
{
	if (gen != b->gen || b->state != BROKER_UP)
		return;
	if (tags_settle(b->tags, tag, how) < 0) {
		log_debug("not settling delivery %llu: not open on this channel",
		    (unsigned long long)tag);
		return;
	}
	if (tags_settled(b->tags) == 1 && !ev_is_active(&b->io_w))
		ev_prepare_start(b->loop, &b->flush);
}

void
broker_ack(struct broker *b, uint64_t gen, uint64_t tag)
{
	broker_settle(b, gen, tag, TAGS_ACK);
}

void
broker_reject(struct broker *b, uint64_t gen, uint64_t tag, bool requeue)
{
	broker_settle(b, gen, tag, requeue ? TAGS_REQUEUE : TAGS_DROP);
}

int
broker_cancel_consumer(struct broker *b)
{
	if (b->state != BROKER_UP)
		return 0;
	if (!b->consuming || b->consumer_tag == NULL)
		return b->cancels > 0 ? 1 : 0;
	/* Not nowait: the cancel-ok is the point after which no delivery of
	 * this consumer can come (broker_method). */
	amqp_basic_cancel_t m = {
		.consumer_tag = amqp_cstring_bytes(b->consumer_tag),
		.nowait = 0,
	};
	broker_charge(b, BROKER_COST_ACK);
	int rc = amqp_send_method(b->conn, CONNECTOR_CH_CONSUME, AMQP_BASIC_CANCEL_METHOD, &m);
	if (rc != AMQP_STATUS_OK) {
		broker_lost(b, "cancelling the consumer: %s", amqp_error_string2(rc));
		return -1;
	}
	b->consuming = false;
	b->cancels++;
	broker_after_call(b);
	return 1;
}

int
broker_consume(struct broker *b, int prefetch)
{
	if (b->state != BROKER_UP || b->consuming)
		return 0;
	/* RabbitMQ applies a per-consumer basic.qos to the consumers started
	 * after it.  The tag is ours, so nowait needs no consume-ok. */
	char tag[64];
	snprintf(tag, sizeof(tag), "taskd-%llu-%u", (unsigned long long)b->gen, ++b->consumes);
	char *copy = strdup(tag);
	if (copy == NULL) {
		broker_lost(b, "out of memory");
		return -1;
	}
	amqp_basic_qos_t q = {
		.prefetch_size = 0,
		.prefetch_count = (uint16_t)(prefetch < 1 ? 1 : prefetch > 65535 ? 65535 : prefetch),
		.global = 0,
	};
	amqp_basic_consume_t c = {
		.queue = amqp_cstring_bytes(b->params.queue),
		.consumer_tag = amqp_cstring_bytes(copy),
		.no_local = 0,
		.no_ack = 0,
		.exclusive = 0,
		.nowait = 1,
		.arguments = amqp_empty_table,
	};
	broker_charge(b, 2 * BROKER_COST_ACK);
	int rc = amqp_send_method(b->conn, CONNECTOR_CH_CONSUME, AMQP_BASIC_QOS_METHOD, &q);
	if (rc == AMQP_STATUS_OK)
		rc = amqp_send_method(b->conn, CONNECTOR_CH_CONSUME, AMQP_BASIC_CONSUME_METHOD, &c);
	if (rc != AMQP_STATUS_OK) {
		free(copy);
		broker_lost(b, "consuming again: %s", amqp_error_string2(rc));
		return -1;
	}
	free(b->consumer_tag);
	b->consumer_tag = copy;
	b->consumer_id++;
	b->window = q.prefetch_count;
	b->consuming = true;
	b->consume_prefetch = prefetch;
	broker_after_call(b);
	return 0;
}

uint64_t
broker_consumer(const struct broker *b, int *window)
{
	if (b->state != BROKER_UP || !b->consuming)
		return 0;
	if (window != NULL)
		*window = b->window;
	return b->consumer_id;
}

int
broker_probe_queue(struct broker *b)
{
	if (b->state != BROKER_UP || b->probing)
		return 0;
	/* Passive: it only asks.  On the consume channel, whose frames the
	 * loop reads anyway; a queue that is gone closes that channel, which
	 * a reconnect handles as it does a deleted queue's consumer. */
	amqp_queue_declare_t q = {
		.queue = amqp_cstring_bytes(b->params.queue),
		.passive = 1,
		.arguments = amqp_empty_table,
	};
	broker_charge(b, BROKER_COST_ACK);
	int rc = amqp_send_method(b->conn, CONNECTOR_CH_CONSUME, AMQP_QUEUE_DECLARE_METHOD, &q);
	if (rc != AMQP_STATUS_OK) {
		broker_lost(b, "asking for the queue's depth: %s", amqp_error_string2(rc));
		return -1;
	}
	b->probing = true;
	broker_after_call(b);
	return 0;
}

bool
broker_queue_depth(const struct broker *b, long *ready, long *consumers)
{
	if (b->state != BROKER_UP || b->queue_ready < 0)
		return false;
	*ready = b->queue_ready;
	*consumers = b->queue_consumers;
	return true;
}

bool
broker_cancelling(const struct broker *b)
{
	return b->state == BROKER_UP && b->cancels > 0;
}

int
broker_prefetch(const struct broker *b)
{
	return b->params.prefetch;
}

void
broker_stop(struct broker *b)
{
	ev_timer_stop(b->loop, &b->retry);
	if (b->connector != NULL) {
		connector_free(b->connector);
		b->connector = NULL;
	}
	/* A graceful drain ends here: every answered task gets its ack.  The
	 * socket gets up to two seconds to take them, like the close. */
	if (b->conn != NULL && b->state == BROKER_UP && !broker_silent(b))
		(void)broker_flush(b, 2000);
	broker_watchers_stop(b);
	broker_tags_clear(b);
	broker_notify_lost(b);
	if (b->conn != NULL) {
		/* Polite close, bounded: a frozen broker gets two seconds. */
		struct timeval tv = { 2, 0 };
		amqp_set_rpc_timeout(b->conn, &tv);
		if (!broker_silent(b))
			(void)amqp_connection_close(b->conn, AMQP_REPLY_SUCCESS);
		amqp_destroy_connection(b->conn);
		b->conn = NULL;
	}
	content_reset(b->content);
	free(b->consumer_tag);
	b->consumer_tag = NULL;
	b->consuming = false;
	b->cancels = 0;
	b->state = BROKER_IDLE;
	broker_confirms_lost(b);
}

void
broker_free(struct broker *b)
{
	if (b == NULL)
		return;
	broker_stop(b);
	content_free(b->content);
	connector_params_clear(&b->params);
	nodes_free(b->order);
	free(b->ring);
	tags_free(b->tags);
	free(b);
}
