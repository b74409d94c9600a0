#include "registry.h"

#include <stdlib.h>
#include <string.h>

#include "buf.h"
#include "plugin.h"

struct registry {
	struct registry_entry *entries;
	size_t n;
};

struct registry *
registry_build(const struct conf *conf, char **errs)
{
	struct registry *r = calloc(1, sizeof(*r));
	struct buf err = { 0 };

	if (r == NULL)
		goto nomem;
	r->entries = calloc(conf->ntasks ? conf->ntasks : 1, sizeof(*r->entries));
	if (r->entries == NULL)
		goto nomem;

	/* Plugins first: their handlers are names tasks may use.  Loading is
	 * for good (plugin.h), so -t, start and reload all go through here. */
	for (size_t i = 0; conf->plugins != NULL && conf->plugins[i] != NULL; i++) {
		char why[1024];
		if (plugin_load(conf->plugins[i], why, sizeof(why)) < 0 &&
		    buf_printf(&err, "%s:%d: plugins[%zu]: %s: %s\n", conf->path,
		    conf->plugins_line, i, conf->plugins[i], why) < 0)
			goto nomem;
	}

	for (size_t i = 0; i < conf->ntasks; i++) {
		const struct conf_task *t = &conf->tasks[i];
		struct registry_entry *e = &r->entries[r->n];

		/* conf makes an exec task without a kind an io one; kind cpu
		 * runs the program from a pool worker (worker_exec.h). */
		e->handler = t->handler == NULL ? (t->kind == CONF_KIND_CPU ?
		    &handler_exec_cpu : &handler_exec_io) : handler_find(t->handler);
		if (e->handler == NULL && t->handler != NULL)
			e->handler = plugin_find(t->handler);
		if (e->handler == NULL) {
			if (buf_printf(&err, "%s:%d: tasks[%zu].handler: unknown "
			    "handler '%s'\n", conf->path, t->line, i, t->handler) < 0)
				goto nomem;
			continue;
		}
		if (t->kind != CONF_KIND_DEFAULT &&
		    (t->kind == CONF_KIND_CPU) != (e->handler->kind == HANDLER_CPU)) {
			if (buf_printf(&err, "%s:%d: tasks[%zu].kind: handler '%s' "
			    "is of kind %s\n", conf->path, t->line, i, t->handler,
			    e->handler->kind == HANDLER_CPU ? "cpu" : "io") < 0)
				goto nomem;
			continue;
		}
		/* A result must fit in a message: stdout is capped like a payload. */
		e->args = handler_args_new(t, conf->max_payload);
		if (e->args == NULL)
			goto nomem;
		e->name = t->name;
		e->kind = e->handler->kind;
		e->timeout = t->timeout;
		e->retries = t->retries;
		r->n++;
	}
	if (err.len > 0) {
		*errs = buf_steal(&err, NULL);
		registry_free(r);
		return NULL;
	}
	return r;

nomem:
	buf_free(&err);
	registry_free(r);
	*errs = strdup("out of memory building the task table\n");
	return NULL;
}

const struct registry_entry *
registry_find(const struct registry *r, const char *name)
{
	/* Linear: task tables are a handful of entries and this is one strcmp
	 * each, cheaper than hashing for the sizes operators write. */
	for (size_t i = 0; i < r->n; i++)
		if (strcmp(r->entries[i].name, name) == 0)
			return &r->entries[i];
	return NULL;
}

size_t
registry_count(const struct registry *r)
{
	return r->n;
}

void
registry_free(struct registry *r)
{
	if (r == NULL)
		return;
	for (size_t i = 0; i < r->n; i++)
		handler_args_unref(r->entries[i].args);
	free(r->entries);
	free(r);
}
