#!/usr/bin/env python3
"""Submit one task to taskd and print its result: RPC over RabbitMQ's direct
reply-to, with pika (Debian: python3-pika).

    submit.py TASK [PAYLOAD]

Environment: AMQP_URL (default amqp://guest:guest@localhost:5672/%2f),
TASKD_QUEUE (default distributed_tasks), TASK_TIMEOUT in seconds (default 30).
Prints the result body; exit status 0 when taskd-status is "ok", 2 for any
other status, 1 when no result came.
"""
import os
import sys
import time
import uuid

import pika

REPLY_TO = "amq.rabbitmq.reply-to"


def main():
    if len(sys.argv) not in (2, 3):
        sys.exit("usage: submit.py TASK [PAYLOAD]")
    task = sys.argv[1]
    payload = sys.argv[2].encode() if len(sys.argv) == 3 else b""
    url = os.environ.get("AMQP_URL", "amqp://guest:guest@localhost:5672/%2f")
    queue = os.environ.get("TASKD_QUEUE", "distributed_tasks")
    timeout = int(os.environ.get("TASK_TIMEOUT", "30"))

    conn = pika.BlockingConnection(pika.URLParameters(url))
    ch = conn.channel()
    ch.confirm_delivery()   # basic_publish now raises if the task is lost
    corr = str(uuid.uuid4())
    result = []

    def on_result(_ch, _method, props, body):
        if props.correlation_id == corr:   # ignore duplicates and strangers
            result.append((props, body))

    # Direct reply-to: consume before publishing, on the publishing channel.
    ch.basic_consume(REPLY_TO, on_result, auto_ack=True)
    ch.basic_publish(
        "", queue, payload,
        pika.BasicProperties(type=task, message_id=corr, correlation_id=corr,
                             reply_to=REPLY_TO, headers={"timeout": timeout}),
        mandatory=True)

    # taskd answers "timeout" itself after `timeout` s; allow it time to.
    deadline = time.monotonic() + timeout + 5
    while not result and time.monotonic() < deadline:
        conn.process_data_events(time_limit=deadline - time.monotonic())
    conn.close()
    if not result:
        sys.exit("no result within %d s: is taskd running?" % (timeout + 5))

    props, body = result[0]
    status = (props.headers or {}).get("taskd-status")
    if isinstance(status, bytes):
        status = status.decode()
    sys.stdout.buffer.write(body + b"\n")
    if status != "ok":
        print("taskd-status: %s" % status, file=sys.stderr)
        sys.exit(2)


if __name__ == "__main__":
    main()
