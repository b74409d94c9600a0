#include "worker.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <unistd.h>

#include "buf.h"
#include "frame.h"
#include "handler.h"
#include "log.h"
#include "plugin.h"
#include "worker_exec.h"

struct worker {
	unsigned slot;
	struct buf in;       /* bytes read from the channel */
	size_t in_off;       /* where the unparsed bytes of in start */
	const char *frame;   /* the current frame, inside in */
	size_t frame_len;
	struct buf out;      /* the frame being written */
	struct handler_output res;
	uint64_t child_seq;  /* the task a CHILD frame was sent for, 0 = none */
};

int
worker_wanted(void)
{
	return getenv(WORKER_ENV) != NULL;
}

static int
write_full(int fd, const void *p, size_t n)
{
	const char *c = p;
	while (n > 0) {
		ssize_t w = write(fd, c, n);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return -1;
		c += w;
		n -= (size_t)w;
	}
	return 0;
}

/* Reads what is there (at least one byte) into w->in. */
static int
fill(struct worker *w, size_t want)
{
	if (buf_reserve(&w->in, want < 65536 ? 65536 : want) < 0)
		return -1;
	for (;;) {
		ssize_t r = read(WORKER_FD, w->in.data + w->in.len, w->in.cap - w->in.len - 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return -1;
		w->in.len += (size_t)r;
		return 0;
	}
}

/* The next whole frame (w->frame); -1 at end of file (time to go).  Reads
 * as much as the channel holds at once: a small task costs one read(2). */
static int
read_frame(struct worker *w)
{
	if (w->in_off > 0) {
		/* Keep only what follows the previous frame. */
		memmove(w->in.data, w->in.data + w->in_off, w->in.len - w->in_off);
		w->in.len -= w->in_off;
		w->in_off = 0;
	}
	size_t size;
	while ((size = frame_size(w->in.data, w->in.len, FRAME_MAX)) == 0)
		if (fill(w, FRAME_HEADER) < 0)
			return -1;
	if (size == (size_t)-1)
		return -1;
	while (w->in.len < size)
		if (fill(w, size - w->in.len) < 0)
			return -1;
	w->frame = w->in.data;
	w->frame_len = size;
	w->in_off = size;
	return 0;
}

/* Resident set size in bytes, from /proc/self/statm (pages). */
static uint64_t
rss_bytes(void)
{
	FILE *f = fopen("/proc/self/statm", "re");
	unsigned long size = 0, resident = 0;
	if (f == NULL)
		return 0;
	if (fscanf(f, "%lu %lu", &size, &resident) != 2)
		resident = 0;
	fclose(f);
	return (uint64_t)resident * (uint64_t)sysconf(_SC_PAGESIZE);
}

/* Tells the parent the process group of an exec task's program, so its
 * deadline kill reaches the program too.  Once per task: the parent takes
 * a second CHILD frame for a broken worker. */
static void
report_child(void *ctx, uint64_t seq, pid_t pgid)
{
	struct worker *w = ctx;
	if (w->child_seq == seq)
		return;
	w->child_seq = seq;
	struct frame_child c = { .seq = seq, .pgid = (int32_t)pgid };
	struct buf b = { 0 };
	if (frame_put_child(&b, &c) == 0)
		(void)write_full(WORKER_FD, b.data, b.len);
	buf_free(&b);
}

/* s, or fallback when s is longer than a RESULT frame may carry. */
static const char *
short_str(const char *s, const char *fallback)
{
	return s != NULL && strlen(s) > FRAME_STR_MAX ? fallback : s;
}

static void
run_task(struct worker *w, const struct frame_task *t)
{
	struct handler_output *out = &w->res;
	struct handler_input in = {
		.payload = t->payload,
		.len = t->len,
		.content_type = t->content_type,
		.deadline = t->deadline,
	};

	buf_reset(&out->body);
	out->status = RESULT_OK;
	out->error_code = NULL;
	out->content_type = NULL;

	const struct handler *h = handler_find(t->handler);
	if (t->argv != NULL && strcmp(t->handler, WORKER_EXEC_HANDLER) == 0) {
		worker_exec(t->argv, &in, (size_t)t->max_result, t->seq, report_child, w, out);
	} else if (h != NULL && h->kind == HANDLER_CPU && h->run != NULL) {
		h->run(&in, out);
	} else if (plugin_run(t->handler, &in, out) < 0) {
		handler_fail(out, RESULT_ERROR, "handler_failed",
		    "no cpu handler '%s' in this worker", t->handler);
	}
}

static int
send_result(struct worker *w, const struct frame_task *t)
{
	struct handler_output *out = &w->res;
	/* The parent would take a larger frame for a broken worker. */
	if (t->max_result > 0 && out->body.len > t->max_result)
		handler_fail(out, RESULT_ERROR, "handler_failed", "the result is "
		    "larger than %llu bytes", (unsigned long long)t->max_result);
	bool ok = out->status == RESULT_OK;
	struct frame_result r = {
		.seq = t->seq,
		.status = (uint8_t)out->status,
		.rss = (t->flags & FRAME_MEASURE_RSS) ? rss_bytes() : 0,
		.error_code = ok ? NULL : short_str(out->error_code, "handler_failed"),
		.content_type = short_str(out->content_type, NULL),
		.body = out->body.data,
		.len = out->body.len,
	};
	buf_reset(&w->out);
	if (frame_put_result(&w->out, &r) < 0) {
		/* The body could not be framed (memory): say so instead. */
		handler_fail(out, RESULT_ERROR, "handler_failed",
		    "the worker ran out of memory sending the result");
		r.status = RESULT_ERROR;
		r.error_code = out->error_code;
		r.content_type = NULL;
		r.body = out->body.data;
		r.len = out->body.len;
		buf_reset(&w->out);
		if (frame_put_result(&w->out, &r) < 0)
			return -1;
	}
	return write_full(WORKER_FD, w->out.data, w->out.len);
}

/* HELLO, READY, then tasks until end of file.  Returns the exit status. */
static int
worker_loop(struct worker *w)
{
	if (read_frame(w) < 0)
		return 0;
	struct frame_hello hello;
	if (frame_get_hello(w->frame, w->frame_len, &hello) < 0) {
		log_error("cpu worker: malformed hello from the daemon");
		return 1;
	}
	w->slot = hello.slot;
	struct buf err = { 0 };
	int rc = plugin_load_all(hello.plugins, &err);
	frame_free_vec(hello.plugins);
	if (rc < 0) {
		log_error("cpu worker %u: %s", w->slot, err.data ? err.data : "out of memory");
		buf_free(&err);
		return 1;
	}
	buf_reset(&w->out);
	if (frame_put_ready(&w->out, w->slot) < 0 ||
	    write_full(WORKER_FD, w->out.data, w->out.len) < 0)
		return 1;

	while (read_frame(w) == 0) {
		struct frame_task t;
		if (frame_get_task(w->frame, w->frame_len, &t) < 0) {
			log_error("cpu worker %u: malformed task frame from the daemon", w->slot);
			return 1;
		}
		run_task(w, &t);
		rc = send_result(w, &t);
		frame_free_vec(t.argv);
		if (rc < 0)
			break;
	}
	return 0;
}

int
worker_main(void)
{
	struct worker w = { 0 };
	const char *parent = getenv(WORKER_ENV);
	long ppid = parent ? strtol(parent, NULL, 10) : 0;

	/* The parent may have died between fork and exec: PDEATHSIG was set
	 * before the exec and survives it, but only fires for a later death. */
	if (ppid <= 1 || getppid() != (pid_t)ppid)
		return 1;
	unsetenv(WORKER_ENV);
	log_init();
	/* exec tasks write to a program's stdin; one that exits early must
	 * give EPIPE, not kill the worker. */
	signal(SIGPIPE, SIG_IGN);

	int status = worker_loop(&w);
	buf_free(&w.in);
	buf_free(&w.out);
	buf_free(&w.res.body);
	return status;
}
