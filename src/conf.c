#include "conf.h"

#include <errno.h>
#include <libconfig.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "buf.h"
#include "httppolicy.h"
#include "metrics.h" /* metrics_parse_listen only */
#include "tlsfiles.h"
#include "log.h"   /* enum log_level only: conf reports, it never logs */

#define CONF_DEFAULT_URI "amqp://guest:guest@127.0.0.1:5672/%2f"
/* AMQP short strings (queue names) and our task names share this bound. */
#define CONF_NAME_MAX 255
#define CONF_PATH_MAX 4096

/*
 * The loader walks the parsed file once, checking every setting against a
 * key table, and keeps going after a problem: an operator fixing a file
 * wants every mistake in one `taskd -t`, not one per run.  A setting that
 * fails validation leaves its default in place, so later cross-checks see a
 * sane value and do not pile follow-on errors onto the real one.
 */

/* One problem, kept with its line so the report reads in file order even
 * though cross-checks run after the walk. */
struct problem {
	unsigned line;
	size_t seq;
	char *text;
};

struct loader {
	const char *path;
	struct conf *c;
	struct problem *v;
	size_t n, cap;
	bool nomem;
};

enum key_type {
	KEY_INT,     /* int field */
	KEY_SIZE,    /* size_t field, read as int64 */
	KEY_DOUBLE,  /* double field; integers accepted */
	KEY_BOOL,    /* bool field */
	KEY_STRING,  /* char * field, owned; min/max bound the length */
	KEY_NAME,    /* KEY_STRING restricted to task-name characters */
	KEY_PATH,    /* KEY_STRING holding an absolute path */
	KEY_ENUM,    /* int-sized field; the index of the word in words[] */
	KEY_STRINGS, /* char ** field (NULL-terminated): a string, or an array
	              * of them; min bounds the count, max each length */
};

/*
 * One row per key, and the row is the key's whole description: its type,
 * its range and its default.  conf_new() stores every row's default before
 * the file is read, and conf_keys_print() shows the rows to the check that
 * taskd.conf(5) and the shipped taskd.conf agree with them.
 */
struct key {
	const char *name;
	enum key_type type;
	double min, max;
	bool min_open;              /* min itself is out of range */
	const char *const *words;   /* KEY_ENUM; NULL entries are not words */
	size_t nwords;
	size_t off;                 /* into struct conf or struct conf_task */
	/* The default: def for numbers, bools (0 or 1) and enums (the word's
	 * index); def_str for strings, and for KEY_STRINGS the one element of
	 * the default list.  A NULL def_str leaves the field NULL (none). */
	double def;
	const char *def_str;
	/* The default as taskd.conf(5) writes it, for the two task keys whose
	 * stored default is not what applies (see their rows). */
	const char *def_doc;
};

struct group {
	const char *name;
	const struct key *keys;
};

_Static_assert(sizeof(enum conf_queue_type) == sizeof(int), "KEY_ENUM stores an int");
_Static_assert(sizeof(enum conf_kind) == sizeof(int), "KEY_ENUM stores an int");

static const char *const queue_types[] = {
	[CONF_QUEUE_CLASSIC] = "classic",
	[CONF_QUEUE_QUORUM] = "quorum",
};
static const char *const log_levels[] = {
	[LOG_LEVEL_ERROR] = "error",
	[LOG_LEVEL_WARN] = "warn",
	[LOG_LEVEL_INFO] = "info",
	[LOG_LEVEL_DEBUG] = "debug",
};
static const char *const task_kinds[] = {
	[CONF_KIND_IO] = "io",
	[CONF_KIND_CPU] = "cpu",
};

#define NWORDS(a) (sizeof(a) / sizeof((a)[0]))
#define WORDS(a) .words = (a), .nwords = NWORDS(a)
#define C(f) .off = offsetof(struct conf, f)
#define T(f) .off = offsetof(struct conf_task, f)

