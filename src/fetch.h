/*
 * fetch: libcurl's multi interface driven by the libev loop, for
 * coroutines.  A coroutine prepares a curl easy handle (setopt only) and
 * calls fetch_perform(), which adds it to the one shared multi handle and
 * waits until the transfer finishes, the deadline passes or the task is
 * cancelled.  Every call into curl_multi_* runs on the main context's stack
 * (coro_call_main), and curl's socket and timer callbacks only start and
 * stop watchers; a finished transfer wakes its coroutine through
 * coro_wake(), from the loop, never from inside a curl callback.
 *
 * curl is initialised lazily, by the first fetch_perform().  Debian's
 * libcurl resolves names on a thread of its own, so from then on the
 * process is multi-threaded: anything that forks and keeps running code
 * in the child (the CPU worker pool) must fork before the first HTTP task.
 * Nothing at start-up calls into curl.
 */
#ifndef TASKD_FETCH_H
#define TASKD_FETCH_H

#include <curl/curl.h>

#include "coro.h"

/*
 * On a coroutine: runs easy to completion.  Sets CURLOPT_PRIVATE and
 * CURLOPT_NOSIGNAL itself.  Returns CORO_READY with *result set to the
 * transfer's CURLcode, or CORO_TIMEOUT / CORO_CANCELLED; in every case
 * easy is detached from the multi handle again when this returns and the
 * caller still owns (and cleans up) easy.  Returns CORO_READY with
 * *result = CURLE_OUT_OF_MEMORY (or CURLE_FAILED_INIT) when curl could not
 * be set up.
 */
enum coro_status fetch_perform(CURL *easy, double deadline, CURLcode *result);

/* Main context, at exit: frees the multi handle and curl's globals if they
 * were ever made.  Every transfer must be over. */
void fetch_teardown(void);

#endif
