/*
 * handler_http: the built-in "http" handler (design §4), on a coroutine.
 *
 * Payload: a JSON object
 *   {"method": "GET", "url": "https://...", "headers": {"Name": "value"},
 *    "body": "text"}
 * (method defaults to GET, headers and body are optional).  Result: a JSON
 * object {"status": 200, "headers": {"name": "value"}, "body": "text"} with
 * header names in lower case (repeated ones joined with ", ") and the body
 * as a JSON string (bytes that are not UTF-8 become U+FFFD).  Any HTTP
 * status is an "ok" result: what a 404 means is the client's business.
 *
 * Bytes that are not text travel in base64: a request may give
 * "body_base64" instead of "body", and "binary": true asks for the response
 * body as "body_base64" instead of "body", byte for byte.  The client says
 * which it wants, so a result's shape never depends on what a server sent.
 *
 * Policy, checked before any connection is made (httppolicy.h):
 *  - the URL is made canonical, or refused when servers could read it in
 *    more than one way (user information, encoded slashes, ...); it must
 *    then fall under one of the task's `allow` entries, on a path-segment
 *    boundary; the canonical URL is what curl fetches (path as is), so
 *    what was checked is what is asked for;
 *  - only http and https;
 *  - the payload may not set Host, hop-by-hop headers or Content-Length;
 *  - redirects are returned as they are unless the task sets
 *    follow_redirects; then each target passes the same check (we follow
 *    them ourselves, at most HTTP_MAX_REDIRECTS);
 *  - the response body is capped at the task's max_response;
 *  - proxies from the environment are ignored.
 */

#include <ctype.h>
#include <stdlib.h>
#include <string.h>
#include <jansson.h>

#include "coro.h"
#include "fetch.h"
#include "handler.h"
#include "httppolicy.h"
#include "httplib.h"

#define HTTP_MAX_REDIRECTS 10
#define HTTP_METHOD_MAX 16

struct http_xfer {
	struct buf body;
	size_t max;
	bool too_big;
	json_t *headers;        /* of the last response only */
	bool oom;
};

static size_t
http_write_cb(char *p, size_t size, size_t n, void *ud)
{
	struct http_xfer *x = ud;
	size_t len = size * n;

	if (x->body.len + len > x->max) {
		x->too_big = true;
		return 0; /* curl aborts the transfer: CURLE_WRITE_ERROR */
	}
	if (buf_append(&x->body, p, len) < 0) {
		x->oom = true;
		return 0;
	}
	return len;
}

/* One header line at a time, the status line of each response included:
 * a new status line starts a new set (a 100 Continue, a redirect). */
static size_t
http_header_cb(char *p, size_t size, size_t n, void *ud)
{
	struct http_xfer *x = ud;
	size_t len = size * n;

	if (len >= 5 && memcmp(p, "HTTP/", 5) == 0) {
		json_object_clear(x->headers);
		return len;
	}
	char *colon = memchr(p, ':', len);
	if (colon == NULL || colon == p)
		return len; /* the blank line, or junk */
	size_t nlen = (size_t)(colon - p);
	char *name = malloc(nlen + 1);
	if (name == NULL) {
		x->oom = true;
		return 0;
	}
	for (size_t i = 0; i < nlen; i++)
		name[i] = (char)tolower((unsigned char)p[i]);
	name[nlen] = '\0';
	const char *v = colon + 1, *end = p + len;
	while (v < end && (*v == ' ' || *v == '\t'))
		v++;
	while (end > v && (end[-1] == '\r' || end[-1] == '\n' || end[-1] == ' ' || end[-1] == '\t'))
		end--;

	/* Values are kept as bytes (nocheck): the output escapes them. */
	json_t *old = json_object_get(x->headers, name);
	json_t *val;
	if (old != NULL) {
		struct buf j = { 0 };
		if (buf_append(&j, json_string_value(old), json_string_length(old)) < 0 ||
		    buf_puts(&j, ", ") < 0 || buf_append(&j, v, (size_t)(end - v)) < 0) {
			buf_free(&j);
			free(name);
			x->oom = true;
			return 0;
		}
		val = json_stringn_nocheck(j.data, j.len);
		buf_free(&j);
	} else {
		val = json_stringn_nocheck(v, (size_t)(end - v));
	}
	if (val == NULL || json_object_set_new_nocheck(x->headers, name, val) < 0)
		x->oom = true;
	free(name);
	return x->oom ? 0 : len;
}

