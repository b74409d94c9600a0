/* rpcerr: the text of a failed rabbitmq-c RPC (rpcerr.h). */

#include <amqp.h>
#include <amqp_framing.h>

#include "buf.h"
#include "rpcerr.h"

/* The broker's reason, with control bytes made harmless. */
static int
put_reason(struct buf *b, uint16_t code, amqp_bytes_t text)
{
	if (buf_printf(b, "%u ", code) < 0)
		return -1;
	const unsigned char *p = text.bytes;
	for (size_t i = 0; i < text.len; i++) {
		char c = (p[i] < 0x20 || p[i] == 0x7f) ? '?' : (char)p[i];
		if (buf_append(b, &c, 1) < 0)
			return -1;
	}
	return 0;
}

char *
rpcerr_text(amqp_rpc_reply_t r, const char *what)
{
	struct buf b = { 0 };
	int rc = 0;

	switch (r.reply_type) {
	case AMQP_RESPONSE_NORMAL:
		rc = buf_printf(&b, "%s: ok", what);
		break;
	case AMQP_RESPONSE_NONE:
		rc = buf_printf(&b, "%s: no reply from the broker", what);
		break;
	case AMQP_RESPONSE_LIBRARY_EXCEPTION:
		rc = buf_printf(&b, "%s: %s", what,
		    amqp_error_string2(r.library_error));
		break;
	case AMQP_RESPONSE_SERVER_EXCEPTION:
		if (r.reply.id == AMQP_CONNECTION_CLOSE_METHOD) {
			const amqp_connection_close_t *m = r.reply.decoded;
			rc = buf_printf(&b, "%s: broker closed the connection: ",
			    what);
			if (rc == 0)
				rc = put_reason(&b, m->reply_code, m->reply_text);
		} else if (r.reply.id == AMQP_CHANNEL_CLOSE_METHOD) {
			const amqp_channel_close_t *m = r.reply.decoded;
			rc = buf_printf(&b, "%s: broker closed the channel: ", what);
			if (rc == 0)
				rc = put_reason(&b, m->reply_code, m->reply_text);
		} else {
			rc = buf_printf(&b, "%s: unexpected broker method 0x%08x",
			    what, r.reply.id);
		}
		break;
	}
	if (rc < 0) {
		buf_free(&b);
		return NULL;
	}
	return buf_steal(&b, NULL);
}
