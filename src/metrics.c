#include "metrics.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "httpreq.h"

/* Accepts per callback: the loop gets back to the tasks between batches. */
#define METRICS_ACCEPT_BATCH 16
/* Bytes read per recv: a request head is a few hundred. */
#define METRICS_READ_CHUNK 2048

enum conn_state {
	CONN_READING,   /* waiting for (the rest of) a request head */
	CONN_WRITING,   /* sending a response; no reading meanwhile */
};

struct conn {
	struct conn *prev, *next;  /* m->conns, least recently active first */
	struct metrics *m;
	int fd;
	enum conn_state state;
	bool close_after;          /* the response being sent is the last */
	ev_io io;
	ev_timer timer;            /* METRICS_TIMEOUT for the current step */
	struct buf in;             /* bytes read, not yet answered */
	struct buf out;            /* the response */
	size_t sent;
};

struct metrics {
	struct ev_loop *loop;
	const struct metrics_ops *ops;
	void *ctx;
	int fd;
	ev_io accept_w;
	ev_timer pause;            /* accepting again after running out of fds */
	struct conn conns;         /* list head */
	size_t nconns;
	uint64_t refused;
	struct buf body;           /* scratch for a /metrics body */
	char *listen;
	char address[80];
};

static void conn_io_cb(struct ev_loop *loop, ev_io *w, int revents);
static void conn_serve(struct conn *c);
static void conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents);

static void
conn_free(struct conn *c)
{
	struct metrics *m = c->m;
	ev_io_stop(m->loop, &c->io);
	ev_timer_stop(m->loop, &c->timer);
	close(c->fd);
	c->prev->next = c->next;
	c->next->prev = c->prev;
	m->nconns--;
	buf_free(&c->in);
	buf_free(&c->out);
	free(c);
}

/* Moves c to the tail: the most recently active. */
static void
conn_touch(struct conn *c)
{
	struct conn *head = &c->m->conns;
	c->prev->next = c->next;
	c->next->prev = c->prev;
	c->prev = head->prev;
	c->next = head;
	head->prev->next = c;
	head->prev = c;
}

static void
conn_deadline(struct conn *c)
{
	ev_timer_stop(c->m->loop, &c->timer);
	ev_timer_set(&c->timer, METRICS_TIMEOUT, 0.0);
	ev_timer_start(c->m->loop, &c->timer);
}

static void
conn_watch(struct conn *c, int events)
{
	ev_io_stop(c->m->loop, &c->io);
	ev_io_set(&c->io, c->fd, events);
	ev_io_start(c->m->loop, &c->io);
}

static const char *
reason(int code)
{
	switch (code) {
	case 200: return "OK";
	case 400: return "Bad Request";
	case 404: return "Not Found";
	case 405: return "Method Not Allowed";
	case 431: return "Request Header Fields Too Large";
	case 500: return "Internal Server Error";
	case 503: return "Service Unavailable";
	case 505: return "HTTP Version Not Supported";
	}
	return "Error";
}

/* Builds the response in c->out; send_body false for HEAD (the length is
 * the one GET would send). */
static int
conn_respond(struct conn *c, int code, const char *type, const char *body,
    size_t len, bool send_body)
{
	buf_reset(&c->out);
	c->sent = 0;
	if (buf_printf(&c->out, "HTTP/1.1 %d %s\r\nContent-Type: %s\r\n"
	    "Content-Length: %zu\r\nCache-Control: no-store\r\n%s%s\r\n",
	    code, reason(code), type, len,
	    code == 405 ? "Allow: GET, HEAD\r\n" : "",
	    c->close_after ? "Connection: close\r\n" : "") < 0)
		return -1;
	if (send_body && len > 0 && buf_append(&c->out, body, len) < 0)
		return -1;
	return 0;
}

#define TEXT "text/plain; charset=utf-8"
#define PROM "text/plain; version=0.0.4; charset=utf-8"

static void
conn_send(struct conn *c)
{
	while (c->sent < c->out.len) {
		ssize_t n = send(c->fd, c->out.data + c->sent, c->out.len - c->sent,
		    MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			conn_watch(c, EV_WRITE);
			return;
		}
		if (n <= 0) {
			conn_free(c);
			return;
		}
		c->sent += (size_t)n;
	}
	if (c->close_after) {
		/* Said all: the FIN goes after the answer.  (Bytes left unread,
		 * which only a client sending garbage leaves, still make the
		 * close a reset; that client is owed nothing more.) */
		(void)shutdown(c->fd, SHUT_WR);
		conn_free(c);
		return;
	}
	buf_reset(&c->out);
	c->state = CONN_READING;
	conn_deadline(c);
	if (c->in.len > 0)
		conn_serve(c);   /* pipelined: it may be here already */
	else
		conn_watch(c, EV_READ);
}

