/*
 * cancel: stop tasks by id wherever they run, and have them answered
 * "cancelled" if they arrive later (design §8, docs/protocol.md).
 *
 * One request names every id.  Each node that answers says, per id, what
 * it found: running_io, running_cpu (stopped now), queued (stopped before
 * it ran), finished (too late), not_here.  Every node, and every node
 * started within the TTL, remembers the ids anyway.
 */

#include <err.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "fleet.h"

#define CANCEL_TIMEOUT_S 2.0

static const char *
str(json_t *o, const char *key)
{
	const char *s = json_string_value(json_object_get(o, key));
	return s != NULL ? s : "?";
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

static const char *
what(const char *found)
{
	if (strcmp(found, "running_io") == 0)
		return "stopped its running I/O task";
	if (strcmp(found, "running_cpu") == 0)
		return "stopped its running CPU task (worker killed and replaced)";
	if (strcmp(found, "queued") == 0)
		return "stopped it before it ran";
	if (strcmp(found, "finished") == 0)
		return "had already finished it";
	return NULL;
}

/* Prints what the nodes said of id; returns whether one stopped it. */
static bool
report(json_t *replies, const char *id, double *ttl)
{
	bool stopped = false, said = false;
	for (size_t i = 0; i < json_array_size(replies); i++) {
		json_t *r = json_array_get(replies, i);
		json_t *ids = json_object_get(r, "ids");
		if (json_is_number(json_object_get(r, "ttl_s")))
			*ttl = json_number_value(json_object_get(r, "ttl_s"));
		for (size_t j = 0; j < json_array_size(ids); j++) {
			json_t *e = json_array_get(ids, j);
			if (strcmp(str(e, "id"), id) != 0)
				continue;
			const char *w = what(str(e, "found"));
			if (w == NULL)
				continue;
			put("", id, 0, ": ");
			put("node ", str(r, "node"), 0, " ");
			printf("%s\n", w);
			said = true;
			if (strcmp(str(e, "found"), "finished") != 0)
				stopped = true;
		}
	}
	if (!said) {
		put("", id, 0, ": ");
		printf("running on none of the %zu nodes that answered\n",
		    json_array_size(replies));
	}
	return stopped;
}

int
cancel_main(struct taskctl *t, int argc, char **argv)
{
	static const struct option longopts[] = {
		TASKCTL_LONGOPTS,
		FLEET_LONGOPTS,
		{ NULL, 0, NULL, 0 },
	};
	struct fleet_request q = {
		.exchange = FLEET_DEFAULT_EXCHANGE,
		.type = "cancel",
		.timeout = CANCEL_TIMEOUT_S,
	};
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
		if (opt == 'h') {
			taskctl_usage();
			return EXIT_OK;
		}
		taskctl_usage_hint();
		return EXIT_CLIENT;
	}
	int nids = argc - optind;
	if (nids < 1 || nids > 1000) {
		warnx("cancel wants 1 to 1000 task ids");
		taskctl_usage_hint();
		return EXIT_CLIENT;
	}
	if (taskctl_check(t) < 0)
		return EXIT_CLIENT;
	for (int i = optind; i < argc; i++)
		if (argv[i][0] == '\0' || strlen(argv[i]) > 255) {
			warnx("a task id is 1 to 255 bytes");
			return EXIT_CLIENT;
		}
	if (cli_signals(false) < 0) {
		warn("sigaction");
		return EXIT_CLIENT;
	}

	json_t *ids = json_array(), *body = json_object();
	for (int i = optind; ids != NULL && i < argc; i++)
		json_array_append_new(ids, json_string(argv[i]));
	char *text = NULL;
	if (ids != NULL && body != NULL && json_object_set(body, "ids", ids) == 0)
		text = json_dumps(body, JSON_COMPACT);
	json_decref(ids);
	json_decref(body);
	if (text == NULL) {
		warnx("out of memory (or an id that is not UTF-8)");
		return EXIT_CLIENT;
	}
	q.body = text;

	struct fleet_answer a;
	int rc = fleet_ask(t, &q, &a);
	free(text);
	if (rc < 0)
		return EXIT_CLIENT;
	if (!a.routed && json_array_size(a.replies) == 0) {
		warnx("the cancel reached no node (nothing is bound to '%s')", q.exchange);
		fleet_answer_free(&a);
		return EXIT_CLIENT;
	}
	double ttl = 0;
	bool all = true;
	for (int i = optind; i < argc; i++)
		if (!report(a.replies, argv[i], &ttl))
			all = false;
	if (!all) {
		if (ttl > 0)
			printf("each node remembers the ids for %.0f s: a task arriving "
			    "by then is answered cancelled without running\n", ttl);
		else
			printf("the nodes remember the ids for their control.cancel_ttl\n");
	}
	if (a.bad > 0)
		warnx("%zu replies were not JSON objects", a.bad);
	/* Design §8: 0 once the request reached the fleet; whether a node
	 * stopped it is what the output says. */
	int status = EXIT_OK;
	if (fflush(stdout) == EOF) {
		warn("writing the answer");
		status = EXIT_CLIENT;
	}
	fleet_answer_free(&a);
	return status;
}
