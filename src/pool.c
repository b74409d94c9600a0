#include "pool.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "frame.h"
#include "log.h"
#include "worker.h"
#include "worker_exec.h"

extern char **environ;

/* Reads from a worker: at least this much room per read(2), and at most
 * this many reads per callback. */
#define POOL_READ 65536
#define POOL_READS 16
/* A channel buffer larger than this is freed once empty. */
#define POOL_KEEP_BUF ((size_t)1 << 20)

enum child_state {
	CHILD_STARTING,  /* started; no READY yet (loading plugins): no task */
	CHILD_IDLE,      /* alive, waiting for a task */
	CHILD_BUSY,      /* running w->job */
	CHILD_GONE,      /* channel closed (retired, lost or killed); waiting to be reaped */
};

struct job {
	struct job *next;            /* the backlog or the finished FIFO */
	struct handler_call *call;
	const char *handler;         /* static (built-in) or a plugin's: never freed */
	uint64_t seq;
};

/* The parent's record of one worker process (worker.c is the process's own
 * side): its pid, channel, state and the job it runs. */
struct pool_child {
	struct pool *pool;
	struct pool_child *prev, *next; /* every process not yet reaped */
	int slot;
	unsigned gen;                /* pool->gen when started */
	pid_t pid;
	int pidfd;                   /* -1 when pidfd_open is not available */
	bool reaped;                 /* pid is free for reuse: never signal it */
	int fd;                      /* our end of the channel; -1 once closed */
	enum child_state state;
	struct job *job;
	bool child_seen;             /* a CHILD frame came for job: one is allowed */
	pid_t prog_pgid;             /* an exec task's program group, 0 = none */
	int tasks;                   /* tasks finished */
	const char *lost;            /* died on its own ("while idle"...): child_cb logs how */
	double started;
	ev_io rio, wio;
	ev_child child;
	struct buf in;               /* bytes read, not yet a whole frame */
	struct buf out;              /* bytes to write, from out_off on */
	size_t out_off;
};

struct pool {
	struct ev_loop *loop;
	struct pool_params p;
	char **plugins;              /* our copy of p.plugins */
	unsigned gen;                /* bumped when workers must be replaced */
	int exe;                     /* the daemon's binary, for exec */
	pid_t self;
	struct pool_child **slots;   /* slots[0..nslots): the live worker, or NULL */
	int nslots;
	struct pool_child all;       /* list head */
	struct job *bl_head, *bl_tail;
	size_t nbacklog;
	/* Calls answered by the pool itself (lost worker, no memory), done
	 * from the `later` timer: never from inside a pool_* function. */
	struct job *fin_head, *fin_tail;
	ev_timer later;
	ev_timer respawn;
	double respawn_delay;
	uint64_t seq;
	struct pool_stats st;
};

static void pool_pump(struct pool *pool);
static int child_send(struct pool_child *w, const char **why);

/* ---- small helpers ------------------------------------------------------ */

static char **
strv_dup(const char *const *v)
{
	size_t n = 0;
	while (v != NULL && v[n] != NULL)
		n++;
	char **c = calloc(n + 1, sizeof(*c));
	if (c == NULL)
		return NULL;
	for (size_t i = 0; i < n; i++) {
		c[i] = strdup(v[i]);
		if (c[i] == NULL) {
			for (size_t j = 0; j < i; j++)
				free(c[j]);
			free(c);
			return NULL;
		}
	}
	return c;
}

static void
strv_free(char **v)
{
	for (size_t i = 0; v != NULL && v[i] != NULL; i++)
		free(v[i]);
	free(v);
}

static bool
strv_eq(char **a, const char *const *b)
{
	size_t i = 0;
	for (; a != NULL && a[i] != NULL; i++)
		if (b == NULL || b[i] == NULL || strcmp(a[i], b[i]) != 0)
			return false;
	return b == NULL || b[i] == NULL;
}

/* SIGKILL through the pidfd when there is one: a pid the kernel has
 * already reused for another process is never hit. */
static void
child_kill(struct pool_child *w)
{
	if (w->prog_pgid > 1)
		(void)kill(-w->prog_pgid, SIGKILL);
	if (w->pidfd >= 0)
		(void)syscall(SYS_pidfd_send_signal, w->pidfd, SIGKILL, NULL, 0);
	else if (w->pid > 0 && !w->reaped)
		(void)kill(w->pid, SIGKILL);
}

static void
respawn_soon(struct pool *pool)
{
	if (!ev_is_active(&pool->respawn)) {
		ev_timer_set(&pool->respawn, pool->respawn_delay, 0.0);
		ev_timer_start(pool->loop, &pool->respawn);
	}
}

