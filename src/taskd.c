#include "taskd.h"

#include <errno.h>
#include <malloc.h>
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <stdbool.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <ev.h>

#include "broker.h"
#include "confwarn.h"
#include "connector.h"
#include "control.h"
#include "coro.h"
#include "cpus.h"
#include "fetch.h"
#include "dispatch.h"
#include "log.h"
#include "metrics.h"
#include "notify.h"
#include "pool.h"
#include "result.h"
#include "stats.h"

/* How often STATUS= is refreshed for `systemctl status`. */
#define TASKD_STATUS_EVERY 5.0
#define TASKD_TICK_EVERY 2.0
/* Slack over the remaining grace when asking the manager for more time. */
#define TASKD_STOP_SLACK 15.0

enum taskd_state {
	TASKD_RUNNING,   /* consuming and running tasks */
	TASKD_SWITCHING, /* broker settings changed: tasks in flight finish,
	                  * then the connection is made again with them */
	TASKD_DRAINING,  /* stopping: letting tasks in flight finish */
	TASKD_STOPPED,   /* the loop is done */
};

struct taskd {
	struct ev_loop *loop;
	enum taskd_state state;
	struct conf *conf;
	struct registry *reg;
	struct broker *broker;
	struct dispatch *dispatch;
	struct pool *pool;   /* the CPU workers */
	char node_id[300];   /* "host:pid" */
	struct control *control;   /* fleet control (control.h) */
	ev_signal sigterm, sigint, sighup;
	ev_timer grace;
	ev_timer finish;
	ev_timer reconnect;  /* ends TASKD_SWITCHING, from the loop */
	ev_timer status;     /* refreshes STATUS= (service manager only) */
	ev_timer watchdog;   /* WATCHDOG=1 at half WATCHDOG_USEC */
	ev_timer tick;       /* every 2 s: the queue's depth, memory back when idle */
	uint64_t tick_seen;  /* tasks settled at its last tick */
	bool trimmed;        /* since the node last had work */
	bool ready;          /* READY=1 sent */
	bool connected_once; /* a later connection is a reconnect */
	struct metrics *metrics;  /* NULL when metrics.listen is "" */
	double start_time;   /* Unix time, for taskd_start_time_seconds */
	int exit_status;
};

int
taskd_usable_cpus(void)
{
	char why[2048];
	return cpus_usable(0, why, sizeof(why));
}

static int
taskd_prefetch(const struct conf *conf)
{
	if (conf->prefetch > 0)
		return conf->prefetch;
	/* Execution slots: as many I/O tasks as may run, plus one per worker. */
	long slots = (long)conf->io_max_concurrency +
	    (conf->cpu_workers > 0 ? conf->cpu_workers : taskd_usable_cpus());
	return slots > 65535 ? 65535 : (int)slots;
}

/* The pool's parameters from conf; reason (may be NULL) gets why this
 * many workers. */
static void
taskd_pool_params(struct pool_params *pp, const struct conf *conf,
    char *reason, size_t reasonlen)
{
	char why[2048];
	memset(pp, 0, sizeof(*pp));
	pp->size = cpus_usable(conf->cpu_workers, why, sizeof(why));
	if (reason != NULL)
		snprintf(reason, reasonlen, "%s", why);
	pp->max_tasks_per_child = conf->cpu_max_tasks_per_child;
	pp->max_memory = conf->cpu_max_memory;
	/* The broker never sends more than prefetch unacked messages, so a
	 * backlog of that size is never the limit in practice; it bounds
	 * memory if prefetch is set by hand below the work that arrives. */
	pp->backlog = (size_t)taskd_prefetch(conf);
	pp->max_result = conf->max_payload;
	pp->plugins = (const char *const *)conf->plugins;
}

static int
taskd_params(struct connector_params *p, const struct conf *conf, const char *node_id)
{
	memset(p, 0, sizeof(*p));
	p->nodes = conf->nodes;  /* borrowed: copied by broker_new/_reconfigure */
	p->nnodes = conf->nnodes;
	p->cacert = conf->cacert;
	p->cert = conf->cert;
	p->key = conf->key;
	p->heartbeat = conf->heartbeat;
	p->prefetch = taskd_prefetch(conf);
	p->timeout = conf->connect_timeout;
	p->queue = conf->queue_name;
	p->durable = conf->queue_durable;
	p->quorum = conf->queue_type == CONF_QUEUE_QUORUM;
	p->reply_queue = conf->reply_queue;
	p->connection_name = (char *)node_id;
	return 0;
}