/* Answers the request at the start of c->in, if it is all there. */
static void
conn_serve(struct conn *c)
{
	struct metrics *m = c->m;
	struct httpreq req;
	enum httpreq_verdict v = httpreq_parse(c->in.data ? c->in.data : "", c->in.len, &req);
	int rc = 0;

	if (v == HTTPREQ_MORE) {
		conn_watch(c, EV_READ);
		return;
	}
	c->state = CONN_WRITING;
	conn_deadline(c);
	c->close_after = v != HTTPREQ_DONE || !req.keep_alive;
	switch (v) {
	case HTTPREQ_MORE:
		break;
	case HTTPREQ_BAD:
		rc = conn_respond(c, 400, TEXT, "bad request\n", 12, true);
		break;
	case HTTPREQ_TOO_LARGE:
		rc = conn_respond(c, 431, TEXT, "request head too large\n", 23, true);
		break;
	case HTTPREQ_VERSION:
		rc = conn_respond(c, 505, TEXT, "HTTP/1.0 or HTTP/1.1 only\n", 26, true);
		break;
	case HTTPREQ_DONE: {
		bool body = req.method == HTTPREQ_GET;
		if (req.method == HTTPREQ_OTHER)
			rc = conn_respond(c, 405, TEXT, "GET or HEAD only\n", 17, true);
		else if (httpreq_path_is(&req, "/healthz"))
			rc = conn_respond(c, 200, TEXT, "ok\n", 3, body);
		else if (httpreq_path_is(&req, "/readyz")) {
			if (m->ops->ready(m->ctx))
				rc = conn_respond(c, 200, TEXT, "ready\n", 6, body);
			else
				rc = conn_respond(c, 503, TEXT, "not ready\n", 10, body);
		} else if (httpreq_path_is(&req, "/metrics")) {
			buf_reset(&m->body);
			if (m->ops->render(m->ctx, &m->body) < 0)
				rc = conn_respond(c, 500, TEXT, "out of memory\n", 14, true);
			else
				rc = conn_respond(c, 200, PROM, m->body.data, m->body.len, body);
			/* A big scrape's memory is not kept between scrapes. */
			if (m->body.cap > 65536)
				buf_free(&m->body);
		} else
			rc = conn_respond(c, 404, TEXT, "not found: /metrics, /healthz, /readyz\n",
			    39, body);
		/* The next request, if pipelined, stays in c->in. */
		memmove(c->in.data, c->in.data + req.head_len, c->in.len - req.head_len);
		c->in.len -= req.head_len;
		break;
	}
	}
	if (rc < 0) {
		conn_free(c);
		return;
	}
	if (c->close_after)
		buf_free(&c->in);
	ev_io_stop(m->loop, &c->io);
	conn_send(c);
}

static void
conn_read(struct conn *c)
{
	/* Never more than a head can hold, plus one byte to tell it is over. */
	size_t room = HTTPREQ_HEAD_MAX + 1 - c->in.len;
	if (room > METRICS_READ_CHUNK)
		room = METRICS_READ_CHUNK;
	if (buf_reserve(&c->in, room) < 0) {
		conn_free(c);
		return;
	}
	ssize_t n;
	do
		n = recv(c->fd, c->in.data + c->in.len, room, 0);
	while (n < 0 && errno == EINTR);
	if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
		return;
	if (n <= 0) {
		conn_free(c);   /* closed, or reset, before a whole request */
		return;
	}
	c->in.len += (size_t)n;
	c->in.data[c->in.len] = '\0';
	conn_touch(c);
	conn_serve(c);
}

static void
conn_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	struct conn *c = w->data;
	if (c->state == CONN_WRITING && (revents & EV_WRITE)) {
		conn_touch(c);
		conn_send(c);
	} else if (c->state == CONN_READING && (revents & EV_READ)) {
		conn_read(c);
	}
}

static void
conn_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	conn_free(w->data);
}

