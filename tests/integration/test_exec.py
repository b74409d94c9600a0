"""exec tasks of kind io: the payload on stdin, stdout as the result,
stderr's tail in the error, a timeout that kills the child (and what it
started), a clean environment, no shell."""

import os
import time

from taskdtest import TaskdTestCase, process_running


class Exec(TaskdTestCase):

    def setUp(self):
        super().setUp()
        self.pidfile = os.path.join(self.workdir, "child.pid")
        self.d = self.taskd(tasks=[
            {"name": "upper", "exec": ["/usr/bin/tr", "a-z", "A-Z"]},
            {"name": "upper_io", "kind": "io", "exec": ["/usr/bin/tr", "a-z", "A-Z"]},
            {"name": "fail", "exec": ["/bin/sh", "-c",
                                      "cat >/dev/null; echo first >&2; "
                                      "echo 'it went wrong' >&2; exit 3"]},
            {"name": "hang", "timeout": 1.0,
             "exec": ["/bin/sh", "-c", "sleep 60 & echo $! > %s; wait" % self.pidfile]},
            {"name": "env", "exec": ["/usr/bin/env"]},
            {"name": "args", "exec": ["/bin/echo", "$HOME", "*", "a;b"]},
        ])

    def test_result_is_stdout(self):
        self.publish(b"hello exec", task="upper", correlation_id="a")
        self.publish(b"", task="upper_io", correlation_id="b")
        got = {r.correlation_id: r for r in self.collect(2)}
        self.assertEqual(got["a"].status, "ok", got["a"])
        self.assertEqual(got["a"].body, b"HELLO EXEC")
        self.assertEqual(got["b"].status, "ok", got["b"])
        self.assertEqual(got["b"].body, b"")

    def test_failure_carries_stderr(self):
        self.publish(b"input", task="fail")
        (r,) = self.collect(1)
        self.assertEqual(r.status, "error", r)
        err = r.error()
        self.assertEqual(err["error"], "handler_failed")
        self.assertIn("exited with status 3", err["message"])
        self.assertIn("first\nit went wrong", err["message"])

    def test_timeout_kills_the_child(self):
        t0 = time.monotonic()
        self.publish(b"", task="hang")
        (r,) = self.collect(1, timeout=20)
        self.assertEqual(r.status, "timeout", r)
        self.assertLess(time.monotonic() - t0, 10)
        with open(self.pidfile) as f:
            grandchild = int(f.read())
        self.wait_for("the killed task's process %d to go" % grandchild,
                      lambda: not process_running(grandchild), timeout=5)
        self.assert_alive(self.d)

    def test_clean_environment_no_shell(self):
        self.publish(b"", task="env", correlation_id="e")
        self.publish(b"", task="args", correlation_id="a")
        got = {r.correlation_id: r for r in self.collect(2)}
        lines = sorted(got["e"].body.decode().splitlines())
        self.assertEqual(lines, ["LANG=C.UTF-8", "PATH=/usr/local/bin:/usr/bin:/bin"])
        self.assertEqual(got["a"].body, b"$HOME * a;b\n")
