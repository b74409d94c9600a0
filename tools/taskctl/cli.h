/*
 * cli: what every taskctl command needs besides the broker: exit codes,
 * argument parsing, a monotonic clock, random ids, signals, printable text.
 */
#ifndef TASKCTL_CLI_H
#define TASKCTL_CLI_H

#include <signal.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <amqp.h>

#include "buf.h"

/* Exit statuses shared by every command (taskctl(1), EXIT STATUS). */
#define EXIT_OK 0
#define EXIT_CLIENT 1   /* usage, connection, refusal, no answer in time */
#define EXIT_TASK 2     /* a task's status was not "ok" */

/* Set by SIGINT/SIGTERM once cli_signals(true) installed the handler. */
extern volatile sig_atomic_t cli_interrupted;

/* Ignores SIGPIPE (a dropped TLS connection raises it inside OpenSSL; a
 * closed stdout must be an error we report) and, with catch_interrupt,
 * sets cli_interrupted on SIGINT/SIGTERM.  Returns 0, or -1 with errno. */
int cli_signals(bool catch_interrupt);

/* CLOCK_MONOTONIC in nanoseconds. */
uint64_t cli_now_ns(void);

/* A non-negative decimal count up to max.  Returns 0, or -1 if s is not one. */
int cli_parse_count(const char *s, uint64_t max, uint64_t *out);
/* A finite, non-negative number.  Returns 0, or -1 if s is not one. */
int cli_parse_number(const char *s, double *out);

/* n random bytes from the kernel.  Returns 0, or -1 with errno. */
int cli_random(void *out, size_t n);
/* A random (version 4) UUID in its 36-character text form. */
int cli_uuid(char out[37]);

/* Sets b to the bytes of in with control bytes replaced by '?', so text a
 * broker or a node sent cannot drive the terminal.  Returns 0 or -1. */
int cli_printable(struct buf *b, amqp_bytes_t in);

#endif
