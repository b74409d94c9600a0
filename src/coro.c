/* coro: stackful coroutines on libev; see coro.h for the concepts. */
#include "coro.h"

#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#if defined(__SANITIZE_ADDRESS__)
#define CORO_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define CORO_ASAN 1
#endif
#endif
#ifdef CORO_ASAN
#include <sanitizer/common_interface_defs.h>
#endif

#ifdef HAVE_VALGRIND_VALGRIND_H
#include <valgrind/valgrind.h>
#define CORO_VALGRIND 1
#endif

/* The assembly switch where we have one; CORO_UCONTEXT forces the
 * fallback (the switch benchmark builds both). */
#if !defined(CORO_UCONTEXT) && !defined(__x86_64__) && !defined(__aarch64__)
#define CORO_UCONTEXT 1
#endif
#ifdef CORO_UCONTEXT
#include <ucontext.h>
#endif

/* How many finished coroutines (struct and stack) are kept for reuse.
 * Beyond this they are freed and their stacks unmapped: a burst of ten
 * thousand tasks should not pin ten thousand stacks' worth of touched
 * pages for the rest of the daemon's life. */
#define CORO_FREE_MAX 256

struct coro_ctx {
#ifdef CORO_UCONTEXT
	ucontext_t uc;
#else
	void *sp;              /* saved stack pointer while switched out */
#endif
#ifdef CORO_ASAN
	void *asan_fake;       /* ASan's fake stack while switched out */
	const void *stack_lo;  /* this context's stack, as ASan wants it */
	size_t stack_len;
#endif
};

enum coro_state {
	CORO_S_NEW,      /* made, fn not entered yet */
	CORO_S_RUNNING,  /* the current coroutine */
	CORO_S_WAITING,  /* switched out inside a wait, watchers armed */
	CORO_S_CALLING,  /* switched out for coro_call_main(): not resumable */
	CORO_S_DONE,     /* fn returned; to be recycled by the main context */
};

/*
 * On the heap, never inside its stack mapping.  The mapping is unmapped
 * when the coroutine ends and the free list is full, or was made for
 * another io.stack_size; the struct is what its callers (the dispatcher,
 * watcher callbacks, coro_cancel) hold, and its lifetime must not depend
 * on that.  The struct owns the mapping.  Both are freed together, in one
 * place (coro_finish), after which nothing reads either.
 */
struct coro {
	struct coro_ctx ctx;
	enum coro_state state;
	bool cancelled;
	bool woken;                    /* coro_wake() pending */
	bool in_wait;                  /* inside coro_wait() */
	struct coro *rprev, *rnext;    /* the ready list (coro_wake) */
	bool queued;
	struct coro *next_free;
	void (*fn)(void *);
	void (*done)(void *);
	void *arg;
	void (*main_fn)(void *);       /* coro_call_main() request */
	void *main_arg;
	char *map;                     /* guard page + stack */
	size_t map_len;
	size_t stack_size;             /* the io.stack_size it was made with */
#ifdef CORO_VALGRIND
	unsigned vg_id;
#endif
};

static struct {
	struct ev_loop *loop;
	size_t stack_size;
	size_t page;
	struct coro_ctx main;
	struct coro *current;
	struct coro *free;
	struct coro *ready_head, *ready_tail;
	ev_prepare prepare;
	struct coro_stats st;
} S;

