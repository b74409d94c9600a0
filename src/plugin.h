/*
 * plugin: loads the shared objects of `plugins = [...]` and turns their
 * handlers (include/taskd/plugin.h) into taskd handlers.
 *
 * Plugins are loaded into the daemon (for the task table and io handlers)
 * before the CPU pool starts, and again by each CPU worker from the HELLO
 * frame (a worker is a fresh exec of the binary).  A plugin is never
 * unloaded: a task in flight may still run its code after a reload that
 * dropped it, so a reload only adds plugins.
 */
#ifndef TASKD_PLUGIN_INTERNAL_H
#define TASKD_PLUGIN_INTERNAL_H

#include <stddef.h>

#include "buf.h"
#include "handler.h"

/* Loads path unless it is loaded already.  Refuses a file that is not a
 * regular file or is writable by group or others, one that does not load,
 * lacks the taskd_plugin symbol, was built for another ABI, whose init()
 * fails, or that names a handler another plugin or taskd itself has.
 * Returns 0, or -1 with a one-line reason in err (no file:line prefix). */
int plugin_load(const char *path, char *err, size_t errlen);

/* plugin_load() for each of the NULL-terminated paths; -1 at the first
 * failure, with "path: reason" appended to err. */
int plugin_load_all(const char *const *paths, struct buf *err);

/* The handler a loaded plugin registered under name, or NULL. */
const struct handler *plugin_find(const char *name);

/* Runs the plugin cpu handler called name (in a worker).  Returns -1 when
 * no plugin has a cpu handler of that name. */
int plugin_run(const char *name, const struct handler_input *in,
    struct handler_output *out);

#endif