/* ---- the service manager (sd_notify) ------------------------------------ */

static void taskd_gauges(struct taskd *t, struct stats_gauges *g);

/* One line for `systemctl status`: where the broker stands, then the
 * counters an operator looks at first. */
static void
taskd_notify_status(struct taskd *t, const char *extra)
{
	if (!notify_enabled())
		return;
	struct stats_gauges g;
	taskd_gauges(t, &g);
	const char *where;
	switch (broker_state(t->broker)) {
	case BROKER_UP: where = "consuming from"; break;
	case BROKER_CONNECTING: where = t->ready ? "reconnecting to" : "connecting to"; break;
	default: where = "reconnecting to"; break;
	}
	char stop[96] = "";
	if (t->state == TASKD_DRAINING)
		snprintf(stop, sizeof(stop), "stopping, %.0f s of grace left; ",
		    ev_timer_remaining(t->loop, &t->grace));
	/* The counters of taskd_tasks_total (stats.h), summed over tasks. */
	uint64_t by[STATS_STATUSES];
	stats_totals(by);
	if (notify_send("%sSTATUS=%s%s %s:%d; %llu ok, %llu error, %llu timeout, "
	    "%llu rejected; running %zu io, %zu cpu; %llu redelivered, %llu reconnects",
	    extra ? extra : "", stop, where, broker_node(t->broker)->host,
	    broker_node(t->broker)->port,
	    (unsigned long long)by[RESULT_OK], (unsigned long long)by[RESULT_ERROR],
	    (unsigned long long)by[RESULT_TIMEOUT], (unsigned long long)by[RESULT_REJECTED],
	    g.io_running, g.cpu_running,
	    (unsigned long long)stats_get(STATS_REDELIVERED),
	    (unsigned long long)stats_get(STATS_RECONNECTS)) < 0)
		log_debug("cannot notify the service manager: %s", strerror(errno));
}

/* READY=1 once: the consumer is registered, or the first attempt failed
 * (the boot must not wait for a broker that may be down for hours). */
static void
taskd_ready(struct taskd *t)
{
	if (t->ready || t->state != TASKD_RUNNING) {
		taskd_notify_status(t, NULL);
		return;
	}
	t->ready = true;
	taskd_notify_status(t, "READY=1\n");
}

static void
taskd_status_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct taskd *t = w->data;
	if (t->state == TASKD_DRAINING) {
		/* The drain may outlast TimeoutStopSec when shutdown.grace was
		 * raised without it: ask for the time it still needs. */
		char extend[64];
		double left = ev_timer_remaining(t->loop, &t->grace) + TASKD_STOP_SLACK;
		snprintf(extend, sizeof(extend), "EXTEND_TIMEOUT_USEC=%llu\n",
		    (unsigned long long)(left * 1e6));
		taskd_notify_status(t, extend);
	} else {
		taskd_notify_status(t, NULL);
	}
}

/*
 * A node that has gone idle gives back the memory its last peak of tasks
 * left behind: glibc keeps freed heap pages for reuse, and the coroutine
 * stack cache keeps the pages its stacks touched.  On a small server an
 * idle taskd should cost what it needs, not its busiest minute (measured
 * in bench/soak).  Once per idle spell: a tick with nothing in flight and
 * nothing settled since the one before.
 */
static void
taskd_trim_if_idle(struct taskd *t)
{
	struct dispatch_stats st;
	dispatch_stats(t->dispatch, &st);
	uint64_t settled = st.ok + st.failed + st.rejected + st.requeued;
	bool idle = st.in_flight == 0 && settled == t->tick_seen;
	t->tick_seen = settled;
	if (!idle) {
		t->trimmed = false;
		return;
	}
	if (t->trimmed)
		return;
	t->trimmed = true;
	coro_trim();
	(void)malloc_trim(0);
}

static void
taskd_tick_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct taskd *t = w->data;
	/* The queue's depth, fresh at every tick: for /metrics, and for
	 * the quiet cancel's bound (dispatch.c). */
	(void)broker_probe_queue(t->broker);
	taskd_trim_if_idle(t);
}

