"""Many I/O tasks waiting at once on coroutines, and cancellation that
leaves nothing behind: no fd, no child process."""

import http.server
import json
import os
import threading
import time

from taskdtest import TaskdTestCase


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def children(pid):
    kids = set()
    for tid in os.listdir("/proc/%d/task" % pid):
        try:
            with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                kids.update(int(x) for x in f.read().split())
        except FileNotFoundError:
            pass
    return kids


class _Slow(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def do_GET(self):
        time.sleep(3)
        try:
            self.send_response(200)
            self.send_header("Content-Length", "0")
            self.end_headers()
        except OSError:
            pass


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def handle_error(self, request, client_address):
        pass


class IoMany(TaskdTestCase):

    def test_thousands_of_concurrent_sleeps(self):
        n = 3000
        self.taskd()
        t0 = time.monotonic()
        for i in range(n):
            self.publish(b"1000", task="sleep", correlation_id="s%d" % i)
        got = self.collect(n, timeout=120)
        took = time.monotonic() - t0
        self.assertEqual(len({r.correlation_id for r in got}), n)
        self.assertTrue(all(r.status == "ok" and r.body == b"1000" for r in got))
        # One after the other would take 3000 s: they waited together.
        self.assertLess(took, 100)
        print("  (%d sleeps of 1 s in %.1f s)" % (n, took), end=" ", flush=True)

    def test_cancelled_tasks_leave_no_fd_or_child(self):
        server = _Server(("127.0.0.1", 0), _Slow)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        self.addCleanup(server.server_close)
        self.addCleanup(server.shutdown)
        url = "http://127.0.0.1:%d/slow" % server.server_address[1]
        d = self.taskd(tasks=[
            {"name": "sleep", "handler": "sleep"},
            {"name": "http", "handler": "http", "allow": [url], "timeout": 0.5},
            {"name": "hang", "timeout": 0.5, "exec": ["/bin/sh", "-c", "sleep 60 & wait"]},
        ])
        req = json.dumps({"url": url}).encode()

        def batch(k, tag):
            for i in range(k):
                self.publish(b"60000", task="sleep", correlation_id="%s-s%d" % (tag, i),
                             headers={"timeout": 0.5})
                self.publish(req, task="http", correlation_id="%s-h%d" % (tag, i))
                self.publish(b"", task="hang", correlation_id="%s-x%d" % (tag, i))
            got = self.collect(3 * k, timeout=60)
            bad = [r for r in got if r.status != "timeout"]
            self.assertFalse(bad, "expected only timeouts: %r" % bad[:3])

        # Warm up: curl's multi handle and its own fds exist from the
        # first http task on, and stay.
        batch(1, "warm")
        base_fds = fd_count(d.pid)
        base_kids = children(d.pid)
        batch(50, "run")
        self.wait_for("taskd's fds back to %d (now %d)" % (base_fds, fd_count(d.pid)),
                      lambda: fd_count(d.pid) <= base_fds, timeout=10)
        self.wait_for("taskd's children back to %s" % sorted(base_kids),
                      lambda: children(d.pid) <= base_kids, timeout=10)
        self.assert_alive(d)