/* Closes the channel and frees the slot; the process stays listed until
 * ev_child reaps it. */
static void
child_close(struct pool_child *w)
{
	struct pool *pool = w->pool;
	if (w->fd >= 0) {
		ev_io_stop(pool->loop, &w->rio);
		ev_io_stop(pool->loop, &w->wio);
		close(w->fd);
		w->fd = -1;
	}
	buf_free(&w->in);
	buf_free(&w->out);
	w->out_off = 0;
	w->state = CHILD_GONE;
	if (w->slot < pool->nslots && pool->slots[w->slot] == w) {
		pool->slots[w->slot] = NULL;
		respawn_soon(pool);
	}
}

static void
job_free(struct job *j)
{
	free(j);
}

static void
fifo_push(struct job **head, struct job **tail, struct job *j, bool front)
{
	if (front) {
		j->next = *head;
		*head = j;
		if (*tail == NULL)
			*tail = j;
		return;
	}
	j->next = NULL;
	if (*tail != NULL)
		(*tail)->next = j;
	else
		*head = j;
	*tail = j;
}

static struct job *
fifo_pop(struct job **head, struct job **tail)
{
	struct job *j = *head;
	if (j != NULL) {
		*head = j->next;
		if (*head == NULL)
			*tail = NULL;
		j->next = NULL;
	}
	return j;
}

/* Takes j out of a FIFO; false when it is not there. */
static bool
fifo_remove(struct job **head, struct job **tail, struct job *j)
{
	struct job *prev = NULL;
	for (struct job **pp = head; *pp != NULL; prev = *pp, pp = &(*pp)->next) {
		if (*pp == j) {
			*pp = j->next;
			if (*tail == j)
				*tail = prev;
			j->next = NULL;
			return true;
		}
	}
	return false;
}

static void
backlog_push(struct pool *pool, struct job *j, bool front)
{
	fifo_push(&pool->bl_head, &pool->bl_tail, j, front);
	pool->nbacklog++;
}

static struct job *
backlog_pop(struct pool *pool)
{
	struct job *j = fifo_pop(&pool->bl_head, &pool->bl_tail);
	if (j != NULL)
		pool->nbacklog--;
	return j;
}

/* j's call->out is filled: its done comes from the loop, through the
 * `later` timer, so that no pool_* function ever calls back into its
 * caller (a dispatcher in the middle of starting that very task). */
static void
job_finish(struct pool *pool, struct job *j)
{
	fifo_push(&pool->fin_head, &pool->fin_tail, j, false);
	if (!ev_is_active(&pool->later)) {
		ev_timer_set(&pool->later, 0.0, 0.0);
		ev_timer_start(pool->loop, &pool->later);
	}
}

static void
pool_later_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	struct pool *pool = t->data;
	struct job *j;
	/* One at a time: a done() may cancel or submit other calls. */
	while ((j = fifo_pop(&pool->fin_head, &pool->fin_tail)) != NULL) {
		struct handler_call *call = j->call;
		job_free(j);
		handler_call_done(call);
	}
}

/* The worker died or broke the protocol.  Its task, if one was on its
 * way, is answered "worker_crashed" (done comes later: job_finish) and the
 * dispatcher decides about a retry; a task not one byte of which reached
 * the worker goes back to the front of the backlog instead, since the
 * worker cannot have run it: the caller pumps. */
static void
child_lost(struct pool_child *w, const char *why)
{
	struct pool *pool = w->pool;
	struct job *j = w->job;

	if (w->state == CHILD_GONE)
		return;
	/* out holds the task frame until all of it is written (child_send
	 * empties it then), and nothing else while the worker is busy. */
	bool reached = j != NULL && (w->out_off > 0 || w->out.len == 0);
	w->job = NULL;
	/* A worker that cannot even start (a plugin that no longer loads)
	 * must not be forked again and again without a pause. */
	pool->respawn_delay = w->state == CHILD_STARTING ? 1.0 : 0.0;
	child_kill(w);   /* a worker that sent garbage may still be running */
	child_close(w);  /* schedules the replacement */
	const char *when = j == NULL ? "while idle" :
	    reached ? "while running a task" : "before its task reached it";
	/* A closed channel says nothing of the cause; the exit status that
	 * ev_child reports soon after does, so child_cb logs then.  A bad
	 * frame is its own cause and is logged now. */
	if (why != NULL)
		log_warn("cpu worker %d (pid %ld) lost %s: %s", w->slot + 1,
		    (long)w->pid, when, why);
	else
		w->lost = when;
	if (j == NULL)
		return;
	pool->st.busy--;
	if (!reached) {
		backlog_push(pool, j, true);
		return;
	}
	pool->st.crashed++;
	handler_fail(&j->call->out, RESULT_ERROR, "worker_crashed",
	    "the cpu worker running the task was lost (%s)", why ? why : "it exited");
	job_finish(pool, j);
}

