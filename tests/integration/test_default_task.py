"""Tasks that name no task, and where results go without reply_to."""

import hashlib

import pika

from taskdtest import TaskdTestCase, UUID_RE


class DefaultTask(TaskdTestCase):
    def test_propertyless_message_runs_default_task(self):
        """No properties at all (no type, no headers, no reply_to, no ids):
        queue.default_task runs, the result goes to reply.queue, durable
        there, so it is persistent."""
        d = self.taskd({"queue.default_task": "sha256"})
        body = b"no properties at all"
        self.client.publish(self.queue, body, properties=pika.BasicProperties())
        res = self.collect(1)[0]
        self.assertEqual(res.status, "ok", repr(res))
        self.assertEqual(res.body.decode(), hashlib.sha256(body).hexdigest(),
                         "the default task (sha256) should have run")
        self.assert_result(res, "sha256", correlation_id=None, task_id=None)
        self.assertRegex(res.correlation_id, UUID_RE)
        self.assertEqual(res.props.delivery_mode, 2,
                         "results to a durable reply queue are persistent (design §4)")
        self.assertTrue(d.alive())

    def test_result_delivery_mode(self):
        """A result is as durable as its queue allows: persistent to the
        durable reply.queue even when named in reply_to, as the task was to
        a client's own queue, never to direct reply-to."""
        self.taskd()
        other = self.use_queue(self.prefix + ".other")
        self.client.declare(other, durable=True)
        cases = [  # (reply_to, task persistent, result queue, delivery mode)
            (self.reply_queue, False, self.reply_queue, 2),
            (other, True, other, 2),
            (other, False, other, 1),
        ]
        for i, (reply_to, persistent, queue, mode) in enumerate(cases):
            with self.subTest(reply_to=reply_to, persistent=persistent):
                cid = "dm-%d" % i
                self.publish(b"x", task="echo", reply_to=reply_to, correlation_id=cid,
                             persistent=persistent)
                res = self.collect(1, queue=queue)[0]
                self.assertEqual(res.correlation_id, cid)
                self.assertEqual(res.props.delivery_mode, mode, repr(res))

    def test_header_task_beats_default_task(self):
        self.taskd({"queue.default_task": "sha256"})
        self.publish(b"x", task=None, correlation_id="c1", headers={"task": "echo"})
        res = self.collect(1)[0]
        self.assertEqual(res.props.type, "echo")
        self.assertEqual(res.body, b"x")

    def test_no_reply_address(self):
        """reply.queue = "" and no reply_to: the task runs, nothing is
        published, the task is acked (the queue ends up empty with no
        unacknowledged message)."""
        self.taskd({"reply.queue": ""})
        self.publish(b"nowhere", task="echo", reply_to=None, correlation_id="c-none")
        self.publish(b"somewhere", task="echo", correlation_id="c-some")
        res = self.collect(1)[0]
        self.assertEqual(res.correlation_id, "c-some")

        def settled():
            st = self.queue_stats(self.queue)
            return st is not None and st[:2] == (0, 0)
        self.wait_for("task queue empty and nothing unacked", settled, 10, interval=0.3)
        self.assertIsNone(self.client.get(self.reply_queue), "a result for the task with no reply address")
