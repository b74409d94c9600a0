#include "notify.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

/*
 * Why not libsystemd's sd_notify(): it reads $NOTIFY_SOCKET on every call,
 * so the variable would have to stay in the environment that every worker
 * and every exec task inherits; and it sends on a blocking socket, so a
 * manager that stopped reading would stall the event loop.  The protocol
 * is a documented, stable interface meant to be reimplemented (sd_notify(3)).
 */

static int notify_fd = -1;
static struct sockaddr_un notify_addr;
static socklen_t notify_addrlen;
static uint64_t notify_wd_usec;

/* "123" -> 123; anything else (sign, junk, overflow, zero) -> 0. */
static uint64_t
notify_parse_u64(const char *s)
{
	if (s == NULL || *s < '0' || *s > '9')
		return 0;
	errno = 0;
	char *end;
	unsigned long long v = strtoull(s, &end, 10);
	if (errno != 0 || *end != '\0')
		return 0;
	return (uint64_t)v;
}

static uint64_t
notify_watchdog_from_env(void)
{
	uint64_t usec = notify_parse_u64(getenv("WATCHDOG_USEC"));
	const char *pid = getenv("WATCHDOG_PID");
	/* The manager may mean the watchdog for another process of the
	 * service (a wrapper that exec'd us keeps its pid, a fork does not). */
	if (pid != NULL && notify_parse_u64(pid) != (uint64_t)getpid())
		return 0;
	return usec;
}

int
notify_init(char *err, size_t errlen)
{
	const char *path = getenv("NOTIFY_SOCKET");
	int rc = 0;

	notify_close();
	notify_wd_usec = 0;
	if (path == NULL || *path == '\0')
		goto out;

	size_t len = strlen(path);
	memset(&notify_addr, 0, sizeof(notify_addr));
	notify_addr.sun_family = AF_UNIX;
	if ((path[0] != '/' && path[0] != '@') || len >= sizeof(notify_addr.sun_path)) {
		snprintf(err, errlen, "NOTIFY_SOCKET is not an absolute socket path or "
		    "an @abstract name of at most %zu bytes: not notifying the service "
		    "manager", sizeof(notify_addr.sun_path) - 1);
		rc = -1;
		goto out;
	}
	memcpy(notify_addr.sun_path, path, len);
	if (path[0] == '@') {
		/* Abstract: a leading NUL, and the length says where it ends. */
		notify_addr.sun_path[0] = '\0';
		notify_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
	} else {
		notify_addrlen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len + 1);
	}
	notify_fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (notify_fd < 0) {
		snprintf(err, errlen, "cannot open a socket to notify the service "
		    "manager: %s", strerror(errno));
		rc = -1;
		goto out;
	}
	notify_wd_usec = notify_watchdog_from_env();
out:
	unsetenv("NOTIFY_SOCKET");
	unsetenv("WATCHDOG_USEC");
	unsetenv("WATCHDOG_PID");
	return rc;
}

bool
notify_enabled(void)
{
	return notify_fd >= 0;
}

uint64_t
notify_watchdog_usec(void)
{
	return notify_fd >= 0 ? notify_wd_usec : 0;
}

int
notify_send(const char *fmt, ...)
{
	if (notify_fd < 0)
		return 0;

	char *msg = NULL;
	va_list ap;
	va_start(ap, fmt);
	int n = vasprintf(&msg, fmt, ap);
	va_end(ap);
	if (n < 0) {
		errno = ENOMEM;
		return -1;
	}
	/* The kernel adds our credentials for a receiver with SO_PASSCRED;
	 * that is how the manager knows the message comes from the main pid. */
	ssize_t sent;
	do
		sent = sendto(notify_fd, msg, (size_t)n, MSG_NOSIGNAL,
		    (const struct sockaddr *)&notify_addr, notify_addrlen);
	while (sent < 0 && errno == EINTR);
	int saved = errno;
	free(msg);
	if (sent < 0) {
		errno = saved;
		return -1;
	}
	return 0;
}

void
notify_close(void)
{
	if (notify_fd >= 0)
		close(notify_fd);
	notify_fd = -1;
}
