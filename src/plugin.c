#include "plugin.h"

#include <dlfcn.h>
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coro.h"
#include "taskd/plugin.h"

/* A plugin's handler as the rest of taskd sees it. */
struct plugin_handler {
	struct handler h;                  /* first: call->handler points here */
	const struct taskd_handler *def;
	struct plugin_handler *next;
};

struct plugin {
	char *path;
	void *dl;
	struct plugin *next;
};

static struct plugin *plugins;
static struct plugin_handler *handlers;

static struct plugin_handler *
find(const char *name)
{
	for (struct plugin_handler *p = handlers; p != NULL; p = p->next)
		if (strcmp(p->h.name, name) == 0)
			return p;
	return NULL;
}

const struct handler *
plugin_find(const char *name)
{
	struct plugin_handler *p = find(name);
	return p ? &p->h : NULL;
}

static void
to_taskd_input(const struct handler_input *in, struct taskd_input *ti)
{
	ti->payload = in->payload;
	ti->len = in->len;
	ti->content_type = in->content_type;
	ti->deadline = in->deadline;
}

int
plugin_run(const char *name, const struct handler_input *in,
    struct handler_output *out)
{
	struct plugin_handler *p = find(name);
	if (p == NULL || p->def->kind != TASKD_KIND_CPU)
		return -1;
	struct taskd_input ti;
	to_taskd_input(in, &ti);
	p->def->run(&ti, (struct taskd_output *)out);
	return 0;
}

/* The body of a plugin io handler, on its coroutine. */
static void
plugin_io_co(struct handler_call *call)
{
	const struct plugin_handler *p = (const struct plugin_handler *)call->handler;
	struct taskd_input ti;
	to_taskd_input(&call->in, &ti);
	p->def->run(&ti, (struct taskd_output *)&call->out);
}

