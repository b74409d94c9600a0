"""Plugins: the example plugin's handlers round trip (cpu in a worker, io on
a coroutine), and the loader refuses what it must, with a clear message."""

import os
import shutil
import socket
import subprocess

from taskdtest import Taskd, TaskdTestCase

BUILDDIR = os.environ.get("TOP_BUILDDIR") or os.path.dirname(os.environ.get("TASKD", "."))
EXAMPLE = os.path.join(BUILDDIR, "examples", "plugins", "example.so")
WRONGABI = os.path.join(BUILDDIR, "tests", "plugins", "wrongabi.so")

TASKS = [
    {"name": "wc", "handler": "wordcount"},
    {"name": "port", "handler": "portcheck", "timeout": 5.0},
]


class PluginRoundTrip(TaskdTestCase):
    def setUp(self):
        super().setUp()
        self.d = self.taskd({"cpu.workers": 1}, start=False, tasks=TASKS)
        self.d.conf["plugins"] = [EXAMPLE]
        self.d.write_config()
        self.d.start()

    def test_wordcount_cpu(self):
        text = b"one two  three\nfour\n\nfive six"
        res = self.run_task("wc", text)
        self.assertEqual(res.status, "ok", res)
        self.assertEqual(res.body, b"3 6 %d\n" % len(text))
        self.assertEqual(res.props.content_type, "text/plain")
        self.assertEqual(self.run_task("wc", b"").body, b"0 0 0\n")

    def test_portcheck_io(self):
        srv = socket.socket()
        srv.bind(("127.0.0.1", 0))
        srv.listen(1)
        self.addCleanup(srv.close)
        res = self.run_task("port", b"127.0.0.1:%d" % srv.getsockname()[1])
        self.assertEqual(res.status, "ok", res)
        self.assertEqual(res.body, b"open")
        # A port nobody listens on: bound then closed.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        res = self.run_task("port", b"127.0.0.1:%d" % port)
        self.assertEqual(res.status, "ok", res)
        self.assertEqual(res.body, b"closed")

    def test_bad_payload_rejected(self):
        res = self.run_task("port", b"no port here")
        self.assert_rejected(res, "bad_payload")


class PluginLoader(TaskdTestCase):
    need_broker = False

    def check(self, plugins, tasks=TASKS):
        d = Taskd(self.workdir, None, {"queue.name": "q", "reply.queue": "r"},
                  name="t%d" % len(os.listdir(self.workdir)), tasks=tasks)
        d.conf["plugins"] = plugins
        d.write_config()
        p = subprocess.run([os.environ["TASKD"], "-t", "-c", d.conf_path],
                           stdin=subprocess.DEVNULL, capture_output=True, timeout=30)
        return p.returncode, (p.stdout + p.stderr).decode(errors="replace"), d.conf_path

    def copy(self, src, mode):
        dst = os.path.join(self.workdir, os.path.basename(src))
        shutil.copyfile(src, dst)
        os.chmod(dst, mode)
        return dst

    def test_good(self):
        rc, out, _ = self.check([EXAMPLE])
        self.assertEqual(rc, 0, out)
        self.assertIn("configuration OK", out)

    def test_world_writable_refused(self):
        path = self.copy(EXAMPLE, 0o666)
        rc, out, conf = self.check([path])
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:" % conf, out)
        self.assertIn("plugins[0]: %s: is writable by others" % path, out)

    def test_group_writable_refused(self):
        path = self.copy(EXAMPLE, 0o664)
        rc, out, _ = self.check([path])
        self.assertEqual(rc, 1, out)
        self.assertIn("is writable by its group", out)

    def test_wrong_abi(self):
        rc, out, _ = self.check([WRONGABI], tasks=[{"name": "pid", "handler": "pid"}])
        self.assertEqual(rc, 1, out)
        self.assertIn("was built for plugin ABI 42, this taskd speaks ABI 1", out)

    def test_missing_symbol(self):
        # The libm this interpreter has loaded: a library of this machine's
        # own architecture (a multiarch system may hold others' too).
        libs = []
        with open("/proc/self/maps") as f:
            for line in f:
                path = line.split()[-1]
                if os.path.basename(path).startswith("libm.so"):
                    libs.append(path)
        if not libs:
            self.skipTest("no libm.so.6 to stand for a library that is not a plugin")
        path = self.copy(libs[0], 0o644)
        rc, out, _ = self.check([path], tasks=[{"name": "echo", "handler": "echo"}])
        self.assertEqual(rc, 1, out)
        self.assertIn("does not define the symbol 'taskd_plugin'", out)

    def test_missing_file(self):
        rc, out, _ = self.check(["/nonexistent/x.so"], tasks=[{"name": "echo", "handler": "echo"}])
        self.assertEqual(rc, 1, out)
        self.assertIn("plugins[0]: /nonexistent/x.so: No such file or directory", out)

    def test_handler_needs_plugin(self):
        rc, out, _ = self.check([])
        self.assertEqual(rc, 1, out)
        self.assertIn("unknown handler 'wordcount'", out)
