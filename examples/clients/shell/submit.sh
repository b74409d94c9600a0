#!/bin/sh
# Submit one task to taskd and print its result, with the rabbitmq-c command
# line tools (Debian: amqp-tools).
#
#     submit.sh TASK [PAYLOAD]
#
# Environment: AMQP_URL (default amqp://guest:guest@localhost:5672/%2f),
# TASKD_QUEUE (default distributed_tasks), TASK_TIMEOUT in seconds (default 30).
#
# amqp-publish cannot set the `type` or `correlation_id` properties, so the
# task name goes in the `task` header, and the result comes back on a reply
# queue of our own instead of direct reply-to (which needs publisher and
# consumer on one channel): whatever arrives there is our result.
# amqp-consume hands a command only the body, not the headers, so this
# client cannot tell an "ok" result from an error: use `taskctl submit`
# where the exit status must say.
set -eu

[ $# -ge 1 ] && [ $# -le 2 ] || { echo "usage: submit.sh TASK [PAYLOAD]" >&2; exit 1; }
task=$1
payload=${2:-}
url=${AMQP_URL:-amqp://guest:guest@localhost:5672/%2f}
queue=${TASKD_QUEUE:-distributed_tasks}
timeout=${TASK_TIMEOUT:-30}

# A server-named queue; removed on the way out, whatever happens.
reply=$(amqp-declare-queue -u "$url" -q "")
trap 'amqp-delete-queue -u "$url" -q "$reply" >/dev/null 2>&1 || true' EXIT INT TERM

amqp-publish -u "$url" -r "$queue" -t "$reply" \
	-H "task: $task" -H "timeout: $timeout" -b "$payload"

# One message, then exit; bounded, since a missing taskd means no answer.
if ! timeout $((timeout + 5)) amqp-consume -u "$url" -q "$reply" -c 1 -A -- cat; then
	echo "submit.sh: no result within $((timeout + 5)) s: is taskd running?" >&2
	exit 1
fi
echo