static void
taskd_watchdog_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	/* Sent from a timer of the one loop: if the loop hangs, pings stop
	 * and the manager restarts us (WatchdogSec=). */
	if (notify_send("WATCHDOG=1") < 0)
		log_debug("cannot notify the service manager: %s", strerror(errno));
}

/* The broker's events go to the dispatcher; taskd listens in on up and
 * down for READY= and STATUS=. */
static void
taskd_on_delivery(void *ctx, struct broker_delivery *d)
{
	struct taskd *t = ctx;
	dispatch_broker_ops.delivery(t->dispatch, d);
}

static void
taskd_on_confirm(void *ctx, void *token, enum broker_confirm how)
{
	struct taskd *t = ctx;
	dispatch_broker_ops.confirm(t->dispatch, token, how);
}

static void
taskd_on_up(void *ctx)
{
	struct taskd *t = ctx;
	if (t->connected_once)
		stats_count(STATS_RECONNECTS);
	t->connected_once = true;
	dispatch_broker_ops.up(t->dispatch);
	taskd_ready(t);
}

static void
taskd_on_down(void *ctx, uint64_t gen)
{
	struct taskd *t = ctx;
	dispatch_broker_ops.down(t->dispatch, gen);
	taskd_ready(t);
}

static void
taskd_on_writable(void *ctx)
{
	struct taskd *t = ctx;
	dispatch_broker_ops.writable(t->dispatch);
}

static void
taskd_on_cancelled(void *ctx)
{
	struct taskd *t = ctx;
	dispatch_broker_ops.cancelled(t->dispatch);
}

static const struct broker_ops taskd_broker_ops = {
	.delivery = taskd_on_delivery,
	.confirm = taskd_on_confirm,
	.up = taskd_on_up,
	.down = taskd_on_down,
	.writable = taskd_on_writable,	.cancelled = taskd_on_cancelled,
};

/* ---- the metrics listener ---------------------------------------------- */

/* Ready: consuming, and not on the way out. */
static bool
taskd_is_ready(void *ctx)
{
	struct taskd *t = ctx;
	return t->state == TASKD_RUNNING && broker_state(t->broker) == BROKER_UP;
}

/* What the modules say right now, for /metrics and STATUS= alike. */
static void
taskd_gauges(struct taskd *t, struct stats_gauges *g)
{
	struct dispatch_stats ds;
	struct pool_stats ps;
	struct coro_stats cs;
	dispatch_stats(t->dispatch, &ds);
	pool_stats(t->pool, &ps);
	coro_stats(&cs);
	/* The dispatcher counts a CPU task running from its submit; the pool
	 * knows which of them a worker has. */
	size_t on_workers = ps.busy > 0 ? (size_t)ps.busy : 0;
	*g = (struct stats_gauges){
		.requeued = ds.requeued,
		.io_running = ds.io_running,
		.cpu_running = on_workers,
		.io_waiting = ds.io_waiting,
		.cpu_waiting = ds.cpu_running > on_workers ? ds.cpu_running - on_workers : 0,
		.in_flight = ds.in_flight,
		.workers_busy = ps.busy,
		.workers_idle = ps.alive > ps.busy ? ps.alive - ps.busy : 0,
		.workers_crashed = ps.crashed,
		.workers_recycled = ps.recycled,
		.workers_killed = ps.killed,
		.coroutines = cs.alive,
		.broker_connected = broker_state(t->broker) == BROKER_UP,
		.results_unconfirmed = broker_unconfirmed(t->broker),
		.results_returned = broker_returned(t->broker),
		.ready = taskd_is_ready(t),
		.start_time = t->start_time,
		.http_refused = t->metrics != NULL ? metrics_refused(t->metrics) : 0,
		.queue_ready = -1,
		.queue_consumers = -1,
	};
	(void)broker_queue_depth(t->broker, &g->queue_ready, &g->queue_consumers);
}

static int
taskd_render(void *ctx, struct buf *out)
{
	struct stats_gauges g;
	taskd_gauges(ctx, &g);
	return stats_render(out, &g, PACKAGE_VERSION);
}

static const struct metrics_ops taskd_metrics_ops = {
	.render = taskd_render,
	.ready = taskd_is_ready,
};

/* Listens on metrics.listen when it is set; returns -1 with err filled
 * when it cannot. */