static const struct key broker_keys[] = {
	{ .name = "uri", .type = KEY_STRINGS, .min = 1, .max = CONF_PATH_MAX,
	  .def_str = CONF_DEFAULT_URI, C(broker_uris) },
	{ .name = "heartbeat", .type = KEY_INT, .min = 0, .max = 3600,
	  .def = 30, C(heartbeat) },
	{ .name = "prefetch", .type = KEY_INT, .min = 0, .max = 65535,
	  .def = 0, C(prefetch) },
	{ .name = "connect_timeout", .type = KEY_DOUBLE, .min = 0.1, .max = 300,
	  .def = 10, C(connect_timeout) },
	{ .name = "reconnect_max", .type = KEY_DOUBLE, .min = 1, .max = 3600,
	  .def = 30, C(reconnect_max) },
	{ .name = "password_file", .type = KEY_PATH, .min = 1, .max = CONF_PATH_MAX,
	  C(password_file) },
	{ .name = "cacert", .type = KEY_PATH, .min = 1, .max = CONF_PATH_MAX,
	  C(cacert) },
	{ .name = "cert", .type = KEY_PATH, .min = 1, .max = CONF_PATH_MAX,
	  C(cert) },
	{ .name = "key", .type = KEY_PATH, .min = 1, .max = CONF_PATH_MAX,
	  C(key) },
	{ .name = "max_unconfirmed", .type = KEY_INT, .min = 1, .max = 100000,
	  .def = 1000, C(max_unconfirmed) },
	/* RabbitMQ's own ceiling for max_message_size is 512 MiB, and its
	 * default 128 MiB. */
	{ .name = "max_message_size", .type = KEY_SIZE, .min = 1, .max = 536870912,
	  .def = 134217728, C(max_message_size) },
	{ .name = NULL },
};
static const struct key queue_keys[] = {
	{ .name = "name", .type = KEY_STRING, .min = 1, .max = CONF_NAME_MAX,
	  .def_str = "distributed_tasks", C(queue_name) },
	{ .name = "durable", .type = KEY_BOOL, .def = true, C(queue_durable) },
	{ .name = "type", .type = KEY_ENUM, WORDS(queue_types),
	  .def = CONF_QUEUE_CLASSIC, C(queue_type) },
	{ .name = "default_task", .type = KEY_STRING, .min = 0, .max = CONF_NAME_MAX,
	  .def_str = "", C(default_task) },
	{ .name = NULL },
};
static const struct key reply_keys[] = {
	{ .name = "queue", .type = KEY_STRING, .min = 0, .max = CONF_NAME_MAX,
	  .def_str = "distributed_results", C(reply_queue) },
	{ .name = NULL },
};
static const struct key io_keys[] = {
	{ .name = "max_concurrency", .type = KEY_INT, .min = 1, .max = 1000000,
	  .def = 10000, C(io_max_concurrency) },
	{ .name = "stack_size", .type = KEY_SIZE, .min = 16384, .max = 8388608,
	  .def = 65536, C(io_stack_size) },
	{ .name = NULL },
};
static const struct key cpu_keys[] = {
	/* 0 means the usable cores, counted where the pool is sized
	 * (taskd.c, cpus.c): conf only reads the file. */
	{ .name = "workers", .type = KEY_INT, .min = 0, .max = 1024,
	  .def = 0, C(cpu_workers) },
	{ .name = "max_tasks_per_child", .type = KEY_INT, .min = 0, .max = 1000000000,
	  .def = 0, C(cpu_max_tasks_per_child) },
	{ .name = "max_memory", .type = KEY_SIZE, .min = 0, .max = 1099511627776.0,
	  .def = 0, C(cpu_max_memory) },
	{ .name = NULL },
};
static const struct key limits_keys[] = {
	{ .name = "timeout", .type = KEY_DOUBLE, .min = 0, .max = 86400,
	  .min_open = true, .def = 300, C(timeout) },
	{ .name = "max_payload", .type = KEY_SIZE, .min = 1, .max = 1073741824,
	  .def = 16777216, C(max_payload) },
	{ .name = "max_deliveries", .type = KEY_INT, .min = 0, .max = 10000,
	  .def = 5, C(max_deliveries) },
	{ .name = NULL },
};
static const struct key log_keys[] = {
	{ .name = "level", .type = KEY_ENUM, WORDS(log_levels),
	  .def = LOG_LEVEL_INFO, C(log_level) },
	{ .name = NULL },
};
static const struct key shutdown_keys[] = {
	{ .name = "grace", .type = KEY_DOUBLE, .min = 0, .max = 3600,
	  .def = 30, C(shutdown_grace) },
	{ .name = NULL },
};
static const struct key metrics_keys[] = {
	/* Off unless asked for: a port is the machine's, shared by every
	 * taskd on it (docs/decisions.md). */
	{ .name = "listen", .type = KEY_STRING, .min = 0, .max = CONF_NAME_MAX,
	  .def_str = "", C(metrics_listen) },
	{ .name = NULL },
};

static const struct key control_keys[] = {
	{ .name = "exchange", .type = KEY_STRING, .min = 0, .max = CONF_NAME_MAX,
	  .def_str = "taskd.control", C(control_exchange) },
	{ .name = "cancel_ttl", .type = KEY_DOUBLE, .min = 1, .max = 604800,
	  .def = 3600, C(cancel_ttl) },
	{ .name = NULL },
};
/* name, exec and allow need more than a table row; see load_task(). */
static const struct key task_keys[] = {
	{ .name = "handler", .type = KEY_NAME, .min = 1, .max = CONF_NAME_MAX,
	  T(handler) },
	/* No default of the task's own: the handler's kind, or io for exec
	 * (load_task). */
	{ .name = "kind", .type = KEY_ENUM, WORDS(task_kinds),
	  .def = CONF_KIND_DEFAULT, T(kind) },
	/* The default is limits.timeout, which load_task copies in: it is
	 * known only once the file's groups are read. */
	{ .name = "timeout", .type = KEY_DOUBLE, .min = 0, .max = 86400,
	  .min_open = true, .def_doc = "limits.timeout", T(timeout) },
	{ .name = "retries", .type = KEY_INT, .min = 0, .max = 100,
	  .def = 0, T(retries) },
	{ .name = "follow_redirects", .type = KEY_BOOL, .def = false,
	  T(follow_redirects) },
	/* 0 stores "not given", and the http handler's own 1 MiB applies
	 * (HANDLER_ARGS_MAX_RESPONSE in handler_args.c): conf knows no
	 * handlers. */
	{ .name = "max_response", .type = KEY_SIZE, .min = 1, .max = 1073741824,
	  .def = 0, .def_doc = "1048576", T(max_response) },
	{ .name = NULL },
};
static const struct group groups[] = {
	{ "broker", broker_keys },
	{ "queue", queue_keys },
	{ "reply", reply_keys },
	{ "io", io_keys },
	{ "cpu", cpu_keys },
	{ "limits", limits_keys },
	{ "log", log_keys },
	{ "shutdown", shutdown_keys },
	{ "metrics", metrics_keys },
	{ "control", control_keys },
	{ NULL, NULL },
};

/* ---- problems ---------------------------------------------------------- */

static void
add_problem(struct loader *l, const char *file, unsigned line,
    const char *fmt, va_list ap) __attribute__((format(printf, 4, 0)));

