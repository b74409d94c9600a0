/* taskctl: the command line and the commands' table (taskctl.h). */

#include <err.h>
#include <stdio.h>
#include <string.h>

#include "cli.h"
#include "taskctl.h"

/* submit's wait beyond the task's own timeout (submit.c). */
#define SUBMIT_GRACE_TEXT "5"

void
taskctl_usage(void)
{
	printf(
"usage: taskctl [OPTIONS] submit [options] TASK [PAYLOAD|-]\n"
"       taskctl [OPTIONS] bench [options]\n"
"       taskctl [OPTIONS] status [--json] [--timeout SEC] [--expect N]\n"
"       taskctl [OPTIONS] cancel [--timeout SEC] [--expect N] TASK_ID...\n"
"       taskctl -h\n"
"\n"
"OPTIONS (before or after the command name):\n"
"  -u, --uri URI[,URI...]  broker, or the nodes of a cluster, tried in order\n"
"                          (default %s)\n"
"  -q, --queue QUEUE       task queue (default %s)\n"
"  --cacert FILE           amqps: CA bundle, PEM (default: the system's)\n"
"  --cert FILE, --key FILE amqps: client certificate and key, PEM\n"
"\n"
"submit: publish one task and print its result on stdout.\n"
"  PAYLOAD is the body; \"-\" reads it from stdin; none = empty.\n"
"  --timeout SEC        task timeout sent to taskd; also bounds the wait\n"
"                       (SEC plus " SUBMIT_GRACE_TEXT " s); without it taskctl waits until\n"
"                       the result comes or the connection fails\n"
"  --content-type TYPE  content_type of the payload\n"
"  --no-wait            publish with no reply address and return once\n"
"                       the broker confirmed the task\n"
"  A status other than ok is printed on stderr.\n"
"\n"
"bench: publish many tasks and measure results per second and latency.\n"
"  -n N            tasks to publish (default 10000)\n"
"  -r RATE         tasks per second (default: as fast as possible)\n"
"  -c CONCURRENCY  at most this many tasks outstanding (default: no bound)\n"
"  -t TASK         task name (default echo)\n"
"  -P PAYLOAD      task body (default empty)\n"
"  --wait SEC      wait at most SEC after the last publish (default 60)\n"
"  --transient     publish non-persistent tasks (default persistent)\n"
"  --json          print one JSON object instead of the table\n"
"  --no-wait       only publish (e.g. to fill a queue): report the publish\n"
"                  rate once the broker has all N; no results are awaited\n"
"  --reply-to Q    with --no-wait: results go to queue Q (default: none\n"
"                  set, so taskd sends them to its reply.queue)\n"
"\n"
"status: every live node, its running tasks and counters (fleet control).\n"
"  --json          the nodes' replies as one JSON array\n"
"cancel: stop tasks by id on every node; ids not yet arrived are\n"
"  answered cancelled when they come, within the nodes' cancel TTL.\n"
"status and cancel:\n"
"  --timeout SEC   collect replies this long (default 2)\n"
"  --expect N      stop as soon as N nodes answered\n"
"  --exchange X    the control exchange (default taskd.control)\n"
"\n"
"exit status: 0 ok, 2 a task's status was not ok, 3 cancel: an id was\n"
"running on no node that answered, 1 client failure (cannot connect, task\n"
"refused, no result or no node in time).\n",
	    /* The URI holds "%2f": an argument, never part of the format. */
	    TASKCTL_DEFAULT_URI, TASKCTL_DEFAULT_QUEUE);
}

void
taskctl_usage_hint(void)
{
	fprintf(stderr,
	    "usage: taskctl [OPTIONS] submit [options] TASK [PAYLOAD|-]\n"
	    "       taskctl [OPTIONS] bench [options]\n"
	    "       taskctl [OPTIONS] status [--json] [--timeout SEC]\n"
	    "       taskctl [OPTIONS] cancel TASK_ID...\n"
	    "Try 'taskctl -h' for the options.\n");
}

bool
taskctl_common_option(struct taskctl *t, int opt)
{
	switch (opt) {
	case 'u':
		t->conn.uris = optarg;
		return true;
	case 'q':
		t->queue = optarg;
		return true;
	case TASKCTL_OPT_CACERT:
		t->conn.cacert = optarg;
		return true;
	case TASKCTL_OPT_CERT:
		t->conn.cert = optarg;
		return true;
	case TASKCTL_OPT_KEY:
		t->conn.key = optarg;
		return true;
	default:
		return false;
	}
}

int
taskctl_check(const struct taskctl *t)
{
	if ((t->conn.cert == NULL) != (t->conn.key == NULL)) {
		warnx("--cert and --key go together");
		return -1;
	}
	return 0;
}

static const struct {
	const char *name;
	int (*main)(struct taskctl *, int, char **);
} commands[] = {
	{ "submit", submit_main },
	{ "bench", bench_main },
	{ "status", status_main },
	{ "cancel", cancel_main },
};

int
main(int argc, char **argv)
{
	static const struct option longopts[] = {
		TASKCTL_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct taskctl t = {
		.conn = { .uris = TASKCTL_DEFAULT_URI },
		.queue = TASKCTL_DEFAULT_QUEUE,
	};
	int opt;

	/* "+": stop at the command name; its options are its own. */
	while ((opt = getopt_long(argc, argv, "+" TASKCTL_SHORTOPTS, longopts,
	    NULL)) != -1) {
		if (taskctl_common_option(&t, opt))
			continue;
		if (opt == 'h') {
			taskctl_usage();
			return EXIT_OK;
		}
		taskctl_usage_hint();
		return EXIT_CLIENT;
	}
	if (optind >= argc) {
		taskctl_usage_hint();
		return EXIT_CLIENT;
	}
	const char *cmd = argv[optind];
	for (size_t i = 0; i < sizeof(commands) / sizeof(commands[0]); i++)
		if (strcmp(cmd, commands[i].name) == 0)
			return commands[i].main(&t, argc - optind, argv + optind);
	warnx("unknown command '%s'", cmd);
	taskctl_usage_hint();
	return EXIT_CLIENT;
}