static double
coro_clock(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* ---- the switch ----------------------------------------------------- */

#ifndef CORO_UCONTEXT
/* coro_switch_asm(&from->sp, to->sp): pushes the callee-saved registers on
 * the current stack, saves the stack pointer, loads the other one, pops
 * its registers and returns into it.  Everything else is caller-saved by
 * the ABI, so the compiler already spilled it around this call. */
void coro_switch_asm(void **from_sp, void *to_sp);

#if defined(__x86_64__)
/* MXCSR and the x87 control word are callee-saved too (SysV ABI 3.2.1). */
__asm__(
	".text\n"
	".globl coro_switch_asm\n"
	".hidden coro_switch_asm\n"
	".type coro_switch_asm,@function\n"
	".p2align 4\n"
	"coro_switch_asm:\n"
	"	pushq %rbp\n"
	"	pushq %rbx\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	subq $8, %rsp\n"
	"	stmxcsr (%rsp)\n"
	"	fnstcw 4(%rsp)\n"
	"	movq %rsp, (%rdi)\n"
	"	movq %rsi, %rsp\n"
	"	ldmxcsr (%rsp)\n"
	"	fldcw 4(%rsp)\n"
	"	addq $8, %rsp\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbx\n"
	"	popq %rbp\n"
	"	ret\n"
	".size coro_switch_asm,.-coro_switch_asm\n");
#define CORO_FRAME_WORDS 9 /* mxcsr/fpucw, 6 registers, entry, fake return */
#elif defined(__aarch64__)
/* x19-x28, fp, lr and the low halves of v8-v15 (AAPCS64 6.1.1). */
__asm__(
	".text\n"
	".globl coro_switch_asm\n"
	".hidden coro_switch_asm\n"
	".type coro_switch_asm,%function\n"
	".p2align 4\n"
	"coro_switch_asm:\n"
	"	sub sp, sp, #160\n"
	"	stp x19, x20, [sp, #0]\n"
	"	stp x21, x22, [sp, #16]\n"
	"	stp x23, x24, [sp, #32]\n"
	"	stp x25, x26, [sp, #48]\n"
	"	stp x27, x28, [sp, #64]\n"
	"	stp x29, x30, [sp, #80]\n"
	"	stp d8, d9, [sp, #96]\n"
	"	stp d10, d11, [sp, #112]\n"
	"	stp d12, d13, [sp, #128]\n"
	"	stp d14, d15, [sp, #144]\n"
	"	mov x9, sp\n"
	"	str x9, [x0]\n"
	"	mov sp, x1\n"
	"	ldp x19, x20, [sp, #0]\n"
	"	ldp x21, x22, [sp, #16]\n"
	"	ldp x23, x24, [sp, #32]\n"
	"	ldp x25, x26, [sp, #48]\n"
	"	ldp x27, x28, [sp, #64]\n"
	"	ldp x29, x30, [sp, #80]\n"
	"	ldp d8, d9, [sp, #96]\n"
	"	ldp d10, d11, [sp, #112]\n"
	"	ldp d12, d13, [sp, #128]\n"
	"	ldp d14, d15, [sp, #144]\n"
	"	add sp, sp, #160\n"
	"	ret\n"
	".size coro_switch_asm,.-coro_switch_asm\n");
#endif
#endif /* !CORO_UCONTEXT */

static void
ctx_switch(struct coro_ctx *from, struct coro_ctx *to, bool from_exits)
{
#ifdef CORO_ASAN
	/* A context that never comes back passes NULL so ASan frees its
	 * fake stack now. */
	__sanitizer_start_switch_fiber(from_exits ? NULL : &from->asan_fake,
	    to->stack_lo, to->stack_len);
#else
	(void)from_exits;
#endif
	S.st.switches++;
#ifdef CORO_UCONTEXT
	swapcontext(&from->uc, &to->uc);
#else
	coro_switch_asm(&from->sp, to->sp);
#endif
#ifdef CORO_ASAN
	__sanitizer_finish_switch_fiber(from->asan_fake, NULL, NULL);
#endif
}

/* Where every coroutine starts, on its own stack.  It never returns: the
 * last switch hands the stack back to the main context for recycling. */
static void
coro_entry(void)
{
	struct coro *c = S.current;

#ifdef CORO_ASAN
	/* The first arrival: ASan tells us the main stack we came from. */
	__sanitizer_finish_switch_fiber(NULL, &S.main.stack_lo, &S.main.stack_len);
#endif
	c->fn(c->arg);
	c->state = CORO_S_DONE;
	S.current = NULL;
	ctx_switch(&c->ctx, &S.main, true);
	abort(); /* a finished coroutine is never resumed */
}

/* Sets c up to enter coro_entry() on its next resume. */
static void
ctx_init(struct coro *c)
{
	uintptr_t top = (uintptr_t)(c->map + c->map_len) & ~(uintptr_t)15;
#if defined(CORO_ASAN) || defined(CORO_UCONTEXT)
	char *lo = c->map + S.page;
#endif

#ifdef CORO_ASAN
	c->ctx.stack_lo = lo;
	c->ctx.stack_len = (size_t)((char *)top - lo);
	c->ctx.asan_fake = NULL;
#endif
#ifdef CORO_UCONTEXT
	/* getcontext() captures the signal mask now (the loop's, with the
	 * signalfd signals blocked); swapcontext() restores it each time. */
	getcontext(&c->ctx.uc);
	c->ctx.uc.uc_stack.ss_sp = lo;
	c->ctx.uc.uc_stack.ss_size = (size_t)((char *)top - lo);
	c->ctx.uc.uc_link = NULL;
	makecontext(&c->ctx.uc, coro_entry, 0);
#else
	void **sp = (void **)top;
#if defined(__x86_64__)
	/* Returning into coro_entry leaves rsp = top - 8, the alignment a
	 * call would give it. */
	*--sp = NULL;                          /* coro_entry's return address */
	*--sp = (void *)(uintptr_t)coro_entry; /* where ret goes */
	for (int i = 0; i < 6; i++)
		*--sp = NULL;                  /* rbp rbx r12-r15 */
	--sp;
	uint32_t ctl[2] = { 0x1F80, 0x037F }; /* default MXCSR, x87 CW */
	memcpy(sp, ctl, sizeof(ctl));
#elif defined(__aarch64__)
	sp -= 20;                              /* the 160-byte frame */
	memset(sp, 0, 160);
	sp[11] = (void *)(uintptr_t)coro_entry; /* x30: where ret goes */
#endif
	c->ctx.sp = sp;
#endif
}

/* ---- stacks --------------------------------------------------------- */

static size_t
round_page(size_t n)
{
	return (n + S.page - 1) & ~(S.page - 1);
}

/* Frees c and unmaps its stack.  Only for a coroutine that has ended (or
 * never started): its watchers are stopped and nothing points at it. */
static void
coro_destroy(struct coro *c)
{
#ifdef CORO_VALGRIND
	VALGRIND_STACK_DEREGISTER(c->vg_id);
#endif
	munmap(c->map, c->map_len);
	free(c);
}

/* A coroutine of the current stack size: a finished one from the free
 * list, or a new struct with a new mapping. */
static struct coro *
stack_get(void)
{
	struct coro *c = S.free;

	if (c != NULL) {
		/* Only stacks of the current size are in the list
		 * (coro_set_stack_size drops the others). */
		S.free = c->next_free;
		S.st.stacks_free--;
		return c;
	}
	c = calloc(1, sizeof(*c));
	if (c == NULL)
		return NULL;
	/* Guard page, then the stack: a coroutine that stays shallow touches
	 * a single page of it, which is what lets ten thousand of them wait
	 * in ~40 MB. */
	size_t len = S.page + S.stack_size;
	char *map = mmap(NULL, len, PROT_READ | PROT_WRITE,
	    MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE | MAP_STACK, -1, 0);
	if (map == MAP_FAILED) {
		free(c);
		return NULL;
	}
	if (mprotect(map, S.page, PROT_NONE) < 0) {
		int e = errno;
		munmap(map, len);
		free(c);
		errno = e;
		return NULL;
	}
	c->map = map;
	c->map_len = len;
	c->stack_size = S.stack_size;
#ifdef CORO_VALGRIND
	c->vg_id = VALGRIND_STACK_REGISTER(map + S.page, map + len);
#endif
	S.st.stacks_made++;
	return c;
}

/* Gives back a coroutine that has ended: cached when the list has room
 * and the stack has the current size, else destroyed. */
static void
stack_put(struct coro *c)
{
	if (S.st.stacks_free >= CORO_FREE_MAX || c->stack_size != S.stack_size) {
		coro_destroy(c);
		return;
	}
	c->next_free = S.free;
	S.free = c;
	S.st.stacks_free++;
}

/* Empties the free list. */
static void
stack_drop_free(void)
{
	struct coro *c;

	while ((c = S.free) != NULL) {
		S.free = c->next_free;
		coro_destroy(c);
	}
	S.st.stacks_free = 0;
}

/* ---- the ready list (coro_wake) ------------------------------------- */

static void
ready_remove(struct coro *c)
{
	if (!c->queued)
		return;
	if (c->rprev)
		c->rprev->rnext = c->rnext;
	else
		S.ready_head = c->rnext;
	if (c->rnext)
		c->rnext->rprev = c->rprev;
	else
		S.ready_tail = c->rprev;
	c->rprev = c->rnext = NULL;
	c->queued = false;
}

static void
ready_push(struct coro *c)
{
	if (c->queued)
		return;
	c->rnext = NULL;
	c->rprev = S.ready_tail;
	if (S.ready_tail)
		S.ready_tail->rnext = c;
	else
		S.ready_head = c;
	S.ready_tail = c;
	c->queued = true;
}

/* ---- life cycle ----------------------------------------------------- */

static void coro_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents);