static void
add_problem(struct loader *l, const char *file, unsigned line,
    const char *fmt, va_list ap)
{
	char *msg = NULL;
	struct buf b = { 0 };

	if (vasprintf(&msg, fmt, ap) < 0) {
		l->nomem = true;
		return;
	}
	int rc = line > 0 ? buf_printf(&b, "%s:%u: %s", file, line, msg) :
	    buf_printf(&b, "%s: %s", file, msg);
	free(msg);
	if (rc < 0) {
		buf_free(&b);
		l->nomem = true;
		return;
	}
	/* Values from the file are echoed in messages; a control character
	 * in one must not split or forge a log line. */
	for (size_t i = 0; i < b.len; i++)
		if ((unsigned char)b.data[i] < 0x20 || b.data[i] == 0x7f)
			b.data[i] = '?';

	if (l->n == l->cap) {
		size_t cap = l->cap ? l->cap * 2 : 8;
		struct problem *v = realloc(l->v, cap * sizeof(*v));
		if (v == NULL) {
			buf_free(&b);
			l->nomem = true;
			return;
		}
		l->v = v;
		l->cap = cap;
	}
	l->v[l->n] = (struct problem){ line, l->n, buf_steal(&b, NULL) };
	if (l->v[l->n].text == NULL) {
		l->nomem = true;
		return;
	}
	l->n++;
}

/* Records "file:line: <fmt>" for setting s; s NULL means no line (a key
 * that was never written, e.g. a default that turned out inconsistent). */
static void
problem(struct loader *l, const config_setting_t *s, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static void
problem(struct loader *l, const config_setting_t *s, const char *fmt, ...)
{
	const char *file = s != NULL ? config_setting_source_file(s) : NULL;
	unsigned line = s != NULL ? config_setting_source_line(s) : 0;
	va_list ap;

	va_start(ap, fmt);
	add_problem(l, file != NULL ? file : l->path, line, fmt, ap);
	va_end(ap);
}

static void
problem_at(struct loader *l, const char *file, unsigned line, const char *fmt, ...)
	__attribute__((format(printf, 4, 5)));

static void
problem_at(struct loader *l, const char *file, unsigned line, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	add_problem(l, file != NULL ? file : l->path, line, fmt, ap);
	va_end(ap);
}

static int
problem_cmp(const void *a, const void *b)
{
	const struct problem *x = a, *y = b;

	if (x->line != y->line)
		return x->line < y->line ? -1 : 1;
	return x->seq < y->seq ? -1 : x->seq > y->seq;
}

/* All problems, in file order, one per line; NULL when out of memory. */
static char *
problems_text(struct loader *l)
{
	struct buf b = { 0 };

	qsort(l->v, l->n, sizeof(*l->v), problem_cmp);
	for (size_t i = 0; i < l->n; i++)
		if (buf_printf(&b, "%s\n", l->v[i].text) < 0)
			l->nomem = true;
	if (l->nomem) {
		buf_reset(&b);
		if (buf_printf(&b, "%s: out of memory while loading the "
		    "configuration\n", l->path) < 0) {
			buf_free(&b);
			return NULL;
		}
	}
	return buf_steal(&b, NULL);
}

static void
problems_free(struct loader *l)
{
	for (size_t i = 0; i < l->n; i++)
		free(l->v[i].text);
	free(l->v);
}

/* ---- values ------------------------------------------------------------- */

static char *
dup_str(struct loader *l, const char *s)
{
	char *d = strdup(s);
	if (d == NULL)
		l->nomem = true;
	return d;
}

static bool
valid_name(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > CONF_NAME_MAX)
		return false;
	return strspn(s, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
	    "0123456789_.:-") == n;
}

static bool
is_integer(const config_setting_t *s)
{
	int t = config_setting_type(s);
	return t == CONFIG_TYPE_INT || t == CONFIG_TYPE_INT64;
}

/* Appends "a", "b" or "c" for an enum key's words. */
static int
put_words(struct buf *b, const struct key *k)
{
	size_t left = 0;

	for (size_t i = 0; i < k->nwords; i++)
		if (k->words[i] != NULL)
			left++;
	for (size_t i = 0; i < k->nwords; i++) {
		if (k->words[i] == NULL)
			continue;
		left--;
		if (buf_printf(b, "\"%s\"%s", k->words[i],
		    left > 1 ? ", " : left == 1 ? " or " : "") < 0)
			return -1;
	}
	return 0;
}

static char **load_strings(struct loader *l, const config_setting_t *s,
    const char *key, size_t *count);
static void free_strings(char **v);

/* KEY_STRINGS: "x" or [ "x", "y" ]. */
static void
load_string_list(struct loader *l, const config_setting_t *s,
    const char *prefix, const struct key *k, char ***field)
{
	struct buf key = { 0 };
	char **v = NULL;
	size_t n = 0;
	int t = config_setting_type(s);

	if (buf_printf(&key, "%s.%s", prefix, k->name) < 0) {
		l->nomem = true;
		return;
	}
	if (t == CONFIG_TYPE_STRING) {
		if ((v = calloc(2, sizeof(*v))) == NULL ||
		    (v[0] = dup_str(l, config_setting_get_string(s))) == NULL) {
			free(v);
			l->nomem = true;
			goto out;
		}
		n = 1;
	} else if (t == CONFIG_TYPE_ARRAY || t == CONFIG_TYPE_LIST) {
		if ((v = load_strings(l, s, key.data, &n)) == NULL)
			goto out;
	} else {
		problem(l, s, "%s: must be a string or an array of strings: "
		    "\"...\" or [ \"...\", \"...\" ]", key.data);
		goto out;
	}
	if (n < k->min) {
		problem(l, s, "%s: must not be an empty list", key.data);
		goto bad;
	}
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = t == CONFIG_TYPE_STRING ? s :
		    config_setting_get_elem(s, (unsigned)i);
		size_t len = strlen(v[i]);
		if (len == 0 || len > k->max) {
			const char *why = len == 0 ? "must not be empty" :
			    "is too long";
			if (t == CONFIG_TYPE_STRING)
				problem(l, e, "%s: %s", key.data, why);
			else
				problem(l, e, "%s[%zu]: %s", key.data, i, why);
			goto bad;
		}
	}
	free_strings(*field);
	*field = v;
	goto out;
bad:
	free_strings(v);
out:
	buf_free(&key);
}

