"""Thousands of rejects to a broker that does not read (design §5: the
loop never blocks on the broker).

rabbitmq-c waits with no deadline when the socket cannot take a whole
frame, so every write taskd makes must fit in the send buffer.  Two ways a
broker stops reading:

  - a resource alarm: RabbitMQ stops reading a connection as soon as it
    publishes during the alarm (state "blocked"), until the alarm clears;
  - a frozen broker (a hung VM: SIGSTOP here), which reads nothing at all
    until heartbeats give up on it.

In both, a stop with thousands of tasks in flight ends in thousands of
settlements: the tasks waiting for a slot are rejected back to the queue
at once, the running ones when the grace period ends.  taskd must go on
running its loop and exit within a bound, and no task may be lost: once
the broker reads again, every task is back in the queue or answered.

On loopback the kernel's buffers are large (taskd's send buffer autotunes
to 1-4 MB, measured), and a reject is 21 bytes, so rejects alone would
take about 200,000 to fill them; the frozen-broker case first fills the
send buffer with results, as a burst of answers does in production when
the broker stalls.
"""

import os
import signal
import time

import pika

from taskdtest import (DEFAULT_TASKS, TaskdTestCase, broker_ctl, broker_pid,
                       connection_parameters, sockets_of)

N_WAITING = 20000
# A 4 MB send buffer that taskd's budget filled to at least two thirds has
# 700 KB free: 60,000 rejects of 21 bytes (17 of them charged, measured)
# overflow it.
N_FROZEN = 60000


def tx_queue(pid):
    """Bytes in the send queues of pid's TCP sockets to the broker."""
    from taskdtest import AMQP_PORT
    mine = sockets_of(pid)
    total = 0
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            if parts[9] in mine and int(parts[2].split(":")[1], 16) == AMQP_PORT:
                total += int(parts[4].split(":")[0], 16)
    return total