static void
child_exit_cb(struct ev_loop *loop, ev_child *c, int revents)
{
	(void)revents;
	struct pool_child *w =
	    (struct pool_child *)((char *)c - offsetof(struct pool_child, child));
	struct pool *pool = w->pool;
	int st = c->rstatus;
	char why[64];

	ev_child_stop(loop, c);
	/* Reaped: its pid may be reused from now on, never signal it again. */
	if (w->pidfd >= 0)
		close(w->pidfd);
	w->pidfd = -1;
	w->reaped = true;
	if (WIFSIGNALED(st))
		snprintf(why, sizeof(why), "killed by signal %d", WTERMSIG(st));
	else
		snprintf(why, sizeof(why), "exited with status %d", WEXITSTATUS(st));
	if (w->state != CHILD_GONE)
		child_lost(w, NULL);
	if (w->lost != NULL)
		log_warn("cpu worker %d (pid %ld) lost %s: %s", w->slot + 1,
		    (long)w->pid, w->lost, why);
	else
		log_debug("cpu worker %d (pid %ld) %s", w->slot + 1, (long)w->pid, why);
	w->prev->next = w->next;
	w->next->prev = w->prev;
	pool->st.alive--;
	free(w);
	pool_pump(pool);   /* its task may be back in the backlog */
}

/* ---- frames from a worker ------------------------------------------------ */

/* Error codes and content types come from the worker as strings, but the
 * handler_output contract wants static ones: keep one copy of each for the
 * life of the daemon.  Bounded, since a worker is untrusted. */
#define POOL_INTERN_MAX 256
static char *interned[POOL_INTERN_MAX];

static const char *
intern(const char *s, const char *fallback)
{
	if (s == NULL)
		return NULL;
	size_t n = strlen(s);
	if (n > 127)
		return fallback;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e)
			return fallback;
	for (int i = 0; i < POOL_INTERN_MAX; i++) {
		if (interned[i] == NULL) {
			interned[i] = strdup(s);
			return interned[i] ? interned[i] : fallback;
		}
		if (strcmp(interned[i], s) == 0)
			return interned[i];
	}
	return fallback;
}

/* Returns -1 when the frame is not acceptable (the worker is then lost). */
static int
child_frame(struct pool_child *w, const char *p, size_t n, const char **why)
{
	struct pool *pool = w->pool;
	int type = frame_type(p, n);

	if (type == FRAME_READY) {
		uint32_t slot;
		if (frame_get_ready(p, n, &slot) < 0 || w->state != CHILD_STARTING ||
		    slot != (uint32_t)w->slot + 1) {
			*why = "sent a malformed or unexpected ready frame";
			return -1;
		}
		w->state = CHILD_IDLE;
		/* Surplus or out of date since it was started (a reload). */
		if (w->gen != pool->gen || w->slot >= pool->p.size)
			child_close(w);
		return 0;
	}
	if (type == FRAME_CHILD) {
		struct frame_child c;
		if (frame_get_child(p, n, &c) < 0 || w->job == NULL || c.seq != w->job->seq) {
			*why = "sent a malformed or unexpected child frame";
			return -1;
		}
		w->child_seen = true;
		w->prog_pgid = c.pgid;
		return 0;
	}
	struct frame_result r;
	if (type != FRAME_RESULT || frame_get_result(p, n, &r) < 0) {
		*why = "sent a malformed frame";
		return -1;
	}
	if (w->job == NULL || r.seq != w->job->seq || r.status > RESULT_REJECTED) {
		*why = "sent a result for no task of its own";
		return -1;
	}
	struct job *j = w->job;
	struct handler_call *call = j->call;
	struct handler_output *out = &call->out;
	buf_reset(&out->body);
	if (buf_append(&out->body, r.body, r.len) < 0) {
		handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory "
		    "taking the result from the worker");
	} else {
		out->status = (enum result_status)r.status;
		out->error_code = r.status == RESULT_OK ? NULL :
		    intern(r.error_code ? r.error_code : "handler_failed", "handler_failed");
		out->content_type = intern(r.content_type, NULL);
	}
	w->job = NULL;
	w->child_seen = false;
	w->prog_pgid = 0;
	w->tasks++;
	w->state = CHILD_IDLE;
	pool->st.busy--;
	job_free(j);

	/* Recycle between tasks: the decision is made before the next task is
	 * handed out, so no task ever meets a worker on its way out. */
	const char *retire = NULL;
	if (pool->p.max_tasks_per_child > 0 && w->tasks >= pool->p.max_tasks_per_child)
		retire = "max_tasks_per_child";
	else if (pool->p.max_memory > 0 && r.rss > pool->p.max_memory)
		retire = "max_memory";
	if (retire != NULL) {
		pool->st.recycled++;
		if (strcmp(retire, "max_memory") == 0)
			log_info("cpu worker %d (pid %ld) recycled: RSS %llu bytes is above "
			    "cpu.max_memory", w->slot + 1, (long)w->pid,
			    (unsigned long long)r.rss);
		else
			log_debug("cpu worker %d (pid %ld) recycled after %d tasks",
			    w->slot + 1, (long)w->pid, w->tasks);
		child_close(w);
	} else if (w->gen != pool->gen || w->slot >= pool->p.size) {
		child_close(w);
	}
	handler_call_done(call);
	return 0;
}