/* Checks setting s against key k and stores it at base + k->off.  prefix
 * is the dotted path of the enclosing group ("broker", "tasks[2]"). */
static void
load_key(struct loader *l, const config_setting_t *s, const char *prefix,
    const struct key *k, void *base)
{
	void *field = (char *)base + k->off;
	const char *name = k->name;

	switch (k->type) {
	case KEY_INT:
	case KEY_SIZE: {
		if (!is_integer(s)) {
			problem(l, s, "%s.%s: must be an integer", prefix, name);
			return;
		}
		long long v = config_setting_get_int64(s);
		if (v < k->min || v > k->max) {
			problem(l, s, "%s.%s: must be from %.0f to %.0f (got %lld)",
			    prefix, name, k->min, k->max, v);
			return;
		}
		if (k->type == KEY_INT)
			*(int *)field = (int)v;
		else
			*(size_t *)field = (size_t)v;
		return;
	}
	case KEY_DOUBLE: {
		double v;
		if (is_integer(s))
			v = (double)config_setting_get_int64(s);
		else if (config_setting_type(s) == CONFIG_TYPE_FLOAT)
			v = config_setting_get_float(s);
		else {
			problem(l, s, "%s.%s: must be a number", prefix, name);
			return;
		}
		bool low = k->min_open ? !(v > k->min) : !(v >= k->min);
		if (low || !(v <= k->max)) {
			if (k->min_open)
				problem(l, s, "%s.%s: must be more than %g and at "
				    "most %g (got %.15g)", prefix, name, k->min,
				    k->max, v);
			else
				problem(l, s, "%s.%s: must be from %g to %g (got %.15g)",
				    prefix, name, k->min, k->max, v);
			return;
		}
		*(double *)field = v;
		return;
	}
	case KEY_BOOL:
		if (config_setting_type(s) != CONFIG_TYPE_BOOL) {
			problem(l, s, "%s.%s: must be true or false", prefix, name);
			return;
		}
		*(bool *)field = config_setting_get_bool(s);
		return;
	case KEY_STRING:
	case KEY_NAME:
	case KEY_PATH: {
		if (config_setting_type(s) != CONFIG_TYPE_STRING) {
			problem(l, s, "%s.%s: must be a string", prefix, name);
			return;
		}
		const char *v = config_setting_get_string(s);
		size_t n = strlen(v);
		if (n < k->min) {
			problem(l, s, "%s.%s: must not be empty", prefix, name);
			return;
		}
		if (n > k->max) {
			problem(l, s, "%s.%s: must be at most %.0f bytes long",
			    prefix, name, k->max);
			return;
		}
		if (k->type == KEY_NAME && !valid_name(v)) {
			problem(l, s, "%s.%s: \"%s\" holds a character other "
			    "than A-Z a-z 0-9 _ . : -", prefix, name, v);
			return;
		}
		/* A relative path would depend on the working directory,
		 * which is not the same for `taskd -t` in a shell, the daemon
		 * under systemd, and a reload after detaching. */
		if (k->type == KEY_PATH && v[0] != '/') {
			problem(l, s, "%s.%s: \"%s\" must be an absolute path",
			    prefix, name, v);
			return;
		}
		char *d = dup_str(l, v);
		if (d == NULL)
			return;
		free(*(char **)field);
		*(char **)field = d;
		return;
	}
	case KEY_STRINGS:
		load_string_list(l, s, prefix, k, (char ***)field);
		return;
	case KEY_ENUM: {
		const char *v = config_setting_type(s) == CONFIG_TYPE_STRING ?
		    config_setting_get_string(s) : NULL;
		for (size_t i = 0; v != NULL && i < k->nwords; i++) {
			if (k->words[i] != NULL && strcmp(v, k->words[i]) == 0) {
				int iv = (int)i;
				memcpy(field, &iv, sizeof(iv));
				return;
			}
		}
		struct buf b = { 0 };
		if (put_words(&b, k) < 0) {
			buf_free(&b);
			l->nomem = true;
			return;
		}
		if (v != NULL)
			problem(l, s, "%s.%s: must be %s (got \"%s\")", prefix,
			    name, b.data, v);
		else
			problem(l, s, "%s.%s: must be a string: %s", prefix,
			    name, b.data);
		buf_free(&b);
		return;
	}
	}
}

static const struct key *
find_key(const struct key *keys, const char *name)
{
	for (const struct key *k = keys; k->name != NULL; k++)
		if (strcmp(k->name, name) == 0)
			return k;
	return NULL;
}

/* Stores the default of every row of keys at base + off.  Returns 0, or
 * -1 when out of memory (what was stored is the caller's to free). */
static int
keys_set_defaults(const struct key *keys, void *base)
{
	for (const struct key *k = keys; k->name != NULL; k++) {
		void *field = (char *)base + k->off;

		switch (k->type) {
		case KEY_INT:
			*(int *)field = (int)k->def;
			break;
		case KEY_SIZE:
			*(size_t *)field = (size_t)k->def;
			break;
		case KEY_DOUBLE:
			*(double *)field = k->def;
			break;
		case KEY_BOOL:
			*(bool *)field = k->def != 0;
			break;
		case KEY_ENUM: {
			int iv = (int)k->def;
			memcpy(field, &iv, sizeof(iv));
			break;
		}
		case KEY_STRING:
		case KEY_NAME:
		case KEY_PATH:
			if (k->def_str != NULL &&
			    (*(char **)field = strdup(k->def_str)) == NULL)
				return -1;
			break;
		case KEY_STRINGS:
			if (k->def_str != NULL) {
				char **v = calloc(2, sizeof(*v));
				*(char ***)field = v;
				if (v == NULL || (v[0] = strdup(k->def_str)) == NULL)
					return -1;
			}
			break;
		}
	}
	return 0;
}

/* ---- groups ------------------------------------------------------------- */

