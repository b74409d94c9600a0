"""Graceful stop (design §5): on SIGTERM the tasks that finish within
shutdown.grace are answered and acked; the rest, I/O and CPU alike, are
rejected with requeue and wait in the queue for another node; the daemon
exits 0 and leaves no worker behind.  A second SIGTERM stops at once and
the broker requeues whatever was unacked.  No task is lost either way."""

import os
import signal
import time

from test_pool import worker_pids
from taskdtest import TaskdTestCase


def is_worker(pid):
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            return f.read().startswith(b"taskd: cpu worker")
    except OSError:
        return False


class Drain(TaskdTestCase):
    def publish_set(self, tag, tasks):
        """Publishes [(task, body)] with ids tag-i; returns {id: (task, body)}."""
        want = {}
        for i, (task, body) in enumerate(tasks):
            cid = "%s-%s-%02d" % (tag, self.uid, i)
            want[cid] = (task, body)
            self.publish(body, task=task, correlation_id=cid)
        return want

    def leftover(self):
        """Correlation ids of the tasks waiting in the task queue (taken
        off it with basic.get)."""
        ids = []
        while True:
            m = self.client.get(self.queue)
            if m is None:
                return ids
            ids.append(m.correlation_id)

    def test_past_grace_requeued_within_grace_answered(self):
        grace = 1.0
        d = self.taskd({"shutdown.grace": grace, "cpu.workers": 1})
        workers = set(worker_pids(d.pid))
        self.assertEqual(len(workers), 1, "one cpu worker")
        quick = self.publish_set("quick", [("sleep", b"200"), ("echo", b"a"),
                                           ("sha256", b"b"), ("sleep", b"400")])
        slow = self.publish_set("slow", [("sleep", b"30000"), ("sleep", b"30000"),
                                         ("burn", b"30000")])
        # The quick ones are answered before the stop (the sha256 ran before
        # the burn took the only worker); the slow ones are still running.
        got = self.collect_ids(quick, timeout=10)
        self.wait_running(len(slow))

        t0 = time.monotonic()
        d.stop(expect=0, timeout=grace + 15)
        took = time.monotonic() - t0
        self.assertLess(took, grace + 5, "the stop took %.1f s with a grace of %.1f s"
                        % (took, grace))
        self.wait_for("the cpu worker gone with the daemon",
                      lambda: not any(is_worker(p) for p in workers), 5)

        # The slow tasks are back in the queue, ready for another node; none
        # of them was answered, and nothing is left unacked.
        stats = self.queue_stats(self.queue)
        self.assertEqual(stats[:2], (len(slow), 0),
                         "after the drain: (ready, unacked) in the task queue\n" + d.log_tail())
        self.assertEqual(sorted(self.leftover()), sorted(slow))
        extra = self.more_results(0.5)
        answered = set(r.correlation_id for r in got + extra)
        self.assertEqual(answered & set(slow), set(),
                         "a task past the grace period was answered and requeued")
        self.assertEqual(answered, set(quick))
        for r in got:
            self.assertEqual(r.status, "ok", repr(r))

    def test_second_signal_stops_at_once(self):
        d = self.taskd({"shutdown.grace": 60.0})
        slow = self.publish_set("slow", [("sleep", b"30000")] * 3)
        self.wait_running(len(slow))
        since = d.log_size()
        d.proc.send_signal(signal.SIGTERM)
        d.wait_log("stopping", timeout=5, since=since)
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(5)
        except Exception:
            self.fail("taskd did not exit within 5 s of a second SIGTERM\n" + d.log_tail())
        self.assertEqual(rc, 0, d.log_tail())
        self.assertLess(time.monotonic() - t0, 5)
        # The connection is gone: the broker requeues every unacked task.
        self.wait_for("the tasks back in the queue",
                      lambda: self.queue_stats(self.queue)[:2] == (len(slow), 0), 10)
        self.assertEqual(sorted(self.leftover()), sorted(slow))
