/*
 * status: every live node, what it runs, and its counters (design §8).
 *
 * The table shows one line per node, then its running tasks indented
 * under it; --json prints the replies as one JSON array, sorted by node
 * id, each object as the node sent it (docs/protocol.md lists the keys).
 */

#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fleet.h"

#define STATUS_TIMEOUT_S 2.0

enum { OPT_JSON = TASKCTL_OPT_COMMAND };

static const char *
str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s != NULL ? s : "-";
}

static double
num(json_t *o, const char *key)
{
	return json_number_value(json_object_get(o, key));
}

static int
by_node(const void *a, const void *b)
{
	json_t *x = *(json_t *const *)a, *y = *(json_t *const *)b;
	return strcmp(str(x, "node"), str(y, "node"));
}

/* Prints text from a node, padded to width, control bytes made harmless;
 * prefix and suffix are ours. */
static void
put(const char *prefix, const char *s, int width, const char *suffix)
{
	struct buf b = { 0 };
	if (cli_printable(&b, amqp_cstring_bytes((char *)s)) < 0)
		return;
	printf("%s%-*s%s", prefix, width, b.data ? b.data : "", suffix);
	buf_free(&b);
}

static void
print_table(json_t **v, size_t n)
{
	printf("%-28s %-8s %9s %-22s %5s %4s %9s %8s %7s %8s %9s\n", "NODE", "VERSION",
	    "UPTIME", "BROKER", "IO", "CPU", "WORKERS", "OK", "FAILED", "REJECTED",
	    "CANCELLED");
	for (size_t i = 0; i < n; i++) {
		json_t *o = v[i], *pool = json_object_get(o, "pool"),
		    *tot = json_object_get(o, "totals");
		char workers[32];
		snprintf(workers, sizeof(workers), "%.0f/%.0f", num(pool, "busy"),
		    num(pool, "size"));
		put("", str(o, "node"), 28, " ");
		put("", str(o, "version"), 8, " ");
		printf("%8.0fs ", num(o, "uptime_s"));
		put("", str(o, "broker"), 22, " ");
		printf("%5.0f %4.0f %9s %8.0f %7.0f %8.0f %9.0f\n", num(o, "io_running"),
		    num(o, "cpu_running"), workers, num(tot, "ok"), num(tot, "failed"),
		    num(tot, "rejected"), num(tot, "cancelled"));
		json_t *tasks = json_object_get(o, "tasks");
		for (size_t j = 0; j < json_array_size(tasks); j++) {
			json_t *tk = json_array_get(tasks, j);
			put("    ", str(tk, "id"), 40, " ");
			put("", str(tk, "task"), 16, " ");
			put("", str(tk, "kind"), 3, " ");
			printf("%10.3fs\n", num(tk, "seconds"));
		}
	}
}

int
status_main(struct taskctl *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		TASKCTL_LONGOPTS,
		FLEET_LONGOPTS,
		{ "json", no_argument, NULL, OPT_JSON },
		{ NULL, 0, NULL, 0 },
	};
	struct fleet_request q = {
		.exchange = FLEET_DEFAULT_EXCHANGE,
		.type = "status",
		.body = "",
		.timeout = STATUS_TIMEOUT_S,
	};
	bool json = false;
	int opt;

	optind = 0;   /* GNU getopt: start over on the command's arguments */
	while ((opt = getopt_long(argc, argv, TASKCTL_SHORTOPTS, longopts, NULL)) != -1) {
		if (taskctl_common_option(t, opt))
			continue;
		int f = fleet_option(&q, opt);
		if (f < 0)
			return EXIT_CLIENT;
		if (f > 0)
			continue;
		switch (opt) {
		case OPT_JSON:
			json = true;
			break;
		case 'h':
			taskctl_usage();
			return EXIT_OK;
		default:
			taskctl_usage_hint();
			return EXIT_CLIENT;
		}
	}
	if (optind != argc) {
		taskctl_usage_hint();
		return EXIT_CLIENT;
	}
	if (taskctl_check(t) < 0)
		return EXIT_CLIENT;
	if (cli_signals(false) < 0) {
		warn("sigaction");
		return EXIT_CLIENT;
	}

	struct fleet_answer a;
	if (fleet_ask(t, &q, &a) < 0)
		return EXIT_CLIENT;
	size_t n = json_array_size(a.replies);
	json_t **v = n > 0 ? calloc(n, sizeof(*v)) : NULL;
	if (n > 0 && v == NULL) {
		warnx("out of memory");
		fleet_answer_free(&a);
		return EXIT_CLIENT;
	}
	for (size_t i = 0; i < n; i++)
		v[i] = json_array_get(a.replies, i);
	if (n > 0)
		qsort(v, n, sizeof(*v), by_node);
	int status = EXIT_OK;
	if (json) {
		json_t *sorted = json_array();
		for (size_t i = 0; sorted != NULL && i < n; i++)
			json_array_append(sorted, v[i]);
		char *text = sorted ? json_dumps(sorted, JSON_COMPACT) : NULL;
		if (text == NULL) {
			warnx("out of memory");
			status = EXIT_CLIENT;
		} else {
			puts(text);
		}
		free(text);
		json_decref(sorted);
	} else {
		print_table(v, n);
	}
	if (a.bad > 0)
		warnx("%zu replies were not JSON objects", a.bad);
	if (n == 0) {
		warnx("no node answered within %.1f s", q.timeout);
		status = EXIT_CLIENT;
	} else if (q.expect > 0 && n < q.expect) {
		warnx("%zu of %u expected nodes answered within %.1f s", n, q.expect,
		    q.timeout);
		status = EXIT_CLIENT;
	}
	if (fflush(stdout) == EOF) {
		warn("writing the status");
		status = EXIT_CLIENT;
	}
	free(v);
	fleet_answer_free(&a);
	return status;
}