static int
taskd_metrics_open(struct taskd *t, const char *listen, char *err, size_t errlen)
{
	if (listen[0] == '\0')
		return 0;
	t->metrics = metrics_new(t->loop, listen, &taskd_metrics_ops, t, err, errlen);
	if (t->metrics == NULL)
		return -1;
	log_info("metrics: serving http://%s/metrics, /healthz, /readyz",
	    metrics_address(t->metrics));
	return 0;
}

/* A reload that changed metrics.listen: the new address, or (when it
 * cannot be had) the old one kept, said once in the log. */
static void
taskd_metrics_reload(struct taskd *t, const char *listen)
{
	const char *old = t->metrics != NULL ? metrics_listen(t->metrics) : "";
	if (strcmp(old, listen) == 0)
		return;
	char err[512];
	struct metrics *keep = t->metrics;
	t->metrics = NULL;
	if (taskd_metrics_open(t, listen, err, sizeof(err)) == 0) {
		metrics_free(keep);
		if (listen[0] == '\0')
			log_info("metrics: listener off");
		return;
	}
	/* The same port under another spelling is still ours: let it go and
	 * try once more before giving up. */
	char *was = keep != NULL ? strdup(metrics_listen(keep)) : NULL;
	metrics_free(keep);
	if (taskd_metrics_open(t, listen, err, sizeof(err)) == 0) {
		free(was);
		return;
	}
	log_error("metrics: %s; keeping %s", err, was != NULL ? was : "the listener off");
	if (was != NULL && taskd_metrics_open(t, was, err, sizeof(err)) < 0)
		log_error("metrics: %s; the listener is off", err);
	free(was);
}

/* ---- life cycle ------------------------------------------------------- */

static void
taskd_finish_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	(void)w;
	ev_break(loop, EVBREAK_ALL);
}

/* Called from inside the dispatcher: only schedule the stop. */
static void
taskd_idle(void *ctx)
{
	struct taskd *t = ctx;
	ev_timer_start(t->loop, &t->finish);
}

/* Applies the broker settings of the config in force; returns whether
 * that makes a new connection. */
static bool
taskd_apply_broker(struct taskd *t)
{
	struct connector_params p;
	taskd_params(&p, t->conf, t->node_id);
	return broker_reconfigure(t->broker, &p, t->conf->max_payload,
	    t->conf->max_unconfirmed, t->conf->reconnect_max) == 1;
}

/* Called from inside the dispatcher: only schedule the reconnect. */
static void
taskd_switch_idle(void *ctx)
{
	struct taskd *t = ctx;
	ev_timer_start(t->loop, &t->reconnect);
}

static void
taskd_reconnect_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)revents;
	struct taskd *t = w->data;
	if (t->state != TASKD_SWITCHING)
		return;
	ev_timer_stop(loop, &t->grace);
	t->state = TASKD_RUNNING;
	dispatch_resume(t->dispatch);
	/* A later reload may have put the old settings back: the consumer was
	 * cancelled all the same, so a new connection is due either way. */
	if (!taskd_apply_broker(t))
		broker_reconnect(t->broker);
}

/* New broker settings with the connection up: the consumer is cancelled,
 * tasks in flight finish and their results are confirmed and acked (within
 * shutdown.grace, like a stop), and only then is the connection made again,
 * so a reload never cuts a running task short. */
static void
taskd_switch(struct taskd *t)
{
	struct dispatch_stats st;
	dispatch_stats(t->dispatch, &st);
	log_info("broker settings changed: reconnecting once %zu tasks in flight "
	    "finish (at most %.0f s)", st.in_flight, t->conf->shutdown_grace);
	t->state = TASKD_SWITCHING;
	broker_cancel_consumer(t->broker);
	ev_timer_set(&t->grace, t->conf->shutdown_grace, 0.0);
	ev_timer_start(t->loop, &t->grace);
	dispatch_drain(t->dispatch, taskd_switch_idle, t);
}

static void
taskd_grace_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct taskd *t = w->data;
	struct dispatch_stats st;
	dispatch_stats(t->dispatch, &st);
	if (t->state == TASKD_SWITCHING) {
		log_warn("grace period before the reconnect over: %zu tasks still "
		    "running go back to the queue", st.in_flight);
		dispatch_abandon(t->dispatch);
		ev_timer_start(t->loop, &t->reconnect);
		return;
	}
	log_warn("shutdown grace period over: %zu tasks still running go back to the queue",
	    st.in_flight);
	dispatch_abandon(t->dispatch);
	ev_timer_start(t->loop, &t->finish);
}