static void
load_group(struct loader *l, const config_setting_t *g, const struct group *def)
{
	if (config_setting_type(g) != CONFIG_TYPE_GROUP) {
		problem(l, g, "%s: must be a group: %s = { ... };", def->name,
		    def->name);
		return;
	}
	for (int i = 0; i < config_setting_length(g); i++) {
		const config_setting_t *s = config_setting_get_elem(g, (unsigned)i);
		const struct key *k = find_key(def->keys, config_setting_name(s));
		if (k == NULL)
			problem(l, s, "%s.%s: unknown key", def->name,
			    config_setting_name(s));
		else
			load_key(l, s, def->name, k, l->c);
	}
}

/* ---- tasks -------------------------------------------------------------- */

/* A NULL-terminated copy of an array of strings; elements are checked and
 * reported as key[i].  Returns NULL (with problems recorded) when any
 * element is not a string. */
static char **
load_strings(struct loader *l, const config_setting_t *s, const char *key,
    size_t *count)
{
	int t = config_setting_type(s);

	if (t != CONFIG_TYPE_ARRAY && t != CONFIG_TYPE_LIST) {
		problem(l, s, "%s: must be an array of strings: [ \"...\", ... ]", key);
		return NULL;
	}
	size_t n = (size_t)config_setting_length(s);
	bool ok = true;
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (config_setting_type(e) != CONFIG_TYPE_STRING) {
			problem(l, e, "%s[%zu]: must be a string", key, i);
			ok = false;
		}
	}
	if (!ok)
		return NULL;

	char **v = calloc(n + 1, sizeof(*v));
	if (v == NULL) {
		l->nomem = true;
		return NULL;
	}
	for (size_t i = 0; i < n; i++) {
		v[i] = dup_str(l, config_setting_get_string_elem(s, (int)i));
		if (v[i] == NULL) {
			for (size_t j = 0; j < i; j++)
				free(v[j]);
			free(v);
			return NULL;
		}
	}
	*count = n;
	return v;
}

static void
free_strings(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

/* exec[0] is run without a shell or $PATH: insist on an absolute path to
 * something this machine can execute now, so `taskd -t` catches a missing
 * package before the first task fails. */
static void
check_program(struct loader *l, const config_setting_t *s, const char *key,
    const char *prog)
{
	struct stat st;

	if (prog[0] != '/') {
		problem(l, s, "%s[0]: \"%s\" must be an absolute path (there is "
		    "no $PATH search)", key, prog);
		return;
	}
	if (stat(prog, &st) < 0) {
		problem(l, s, "%s[0]: %s: %s", key, prog, strerror(errno));
		return;
	}
	if (!S_ISREG(st.st_mode)) {
		problem(l, s, "%s[0]: %s: not a regular file", key, prog);
		return;
	}
	if (access(prog, X_OK) < 0)
		problem(l, s, "%s[0]: %s: not executable: %s", key, prog,
		    strerror(errno));
}

static void
load_exec(struct loader *l, const config_setting_t *s, const char *key,
    struct conf_task *t)
{
	size_t n = 0;
	char **argv = load_strings(l, s, key, &n);

	if (argv == NULL)
		return;
	if (n == 0) {
		problem(l, s, "%s: must not be empty (it is the program and its "
		    "arguments)", key);
		free(argv);
		return;
	}
	check_program(l, config_setting_get_elem(s, 0), key, argv[0]);
	t->exec = argv;
}

static void
load_allow(struct loader *l, const config_setting_t *s, const char *key,
    struct conf_task *t)
{
	size_t n = 0;
	char **v = load_strings(l, s, key, &n);

	if (v == NULL)
		return;
	/* An empty prefix matches every URL: surely not what was meant by
	 * an allow-list. */
	for (size_t i = 0; i < n; i++) {
		if (v[i][0] == '\0') {
			problem(l, config_setting_get_elem(s, (unsigned)i),
			    "%s[%zu]: must not be empty (it would allow every "
			    "URL)", key, i);
			continue;
		}
		/* The http handler ignores an entry it cannot read: say so
		 * here rather than allow nothing in silence. */
		const char *why;
		char *c = httppolicy_entry(v[i], &why);
		if (c == NULL)
			problem(l, config_setting_get_elem(s, (unsigned)i),
			    "%s[%zu]: %s", key, i, why != NULL ? why : "out of memory");
		free(c);
	}
	t->allow = v;
	t->nallow = n;
}

static void
load_task(struct loader *l, const config_setting_t *e, size_t idx,
    struct conf_task *t)
{
	struct buf key = { 0 };   /* "tasks[idx]", then "tasks[idx].member" */
	const config_setting_t *name = NULL, *handler = NULL, *exec = NULL;
	const config_setting_t *kind = NULL;
	size_t plen;

	t->line = (int)config_setting_source_line(e);
	if (keys_set_defaults(task_keys, t) < 0)
		goto nomem;
	/* Not in the row: limits.timeout is known only now, after the
	 * file's groups were read. */
	t->timeout = l->c->timeout;
	if (buf_printf(&key, "tasks[%zu]", idx) < 0)
		goto nomem;
	plen = key.len;

	for (int i = 0; i < config_setting_length(e); i++) {
		const config_setting_t *s = config_setting_get_elem(e, (unsigned)i);
		const char *m = config_setting_name(s);
		const struct key *k;

		key.len = plen;
		if (buf_printf(&key, ".%s", m) < 0)
			goto nomem;
		if (strcmp(m, "name") == 0) {
			name = s;
			if (config_setting_type(s) != CONFIG_TYPE_STRING) {
				problem(l, s, "%s: must be a string", key.data);
				continue;
			}
			const char *v = config_setting_get_string(s);
			if (!valid_name(v))
				problem(l, s, "%s: \"%s\" must be 1 to %d of the "
				    "characters A-Z a-z 0-9 _ . : -", key.data, v,
				    CONF_NAME_MAX);
			else
				t->name = dup_str(l, v);
		} else if (strcmp(m, "exec") == 0) {
			exec = s;
			load_exec(l, s, key.data, t);
		} else if (strcmp(m, "allow") == 0) {
			load_allow(l, s, key.data, t);
		} else if ((k = find_key(task_keys, m)) != NULL) {
			if (strcmp(m, "handler") == 0)
				handler = s;
			else if (strcmp(m, "kind") == 0)
				kind = s;
			key.len = plen;
			key.data[plen] = '\0';
			load_key(l, s, key.data, k, t);
		} else {
			problem(l, s, "%s: unknown key", key.data);
		}
	}
	key.len = plen;
	key.data[plen] = '\0';

	if (name == NULL)
		problem(l, e, "%s.name: missing: every task needs a name", key.data);
	if (handler != NULL && exec != NULL)
		problem(l, e, "%s: has both handler and exec; give exactly one",
		    key.data);
	else if (handler == NULL && exec == NULL)
		problem(l, e, "%s: needs a handler or an exec", key.data);
	/* A program has no kind of its own to fall back on; most wait on
	 * something (a network, a disk), so they share the event loop unless
	 * the operator says they burn CPU. */
	if (exec != NULL && kind == NULL)
		t->kind = CONF_KIND_IO;
	buf_free(&key);
	return;

nomem:
	buf_free(&key);
	l->nomem = true;
}

static void
load_tasks(struct loader *l, const config_setting_t *list)
{
	struct conf *c = l->c;

	if (list == NULL)
		return;
	/* "tasks = [];" is how some write an empty list; accept it. */
	if (config_setting_type(list) == CONFIG_TYPE_ARRAY &&
	    config_setting_length(list) == 0)
		return;
	if (config_setting_type(list) != CONFIG_TYPE_LIST) {
		problem(l, list, "tasks: must be a list of groups: "
		    "tasks = ( { name = ...; }, ... );");
		return;
	}
	size_t n = (size_t)config_setting_length(list);
	if (n == 0)
		return;
	c->tasks = calloc(n, sizeof(*c->tasks));
	if (c->tasks == NULL) {
		l->nomem = true;
		return;
	}
	/* Slot i is element i even when an element is unusable, so messages
	 * and the registry agree on what "tasks[i]" means. */
	c->ntasks = n;
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *e = config_setting_get_elem(list, (unsigned)i);
		struct conf_task *t = &c->tasks[i];

		if (config_setting_type(e) != CONFIG_TYPE_GROUP) {
			problem(l, e, "tasks[%zu]: must be a group: { name = ...; }", i);
			continue;
		}
		load_task(l, e, i, t);
		if (t->name == NULL)
			continue;
		for (size_t j = 0; j < i; j++) {
			if (c->tasks[j].name != NULL &&
			    strcmp(c->tasks[j].name, t->name) == 0) {
				problem(l, config_setting_get_member(e, "name"),
				    "tasks[%zu].name: \"%s\" is already the name "
				    "of tasks[%zu] (line %d)", i, t->name, j,
				    c->tasks[j].line);
				break;
			}
		}
	}
}

