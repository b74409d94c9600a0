/*
 * frame: the messages between the daemon and its CPU workers (pure code,
 * no I/O).
 *
 * The channel is a SOCK_STREAM socketpair, so every message carries its
 * length:
 *
 *   u32 length of what follows | u8 type | fields
 *
 * Integers are in host order (both ends are the same binary on the same
 * machine).  A string is u32 length, the bytes, and a NUL that is checked
 * on decode, so decoded strings point straight into the frame; a byte
 * string (payload, body) is u32 length and the bytes.  A decoder checks
 * every bound and fails when bytes are left over: the worker runs task
 * code, so the parent treats what it sends as untrusted (a bad frame kills
 * that worker; the task is retried like after a crash).
 *
 * Messages:
 *   HELLO  parent -> worker, first: slot number, plugin paths to load
 *   READY  worker -> parent: its slot; the plugins loaded, tasks welcome
 *   TASK   parent -> worker: seq, deadline, flags, result size limit,
 *          handler name, argv
 *          (exec tasks), content type, payload
 *   CHILD  worker -> parent: seq, the process group of the program an exec
 *          task started (so a timeout kills the program too)
 *   RESULT worker -> parent: seq, status, error code, content type, the
 *          worker's RSS when asked for, body
 */
#ifndef TASKD_FRAME_H
#define TASKD_FRAME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#include "buf.h"

enum frame_type {
	FRAME_HELLO = 1,
	FRAME_TASK = 2,
	FRAME_CHILD = 3,
	FRAME_RESULT = 4,
	FRAME_READY = 5,
};

/* The length prefix. */
#define FRAME_HEADER 4
/* No frame is larger: a payload is at most limits.max_payload (1 GiB). */
#define FRAME_MAX (((size_t)1 << 30) + 65536)

/* The longest error code or content type a RESULT may carry; a worker
 * sends none longer (it falls back to a generic code, or none). */
#define FRAME_STR_MAX 1024

/* TASK flags */
#define FRAME_MEASURE_RSS 1u   /* report RSS in the result (cpu.max_memory) */

struct frame_hello {
	uint32_t slot;
	const char *const *plugins;   /* NULL-terminated; decoded: malloc'd vector */
};

struct frame_task {
	uint64_t seq;
	double deadline;              /* handler_clock() seconds, 0 = none */
	uint32_t flags;
	uint64_t max_result;          /* largest body to send back; 0 = no limit */
	const char *handler;
	const char *const *argv;      /* NULL-terminated, or NULL (not exec) */
	const char *content_type;     /* NULL = none */
	const void *payload;
	size_t len;
};

struct frame_child {
	uint64_t seq;
	int32_t pgid;
};

struct frame_result {
	uint64_t seq;
	uint8_t status;               /* enum result_status, checked by the caller */
	uint64_t rss;                 /* bytes; 0 = not measured */
	const char *error_code;       /* NULL = none */
	const char *content_type;     /* NULL = none (the input's) */
	const void *body;
	size_t len;
};

/* Encoders append one whole frame to b.  Return 0, or -1 when memory ran
 * out or a field is too long for the format (b then keeps what it had). */
int frame_put_hello(struct buf *b, const struct frame_hello *m);
int frame_put_task(struct buf *b, const struct frame_task *m);
int frame_put_child(struct buf *b, const struct frame_child *m);
int frame_put_ready(struct buf *b, uint32_t slot);
int frame_put_result(struct buf *b, const struct frame_result *m);

/* The total size (header included) of the frame at the start of p[0..n):
 * 0 when more bytes are needed to tell, (size_t)-1 when the length is
 * impossible (zero or above max). */
size_t frame_size(const void *p, size_t n, size_t max);

/* The largest length field (the u32 prefix: what follows it) of a
 * well-formed frame of type from a worker (READY, CHILD, RESULT with a body
 * of at most max_body bytes and strings of at most FRAME_STR_MAX), for
 * frame_size's max; 0 for a type a worker never sends. */
size_t frame_max_len(int type, size_t max_body);

/* The type of the frame at p[0..n), once n covers the header and the type
 * byte; 0 before. */
int frame_type(const void *p, size_t n);

/* Decoders of one complete frame p[0..n); the decoded strings point into
 * p, which must stay alive and unchanged while they are used.  Return 0,
 * or -1 when the frame is not exactly a well-formed message of that type.
 * Vectors (plugins, argv) are malloc'd; free them with frame_free_vec(). */
int frame_get_hello(const void *p, size_t n, struct frame_hello *m);
int frame_get_task(const void *p, size_t n, struct frame_task *m);
int frame_get_child(const void *p, size_t n, struct frame_child *m);
int frame_get_ready(const void *p, size_t n, uint32_t *slot);
int frame_get_result(const void *p, size_t n, struct frame_result *m);
void frame_free_vec(const char *const *v);

#endif
