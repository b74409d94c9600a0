"""A task that times out or loses its worker while taskd drains (SIGTERM)
and still has retries left is not answered: it goes back to the queue
(rejected with requeue) for a node that can give it its retries.  One on
its last attempt is answered as always."""

import os
import signal
import time

from test_pool import PoolTestCase, worker_pids
from taskdtest import new_id


class RetryDuringDrain(PoolTestCase):
    GRACE = 30.0

    def start_draining(self, d, cid):
        """SIGTERM once the task is running; returns when it was sent."""
        self.wait_running(1)
        d.proc.send_signal(signal.SIGTERM)
        d.wait_log(r"stopping \(signal 15\): 1 tasks in flight", 10)

    def assert_requeued_not_answered(self, d, cid, t0):
        rc = d.proc.wait(self.GRACE + 15)
        self.assertEqual(rc, 0, d.log_tail())
        self.assertLess(time.monotonic() - t0, self.GRACE - 5,
                        "taskd waited out its grace period instead of requeueing")
        self.assertEqual(self.more_results(1.0), [], "the task was answered")
        self.assertEqual(self.queue_stats(self.queue)[:2], (1, 0),
                         "(ready, unacked) of the task queue\n" + d.log_tail())
        m = self.client.get(self.queue)
        self.assertEqual(m.correlation_id, cid)

    def test_cpu_timeout_during_drain_is_requeued(self):
        d = self.taskd({"shutdown.grace": self.GRACE, "cpu.workers": 1},
                       tasks=[{"name": "burn", "handler": "burn", "timeout": 2.0,
                               "retries": 2}])
        cid = new_id()
        self.publish(b"60000", task="burn", correlation_id=cid)
        t0 = time.monotonic()
        self.start_draining(d, cid)
        self.assert_requeued_not_answered(d, cid, t0)

    def test_cpu_crash_during_drain_is_requeued(self):
        d = self.taskd({"shutdown.grace": self.GRACE, "cpu.workers": 1},
                       tasks=[{"name": "burn", "handler": "burn", "retries": 2}])
        (victim,) = self.wait_pool(d, 1)
        cid = new_id()
        self.publish(b"60000", task="burn", correlation_id=cid)
        t0 = time.monotonic()
        self.start_draining(d, cid)
        self.wait_burning(victim)
        os.kill(victim, signal.SIGKILL)
        self.assert_requeued_not_answered(d, cid, t0)

    def test_io_timeout_during_drain_is_requeued(self):
        d = self.taskd({"shutdown.grace": self.GRACE},
                       tasks=[{"name": "nap", "handler": "sleep", "timeout": 2.0,
                               "retries": 1}])
        cid = new_id()
        self.publish(b"60000", task="nap", correlation_id=cid)
        t0 = time.monotonic()
        self.start_draining(d, cid)
        self.assert_requeued_not_answered(d, cid, t0)

    def test_last_attempt_during_drain_is_answered(self):
        d = self.taskd({"shutdown.grace": self.GRACE},
                       tasks=[{"name": "nap", "handler": "sleep", "timeout": 2.0}])
        cid = new_id()
        self.publish(b"60000", task="nap", correlation_id=cid)
        self.start_draining(d, cid)
        res = self.collect(1, 20)[0]
        self.assertEqual(res.correlation_id, cid)
        self.assertEqual(res.status, "timeout", res)
        self.assertEqual(d.proc.wait(20), 0)
        self.assertEqual(self.queue_stats(self.queue)[:2], (0, 0))
