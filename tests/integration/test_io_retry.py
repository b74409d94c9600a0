"""An I/O task that times out is retried with backoff, and each attempt has
its own deadline: a task keeps one timer for its deadline and its backoff,
so every attempt after a backoff must end at its deadline again."""

import time

from taskdtest import TaskdTestCase


class IoRetry(TaskdTestCase):
    def test_timed_out_sleep_is_retried_until_its_retries_run_out(self):
        self.taskd(tasks=[{"name": "nap", "handler": "sleep", "timeout": 0.3,
                           "retries": 2}])
        t0 = time.monotonic()
        res = self.run_task("nap", b"60000", timeout=20)
        took = time.monotonic() - t0
        self.assertEqual(res.status, "timeout", res)
        self.assertEqual(res.error()["error"], "timeout")
        self.assertEqual(res.headers.get("taskd-attempt"), 3, res)
        # Three deadlines of 0.3 s and backoffs of 0.5 s and 1 s: 2.4 s at
        # least; an attempt that missed its deadline would run for 60 s.
        self.assertGreaterEqual(took, 2.3)
        self.assertLess(took, 15)

    def test_retried_task_does_not_disturb_the_next(self):
        self.taskd(tasks=[{"name": "nap", "handler": "sleep", "timeout": 0.3,
                           "retries": 1}])
        first = self.run_task("nap", b"60000", timeout=20)
        self.assertEqual(first.status, "timeout", first)
        self.assertEqual(first.headers.get("taskd-attempt"), 2, first)
        second = self.run_task("nap", b"10", timeout=10)
        self.assertEqual(second.status, "ok", second)
        self.assertEqual(second.body, b"10")
        self.assertEqual(second.headers.get("taskd-attempt"), 1, second)
