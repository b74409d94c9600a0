"""The Celery peer of bench/run: the same built-in tasks as taskd (echo,
sleep, burn), configured the way a careful Celery deployment would be for
at-least-once work: acks_late, results over rpc://.

Worker (bench/run starts it with the pool under test):

    python3 -m celery -A celery_app worker -P prefork -c 2 ...

Client, to pre-load tasks with Celery's own message format and client:

    python3 celery_app.py publish TASK COUNT ARG

prints the name of the rpc:// result queue the results will arrive on.
BENCH_BROKER names the broker (amqp://...), BENCH_CELERY_QUEUE the queue.
"""

import os
import sys
import time

from celery import Celery

BROKER = os.environ.get("BENCH_BROKER", "amqp://guest:guest@127.0.0.1:5672//")
QUEUE = os.environ.get("BENCH_CELERY_QUEUE", "bench.celery")

app = Celery("celery_app", broker=BROKER, backend="rpc://")
app.conf.update(
    task_acks_late=True,               # ack after the task ran, as taskd does
    task_default_queue=QUEUE,
    # Transient tasks and results, like the taskd runs: the broker's disk
    # is not what is measured.
    task_default_delivery_mode="transient",
    result_persistent=False,
    task_serializer="json",
    result_serializer="json",
    accept_content=["json"],
    worker_hijack_root_logger=False,
    worker_send_task_events=False,
    task_send_sent_event=False,
    worker_enable_remote_control=False,
)


@app.task(name="echo")
def echo(payload):
    return payload


@app.task(name="sleep")
def sleep(ms):
    # Under the gevent pool Celery has monkey-patched time.sleep, so this
    # waits in the hub like taskd's timer does.
    time.sleep(ms / 1000.0)
    return ms


@app.task(name="burn")
def burn(ms):
    """Spends ms of CPU time computing, like taskd's burn."""
    until = time.process_time() + ms / 1000.0
    x = 88172645463325252
    mask = (1 << 64) - 1
    while time.process_time() < until:
        for _ in range(200):
            x ^= (x << 13) & mask
            x ^= x >> 7
            x ^= (x << 17) & mask
    return ms


TASKS = {"echo": (echo, ""), "sleep": (sleep, 1000), "burn": (burn, 50)}


def publish(task, count, arg):
    fn = TASKS[task][0]
    with app.producer_or_acquire() as producer:
        for _ in range(count):
            fn.apply_async(args=(arg,), producer=producer)
    # The rpc:// backend sends every result to this client's own queue.
    print(app.backend.oid)


if __name__ == "__main__":
    if len(sys.argv) != 5 or sys.argv[1] != "publish" or sys.argv[2] not in TASKS:
        sys.exit("usage: celery_app.py publish echo|sleep|burn COUNT ARG")
    name = sys.argv[2]
    default = TASKS[name][1]
    value = sys.argv[4] if isinstance(default, str) else int(sys.argv[4])
    publish(name, int(sys.argv[3]), value)
