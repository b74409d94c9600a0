/*
 * fuzz_envelope: a task message's properties as the broker sends them.
 * The input is the property part of an AMQP content header frame (the
 * property flags and what follows, after class, weight and body size):
 * rabbitmq-c's own decoder (amqp_decode_properties, what the frame parser
 * calls) turns it into amqp_basic_properties_t, then envelope_parse reads
 * it the way dispatch.c does, and result_build makes the reply's
 * properties from the envelope, which must encode again.
 *
 * Checked besides memory errors: parsing never fails as a whole (short of
 * memory), a refused message still has a task id, a correlation and a
 * message; an accepted one has a printable task name of at most 255 bytes.
 */
#include <string.h>

#include <amqp.h>
#include <amqp_framing.h>

#include "envelope.h"
#include "fuzz.h"
#include "result.h"

static void
check_envelope(const struct envelope *env)
{
	FUZZ_CHECK(env->task_id != NULL && env->task_id[0] != '\0');
	FUZZ_CHECK(env->correlation_id != NULL && env->correlation_len > 0);
	if (env->error != ENVELOPE_OK) {
		FUZZ_CHECK(env->message != NULL);
		FUZZ_CHECK(strcmp(envelope_error_code(env->error), "rejected") != 0);
		return;
	}
	FUZZ_CHECK(env->message == NULL && env->task != NULL);
	size_t n = strlen(env->task);
	FUZZ_CHECK(n > 0 && n <= 255);
	for (size_t i = 0; i < n; i++)
		FUZZ_CHECK(env->task[i] > 0x20 && env->task[i] < 0x7f);
	FUZZ_CHECK(env->timeout >= 0);
}

/* The reply's properties are built from the envelope (dispatch.c) and
 * must go back on the wire. */
static void
check_result(const struct envelope *env, bool persistent)
{
	struct result_info info = {
		.status = env->error == ENVELOPE_OK ? RESULT_OK : RESULT_REJECTED,
		.task = env->task,
		.task_id = env->task_id,
		.correlation_id = env->correlation_id,
		.correlation_len = env->correlation_len,
		.content_type = env->content_type,
		.node_id = "fuzz:1",
		.attempt = 1,
		.duration_us = 1,
		.timestamp = 1700000000,
		.persistent = persistent,
	};
	struct result_msg msg;
	result_build(&msg, &info);
	static unsigned char out[131072];
	amqp_bytes_t enc = { sizeof(out), out };
	int n = amqp_encode_properties(AMQP_BASIC_CLASS, &msg.props, enc);
	/* Every field came from a short string or is ours: it must fit. */
	FUZZ_CHECK(n >= 0);
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	amqp_pool_t pool;
	init_amqp_pool(&pool, 4096);
	void *decoded = NULL;
	/* The library decodes in place from the frame buffer; give it a copy
	 * of exactly the input's size so ASan catches a read past it. */
	unsigned char *copy = malloc(size ? size : 1);
	if (copy == NULL)
		return 0;
	memcpy(copy, data, size);
	amqp_bytes_t raw = { size, copy };
	if (amqp_decode_properties(AMQP_BASIC_CLASS, &pool, raw, &decoded) == 0) {
		const amqp_basic_properties_t *p = decoded;
		static const unsigned char uuid[16] = { 1, 2, 3, 4, 5, 6, 7, 8,
		    9, 10, 11, 12, 13, 14, 15, 16 };
		/* Both ways a deployment runs: with and without a default task
		 * and a reply queue; a body just over and under the limit. */
		for (int v = 0; v < 2; v++) {
			struct envelope_limits lim = {
				.max_payload = v ? size : 16,
				.default_task = v ? "echo" : "",
				.reply_queue = v ? "distributed_results" : "",
			};
			struct envelope env = { 0 };
			if (envelope_parse(p, size, &lim, uuid, &env) < 0)
				continue;
			check_envelope(&env);
			bool persistent = envelope_result_persistent(&env, v);
			FUZZ_CHECK(!persistent || env.reply_to != NULL);
			check_result(&env, persistent);
			envelope_free(&env);
		}
	}
	/* A message without properties is a case of its own. */
	struct envelope_limits lim = { .max_payload = 0, .default_task = "", .reply_queue = "" };
	struct envelope env = { 0 };
	static const unsigned char zero[16];
	if (size == 0 && envelope_parse(NULL, 0, &lim, zero, &env) == 0) {
		FUZZ_CHECK(env.error == ENVELOPE_NO_TASK);
		envelope_free(&env);
	}
	free(copy);
	empty_amqp_pool(&pool);
	return 0;
}
