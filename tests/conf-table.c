/*
 * conf-table: what tests/check-conf-doc compares, out of C.
 *
 *   conf-table         the key table (conf_keys_print: one line per key)
 *   conf-table FILE    FILE loaded by conf_load, which must accept it; then
 *                      one line per setting FILE makes, "key TAB value TAB
 *                      line", values written as conf_keys_print writes
 *                      defaults, task members as "tasks.key"
 *
 * Exits 0, or 1 with the reason on standard error.
 */

#include <libconfig.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "conf.h"

static void
print_quoted(const char *s)
{
	putchar('"');
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			putchar('\\');
		putchar(*s);
	}
	putchar('"');
}

static void
print_value(const config_setting_t *s)
{
	switch (config_setting_type(s)) {
	case CONFIG_TYPE_INT:
	case CONFIG_TYPE_INT64:
		printf("%lld", (long long)config_setting_get_int64(s));
		break;
	case CONFIG_TYPE_FLOAT:
		printf("%.15g", config_setting_get_float(s));
		break;
	case CONFIG_TYPE_BOOL:
		fputs(config_setting_get_bool(s) ? "true" : "false", stdout);
		break;
	case CONFIG_TYPE_STRING:
		print_quoted(config_setting_get_string(s));
		break;
	case CONFIG_TYPE_ARRAY:
	case CONFIG_TYPE_LIST:
		fputs("[ ", stdout);
		for (int i = 0; i < config_setting_length(s); i++) {
			if (i > 0)
				fputs(", ", stdout);
			print_value(config_setting_get_elem(s, (unsigned)i));
		}
		fputs(" ]", stdout);
		break;
	default:
		fputs("?", stdout);
		break;
	}
}

/* A group's members under prefix.key; a list of groups (tasks) gives each
 * element's members under its own name. */
static void
print_setting(const char *prefix, const config_setting_t *s)
{
	const char *name = config_setting_name(s);
	char *key;

	if (asprintf(&key, "%s%s%s", prefix, prefix[0] != '\0' ? "." : "",
	    name != NULL ? name : "") < 0) {
		fprintf(stderr, "conf-table: out of memory\n");
		exit(1);
	}
	int t = config_setting_type(s);
	if (t == CONFIG_TYPE_GROUP) {
		for (int i = 0; i < config_setting_length(s); i++)
			print_setting(key, config_setting_get_elem(s, (unsigned)i));
	} else if (t == CONFIG_TYPE_LIST && config_setting_length(s) > 0 &&
	    config_setting_type(config_setting_get_elem(s, 0)) == CONFIG_TYPE_GROUP) {
		for (int i = 0; i < config_setting_length(s); i++) {
			const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
			for (int j = 0; j < config_setting_length(e); j++)
				print_setting(key, config_setting_get_elem(e, (unsigned)j));
		}
	} else {
		printf("%s\t", key);
		print_value(s);
		printf("\t%u\n", config_setting_source_line(s));
	}
	free(key);
}

static int
print_file(const char *path)
{
	char *errs = NULL;
	struct conf *c = conf_load(path, &errs);
	config_t cfg;

	if (c == NULL) {
		fprintf(stderr, "conf-table: taskd would refuse %s:\n%s", path,
		    errs != NULL ? errs : "out of memory\n");
		free(errs);
		return 1;
	}
	conf_free(c);
	config_init(&cfg);
	if (!config_read_file(&cfg, path)) {
		fprintf(stderr, "conf-table: %s: %s\n", path, config_error_text(&cfg));
		config_destroy(&cfg);
		return 1;
	}
	print_setting("", config_root_setting(&cfg));
	config_destroy(&cfg);
	return 0;
}

int
main(int argc, char **argv)
{
	int rc;

	if (argc > 2) {
		fprintf(stderr, "usage: conf-table [FILE]\n");
		return 1;
	}
	rc = argc == 2 ? print_file(argv[1]) : conf_keys_print(stdout) < 0;
	if (fflush(stdout) != 0 || ferror(stdout)) {
		fprintf(stderr, "conf-table: cannot write the output\n");
		return 1;
	}
	return rc;
}