/* The largest length field a frame of type may carry from w now, by its
 * state: 0 when no such frame is acceptable (a worker speaks only when
 * spoken to: READY once after HELLO, then for each TASK at most one CHILD
 * and one RESULT).  So a worker can make the parent hold one frame of at
 * most this size, never more. */
static size_t
child_accepts(const struct pool_child *w, int type, const char **why)
{
	switch (w->state) {
	case CHILD_STARTING:
		if (type == FRAME_READY)
			return frame_max_len(FRAME_READY, 0);
		*why = "sent a frame other than ready while starting";
		return 0;
	case CHILD_BUSY:
		if (type == FRAME_RESULT)
			return frame_max_len(FRAME_RESULT, w->pool->p.max_result);
		if (type == FRAME_CHILD && !w->child_seen)
			return frame_max_len(FRAME_CHILD, 0);
		*why = type == FRAME_CHILD ? "sent a second child frame for its task" :
		    "sent an unexpected frame while running a task";
		return 0;
	case CHILD_IDLE:
	case CHILD_GONE:
		break;
	}
	*why = "sent a frame while idle";
	return 0;
}

/* Takes every whole frame out of w->in and keeps only the partial one
 * that follows (so a stream of frames that straddle reads never piles
 * up).  Returns why the worker broke the protocol, or NULL. */
static const char *
child_parse(struct pool_child *w)
{
	const char *why = NULL;
	size_t off = 0;

	/* A result hands the worker back, and done() may submit again (or a
	 * recycling close it), so the state is checked for every frame. */
	while (w->state != CHILD_GONE) {
		const char *p = w->in.data + off;
		size_t left = w->in.len - off;
		size_t n = frame_size(p, left, FRAME_MAX);
		if (n == (size_t)-1) {
			why = "sent a frame of impossible length";
			break;
		}
		if (n == 0 || left < FRAME_HEADER + 1)
			break;
		/* Judged on its header: the parent never buffers a frame it
		 * would refuse. */
		size_t max = child_accepts(w, frame_type(p, left), &why);
		if (max == 0)
			break;
		if (n - FRAME_HEADER > max) {
			why = "sent an oversized frame";
			break;
		}
		if (left < n)
			break;
		off += n;
		if (child_frame(w, p, n, &why) < 0)
			break;
	}
	if (why != NULL || w->state == CHILD_GONE)
		return why;
	if (off > 0) {
		memmove(w->in.data, w->in.data + off, w->in.len - off);
		w->in.len -= off;
		w->in.data[w->in.len] = '\0';
	}
	/* A big result should not pin its buffer for ever. */
	if (w->in.len == 0 && w->in.cap > POOL_KEEP_BUF)
		buf_free(&w->in);
	return NULL;
}

static void
child_read_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)loop;
	(void)revents;
	struct pool_child *w =
	    (struct pool_child *)((char *)io - offsetof(struct pool_child, rio));
	struct pool *pool = w->pool;

	/* Bounded per callback, so that a worker that floods its channel
	 * cannot hold the loop (level-triggered: the rest comes next time). */
	for (int reads = 0; reads < POOL_READS && w->state != CHILD_GONE; reads++) {
		if (buf_reserve(&w->in, POOL_READ) < 0) {
			child_lost(w, "out of memory reading its channel");
			break;
		}
		size_t room = w->in.cap - w->in.len - 1;
		ssize_t r = read(w->fd, w->in.data + w->in.len, room);
		if (r < 0 && errno == EINTR)
			continue;
		if (r < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
			break;
		if (r <= 0) {
			/* EOF or ECONNRESET: it died; child_cb tells how. */
			child_lost(w, NULL);
			break;
		}
		w->in.len += (size_t)r;
		w->in.data[w->in.len] = '\0';
		const char *why = child_parse(w);
		if (why != NULL) {
			child_lost(w, why);
			break;
		}
		/* A short read drained the socket: skip the read(2) that would
		 * only say EAGAIN. */
		if ((size_t)r < room)
			break;
	}
	pool_pump(pool);
}

