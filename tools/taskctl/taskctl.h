/*
 * taskctl: the command-line client of taskd (taskctl(1)).
 *
 *   taskctl [OPTIONS] submit [--timeout SEC] [--no-wait] TASK [PAYLOAD|-]
 *   taskctl [OPTIONS] bench [-n N] [-r RATE] [-c CONC] [-t TASK] ...
 *   taskctl [OPTIONS] status [--json] [--timeout SEC]
 *   taskctl [OPTIONS] cancel [--timeout SEC] [--expect N] TASK_ID...
 *
 * It speaks only the wire protocol of docs/protocol.md, as any other client
 * would, so it doubles as a check that the protocol is usable from outside.
 * One file per command; client.c is the broker connection and message
 * assembly they share, cli.c the rest.
 */
#ifndef TASKCTL_TASKCTL_H
#define TASKCTL_TASKCTL_H

#include <getopt.h>
#include <stdbool.h>

#include "client.h"

#define TASKCTL_DEFAULT_URI "amqp://guest:guest@127.0.0.1:5672/%2f"
#define TASKCTL_DEFAULT_QUEUE "distributed_tasks"

/* The options every command takes, before or after its name. */
struct taskctl {
	struct client_opts conn;
	const char *queue;
};

/* getopt_long values of the long-only common options. */
enum {
	TASKCTL_OPT_CACERT = 0x100,
	TASKCTL_OPT_CERT,
	TASKCTL_OPT_KEY,
	TASKCTL_OPT_COMMAND = 0x200,   /* first free value for a command's own */
};

/* The common options' getopt_long entries and short letters: a command's
 * table starts with TASKCTL_LONGOPTS and its optstring with
 * TASKCTL_SHORTOPTS. */
#define TASKCTL_LONGOPTS \
	{ "uri", required_argument, NULL, 'u' }, \
	{ "queue", required_argument, NULL, 'q' }, \
	{ "cacert", required_argument, NULL, TASKCTL_OPT_CACERT }, \
	{ "cert", required_argument, NULL, TASKCTL_OPT_CERT }, \
	{ "key", required_argument, NULL, TASKCTL_OPT_KEY }, \
	{ "help", no_argument, NULL, 'h' }
#define TASKCTL_SHORTOPTS "hu:q:"

/* Takes opt if it is a common option (optarg set by getopt). */
bool taskctl_common_option(struct taskctl *t, int opt);
/* Checks the common options once parsed: --cert wants --key.  Returns 0,
 * or -1 after saying why. */
int taskctl_check(const struct taskctl *t);
/* The full manual on stdout (-h), the gist on stderr (a usage mistake). */
void taskctl_usage(void);
void taskctl_usage_hint(void);

/* The commands: argv[0] is the command's name.  Each returns an exit
 * status (cli.h). */
int submit_main(struct taskctl *t, int argc, char **argv);
int bench_main(struct taskctl *t, int argc, char **argv);
int status_main(struct taskctl *t, int argc, char **argv);
int cancel_main(struct taskctl *t, int argc, char **argv);

#endif
