/*
 * httplib: libcurl, loaded the first time an http task needs it.
 *
 * libcurl brings some 28 libraries with it (GnuTLS, Kerberos, LDAP, SSH,
 * ...).  Linked, every taskd process maps and relocates them at start: the
 * daemon, and each CPU worker, which never makes a request.  Loaded here
 * with dlopen, they cost nothing until the first http task, and only in
 * the daemon (docs/decisions.md, "The idle cost").
 *
 * httplib_load() is idempotent; after it returned 0, httplib() is the table
 * of the functions the http handler and fetch use, named as in curl.h
 * without the curl_ prefix.  The types and constants are curl.h's.
 */
#ifndef TASKD_HTTPLIB_H
#define TASKD_HTTPLIB_H

#include <curl/curl.h>

struct httplib {
	CURLcode (*global_init)(long flags);
	void (*global_cleanup)(void);
	CURL *(*easy_init)(void);
	void (*easy_cleanup)(CURL *easy);
	CURLcode (*easy_setopt)(CURL *easy, CURLoption option, ...);
	CURLcode (*easy_getinfo)(CURL *easy, CURLINFO info, ...);
	const char *(*easy_strerror)(CURLcode code);
	CURLM *(*multi_init)(void);
	CURLMcode (*multi_cleanup)(CURLM *multi);
	CURLMcode (*multi_setopt)(CURLM *multi, CURLMoption option, ...);
	CURLMcode (*multi_add_handle)(CURLM *multi, CURL *easy);
	CURLMcode (*multi_remove_handle)(CURLM *multi, CURL *easy);
	CURLMcode (*multi_assign)(CURLM *multi, curl_socket_t fd, void *p);
	CURLMcode (*multi_socket_action)(CURLM *multi, curl_socket_t fd,
	    int ev_bitmask, int *running);
	CURLMsg *(*multi_info_read)(CURLM *multi, int *msgs_in_queue);
	struct curl_slist *(*slist_append)(struct curl_slist *list, const char *s);
	void (*slist_free_all)(struct curl_slist *list);
};

/* Loads libcurl and resolves the table.  Returns 0, or -1 with *why set
 * (dlerror's text, static) when the library or a symbol is missing.  The
 * library stays loaded for the life of the process. */
int httplib_load(const char **why);

/* The table; only valid after httplib_load() returned 0. */
const struct httplib *httplib(void);

#endif