static void
taskd_stop_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)revents;
	struct taskd *t = w->data;

	if (t->state == TASKD_DRAINING) {
		/* A second signal: stop now; the broker requeues what is unacked. */
		log_warn("second stop signal: stopping at once");
		ev_break(loop, EVBREAK_ALL);
		return;
	}
	/* A stop during a switch: the reconnect is off, the drain goes on
	 * under the stop's own grace period. */
	ev_timer_stop(loop, &t->reconnect);
	ev_timer_stop(loop, &t->grace);
	t->state = TASKD_DRAINING;
	struct dispatch_stats st;
	dispatch_stats(t->dispatch, &st);
	log_info("stopping (signal %d): %zu tasks in flight, grace %.0f s",
	    w->signum, st.in_flight, t->conf->shutdown_grace);
	broker_cancel_consumer(t->broker);
	ev_timer_set(&t->grace, t->conf->shutdown_grace, 0.0);
	ev_timer_start(loop, &t->grace);
	char extend[80];
	snprintf(extend, sizeof(extend), "STOPPING=1\nEXTEND_TIMEOUT_USEC=%llu\n",
	    (unsigned long long)((t->conf->shutdown_grace + TASKD_STOP_SLACK) * 1e6));
	taskd_notify_status(t, extend);
	dispatch_drain(t->dispatch, taskd_idle, t);
}

/* The end of a reload for the manager: READY=1 again, and for a refused
 * reload a status that says so until the next refresh. */
static void
taskd_ready_again(struct taskd *t, const char *refused)
{
	if (refused == NULL) {
		taskd_notify_status(t, "READY=1\n");
		return;
	}
	if (notify_send("READY=1\nSTATUS=%s", refused) < 0)
		log_debug("cannot notify the service manager: %s", strerror(errno));
	/* Keep that status visible for one refresh period. */
	ev_timer_again(t->loop, &t->status);
}

static void
taskd_reload_cb(struct ev_loop *loop, ev_signal *w, int revents)
{
	(void)loop;
	(void)revents;
	struct taskd *t = w->data;
	char *errs = NULL;

	if (t->state != TASKD_RUNNING && t->state != TASKD_SWITCHING)
		return;
	log_info("reloading %s", t->conf->path);
	struct timespec now;
	clock_gettime(CLOCK_MONOTONIC, &now);
	/* MONOTONIC_USEC ties this reload to the manager's request (needed by
	 * Type=notify-reload, harmless before it). */
	if (notify_send("RELOADING=1\nMONOTONIC_USEC=%llu",
	    (unsigned long long)now.tv_sec * 1000000ULL +
	    (unsigned long long)now.tv_nsec / 1000ULL) < 0)
		log_debug("cannot notify the service manager: %s", strerror(errno));
	struct conf *conf = conf_load(t->conf->path, &errs);
	struct registry *reg = NULL;
	if (conf != NULL)
		reg = registry_build(conf, &errs);
	if (reg == NULL) {
		/* One line per problem, then the verdict. */
		char *save = NULL;
		for (char *line = strtok_r(errs, "\n", &save); line != NULL;
		    line = strtok_r(NULL, "\n", &save))
			log_error("%s", line);
		log_error("reload refused: the configuration in force is unchanged");
		free(errs);
		conf_free(conf);
		taskd_ready_again(t, "reload refused (see the log); the previous "
		    "configuration stays in force");
		return;
	}
	confwarn_log(conf);
	log_set_level((enum log_level)conf->log_level);
	(void)coro_set_stack_size(conf->io_stack_size); /* conf checked the range */
	dispatch_reconfigure(t->dispatch, conf, reg);
	struct pool_params pp;
	char why[2048];
	taskd_pool_params(&pp, conf, why, sizeof(why));
	struct pool_stats ps;
	pool_stats(t->pool, &ps);
	if (ps.size != pp.size)
		log_info("cpu pool: %d workers, was %d (%s)", pp.size, ps.size, why);
	pool_configure(t->pool, &pp);
	taskd_metrics_reload(t, conf->metrics_listen);
	if (t->control != NULL) {
		struct control_params cp = { conf->control_exchange, conf->cancel_ttl,
		    t->node_id };
		if (control_reconfigure(t->control, &cp) < 0)
			log_warn("out of memory: fleet control keeps its old settings");
	}
	registry_free(t->reg);
	conf_free(t->conf);
	t->conf = conf;
	t->reg = reg;
	/* During a switch the reconnect to come takes whatever is in force. */
	if (t->state == TASKD_RUNNING) {
		struct connector_params p;
		taskd_params(&p, conf, t->node_id);
		if (broker_state(t->broker) == BROKER_UP &&
		    broker_params_differ(t->broker, &p))
			taskd_switch(t);
		else
			(void)taskd_apply_broker(t);
	}
	log_info("configuration reloaded: %zu tasks", registry_count(reg));
	taskd_ready_again(t, NULL);
}