/* ---- frames to a worker -------------------------------------------------- */

static void
child_write_cb(struct ev_loop *loop, ev_io *io, int revents)
{
	(void)loop;
	(void)revents;
	struct pool_child *w =
	    (struct pool_child *)((char *)io - offsetof(struct pool_child, wio));
	struct pool *pool = w->pool;
	const char *why;
	if (child_send(w, &why) < 0) {
		child_lost(w, why);
		pool_pump(pool);   /* a task that never reached w goes on */
	}
}

/* Writes what w->out holds, as far as the channel takes it; the write
 * watcher does the rest.  Returns 0, or -1 (why set) when the channel is
 * broken: the caller loses the worker. */
static int
child_send(struct pool_child *w, const char **why)
{
	struct pool *pool = w->pool;
	while (w->out_off < w->out.len) {
		ssize_t n = send(w->fd, w->out.data + w->out_off, w->out.len - w->out_off,
		    MSG_NOSIGNAL);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
			if (!ev_is_active(&w->wio))
				ev_io_start(pool->loop, &w->wio);
			return 0;
		}
		if (n < 0) {
			*why = strerror(errno);
			return -1;
		}
		w->out_off += (size_t)n;
	}
	ev_io_stop(pool->loop, &w->wio);
	w->out.len = w->out_off = 0;
	if (w->out.cap > POOL_KEEP_BUF)
		buf_free(&w->out);
	return 0;
}

/* Hands j to the idle worker w.  Returns 0 when the task is on its way
 * (written, or being written as the channel drains); -1 when its frame
 * could not be built (memory), w and j untouched; -2 when w turned out to
 * be dead already (its channel broken before a byte of the task went
 * out): w is lost and j is at the front of the backlog.  Never calls
 * done. */
static int
child_give(struct pool_child *w, struct job *j)
{
	struct pool *pool = w->pool;
	const struct handler_call *call = j->call;
	struct frame_task t = {
		.seq = j->seq,
		.deadline = call->in.deadline,
		.flags = pool->p.max_memory > 0 ? FRAME_MEASURE_RSS : 0,
		.max_result = pool->p.max_result,
		.handler = j->handler,
		.argv = (call->in.args != NULL && strcmp(j->handler, WORKER_EXEC_HANDLER) == 0) ?
		    (const char *const *)call->in.args->exec : NULL,
		.content_type = call->in.content_type,
		.payload = call->in.payload,
		.len = call->in.len,
	};
	if (frame_put_task(&w->out, &t) < 0)
		return -1;
	w->job = j;
	w->child_seen = false;
	w->state = CHILD_BUSY;
	pool->st.busy++;
	const char *why;
	if (child_send(w, &why) < 0) {
		/* Typically the first send(2) failed: j went back to the
		 * backlog.  If part of the frame went out first, the worker may
		 * have read it and died of it: a crash, answered later. */
		child_lost(w, why);
		return pool->bl_head == j ? -2 : 0;
	}
	return 0;
}

/* ---- spawning ------------------------------------------------------------ */

static const char *const unset_env[] = {
	/* The service manager's: only the daemon speaks to it. */
	"NOTIFY_SOCKET=", "WATCHDOG_USEC=", "WATCHDOG_PID=", "LISTEN_FDS=",
	"LISTEN_PID=", "LISTEN_FDNAMES=", WORKER_ENV "=", NULL,
};

/* The child between fork and exec: async-signal-safe calls only, since
 * the parent may have threads. */