int
coro_setup(struct ev_loop *loop, size_t stack_size)
{
	long page = sysconf(_SC_PAGESIZE);

	if (stack_size < CORO_STACK_MIN || stack_size > CORO_STACK_MAX) {
		errno = EINVAL;
		return -1;
	}
	memset(&S, 0, sizeof(S));
	S.loop = loop;
	S.page = page > 0 ? (size_t)page : 4096;
	S.stack_size = round_page(stack_size);
	ev_prepare_init(&S.prepare, coro_prepare_cb);
	ev_prepare_start(loop, &S.prepare);
	/* Waiting coroutines keep the loop alive through their own watchers,
	 * not through this one. */
	ev_unref(loop);
	return 0;
}

int
coro_set_stack_size(size_t stack_size)
{
	if (stack_size < CORO_STACK_MIN || stack_size > CORO_STACK_MAX) {
		errno = EINVAL;
		return -1;
	}
	size_t size = round_page(stack_size);
	if (size != S.stack_size) {
		/* Cached stacks of the old size would never be reused; coroutines
		 * alive keep theirs until they end, and stack_put() then frees
		 * them instead of caching them. */
		stack_drop_free();
		S.stack_size = size;
	}
	return 0;
}

void
coro_teardown(void)
{
	if (S.loop == NULL)
		return;
	stack_drop_free();
	ev_ref(S.loop);
	ev_prepare_stop(S.loop, &S.prepare);
	S.loop = NULL;
}

