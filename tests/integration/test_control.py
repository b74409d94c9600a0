"""Fleet control (design §8, docs/protocol.md): taskctl status and cancel
against two or three real nodes on the private broker.  Each test has a
control exchange (and its log stream) of its own."""

import json
import os
import subprocess
import time

import pika

from taskdtest import TaskdTestCase, broker_uri, new_id

TASKCTL = os.environ.get("TASKCTL", "")
RUN_TIMEOUT = 60


class Control(TaskdTestCase):
    def setUp(self):
        super().setUp()
        if not (TASKCTL and os.access(TASKCTL, os.X_OK)):
            self.fail("TASKCTL=%r is not an executable (run through "
                      "tests/run-integration from a build directory)" % TASKCTL)
        self.exchange = self.use_exchange(self.prefix + ".control")
        self.use_queue(self.exchange + ".log")

    def node(self, consumers=1, **conf):
        c = {"control.exchange": self.exchange, "control.cancel_ttl": 600.0}
        c.update({k.replace("__", "."): v for k, v in conf.items()})
        d = self.taskd(conf=c, consumers=consumers)
        return d

    def taskctl(self, *args):
        argv = [TASKCTL, "-u", broker_uri(), "-q", self.queue] + list(args)
        try:
            start = time.monotonic()
            p = subprocess.run(argv, capture_output=True, timeout=RUN_TIMEOUT)
            p.elapsed = time.monotonic() - start
            return p
        except subprocess.TimeoutExpired:
            self.fail("%s did not exit within %d s%s" % (argv, RUN_TIMEOUT,
                                                        self.daemon_logs()))

    def status(self, *args, timeout="3"):
        p = self.taskctl("status", "--json", "--exchange", self.exchange,
                         "--timeout", timeout, *args)
        try:
            doc = json.loads(p.stdout) if p.stdout.strip() else []
        except ValueError:
            self.fail("status --json did not print JSON: %r" % (p,))
        return p, doc

    def wait_nodes(self, daemons, timeout=20):
        """Until status lists exactly these daemons (by pid)."""
        want = sorted(d.pid for d in daemons)
        last = []

        def check():
            nonlocal last
            p, doc = self.status("--expect", str(len(want)), timeout="2")
            last = doc
            return sorted(int(n["node"].rsplit(":", 1)[1]) for n in doc) == want and doc
        try:
            return self.wait_for("status lists the nodes %r" % want, check, timeout)
        except AssertionError:
            self.fail("status never listed exactly %r; last: %r" % (want, last))

    def cancel(self, *ids, timeout="15"):
        return self.taskctl("cancel", "--exchange", self.exchange, "--timeout", timeout,
                            *ids)

    def running_ids(self, doc):
        return {t["id"] for n in doc for t in n["tasks"]}

    # status -----------------------------------------------------------------------

    def test_status_lists_nodes_and_their_tasks(self):
        nodes = [self.node(consumers=i + 1) for i in range(3)]
        self.wait_nodes(nodes)
        ids = [new_id("s") for _ in range(6)]
        for i in ids:
            self.publish(b"30000", task="sleep", message_id=i)
        self.wait_running(6)
        p, doc = self.status("--expect", "3")
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertEqual(len(doc), 3, doc)
        self.assertEqual(self.running_ids(doc), set(ids))
        for n in doc:
            for key in ("node", "version", "uptime_s", "broker", "tasks", "io_running",
                        "cpu_running", "pool", "totals"):
                self.assertIn(key, n)
            self.assertRegex(n["broker"], r"^127\.0\.0\.1:\d+$")
            self.assertEqual(n["io_running"], len(n["tasks"]))
            for t in n["tasks"]:
                self.assertEqual((t["task"], t["kind"]), ("sleep", "io"))
                self.assertGreaterEqual(t["seconds"], 0)
        # --expect 3: answered as soon as all three did, not at the deadline.
        p, doc = self.status("--expect", "3", timeout="30")
        self.assertEqual(len(doc), 3, repr(p))
        print("\n  status over 3 nodes: %.3f s" % p.elapsed)
        self.assertLess(p.elapsed, 25.0, "status waited for its deadline")
        # The table: one line per node, one per task.
        t = self.taskctl("status", "--exchange", self.exchange, "--expect", "3")
        self.assertEqual(t.returncode, 0, repr(t))
        text = t.stdout.decode()
        for d in nodes:
            self.assertIn(":%d " % d.pid, text)
        for i in ids:
            self.assertIn(i, text)
        # Every id found running by one of the three; the stop is quick then.
        p = self.cancel(*ids, "--expect", "3", timeout="20")
        self.assertEqual(p.returncode, 0, repr(p) + self.daemon_logs())
        for i in ids:
            self.assertIn(i.encode() + b": node ", p.stdout)

    def test_status_after_a_node_stops(self):
        a = self.node()
        b = self.node(consumers=2)
        self.wait_nodes([a, b])
        a.stop()
        # No --expect: whatever answers within the deadline is listed.
        p, doc = self.status(timeout="5")
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertEqual([n["node"].rsplit(":", 1)[1] for n in doc], [str(b.pid)], doc)

    def test_status_without_nodes_exits_1(self):
        a = self.node()
        self.wait_nodes([a])
        a.stop()
        p, doc = self.status(timeout="1")
        self.assertEqual((p.returncode, doc), (1, []), repr(p))
        self.assertIn(b"no node answered", p.stderr)

    def test_status_without_exchange_says_so(self):
        p = self.taskctl("status", "--exchange", self.prefix + ".nothing")
        self.assertEqual(p.returncode, 1, repr(p))
        self.assertIn(b"no exchange", p.stderr)

    def test_status_while_every_slot_is_busy(self):
        """Every CPU worker and a thousand I/O slots busy, more tasks
        waiting: a control request is answered within its timeout."""
        d = self.node(io__max_concurrency=1000, cpu__workers=2)
        self.wait_nodes([d])
        for _ in range(2):
            self.publish(b"60000", task="burn", message_id=new_id("b"))
        for _ in range(1200):
            self.publish(b"60000", task="sleep", message_id=new_id("s"))
        self.wait_for("1002 tasks running", lambda: self.status()[1] and
                      (lambda n: n["io_running"] == 1000 and n["cpu_running"] == 2)(
                          self.status()[1][0]), 60, interval=0.5)
        p, doc = self.status("--expect", "1", timeout="5")
        self.assertEqual(p.returncode, 0, repr(p))
        print("\n  status with every slot busy: %.3f s" % p.elapsed)
        self.assertLess(p.elapsed, 5.0)
        self.assertEqual(len(doc[0]["tasks"]), 1002)
        self.assertEqual(doc[0]["pool"]["busy"], 2)
        self.assertGreaterEqual(doc[0]["in_flight"], 1002)
        d.kill9()

    # cancel -------------------------------------------------------------------------

    def test_cancel_running_io_task(self):
        d = self.node()
        self.wait_nodes([d])
        tid = new_id("io")
        self.publish(b"60000", task="sleep", message_id=tid)
        self.wait_running(1)
        self.wait_for("the task runs", lambda: tid in self.running_ids(self.status()[1]), 10)
        start = time.monotonic()
        p = self.cancel(tid, "--expect", "1")
        res = self.collect(1, timeout=10)[0]
        took = time.monotonic() - start
        print("\n  cancel to answer, I/O task: %.3f s (taskctl %.3f s)" % (took, p.elapsed))
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertIn(b"stopped its running I/O task", p.stdout)
        self.assertIn(str(d.pid).encode(), p.stdout)
        self.assert_result(res, "sleep", status="cancelled", task_id=tid, daemon=d)
        self.assertEqual(res.error()["error"], "cancelled")
        self.wait_for("the task acked", lambda: self.queue_stats(self.queue)[:2] == (0, 0), 10)
        doc = self.status()[1]
        self.assertEqual(doc[0]["totals"]["cancelled"], 1)
        self.assertEqual(doc[0]["io_running"], 0)

    def test_cancel_running_cpu_task(self):
        d = self.node(cpu__workers=1)
        self.wait_nodes([d])
        tid = new_id("cpu")
        self.publish(b"60000", task="burn", message_id=tid)
        self.wait_for("the task runs", lambda: tid in self.running_ids(self.status()[1]), 10)
        start = time.monotonic()
        p = self.cancel(tid, "--expect", "1")
        res = self.collect(1, timeout=10)[0]
        took = time.monotonic() - start
        print("\n  cancel to answer, CPU task: %.3f s (taskctl %.3f s)" % (took, p.elapsed))
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertIn(b"stopped its running CPU task", p.stdout)
        self.assert_result(res, "burn", status="cancelled", task_id=tid, daemon=d)
        # The worker was replaced: the one slot runs the next task.
        res = self.run_task("sha256", b"x")
        self.assertEqual(res.status, "ok")
        doc = self.status()[1]
        self.assertEqual(doc[0]["pool"]["killed"], 1)
        self.assertEqual(doc[0]["pool"]["alive"], 1)

    def test_cancel_before_the_task_is_published(self):
        a = self.node()
        b = self.node(consumers=2)
        self.wait_nodes([a, b])
        tid = new_id("early")
        p = self.cancel(tid, "--expect", "2")
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertIn(b"running on none of the 2 nodes", p.stdout)
        self.assertIn(b"600 s", p.stdout)
        self.publish(b"20000", task="sleep", message_id=tid)
        other = new_id("other")
        self.publish(b"5", task="sleep", message_id=other)
        got = {r.headers["taskd-task-id"]: r for r in self.collect(2, timeout=10)}
        self.assertEqual(got[tid].status, "cancelled")
        self.assertEqual(got[tid].error()["error"], "cancelled")
        self.assertLess(got[tid].headers["taskd-duration-us"], 5000000, "it never ran")
        self.assertEqual(got[other].status, "ok")

    def test_cancel_honoured_by_a_node_started_after_it(self):
        a = self.node()
        self.wait_nodes([a])
        tid = new_id("later")
        p = self.cancel(tid, "--expect", "1")
        self.assertEqual(p.returncode, 0, repr(p))
        a.stop()
        # Only a node that did not exist at the cancel can take the task.
        b = self.node()
        self.wait_nodes([b])
        self.publish(b"20000", task="sleep", message_id=tid)
        res = self.collect(1, timeout=10)[0]
        self.assertEqual(res.status, "cancelled", repr(res))
        self.assertIn(str(b.pid), res.worker)
        self.assertIn("answered cancelled on arrival", b.log_text())

    def test_cancel_without_any_node_is_remembered(self):
        """The cancel is logged even when no node is up to answer."""
        a = self.node()
        self.wait_nodes([a])
        a.stop()
        tid = new_id("nobody")
        p = self.cancel(tid, timeout="2")
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertIn(b"running on none of the 0 nodes", p.stdout)
        b = self.node()
        self.publish(b"20000", task="sleep", message_id=tid)
        self.assertEqual(self.collect(1, timeout=10)[0].status, "cancelled")
        self.assert_alive(b)

    def test_bad_requests_get_an_error_and_hurt_nothing(self):
        d = self.node()
        self.wait_nodes([d])
        q = self.use_queue(self.prefix + ".replies")
        self.client.declare(q, durable=False)
        ch = self.client.channel()
        bodies = [b"", b"{", b'{"ids": []}', b'{"ids": [1]}', b'{"ids": ["' + b"x" * 300 + b'"]}',
                  b"\xff" * 20000, b'{"ids": "x"}']
        for i, body in enumerate(bodies):
            ch.basic_publish(self.exchange, "", body, pika.BasicProperties(
                type="cancel", reply_to=q, correlation_id="bad%d" % i))
        ch.basic_publish(self.exchange, "", b"", pika.BasicProperties(
            type="reboot", reply_to=q, correlation_id="badtype"))
        got = self.client.collect(q, len(bodies) + 1, 10)
        self.assertEqual(len(got), len(bodies) + 1, got)
        for r in got:
            self.assertIn("error", json.loads(r.body), r)
        self.assert_alive(d)
        self.assertEqual(self.run_task("echo", b"still").body, b"still")
        self.assertEqual(len(self.status("--expect", "1")[1]), 1)
        self.assertNotIn("closed the fleet control channel", d.log_text())
