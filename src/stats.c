#include "stats.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "result.h"

/* One process, one loop thread: plain globals, like the log level.  Passing
 * a handle through dispatch, broker and taskd would buy nothing but
 * plumbing, and every writer is on the loop. */
static struct {
	struct stats_task **tasks;   /* rows never move: tasks hold pointers */
	size_t ntasks, cap;
	struct stats_task unknown;   /* STATS_UNKNOWN_TASK, always there */
	bool unknown_seen;
	uint64_t counters[STATS_NCOUNTERS];
	struct stats_histogram confirm;
} st;

static const double duration_le[STATS_NDURATION] = STATS_DURATION_BUCKETS;
static const double confirm_le[STATS_NCONFIRM] = STATS_CONFIRM_BUCKETS;

_Static_assert(STATS_NDURATION < 17 && STATS_NCONFIRM < 17,
    "struct stats_histogram holds 16 bounds and +Inf");

static void
observe(struct stats_histogram *h, const double *le, size_t n, double v)
{
	size_t i = 0;
	while (i < n && v > le[i])
		i++;
	h->buckets[i]++;
	h->count++;
	h->sum += v;
}

struct stats_task *
stats_task_row(const char *name)
{
	if (name == NULL)
		return &st.unknown;
	/* Linear: a handful of configured names; a hash would cost more than
	 * the compares. */
	for (size_t i = 0; i < st.ntasks; i++)
		if (strcmp(st.tasks[i]->name, name) == 0)
			return st.tasks[i];
	if (st.ntasks == st.cap) {
		size_t cap = st.cap ? 2 * st.cap : 16;
		struct stats_task **v = realloc(st.tasks, cap * sizeof(*v));
		if (v == NULL)
			return &st.unknown;
		st.tasks = v;
		st.cap = cap;
	}
	struct stats_task *t = calloc(1, sizeof(*t));
	if (t == NULL || (t->name = strdup(name)) == NULL) {
		free(t);
		return &st.unknown;
	}
	st.tasks[st.ntasks++] = t;
	return t;
}

void
stats_task_answered(const char *task, int status, double seconds)
{
	stats_answered(stats_task_row(task), status, seconds);
}

void
stats_answered(struct stats_task *t, int status, double seconds)
{
	if (t == &st.unknown)
		st.unknown_seen = true;
	if (status < 0 || status >= STATS_STATUSES)
		status = STATS_STATUSES - 1;
	t->by_status[status]++;
	if (seconds >= 0)
		observe(&t->duration, duration_le, STATS_NDURATION, seconds);
}

void
stats_count(enum stats_counter c)
{
	st.counters[c]++;
}

void
stats_confirmed(double seconds)
{
	observe(&st.confirm, confirm_le, STATS_NCONFIRM, seconds < 0 ? 0 : seconds);
}

uint64_t
stats_get(enum stats_counter c)
{
	return st.counters[c];
}

void
stats_totals(uint64_t *out)
{
	for (int s = 0; s < STATS_STATUSES; s++) {
		out[s] = st.unknown.by_status[s];
		for (size_t i = 0; i < st.ntasks; i++)
			out[s] += st.tasks[i]->by_status[s];
	}
}

size_t
stats_ntasks(void)
{
	return st.ntasks + (st.unknown_seen ? 1 : 0);
}

const struct stats_task *
stats_task(size_t i)
{
	if (i < st.ntasks)
		return st.tasks[i];
	st.unknown.name = (char *)STATS_UNKNOWN_TASK;
	return i == st.ntasks && st.unknown_seen ? &st.unknown : NULL;
}

const struct stats_histogram *
stats_confirm_latency(void)
{
	return &st.confirm;
}

void
stats_reset(void)
{
	for (size_t i = 0; i < st.ntasks; i++) {
		free(st.tasks[i]->name);
		free(st.tasks[i]);
	}
	free(st.tasks);
	memset(&st, 0, sizeof(st));
}

/* ---- the text format ---------------------------------------------------- */

/* A label value: backslash, double quote and line feed escaped (text
 * format 0.0.4).  Configured names never hold them; the format is kept
 * whatever a name holds. */
