"""Round trips of the built-in handlers, and the result's properties and
headers exactly as design §4 lists them."""

import decimal
import hashlib
import os
import time

import pika

from taskdtest import TaskdTestCase, new_id


class RoundTrip(TaskdTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.taskd()

    def test_echo(self):
        body = bytes(range(256)) * 4 + b"\x00end"
        cid, mid = new_id("corr"), new_id("msg")
        res = self.run_task("echo", body, correlation_id=cid, message_id=mid,
                            content_type="application/x-taskd-test")
        self.assert_result(res, "echo", correlation_id=cid, task_id=mid, daemon=self.d)
        self.assertEqual(res.body, body, "echo must return the very same bytes")
        self.assertEqual(res.props.content_type, "application/x-taskd-test",
                         "content_type passed through")

    def test_echo_without_ids(self):
        """No message_id: taskd makes a UUID; no correlation_id: the task id."""
        self.publish(b"anonymous", task="echo")
        res = self.collect(1)[0]
        self.assert_result(res, "echo", correlation_id=None, task_id=None, daemon=self.d)
        self.assertEqual(res.body, b"anonymous")

    def test_echo_empty_payload(self):
        res = self.run_task("echo", b"")
        self.assert_result(res, "echo", correlation_id=res.correlation_id, task_id=None)
        self.assertEqual(res.body, b"")

    def test_sleep(self):
        cid = new_id()
        t0 = time.monotonic()
        res = self.run_task("sleep", b"200", correlation_id=cid, message_id="m-sleep")
        elapsed = time.monotonic() - t0
        self.assert_result(res, "sleep", correlation_id=cid, task_id="m-sleep", daemon=self.d)
        self.assertEqual(res.body, b"200")
        self.assertGreaterEqual(elapsed, 0.2, "sleep 200 answered after %.3f s" % elapsed)
        self.assertGreaterEqual(res.headers["taskd-duration-us"], 190000,
                                "taskd-duration-us of a 200 ms sleep")

    def test_sha256(self):
        body = os.urandom(100000)
        cid = new_id()
        res = self.run_task("sha256", body, correlation_id=cid, message_id="m-sha")
        self.assert_result(res, "sha256", correlation_id=cid, task_id="m-sha")
        self.assertEqual(res.body.decode(), hashlib.sha256(body).hexdigest())

    def test_sha256_empty(self):
        res = self.run_task("sha256", b"")
        self.assertEqual(res.status, "ok", repr(res))
        self.assertEqual(res.body.decode(), hashlib.sha256(b"").hexdigest())

    def test_burn(self):
        cid = new_id()
        t0 = time.monotonic()
        res = self.run_task("burn", b"50", correlation_id=cid, message_id="m-burn")
        elapsed = time.monotonic() - t0
        self.assert_result(res, "burn", correlation_id=cid, task_id="m-burn")
        self.assertEqual(res.body, b"50")
        self.assertGreaterEqual(elapsed, 0.05, "burn 50 answered after %.3f s" % elapsed)
        self.assertGreaterEqual(res.headers["taskd-duration-us"], 45000,
                                "taskd-duration-us of 50 ms of CPU")

    def test_header_task(self):
        """No type property: the header `task` names the task."""
        cid = new_id()
        self.publish(b"by header", task=None, correlation_id=cid, message_id="m-h",
                     headers={"task": "echo"})
        res = self.collect(1)[0]
        self.assert_result(res, "echo", correlation_id=cid, task_id="m-h")
        self.assertEqual(res.body, b"by header")

    def test_type_wins_over_header(self):
        """Both given: the type property names the task (echo), not the
        header (sleep would refuse this payload)."""
        cid = new_id()
        self.publish(b"not a number", task="echo", correlation_id=cid,
                     headers={"task": "sleep"})
        res = self.collect(1)[0]
        self.assertEqual(res.status, "ok", repr(res))
        self.assertEqual(res.props.type, "echo")
        self.assertEqual(res.body, b"not a number")

    def test_direct_reply_to(self):
        """RabbitMQ direct reply-to: consume amq.rabbitmq.reply-to (no-ack)
        on the publishing channel, then publish with it as reply_to."""
        ch = self.client.channel()
        got = []
        tag = ch.basic_consume("amq.rabbitmq.reply-to",
                               lambda c, m, p, b: got.append((p, b)), auto_ack=True)
        cid = new_id()
        ch.basic_publish("", self.queue, b"direct",
                         pika.BasicProperties(type="echo", correlation_id=cid,
                                              reply_to="amq.rabbitmq.reply-to"),
                         mandatory=True)
        deadline = time.monotonic() + 15
        while not got and time.monotonic() < deadline:
            self.client.conn.process_data_events(time_limit=0.1)
        ch.basic_cancel(tag)
        if not got:
            self.fail("no result through direct reply-to within 15 s" + self.daemon_logs())
        props, body = got[0]
        self.assertEqual(props.correlation_id, cid)
        self.assertEqual(body, b"direct")
        self.assertEqual((props.headers or {}).get("taskd-status"), "ok")

    def test_timeout_header(self):
        """sleep 2000 with header timeout 0.5 (a double): answered
        "timeout" after ~0.5 s, not 2 s."""
        cid = new_id()
        t0 = time.monotonic()
        self.publish(b"2000", task="sleep", correlation_id=cid, message_id="m-to",
                     headers={"timeout": 0.5})
        res = self.collect(1, timeout=10)[0]
        elapsed = time.monotonic() - t0
        self.assertEqual(res.correlation_id, cid)
        self.assertEqual(res.status, "timeout", repr(res))
        self.assertEqual(res.headers.get("taskd-task-id"), "m-to")
        self.assertEqual(res.error().get("error"), "timeout", repr(res))
        self.assertLess(elapsed, 1.5, "a 0.5 s timeout answered after %.2f s" % elapsed)
        self.assertGreaterEqual(elapsed, 0.45, "timed out too early (%.2f s)" % elapsed)

    def test_timeout_header_decimal(self):
        """The same with the timeout as an AMQP decimal (pika's Decimal)."""
        cid = new_id()
        t0 = time.monotonic()
        self.publish(b"2000", task="sleep", correlation_id=cid,
                     headers={"timeout": decimal.Decimal("0.5")})
        res = self.collect(1, timeout=10)[0]
        elapsed = time.monotonic() - t0
        self.assertEqual(res.status, "timeout", repr(res))
        self.assertLess(elapsed, 1.5, "a 0.5 s timeout answered after %.2f s" % elapsed)

    def test_timeout_header_above_task_timeout(self):
        """A header timeout never raises the task's configured timeout."""
        d2 = self.taskd({"queue.name": self.use_queue(self.prefix + ".short"),
                         "limits.timeout": 1.0}, name="short")
        cid = new_id()
        t0 = time.monotonic()
        self.publish(b"3000", task="sleep", correlation_id=cid, queue=d2.queue,
                     headers={"timeout": 10})
        res = self.collect(1, timeout=10)[0]
        elapsed = time.monotonic() - t0
        self.assertEqual(res.status, "timeout", repr(res))
        self.assertLess(elapsed, 2.5, "task timeout 1 s, header 10 s: answered after %.2f s"
                        % elapsed)
