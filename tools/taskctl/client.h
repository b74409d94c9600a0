/*
 * client: taskctl's broker connection and the messages it reads.
 *
 * Connecting.  A broker argument is one URI or a comma-separated list of
 * them (the nodes of one cluster); they are tried in the order given until
 * one accepts the login.  amqps:// URIs use TLS with peer and host name
 * checks; the CA bundle is the system's unless --cacert names one, and
 * --cert/--key present a client certificate (mutual TLS).  Every step is
 * bounded, so a black-holed address ends in an error, not a hang.  The
 * connection has channel 1 open.
 *
 * Reading.  A message arrives as several frames: basic.deliver (or
 * basic.return), a content header with its properties, then body frames.
 * struct client_rx assembles them: feed it every frame; it says when a
 * message is complete and hands any other method back to the caller.
 * The properties of a complete message point into rabbitmq-c's frame
 * memory, so they are valid until client_rx_release(); call that once the
 * message (or a batch of frames) has been handled.
 */
#ifndef TASKCTL_CLIENT_H
#define TASKCTL_CLIENT_H

#include <stdbool.h>
#include <stdint.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "buf.h"

#define CLIENT_CHANNEL 1
#define CLIENT_DIRECT_REPLY_TO "amq.rabbitmq.reply-to"

/* Where and how to connect.  Strings are borrowed. */
struct client_opts {
	const char *uris;     /* one URI, or several separated by commas */
	const char *cacert;   /* PEM CA bundle, NULL = the system's */
	const char *cert;     /* PEM client certificate, NULL = none */
	const char *key;      /* its private key (with cert) */
};

/* Opens a connection to the first URI that accepts us and opens channel 1.
 * heartbeat is in seconds (0 = off; rabbitmq-c only heartbeats inside its
 * own calls, so only a client that waits in them may turn it on); name
 * shows in the broker's management UI.  Returns the connection, or NULL
 * after saying on stderr why each URI failed (never the URI itself: it
 * may hold a password). */
amqp_connection_state_t client_connect(const struct client_opts *o,
    int heartbeat, const char *name);

/* Closes politely and frees; NULL is fine.  The broker then drops our
 * exclusive queues and consumers. */
void client_close(amqp_connection_state_t conn);

/* Says on stderr why the RPC `what` failed. */
void client_warn_rpc(const char *what, amqp_rpc_reply_t r);
/* 0 if the last RPC succeeded, else -1 after client_warn_rpc. */
int client_check_rpc(amqp_connection_state_t conn, const char *what);

/* Reads one frame, waiting until deadline (cli_now_ns() time; 0 =
 * forever).  Returns 1 with a frame, 0 at the deadline, -1 after saying
 * the connection was lost. */
int client_read_frame(amqp_connection_state_t conn, amqp_frame_t *f,
    uint64_t deadline);

/* For a method no command expects (channel.close, connection.close, ...):
 * says what the broker did.  Returns -1. */
int client_fatal_method(const amqp_frame_t *f);

/* A string header (field kind 'S', or 'x').  Returns true and sets out,
 * pointing into p, if p has it. */
bool client_header_string(const amqp_basic_properties_t *p, const char *key,
    amqp_bytes_t *out);
/* True when a and the C string s hold the same bytes. */
bool client_bytes_equal(amqp_bytes_t a, const char *s);

/* ---- message assembly ----------------------------------------------------- */

enum client_rx_state {
	CLIENT_RX_IDLE,     /* between messages */
	CLIENT_RX_METHOD,   /* deliver/return seen, header awaited */
	CLIENT_RX_BODY,     /* header seen, body_left bytes awaited */
};

struct client_rx {
	enum client_rx_state state;
	bool keep_body;     /* set by the owner: copy bodies into body */
	/* The message in progress, complete after client_rx_frame said so: */
	bool returned;      /* a basic.return (unroutable), not a delivery */
	const amqp_basic_properties_t *props;   /* until client_rx_release */
	uint64_t body_left;
	struct buf body;    /* with keep_body */
};

enum client_rx_result {
	CLIENT_RX_ERROR = -1,   /* a frame out of order, or out of memory (said) */
	CLIENT_RX_MORE = 0,     /* consumed; no message complete yet */
	CLIENT_RX_MESSAGE = 1,  /* a message is complete: read rx->... */
	CLIENT_RX_OTHER = 2,    /* a method other than deliver/return: the
	                         * caller's (f is untouched) */
};

/* Feeds one frame.  Heartbeats and frames of other kinds are consumed. */
enum client_rx_result client_rx_frame(struct client_rx *rx,
    const amqp_frame_t *f);
/* Lets rabbitmq-c reuse its frame memory, unless a message is half read
 * (its properties are still needed). */
void client_rx_release(struct client_rx *rx, amqp_connection_state_t conn);
void client_rx_free(struct client_rx *rx);

#endif
