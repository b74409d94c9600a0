"""The http handler against a local HTTP server the test runs: GET, POST,
the allow-list (refused before any connection), redirects, the response
cap, a slow server hitting the timeout, 200 fetches at once."""

import base64
import http.server
import json
import socket
import threading
import time

from taskdtest import TaskdTestCase


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512   # 200 clients connect at once

    def handle_error(self, request, client_address):
        pass   # taskd hanging up on a capped response is expected


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, code, body=b"", headers=()):
        self.send_response(code)
        for k, v in headers:
            self.send_header(k, v)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _record(self, body=b""):
        with self.server.lock:
            self.server.seen.append((self.command, self.path, body,
                                     dict(self.headers.items())))

    def do_GET(self):
        self._record()
        if self.path == "/ok/hello":
            self._send(200, b"hello world", [("X-Test", "yes"), ("X-Multi", "a"),
                                             ("X-Multi", "b")])
        elif self.path == "/ok/slow":
            time.sleep(5)
            self._send(200, b"too late")
        elif self.path == "/ok/redirect-in":
            self._send(302, b"", [("Location", "/ok/hello")])
        elif self.path == "/ok/redirect-out":
            self._send(302, b"", [("Location", "/secret")])
        elif self.path == "/ok/big":
            self._send(200, b"x" * 200000)
        elif self.path == "/ok/bytes":
            self._send(200, b"caf\xc3\xa9 \xff")
        elif self.path == "/ok/all-bytes":
            self._send(200, bytes(range(256)) * 3)
        elif self.path.startswith("/ok/n/"):
            self._send(200, self.path.encode())
        else:
            self._send(404, b"not here")

    def do_POST(self):
        n = int(self.headers.get("Content-Length", "0"))
        body = self.rfile.read(n)
        self._record(body)
        self._send(201, body, [("Content-Type", self.headers.get("Content-Type", ""))])


