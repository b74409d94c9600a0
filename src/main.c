/* taskd: a RabbitMQ task worker node.  main() is the life cycle: options,
 * configuration (or its test, -t), start, run, and the teardown in the
 * reverse order. */
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "conf.h"
#include "confwarn.h"
#include "log.h"
#include "notify.h"
#include "registry.h"
#include "taskd.h"
#include "worker.h"

#define DEFAULT_CONF SYSCONFDIR "/taskd.conf"

struct options {
	const char *path;
	bool foreground;  /* -f */
	bool check;       /* -t */
	int level;        /* -l, or -1: log.level of the file */
};

static void
usage(FILE *out)
{
	fprintf(out,
	    "usage: taskd [-c FILE] [-f] [-t] [-l LEVEL] [-V] [-h]\n"
	    "  -c FILE   configuration file (default %s)\n"
	    "  -f        stay in the foreground, log to stderr\n"
	    "  -t        check the configuration and exit 0 (ok) or 1\n"
	    "  -l LEVEL  log level: error, warn, info, debug\n"
	    "  -V        print the version\n"
	    "  -h        this help\n", DEFAULT_CONF);
}

/* Fills o from the command line.  Returns 0 to go on, or -1 with *status
 * the exit status when there is nothing more to do (-V, -h, a mistake). */
static int
parse_options(struct options *o, int argc, char **argv, int *status)
{
	int opt;

	*o = (struct options){ .path = DEFAULT_CONF, .level = -1 };
	*status = 1;
	while ((opt = getopt(argc, argv, "c:ftl:Vh")) != -1) {
		switch (opt) {
		case 'c': o->path = optarg; break;
		case 'f': o->foreground = true; break;
		case 't': o->check = true; break;
		case 'l':
			o->level = log_level_parse(optarg);
			if (o->level < 0) {
				fprintf(stderr, "taskd: -l %s: not one of error, warn, info, debug\n", optarg);
				return -1;
			}
			break;
		case 'V': printf("taskd %s\n", PACKAGE_VERSION); *status = 0; return -1;
		case 'h': usage(stdout); *status = 0; return -1;
		default: usage(stderr); return -1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return -1;
	}
	return 0;
}

/* Prints each "file:line: key: problem" line of errs through the log. */
static void
report(const char *errs)
{
	const char *p = errs;
	while (p != NULL && *p != '\0') {
		const char *nl = strchr(p, '\n');
		int n = nl ? (int)(nl - p) : (int)strlen(p);
		if (n > 0)
			log_error("%.*s", n, p);
		p = nl ? nl + 1 : NULL;
	}
}

/* The configuration and its task table, both or neither.  A refused file
 * is said once: as it is to stderr under -t, through the log otherwise. */
static int
load_config(const struct options *o, struct conf **conf, struct registry **reg)
{
	char *errs = NULL;

	*conf = conf_load(o->path, &errs);
	*reg = *conf ? registry_build(*conf, &errs) : NULL;
	if (*reg == NULL) {
		if (o->check)
			fputs(errs ? errs : "out of memory\n", stderr);
		else
			report(errs);
		free(errs);
		conf_free(*conf);
		*conf = NULL;
		if (!o->check)
			log_error("%s: configuration refused, not starting", o->path);
		return -1;
	}
	log_set_level((enum log_level)(o->level >= 0 ? o->level : (*conf)->log_level));
	return 0;
}

/* taskd -t on a file that loaded: its warnings, then the verdict. */
static int
test_config(const struct options *o, const struct conf *conf, const struct registry *reg)
{
	confwarn_print(conf, stderr);
	printf("%s: configuration OK (%zu tasks)\n", o->path, registry_count(reg));
	return 0;
}

/* Without -f and outside systemd: detach from the terminal. */
static int
detach(void)
{
	pid_t pid = fork();
	if (pid < 0)
		return -1;
	if (pid > 0)
		_exit(0);
	if (setsid() < 0)
		return -1;
	int fd = open("/dev/null", O_RDWR);
	if (fd < 0)
		return -1;
	dup2(fd, STDIN_FILENO);
	dup2(fd, STDOUT_FILENO);
	if (fd > STDERR_FILENO)
		close(fd);
	return chdir("/");
}

/* The process becomes the service: detached unless told otherwise, and
 * talking to the service manager when there is one (notify_close() at the
 * end of main). */
static int
start(const struct options *o)
{
	if (!o->foreground && getenv("NOTIFY_SOCKET") == NULL && getenv("INVOCATION_ID") == NULL &&
	    detach() < 0) {
		log_error("cannot detach from the terminal");
		return -1;
	}
	char nerr[256];
	if (notify_init(nerr, sizeof(nerr)) < 0)
		log_warn("%s", nerr);
	return 0;
}

int
main(int argc, char **argv)
{
	struct options o;
	struct conf *conf = NULL;
	struct registry *reg = NULL;
	struct taskd *t = NULL;
	int status;

	/* The CPU pool starts its workers as this binary (worker.h). */
	if (worker_wanted())
		return worker_main();

	if (parse_options(&o, argc, argv, &status) < 0)
		return status;
	log_init();
	if (load_config(&o, &conf, &reg) < 0)
		return 1;
	if (o.check) {
		status = test_config(&o, conf, reg);
		goto out_config;
	}

	status = 1;
	if (start(&o) < 0)
		goto out_config;
	t = taskd_start(conf, reg);
	if (t == NULL)
		goto out_notify;
	/* The daemon's from here on: a reload replaces them. */
	conf = NULL;
	reg = NULL;

	status = taskd_run(t);

	taskd_free(t);
out_notify:
	notify_close();
out_config:
	registry_free(reg);
	conf_free(conf);
	return status;
}
