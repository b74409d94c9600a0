/* exec: run a configured program as a task; see exec.h for the contract. */
#include "exec.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

/* The whole environment of a task's program: a search path for the
 * programs it runs itself, and a UTF-8 locale.  Nothing is inherited, so
 * the daemon's secrets and NOTIFY_SOCKET stay out. */
static char exec_path[] = "PATH=/usr/local/bin:/usr/bin:/bin";
static char exec_lang[] = "LANG=C.UTF-8";
/* posix_spawn takes char *const[]: writable strings, not literals. */
static char *const exec_env[] = { exec_path, exec_lang, NULL };

/* Bytes moved per read or write: a pipe's default capacity. */
#define EXEC_CHUNK 65536
/* Lines of stderr quoted in an error message. */
#define EXEC_STDERR_LINES 10

enum { P_IN, P_OUT, P_ERR };

struct exec_run {
	int fd[3];            /* our ends: stdin (write), stdout, stderr (read) */
	pid_t pid;
	const unsigned char *payload;
	size_t len, off;
	size_t max_output;
	struct buf err;       /* the last EXEC_STDERR_TAIL bytes or so */
	bool too_big;
};

static void
close_fd(int *fd)
{
	if (*fd >= 0) {
		close(*fd);
		*fd = -1;
	}
}

/* The child's ends must not be 0..2 before the dup2 calls, or one dup2
 * would overwrite another's source.  Only a daemon started with closed
 * standard fds gets such pipes. */
static int
above_stdio(int *fd)
{
	if (*fd > 2)
		return 0;
	int n = fcntl(*fd, F_DUPFD_CLOEXEC, 3);
	if (n < 0)
		return -1;
	close(*fd);
	*fd = n;
	return 0;
}

static int
set_nonblock(int fd)
{
	int fl = fcntl(fd, F_GETFL);
	return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* Makes the three pipes and starts argv with their other ends as its
 * stdio.  Returns 0, or an errno value. */
static int
exec_spawn(struct exec_run *r, char *const argv[])
{
	int child[3] = { -1, -1, -1 };
	int p[2], e = 0;
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t none, all;

	for (int i = 0; i < 3; i++) {
		if (pipe2(p, O_CLOEXEC) < 0) {
			e = errno;
			goto out;
		}
		/* stdin: the child reads p[0]; stdout/stderr: it writes p[1]. */
		child[i] = i == P_IN ? p[0] : p[1];
		r->fd[i] = i == P_IN ? p[1] : p[0];
		if (above_stdio(&child[i]) < 0 || set_nonblock(r->fd[i]) < 0) {
			e = errno;
			goto out;
		}
	}

	if ((e = posix_spawn_file_actions_init(&fa)) != 0)
		goto out;
	if ((e = posix_spawnattr_init(&attr)) != 0) {
		posix_spawn_file_actions_destroy(&fa);
		goto out;
	}
	sigemptyset(&none);
	sigfillset(&all);
	/* dup2 clears close-on-exec on the copies; everything else goes. */
	if ((e = posix_spawn_file_actions_adddup2(&fa, child[P_IN], 0)) == 0 &&
	    (e = posix_spawn_file_actions_adddup2(&fa, child[P_OUT], 1)) == 0 &&
	    (e = posix_spawn_file_actions_adddup2(&fa, child[P_ERR], 2)) == 0 &&
	    (e = posix_spawn_file_actions_addclosefrom_np(&fa, 3)) == 0 &&
	    /* Its own group, so a timeout kills what it started too. */
	    (e = posix_spawnattr_setpgroup(&attr, 0)) == 0 &&
	    /* The daemon blocks signals for its signalfd: unblock them all
	     * and reset their actions, or SIGTERM would not stop the child. */
	    (e = posix_spawnattr_setsigmask(&attr, &none)) == 0 &&
	    (e = posix_spawnattr_setsigdefault(&attr, &all)) == 0 &&
	    (e = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETPGROUP |
	    POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF)) == 0)
		e = posix_spawn(&r->pid, argv[0], &fa, &attr, argv, exec_env);
	posix_spawnattr_destroy(&attr);
	posix_spawn_file_actions_destroy(&fa);

out:
	for (int i = 0; i < 3; i++)
		close_fd(&child[i]);
	if (e != 0)
		r->pid = 0;
	return e;
}

/* Keeps the last EXEC_STDERR_TAIL bytes: older ones are dropped in big
 * steps so a chatty program costs a memmove per tail, not per read. */
static int
keep_tail(struct buf *b, const char *p, size_t n)
{
	if (buf_append(b, p, n) < 0)
		return -1;
	if (b->len > 2 * EXEC_STDERR_TAIL) {
		memmove(b->data, b->data + b->len - EXEC_STDERR_TAIL, EXEC_STDERR_TAIL);
		b->len = EXEC_STDERR_TAIL;
		b->data[b->len] = '\0';
	}
	return 0;
}

