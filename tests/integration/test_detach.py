"""Without -f, and outside systemd, taskd detaches from the terminal; its
log stays on the standard error it was started with (taskd(8), -f)."""

import os
import re
import signal
import subprocess

from taskdtest import TaskdTestCase, process_running

SYSTEMD_VARS = ("JOURNAL_STREAM", "NOTIFY_SOCKET", "INVOCATION_ID", "LISTEN_FDS",
                "WATCHDOG_USEC", "WATCHDOG_PID")


class Detach(TaskdTestCase):
    def test_log_stays_on_stderr(self):
        d = self.taskd(start=False)
        env = {k: v for k, v in os.environ.items() if k not in SYSTEMD_VARS}
        with open(d.log_path, "ab") as log:
            p = subprocess.run([os.environ["TASKD"], "-c", d.conf_path],
                               stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                               env=env, cwd=self.workdir, timeout=30)
        # The process we started returns at once; the daemon goes on alone.
        self.assertEqual(p.returncode, 0, "taskd without -f: %s" % d.log_tail())
        self.wait_for("the detached taskd consuming '%s'" % self.queue,
                      lambda: (self.client.counts(self.queue) or (0, 0))[1] >= 1, 30)

        res = self.run_task("echo", b"detached")
        self.assertEqual(res.body, b"detached")
        m = re.search(r":(\d+)$", res.worker or "")
        self.assertIsNotNone(m, "taskd-worker %r names no pid" % res.worker)
        pid = int(m.group(1))
        self.addCleanup(lambda: process_running(pid) and os.kill(pid, signal.SIGKILL))
        self.assertNotEqual(os.getsid(pid), os.getsid(0),
                            "the daemon is still in the starting terminal's session")

        # Logged long after detaching, and still on that standard error.
        d.wait_log(r"taskd .* starting", 10)
        os.kill(pid, signal.SIGTERM)
        self.wait_for("taskd (pid %d) exiting after SIGTERM" % pid,
                      lambda: not process_running(pid), 30)
        d.wait_log(r"stopping \(signal 15\)", 10)