class Http(TaskdTestCase):

    def setUp(self):
        super().setUp()
        self.server = _Server(("127.0.0.1", 0), _Handler)
        self.server.seen = []
        self.server.lock = threading.Lock()
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.addCleanup(self._stop_server)
        base = "http://127.0.0.1:%d" % self.port
        self.base = base
        allow = [base + "/ok/"]
        self.d = self.taskd(conf={"io.max_concurrency": 1000}, tasks=[
            {"name": "http", "handler": "http", "allow": allow, "timeout": 10.0},
            {"name": "http_follow", "handler": "http", "allow": allow,
             "follow_redirects": True},
            {"name": "http_small", "handler": "http", "allow": allow,
             "max_response": 1000},
            {"name": "http_quick", "handler": "http", "allow": allow, "timeout": 1.0},
        ])

    def _stop_server(self):
        self.server.shutdown()
        self.server.server_close()

    def call(self, task, req, cid="c1", timeout=20):
        self.publish(json.dumps(req).encode(), task=task, correlation_id=cid)
        (r,) = self.collect(1, timeout=timeout)
        return r

    def paths(self):
        with self.server.lock:
            return [p for _, p, _, _ in self.server.seen]

    def test_get(self):
        r = self.call("http", {"url": self.base + "/ok/hello",
                               "headers": {"X-Asked": "please"}})
        self.assertEqual(r.status, "ok", r)
        self.assertEqual(r.props.content_type, "application/json")
        res = json.loads(r.body)
        self.assertEqual(res["status"], 200)
        self.assertEqual(res["body"], "hello world")
        self.assertEqual(res["headers"]["x-test"], "yes")
        self.assertEqual(res["headers"]["x-multi"], "a, b")
        with self.server.lock:
            (method, path, _, headers), = self.server.seen
        self.assertEqual((method, path), ("GET", "/ok/hello"))
        self.assertEqual(headers.get("X-Asked"), "please")

    def test_post_with_body(self):
        r = self.call("http", {"method": "POST", "url": self.base + "/ok/echo",
                               "headers": {"Content-Type": "application/json"},
                               "body": '{"a": "\u00e9"}'})
        self.assertEqual(r.status, "ok", r)
        res = json.loads(r.body)
        self.assertEqual(res["status"], 201)
        self.assertEqual(res["body"], '{"a": "\u00e9"}')
        self.assertEqual(res["headers"]["content-type"], "application/json")
        with self.server.lock:
            (method, path, body, _), = self.server.seen
        self.assertEqual((method, path, body), ("POST", "/ok/echo", '{"a": "\u00e9"}'.encode()))

    def test_http_status_is_not_a_failure(self):
        r = self.call("http", {"url": self.base + "/ok/missing"})
        self.assertEqual(r.status, "ok", r)
        self.assertEqual(json.loads(r.body)["status"], 404)

    def test_bytes_that_are_not_utf8(self):
        r = self.call("http", {"url": self.base + "/ok/bytes"})
        self.assertEqual(json.loads(r.body)["body"], "caf\u00e9 \ufffd")

    def test_binary_bodies_in_base64(self):
        """binary: true returns the body byte for byte as body_base64;
        body_base64 sends bytes that are not text; a bad one is refused."""
        r = self.call("http", {"url": self.base + "/ok/all-bytes", "binary": True})
        self.assertEqual(r.status, "ok", r)
        res = json.loads(r.body)
        self.assertNotIn("body", res)
        self.assertEqual(base64.b64decode(res["body_base64"], validate=True),
                         bytes(range(256)) * 3)
        sent = bytes(range(255, -1, -1))
        r = self.call("http", {"method": "POST", "url": self.base + "/ok/post",
                               "body_base64": base64.b64encode(sent).decode(),
                               "binary": True}, cid="c2")
        res = json.loads(r.body)
        self.assertEqual(res["status"], 201)
        self.assertEqual(base64.b64decode(res["body_base64"]), sent)
        with self.server.lock:
            self.assertEqual(self.server.seen[-1][2], sent, "the server got other bytes")
        before = len(self.paths())
        for i, req in enumerate([
                {"url": self.base + "/ok/hello", "body_base64": "not base64!"},
                {"url": self.base + "/ok/hello", "body": "a", "body_base64": "YQ=="},
                {"url": self.base + "/ok/hello", "binary": "yes"}]):
            with self.subTest(req=req):
                r = self.call("http", req, cid="bad%d" % i)
                self.assertEqual(r.status, "rejected", r)
                self.assertEqual(r.error()["error"], "bad_payload")
        self.assertEqual(len(self.paths()), before, "a refused request reached the server")

    def test_outside_allow_list_makes_no_connection(self):
        # A listener nobody may reach: a connection would be pending on it.
        trap = socket.socket()
        trap.bind(("127.0.0.1", 0))
        trap.listen(8)
        trap.setblocking(False)
        self.addCleanup(trap.close)
        trap_url = "http://127.0.0.1:%d/ok/hello" % trap.getsockname()[1]
        urls = [
            self.base + "/secret",                 # another path on the server
            self.base + "/ok/../secret",           # dot segments leave /ok/
            self.base + "/okay",                   # a prefix of the prefix
            "http://127.0.0.1:%d@127.0.0.1:%d/ok/" % (self.port, trap.getsockname()[1]),
            trap_url,                              # another port
            "file:///etc/passwd",
            "ftp://127.0.0.1:%d/ok/" % self.port,
        ]
        for i, url in enumerate(urls):
            self.publish(json.dumps({"url": url}).encode(), task="http",
                         correlation_id="c%d" % i)
        got = {r.correlation_id: r for r in self.collect(len(urls), timeout=20)}
        for i, url in enumerate(urls):
            r = got["c%d" % i]
            self.assertEqual(r.status, "rejected", (url, r))
            self.assertIn(r.error()["error"], ("url_not_allowed", "bad_payload"), (url, r))
        self.assertEqual(self.paths(), [], "the server saw requests it must not")
        with self.assertRaises(BlockingIOError, msg="a connection reached the trap"):
            trap.accept()

    def test_bad_payloads(self):
        bad = [b"not json", b"[]", b'{"url": 5}', b'{"url": "%s/ok/", "method": "GE T"}' % self.base.encode(),
               json.dumps({"url": self.base + "/ok/", "headers": {"X": "a\r\nEvil: 1"}}).encode()]
        for i, body in enumerate(bad):
            self.publish(body, task="http", correlation_id="b%d" % i)
        for r in self.collect(len(bad), timeout=20):
            self.assertEqual(r.status, "rejected", r)
            self.assertEqual(r.error()["error"], "bad_payload", r)
        self.assertEqual(self.paths(), [])

    def test_redirects(self):
        # Not followed by default: the 302 is the answer.
        r = self.call("http", {"url": self.base + "/ok/redirect-in"}, cid="r1")
        res = json.loads(r.body)
        self.assertEqual(res["status"], 302)
        self.assertEqual(res["headers"]["location"], "/ok/hello")
        # Followed when configured, within the allow-list...
        r = self.call("http_follow", {"url": self.base + "/ok/redirect-in"}, cid="r2")
        self.assertEqual(json.loads(r.body)["body"], "hello world", r)
        # ...and refused when the target is outside it, before connecting.
        r = self.call("http_follow", {"url": self.base + "/ok/redirect-out"}, cid="r3")
        self.assertEqual(r.status, "error", r)
        self.assertEqual(r.error()["error"], "url_not_allowed")
        self.assertNotIn("/secret", self.paths())

    def test_response_cap(self):
        r = self.call("http_small", {"url": self.base + "/ok/big"})
        self.assertEqual(r.status, "error", r)
        self.assertIn("larger than 1000 bytes", r.error()["message"])

    def test_slow_server_times_out(self):
        t0 = time.monotonic()
        r = self.call("http_quick", {"url": self.base + "/ok/slow"})
        self.assertEqual(r.status, "timeout", r)
        self.assertLess(time.monotonic() - t0, 4.5, "the timeout did not cut the wait")
        self.assertEqual(r.error()["error"], "timeout")

    def test_200_concurrent_fetches(self):
        n = 200
        for i in range(n):
            self.publish(json.dumps({"url": self.base + "/ok/n/%d" % i}).encode(),
                         task="http", correlation_id="n%d" % i)
        got = self.collect(n, timeout=60)
        self.assertEqual(len({r.correlation_id for r in got}), n)
        for r in got:
            self.assertEqual(r.status, "ok", r)
            i = r.correlation_id[1:]
            self.assertEqual(json.loads(r.body)["body"], "/ok/n/%s" % i)
        self.assertEqual(len(self.paths()), n)