static int
label(struct buf *b, const char *v)
{
	int rc = 0;
	for (; *v != '\0' && rc == 0; v++) {
		if (*v == '\\')
			rc = buf_puts(b, "\\\\");
		else if (*v == '"')
			rc = buf_puts(b, "\\\"");
		else if (*v == '\n')
			rc = buf_puts(b, "\\n");
		else
			rc = buf_append(b, v, 1);
	}
	return rc;
}

static int
head(struct buf *b, const char *name, const char *type, const char *help)
{
	return buf_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Bounds are short decimals: %g writes them as written ("0.005", "300");
 * a sum takes %.17g, which round-trips a double. */
static int
histogram(struct buf *b, const char *name, const char *task,
    const struct stats_histogram *h, const double *le, size_t n)
{
	uint64_t cum = 0;
	int rc = 0;
	for (size_t i = 0; i <= n && rc == 0; i++) {
		cum += h->buckets[i];
		rc = buf_printf(b, "%s_bucket{", name);
		if (rc == 0 && task != NULL)
			rc = buf_puts(b, "task=\"") || label(b, task) || buf_puts(b, "\",");
		if (rc == 0 && i < n)
			rc = buf_printf(b, "le=\"%g\"} %llu\n", le[i], (unsigned long long)cum);
		else if (rc == 0)
			rc = buf_printf(b, "le=\"+Inf\"} %llu\n", (unsigned long long)cum);
	}
	const char *sfx[2] = { "_sum", "_count" };
	for (int k = 0; k < 2 && rc == 0; k++) {
		rc = buf_printf(b, "%s%s", name, sfx[k]);
		if (rc == 0 && task != NULL)
			rc = buf_puts(b, "{task=\"") || label(b, task) || buf_puts(b, "\"}");
		if (rc == 0 && k == 0)
			rc = buf_printf(b, " %.17g\n", h->sum);
		else if (rc == 0)
			rc = buf_printf(b, " %llu\n", (unsigned long long)h->count);
	}
	return rc;
}

static int
gauge(struct buf *b, const char *name, const char *help, double v)
{
	return head(b, name, "gauge", help) || buf_printf(b, "%s %.17g\n", name, v);
}

static int
counter(struct buf *b, const char *name, const char *help, uint64_t v)
{
	return head(b, name, "counter", help) ||
	    buf_printf(b, "%s %llu\n", name, (unsigned long long)v);
}

int
stats_render(struct buf *b, const struct stats_gauges *g, const char *version)
{
	size_t n = stats_ntasks();
	int rc = 0;

	rc = rc || head(b, "taskd_tasks_total", "counter",
	    "Tasks answered, by configured task name and result status.");
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct stats_task *t = stats_task(i);
		/* Every status a task can get is there from the first answer,
		 * zero or not, so rate() and ratios work without gaps. */
		for (int s = 0; s < STATS_STATUSES && rc == 0; s++) {
			if (s > RESULT_REJECTED && t->by_status[s] == 0)
				continue;
			rc = buf_puts(b, "taskd_tasks_total{task=\"") || label(b, t->name) ||
			    buf_printf(b, "\",status=\"%s\"} %llu\n",
			    result_status_name((enum result_status)s),
			    (unsigned long long)t->by_status[s]);
		}
	}
	rc = rc || head(b, "taskd_task_duration_seconds", "histogram",
	    "How long tasks ran (their last run), by configured task name.");
	for (size_t i = 0; i < n && rc == 0; i++) {
		const struct stats_task *t = stats_task(i);
		if (t->duration.count > 0)
			rc = histogram(b, "taskd_task_duration_seconds", t->name,
			    &t->duration, duration_le, STATS_NDURATION);
	}
	rc = rc || head(b, "taskd_tasks_running", "gauge",
	    "Tasks running now: I/O tasks on coroutines, CPU tasks on workers.") ||
	    buf_printf(b, "taskd_tasks_running{kind=\"io\"} %zu\n"
	    "taskd_tasks_running{kind=\"cpu\"} %zu\n", g->io_running, g->cpu_running);
	rc = rc || head(b, "taskd_cpu_workers", "gauge",
	    "CPU worker processes, busy with a task or idle.") ||
	    buf_printf(b, "taskd_cpu_workers{state=\"busy\"} %d\n"
	    "taskd_cpu_workers{state=\"idle\"} %d\n", g->workers_busy, g->workers_idle);
	rc = rc || gauge(b, "taskd_broker_connected",
	    "1 while the broker connection is up, else 0.", g->broker_connected);
	rc = rc || counter(b, "taskd_broker_reconnects_total",
	    "Broker connections made after the first one.", stats_get(STATS_RECONNECTS));
	rc = rc || head(b, "taskd_build_info", "gauge", "Always 1; the version is a label.") ||
	    buf_puts(b, "taskd_build_info{version=\"") || label(b, version) ||
	    buf_puts(b, "\"} 1\n");

	rc = rc || gauge(b, "taskd_ready", "1 while consuming (/readyz answers 200), else 0.",
	    g->ready);
	rc = rc || head(b, "taskd_tasks_waiting", "gauge",
	    "Tasks taken from the queue and waiting to run: I/O tasks for a slot "
	    "(io.max_concurrency), CPU tasks for a free worker.") ||
	    buf_printf(b, "taskd_tasks_waiting{kind=\"io\"} %zu\n"
	    "taskd_tasks_waiting{kind=\"cpu\"} %zu\n", g->io_waiting, g->cpu_waiting);
	rc = rc || gauge(b, "taskd_tasks_in_flight",
	    "Tasks taken from the queue and not yet settled (running, waiting, "
	    "publishing their result).", (double)g->in_flight);
	rc = rc || gauge(b, "taskd_coroutines", "Coroutines alive.", (double)g->coroutines);
	rc = rc || counter(b, "taskd_tasks_redelivered_total",
	    "Deliveries of a task that was delivered before.", stats_get(STATS_REDELIVERED));
	rc = rc || counter(b, "taskd_tasks_delivery_limit_total",
	    "Tasks refused for being delivered more than limits.max_deliveries times.",
	    stats_get(STATS_DELIVERY_LIMIT));
	rc = rc || counter(b, "taskd_tasks_requeued_total",
	    "Tasks sent back to the queue unanswered (a stop, a lost worker's retry "
	    "elsewhere, a nacked result).", g->requeued);
	rc = rc || counter(b, "taskd_results_returned_total",
	    "Results the broker returned: their reply address has no queue.",
	    g->results_returned);
	rc = rc || gauge(b, "taskd_results_unconfirmed",
	    "Results published and not yet confirmed by the broker.",
	    (double)g->results_unconfirmed);
	rc = rc || head(b, "taskd_confirm_duration_seconds", "histogram",
	    "From publishing a result to the broker's confirm.") ||
	    histogram(b, "taskd_confirm_duration_seconds", NULL, &st.confirm, confirm_le,
	    STATS_NCONFIRM);
	rc = rc || head(b, "taskd_cpu_worker_restarts_total", "counter",
	    "CPU workers replaced, by cause: crashed (lost while running a task), "
	    "recycled (cpu.max_tasks_per_child, cpu.max_memory), killed (a timeout).") ||
	    buf_printf(b, "taskd_cpu_worker_restarts_total{reason=\"crashed\"} %llu\n"
	    "taskd_cpu_worker_restarts_total{reason=\"recycled\"} %llu\n"
	    "taskd_cpu_worker_restarts_total{reason=\"killed\"} %llu\n",
	    (unsigned long long)g->workers_crashed, (unsigned long long)g->workers_recycled,
	    (unsigned long long)g->workers_killed);
	/* Absent until the broker has answered on this connection: a made-up
	 * 0 would tell an autoscaler the queue is empty. */
	if (g->queue_ready >= 0) {
		rc = rc || gauge(b, "taskd_queue_messages_ready",
		    "Tasks waiting in the task queue (every node's), as the broker "
		    "last told this node (asked every 2 s).", (double)g->queue_ready);
		rc = rc || gauge(b, "taskd_queue_consumers",
		    "Consumers of the task queue (every node's), as the broker last "
		    "told this node.", (double)g->queue_consumers);
	}
	rc = rc || gauge(b, "taskd_start_time_seconds",
	    "When this process started, in seconds since the Unix epoch.", g->start_time);
	rc = rc || counter(b, "taskd_metrics_refused_total",
	    "Connections to the metrics listener closed at once: over its bound.",
	    g->http_refused);
	return rc ? -1 : 0;
}