class RejectsToABrokerThatDoesNotRead(TaskdTestCase):
    def bulk_publish(self, tasks):
        """Publishes [(task, body, correlation_id)] on a channel without
        confirms (fast); returns once the broker has them all."""
        conn = pika.BlockingConnection(connection_parameters())
        try:
            ch = conn.channel()
            ch.queue_declare(self.queue, durable=True)
            for task, body, cid in tasks:
                ch.basic_publish("", self.queue, body, pika.BasicProperties(
                    type=task, correlation_id=cid, reply_to=self.reply_queue))
            ch.queue_declare(self.queue, passive=True)  # a round trip: all in
        finally:
            conn.close()

    def taken(self, n):
        self.wait_for("%d tasks taken by taskd (ready 0, unacked >= %d)" % (n, n), lambda: (
            lambda st: st is not None and st[0] == 0 and st[1] >= n)(
                self.queue_stats(self.queue)), 90)

    def stop_within(self, d, bound, unstick):
        """SIGTERM; fails unless taskd exits 0 within bound seconds.  On a
        timeout unstick() lets the broker read again, to learn whether
        taskd was stuck on it."""
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(bound)
        except Exception:
            took = time.monotonic() - t0
            unstick()
            try:
                rc = d.proc.wait(60)
            except Exception:
                rc = None
            self.fail("taskd did not exit within %.0f s of SIGTERM while the broker "
                      "did not read (%.1f s; exit status %s once it read again)%s"
                      % (bound, took, rc, self.daemon_logs()))
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit status" + self.daemon_logs())
        return took

    def check_nothing_lost(self, ids):
        """Every id is back in the task queue or was answered."""
        self.client.connect(timeout=30)
        # The broker takes a while to requeue tens of thousands of tasks
        # rejected one by one (minutes on a loaded machine).
        self.wait_for("no task left unacked", lambda: self.queue_stats(self.queue)[1] == 0, 240, 0.5)
        answered = set(r.correlation_id for r in self.more_results(5.0))
        queued = set(r.correlation_id for r in self.client.consume_until(
            self.queue, lambda got: len(got) >= len(ids) - len(answered), 120))
        missing = set(ids) - answered - queued
        self.assertEqual(missing, set(), "%d tasks lost (e.g. %s); %d answered, %d queued"
                         % (len(missing), sorted(missing)[:5], len(answered), len(queued)))

    def connection_state(self):
        out = broker_ctl("list_connections", "client_properties", "state")
        return set(line.rsplit("\t", 1)[-1].strip()
                   for line in out.splitlines() if "taskd" in line)

    def test_resource_alarm(self):
        """A memory alarm blocks taskd's connection; a stop then rejects
        20,000 tasks waiting for a slot and 200 running ones."""
        grace = 1.0
        d = self.taskd({"shutdown.grace": grace, "io.max_concurrency": 200,
                        "broker.prefetch": N_WAITING + 300, "limits.timeout": 900.0})
        # Results that come due one after another once the alarm is on: the
        # first one published blocks the connection.
        triggers = [("sleep", b"%d" % (4000 + 1000 * i), "trig-%s-%02d" % (self.uid, i))
                    for i in range(30)]
        slow = [("sleep", b"600000", "slow-%s-%05d" % (self.uid, i))
                for i in range(N_WAITING + 170)]
        self.bulk_publish(triggers + slow)
        self.taken(len(slow))
        self.client.close()     # its connection would be blocked too

        def alarm(on):
            broker_ctl("set_vm_memory_high_watermark", "0.0000001" if on else "0.9")
        alarm(True)
        self.addCleanup(alarm, False)
        self.wait_for("taskd's connection blocked by the alarm",
                      lambda: "blocked" in self.connection_state(), 45)

        took = self.stop_within(d, grace + 12, lambda: alarm(False))
        print("  (exit %.1f s after SIGTERM)" % took, end=" ", flush=True)
        alarm(False)
        self.check_nothing_lost([cid for _, _, cid in triggers + slow])

    def test_frozen_broker_with_a_full_send_buffer(self):
        """The broker freezes while a burst of results is due: they fill
        taskd's send buffer as far as taskd lets them; a stop then rejects
        60,000 waiting tasks into that buffer."""
        grace = 1.0
        # One slot, held by a gate task until the broker is frozen; then
        # 1,500 echoes of 16 KiB answer in a burst (24 MB, more than the
        # kernel buffers on both ends hold), and 60,000 sleeps wait.
        opened = os.path.join(self.workdir, "gate-open")
        gate_task = {"name": "gate", "kind": "io", "timeout": 600.0, "exec": [
            "/bin/sh", "-c", "while [ ! -e '%s' ]; do sleep 0.05; done" % opened]}
        d = self.taskd({"shutdown.grace": grace, "io.max_concurrency": 1,
                        "broker.prefetch": N_FROZEN + 1600, "limits.timeout": 900.0,
                        "broker.max_unconfirmed": 2000, "broker.heartbeat": 60},
                       tasks=DEFAULT_TASKS + [gate_task])
        gate = [("gate", b"", "gate-%s" % self.uid)]
        burst = [("echo", os.urandom(16384), "echo-%s-%04d" % (self.uid, i))
                 for i in range(1500)]
        slow = [("sleep", b"600000", "slow-%s-%05d" % (self.uid, i))
                for i in range(N_FROZEN)]
        self.bulk_publish(gate + burst + slow)
        self.taken(len(gate + burst + slow))
        self.client.close()

        vm = broker_pid()
        os.kill(vm, signal.SIGSTOP)
        frozen = [True]

        def thaw():
            if frozen[0]:
                os.kill(vm, signal.SIGCONT)
                frozen[0] = False
        self.addCleanup(thaw)
        with open(opened, "w"):
            pass
        # The burst goes out until taskd's budget says the buffer is full.
        last = [-1, time.monotonic()]

        def settled():
            q = tx_queue(d.pid)
            if q != last[0]:
                last[:] = [q, time.monotonic()]
                return False
            return q > 0 and time.monotonic() - last[1] >= 1.0
        self.wait_for("taskd's send queue filled by the burst and steady", settled, 30, 0.1)
        print("  (send queue %d bytes)" % last[0], end=" ", flush=True)

        took = self.stop_within(d, grace + 12, thaw)
        print("  (exit %.1f s after SIGTERM)" % took, end=" ", flush=True)
        thaw()
        self.check_nothing_lost([cid for _, _, cid in gate + burst + slow])
