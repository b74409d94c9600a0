/*
 * confwarn: what an operator should hear about a configuration that loaded
 * (conf.h).  Nothing here refuses a file: a task timeout the broker's
 * consumer timeout would cut short, a concurrency vm.max_map_count cannot
 * hold, a broker password every local user can read.
 *
 * The findings are made in one place and said through one of two
 * renderings of the same lines, chosen by who asked.
 */
#ifndef TASKD_CONFWARN_H
#define TASKD_CONFWARN_H

#include <stdio.h>

#include "conf.h"

/* The daemon, at start and after each reload: one log_warn() line per
 * finding, "FILE[:LINE]: KEY: problem", subject to the log level. */
void confwarn_log(const struct conf *conf);

/* `taskd -t`: one "FILE[:LINE]: warning: KEY: problem" line per finding to
 * out, whatever the log level, as the check prints its errors. */
void confwarn_print(const struct conf *conf, FILE *out);

#endif
