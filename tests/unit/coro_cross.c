/*
 * coro_cross: checks the assembly context switch of src/coro.c at the
 * register level, for running on an emulator (tests/cross-aarch64) where
 * the unit test's behavioural checks alone would not show a register the
 * switch forgets: under -O2 a forgotten register only shows when the
 * compiler happened to keep a live value in it.  It builds and passes
 * natively on x86-64 too.
 *
 * coro_cross_regs() (assembly, below) fills every callee-saved register
 * with values derived from a seed, calls fn(arg), and reports which of
 * them came back changed.  Both sides of each switch sit inside such a
 * call with different seeds, so a register the switch does not restore
 * comes back holding the other side's value.
 *
 * Prints one line per failed check and a closing "N passed, N failed";
 * exits 0 when nothing failed.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coro.h"

/* Returns a bit mask of what fn(arg) did not preserve, plus one bit for a
 * stack pointer that was misaligned when coro_cross_regs() was entered (a
 * coroutine stack set up wrong).  aarch64: bits 0-9 x19-x28, 10 x29,
 * 11-18 d8-d15, 19 sp, 20 misaligned; x86-64: bits 0-5 rbx rbp r12-r15,
 * 6 rsp, 7 misaligned. */
uint64_t coro_cross_regs(uint64_t seed, void (*fn)(void *), void *arg);

#if defined(__aarch64__)
#define CROSS_HAVE_REGS 1
#define CROSS_X(n, bit) \
	"	add x11, x10, #" #n "\n" \
	"	cmp x" #n ", x11\n" \
	"	cset x12, ne\n" \
	"	orr x0, x0, x12, lsl #" #bit "\n"
#define CROSS_D(n, bit) \
	"	add x11, x10, #" #n "\n" \
	"	fmov x13, d" #n "\n" \
	"	cmp x13, x11\n" \
	"	cset x12, ne\n" \
	"	orr x0, x0, x12, lsl #" #bit "\n"
__asm__(
	".text\n"
	".globl coro_cross_regs\n"
	".type coro_cross_regs,%function\n"
	".p2align 4\n"
	"coro_cross_regs:\n"
	"	stp x29, x30, [sp, #-192]!\n"
	"	stp x19, x20, [sp, #16]\n"
	"	stp x21, x22, [sp, #32]\n"
	"	stp x23, x24, [sp, #48]\n"
	"	stp x25, x26, [sp, #64]\n"
	"	stp x27, x28, [sp, #80]\n"
	"	stp d8, d9, [sp, #96]\n"
	"	stp d10, d11, [sp, #112]\n"
	"	stp d12, d13, [sp, #128]\n"
	"	stp d14, d15, [sp, #144]\n"
	"	mov x9, sp\n"
	"	stp x0, x9, [sp, #160]\n"
	"	and x9, x9, #15\n"
	"	cmp x9, #0\n"
	"	cset x9, ne\n"
	"	str x9, [sp, #176]\n"
	"	add x19, x0, #19\n"
	"	add x20, x0, #20\n"
	"	add x21, x0, #21\n"
	"	add x22, x0, #22\n"
	"	add x23, x0, #23\n"
	"	add x24, x0, #24\n"
	"	add x25, x0, #25\n"
	"	add x26, x0, #26\n"
	"	add x27, x0, #27\n"
	"	add x28, x0, #28\n"
	"	add x29, x0, #29\n"
	"	add x9, x0, #8\n"
	"	fmov d8, x9\n"
	"	add x9, x0, #9\n"
	"	fmov d9, x9\n"
	"	add x9, x0, #10\n"
	"	fmov d10, x9\n"
	"	add x9, x0, #11\n"
	"	fmov d11, x9\n"
	"	add x9, x0, #12\n"
	"	fmov d12, x9\n"
	"	add x9, x0, #13\n"
	"	fmov d13, x9\n"
	"	add x9, x0, #14\n"
	"	fmov d14, x9\n"
	"	add x9, x0, #15\n"
	"	fmov d15, x9\n"
	"	mov x9, x1\n"
	"	mov x0, x2\n"
	"	blr x9\n"
	"	ldr x10, [sp, #160]\n"
	"	ldr x0, [sp, #176]\n"
	"	lsl x0, x0, #20\n"
	CROSS_X(19, 0) CROSS_X(20, 1) CROSS_X(21, 2) CROSS_X(22, 3)
	CROSS_X(23, 4) CROSS_X(24, 5) CROSS_X(25, 6) CROSS_X(26, 7)
	CROSS_X(27, 8) CROSS_X(28, 9) CROSS_X(29, 10)
	CROSS_D(8, 11) CROSS_D(9, 12) CROSS_D(10, 13) CROSS_D(11, 14)
	CROSS_D(12, 15) CROSS_D(13, 16) CROSS_D(14, 17) CROSS_D(15, 18)
	"	mov x13, sp\n"
	"	ldr x11, [sp, #168]\n"
	"	cmp x13, x11\n"
	"	cset x12, ne\n"
	"	orr x0, x0, x12, lsl #19\n"
	"	ldp x19, x20, [sp, #16]\n"
	"	ldp x21, x22, [sp, #32]\n"
	"	ldp x23, x24, [sp, #48]\n"
	"	ldp x25, x26, [sp, #64]\n"
	"	ldp x27, x28, [sp, #80]\n"
	"	ldp d8, d9, [sp, #96]\n"
	"	ldp d10, d11, [sp, #112]\n"
	"	ldp d12, d13, [sp, #128]\n"
	"	ldp d14, d15, [sp, #144]\n"
	"	ldp x29, x30, [sp], #192\n"
	"	ret\n"
	".size coro_cross_regs,.-coro_cross_regs\n");