/* Moves what is ready on fds; returns -1 when memory ran out. */
static int
exec_pump(struct exec_run *r, const struct pollfd *pfd, struct handler_output *out)
{
	char chunk[4096];

	if (r->fd[P_IN] >= 0 && pfd[P_IN].revents) {
		size_t n = r->len - r->off;
		ssize_t w = write(r->fd[P_IN], r->payload + r->off,
		    n > EXEC_CHUNK ? EXEC_CHUNK : n);
		if (w > 0)
			r->off += (size_t)w;
		/* EPIPE: the program did not want (all of) its input; its exit
		 * status says whether that was a failure. */
		if ((w < 0 && errno != EAGAIN && errno != EINTR) || r->off == r->len)
			close_fd(&r->fd[P_IN]);
	}
	if (r->fd[P_OUT] >= 0 && pfd[P_OUT].revents) {
		if (buf_reserve(&out->body, EXEC_CHUNK) < 0)
			return -1;
		ssize_t n = read(r->fd[P_OUT], out->body.data + out->body.len, EXEC_CHUNK);
		if (n > 0) {
			out->body.len += (size_t)n;
			out->body.data[out->body.len] = '\0';
			if (out->body.len > r->max_output)
				r->too_big = true;
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			close_fd(&r->fd[P_OUT]);
		}
	}
	if (r->fd[P_ERR] >= 0 && pfd[P_ERR].revents) {
		ssize_t n = read(r->fd[P_ERR], chunk, sizeof(chunk));
		if (n > 0) {
			if (keep_tail(&r->err, chunk, (size_t)n) < 0)
				return -1;
		} else if (n == 0 || (errno != EAGAIN && errno != EINTR)) {
			close_fd(&r->fd[P_ERR]);
		}
	}
	return 0;
}

/* The last lines of stderr, without the trailing newline, for a message. */
static void
stderr_tail(struct buf *err, const char **p, size_t *n)
{
	const char *s = err->data ? err->data : "";
	size_t len = err->len;

	while (len > 0 && (s[len - 1] == '\n' || s[len - 1] == '\r'))
		len--;
	size_t start = len;
	for (int lines = 0; start > 0; start--) {
		if (s[start - 1] == '\n' && ++lines == EXEC_STDERR_LINES)
			break;
	}
	*p = s + start;
	*n = len - start;
}

static void
exec_failed(struct exec_run *r, const char *prog, int status,
    struct handler_output *out)
{
	const char *tail;
	size_t n;

	out->status = RESULT_ERROR;
	out->error_code = "handler_failed";
	out->content_type = NULL;
	buf_reset(&out->body);
	stderr_tail(&r->err, &tail, &n);
	if (WIFSIGNALED(status)) {
		if (buf_printf(&out->body, "%s was killed by signal %d (%s)", prog,
		    WTERMSIG(status), strsignal(WTERMSIG(status))) < 0)
			return;
	} else if (buf_printf(&out->body, "%s exited with status %d", prog,
	    WEXITSTATUS(status)) < 0) {
		return;
	}
	if (n > 0 && (buf_puts(&out->body, ": ") < 0 ||
	    buf_append(&out->body, tail, n) < 0))
		return; /* the start of the message is still there */
}

enum exec_end
exec_run(char *const argv[], const void *payload, size_t len, double deadline,
    size_t max_output, const struct exec_waiter *w, struct handler_output *out)
{
	struct exec_run r = {
		.fd = { -1, -1, -1 },
		.payload = payload,
		.len = len,
		.max_output = max_output,
	};
	enum exec_end end = EXEC_FINISHED;
	enum exec_wait ew = EXEC_WAIT_READY;
	int status = 0, e;

	if ((e = exec_spawn(&r, argv)) != 0) {
		handler_fail(out, RESULT_ERROR, "handler_failed", "cannot run %s: %s",
		    argv[0], strerror(e));
		goto done;
	}
	if (w->watch_child != NULL)
		w->watch_child(w->ctx, r.pid);
	if (r.len == 0)
		close_fd(&r.fd[P_IN]);

	while (r.fd[P_IN] >= 0 || r.fd[P_OUT] >= 0 || r.fd[P_ERR] >= 0) {
		struct pollfd pfd[3] = {
			{ r.fd[P_IN], POLLOUT, 0 },
			{ r.fd[P_OUT], POLLIN, 0 },
			{ r.fd[P_ERR], POLLIN, 0 },
		};
		ew = w->poll(w->ctx, pfd, 3, deadline);
		if (ew != EXEC_WAIT_READY)
			goto stop;
		if (exec_pump(&r, pfd, out) < 0) {
			handler_fail(out, RESULT_ERROR, "handler_failed",
			    "out of memory reading the output of %s", argv[0]);
			ew = EXEC_WAIT_READY;
			goto kill;
		}
		if (r.too_big) {
			handler_fail(out, RESULT_ERROR, "handler_failed",
			    "%s: output larger than %zu bytes", argv[0], max_output);
			goto kill;
		}
	}
	ew = w->wait_child(w->ctx, r.pid, deadline, &status);
	if (ew != EXEC_WAIT_READY)
		goto stop;
	/* The child is reaped: only its group's number is left to reach
	 * whatever it left behind (the number stays taken while any member
	 * lives, so this cannot hit a stranger). */
	(void)kill(-r.pid, SIGKILL);
	r.pid = 0;
	if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
		out->status = RESULT_OK;
		out->error_code = NULL;
		out->content_type = NULL;
	} else {
		exec_failed(&r, argv[0], status, out);
	}
	goto done;

stop:
	if (ew == EXEC_WAIT_TIMEOUT)
		handler_fail(out, RESULT_TIMEOUT, "timeout",
		    "%s did not finish before the task's deadline", argv[0]);
	else
		end = EXEC_CANCELLED;
kill:
	/* Not reaped yet, so the group's number is still ours. */
	(void)kill(-r.pid, SIGKILL);
	w->reap(w->ctx, r.pid);
	r.pid = 0;
done:
	for (int i = 0; i < 3; i++)
		close_fd(&r.fd[i]);
	buf_free(&r.err);
	return end;
}