void
coro_trim(void)
{
	stack_drop_free();
}

struct coro *
coro_new(void (*fn)(void *arg), void (*done)(void *arg), void *arg)
{
	struct coro *c = stack_get();

	if (c == NULL) {
		errno = ENOMEM;
		return NULL;
	}
	c->state = CORO_S_NEW;
	c->cancelled = false;
	c->woken = false;
	c->in_wait = false;
	c->queued = false;
	c->rprev = c->rnext = NULL;
	c->main_fn = NULL;
	c->fn = fn;
	c->done = done;
	c->arg = arg;
	ctx_init(c);
	S.st.alive++;
	return c;
}

/* Main context: switches to c and serves its coro_call_main() requests
 * until it waits or returns.  Returns true when it has returned: c is then
 * CORO_S_DONE and must be ended with coro_finish(), by whoever called this,
 * and nobody else. */
static bool
coro_run(struct coro *c)
{
	c->state = CORO_S_RUNNING;
	S.current = c;
	ctx_switch(&S.main, &c->ctx, false);
	/* A coroutine asking for a call on our stack comes back at once. */
	while (c->state == CORO_S_CALLING) {
		void (*fn)(void *) = c->main_fn;
		c->main_fn = NULL;
		fn(c->main_arg);
		c->state = CORO_S_RUNNING;
		S.current = c;
		ctx_switch(&S.main, &c->ctx, false);
	}
	return c->state == CORO_S_DONE;
}

