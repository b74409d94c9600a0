/*
 * bench/pool_overhead: what the CPU pool adds to a task, without a broker.
 *
 *   bench/pool_overhead [N]
 *
 * Runs N trivial CPU tasks (sha256 of an empty payload) one after another
 * through a pool of one worker (frame out, worker runs it, frame back,
 * done() in the loop), then N times inline, and prints the mean time per
 * task of each and their difference: the pool's dispatch overhead.  The
 * binary is its own worker (the pool execs /proc/self/exe), like taskd.
 *
 * It also prints the floor under that overhead: a bare ping-pong of 40
 * bytes between two processes over a socketpair (blocking read/write, no
 * event loop, no framing), i.e. what the kernel charges for waking the
 * other process and being woken back.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <ev.h>

#include "handler.h"
#include "log.h"
#include "pool.h"
#include "worker.h"

static struct pool *pool;
static long left;
static struct handler_call call;

static void
done_cb(struct handler_call *c)
{
	if (c->out.status != RESULT_OK) {
		fprintf(stderr, "pool_overhead: task failed: %.*s\n",
		    (int)c->out.body.len, c->out.body.data);
		exit(1);
	}
	if (--left > 0) {
		buf_reset(&c->out.body);
		if (pool_submit(pool, c, "sha256") < 0)
			exit(1);
	} else {
		ev_break(c->loop, EVBREAK_ALL);
	}
}

static double
run_pool(struct ev_loop *loop, long n)
{
	left = n;
	double t0 = handler_clock();
	if (pool_submit(pool, &call, "sha256") < 0)
		exit(1);
	ev_run(loop, 0);
	return (handler_clock() - t0) / (double)n;
}

/* Mean round trip of a 40-byte ping-pong with a child; -1 on failure. */
static double
ping_pong(long n)
{
	int sv[2];
	char b[64] = { 0 };
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, sv) < 0)
		return -1;
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0) {
		close(sv[0]);
		while (read(sv[1], b, sizeof(b)) > 0)
			if (write(sv[1], b, 40) != 40)
				break;
		_exit(0);
	}
	close(sv[1]);
	double t0 = handler_clock();
	for (long i = 0; i < n; i++)
		if (write(sv[0], b, 40) != 40 || read(sv[0], b, sizeof(b)) <= 0)
			break;
	double per = (handler_clock() - t0) / (double)n;
	close(sv[0]);
	waitpid(pid, NULL, 0);
	return per;
}

int
main(int argc, char **argv)
{
	if (worker_wanted())
		return worker_main();
	long n = argc > 1 ? atol(argv[1]) : 100000;
	if (n < 1)
		n = 1;
	log_init();
	struct ev_loop *loop = ev_default_loop(EVFLAG_SIGNALFD);
	struct pool_params p = { .size = 1, .backlog = 16, .max_result = 1 << 20 };
	char err[256];
	pool = pool_new(loop, &p, err, sizeof(err));
	if (pool == NULL) {
		fprintf(stderr, "pool_overhead: %s\n", err);
		return 1;
	}
	call.loop = loop;
	call.in.payload = "";
	call.in.len = 0;
	call.done = done_cb;

	run_pool(loop, n / 10 + 1);              /* warm up: worker started, caches hot */
	double through_pool = run_pool(loop, n);

	const struct handler *h = handler_find("sha256");
	struct handler_output out = { 0 };
	double t0 = handler_clock();
	for (long i = 0; i < n; i++) {
		buf_reset(&out.body);
		h->run(&call.in, &out);
	}
	double inline_ = (handler_clock() - t0) / (double)n;

	buf_free(&out.body);
	buf_free(&call.out.body);
	pool_free(pool);
	ev_loop_destroy(loop);
	double floor_ = ping_pong(n);

	printf("tasks %ld\npool_us %.2f\ninline_us %.2f\noverhead_us %.2f\n"
	    "floor_us %.2f\n", n, through_pool * 1e6, inline_ * 1e6,
	    (through_pool - inline_) * 1e6, floor_ * 1e6);
	return 0;
}