/* ---- cross-checks ------------------------------------------------------- */

static void
wipe_free(char *s)
{
	if (s == NULL)
		return;
	explicit_bzero(s, strlen(s));
	free(s);
}

/* The password's first line, or NULL with a problem recorded.  A file
 * keeps the secret out of a world-readable config and out of `ps`; systemd
 * credentials (LoadCredential=) deliver exactly such a file.  The line is
 * taken verbatim: percent-escapes are a URI matter, not a file's. */
static char *
read_password(struct loader *l, const config_setting_t *s, const char *path)
{
	FILE *f = fopen(path, "re");
	char *line = NULL;
	size_t cap = 0;

	if (f == NULL) {
		problem(l, s, "broker.password_file: cannot read %s: %s", path,
		    strerror(errno));
		return NULL;
	}
	errno = 0;
	ssize_t n = getline(&line, &cap, f);
	int err = errno;
	bool failed = ferror(f);
	fclose(f);
	if (n < 0) {
		if (failed)
			problem(l, s, "broker.password_file: cannot read %s: %s",
			    path, strerror(err));
		else if (err == ENOMEM)
			l->nomem = true;
		else
			problem(l, s, "broker.password_file: %s is empty", path);
		free(line);
		return NULL;
	}
	if (n > 0 && line[n - 1] == '\n')
		line[--n] = '\0';
	if (n > 0 && line[n - 1] == '\r')
		line[--n] = '\0';
	if (n == 0) {
		problem(l, s, "broker.password_file: the first line of %s is "
		    "empty", path);
		wipe_free(line);
		return NULL;
	}
	if (strlen(line) != (size_t)n) {
		problem(l, s, "broker.password_file: %s holds a NUL byte", path);
		explicit_bzero(line, (size_t)n);
		free(line);
		return NULL;
	}
	return line;
}

/* The setting of broker.uri's i-th node, for its line. */
static const config_setting_t *
uri_setting(const config_t *cfg, size_t i)
{
	const config_setting_t *s = config_lookup(cfg, "broker.uri");
	if (s != NULL && config_setting_type(s) != CONFIG_TYPE_STRING) {
		const config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
		if (e != NULL)
			return e;
	}
	return s;
}

