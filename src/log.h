/*
 * log: the daemon's one log API.  One line per event to stderr.  Under
 * journald (JOURNAL_STREAM matches stderr) each line carries the sd-daemon
 * priority prefix ("<3>"); otherwise a timestamp and the level name.
 *
 * Every message is escaped as a whole before it is written (log_escape), so
 * a client's bytes passed as arguments (a reply address, a task name) can
 * neither end the line and forge another one at any priority, nor send
 * escape sequences to a terminal.  Call sites pass such strings as they
 * are.  A message over 8 KiB is cut, and the line says how much was cut.
 *
 * log_warn() and log_error() with an errno-style suffix are not provided on
 * purpose: callers format strerror() themselves where it matters.
 */
#ifndef TASKD_LOG_H
#define TASKD_LOG_H

#include <stddef.h>

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Decides the output format from the environment; call once at start. */
void log_init(void);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* "error" | "warn" | "info" | "debug" -> level; returns -1 when unknown. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);

/* Renders n bytes of src for a log line: printable ASCII and well-formed
 * UTF-8 stay as they are; a backslash becomes two; any other byte (C0
 * controls such as newline, DEL, C1 controls, bytes that are not
 * well-formed UTF-8) becomes \xNN, lowercase hex.  So the line is one
 * line of valid UTF-8 without controls, and every escape in it stands for
 * a byte of the input.  Writes at most cap - 1 bytes and a NUL to out,
 * whole escapes and characters only; returns the length the whole
 * rendering needs, without the NUL (as snprintf does).  out may be NULL
 * when cap is 0. */
size_t log_escape(char *out, size_t cap, const void *src, size_t n);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_get_level() >= LOG_LEVEL_DEBUG) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)

#endif
