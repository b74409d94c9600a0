"""Edges of the core contract (design §4/§5) not covered elsewhere: a reply
address with no queue, a nacked result, a quorum queue, the queue deleted
under the consumer, a broker that is down when taskd starts, hostile
property values, and a clean start/stop under valgrind."""

import os
import shutil
import subprocess
import time

from taskdtest import TASKD, TaskdTestCase, broker_ctl, new_id


def _is_sanitized(path):
    """An ASan binary cannot run under valgrind."""
    with open(path, "rb") as f:
        return b"__asan_init" in f.read()


class CoreEdges(TaskdTestCase):
    def test_reply_queue_missing_result_returned_task_acked(self):
        """reply_to names no queue: the broker returns the result
        (mandatory); taskd logs it, counts it, and acks the task, since it
        ran.  Nothing stays in the task queue, nothing is redelivered."""
        d = self.taskd()
        nowhere = self.prefix + ".nowhere"
        since = d.log_size()
        self.publish(b"lost", task="echo", reply_to=nowhere, correlation_id=new_id())
        line = d.wait_log(r"(?i)returned", timeout=15, since=since)
        self.assertIn(nowhere, line, "the log line should name the reply address")
        self.wait_for("the task acked (queue empty, nothing unacked)",
                      lambda: self.queue_stats(self.queue)[:2] == (0, 0), timeout=15)
        # The connection survived: the next task is answered normally.
        res = self.run_task("echo", b"still here")
        self.assertEqual(res.body, b"still here")
        self.assertEqual(len(d.log_lines(r"(?i)returned", since)), 1,
                         "exactly one return logged" + self.daemon_logs())

    def test_nacked_result_requeues_task(self):
        """The reply queue refuses the result (full, overflow
        reject-publish): the broker nacks it, so the task is not acked but
        goes back to the queue; once there is room, its result arrives."""
        full = self.use_queue(self.prefix + ".full")
        self.client.declare(full, durable=True,
                            arguments={"x-max-length": 1, "x-overflow": "reject-publish"})
        self.client.publish(full, b"filler")
        d = self.taskd()
        since = d.log_size()
        cid = new_id()
        self.publish(b"retry me", task="echo", reply_to=full, correlation_id=cid)
        d.wait_log(r"(?i)nack", timeout=15, since=since)
        filler = self.client.get(full)
        self.assertIsNotNone(filler, "the filler message vanished")
        self.assertEqual(filler.body, b"filler")
        # Room now: the requeued task runs again and its result lands.
        got = self.client.collect(full, 1, timeout=20)
        self.assertEqual(len(got), 1, "no result after the reply queue had room"
                         + self.daemon_logs())
        self.assertEqual(got[0].correlation_id, cid)
        self.assertEqual(got[0].body, b"retry me")
        self.wait_for("the task acked", lambda: self.queue_stats(self.queue)[:2] == (0, 0),
                      timeout=15)
        self.assert_alive(d)

    def test_quorum_queue_declared(self):
        d = self.taskd({"queue.type": "quorum"})
        out = broker_ctl("list_queues", "name", "type", "durable")
        rows = [ln.split("\t") for ln in out.splitlines()]
        row = [r for r in rows if r and r[0] == self.queue]
        self.assertTrue(row, "taskd did not declare its queue: %s" % out)
        self.assertEqual(row[0][1].strip(), "quorum", "queue type: %r" % (row[0],))
        res = self.run_task("echo", b"quorum")
        self.assertEqual(res.body, b"quorum")
        self.assert_alive(d)

    def test_queue_deleted_under_consumer(self):
        """basic.cancel (the queue was deleted): taskd reconnects,
        redeclares the queue and consumes again in the same process."""
        d = self.taskd({"broker.reconnect_max": 1.0})
        pid = d.pid
        since = d.log_size()
        self.client.delete(self.queue)
        d.wait_log(r"(?i)cancel", timeout=15, since=since)
        d.wait_consuming(timeout=30)
        res = self.run_task("echo", b"after the delete")
        self.assertEqual(res.body, b"after the delete")
        self.assertEqual(d.pid, pid)

    def test_broker_down_at_start(self):
        """taskd started while the broker is down keeps retrying (it does
        not exit) and consumes once the broker is back."""
        self.client.close()
        broker_ctl("stop_app")
        try:
            d = self.taskd(start=False)
            d.start(wait=False)
            d.wait_log(r"(?i)cannot reach the broker", timeout=20)
            since = d.log_size()
            d.wait_log(r"(?i)cannot reach the broker", timeout=20, since=since)
            self.assert_alive(d)
        finally:
            broker_ctl("start_app")
        self.client.connect(timeout=30)
        d.wait_consuming(timeout=60)
        res = self.run_task("echo", b"late broker")
        self.assertEqual(res.body, b"late broker")

    def test_hostile_property_values(self):
        """255 bytes of control characters or invalid UTF-8 in type,
        message_id and correlation_id: every task is answered, results fit
        AMQP's short strings (or the publish would fail), and the
        connection never drops."""
        d = self.taskd()
        since = d.log_size()
        esc = b"\x1b" * 255
        bad = b"\xff" * 255
        cases = [
            dict(task=esc, body=b"1"),
            dict(task=bad, body=b"2"),
            dict(task="echo", message_id=esc, body=b"3"),
            dict(task="echo", correlation_id=bad, body=b"4"),
            dict(task="echo", correlation_id=b"ab\x00cd", body=b"5"),
        ]
        for c in cases:
            body = c.pop("body")
            self.publish(body, **c)
        got = self.collect(len(cases), timeout=20, linger=0.3)
        self.assertEqual(len(got), len(cases), repr(got))
        statuses = sorted(r.status for r in got)
        self.assertEqual(statuses.count("rejected"), 2, repr(got))
        self.assertEqual(statuses.count("ok"), 3, repr(got))
        self.assertFalse(d.log_lines(r"(?i)connection lost|reconnect", since),
                         "the connection dropped" + self.daemon_logs())
        self.wait_for("every task settled",
                      lambda: self.queue_stats(self.queue)[:2] == (0, 0), timeout=15)

    def test_valgrind_clean_start_stop(self):
        """Normal start, a few tasks, SIGTERM: exit 0 and valgrind finds no
        leak and no memory error."""
        vg = shutil.which("valgrind")
        if vg is None:
            self.skipTest("valgrind is not installed (apt-get install valgrind)")
        if _is_sanitized(TASKD):
            self.skipTest("an AddressSanitizer build cannot run under valgrind")
        d = self.taskd(start=False)
        report = os.path.join(self.workdir, "valgrind.txt")
        real = d.proc
        # Run the same config under valgrind instead of the plain binary.
        env = {k: v for k, v in os.environ.items()
               if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "WATCHDOG_USEC")}
        with open(d.log_path, "ab") as log:
            proc = subprocess.Popen(
                [vg, "--quiet", "--leak-check=full", "--show-leak-kinds=definite,indirect",
                 "--errors-for-leak-kinds=definite,indirect", "--error-exitcode=99",
                 "--log-file=" + report, TASKD, "-f", "-c", d.conf_path],
                stdin=subprocess.DEVNULL, stdout=log, stderr=log, env=env)
        self.assertIsNone(real)
        try:
            d.proc = proc
            d.wait_consuming(timeout=90)
            for body in (b"a", b"b"):
                self.assertEqual(self.run_task("echo", body, timeout=30).body, body)
            self.assertEqual(self.run_task("sha256", b"", timeout=30).status, "ok")
            proc.terminate()
            rc = proc.wait(60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(10)
            d.proc = None
        with open(report) as f:
            text = f.read()
        self.assertEqual(rc, 0, "taskd under valgrind exited %d:\n%s%s"
                         % (rc, text, self.daemon_logs()))
        self.assertNotIn("definitely lost", text, text)