static void
check_broker(struct loader *l, const config_t *cfg)
{
	struct conf *c = l->c;
	char err[256];   /* our own text: uri_parse never echoes the input */
	size_t n = 0;

	/* broker_uris holds at least its default (the row's one URI). */
	while (c->broker_uris[n] != NULL)
		n++;
	bool list = n > 1 || (config_lookup(cfg, "broker.uri") != NULL &&
	    config_setting_type(config_lookup(cfg, "broker.uri")) != CONFIG_TYPE_STRING);
	if ((c->nodes = calloc(n, sizeof(*c->nodes))) == NULL) {
		l->nomem = true;
		return;
	}
	c->nnodes = n;
	free(c->broker_uri);
	if ((c->broker_uri = strdup(c->broker_uris[0])) == NULL)
		l->nomem = true;

	char *pw = NULL;
	if (c->password_file != NULL)
		pw = read_password(l, config_lookup(cfg, "broker.password_file"),
		    c->password_file);
	bool parsed = true;
	for (size_t i = 0; i < n; i++) {
		const config_setting_t *s = uri_setting(cfg, i);
		struct uri *u = &c->nodes[i];
		if (uri_parse(c->broker_uris[i], u, err, sizeof(err)) < 0) {
			if (list)
				problem(l, s, "broker.uri[%zu]: %s", i, err);
			else
				problem(l, s, "broker.uri: %s", err);
			parsed = false;
			continue;
		}
		if (pw != NULL) {
			wipe_free(u->password);
			if ((u->password = strdup(pw)) == NULL)
				l->nomem = true;
		}
		/* One cluster, one way in: a list that mixes amqp:// and
		 * amqps:// would fall back to plain text whenever a TLS node
		 * is down, which nobody means. */
		if (u->tls != c->nodes[0].tls)
			problem(l, s, "broker.uri[%zu]: is %s but broker.uri[0] is %s: "
			    "the nodes of one cluster take the same scheme", i,
			    u->tls ? "amqps://" : "amqp://",
			    c->nodes[0].tls ? "amqps://" : "amqp://");
		for (size_t j = 0; j < i; j++)
			if (c->nodes[j].host != NULL &&
			    strcasecmp(c->nodes[j].host, u->host) == 0 &&
			    c->nodes[j].port == u->port) {
				problem(l, s, "broker.uri[%zu]: names the same node "
				    "(%s:%d) as broker.uri[%zu]", i, u->host, u->port, j);
				break;
			}
	}
	wipe_free(pw);
	if (parsed && uri_copy(&c->broker, &c->nodes[0]) < 0)
		l->nomem = true;

	/* Mutual TLS: both files or neither, and only where TLS is spoken. */
	bool tls = parsed && c->nodes[0].tls;
	const config_setting_t *cs = config_lookup(cfg, "broker.cert");
	const config_setting_t *ks = config_lookup(cfg, "broker.key");
	if ((c->cert != NULL) != (c->key != NULL)) {
		if (c->cert != NULL)
			problem(l, cs, "broker.cert: needs broker.key, its private key");
		else
			problem(l, ks, "broker.key: needs broker.cert, its certificate");
	} else if (c->cert != NULL && parsed && !tls) {
		problem(l, cs, "broker.cert: client certificates need TLS, but "
		    "broker.uri is amqp://: use amqps://");
	} else if (c->cert != NULL) {
		int which = 0;
		if (tlsfiles_check_pair(c->cert, c->key, &which, err, sizeof(err)) < 0)
			problem(l, which == 0 ? cs : ks, "%s: %s",
			    which == 0 ? "broker.cert" : "broker.key", err);
	}
	if (c->cacert != NULL && tlsfiles_check_ca(c->cacert, err, sizeof(err)) < 0)
		problem(l, config_lookup(cfg, "broker.cacert"), "broker.cacert: %s", err);
}

static void
check_queue(struct loader *l, const config_t *cfg)
{
	struct conf *c = l->c;

	if (c->queue_type == CONF_QUEUE_QUORUM && !c->queue_durable)
		problem(l, config_lookup(cfg, "queue.type"), "queue.type: a "
		    "quorum queue is always durable, but queue.durable is false");
	if (c->default_task[0] != '\0' && conf_task_find(c, c->default_task) == NULL)
		problem(l, config_lookup(cfg, "queue.default_task"),
		    "queue.default_task: \"%s\" is not the name of a task in "
		    "tasks", c->default_task);
}

static void
check_metrics(struct loader *l, const config_t *cfg)
{
	char host[CONF_NAME_MAX + 1], why[512];
	int port;
	const char *v = l->c->metrics_listen;
	if (v[0] != '\0' && metrics_parse_listen(v, host, sizeof(host), &port, why,
	    sizeof(why)) < 0)
		problem(l, config_lookup(cfg, "metrics.listen"), "metrics.listen: %s", why);
}

/* ---- entry points ------------------------------------------------------- */

/* A conf holding every key's default, from the table. */
static struct conf *
conf_new(const char *path)
{
	struct conf *c = calloc(1, sizeof(*c));

	if (c == NULL)
		return NULL;
	if ((c->path = strdup(path)) == NULL)
		goto nomem;
	for (const struct group *g = groups; g->name != NULL; g++)
		if (keys_set_defaults(g->keys, c) < 0)
			goto nomem;
	return c;

nomem:
	conf_free(c);
	return NULL;
}

/* plugins = [ "/abs/path.so", ... ]: loading (and the file checks) is the
 * registry's, which runs for -t, start and reload alike. */
static void
load_plugins(struct loader *l, const config_setting_t *s)
{
	size_t n = 0;
	char **v = load_strings(l, s, "plugins", &n);

	if (v == NULL)
		return;
	for (size_t i = 0; i < n; i++)
		if (v[i][0] != '/')
			problem(l, config_setting_get_elem(s, (unsigned)i),
			    "plugins[%zu]: \"%s\" must be an absolute path", i, v[i]);
	free_strings(l->c->plugins);
	l->c->plugins = v;
	l->c->plugins_line = (int)config_setting_source_line(s);
}

static void
load_root(struct loader *l, const config_setting_t *root)
{
	for (int i = 0; i < config_setting_length(root); i++) {
		const config_setting_t *s = config_setting_get_elem(root, (unsigned)i);
		const char *name = config_setting_name(s);
		const struct group *g;

		if (strcmp(name, "tasks") == 0)
			continue;
		if (strcmp(name, "plugins") == 0) {
			load_plugins(l, s);
			continue;
		}
		for (g = groups; g->name != NULL; g++)
			if (strcmp(g->name, name) == 0)
				break;
		if (g->name == NULL)
			problem(l, s, "%s: unknown setting (known: broker, queue, "
			    "reply, io, cpu, limits, log, shutdown, metrics, plugins, tasks)", name);
		else
			load_group(l, s, g);
	}
}