/* The watchers, before anything can fail: taskd_free() stops them all,
 * started or not. */
static void
taskd_watchers_init(struct taskd *t)
{
	ev_signal_init(&t->sigterm, taskd_stop_cb, SIGTERM);
	ev_signal_init(&t->sigint, taskd_stop_cb, SIGINT);
	ev_signal_init(&t->sighup, taskd_reload_cb, SIGHUP);
	ev_timer_init(&t->grace, taskd_grace_cb, 0.0, 0.0);
	ev_timer_init(&t->finish, taskd_finish_cb, 0.0, 0.0);
	ev_timer_init(&t->reconnect, taskd_reconnect_cb, 0.0, 0.0);
	ev_timer_init(&t->status, taskd_status_cb, TASKD_STATUS_EVERY, TASKD_STATUS_EVERY);
	ev_timer_init(&t->watchdog, taskd_watchdog_cb, 0.0, notify_watchdog_usec() / 2e6);
	ev_timer_init(&t->tick, taskd_tick_cb, TASKD_TICK_EVERY, TASKD_TICK_EVERY);
	t->sigterm.data = t->sigint.data = t->sighup.data = t;
	t->grace.data = t->finish.data = t->reconnect.data = t;
	t->status.data = t->watchdog.data = t->tick.data = t;
}

struct taskd *
taskd_start(struct conf *conf, struct registry *reg)
{
	char why[2048], err[512];
	struct taskd *t = calloc(1, sizeof(*t));
	if (t == NULL) {
		log_error("out of memory at start");
		return NULL;
	}
	taskd_watchers_init(t);

	/* Signals arrive through a signalfd, so no handler ever runs on a
	 * coroutine's small stack. */
	t->loop = ev_default_loop(EVFLAG_SIGNALFD);
	if (t->loop == NULL) {
		log_error("cannot initialise the event loop");
		goto fail;
	}
	/* A peer that vanished must give EPIPE, not kill the daemon. */
	signal(SIGPIPE, SIG_IGN);
	/* I/O tasks run on coroutines of this loop (coro.h). */
	if (coro_setup(t->loop, conf->io_stack_size) < 0) {
		log_error("cannot set up coroutines: %s", strerror(errno));
		goto fail;
	}

	char host[256] = "localhost";
	(void)gethostname(host, sizeof(host) - 1);
	snprintf(t->node_id, sizeof(t->node_id), "%s:%ld", host, (long)getpid());

	t->dispatch = dispatch_new(t->loop, conf, reg, t->node_id);
	struct connector_params p;
	taskd_params(&p, conf, t->node_id);
	if (t->dispatch != NULL)
		t->broker = broker_new(t->loop, &p, conf->max_payload, conf->max_unconfirmed,
		    conf->reconnect_max, &taskd_broker_ops, t);
	if (t->dispatch == NULL || t->broker == NULL) {
		log_error("out of memory at start");
		goto fail;
	}
	dispatch_attach(t->dispatch, t->broker);

	/* The CPU workers are forked now, while the daemon is one thread: the
	 * broker connector and curl's resolver start threads later (workers
	 * are exec'd, so later replacements are safe too; docs/pool.md). */
	struct pool_params pp;
	taskd_pool_params(&pp, conf, why, sizeof(why));
	t->pool = pool_new(t->loop, &pp, err, sizeof(err));
	if (t->pool == NULL) {
		log_error("cannot start the cpu pool: %s", err);
		goto fail;
	}
	dispatch_set_pool(t->dispatch, t->pool);
	log_info("cpu pool: %d workers (%s)", pp.size, why);
	struct control_params cp = { conf->control_exchange, conf->cancel_ttl, t->node_id };
	t->control = control_new(t->loop, t->broker, t->dispatch, t->pool, &cp);
	if (t->control == NULL)
		log_error("out of memory: fleet control is off");

	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	t->start_time = (double)now.tv_sec + now.tv_nsec / 1e9;
	if (taskd_metrics_open(t, conf->metrics_listen, err, sizeof(err)) < 0) {
		log_error("metrics.listen: %s", err);
		goto fail;
	}

	ev_timer_start(t->loop, &t->tick);
	if (notify_enabled())
		ev_timer_start(t->loop, &t->status);
	if (notify_watchdog_usec() > 0)
		ev_timer_start(t->loop, &t->watchdog);
	ev_signal_start(t->loop, &t->sigterm);
	ev_signal_start(t->loop, &t->sigint);
	ev_signal_start(t->loop, &t->sighup);

	log_info("taskd %s starting: config %s, broker %s:%d%s, queue '%s', %zu tasks, "
	    "io concurrency %d, cpu %d (%s), prefetch %d%s%s",
	    PACKAGE_VERSION, conf->path, conf->broker.host, conf->broker.port,
	    conf->nnodes > 1 ? " and the other nodes of broker.uri" : "",
	    conf->queue_name, registry_count(reg), conf->io_max_concurrency,
	    conf->cpu_workers > 0 ? conf->cpu_workers : taskd_usable_cpus(),
	    conf->cpu_workers > 0 ? "cpu.workers" : "usable cores",
	    taskd_prefetch(conf), notify_enabled() ? ", notifying systemd" : "",
	    notify_watchdog_usec() > 0 ? " with watchdog" : "");
	confwarn_log(conf);
	/* Only now the daemon's: on failure they are still the caller's. */
	t->conf = conf;
	t->reg = reg;
	return t;

fail:
	taskd_free(t);
	return NULL;
}