static void
metrics_accept_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	(void)revents;
	struct metrics *m = w->data;

	for (int i = 0; i < METRICS_ACCEPT_BATCH; i++) {
		int fd = accept4(m->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
		if (fd < 0 && (errno == EMFILE || errno == ENFILE || errno == ENOBUFS ||
		    errno == ENOMEM)) {
			/* The pending connection stays queued and the socket
			 * readable: without a pause the loop would spin here. */
			m->refused++;
			ev_io_stop(m->loop, &m->accept_w);
			ev_timer_start(m->loop, &m->pause);
			return;
		}
		if (fd < 0)
			return;   /* EAGAIN, or a connection that died queued (ECONNABORTED...) */
		if (m->nconns >= METRICS_MAX_CONNS) {
			/* The quietest goes: idle connections cannot lock the
			 * probes out, only newer ones compete. */
			m->refused++;
			conn_free(m->conns.next);
		}
		struct conn *c = calloc(1, sizeof(*c));
		if (c == NULL) {
			m->refused++;
			close(fd);
			continue;
		}
		c->m = m;
		c->fd = fd;
		c->state = CONN_READING;
		c->prev = m->conns.prev;
		c->next = &m->conns;
		m->conns.prev->next = c;
		m->conns.prev = c;
		m->nconns++;
		ev_io_init(&c->io, conn_io_cb, fd, EV_READ);
		c->io.data = c;
		ev_timer_init(&c->timer, conn_timer_cb, METRICS_TIMEOUT, 0.0);
		c->timer.data = c;
		ev_io_start(m->loop, &c->io);
		ev_timer_start(m->loop, &c->timer);
	}
}

static void
metrics_pause_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	struct metrics *m = w->data;
	ev_io_start(loop, &m->accept_w);
}

static void
metrics_name(struct metrics *m)
{
	struct sockaddr_storage ss = { 0 };
	socklen_t len = sizeof(ss);
	char host[64] = "?", port[16] = "?";
	if (getsockname(m->fd, (struct sockaddr *)&ss, &len) == 0)
		(void)getnameinfo((struct sockaddr *)&ss, len, host, sizeof(host), port,
		    sizeof(port), NI_NUMERICHOST | NI_NUMERICSERV);
	snprintf(m->address, sizeof(m->address), ss.ss_family == AF_INET6 ? "[%s]:%s" : "%s:%s",
	    host, port);
}

struct metrics *
metrics_new(struct ev_loop *loop, const char *addr, const struct metrics_ops *ops,
    void *ctx, char *err, size_t errlen)
{
	char host[256], why[256], port[8];
	int p;
	if (metrics_parse_listen(addr, host, sizeof(host), &p, why, sizeof(why)) < 0) {
		snprintf(err, errlen, "cannot listen on %s", why);
		return NULL;
	}
	snprintf(port, sizeof(port), "%d", p);
	struct addrinfo hints = {
		.ai_family = AF_UNSPEC,
		.ai_socktype = SOCK_STREAM,
		.ai_flags = AI_PASSIVE | AI_NUMERICSERV,
	}, *res = NULL;
	int gai = getaddrinfo(host[0] ? host : NULL, port, &hints, &res);
	if (gai != 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr, gai_strerror(gai));
		return NULL;
	}
	int fd = -1, saved = 0;
	for (struct addrinfo *a = res; a != NULL && fd < 0; a = a->ai_next) {
		fd = socket(a->ai_family, a->ai_socktype | SOCK_NONBLOCK | SOCK_CLOEXEC,
		    a->ai_protocol);
		if (fd < 0) {
			saved = errno;
			continue;
		}
		int one = 1;
		(void)setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		if (bind(fd, a->ai_addr, a->ai_addrlen) < 0 || listen(fd, 128) < 0) {
			saved = errno;
			close(fd);
			fd = -1;
		}
	}
	freeaddrinfo(res);
	if (fd < 0) {
		snprintf(err, errlen, "cannot listen on %s: %s", addr, strerror(saved));
		return NULL;
	}
	struct metrics *m = calloc(1, sizeof(*m));
	if (m == NULL || (m->listen = strdup(addr)) == NULL) {
		free(m);
		close(fd);
		snprintf(err, errlen, "cannot listen on %s: out of memory", addr);
		return NULL;
	}
	m->loop = loop;
	m->ops = ops;
	m->ctx = ctx;
	m->fd = fd;
	m->conns.next = m->conns.prev = &m->conns;
	metrics_name(m);
	ev_io_init(&m->accept_w, metrics_accept_cb, fd, EV_READ);
	m->accept_w.data = m;
	ev_io_start(loop, &m->accept_w);
	ev_timer_init(&m->pause, metrics_pause_cb, 0.5, 0.0);
	m->pause.data = m;
	return m;
}

const char *
metrics_address(const struct metrics *m)
{
	return m->address;
}

const char *
metrics_listen(const struct metrics *m)
{
	return m->listen;
}

uint64_t
metrics_refused(const struct metrics *m)
{
	return m->refused;
}

void
metrics_free(struct metrics *m)
{
	if (m == NULL)
		return;
	while (m->conns.next != &m->conns)
		conn_free(m->conns.next);
	ev_io_stop(m->loop, &m->accept_w);
	ev_timer_stop(m->loop, &m->pause);
	close(m->fd);
	buf_free(&m->body);
	free(m->listen);
	free(m);
}