#elif defined(__x86_64__)
#define CROSS_HAVE_REGS 1
#define CROSS_R(reg, n, bit) \
	"	leaq " #n "(%rcx), %rdx\n" \
	"	cmpq %rdx, %" #reg "\n" \
	"	je 1f\n" \
	"	orq $" #bit ", %rax\n" \
	"1:\n"
__asm__(
	".text\n"
	".globl coro_cross_regs\n"
	".type coro_cross_regs,@function\n"
	".p2align 4\n"
	"coro_cross_regs:\n"
	"	pushq %rbp\n"
	"	pushq %rbx\n"
	"	pushq %r12\n"
	"	pushq %r13\n"
	"	pushq %r14\n"
	"	pushq %r15\n"
	"	subq $24, %rsp\n"
	"	movq %rdi, (%rsp)\n"
	"	movq %rsp, 8(%rsp)\n"
	"	xorl %eax, %eax\n"
	"	testq $15, %rsp\n"
	"	je 1f\n"
	"	movl $128, %eax\n"
	"1:\n"
	"	movq %rax, 16(%rsp)\n"
	"	leaq 1(%rdi), %rbx\n"
	"	leaq 2(%rdi), %rbp\n"
	"	leaq 3(%rdi), %r12\n"
	"	leaq 4(%rdi), %r13\n"
	"	leaq 5(%rdi), %r14\n"
	"	leaq 6(%rdi), %r15\n"
	"	movq %rdx, %rdi\n"
	"	call *%rsi\n"
	"	movq (%rsp), %rcx\n"
	"	movq 16(%rsp), %rax\n"
	CROSS_R(rbx, 1, 1) CROSS_R(rbp, 2, 2) CROSS_R(r12, 3, 4)
	CROSS_R(r13, 4, 8) CROSS_R(r14, 5, 16) CROSS_R(r15, 6, 32)
	"	cmpq 8(%rsp), %rsp\n"
	"	je 1f\n"
	"	orq $64, %rax\n"
	"1:\n"
	"	addq $24, %rsp\n"
	"	popq %r15\n"
	"	popq %r14\n"
	"	popq %r13\n"
	"	popq %r12\n"
	"	popq %rbx\n"
	"	popq %rbp\n"
	"	ret\n"
	".size coro_cross_regs,.-coro_cross_regs\n");
#endif

static unsigned passed, failed;

static void
check(int ok, const char *what, unsigned long long detail)
{
	if (ok) {
		passed++;
	} else {
		failed++;
		printf("FAIL: %s (%#llx)\n", what, detail);
	}
}

/* Many checks run in loops: count one per loop, report the first miss. */
struct tally {
	const char *what;
	int bad;
	unsigned long long detail;
};

static void
tally(struct tally *t, int ok, unsigned long long detail)
{
	if (!ok && !t->bad) {
		t->bad = 1;
		t->detail = detail;
	}
}

static void
tally_end(const struct tally *t)
{
	check(!t->bad, t->what, t->detail);
}

static int finished;

static void
count_done(void *arg)
{
	(void)arg;
	finished++;
}

