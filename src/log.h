/*
 * log: the daemon's one log API.  One line per event to stderr.  Under
 * journald (JOURNAL_STREAM matches stderr) each line carries the sd-daemon
 * priority prefix ("<3>"); otherwise a timestamp and the level name.
 *
 * log_warn() and log_error() with an errno-style suffix are not provided on
 * purpose: callers format strerror() themselves where it matters.
 */
#ifndef TASKD_LOG_H
#define TASKD_LOG_H

enum log_level { LOG_LEVEL_ERROR, LOG_LEVEL_WARN, LOG_LEVEL_INFO, LOG_LEVEL_DEBUG };

/* Decides the output format from the environment; call once at start. */
void log_init(void);
void log_set_level(enum log_level level);
enum log_level log_get_level(void);
/* "error" | "warn" | "info" | "debug" -> level; returns -1 when unknown. */
int log_level_parse(const char *name);
const char *log_level_name(enum log_level level);

void log_msg(enum log_level level, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

#define log_error(...) log_msg(LOG_LEVEL_ERROR, __VA_ARGS__)
#define log_warn(...)  log_msg(LOG_LEVEL_WARN, __VA_ARGS__)
#define log_info(...)  log_msg(LOG_LEVEL_INFO, __VA_ARGS__)
#define log_debug(...) \
	do { if (log_get_level() >= LOG_LEVEL_DEBUG) log_msg(LOG_LEVEL_DEBUG, __VA_ARGS__); } while (0)

#endif