static void __attribute__((noreturn))
child_exec(int chan, int exe, pid_t parent, char **argv, char **envp)
{
	struct sigaction dfl;
	sigset_t none;

	memset(&dfl, 0, sizeof(dfl));
	dfl.sa_handler = SIG_DFL;
	for (int s = 1; s < NSIG; s++)
		if (s != SIGKILL && s != SIGSTOP)
			(void)sigaction(s, &dfl, NULL);
	/* Under libev's signalfd the parent blocks SIGTERM & co.; a worker
	 * that inherited that mask could not be stopped. */
	sigemptyset(&none);
	(void)sigprocmask(SIG_SETMASK, &none, NULL);
	if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
		_exit(127);
	/* Its own group: a Ctrl-C at the daemon's terminal is the daemon's to
	 * handle (drain), not a crash of every worker. */
	(void)setpgid(0, 0);
	int c = fcntl(chan, F_DUPFD, 10), e = fcntl(exe, F_DUPFD, 10);
	if (c < 0 || e < 0 || dup2(c, WORKER_FD) < 0 || dup2(e, WORKER_FD + 1) < 0 ||
	    fcntl(WORKER_FD + 1, F_SETFD, FD_CLOEXEC) < 0)
		_exit(127);
	if (syscall(SYS_close_range, WORKER_FD + 2, ~0U, 0) < 0) {
		for (int fd = WORKER_FD + 2; fd < 65536; fd++)
			(void)close(fd);
	}
	syscall(SYS_execveat, WORKER_FD + 1, "", argv, envp, AT_EMPTY_PATH);
	_exit(127);
}

static char **
child_envp(pid_t parent)
{
	size_t n = 0;
	while (environ[n] != NULL)
		n++;
	char **env = calloc(n + 2, sizeof(*env));
	if (env == NULL)
		return NULL;
	size_t k = 0;
	for (size_t i = 0; i < n; i++) {
		bool skip = false;
		for (const char *const *u = unset_env; *u != NULL; u++)
			if (strncmp(environ[i], *u, strlen(*u)) == 0)
				skip = true;
		if (!skip)
			env[k++] = environ[i];
	}
	if (asprintf(&env[k], "%s=%ld", WORKER_ENV, (long)parent) < 0) {
		free(env);
		return NULL;
	}
	return env;
}

static struct pool_child *
child_spawn(struct pool *pool, int slot)
{
	struct pool_child *w = calloc(1, sizeof(*w));
	int sv[2] = { -1, -1 };
	char title[64];
	char *argv[2] = { title, NULL };
	char **envp = NULL;

	if (w == NULL)
		return NULL;
	w->pool = pool;
	w->slot = slot;
	w->gen = pool->gen;
	w->pidfd = -1;
	snprintf(title, sizeof(title), "taskd: cpu worker %d", slot + 1);
	struct frame_hello hello = {
		.slot = (uint32_t)slot + 1, .plugins = (const char *const *)pool->plugins,
	};
	envp = child_envp(pool->self);
	if (envp == NULL || frame_put_hello(&w->out, &hello) < 0 ||
	    socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv) < 0) {
		log_error("cannot start cpu worker %d: %s", slot + 1, strerror(errno));
		goto fail;
	}
	pid_t pid = fork();
	if (pid < 0) {
		log_error("cannot start cpu worker %d: fork: %s", slot + 1, strerror(errno));
		goto fail;
	}
	if (pid == 0)
		child_exec(sv[1], pool->exe, pool->self, argv, envp);
	close(sv[1]);
	for (size_t i = 0; envp[i] != NULL; i++)
		if (strncmp(envp[i], WORKER_ENV "=", strlen(WORKER_ENV) + 1) == 0)
			free(envp[i]);
	free(envp);
	w->pid = pid;
	w->fd = sv[0];
	w->started = ev_now(pool->loop);
	(void)fcntl(w->fd, F_SETFL, fcntl(w->fd, F_GETFL) | O_NONBLOCK);
	/* Before the loop runs again, or libev may reap it unseen. */
	ev_child_init(&w->child, child_exit_cb, pid, 0);
	ev_child_start(pool->loop, &w->child);
	/* Nobody else reaps it, so the pid cannot be reused before this. */
	w->pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	ev_io_init(&w->rio, child_read_cb, w->fd, EV_READ);
	ev_io_init(&w->wio, child_write_cb, w->fd, EV_WRITE);
	ev_io_start(pool->loop, &w->rio);
	w->state = CHILD_STARTING;
	w->next = &pool->all;
	w->prev = pool->all.prev;
	pool->all.prev->next = w;
	pool->all.prev = w;
	pool->st.alive++;
	pool->st.spawned++;
	const char *why;
	if (child_send(w, &why) < 0)   /* the hello */
		child_lost(w, why);
	return w;

fail:
	if (sv[0] >= 0) {
		close(sv[0]);
		close(sv[1]);
	}
	if (envp != NULL) {
		for (size_t i = 0; envp[i] != NULL; i++)
			if (strncmp(envp[i], WORKER_ENV "=", strlen(WORKER_ENV) + 1) == 0)
				free(envp[i]);
		free(envp);
	}
	buf_free(&w->out);
	free(w);
	return NULL;
}