/* Switches to the main context until it resumes us with coro_resume(). */
static void
yield_to_main(void *arg)
{
	(void)arg;
	if (coro_sleep(1000) != CORO_READY)
		abort(); /* nothing here cancels */
}

static void
resume_from_main(void *arg)
{
	coro_resume(arg);
}

static void
nothing(void *arg)
{
	(void)arg;
}

/* ---- callee-saved registers across switches --------------------------- */

enum { REG_ROUNDS = 200 };

#ifdef CROSS_HAVE_REGS
struct regs_arg {
	uint64_t seed;
	struct tally t;
};

static void
regs_body(void *arg)
{
	struct regs_arg *ra = arg;
	for (int i = 0; i < REG_ROUNDS; i++) {
		uint64_t m = coro_cross_regs(ra->seed + (uint64_t)i * 256, yield_to_main, NULL);
		tally(&ra->t, m == 0, m);
	}
}

/* On the main stack, between the two switches of coro_call_main(). */
static void
regs_on_main(void *arg)
{
	struct tally *t = arg;
	uint64_t m = coro_cross_regs(UINT64_C(0x5151000000000000), nothing, NULL);
	tally(t, m == 0, m);
}

static void
regs_call_main_fn(void *arg)
{
	coro_call_main(regs_on_main, arg);
}

static void
regs_call_main_body(void *arg)
{
	struct regs_arg *ra = arg;
	for (int i = 0; i < REG_ROUNDS; i++) {
		uint64_t m = coro_cross_regs(ra->seed + (uint64_t)i * 256, regs_call_main_fn, &ra->t);
		tally(&ra->t, m == 0, m);
	}
}

static void
test_registers(void)
{
	struct regs_arg a = { UINT64_C(0xa1a1000000000000), { "coroutine A keeps its registers", 0, 0 } };
	struct regs_arg b = { UINT64_C(0xb2b2000000000000), { "coroutine B keeps its registers", 0, 0 } };
	struct tally m = { "main context keeps its registers", 0, 0 };

	finished = 0;
	struct coro *ca = coro_new(regs_body, count_done, &a);
	struct coro *cb = coro_new(regs_body, count_done, &b);
	check(ca != NULL && cb != NULL, "coro_new", 0);
	if (ca == NULL || cb == NULL)
		return;
	/* Alternate the two so each switch lands among another's values. */
	uint64_t seed = UINT64_C(0x3c3c000000000000);
	for (int i = 0; finished < 2 && i <= REG_ROUNDS; i++) {
		uint64_t r = coro_cross_regs(seed += 256, resume_from_main, ca);
		tally(&m, r == 0, r);
		r = coro_cross_regs(seed += 256, resume_from_main, cb);
		tally(&m, r == 0, r);
	}
	check(finished == 2, "register coroutines finished", (unsigned)finished);
	tally_end(&a.t);
	tally_end(&b.t);
	tally_end(&m);

	/* The coro_call_main() path: the main side runs a function, not the
	 * code after coro_resume(). */
	struct regs_arg c = { UINT64_C(0xc3c3000000000000), { "registers across coro_call_main", 0, 0 } };
	finished = 0;
	struct coro *cc = coro_new(regs_call_main_body, count_done, &c);
	check(cc != NULL, "coro_new", 0);
	if (cc == NULL)
		return;
	uint64_t r = coro_cross_regs(UINT64_C(0x4d4d000000000000), resume_from_main, cc);
	check(r == 0 && finished == 1, "main keeps its registers over a coro_call_main run", r);
	tally_end(&c.t);
}
#else
static void
test_registers(void)
{
	printf("SKIP: no register checker for this architecture\n");
}
#endif

/* ---- values the compiler keeps in registers ---------------------------- */

/* The same arithmetic with and without switches in between must agree to
 * the last bit: under -O2 the loop's locals live in callee-saved integer
 * and floating point registers across the indirect call. */
static uint64_t
int_work(void (*hook)(void *), int rounds)
{
	uint64_t a = 1, b = 2, c = 3, d = 4, e = 5, f = 6, g = 7, h = 8, i = 9,
	    j = 10, k = 11, l = 12, m = 13;
	for (int n = 0; n < rounds; n++) {
		a = a * 3 + m;
		b ^= a << 1;
		c += b * 5;
		d = (d ^ c) * 7;
		e += d >> 3;
		f = f * 11 + e;
		g ^= f >> 5;
		h += g * 13;
		i = (i + h) * 17;
		j ^= i << 7;
		k += j * 19;
		l = (l ^ k) * 23;
		m += l >> 11;
		hook(NULL);
	}
	return a ^ b ^ c ^ d ^ e ^ f ^ g ^ h ^ i ^ j ^ k ^ l ^ m;
}

