/*
 * notify: telling the service manager how the daemon is doing.
 *
 * This is systemd's notification protocol (sd_notify(3)): one AF_UNIX
 * datagram of newline-separated KEY=VALUE lines to the socket named by
 * $NOTIFY_SOCKET (a leading '@' means the abstract namespace).  The
 * messages taskd sends:
 *
 *   READY=1                  start-up done (consuming, or the first broker
 *                            attempt failed: a broker outage never blocks
 *                            the boot), and again after each reload
 *   STATUS=...               one line for `systemctl status`
 *   RELOADING=1              SIGHUP seen, reading the file again
 *   STOPPING=1               SIGTERM/SIGINT seen, draining
 *   EXTEND_TIMEOUT_USEC=N    the drain needs N more microseconds
 *   WATCHDOG=1               the event loop is alive
 *
 * notify_init() reads the environment once and then removes NOTIFY_SOCKET,
 * WATCHDOG_USEC and WATCHDOG_PID from it, so worker processes and the
 * programs of exec tasks never inherit them: only the main process talks
 * to the manager (the unit says NotifyAccess=main as well).  The socket is
 * non-blocking and close-on-exec: a manager that stops reading loses
 * messages, it never stalls the event loop.
 *
 * Outside systemd (no NOTIFY_SOCKET) every call is a cheap no-op.
 * The state is process-wide, like the log's; a forked child must not call
 * these functions (it closes inherited fds anyway).
 */
#ifndef TASKD_NOTIFY_H
#define TASKD_NOTIFY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Reads NOTIFY_SOCKET, WATCHDOG_USEC and WATCHDOG_PID, removes them from
 * the environment and opens the socket.  Returns 0 (also when there is no
 * manager to talk to), or -1 with a message in err (errlen bytes) when
 * NOTIFY_SOCKET is set but unusable; notifying is then off. */
int notify_init(char *err, size_t errlen);

/* True when a manager listens (notify_init succeeded with a socket). */
bool notify_enabled(void);

/* The watchdog interval the manager expects pings within, in
 * microseconds, or 0 when no watchdog applies to this process
 * (WATCHDOG_USEC unset or invalid, or WATCHDOG_PID names another process). */
uint64_t notify_watchdog_usec(void);

/* Sends one message, formatted like printf; several lines may be joined
 * with '\n'.  Returns 0 when sent or when notifying is off, -1 with errno
 * set otherwise (EAGAIN: the manager's queue is full; the message is lost). */
int notify_send(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Closes the socket; later calls are no-ops. */
void notify_close(void);

#endif
