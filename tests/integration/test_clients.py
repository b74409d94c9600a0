"""The client examples of examples/clients, each run against the test broker
and a running taskd: a task submitted, its result printed, the exit status
saying how it went.

The Node.js client needs amqplib from npm: it is installed into
examples/clients/node/node_modules on first use.  Without node, or when
`npm install` cannot reach the registry, that client's tests are skipped
with the reason; every other missing piece is a failure.
"""

import fcntl
import json
import os
import shutil
import subprocess
import sys
import unittest

from taskdtest import TASKD, TaskdTestCase, broker_uri

HERE = os.path.dirname(os.path.abspath(__file__))
CLIENTS = os.path.normpath(os.path.join(HERE, "..", "..", "examples", "clients"))
# The C example is a check program of the build tree taskd lives in.
C_CLIENT = os.environ.get("CLIENT_C") or os.path.join(
    os.path.dirname(os.path.abspath(TASKD or ".")), "examples", "clients", "c", "submit")
NPM_TIMEOUT = 300
RUN_TIMEOUT = 60

_node_ready = None   # None: not tried yet; True; or the reason to skip


def node_ready():
    """True once amqplib can be loaded by examples/clients/node, else a
    string saying why not (node missing, the registry unreachable)."""
    global _node_ready
    if _node_ready is not None:
        return _node_ready
    node, npm = shutil.which("node"), shutil.which("npm")
    if node is None or npm is None:
        _node_ready = "node or npm not installed (apt-get install nodejs npm)"
        return _node_ready
    d = os.path.join(CLIENTS, "node")

    def loads():
        return subprocess.run([node, "-e", "require('amqplib')"], cwd=d,
                              stdin=subprocess.DEVNULL, capture_output=True,
                              timeout=30).returncode == 0

    # Test runs of the plain and the sanitizer build may meet here.
    with open(os.path.join(d, ".npm-install.lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not loads():
            try:
                p = subprocess.run(
                    [npm, "install", "--no-audit", "--no-fund", "--loglevel=error"],
                    cwd=d, stdin=subprocess.DEVNULL, capture_output=True,
                    timeout=NPM_TIMEOUT)
            except subprocess.TimeoutExpired:
                _node_ready = "npm install did not finish in %d s (registry " \
                    "unreachable?)" % NPM_TIMEOUT
                return _node_ready
            if p.returncode != 0:
                lines = [ln for ln in (p.stdout + p.stderr).decode(
                    errors="replace").splitlines()
                    if ln.strip() and "complete log" not in ln]
                _node_ready = "npm install failed (registry unreachable?): %s" % (
                    " / ".join(lines[:2]) if lines else "status %d" % p.returncode)
                return _node_ready
            if not loads():
                raise AssertionError("npm install succeeded but node cannot load amqplib")
    _node_ready = True
    return _node_ready


class Clients(TaskdTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.taskd()

    def command(self, lang):
        """The argv prefix that runs one client, or skips the test."""
        if lang == "python":
            return [sys.executable, os.path.join(CLIENTS, "python", "submit.py")]
        if lang == "node":
            ready = node_ready()
            if ready is not True:
                self.skipTest("Node.js client not tested: " + ready)
            return [shutil.which("node"), os.path.join(CLIENTS, "node", "submit.js")]
        if lang == "shell":
            for tool in ("amqp-publish", "amqp-consume", "amqp-declare-queue"):
                if shutil.which(tool) is None:
                    self.fail("%s not installed (apt-get install amqp-tools)" % tool)
            return ["sh", os.path.join(CLIENTS, "shell", "submit.sh")]
        if lang == "c":
            if not os.access(C_CLIENT, os.X_OK):
                self.fail("%s is not built: run `make check` (or make "
                          "examples/clients/c/submit) in the build directory" % C_CLIENT)
            return [C_CLIENT]
        raise ValueError(lang)

    def submit(self, lang, *args, queue=None, timeout=10):
        env = dict(os.environ, AMQP_URL=broker_uri(),
                   TASKD_QUEUE=queue or self.queue, TASK_TIMEOUT=str(timeout))
        try:
            return subprocess.run(self.command(lang) + list(args), env=env,
                                  stdin=subprocess.DEVNULL, capture_output=True,
                                  timeout=RUN_TIMEOUT)
        except subprocess.TimeoutExpired:
            self.fail("the %s client did not exit within %d s%s"
                      % (lang, RUN_TIMEOUT, self.daemon_logs()))

    def check_echo(self, lang):
        p = self.submit(lang, "echo", "hello from " + lang)
        self.assertEqual(p.returncode, 0, "%s client: %r" % (lang, p))
        self.assertEqual(p.stdout, ("hello from %s\n" % lang).encode())

    def check_rejected(self, lang, expect_status):
        """An unknown task: the JSON error body printed, the status said."""
        p = self.submit(lang, "no-such-task", "x")
        self.assertEqual(p.returncode, expect_status, "%s client: %r" % (lang, p))
        doc = json.loads(p.stdout.decode())
        self.assertEqual(doc["error"], "unknown_task", "%s client printed %r" % (lang, doc))
        if expect_status == 2:
            self.assertIn(b"taskd-status: rejected", p.stderr)

    def check_no_queue(self, lang, timeout=10):
        """No task queue: an error, not a hang or a printed nothing."""
        p = self.submit(lang, "echo", "lost", queue=self.prefix + ".missing",
                        timeout=timeout)
        self.assertEqual(p.returncode, 1, "%s client: %r" % (lang, p))
        self.assertEqual(p.stdout.strip(), b"")
        self.assertTrue(p.stderr.strip(), "%s client failed without a word" % lang)

    def test_python(self):
        self.check_echo("python")
        self.check_rejected("python", 2)
        self.check_no_queue("python")

    def test_node(self):
        self.check_echo("node")
        self.check_rejected("node", 2)
        self.check_no_queue("node")

    def test_c(self):
        self.check_echo("c")
        self.check_rejected("c", 2)
        self.check_no_queue("c")

    def test_shell(self):
        self.check_echo("shell")
        # amqp-consume hands over the body only: no status, so exit 0.
        self.check_rejected("shell", 0)
        # No mandatory flag in amqp-publish: the missing queue shows as
        # no result within TASK_TIMEOUT + 5 s.
        self.check_no_queue("shell", timeout=1)

    def test_shell_sha256(self):
        """The payload reaches taskd byte for byte through amqp-publish."""
        p = self.submit("shell", "sha256", "abc")
        self.assertEqual(p.returncode, 0, repr(p))
        self.assertEqual(p.stdout.strip(),
                         b"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad")


if __name__ == "__main__":
    unittest.main()
