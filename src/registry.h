/*
 * registry: the task table in force, built from a conf.  It binds each task
 * name clients may ask for to the handler that runs it, with that task's
 * limits.  A registry is built whole and swapped whole on reload, so a task
 * in flight copies what it needs from its entry when it starts.
 */
#ifndef TASKD_REGISTRY_H
#define TASKD_REGISTRY_H

#include <stddef.h>

#include "conf.h"
#include "handler.h"

struct registry_entry {
	const char *name;
	const struct handler *handler;
	enum handler_kind kind;
	double timeout;   /* seconds */
	int retries;
	struct handler_args *args; /* the registry's reference */
};

struct registry;

/* Builds the table for conf (which must outlive the registry).  Returns
 * NULL with *errs set ("file:line: key: what is wrong" lines, caller frees)
 * when a task names no known handler or asks for something this build
 * cannot run. */
struct registry *registry_build(const struct conf *conf, char **errs);
/* The entry for a task name, or NULL. */
const struct registry_entry *registry_find(const struct registry *r, const char *name);
size_t registry_count(const struct registry *r);
void registry_free(struct registry *r);

#endif
