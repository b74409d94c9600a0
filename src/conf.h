/*
 * conf: /etc/taskd.conf (libconfig syntax) turned into a validated struct.
 *
 * Life cycle: conf_load() parses and validates the whole file and either
 * returns a complete struct conf or NULL with every problem it found, each
 * as "file:line: key: what is wrong".  Nothing is half-applied: the daemon
 * swaps an old conf for a new one only when the new one loaded (SIGHUP), and
 * `taskd -t` runs the very same function.
 *
 * A struct conf is immutable after conf_load() and freed with conf_free().
 */
#ifndef TASKD_CONF_H
#define TASKD_CONF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>

#include "uri.h"

enum conf_kind {
	CONF_KIND_DEFAULT = 0, /* not given: the handler's own kind */
	CONF_KIND_IO,
	CONF_KIND_CPU,
};

enum conf_queue_type { CONF_QUEUE_CLASSIC, CONF_QUEUE_QUORUM };

struct conf_task {
	char *name;          /* what clients ask for (unique in the file) */
	char *handler;       /* built-in/plugin handler, or NULL when exec is set */
	char **exec;         /* NULL-terminated argv, or NULL */
	enum conf_kind kind;
	double timeout;      /* seconds; limits.timeout when not given */
	int retries;         /* re-runs after a crash or timeout; default 0 */
	char **allow;        /* NULL-terminated URL prefixes (http), or NULL */
	size_t nallow;
	bool follow_redirects; /* http: follow 3xx; default false */
	size_t max_response; /* http: response body cap; 0 = the default 1 MiB */
	int line;            /* where the entry starts, for later messages */
};

struct conf {
	char *path;

	/* broker */
	char *broker_uri;         /* the first node as written (password masked by caller) */
	struct uri broker;        /* the first node, parsed */
	/* broker.uri: one node (a string) or the nodes of one cluster (an
	 * array); every node has the same scheme, and password_file applies
	 * to each. */
	char **broker_uris;       /* NULL-terminated, as written */
	struct uri *nodes;        /* parsed, nnodes of them */
	size_t nnodes;
	int heartbeat;            /* seconds, 0 = off; default 30 */
	int prefetch;             /* 0 = derived from capacity; default 0 */
	double connect_timeout;   /* seconds, socket connect + AMQP handshake; default 10 */
	double reconnect_max;     /* seconds, backoff cap; default 30 */
	char *password_file;      /* NULL or a file whose first line is the password */
	char *cacert;             /* NULL or a CA bundle for amqps (default: system paths) */
	char *cert;               /* NULL or the client certificate (PEM), amqps only */
	char *key;                /* its private key (PEM); set with cert or not at all */
	int max_unconfirmed;      /* results published but not yet confirmed; default 1000 */
	/* The largest message body the broker takes (RabbitMQ's
	 * max_message_size, which AMQP 0-9-1 does not advertise); default
	 * 128 MiB, RabbitMQ's own default. */
	size_t max_message_size;

	/* queue */
	char *queue_name;         /* default "distributed_tasks" */
	bool queue_durable;       /* default true */
	enum conf_queue_type queue_type; /* default classic */
	char *default_task;       /* "" = none */

	/* reply */
	char *reply_queue;        /* default "distributed_results"; "" = no reply */

	int io_max_concurrency;   /* default 10000, 1..1000000 */
	size_t io_stack_size;     /* coroutine stack bytes; default 64 KiB */
	int cpu_workers;          /* default 0 = usable cores, 0..1024 */
	int cpu_max_tasks_per_child; /* recycle a worker after this many; 0 = never */
	size_t cpu_max_memory;    /* recycle a worker above this RSS (bytes); 0 = never */
	char **plugins;           /* NULL-terminated absolute .so paths, or NULL */
	int plugins_line;         /* where `plugins` is written, for messages */

	double timeout;           /* limits.timeout, default 300 */
	size_t max_payload;       /* limits.max_payload, default 16 MiB */
	int max_deliveries;       /* limits.max_deliveries, default 5; 0 = no limit */

	int log_level;            /* enum log_level; default info */
	double shutdown_grace;    /* shutdown.grace seconds, default 30 */
	char *metrics_listen;     /* metrics.listen "HOST:PORT"; default "" = off */

	/* control (fleet control, docs/protocol.md) */
	char *control_exchange;   /* default "taskd.control"; "" = off */
	double cancel_ttl;        /* control.cancel_ttl seconds, default 3600 */

	struct conf_task *tasks;
	size_t ntasks;
};

/* Loads and validates path.  On success returns the conf and leaves errs
 * untouched.  On failure returns NULL and sets *errs to a malloc'd text of
 * one or more lines, each "file:line: key: what is wrong" (the caller frees
 * it).  Validation covers types, ranges, required keys, unknown keys,
 * duplicate task names, handler-or-exec, and that exec[0] is an absolute path
 * to an executable file.  Handler names are checked by the caller against
 * the handler registry (conf knows no handlers). */
struct conf *conf_load(const char *path, char **errs);

/* Finds a task by name, or NULL. */
const struct conf_task *conf_task_find(const struct conf *c, const char *name);

void conf_free(struct conf *c);

/* Writes the key table to f, one line per key: "group.key" (task keys as
 * "tasks.key"), type, min, max, "open" when min itself is out of range
 * (else "closed"), the default as taskd.conf(5) writes it ("-" for none) and an
 * enum's words, separated by tabs.  For the check that the manual and the
 * shipped file agree with the table.  Returns 0, or -1 on a write error. */
int conf_keys_print(FILE *f);

#endif