/* Main context, after c's last switch: the one place a coroutine ends.
 * c is given back (cached or freed) before done runs, so done may start
 * new coroutines, and nothing reads c after. */
static void
coro_finish(struct coro *c)
{
	void (*done)(void *) = c->cancelled ? NULL : c->done;
	void *arg = c->arg;

	ready_remove(c);
	S.st.alive--;
	stack_put(c);
	if (done != NULL)
		done(arg);
}

void
coro_resume(struct coro *c)
{
	if (S.current != NULL || (c->state != CORO_S_NEW && c->state != CORO_S_WAITING))
		abort(); /* only the main context resumes a live coroutine */
	if (coro_run(c))
		coro_finish(c);
}

/* coro_cancel() of a coroutine other than the caller's, run on the main
 * stack when the caller is a coroutine. */
static void
cancel_on_main(void *arg)
{
	coro_cancel(arg);
}

void
coro_cancel(struct coro *c)
{
	switch (c->state) {
	case CORO_S_RUNNING:
	case CORO_S_CALLING:
		/* From inside c: on its own stack, or from a function it runs
		 * on the main stack.  c cannot be resumed from here; it unwinds
		 * at its next wait, and ends when it returns. */
		c->cancelled = true;
		return;
	case CORO_S_NEW:
	case CORO_S_WAITING:
		break;
	case CORO_S_DONE:
		abort(); /* ended already: c is no coroutine any more */
	}
	if (S.current != NULL) {
		/* Another coroutine cancels c: only the main context resumes. */
		coro_call_main(cancel_on_main, c);
		return;
	}
	c->cancelled = true;
	ready_remove(c);
	/* The body must return once cancelled: every wait refuses at once. */
	if (!coro_run(c))
		abort();
	coro_finish(c);
}

struct coro *
coro_self(void)
{
	return S.current;
}

struct ev_loop *
coro_loop(void)
{
	return S.loop;
}

void
coro_stats(struct coro_stats *st)
{
	*st = S.st;
}

/* ---- waiting -------------------------------------------------------- */

/* Switches to the main context until a watcher callback resumes us. */
static void
coro_yield(void)
{
	struct coro *c = S.current;

	if (c == NULL)
		abort(); /* a wait on the main context would deadlock */
	c->state = CORO_S_WAITING;
	S.current = NULL;
	ctx_switch(&c->ctx, &S.main, false);
}

/* The one thing every watcher callback does. */
static void
coro_wake_now(struct coro *c)
{
	if (c->state == CORO_S_WAITING)
		coro_resume(c);
}

/* A timer wait; first member of a poll wait so one callback serves both.
 * Kept small: it lives on the stack of every waiting coroutine. */
struct timer_wait {
	ev_timer timer;
	struct coro *c;
	bool timed_out;
};

struct poll_wait {
	struct timer_wait t;
	struct pollfd *fds;
	nfds_t n;
	ev_io io[CORO_POLL_MAX];
};

static void
poll_io_cb(struct ev_loop *loop, ev_io *w, int revents)
{
	(void)loop;
	struct poll_wait *pw = w->data;
	struct pollfd *p = &pw->fds[w - pw->io];

	if (revents & EV_READ)
		p->revents |= POLLIN;
	if (revents & EV_WRITE)
		p->revents |= POLLOUT;
	if (revents & EV_ERROR)
		p->revents |= POLLERR;
	coro_wake_now(pw->t.c);
}

