/* taskd: a RabbitMQ task worker node.  main() is the life cycle. */
#include <fcntl.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "config.h"
#include "conf.h"
#include "confwarn.h"
#include "log.h"
#include "notify.h"
#include "registry.h"
#include "taskd.h"
#include "worker.h"

#define DEFAULT_CONF SYSCONFDIR "/taskd.conf"

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

int
main(int argc, char **argv)
{
	const char *path = DEFAULT_CONF;
	int foreground = 0, check = 0, level = -1, opt;

	/* The CPU pool starts its workers as this binary (worker.h). */
	if (worker_wanted())
		return worker_main();

	while ((opt = getopt(argc, argv, "c:ftl:Vh")) != -1) {
		switch (opt) {
		case 'c': path = optarg; break;
		case 'f': foreground = 1; break;
		case 't': check = 1; break;
		case 'l':
			level = log_level_parse(optarg);
			if (level < 0) {
				fprintf(stderr, "taskd: -l %s: not one of error, warn, info, debug\n", optarg);
				return 1;
			}
			break;
		case 'V': printf("taskd %s\n", PACKAGE_VERSION); return 0;
		case 'h': usage(stdout); return 0;
		default: usage(stderr); return 1;
		}
	}
	if (optind != argc) {
		usage(stderr);
		return 1;
	}

	log_init();
	char *errs = NULL;
	struct conf *conf = conf_load(path, &errs);
	struct registry *reg = conf ? registry_build(conf, &errs) : NULL;
	if (reg == NULL) {
		if (check)
			fputs(errs ? errs : "out of memory\n", stderr);
		else
			report(errs);
		free(errs);
		conf_free(conf);
		if (!check)
			log_error("%s: configuration refused, not starting", path);
		return 1;
	}
	log_set_level((enum log_level)(level >= 0 ? level : conf->log_level));

	if (check) {
		confwarn_print(conf, stderr);
		printf("%s: configuration OK (%zu tasks)\n", path, registry_count(reg));
		registry_free(reg);
		conf_free(conf);
		return 0;
	}

	if (!foreground && getenv("NOTIFY_SOCKET") == NULL && getenv("INVOCATION_ID") == NULL &&
	    detach() < 0) {
		log_error("cannot detach from the terminal");
		registry_free(reg);
		conf_free(conf);
		return 1;
	}
	char nerr[256];
	if (notify_init(nerr, sizeof(nerr)) < 0)
		log_warn("%s", nerr);
	return taskd_run(conf, reg);
}
