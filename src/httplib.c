#include "httplib.h"

#include <dlfcn.h>
#include <stddef.h>
#include <string.h>

#ifndef HTTPLIB_SONAME
#define HTTPLIB_SONAME "libcurl.so.4"
#endif

/* Process-wide by nature: a loaded library is. */
static struct httplib table;
static void *handle;

static const struct {
	const char *name;
	size_t offset;
} symbols[] = {
#define SYM(f) { "curl_" #f, offsetof(struct httplib, f) }
	SYM(global_init), SYM(global_cleanup), SYM(easy_init), SYM(easy_cleanup),
	SYM(easy_setopt), SYM(easy_getinfo), SYM(easy_strerror), SYM(multi_init),
	SYM(multi_cleanup), SYM(multi_setopt), SYM(multi_add_handle),
	SYM(multi_remove_handle), SYM(multi_assign), SYM(multi_socket_action),
	SYM(multi_info_read), SYM(slist_append), SYM(slist_free_all),
#undef SYM
};

int
httplib_load(const char **why)
{
	if (handle != NULL)
		return 0;
	void *h = dlopen(HTTPLIB_SONAME, RTLD_NOW | RTLD_LOCAL);
	if (h == NULL) {
		*why = dlerror();
		return -1;
	}
	struct httplib t;
	for (size_t i = 0; i < sizeof(symbols) / sizeof(symbols[0]); i++) {
		void *f = dlsym(h, symbols[i].name);
		if (f == NULL) {
			*why = dlerror();
			dlclose(h);
			return -1;
		}
		/* POSIX guarantees a function pointer survives a void *. */
		memcpy((char *)&t + symbols[i].offset, &f, sizeof(f));
	}
	table = t;
	handle = h;
	return 0;
}

const struct httplib *
httplib(void)
{
	return &table;
}