/* Fills every empty slot. */
static void
pool_fill(struct pool *pool)
{
	bool failed = false;
	for (int i = 0; i < pool->p.size; i++) {
		if (pool->slots[i] != NULL)
			continue;
		struct pool_child *w = child_spawn(pool, i);
		/* Lost already (its hello could not be sent): try again later. */
		if (w == NULL || w->state == CHILD_GONE)
			failed = true;
		else
			pool->slots[i] = w;
	}
	if (failed) {
		pool->respawn_delay = 1.0;
		respawn_soon(pool);
	} else {
		pool->respawn_delay = 0.0;
	}
	pool_pump(pool);
}

static void
pool_respawn_cb(struct ev_loop *loop, ev_timer *t, int revents)
{
	(void)loop;
	(void)revents;
	pool_fill(t->data);
}

/* ---- dispatching --------------------------------------------------------- */

static struct pool_child *
idle_child(struct pool *pool)
{
	for (int i = 0; i < pool->p.size; i++) {
		struct pool_child *w = pool->slots[i];
		if (w != NULL && w->state == CHILD_IDLE)
			return w;
	}
	return NULL;
}

/* Backlog -> idle workers, oldest first.  A job whose frame could not be
 * built (memory) is taken off the backlog and returned; NULL when the
 * backlog is empty or no worker is idle. */
static struct job *
pool_hand_out(struct pool *pool)
{
	struct pool_child *w;
	while (pool->bl_head != NULL && (w = idle_child(pool)) != NULL) {
		struct job *j = backlog_pop(pool);
		/* -2: w was dead already and j is back at the front, for the
		 * next idle worker. */
		if (child_give(w, j) == -1)
			return j;
	}
	return NULL;
}

static void
pool_pump(struct pool *pool)
{
	struct job *j;
	while ((j = pool_hand_out(pool)) != NULL) {
		handler_fail(&j->call->out, RESULT_ERROR, "handler_failed",
		    "out of memory handing the task to a worker");
		job_finish(pool, j);
	}
}

static void
pool_cancel(struct handler_call *call)
{
	/* The pool is this call's handler: its state is the call's
	 * handler-owned pointer (handler.h). */
	struct pool *pool = call->state;
	for (struct job *j = pool->bl_head; j != NULL; j = j->next) {
		if (j->call == call) {
			fifo_remove(&pool->bl_head, &pool->bl_tail, j);
			pool->nbacklog--;
			job_free(j);
			return;
		}
	}
	/* Answered already, its done not yet called: it never will be. */
	for (struct job *j = pool->fin_head; j != NULL; j = j->next) {
		if (j->call == call) {
			fifo_remove(&pool->fin_head, &pool->fin_tail, j);
			job_free(j);
			return;
		}
	}
	for (struct pool_child *w = pool->all.next; w != &pool->all; w = w->next) {
		if (w->job != NULL && w->job->call == call) {
			log_debug("cpu worker %d (pid %ld) killed: its task was stopped",
			    w->slot + 1, (long)w->pid);
			job_free(w->job);
			w->job = NULL;
			pool->st.busy--;
			pool->st.killed++;
			child_kill(w);
			child_close(w);
			return;
		}
	}
}

int
pool_submit(struct pool *pool, struct handler_call *call, const char *handler)
{
	if (idle_child(pool) == NULL && pool->nbacklog >= pool->p.backlog)
		return -1;
	struct job *j = calloc(1, sizeof(*j));
	if (j == NULL)
		return -1;
	j->call = call;
	j->handler = handler;
	j->seq = ++pool->seq;
	/* The backlog is empty while a worker is idle (every event that
	 * frees a worker pumps), so j is next in line.  A worker that turns
	 * out to be dead on the way hands it on to the next, or leaves it in
	 * the backlog: the bound may be passed by one job per dead worker. */
	backlog_push(pool, j, false);
	struct job *bad = pool_hand_out(pool);
	if (bad == j) {
		job_free(j);
		return -1;
	}
	if (bad != NULL)   /* an older one: it waits for the next pump */
		backlog_push(pool, bad, true);
	call->cancel = pool_cancel;
	call->state = pool;
	return 0;
}

/* ---- life cycle ---------------------------------------------------------- */