static double
fp_work(void (*hook)(void *), int rounds)
{
	double a = 1.0, b = 0.5, c = 0.25, d = 2.0, e = 3.0, f = 0.125,
	    g = 1.5, h = 0.75, x = 1.0 / 3.0;
	for (int n = 0; n < rounds; n++) {
		a = a * 0.999 + x;
		b = b * 1.001 - a * 0.0001;
		c += b * x;
		d = d * 0.5 + c * 0.25;
		e -= d * 0.001;
		f = f * 1.0001 + e * 1e-6;
		g = g * 0.9 + f;
		h += g * 1e-3;
		x = x * 0.99999 + 1e-7;
		hook(NULL);
	}
	return a + b * 3 + c * 5 + d * 7 + e * 11 + f * 13 + g * 17 + h * 19 + x;
}

static void
call_main_hook(void *arg)
{
	(void)arg;
	coro_call_main(nothing, NULL);
}

static void
no_hook(void *arg)
{
	(void)arg;
}

enum { LIVE_ROUNDS = 20000 };

struct live_arg {
	uint64_t iv;
	double fv;
};

static void
live_body(void *arg)
{
	struct live_arg *la = arg;
	la->iv = int_work(call_main_hook, LIVE_ROUNDS);
	la->fv = fp_work(call_main_hook, LIVE_ROUNDS);
}

static void
test_live_values(void)
{
	struct live_arg la = { 0, 0 };
	struct coro_stats before, after;

	finished = 0;
	coro_stats(&before);
	struct coro *c = coro_new(live_body, count_done, &la);
	check(c != NULL, "coro_new", 0);
	if (c == NULL)
		return;
	coro_resume(c);
	coro_stats(&after);
	check(finished == 1, "live-value coroutine finished", (unsigned)finished);
	uint64_t iv = int_work(no_hook, LIVE_ROUNDS);
	double fv = fp_work(no_hook, LIVE_ROUNDS);
	check(la.iv == iv, "integers live across 20,000 round trips", la.iv ^ iv);
	check(memcmp(&la.fv, &fv, sizeof(fv)) == 0,
	    "doubles live across 20,000 round trips", 0);
	/* Two switches per round trip, plus entry and exit. */
	unsigned long long sw = after.switches - before.switches;
	check(sw == 4ULL * LIVE_ROUNDS + 2, "switch count", sw);
}

/* ---- many switches ---------------------------------------------------- */

enum { MANY_SWITCHES = 500000 };

static void
many_body(void *arg)
{
	long *n = arg;
	for (long i = 0; i < MANY_SWITCHES / 2; i++) {
		coro_call_main(nothing, NULL);
		++*n;
	}
}

static void
test_many_switches(void)
{
	long n = 0;
	finished = 0;
	struct coro *c = coro_new(many_body, count_done, &n);
	check(c != NULL, "coro_new", 0);
	if (c == NULL)
		return;
	coro_resume(c);
	check(finished == 1 && n == MANY_SWITCHES / 2, "500,000 switches", (unsigned long long)n);
}

/* ---- deep recursion on a coroutine stack ------------------------------ */

enum { DEEP_LEVELS = 400, DEEP_PAD = 480 };

/* About 200 KiB of frames; switches at every tenth level, and each level
 * checks its own frame once everything below it has returned. */
static uint64_t
deep(int level, int *bad)
{
	volatile unsigned char pad[DEEP_PAD];
	uint64_t sum = 0;

	for (int i = 0; i < DEEP_PAD; i++)
		pad[i] = (unsigned char)(level * 31 + i);
	if (level % 10 == 0)
		coro_call_main(nothing, NULL);
	if (level > 0)
		sum = deep(level - 1, bad);
	if (level % 10 == 5)
		coro_call_main(nothing, NULL);
	for (int i = 0; i < DEEP_PAD; i++) {
		if (pad[i] != (unsigned char)(level * 31 + i))
			*bad = 1;
		sum += pad[i];
	}
	return sum + (uint64_t)level;
}

struct deep_arg {
	uint64_t sum;
	int bad;
};

