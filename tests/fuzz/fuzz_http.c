/*
 * fuzz_http: the pure parts of the http handler (src/handler_http.c), on
 * both sides of the wire.  The input is
 *
 *   request JSON [ NUL response ]
 *
 * The request is the task's payload and goes through the handler's own
 * body (http_co) with fetch_perform replaced by a stub below, so
 * everything up to the first connection runs as in the daemon: the JSON
 * parse, the field checks, base64, curl's URL normaliser, the allow list
 * and the header list.  The stub answers "could not connect" without any
 * I/O.  The response part, when present, is what a server sends: header
 * lines (one per '\n') and then, after an empty line, the body; it goes
 * through the handler's curl callbacks and http_result, whose output must
 * be valid JSON.
 *
 * The handler's file is included rather than linked so that the static
 * callbacks can be reached; the linker then takes this file's
 * handler_http and fetch_perform instead of libtaskd.a's.
 */
#include "../../src/handler_http.c"

#include "fuzz.h"

static const char *allow[] = {
	"http://127.0.0.1:8080/api/", "https://example.com", NULL,
};
static int fetches;

enum coro_status
fetch_perform(CURL *easy, double deadline, CURLcode *result)
{
	(void)easy;
	(void)deadline;
	fetches++;
	*result = CURLE_COULDNT_CONNECT;
	return CORO_READY;
}

static void
request(const uint8_t *data, size_t size, bool follow)
{
	struct handler_args args = {
		.refs = 1,
		.allow = (char **)allow,
		.nallow = 2,
		.follow_redirects = follow,
		.max_response = 1 << 20,
	};
	struct handler_call call = { 0 };
	call.in.payload = data;
	call.in.len = size;
	call.in.args = &args;
	int before = fetches;
	handler_http.co(&call);
	struct handler_output *out = &call.out;
	/* No request can succeed here: the stub never connects. */
	FUZZ_CHECK(out->status != RESULT_OK && out->error_code != NULL);
	FUZZ_CHECK(out->body.len > 0);
	if (fetches > before) {
		/* Reached the network only past every check. */
		FUZZ_CHECK(out->status == RESULT_ERROR &&
		    strcmp(out->error_code, "handler_failed") == 0);
	} else {
		FUZZ_CHECK(strcmp(out->error_code, "handler_failed") != 0 ||
		    out->status == RESULT_ERROR);
	}
	buf_free(&out->body);
}

static void
response(const char *p, size_t n, bool binary)
{
	struct http_xfer x = { .max = 4096 };
	struct handler_output out = { 0 };
	x.headers = json_object();
	if (x.headers == NULL)
		return;
	/* Header lines as curl hands them over: each with its line end. */
	size_t at = 0;
	bool body = false;
	while (at < n && !body) {
		const char *nl = memchr(p + at, '\n', n - at);
		size_t len = nl ? (size_t)(nl - (p + at)) + 1 : n - at;
		char *line = malloc(len);
		if (line == NULL)
			break;
		memcpy(line, p + at, len);
		body = len == 1 || (len == 2 && line[0] == '\r');
		size_t took = http_header_cb(line, 1, len, &x);
		FUZZ_CHECK(took == len || x.oom);
		free(line);
		at += len;
	}
	if (at < n) {
		size_t took = http_write_cb((char *)p + at, 1, n - at, &x);
		FUZZ_CHECK(took == n - at || x.too_big || x.oom);
	}
	if (!x.too_big && !x.oom && http_result(&out, 200, &x, binary) == 0) {
		json_error_t err;
		/* \u0000 is valid JSON; jansson wants to be told. */
		json_t *j = json_loadb(out.body.data, out.body.len, JSON_ALLOW_NUL, &err);
		if (j == NULL)
			fprintf(stderr, "not JSON: %s: %.*s\n", err.text,
			    (int)out.body.len, out.body.data);
		FUZZ_CHECK(j != NULL && json_is_object(j));
		json_decref(j);
	}
	buf_free(&out.body);
	buf_free(&x.body);
	json_decref(x.headers);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const uint8_t *nul = memchr(data, '\0', size);
	size_t req = nul ? (size_t)(nul - data) : size;
	/* The payload in a buffer of its own size (json_loadb reads len). */
	uint8_t *copy = malloc(req ? req : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, req);
	request(copy, req, size & 1);
	free(copy);
	if (nul != NULL)
		response((const char *)nul + 1, size - req - 1, size & 2);
	return 0;
}
