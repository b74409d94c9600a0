"""The broker going away is a normal event (design §5): the same taskd
process reconnects by itself, and a frozen broker is detected by
heartbeats while taskd's loop keeps running.

Log lines relied on (the wording is taskd's own; matched loosely, case
insensitive): after the broker freezes, a line matching
/heartbeat|lost|dead/ must appear."""

import os
import signal
import time

from taskdtest import TaskdTestCase, broker_ctl, broker_pid

LOST_RE = r"(?i)heartbeat|lost|dead"


class BrokerOutage(TaskdTestCase):
    def test_broker_restart_mid_batch(self):
        """stop_app/start_app while tasks run: persistent tasks on a durable
        queue, results to the durable reply.queue; the same process answers
        every task afterwards."""
        d = self.taskd({"broker.prefetch": 5})
        pid = d.pid
        ids = ["r-%s-%03d" % (self.uid, i) for i in range(150)]
        for cid in ids:
            # No reply_to: results go to reply.queue, which is durable, so
            # taskd publishes them persistent and they survive the restart.
            self.publish(b"50", task="sleep", reply_to=None, correlation_id=cid,
                         persistent=True)
        got = self.collect(25, timeout=30)
        self.client.close()
        broker_ctl("stop_app")
        try:
            # Keep the broker away for a while: taskd must survive failed
            # reconnect attempts, not just one.
            t_end = time.monotonic() + 3
            while time.monotonic() < t_end:
                self.assert_alive(d)
                time.sleep(0.2)
        finally:
            broker_ctl("start_app")
        self.client.connect(timeout=30)
        got = self.collect_ids(ids, timeout=90, got=got)
        self.assert_alive(d)
        self.assertEqual(d.pid, pid)
        for r in got:
            self.assertEqual(r.status, "ok", repr(r))
        # And it consumes new work.  A task of the batch may still be
        # answered a second time (its confirm died with the connection:
        # at-least-once), so the new task's result is picked by its id.
        cid = "after-" + self.uid
        self.publish(b"after the restart", task="echo", correlation_id=cid)
        (res,) = [r for r in self.collect_ids([cid], timeout=15) if r.correlation_id == cid]
        for r in self.more_results(0.5):
            self.assertIn(r.correlation_id, ids + [cid], "an answer to no task: %r" % (r,))
        self.assertEqual(res.body, b"after the restart")
        self.assertRegex(res.worker, r"(?<!\d)%d(?!\d)" % pid)

    def test_broker_frozen(self):
        """SIGSTOP the broker VM for several heartbeat intervals
        (heartbeat 2 s): taskd keeps running, notices the dead connection
        within about two heartbeats, and after SIGCONT consumes again by
        itself."""
        hb = 2
        d = self.taskd({"broker.heartbeat": hb, "broker.connect_timeout": 2.0,
                        "broker.reconnect_max": 2.0})
        res = self.run_task("echo", b"before")
        self.assertEqual(res.status, "ok")
        self.client.close()      # the client would hang on a frozen broker

        vm = broker_pid()
        since = d.log_size()
        os.kill(vm, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            # Detection: rabbitmq-c declares the peer dead after 2 silent
            # heartbeat intervals; allow one more interval of slack.
            line = d.wait_log(LOST_RE, timeout=3 * hb + 0.5, since=since)
            detected = time.monotonic() - t0
            # Keep it frozen for 5 intervals in all; taskd keeps running
            # (its timers fire: the log line above came from them) and
            # does not exit.
            while time.monotonic() - t0 < 5 * hb:
                self.assert_alive(d)
                time.sleep(0.2)
        finally:
            os.kill(vm, signal.SIGCONT)
        print("  (dead connection logged after %.1f s: %s)" % (detected, line.strip()[-100:]),
              end=" ", flush=True)

        self.client.connect(timeout=30)
        # Published after the thaw, answered only if taskd reconnected and
        # consumes again on its own.
        res = self.run_task("echo", b"after the thaw", timeout=40)
        self.assertEqual(res.status, "ok", repr(res))
        self.assertEqual(res.body, b"after the thaw")
        self.assert_alive(d)
        self.assertRegex(res.worker, r"(?<!\d)%d(?!\d)" % d.pid)

    def test_results_in_a_clients_durable_queue_survive_restart(self):
        """Persistent tasks whose reply_to is the client's own durable
        queue: their results are persistent too, so answered tasks whose
        results wait in that queue survive a broker restart (the tasks are
        acked by then: a transient result would be a lost answer)."""
        self.taskd({"reply.queue": ""})
        mine = self.use_queue(self.prefix + ".mine")
        self.client.declare(mine, durable=True)
        ids = ["p-%s-%02d" % (self.uid, i) for i in range(20)]
        for cid in ids:
            self.publish(cid.encode(), task="echo", reply_to=mine, correlation_id=cid,
                         persistent=True)
        self.wait_for("every result in the client's queue, every task acked", lambda: (
            self.queue_stats(mine)[0] == len(ids) and
            self.queue_stats(self.queue)[:2] == (0, 0)), 20)
        self.client.close()
        broker_ctl("stop_app")
        broker_ctl("start_app")
        self.client.connect(timeout=30)
        got = self.collect_ids(ids, timeout=30, queue=mine)
        for r in got:
            self.assertEqual(r.status, "ok", repr(r))
            self.assertEqual(r.props.delivery_mode, 2, repr(r))