struct conf *
conf_load(const char *path, char **errs)
{
	struct loader l = { .path = path };
	config_t cfg;

	l.c = conf_new(path);
	if (l.c == NULL) {
		l.nomem = true;
		goto out;
	}
	/* libconfig says only "file I/O error"; the operator wants errno. */
	FILE *f = fopen(path, "re");
	if (f == NULL) {
		problem_at(&l, path, 0, "cannot read: %s", strerror(errno));
		goto out;
	}
	fclose(f);

	config_init(&cfg);
	if (!config_read_file(&cfg, path)) {
		if (config_error_type(&cfg) == CONFIG_ERR_FILE_IO)
			problem_at(&l, config_error_file(&cfg), 0, "cannot read "
			    "the file");
		else
			problem_at(&l, config_error_file(&cfg),
			    (unsigned)config_error_line(&cfg), "syntax error: %s",
			    config_error_text(&cfg));
		config_destroy(&cfg);
		goto out;
	}
	const config_setting_t *root = config_root_setting(&cfg);
	/* Groups first: a task's timeout defaults to limits.timeout, wherever
	 * in the file that is written. */
	load_root(&l, root);
	load_tasks(&l, config_setting_get_member(root, "tasks"));
	check_broker(&l, &cfg);
	check_queue(&l, &cfg);
	check_metrics(&l, &cfg);
	config_destroy(&cfg);

out:
	if (l.n == 0 && !l.nomem) {
		problems_free(&l);
		return l.c;
	}
	*errs = problems_text(&l);
	problems_free(&l);
	conf_free(l.c);
	return NULL;
}

const struct conf_task *
conf_task_find(const struct conf *c, const char *name)
{
	/* Linear: a handful of tasks, looked up once per message at most. */
	for (size_t i = 0; i < c->ntasks; i++)
		if (c->tasks[i].name != NULL && strcmp(c->tasks[i].name, name) == 0)
			return &c->tasks[i];
	return NULL;
}

void
conf_free(struct conf *c)
{
	if (c == NULL)
		return;
	for (size_t i = 0; i < c->ntasks; i++) {
		struct conf_task *t = &c->tasks[i];
		free(t->name);
		free(t->handler);
		free_strings(t->exec);
		free_strings(t->allow);
	}
	free(c->tasks);
	free_strings(c->plugins);
	free(c->path);
	free(c->broker_uri);
	uri_free(&c->broker);
	free_strings(c->broker_uris);
	for (size_t i = 0; i < c->nnodes; i++)
		uri_free(&c->nodes[i]);
	free(c->nodes);
	free(c->cert);
	free(c->key);
	free(c->password_file);
	free(c->cacert);
	free(c->queue_name);
	free(c->default_task);
	free(c->reply_queue);
	free(c->metrics_listen);
	free(c->control_exchange);
	free(c);
}

/* ---- the table, shown ---------------------------------------------------- */

static const char *
key_type_name(enum key_type t)
{
	switch (t) {
	case KEY_INT: return "int";
	case KEY_SIZE: return "size";
	case KEY_DOUBLE: return "double";
	case KEY_BOOL: return "bool";
	case KEY_STRING: return "string";
	case KEY_NAME: return "name";
	case KEY_PATH: return "path";
	case KEY_ENUM: return "enum";
	case KEY_STRINGS: return "strings";
	}
	return "?";
}

/* A table string as a config file writes it.  Only our own literals come
 * here, but quoting them properly costs nothing. */
static void
print_quoted(FILE *f, const char *s)
{
	fputc('"', f);
	for (; *s != '\0'; s++) {
		if (*s == '"' || *s == '\\')
			fputc('\\', f);
		fputc(*s, f);
	}
	fputc('"', f);
}

static void
print_default(FILE *f, const struct key *k)
{
	if (k->def_doc != NULL) {
		fputs(k->def_doc, f);
		return;
	}
	switch (k->type) {
	case KEY_INT:
	case KEY_SIZE:
	case KEY_DOUBLE:
		fprintf(f, "%.15g", k->def);
		return;
	case KEY_BOOL:
		fputs(k->def != 0 ? "true" : "false", f);
		return;
	case KEY_ENUM: {
		size_t i = (size_t)k->def;
		if (i < k->nwords && k->words[i] != NULL)
			print_quoted(f, k->words[i]);
		else
			fputc('-', f);
		return;
	}
	case KEY_STRING:
	case KEY_NAME:
	case KEY_PATH:
	case KEY_STRINGS:
		if (k->def_str != NULL)
			print_quoted(f, k->def_str);
		else
			fputc('-', f);
		return;
	}
}

static void
print_keys(FILE *f, const char *prefix, const struct key *keys)
{
	for (const struct key *k = keys; k->name != NULL; k++) {
		fprintf(f, "%s.%s\t%s\t%.15g\t%.15g\t%s\t", prefix, k->name,
		    key_type_name(k->type), k->min, k->max,
		    k->min_open ? "open" : "closed");
		print_default(f, k);
		fputc('\t', f);
		for (size_t i = 0, n = 0; i < k->nwords; i++)
			if (k->words[i] != NULL)
				fprintf(f, "%s%s", n++ > 0 ? "," : "", k->words[i]);
		fputc('\n', f);
	}
}

int
conf_keys_print(FILE *f)
{
	for (const struct group *g = groups; g->name != NULL; g++)
		print_keys(f, g->name, g->keys);
	print_keys(f, "tasks", task_keys);
	return fflush(f) == 0 && !ferror(f) ? 0 : -1;
}
