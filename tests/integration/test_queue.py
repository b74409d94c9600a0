"""Design §5: the queue is used as it exists; declared (durable) only when
missing; a warning when an existing one is not durable."""

from taskdtest import TaskdTestCase


class QueueDeclaration(TaskdTestCase):
    def test_predeclared_transient_queue_is_used_with_warning(self):
        self.client.declare(self.queue, durable=False)
        d = self.taskd()
        res = self.run_task("echo", b"on a transient queue")
        self.assertEqual(res.status, "ok", repr(res))
        self.assertEqual(res.body, b"on a transient queue")
        st = self.queue_stats(self.queue)
        self.assertIsNotNone(st, "the queue disappeared")
        self.assertFalse(st[2], "taskd must not replace the existing transient queue")
        warnings = d.log_lines(r"(?i)durable")
        self.assertTrue([w for w in warnings if "warn" in w.lower()],
                        "no warning mentioning 'durable' in the log%s" % self.daemon_logs())

    def test_missing_queue_is_declared_durable(self):
        self.assertIsNone(self.client.counts(self.queue))
        d = self.taskd()
        st = self.queue_stats(self.queue)
        self.assertIsNotNone(st, "taskd did not declare its queue")
        self.assertTrue(st[2], "a queue taskd declares is durable by default")
        self.assertFalse([w for w in d.log_lines(r"(?i)durable") if "warn" in w.lower()],
                         "a warning about durability for taskd's own durable queue")
        res = self.run_task("echo", b"x")
        self.assertEqual(res.body, b"x")

    def test_predeclared_durable_queue_with_arguments_is_kept(self):
        """An existing queue with arguments taskd did not ask for (here a
        length limit) is used as it is, not redeclared."""
        self.client.declare(self.queue, durable=True, arguments={"x-max-length": 1000})
        d = self.taskd()
        res = self.run_task("echo", b"y")
        self.assertEqual(res.body, b"y")
        # Still the same queue: declaring it again with the argument works.
        self.client.declare(self.queue, durable=True, arguments={"x-max-length": 1000})
        self.assertTrue(d.alive())