static void
deep_body(void *arg)
{
	struct deep_arg *da = arg;
	da->sum = deep(DEEP_LEVELS - 1, &da->bad);
}

static void
test_deep(void)
{
	struct deep_arg on_coro = { 0, 0 }, on_main = { 0, 0 };

	check(coro_set_stack_size(512 * 1024) == 0, "coro_set_stack_size", 0);
	finished = 0;
	struct coro *c = coro_new(deep_body, count_done, &on_coro);
	check(c != NULL, "coro_new", 0);
	if (c != NULL) {
		coro_resume(c);
		/* On the main context coro_call_main() runs the call in place. */
		on_main.sum = deep(DEEP_LEVELS - 1, &on_main.bad);
		check(finished == 1 && !on_coro.bad && on_coro.sum == on_main.sum,
		    "deep recursion with switches inside it", on_coro.sum);
	}
	check(coro_set_stack_size(CORO_STACK_DEFAULT) == 0, "coro_set_stack_size", 0);
}

/* ---- many coroutines alive, interleaved -------------------------------- */

enum { ALIVE = 1000, ALIVE_ROUNDS = 20 };

static long step;
static struct tally order_t = { "interleaving order and per-coroutine state", 0, 0 };

static void
alive_body(void *arg)
{
	long id = (long)(intptr_t)arg;
	double fid = (double)id * 0.5;
	uint64_t mix = (uint64_t)id * UINT64_C(0x9e3779b97f4a7c15);

	for (long r = 0; r < ALIVE_ROUNDS; r++) {
		tally(&order_t, step == r * ALIVE + id, (unsigned long long)step);
		step++;
		yield_to_main(NULL);
		tally(&order_t, fid == (double)id * 0.5 &&
		    mix == (uint64_t)id * UINT64_C(0x9e3779b97f4a7c15),
		    (unsigned long long)id);
	}
}

static void
test_alive(void)
{
	static struct coro *cs[ALIVE];
	struct coro_stats st;

	finished = 0;
	step = 0;
	for (long i = 0; i < ALIVE; i++) {
		cs[i] = coro_new(alive_body, count_done, (void *)(intptr_t)i);
		if (cs[i] == NULL) {
			check(0, "coro_new", (unsigned long long)i);
			abort(); /* the others cannot be unwound */
		}
	}
	coro_stats(&st);
	check(st.alive >= ALIVE, "all alive at once", st.alive);
	/* ALIVE_ROUNDS yields each, then one more resume to return. */
	for (int r = 0; r <= ALIVE_ROUNDS; r++)
		for (long i = 0; i < ALIVE; i++)
			coro_resume(cs[i]);
	tally_end(&order_t);
	check(finished == ALIVE, "all finished", (unsigned)finished);
}

/* ---- finish and stack reuse -------------------------------------------- */

static void
reuse_body(void *arg)
{
	uint64_t *out = arg;
	*out = int_work(call_main_hook, 50);
}

static void
test_reuse(void)
{
	struct coro_stats a, b;
	uint64_t want = int_work(no_hook, 50);
	struct tally t = { "a reused stack starts afresh", 0, 0 };

	coro_stats(&a);
	check(a.stacks_free > 0, "finished stacks kept for reuse", a.stacks_free);
	finished = 0;
	for (int i = 0; i < 2000; i++) {
		uint64_t got = 0;
		struct coro *c = coro_new(reuse_body, count_done, &got);
		if (c == NULL) {
			check(0, "coro_new", (unsigned)i);
			return;
		}
		coro_resume(c);
		tally(&t, got == want, got);
	}
	coro_stats(&b);
	tally_end(&t);
	check(finished == 2000, "2,000 coroutines finished", (unsigned)finished);
	check(b.stacks_made == a.stacks_made, "no new stack made", b.stacks_made - a.stacks_made);
	check(b.alive == 0, "nothing left alive", b.alive);
}

int
main(void)
{
	struct ev_loop *loop = ev_default_loop(0);

	if (loop == NULL || coro_setup(loop, CORO_STACK_DEFAULT) < 0) {
		fprintf(stderr, "coro_cross: no loop or coro_setup failed\n");
		return 2;
	}
	test_registers();
	test_live_values();
	test_many_switches();
	test_deep();
	test_alive();
	test_reuse();
	coro_teardown();
	printf("%u passed, %u failed\n", passed, failed);
	return failed == 0 ? EXIT_SUCCESS : EXIT_FAILURE;
}