int
taskd_run(struct taskd *t)
{
	t->state = TASKD_RUNNING;
	broker_start(t->broker);
	ev_run(t->loop, 0);
	t->state = TASKD_STOPPED;
	return t->exit_status;
}

/* The modules in the order they must go (the broker's last acks before
 * the dispatcher that owns their tasks; the pool's children after the
 * tasks that use them), each only if it was made. */
void
taskd_free(struct taskd *t)
{
	if (t == NULL)
		return;
	/* A daemon that never ran has no totals to tell (calloc left it in
	 * the first state, taskd_run() sets the last). */
	bool ran = t->state == TASKD_STOPPED;
	struct dispatch_stats st;
	if (ran)
		dispatch_stats(t->dispatch, &st);
	metrics_free(t->metrics);
	if (t->broker != NULL)
		broker_stop(t->broker);
	control_free(t->control);
	dispatch_free(t->dispatch);
	pool_free(t->pool);
	broker_free(t->broker);
	coro_teardown();
	fetch_teardown();
	/* An attempt stuck in a name lookup or TCP connect ends at its own
	 * timeout; a stop does not wait that long for it. */
	if (!connector_settle(1.0))
		log_info("exiting with a broker connection attempt still under way");
	if (t->loop != NULL) {
		ev_timer_stop(t->loop, &t->grace);
		ev_timer_stop(t->loop, &t->finish);
		ev_timer_stop(t->loop, &t->reconnect);
		ev_timer_stop(t->loop, &t->status);
		ev_timer_stop(t->loop, &t->watchdog);
		ev_timer_stop(t->loop, &t->tick);
		ev_signal_stop(t->loop, &t->sigterm);
		ev_signal_stop(t->loop, &t->sigint);
		ev_signal_stop(t->loop, &t->sighup);
	}
	if (ran)
		log_info("stopped: %llu ok, %llu failed, %llu rejected, %llu requeued",
		    (unsigned long long)st.ok, (unsigned long long)st.failed,
		    (unsigned long long)st.rejected, (unsigned long long)st.requeued);
	if (t->loop != NULL)
		ev_loop_destroy(t->loop);
	registry_free(t->reg);
	conf_free(t->conf);
	stats_reset();
	free(t);
}
