/*
 * coro-switch: the cost of one coroutine switch.  A coroutine calls
 * coro_call_main() with an empty function N times: each call is two
 * switches (there and back), with nothing else in between.  Built twice:
 * with the assembly switch (bench/coro-switch) and with the ucontext
 * fallback (bench/coro-switch-ucontext).
 *
 *   bench/coro-switch [calls]     prints ns per switch
 */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "coro.h"

static void
nothing(void *arg)
{
	(void)arg;
}

static void
body(void *arg)
{
	long n = *(long *)arg;
	for (long i = 0; i < n; i++)
		coro_call_main(nothing, NULL);
}

static double
now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int
main(int argc, char **argv)
{
	long n = argc > 1 ? atol(argv[1]) : 1000000;
	struct ev_loop *loop = ev_default_loop(0);

	if (n <= 0 || loop == NULL || coro_setup(loop, CORO_STACK_DEFAULT) < 0) {
		fprintf(stderr, "usage: coro-switch [calls > 0]\n");
		return 2;
	}
	struct coro *c = coro_new(body, NULL, &n);
	if (c == NULL) {
		perror("coro_new");
		return 1;
	}
	double t0 = now();
	coro_resume(c);
	double took = now() - t0;
	struct coro_stats st;
	coro_stats(&st);
	printf("%s: %llu switches in %.3f s: %.1f ns per switch\n",
#ifdef CORO_UCONTEXT
	    "ucontext",
#else
	    "assembly",
#endif
	    st.switches, took, took * 1e9 / (double)st.switches);
	coro_teardown();
	return 0;
}
