"""taskctl against a running taskd: submit's output and exit statuses, and
bench's counts, report and publish-only mode."""

import hashlib
import json
import os
import subprocess

from taskdtest import TaskdTestCase, broker_uri

TASKCTL = os.environ.get("TASKCTL", "")
RUN_TIMEOUT = 60


class Taskctl(TaskdTestCase):
    def setUp(self):
        super().setUp()
        if not (TASKCTL and os.access(TASKCTL, os.X_OK)):
            self.fail("TASKCTL=%r is not an executable (run through "
                      "tests/run-integration from a build directory)" % TASKCTL)
        self.d = self.taskd()

    def taskctl(self, *args, queue=None, stdin=b""):
        argv = [TASKCTL, "-u", broker_uri(), "-q", queue or self.queue] + list(args)
        try:
            return subprocess.run(argv, input=stdin, capture_output=True,
                                  timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("%s did not exit within %d s%s" % (argv, RUN_TIMEOUT,
                                                        self.daemon_logs()))

    # submit ----------------------------------------------------------------

    def test_submit_prints_the_result(self):
        p = self.taskctl("submit", "echo", "hello")
        self.assertEqual((p.returncode, p.stdout), (0, b"hello"), repr(p))

    def test_submit_payload_from_stdin(self):
        data = os.urandom(200000)
        p = self.taskctl("submit", "sha256", "-", stdin=data)
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertEqual(p.stdout.strip().decode(), hashlib.sha256(data).hexdigest())

    def test_submit_rejected_exits_2(self):
        p = self.taskctl("submit", "no-such-task", "x")
        self.assertEqual(p.returncode, 2, repr(p))
        self.assertEqual(json.loads(p.stdout)["error"], "unknown_task")
        self.assertIn(b"rejected", p.stderr)

    def test_submit_timeout_is_taskds_answer(self):
        """--timeout goes to taskd as the timeout header; taskd answers."""
        p = self.taskctl("submit", "--timeout", "0.5", "sleep", "5000")
        self.assertEqual(p.returncode, 2, repr(p))
        self.assertEqual(json.loads(p.stdout)["error"], "timeout")
        self.assertIn(b"timeout", p.stderr)

    def test_submit_missing_queue_exits_1(self):
        p = self.taskctl("submit", "echo", "x", queue=self.prefix + ".missing")
        self.assertEqual(p.returncode, 1, repr(p))
        self.assertEqual(p.stdout, b"")
        self.assertTrue(p.stderr.strip())

    def test_submit_no_wait_result_on_reply_queue(self):
        p = self.taskctl("submit", "--no-wait", "echo", "later")
        self.assertEqual((p.returncode, p.stdout), (0, b""), repr(p))
        res = self.collect(1)[0]
        self.assertEqual((res.status, res.body), ("ok", b"later"))

    # bench ----------------------------------------------------------------------

    def bench_json(self, *args):
        p = self.taskctl("bench", "--json", "--wait", "30", *args)
        try:
            return p, json.loads(p.stdout)
        except ValueError:
            self.fail("bench did not print JSON: %r" % (p,))

    def test_bench_counts_and_percentiles(self):
        p, r = self.bench_json("-n", "300", "--transient")
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertEqual((r["sent"], r["received"], r["errors"]), (300, 300, 0))
        self.assertGreater(r["rate"], 0)
        self.assertLessEqual(r["p50_ms"], r["p90_ms"])
        self.assertLessEqual(r["p90_ms"], r["p99_ms"])
        self.assertLessEqual(r["p99_ms"], r["max_ms"])

    def test_bench_errors_exit_2(self):
        p, r = self.bench_json("-n", "20", "-t", "no-such-task")
        self.assertEqual(p.returncode, 2, repr(p))
        self.assertEqual((r["received"], r["errors"]), (20, 20))

    def test_bench_rate_is_paced(self):
        """100 tasks at 200/s: the last one cannot go out before ~0.5 s."""
        p, r = self.bench_json("-n", "100", "-r", "200")
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertGreaterEqual(r["elapsed_s"], 0.45, repr(r))

    def test_bench_no_wait_fills_the_queue(self):
        p = self.taskctl("bench", "--no-wait", "--reply-to", self.reply_queue,
                         "-n", "50", "-P", "x")
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertTrue(p.stdout.startswith(b"published 50 in "), repr(p))
        got = self.collect(50)
        self.assertEqual(set(r.status for r in got), {"ok"})
        self.assertEqual(len(set(r.correlation_id for r in got)), 50,
                         "each task has its own correlation id")

    def test_bench_reply_to_needs_no_wait(self):
        p = self.taskctl("bench", "--reply-to", self.reply_queue, "-n", "1")
        self.assertEqual(p.returncode, 1, repr(p))
        self.assertIn(b"--no-wait", p.stderr)

    # connecting -----------------------------------------------------------------

    def test_uri_list_tried_in_order(self):
        """-u A,B: a node that refuses the connection is skipped for the
        next; the messages say which one failed, never its password."""
        dead = "amqp://guest:secret@127.0.0.1:1/%2f"
        argv = [TASKCTL, "-u", dead + "," + broker_uri(), "-q", self.queue,
                "submit", "echo", "two"]
        p = subprocess.run(argv, capture_output=True, timeout=RUN_TIMEOUT)
        self.assertEqual((p.returncode, p.stdout), (0, b"two"), repr(p))
        self.assertIn(b"127.0.0.1:1", p.stderr)
        self.assertNotIn(b"secret", p.stderr)

    def test_uri_list_all_dead_exits_1(self):
        dead = "amqp://guest:guest@127.0.0.1:1/%2f"
        argv = [TASKCTL, "-u", dead + "," + dead, "-q", self.queue,
                "submit", "echo", "x"]
        p = subprocess.run(argv, capture_output=True, timeout=RUN_TIMEOUT)
        self.assertEqual(p.returncode, 1, repr(p))
        self.assertIn(b"none of the 2 brokers", p.stderr)

    def test_cert_wants_key(self):
        p = self.taskctl("--cert", "/nonexistent.pem", "submit", "echo", "x")
        self.assertEqual(p.returncode, 1, repr(p))
        self.assertIn(b"--cert and --key", p.stderr)
