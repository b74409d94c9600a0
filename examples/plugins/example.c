/*
 * An example taskd plugin with one handler of each kind:
 *
 *   wordcount (cpu)  payload: text; result: "lines words bytes\n", as wc(1)
 *                    counts them (words are runs of non-blank bytes)
 *   portcheck (io)   payload: "host:port" (an IPv4 address or a name in
 *                    /etc/hosts, no DNS wait); result: "open" or "closed",
 *                    after a non-blocking connect() awaited with
 *                    taskd_wait_fd()
 *
 * Build:  cc -shared -fPIC $(pkg-config --cflags taskd) -o example.so example.c
 * Config: plugins = [ "/usr/lib/taskd/example.so" ];
 *         tasks = ( { name = "wc"; handler = "wordcount"; },
 *                   { name = "port"; handler = "portcheck"; timeout = 5.0; } );
 */
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include <taskd/plugin.h>

static void
wordcount(const struct taskd_input *in, struct taskd_output *out)
{
	const unsigned char *p = in->payload;
	unsigned long long lines = 0, words = 0;
	int inword = 0;

	for (size_t i = 0; i < in->len; i++) {
		unsigned char c = p[i];
		if (c == '\n')
			lines++;
		int blank = c == ' ' || c == '\t' || c == '\n' || c == '\r' ||
		    c == '\v' || c == '\f';
		if (!blank && !inword)
			words++;
		inword = !blank;
		/* A huge payload checks the clock now and then. */
		if ((i & 0xfffff) == 0xfffff && in->deadline > 0 &&
		    taskd_clock() > in->deadline) {
			taskd_output_fail(out, TASKD_TIMEOUT, "timeout",
			    "wordcount did not finish before the deadline");
			return;
		}
	}
	char line[96];
	int n = snprintf(line, sizeof(line), "%llu %llu %zu\n", lines, words, in->len);
	if (taskd_output_append(out, line, (size_t)n) < 0) {
		taskd_output_fail(out, TASKD_ERROR, "handler_failed", "out of memory");
		return;
	}
	taskd_output_set_content_type(out, "text/plain");
}

static void
portcheck(const struct taskd_input *in, struct taskd_output *out)
{
	char target[300], *colon;
	if (in->len == 0 || in->len >= sizeof(target)) {
		taskd_output_fail(out, TASKD_REJECTED, "bad_payload", "want host:port");
		return;
	}
	memcpy(target, in->payload, in->len);
	target[in->len] = '\0';
	target[strcspn(target, "\r\n")] = '\0';
	colon = strrchr(target, ':');
	if (colon == NULL || colon == target || colon[1] == '\0') {
		taskd_output_fail(out, TASKD_REJECTED, "bad_payload", "want host:port");
		return;
	}
	*colon = '\0';

	/* AI_NUMERICHOST-like behaviour for names keeps the loop unblocked:
	 * only literal addresses and /etc/hosts are accepted. */
	struct addrinfo hints = { .ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM,
	    .ai_flags = AI_NUMERICSERV | AI_NUMERICHOST }, *ai = NULL;
	if (getaddrinfo(target, colon + 1, &hints, &ai) != 0) {
		taskd_output_fail(out, TASKD_REJECTED, "bad_payload",
		    "'%s:%s' is not an address and a port number", target, colon + 1);
		return;
	}
	int fd = socket(ai->ai_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
	if (fd < 0) {
		freeaddrinfo(ai);
		taskd_output_fail(out, TASKD_ERROR, "handler_failed", "socket: %s",
		    strerror(errno));
		return;
	}
	int rc = connect(fd, ai->ai_addr, ai->ai_addrlen);
	freeaddrinfo(ai);
	const char *answer = "closed";
	if (rc == 0) {
		answer = "open";
	} else if (errno == EINPROGRESS) {
		enum taskd_wait w = taskd_wait_fd(fd, TASKD_WRITE, 0);
		if (w == TASKD_WAIT_CANCELLED) {
			close(fd);
			return;
		}
		int err = 0;
		socklen_t len = sizeof(err);
		if (w == TASKD_WAIT_READY &&
		    getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err == 0)
			answer = "open";
	}
	close(fd);
	if (taskd_output_append(out, answer, strlen(answer)) < 0)
		taskd_output_fail(out, TASKD_ERROR, "handler_failed", "out of memory");
	else
		taskd_output_set_content_type(out, "text/plain");
}

static const struct taskd_handler handlers[] = {
	{ "wordcount", TASKD_KIND_CPU, wordcount },
	{ "portcheck", TASKD_KIND_IO, portcheck },
	{ NULL, 0, NULL },
};

const struct taskd_plugin taskd_plugin = {
	.abi = TASKD_PLUGIN_ABI,
	.name = "example",
	.version = "1.0",
	.handlers = handlers,
	.init = NULL,
};
