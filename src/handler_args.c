/* handler_args: a task's settings, copied out of the conf (see handler.h). */
#include <stdlib.h>
#include <string.h>

#include "handler.h"

/* The response body cap when a task sets none: big enough for an API
 * answer, small enough that ten thousand at once stay affordable. */
#define HANDLER_ARGS_MAX_RESPONSE (1024 * 1024)

static void
free_strings(char **v)
{
	if (v == NULL)
		return;
	for (char **p = v; *p != NULL; p++)
		free(*p);
	free(v);
}

static int
copy_strings(char **from, char ***to)
{
	size_t n = 0;

	*to = NULL;
	if (from == NULL)
		return 0;
	while (from[n] != NULL)
		n++;
	char **v = calloc(n + 1, sizeof(*v));
	if (v == NULL)
		return -1;
	for (size_t i = 0; i < n; i++) {
		v[i] = strdup(from[i]);
		if (v[i] == NULL) {
			free_strings(v);
			return -1;
		}
	}
	*to = v;
	return 0;
}

struct handler_args *
handler_args_new(const struct conf_task *t, size_t max_output)
{
	struct handler_args *a = calloc(1, sizeof(*a));

	if (a == NULL)
		return NULL;
	a->refs = 1;
	a->max_output = max_output;
	a->max_response = t->max_response > 0 ? t->max_response :
	    HANDLER_ARGS_MAX_RESPONSE;
	a->follow_redirects = t->follow_redirects;
	if (copy_strings(t->exec, &a->exec) < 0 ||
	    copy_strings(t->allow, &a->allow) < 0) {
		handler_args_unref(a);
		return NULL;
	}
	a->nallow = t->nallow;
	return a;
}

struct handler_args *
handler_args_ref(struct handler_args *a)
{
	if (a != NULL)
		a->refs++;
	return a;
}

void
handler_args_unref(struct handler_args *a)
{
	if (a == NULL || --a->refs > 0)
		return;
	free_strings(a->exec);
	free_strings(a->allow);
	free(a);
}