static int
fail(char *err, size_t errlen, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int
fail(char *err, size_t errlen, const char *fmt, ...)
{
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(err, errlen, fmt, ap);
	va_end(ap);
	return -1;
}

int
plugin_load(const char *path, char *err, size_t errlen)
{
	struct stat st;

	for (struct plugin *p = plugins; p != NULL; p = p->next)
		if (strcmp(p->path, path) == 0)
			return 0;
	/* dlopen() runs the file's constructors: a file another user can
	 * write would be code that user runs as taskd. */
	if (stat(path, &st) < 0)
		return fail(err, errlen, "%s", strerror(errno));
	if (!S_ISREG(st.st_mode))
		return fail(err, errlen, "not a regular file");
	if (st.st_mode & (S_IWGRP | S_IWOTH))
		return fail(err, errlen, "is writable by %s (mode %04o): refusing to "
		    "load it (chmod go-w)", (st.st_mode & S_IWOTH) ? "others" :
		    "its group", (unsigned)(st.st_mode & 07777));

	void *dl = dlopen(path, RTLD_NOW | RTLD_LOCAL);
	if (dl == NULL)
		return fail(err, errlen, "cannot load: %s", dlerror());
	const struct taskd_plugin *def = dlsym(dl, TASKD_PLUGIN_SYMBOL);
	if (def == NULL) {
		dlclose(dl);
		return fail(err, errlen, "does not define the symbol '%s': not a "
		    "taskd plugin", TASKD_PLUGIN_SYMBOL);
	}
	if (def->abi != TASKD_PLUGIN_ABI) {
		unsigned abi = def->abi;
		dlclose(dl);
		return fail(err, errlen, "was built for plugin ABI %u, this taskd "
		    "speaks ABI %u: rebuild it against this taskd's "
		    "<taskd/plugin.h>", abi, TASKD_PLUGIN_ABI);
	}
	size_t n = 0;
	for (const struct taskd_handler *h = def->handlers; h != NULL && h->name != NULL; h++, n++) {
		if (h->run == NULL || (h->kind != TASKD_KIND_CPU && h->kind != TASKD_KIND_IO)) {
			dlclose(dl);
			return fail(err, errlen, "handler '%s': needs a run function "
			    "and a kind of TASKD_KIND_CPU or TASKD_KIND_IO", h->name);
		}
		if (handler_find(h->name) != NULL || find(h->name) != NULL) {
			dlclose(dl);
			return fail(err, errlen, "handler '%s': that name is taken "
			    "already", h->name);
		}
	}
	if (n == 0) {
		dlclose(dl);
		return fail(err, errlen, "registers no handler");
	}
	if (def->init != NULL && def->init() != 0) {
		dlclose(dl);
		return fail(err, errlen, "its init() failed");
	}

	struct plugin *pl = calloc(1, sizeof(*pl));
	struct plugin_handler *hs = calloc(n, sizeof(*hs));
	if (pl == NULL || hs == NULL || (pl->path = strdup(path)) == NULL) {
		free(pl);
		free(hs);
		/* Not closed: init() ran and may have started something. */
		return fail(err, errlen, "out of memory");
	}
	pl->dl = dl;
	pl->next = plugins;
	plugins = pl;
	for (size_t i = 0; i < n; i++) {
		const struct taskd_handler *h = &def->handlers[i];
		hs[i].def = h;
		hs[i].h.name = h->name;
		if (h->kind == TASKD_KIND_CPU) {
			hs[i].h.kind = HANDLER_CPU;
		} else {
			hs[i].h.kind = HANDLER_IO;
			hs[i].h.start = handler_co_start;
			hs[i].h.co = plugin_io_co;
		}
		hs[i].next = handlers;
		handlers = &hs[i];
	}
	return 0;
}

int
plugin_load_all(const char *const *paths, struct buf *err)
{
	char why[1024];
	for (size_t i = 0; paths != NULL && paths[i] != NULL; i++) {
		if (plugin_load(paths[i], why, sizeof(why)) < 0) {
			(void)buf_printf(err, "%s: %s", paths[i], why);
			return -1;
		}
	}
	return 0;
}

/* ---- the functions plugins call (include/taskd/plugin.h) ----------------- */

double
taskd_clock(void)
{
	return handler_clock();
}

int
taskd_output_append(struct taskd_output *out, const void *p, size_t n)
{
	struct handler_output *o = (struct handler_output *)out;
	return buf_append(&o->body, p, n);
}

void
taskd_output_set_content_type(struct taskd_output *out, const char *s)
{
	((struct handler_output *)out)->content_type = s;
}

void
taskd_output_fail(struct taskd_output *out, enum taskd_status status,
    const char *code, const char *fmt, ...)
{
	struct handler_output *o = (struct handler_output *)out;
	char msg[1024];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	enum result_status s = status == TASKD_TIMEOUT ? RESULT_TIMEOUT :
	    status == TASKD_REJECTED ? RESULT_REJECTED : RESULT_ERROR;
	handler_fail(o, s, code != NULL ? code : "handler_failed", "%s", msg);
}

static enum taskd_wait
wait_of(enum coro_status s)
{
	return s == CORO_READY ? TASKD_WAIT_READY : s == CORO_TIMEOUT ?
	    TASKD_WAIT_TIMEOUT : TASKD_WAIT_CANCELLED;
}

enum taskd_wait
taskd_wait_fd(int fd, int events, double deadline)
{
	/* Outside a coroutine (a cpu handler calling it by mistake) there is
	 * nothing to yield to: refuse rather than block a worker or the loop. */
	if (coro_self() == NULL)
		return TASKD_WAIT_CANCELLED;
	short ev = (short)(((events & TASKD_READ) ? POLLIN : 0) |
	    ((events & TASKD_WRITE) ? POLLOUT : 0));
	return wait_of(coro_wait_fd(fd, ev, deadline));
}

enum taskd_wait
taskd_sleep(double seconds)
{
	if (coro_self() == NULL)
		return TASKD_WAIT_CANCELLED;
	return wait_of(coro_sleep(seconds));
}