/*
 * Whether the task may fetch url[0..len): 0 with *canon set to the URL to
 * fetch (free() it), 1 with out failed as `status` when it may not, -1
 * when out of memory.  from: the URL that redirected to this one, or NULL.
 */
static int
http_admit(const struct handler_args *a, const char *url, size_t len,
    char **canon, struct handler_output *out, enum result_status status,
    const char *from)
{
	const char *why;

	*canon = httppolicy_url(url, len, &why);
	if (*canon == NULL) {
		if (why == NULL)
			return -1;
		/* Not quoted: it holds whatever bytes the client sent. */
		if (from == NULL)
			handler_fail(out, status, "url_not_allowed", "url refused: %s", why);
		else
			handler_fail(out, status, "url_not_allowed",
			    "%s redirects to a URL that is refused: %s", from, why);
		return 1;
	}
	int ok = httppolicy_allowed(*canon, a != NULL ? a->allow : NULL);
	if (ok == 1)
		return 0;
	if (ok == 0 && from == NULL)
		handler_fail(out, status, "url_not_allowed",
		    "%s is not under any of this task's allow entries", *canon);
	else if (ok == 0)
		handler_fail(out, status, "url_not_allowed",
		    "%s redirects to %s, which is not under any of this task's "
		    "allow entries", from, *canon);
	free(*canon);
	*canon = NULL;
	return ok < 0 ? -1 : 1;
}

static bool
http_token_ok(const char *s, size_t max)
{
	size_t n = strlen(s);
	if (n == 0 || n > max)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!isalnum((unsigned char)s[i]) && s[i] != '-' && s[i] != '_')
			return false;
	return true;
}

/* Builds the request's header list; NULL with *bad set on a bad header
 * (*refused: one a client may not set), *bad "" when out of memory. */
static struct curl_slist *
http_headers(json_t *h, const char **bad, bool *refused)
{
	struct curl_slist *list = NULL;
	const char *name;
	json_t *v;

	*bad = NULL;
	*refused = false;
	json_object_foreach(h, name, v) {
		if (!json_is_string(v) || !http_token_ok(name, 256) ||
		    strpbrk(json_string_value(v), "\r\n") != NULL ||
		    strlen(json_string_value(v)) != json_string_length(v) ||
		    !httppolicy_header_ok(name)) {
			*bad = name;
			*refused = http_token_ok(name, 256) && !httppolicy_header_ok(name);
			httplib()->slist_free_all(list);
			return NULL;
		}
		struct buf line = { 0 };
		/* "Name;" is curl's way of sending a header with an empty value. */
		int rc = json_string_length(v) == 0 ?
		    buf_printf(&line, "%s;", name) :
		    buf_printf(&line, "%s: %s", name, json_string_value(v));
		struct curl_slist *l = rc < 0 ? NULL : httplib()->slist_append(list, line.data);
		buf_free(&line);
		if (l == NULL) {
			*bad = "";
			httplib()->slist_free_all(list);
			return NULL;
		}
		list = l;
	}
	return list;
}

static int
http_result(struct handler_output *out, long status, struct http_xfer *x,
    bool binary)
{
	const char *name;
	json_t *v;
	bool first = true;

	buf_reset(&out->body);
	if (buf_printf(&out->body, "{\"status\":%ld,\"headers\":{", status) < 0)
		return -1;
	json_object_foreach(x->headers, name, v) {
		if ((!first && buf_puts(&out->body, ",") < 0) ||
		    buf_puts(&out->body, "\"") < 0 ||
		    buf_json_string(&out->body, name, strlen(name)) < 0 ||
		    buf_puts(&out->body, "\":\"") < 0 ||
		    buf_json_string(&out->body, json_string_value(v), json_string_length(v)) < 0 ||
		    buf_puts(&out->body, "\"") < 0)
			return -1;
		first = false;
	}
	const char *data = x->body.data ? x->body.data : "";
	if (binary) {
		if (buf_puts(&out->body, "},\"body_base64\":\"") < 0 ||
		    buf_base64(&out->body, data, x->body.len) < 0)
			return -1;
	} else if (buf_puts(&out->body, "},\"body\":\"") < 0 ||
	    buf_json_string(&out->body, data, x->body.len) < 0) {
		return -1;
	}
	if (buf_puts(&out->body, "\"}") < 0)
		return -1;
	out->status = RESULT_OK;
	out->error_code = NULL;
	out->content_type = "application/json";
	return 0;
}

