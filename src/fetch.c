/* fetch: curl multi_socket on libev, for coroutines; see fetch.h. */
#include "fetch.h"
#include "httplib.h"

#include <stdbool.h>
#include <stdlib.h>

/* One per socket curl asks us to watch (curl_multi_assign). */
struct fetch_sock {
	ev_io io;
	curl_socket_t fd;
};

/* One per transfer, on the waiting coroutine's stack. */
struct fetch_req {
	struct coro *coro;
	CURL *easy;
	bool done;
	CURLcode result;
	CURLMcode mcode;    /* of the add, on the main context */
};

static struct {
	struct ev_loop *loop;
	CURLM *multi;
	ev_timer timer;
	bool global;        /* httplib()->global_init() done */
	bool failed;        /* setting up failed once: do not retry each task */
} F;

/* Collects finished transfers; their coroutines are woken from the loop's
 * next prepare phase (coro_wake), after this callback has returned. */
static void
fetch_check_done(void)
{
	CURLMsg *m;
	int left;

	while ((m = httplib()->multi_info_read(F.multi, &left)) != NULL) {
		if (m->msg != CURLMSG_DONE)
			continue;
		struct fetch_req *r = NULL;
		CURL *easy = m->easy_handle;
		CURLcode res = m->data.result;
		httplib()->easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&r);
		/* m is invalid after the remove. */
		httplib()->multi_remove_handle(F.multi, easy);
		if (r != NULL) {
			r->done = true;
			r->result = res;
			coro_wake(r->coro);
		}
	}
}

static void
fetch_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	struct fetch_sock *s = w->data;
	int action = (revents & EV_READ ? CURL_CSELECT_IN : 0) |
	    (revents & EV_WRITE ? CURL_CSELECT_OUT : 0) |
	    (revents & EV_ERROR ? CURL_CSELECT_ERR : 0);
	int running;

	/* CURLM_BAD_SOCKET (a socket curl already closed) is not fatal: curl
	 * has finished with it, and its transfer shows up in info_read. */
	(void)httplib()->multi_socket_action(F.multi, s->fd, action, &running);
	fetch_check_done();
}

static void
fetch_timer_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	int running;

	(void)httplib()->multi_socket_action(F.multi, CURL_SOCKET_TIMEOUT, 0, &running);
	fetch_check_done();
}

/* CURLMOPT_SOCKETFUNCTION: only (re)arms watchers, never calls curl. */
static int
fetch_socket_cb(CURL *easy, curl_socket_t fd, int what, void *userp, void *sockp)
{
	(void)easy;
	(void)userp;
	struct fetch_sock *s = sockp;

	if (what == CURL_POLL_REMOVE) {
		if (s != NULL) {
			ev_io_stop(F.loop, &s->io);
			free(s);
			httplib()->multi_assign(F.multi, fd, NULL);
		}
		return 0;
	}
	if (s == NULL) {
		s = calloc(1, sizeof(*s));
		if (s == NULL)
			return -1; /* curl fails the transfer */
		s->fd = fd;
		ev_init(&s->io, fetch_io_cb);
		s->io.data = s;
		httplib()->multi_assign(F.multi, fd, s);
	}
	/* The fd number may have been reused for another socket: always set
	 * it again, which libev wants done on a stopped watcher. */
	int ev = (what & CURL_POLL_IN ? EV_READ : 0) | (what & CURL_POLL_OUT ? EV_WRITE : 0);
	ev_io_stop(F.loop, &s->io);
	s->fd = fd;
	ev_io_set(&s->io, fd, ev);
	if (ev != 0)
		ev_io_start(F.loop, &s->io);
	return 0;
}

/* CURLMOPT_TIMERFUNCTION: a 0 ms timeout still goes through the loop, so
 * curl is never called from inside its own callback. */
static int
fetch_timer_set_cb(CURLM *multi, long timeout_ms, void *userp)
{
	(void)multi;
	(void)userp;
	ev_timer_stop(F.loop, &F.timer);
	if (timeout_ms >= 0) {
		ev_timer_set(&F.timer, (double)timeout_ms / 1000.0, 0.0);
		ev_timer_start(F.loop, &F.timer);
	}
	return 0;
}

/* On the main context, the first time a transfer is asked for. */
static void
fetch_setup(struct ev_loop *loop)
{
	if (F.multi != NULL || F.failed)
		return;
	F.loop = loop;
	if (!F.global) {
		if (httplib()->global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK) {
			F.failed = true;
			return;
		}
		F.global = true;
	}
	F.multi = httplib()->multi_init();
	if (F.multi == NULL) {
		F.failed = true;
		return;
	}
	ev_init(&F.timer, fetch_timer_cb);
	httplib()->multi_setopt(F.multi, CURLMOPT_SOCKETFUNCTION, fetch_socket_cb);
	httplib()->multi_setopt(F.multi, CURLMOPT_TIMERFUNCTION, fetch_timer_set_cb);
}

static void
fetch_add_main(void *arg)
{
	struct fetch_req *r = arg;

	fetch_setup(coro_loop());
	if (F.multi == NULL) {
		r->mcode = CURLM_OUT_OF_MEMORY;
		return;
	}
	r->mcode = httplib()->multi_add_handle(F.multi, r->easy);
}

static void
fetch_remove_main(void *arg)
{
	struct fetch_req *r = arg;
	httplib()->multi_remove_handle(F.multi, r->easy);
}

enum coro_status
fetch_perform(CURL *easy, double deadline, CURLcode *result)
{
	struct fetch_req r = { .coro = coro_self(), .easy = easy };
	enum coro_status s = CORO_READY;

	httplib()->easy_setopt(easy, CURLOPT_PRIVATE, (char *)&r);
	httplib()->easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
	/* Without it, removing a transfer whose name lookup is still running
	 * joins curl's resolver thread: the loop would wait as long as
	 * getaddrinfo does (resolv.conf's timeout × attempts × servers).  With
	 * it, curl detaches the thread, which frees its own state and closes
	 * its end of the wake-up socketpair when getaddrinfo returns; curl
	 * closes the other end at once (7.88 lib/asyn-thread.c). */
	httplib()->easy_setopt(easy, CURLOPT_QUICK_EXIT, 1L);
	coro_call_main(fetch_add_main, &r);
	if (r.mcode != CURLM_OK) {
		*result = r.mcode == CURLM_OUT_OF_MEMORY ? CURLE_OUT_OF_MEMORY :
		    CURLE_FAILED_INIT;
		return CORO_READY;
	}
	/* Only fetch_check_done() wakes us; loop anyway, so that a stray
	 * wake-up cannot end the wait early. */
	while (!r.done && (s = coro_wait(deadline)) == CORO_READY)
		;
	/* Timed out or cancelled mid-transfer: detach on the main stack
	 * (this may close the connection, TLS included).  A cancel that
	 * comes after the transfer finished still answers CANCELLED. */
	if (!r.done)
		coro_call_main(fetch_remove_main, &r);
	httplib()->easy_setopt(easy, CURLOPT_PRIVATE, NULL);
	if (s != CORO_READY)
		return s;
	*result = r.result;
	return CORO_READY;
}

void
fetch_teardown(void)
{
	if (F.multi != NULL) {
		ev_timer_stop(F.loop, &F.timer);
		httplib()->multi_cleanup(F.multi);
		F.multi = NULL;
	}
	if (F.global) {
		httplib()->global_cleanup();
		F.global = false;
	}
	F.failed = false;
}