static void
timer_wait_cb(struct ev_loop *loop, ev_timer *w, int revents)
{
	(void)loop;
	(void)revents;
	struct timer_wait *tw = w->data;
	tw->timed_out = true;
	coro_wake_now(tw->c);
}

/* Arms tw to fire after seconds.  libev measures timers from the time it
 * cached at the start of this loop iteration; refresh it first, or a wait
 * started late in a busy iteration would end early. */
static void
timer_wait_start(struct timer_wait *tw, double seconds)
{
	ev_timer_init(&tw->timer, timer_wait_cb, seconds, 0.0);
	tw->timer.data = tw;
	ev_now_update(S.loop);
	ev_timer_start(S.loop, &tw->timer);
}

/* Seconds until deadline, or -1 for none; 0 when it has passed. */
static double
time_left(double deadline)
{
	if (deadline <= 0)
		return -1;
	double left = deadline - coro_clock();
	return left > 0 ? left : 0;
}

/* The one way a coroutine waits (coro_poll, coro_sleep, coro_wait_child
 * and coro_wait all come here).  left is how long the wait may last, in
 * seconds, < 0 for no limit; 0 answers CORO_TIMEOUT at once unless
 * at_least_once (a sleep of 0 still yields, coro.h).  A cancelled
 * coroutine never waits.  Otherwise arm(arg, c, true) starts the caller's
 * own watchers, tw's timer is armed for left, the coroutine yields until a
 * callback resumes it, and both are stopped again (arm(arg, c, false))
 * before the answer: CORO_CANCELLED, CORO_TIMEOUT when the timer fired, or
 * CORO_READY when something else woke it.  tw lives on the caller's
 * stack, as the caller's watchers do. */
static enum coro_status
wait_yield(struct timer_wait *tw, double left, bool at_least_once,
    void (*arm)(void *arg, struct coro *c, bool on), void *arg)
{
	struct coro *c = S.current;

	if (c == NULL)
		abort(); /* a wait on the main context would deadlock */
	if (c->cancelled)
		return CORO_CANCELLED;
	if (left == 0 && !at_least_once)
		return CORO_TIMEOUT;
	tw->c = c;
	tw->timed_out = false;
	if (arm != NULL)
		arm(arg, c, true);
	if (left >= 0)
		timer_wait_start(tw, left);
	coro_yield();
	if (arm != NULL)
		arm(arg, c, false);
	if (left >= 0)
		ev_timer_stop(S.loop, &tw->timer);
	if (c->cancelled)
		return CORO_CANCELLED;
	return tw->timed_out ? CORO_TIMEOUT : CORO_READY;
}

static void
poll_arm(void *arg, struct coro *c, bool on)
{
	(void)c;
	struct poll_wait *pw = arg;
	struct pollfd *fds = pw->fds;

	for (nfds_t i = 0; i < pw->n; i++) {
		if (!on) {
			ev_io_stop(S.loop, &pw->io[i]);
			continue;
		}
		int ev = (fds[i].events & POLLIN ? EV_READ : 0) |
		    (fds[i].events & POLLOUT ? EV_WRITE : 0);
		fds[i].revents = 0;
		ev_io_init(&pw->io[i], poll_io_cb, fds[i].fd < 0 ? 0 : fds[i].fd, ev);
		pw->io[i].data = pw;
		if (fds[i].fd >= 0 && ev != 0)
			ev_io_start(S.loop, &pw->io[i]);
	}
}

enum coro_status
coro_poll(struct pollfd *fds, nfds_t n, double deadline)
{
	struct poll_wait pw;

	if (n > CORO_POLL_MAX)
		abort();
	pw.fds = fds;
	pw.n = n;
	return wait_yield(&pw.t, time_left(deadline), false, poll_arm, &pw);
}

