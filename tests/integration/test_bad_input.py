"""Design §5 poison messages: each bad input gets a "rejected" result with
a JSON error body and is rejected without requeue, so the queue's
dead-letter exchange receives it; the daemon keeps serving."""

from taskdtest import TaskdTestCase, new_id


class BadInput(TaskdTestCase):
    MAX_PAYLOAD = 1024

    def setUp(self):
        super().setUp()
        # The task queue exists before taskd starts, with a dead-letter
        # exchange: what taskd rejects without requeue lands in self.dlq.
        self.dlx = self.use_exchange(self.prefix + ".dlx")
        self.dlq = self.use_queue(self.prefix + ".dead")
        self.client.declare_exchange(self.dlx, "fanout")
        self.client.declare(self.dlq, durable=True)
        self.client.bind(self.dlq, self.dlx)
        self.client.declare(self.queue, durable=True,
                            arguments={"x-dead-letter-exchange": self.dlx})
        self.d = self.taskd({"limits.max_payload": self.MAX_PAYLOAD,
                             "queue.default_task": ""})

    def check_rejected(self, code, body=b"", task=None, headers=None):
        cid, mid = new_id(), new_id("m")
        self.publish(body, task=task, headers=headers, correlation_id=cid, message_id=mid)
        res = self.collect(1)[0]
        self.assertEqual(res.correlation_id, cid, "result of another task: %r" % (res,))
        doc = self.assert_rejected(res, code)
        self.assertEqual(res.headers.get("taskd-task-id"), mid)
        self.assertEqual(res.props.app_id, "taskd")

        # Rejected without requeue: dead-lettered, not back in the queue.
        dead = self.wait_for("the rejected task in the dead-letter queue '%s'" % self.dlq,
                             lambda: self.client.get(self.dlq), 10)
        self.assertEqual(dead.correlation_id, cid)
        deaths = dead.props.headers.get("x-death") or []
        self.assertTrue(deaths and deaths[0].get("reason") == "rejected",
                        "x-death of the dead-lettered task: %r" % (deaths,))
        st = self.queue_stats(self.queue)
        self.assertEqual(st[:2], (0, 0), "task queue (ready, unacked) after the reject")
        self.assertIsNone(self.client.get(self.reply_queue), "a second result for the task")

        # Still alive and serving.
        self.assert_alive(self.d)
        ok = self.run_task("echo", b"still serving")
        self.assertEqual(ok.status, "ok", repr(ok))
        self.assertEqual(ok.body, b"still serving")
        return doc

    def test_unknown_task(self):
        self.check_rejected("unknown_task", b"x", task="no-such-task")

    def test_no_task_name_and_no_default(self):
        self.check_rejected("unknown_task", b"x", task=None)

    def test_payload_too_large(self):
        self.check_rejected("payload_too_large", b"z" * (4 * self.MAX_PAYLOAD), task="echo")

    def test_payload_just_at_the_limit_is_fine(self):
        res = self.run_task("echo", b"z" * self.MAX_PAYLOAD)
        self.assertEqual(res.status, "ok", repr(res))
        self.assertEqual(len(res.body), self.MAX_PAYLOAD)

    def test_sleep_payload_not_a_number(self):
        self.check_rejected("bad_payload", b"abc", task="sleep")

    def test_sleep_payload_negative(self):
        self.check_rejected("bad_payload", b"-5", task="sleep")

    def test_burn_payload_not_a_number(self):
        self.check_rejected("bad_payload", b"lots", task="burn")

    def test_timeout_header_not_a_number(self):
        self.check_rejected("bad_header", b"100", task="sleep", headers={"timeout": "abc"})

    def test_timeout_header_negative(self):
        self.check_rejected("bad_header", b"100", task="sleep", headers={"timeout": -1})

    def test_task_header_not_a_string(self):
        self.check_rejected(("bad_header", "unknown_task"), b"x", headers={"task": 42})

    def test_binary_junk_in_type(self):
        self.check_rejected(("unknown_task", "bad_header"), b"x",
                            task=b"\x00\xff\xfe\x1b[31mjunk\x07\x80")