static void
http_co(struct handler_call *call)
{
	const struct handler_args *a = call->in.args;
	struct handler_output *out = &call->out;
	json_error_t jerr;
	json_t *req = NULL, *jh = NULL, *jb = NULL, *jb64 = NULL, *jbin = NULL;
	struct buf reqbody = { 0 };
	bool has_body = false, binary = false;
	const char *method = "GET", *bad;
	bool refused;
	char *url = NULL, *next = NULL;
	struct curl_slist *hdrs = NULL;
	struct http_xfer x = { .max = a ? a->max_response : 0 };
	char errbuf[CURL_ERROR_SIZE];
	CURL *easy = NULL;
	const char *why;

	if (httplib_load(&why) < 0) {
		handler_fail(out, RESULT_ERROR, "handler_failed",
		    "libcurl cannot be loaded: %s", why);
		return;
	}
	req = json_loadb(call->in.payload, call->in.len, JSON_REJECT_DUPLICATES, &jerr);
	if (req == NULL || !json_is_object(req)) {
		handler_fail(out, RESULT_REJECTED, "bad_payload",
		    "http wants a JSON object {method, url, headers, body}: %s",
		    req == NULL ? jerr.text : "not an object");
		goto done;
	}
	json_t *jm = json_object_get(req, "method");
	json_t *ju = json_object_get(req, "url");
	jh = json_object_get(req, "headers");
	jb = json_object_get(req, "body");
	jb64 = json_object_get(req, "body_base64");
	jbin = json_object_get(req, "binary");
	if (jm != NULL && (!json_is_string(jm) ||
	    !http_token_ok(json_string_value(jm), HTTP_METHOD_MAX))) {
		handler_fail(out, RESULT_REJECTED, "bad_payload",
		    "method must be a word such as \"GET\"");
		goto done;
	}
	if (jm != NULL)
		method = json_string_value(jm);
	if (!json_is_string(ju)) {
		handler_fail(out, RESULT_REJECTED, "bad_payload", "url must be a string");
		goto done;
	}
	if ((jh != NULL && !json_is_object(jh)) || (jb != NULL && !json_is_string(jb)) ||
	    (jb64 != NULL && !json_is_string(jb64))) {
		handler_fail(out, RESULT_REJECTED, "bad_payload",
		    "headers must be an object of strings, body and body_base64 strings");
		goto done;
	}
	if (jb != NULL && jb64 != NULL) {
		handler_fail(out, RESULT_REJECTED, "bad_payload",
		    "give body or body_base64, not both");
		goto done;
	}
	if (jbin != NULL && !json_is_boolean(jbin)) {
		handler_fail(out, RESULT_REJECTED, "bad_payload",
		    "binary must be true or false");
		goto done;
	}
	binary = json_is_true(jbin);
	if (jb != NULL) {
		has_body = true;
		if (buf_append(&reqbody, json_string_value(jb), json_string_length(jb)) < 0) {
			handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory");
			goto done;
		}
	} else if (jb64 != NULL) {
		has_body = true;
		int rc = buf_unbase64(&reqbody, json_string_value(jb64),
		    json_string_length(jb64));
		if (rc == -2) {
			handler_fail(out, RESULT_REJECTED, "bad_payload",
			    "body_base64 is not base64 (RFC 4648, with padding)");
			goto done;
		}
		if (rc < 0) {
			handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory");
			goto done;
		}
	}
	int admit = http_admit(a, json_string_value(ju), json_string_length(ju), &url,
	    out, RESULT_REJECTED, NULL);
	if (admit != 0) {
		if (admit < 0)
			handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory");
		goto done;
	}
	if (jh != NULL && (hdrs = http_headers(jh, &bad, &refused)) == NULL &&
	    bad != NULL) {
		if (*bad == '\0')
			handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory");
		else if (refused)
			handler_fail(out, RESULT_REJECTED, "bad_payload",
			    "header '%s' is taskd's to set: Host, Content-Length "
			    "and hop-by-hop headers (Connection, Keep-Alive, Proxy-*, "
			    "TE, Trailer, Transfer-Encoding, Upgrade) are refused", bad);
		else
			handler_fail(out, RESULT_REJECTED, "bad_payload",
			    "header '%s': names are letters, digits, '-' and '_'; values "
			    "are strings without CR, LF or NUL", bad);
		goto done;
	}
	x.headers = json_object();
	easy = httplib()->easy_init();
	if (x.headers == NULL || easy == NULL) {
		handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory");
		goto done;
	}

	errbuf[0] = '\0';
	httplib()->easy_setopt(easy, CURLOPT_ERRORBUFFER, errbuf);
	httplib()->easy_setopt(easy, CURLOPT_PROTOCOLS_STR, "http,https");
	httplib()->easy_setopt(easy, CURLOPT_FOLLOWLOCATION, 0L);
	httplib()->easy_setopt(easy, CURLOPT_PROXY, "");
	/* The URL is canonical already: curl must not rewrite its path. */
	httplib()->easy_setopt(easy, CURLOPT_PATH_AS_IS, 1L);
	httplib()->easy_setopt(easy, CURLOPT_USERAGENT, "taskd/" PACKAGE_VERSION);
	httplib()->easy_setopt(easy, CURLOPT_WRITEFUNCTION, http_write_cb);
	httplib()->easy_setopt(easy, CURLOPT_WRITEDATA, &x);
	httplib()->easy_setopt(easy, CURLOPT_HEADERFUNCTION, http_header_cb);
	httplib()->easy_setopt(easy, CURLOPT_HEADERDATA, &x);
	httplib()->easy_setopt(easy, CURLOPT_HTTPHEADER, hdrs);
	if (has_body) {
		if (buf_reserve(&reqbody, 0) < 0) {
			handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory");
			goto done;
		}
		httplib()->easy_setopt(easy, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)reqbody.len);
		httplib()->easy_setopt(easy, CURLOPT_POSTFIELDS, reqbody.data);
	}
	if (strcmp(method, "HEAD") == 0)
		httplib()->easy_setopt(easy, CURLOPT_NOBODY, 1L);
	else if (strcmp(method, "GET") != 0 || has_body)
		httplib()->easy_setopt(easy, CURLOPT_CUSTOMREQUEST, method);

	for (int hops = 0;; hops++) {
		CURLcode rc;
		long status = 0;

		httplib()->easy_setopt(easy, CURLOPT_URL, url);
		buf_reset(&x.body);
		json_object_clear(x.headers);
		enum coro_status s = fetch_perform(easy, call->in.deadline, &rc);
		if (s == CORO_CANCELLED)
			goto done;
		if (s == CORO_TIMEOUT) {
			handler_fail(out, RESULT_TIMEOUT, "timeout",
			    "%s %s: no answer before the task's deadline", method, url);
			goto done;
		}
		if (x.too_big) {
			handler_fail(out, RESULT_ERROR, "handler_failed",
			    "%s %s: response larger than %zu bytes", method, url, x.max);
			goto done;
		}
		if (x.oom || rc == CURLE_OUT_OF_MEMORY) {
			handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory");
			goto done;
		}
		if (rc != CURLE_OK) {
			handler_fail(out, RESULT_ERROR, "handler_failed", "%s %s: %s",
			    method, url, errbuf[0] ? errbuf : httplib()->easy_strerror(rc));
			goto done;
		}
		httplib()->easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
		char *loc = NULL;
		if (a != NULL && a->follow_redirects && status >= 300 && status < 400 &&
		    httplib()->easy_getinfo(easy, CURLINFO_REDIRECT_URL, &loc) == CURLE_OK &&
		    loc != NULL) {
			if (hops == HTTP_MAX_REDIRECTS) {
				handler_fail(out, RESULT_ERROR, "handler_failed",
				    "%s: more than %d redirects", url, HTTP_MAX_REDIRECTS);
				goto done;
			}
			/* curl made loc absolute; it is checked like the first. */
			admit = http_admit(a, loc, strlen(loc), &next, out, RESULT_ERROR,
			    url);
			if (admit != 0) {
				if (admit < 0)
					handler_fail(out, RESULT_ERROR, "handler_failed",
					    "out of memory");
				goto done;
			}
			free(url);
			url = next;
			next = NULL;
			/* What browsers and curl do: 303, and POST on 301/302,
			 * become a GET without a body; 307/308 repeat as is. */
			if (status == 303 || ((status == 301 || status == 302) &&
			    strcmp(method, "POST") == 0)) {
				method = "GET";
				httplib()->easy_setopt(easy, CURLOPT_CUSTOMREQUEST, NULL);
				httplib()->easy_setopt(easy, CURLOPT_HTTPGET, 1L);
			}
			continue;
		}
		if (http_result(out, status, &x, binary) < 0)
			handler_fail(out, RESULT_ERROR, "handler_failed", "out of memory");
		break;
	}

done:
	if (easy != NULL)
		httplib()->easy_cleanup(easy);
	httplib()->slist_free_all(hdrs);
	free(url);
	free(next);
	json_decref(x.headers);
	buf_free(&x.body);
	buf_free(&reqbody);
	json_decref(req);
}

const struct handler handler_http = { "http", HANDLER_IO, NULL, handler_co_start, http_co };