enum coro_status
coro_wait_fd(int fd, short events, double deadline)
{
	struct pollfd p = { .fd = fd, .events = events, .revents = 0 };
	return coro_poll(&p, 1, deadline);
}

enum coro_status
coro_sleep(double seconds)
{
	struct timer_wait tw;

	/* The timer firing is what a sleep waits for. */
	return wait_yield(&tw, seconds > 0 ? seconds : 0, true, NULL, NULL) ==
	    CORO_CANCELLED ? CORO_CANCELLED : CORO_READY;
}

/* ---- children ------------------------------------------------------- */

static void
child_cb(struct ev_loop *loop, ev_child *w, int revents)
{
	(void)revents;
	struct coro_child *cw = w->data;

	ev_child_stop(loop, w);
	cw->exited = true;
	cw->status = w->rstatus;
	if (cw->waiter != NULL)
		coro_wake_now(cw->waiter);
}

void
coro_child_watch(struct coro_child *w, pid_t pid)
{
	w->waiter = NULL;
	w->exited = false;
	w->status = 0;
	ev_child_init(&w->w, child_cb, pid, 0);
	w->w.data = w;
	ev_child_start(S.loop, &w->w);
}

static void
child_arm(void *arg, struct coro *c, bool on)
{
	struct coro_child *w = arg;
	w->waiter = on ? c : NULL;
}

enum coro_status
coro_wait_child(struct coro_child *w, double deadline, int *status)
{
	struct timer_wait tw;

	if (S.current == NULL)
		abort();
	/* An exit that came first is the answer, even to a cancelled task. */
	if (!w->exited) {
		enum coro_status r = wait_yield(&tw, time_left(deadline), false,
		    child_arm, w);
		if (!w->exited)
			return r == CORO_CANCELLED ? CORO_CANCELLED : CORO_TIMEOUT;
	}
	*status = w->status;
	return CORO_READY;
}

void
coro_child_stop(struct coro_child *w)
{
	ev_child_stop(S.loop, &w->w);
	w->waiter = NULL;
}

void
coro_call_main(void (*fn)(void *arg), void *arg)
{
	struct coro *c = S.current;

	if (c == NULL) {
		fn(arg);
		return;
	}
	c->main_fn = fn;
	c->main_arg = arg;
	c->state = CORO_S_CALLING;
	S.current = NULL;
	ctx_switch(&c->ctx, &S.main, false);
}

/* ---- wake-ups from the main context --------------------------------- */

static void
coro_prepare_cb(struct ev_loop *loop, ev_prepare *w, int revents)
{
	(void)loop;
	(void)w;
	(void)revents;
	struct coro *c;

	/* A resumed coroutine may wake others; they are appended and run in
	 * this same pass, before the loop polls. */
	while ((c = S.ready_head) != NULL) {
		ready_remove(c);
		if (c->in_wait)
			coro_wake_now(c);
	}
}

static void
wake_arm(void *arg, struct coro *c, bool on)
{
	(void)arg;
	c->in_wait = on;
	if (!on)
		ready_remove(c);
}

enum coro_status
coro_wait(double deadline)
{
	struct coro *c = S.current;
	struct timer_wait tw;

	if (c == NULL)
		abort();
	/* A wake-up that came first is the answer, unless c is cancelled. */
	if (!c->cancelled && c->woken) {
		c->woken = false;
		return CORO_READY;
	}
	if (wait_yield(&tw, time_left(deadline), false, wake_arm, NULL) ==
	    CORO_CANCELLED)
		return CORO_CANCELLED;
	if (c->woken) {
		c->woken = false;
		return CORO_READY;
	}
	return CORO_TIMEOUT;
}

void
coro_wake(struct coro *c)
{
	c->woken = true;
	if (c->in_wait)
		ready_push(c);
}