static int
pool_set_params(struct pool *pool, const struct pool_params *p)
{
	char **plugins = strv_dup(p->plugins);
	if (plugins == NULL)
		return -1;
	if (!strv_eq(pool->plugins, p->plugins))
		pool->gen++;
	strv_free(pool->plugins);
	pool->plugins = plugins;
	pool->p = *p;
	pool->p.plugins = NULL;
	if (pool->p.size < 1)
		pool->p.size = 1;
	if (pool->p.max_result == 0)
		pool->p.max_result = (size_t)16 << 20;
	return 0;
}

struct pool *
pool_new(struct ev_loop *loop, const struct pool_params *p, char *err, size_t errlen)
{
	struct pool *pool = calloc(1, sizeof(*pool));
	if (pool == NULL || pool_set_params(pool, p) < 0) {
		snprintf(err, errlen, "out of memory");
		free(pool);
		return NULL;
	}
	pool->loop = loop;
	pool->self = getpid();
	pool->all.next = pool->all.prev = &pool->all;
	pool->exe = open("/proc/self/exe", O_RDONLY | O_CLOEXEC);
	if (pool->exe < 0) {
		snprintf(err, errlen, "cannot open /proc/self/exe: %s", strerror(errno));
		strv_free(pool->plugins);
		free(pool);
		return NULL;
	}
	pool->nslots = pool->p.size;
	pool->slots = calloc((size_t)pool->nslots, sizeof(*pool->slots));
	if (pool->slots == NULL) {
		snprintf(err, errlen, "out of memory");
		close(pool->exe);
		strv_free(pool->plugins);
		free(pool);
		return NULL;
	}
	ev_timer_init(&pool->respawn, pool_respawn_cb, 0.0, 0.0);
	pool->respawn.data = pool;
	ev_timer_init(&pool->later, pool_later_cb, 0.0, 0.0);
	pool->later.data = pool;
	pool_fill(pool);
	if (pool->st.alive == 0) {
		snprintf(err, errlen, "no cpu worker could be started");
		pool_free(pool);
		return NULL;
	}
	return pool;
}

void
pool_configure(struct pool *pool, const struct pool_params *p)
{
	unsigned gen = pool->gen;
	if (pool_set_params(pool, p) < 0) {
		log_error("cpu pool: out of memory applying the new configuration");
		return;
	}
	if (pool->p.size > pool->nslots) {
		struct pool_child **s = realloc(pool->slots, (size_t)pool->p.size * sizeof(*s));
		if (s == NULL) {
			log_error("cpu pool: out of memory growing to %d workers", pool->p.size);
			pool->p.size = pool->nslots;
		} else {
			for (int i = pool->nslots; i < pool->p.size; i++)
				s[i] = NULL;
			pool->slots = s;
			pool->nslots = pool->p.size;
		}
	}
	/* Idle workers that are now surplus or out of date go at once; busy
	 * ones when their task ends (child_frame). */
	for (int i = 0; i < pool->nslots; i++) {
		struct pool_child *w = pool->slots[i];
		if (w != NULL && w->state == CHILD_IDLE &&
		    (i >= pool->p.size || w->gen != pool->gen))
			child_close(w);
	}
	if (gen != pool->gen)
		log_info("cpu pool: plugins changed, replacing workers as they become idle");
	pool->respawn_delay = 0;
	pool_fill(pool);
}

void
pool_stats(const struct pool *pool, struct pool_stats *out)
{
	*out = pool->st;
	out->size = pool->p.size;
	out->backlog = pool->nbacklog;
}

void
pool_free(struct pool *pool)
{
	if (pool == NULL)
		return;
	ev_timer_stop(pool->loop, &pool->respawn);
	ev_timer_stop(pool->loop, &pool->later);
	struct pool_child *w = pool->all.next;
	while (w != &pool->all) {
		struct pool_child *next = w->next;
		child_kill(w);
		if (w->fd >= 0) {
			ev_io_stop(pool->loop, &w->rio);
			ev_io_stop(pool->loop, &w->wio);
			close(w->fd);
		}
		ev_child_stop(pool->loop, &w->child);
		/* SIGKILLed: this wait is short.  libev may have reaped it
		 * already (ECHILD). */
		while (waitpid(w->pid, NULL, 0) < 0 && errno == EINTR)
			;
		if (w->pidfd >= 0)
			close(w->pidfd);
		job_free(w->job);
		buf_free(&w->in);
		buf_free(&w->out);
		free(w);
		w = next;
	}
	struct job *j;
	while ((j = backlog_pop(pool)) != NULL)
		job_free(j);
	while ((j = fifo_pop(&pool->fin_head, &pool->fin_tail)) != NULL)
		job_free(j);
	close(pool->exe);
	strv_free(pool->plugins);
	free(pool->slots);
	free(pool);
}
