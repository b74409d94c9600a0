"""`taskd -t`: exit 0 on a good file, 1 with "file:line:" on a bad one."""

import os
import re
import subprocess

from taskdtest import Taskd, TaskdTestCase


class ConfigCheck(TaskdTestCase):
    need_broker = False

    def check(self, path):
        p = subprocess.run([os.environ["TASKD"], "-t", "-c", path], stdin=subprocess.DEVNULL,
                           capture_output=True, timeout=30)
        return p.returncode, (p.stdout + p.stderr).decode(errors="replace")

    def write(self, name, text):
        path = os.path.join(self.workdir, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def test_good_config(self):
        d = Taskd(self.workdir, None, {"queue.name": "q", "reply.queue": "r"})
        rc, out = self.check(d.conf_path)
        self.assertEqual(rc, 0, "taskd -t on a good file: %s" % out)

    def test_shipped_config(self):
        top = os.environ.get("TOP_SRCDIR") or os.path.join(os.path.dirname(__file__), "..", "..")
        path = os.path.join(top, "etc", "taskd.conf")
        if not os.path.exists(path):
            self.skipTest("no etc/taskd.conf next to the tests")
        rc, out = self.check(path)
        self.assertEqual(rc, 0, "taskd -t etc/taskd.conf: %s" % out)

    BAD = [
        # (what, file text, line of the error, a word the message must hold)
        ("wrong type",
         'broker = {\n  uri = "amqp://127.0.0.1:5672/%2f";\n  heartbeat = "often";\n};\n',
         3, "heartbeat"),
        ("out of range",
         'broker = {\n  uri = "amqp://127.0.0.1:5672/%2f";\n  heartbeat = 30;\n'
         '  prefetch = -4;\n};\n',
         4, "prefetch"),
        ("syntax error",
         'queue = {\n  name = "q";\n  durable = = true;\n};\n',
         3, None),
        ("unknown handler",
         'tasks = (\n  { name = "echo"; handler = "echo"; },\n'
         '  { name = "x"; handler = "no-such-handler"; }\n);\n',
         3, "no-such-handler"),
        ("bad uri",
         'log = { level = "info"; };\nbroker = {\n  uri = "http://example/";\n};\n',
         3, "uri"),
        ("bad log level",
         'log = {\n  level = "chatty";\n};\n',
         2, "level"),
    ]

    def test_bad_configs(self):
        for what, text, line, word in self.BAD:
            with self.subTest(what):
                path = self.write(what.replace(" ", "-") + ".conf", text)
                rc, out = self.check(path)
                self.assertEqual(rc, 1, "taskd -t on a file with a %s: %s" % (what, out))
                self.assertRegex(out, re.escape(path) + r":\d+:", "no file:line: in %r" % out)
                self.assertIn("%s:%d:" % (path, line), out, "wrong line for a %s" % what)
                if word:
                    self.assertIn(word, out)

    def test_exec_not_executable(self):
        missing = os.path.join(self.workdir, "no-such-program")
        path = self.write("exec.conf",
                          'tasks = (\n  { name = "t";\n    exec = [ "%s", "-x" ]; }\n);\n'
                          % missing)
        rc, out = self.check(path)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, re.escape(path) + r":\d+:")
        self.assertIn("exec", out)

    def test_missing_file(self):
        path = os.path.join(self.workdir, "absent.conf")
        rc, out = self.check(path)
        self.assertEqual(rc, 1, out)
        self.assertIn("absent.conf", out)

    def test_max_map_count_warning(self):
        # Each coroutine stack is two mappings: a concurrency the kernel's
        # vm.max_map_count cannot hold is warned about, yet still accepted.
        with open("/proc/sys/vm/max_map_count") as f:
            maps = int(f.read())
        high = maps // 2 + 1
        if high > 1000000:
            self.skipTest("vm.max_map_count %d is above what io.max_concurrency allows" % maps)
        path = self.write("maps.conf", "io = { max_concurrency = %d; };\n" % high)
        rc, out = self.check(path)
        self.assertEqual(rc, 0, out)
        self.assertIn("vm.max_map_count", out, "no warning for io.max_concurrency = %d" % high)
        path = self.write("fits.conf", "io = { max_concurrency = 1000; };\n")
        rc, out = self.check(path)
        self.assertEqual(rc, 0, out)
        self.assertNotIn("vm.max_map_count", out)
