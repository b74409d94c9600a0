"""The http handler against a local HTTP server the test runs: GET, POST,
the allow-list (refused before any connection), redirects, the response
cap, a slow server hitting the timeout, 200 fetches at once; and thousands
of fetches stuck in a name lookup that never ends, timed out or stopped
while the loop must stay responsive."""

import base64
import http.server
import json
import os
import random
import shutil
import socket
import threading
import time

from taskdtest import Result, Taskd, TaskdTestCase, hstr


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
        elif self.path == "/ok/redirect-dots":
            self._send(302, b"", [("Location", "/ok/%2e%2e/secret")])
        elif self.path == "/ok/redirect-slash":
            self._send(302, b"", [("Location", "/ok/..%2fsecret")])
        elif self.path == "/ok/redirect-user":
            self._send(302, b"", [("Location", "http://%s@127.0.0.1:%d/ok/hello"
                                   % (self.headers.get("Host", ""), self.server.trap_port))])
        elif self.path == "/ok/redirect-case":
            self._send(302, b"", [("Location", "HTTP://127.0.0.1:%d/ok/%%68ello"
                                   % self.server.server_address[1])])
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
        self.server.trap_port = 1   # set by tests that need a trap
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
            {"name": "http_noslash", "handler": "http", "allow": [base + "/ok"]},
        ])

    def trap(self):
        """A listener nobody may reach: a connection would be pending on it."""
        trap = socket.socket()
        trap.bind(("127.0.0.1", 0))
        trap.listen(8)
        trap.setblocking(False)
        self.addCleanup(trap.close)
        return trap

    def assert_untouched(self, trap=None):
        self.assertEqual(self.paths(), [], "the server saw requests it must not")
        if trap is not None:
            with self.assertRaises(BlockingIOError, msg="a connection reached the trap"):
                trap.accept()

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

    def test_path_and_authority_tricks_make_no_request(self):
        """Spellings that leave /ok/ (or the host) once a server decodes
        them, or that servers read in more than one way: refused before
        any connection."""
        trap = self.trap()
        b = self.base
        tp = trap.getsockname()[1]
        urls = [
            b + "/ok/%2e%2e/secret",
            b + "/ok/.%2e/secret",
            b + "/ok/%2E%2E/secret",
            b + "/ok/..%2fsecret",
            b + "/ok/%2e%2e%2fsecret",
            b + "/ok/..%5csecret",
            b + "/ok/..;/secret",
            b + "/ok/%252e%252e/secret",
            b + "/ok/%c0%ae%c0%ae/secret",
            b + "/ok/x/../../secret",
            b + "/ok\\..\\secret",
            b + "/ok/%0d%0aX-Injected:%201",
            b + "/ok/ hello",
            "http://127.0.0.1:%d\\@127.0.0.1:%d/ok/" % (self.port, tp),
            "http://127.0.0.1:%d%%40127.0.0.1:%d/ok/" % (self.port, tp),
            "http://127.0.0.1:%d@127.0.0.1:%d/ok/" % (tp, self.port),
            "http://2130706433:%d/ok/hello" % self.port,
            "http://127.1:%d/ok/hello" % self.port,
            "http://[::ffff:127.0.0.1]:%d/ok/hello" % self.port,
            "https://127.0.0.1:%d/ok/hello" % self.port,
        ]
        for i, url in enumerate(urls):
            self.publish(json.dumps({"url": url}).encode(), task="http",
                         correlation_id="t%d" % i)
        got = {r.correlation_id: r for r in self.collect(len(urls), timeout=30)}
        for i, url in enumerate(urls):
            with self.subTest(url=url):
                self.assert_rejected(got["t%d" % i], "url_not_allowed")
        self.assert_untouched(trap)

    def test_the_canonical_url_is_what_is_fetched(self):
        """Case, default port, escaped unreserved characters, dot segments
        and the fragment are made plain, and the server gets that."""
        port = self.port
        cases = [
            ("HTTP://127.0.0.1:%d/ok/hello" % port, "/ok/hello"),
            ("http://127.0.0.1:%d/ok/%%68ello#fragment" % port, "/ok/hello"),
            ("http://127.0.0.1:%d/ok/./n/%%41%%7e" % port, "/ok/n/A~"),
            ("http://127.0.0.1:%d/ok/n/../n/b?x=%%2e%%2e/y" % port, "/ok/n/b?x=%2e%2e/y"),
        ]
        for i, (url, path) in enumerate(cases):
            with self.subTest(url=url):
                r = self.call("http", {"url": url}, cid="k%d" % i)
                self.assertEqual(r.status, "ok", r)
                self.assertEqual(self.paths()[-1], path)

    def test_entry_without_trailing_slash_ends_at_a_segment(self):
        """allow = [".../ok"]: /ok and below, not /okay nor /ok.json."""
        r = self.call("http_noslash", {"url": self.base + "/ok/hello"}, cid="s1")
        self.assertEqual(json.loads(r.body)["body"], "hello world", r)
        r = self.call("http_noslash", {"url": self.base + "/ok"}, cid="s2")
        self.assertEqual(json.loads(r.body)["status"], 404, r)
        for i, tail in enumerate(["/okay", "/ok.json", "/ok%2fx", "/o"]):
            with self.subTest(tail=tail):
                r = self.call("http_noslash", {"url": self.base + tail}, cid="n%d" % i)
                self.assert_rejected(r, "url_not_allowed")
        self.assertEqual(self.paths(), ["/ok/hello", "/ok"])

    def test_refused_headers(self):
        """Host, Content-Length and hop-by-hop headers are taskd's: a
        payload that sets one is rejected and nothing is sent."""
        names = ["Host", "host", "Content-Length", "Transfer-Encoding", "Connection",
                 "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Proxy",
                 "TE", "Trailer", "Upgrade"]
        for i, name in enumerate(names):
            req = {"method": "POST", "url": self.base + "/ok/echo", "body": "x",
                   "headers": {name: "5" if name.lower() == "content-length" else "evil"}}
            self.publish(json.dumps(req).encode(), task="http", correlation_id="h%d" % i)
        got = {r.correlation_id: r for r in self.collect(len(names), timeout=30)}
        for i, name in enumerate(names):
            with self.subTest(header=name):
                doc = self.assert_rejected(got["h%d" % i], "bad_payload")
                self.assertIn(name, doc["message"])
        self.assert_untouched()

    def test_redirect_hops_pass_the_same_check(self):
        trap = self.trap()
        self.server.trap_port = trap.getsockname()[1]
        for i, path in enumerate(["/ok/redirect-dots", "/ok/redirect-slash",
                                  "/ok/redirect-user"]):
            with self.subTest(path=path):
                r = self.call("http_follow", {"url": self.base + path}, cid="r%d" % i)
                self.assertEqual(r.status, "error", r)
                self.assertEqual(r.error()["error"], "url_not_allowed", r)
        self.assertEqual(self.paths(), ["/ok/redirect-dots", "/ok/redirect-slash",
                                        "/ok/redirect-user"])
        with self.assertRaises(BlockingIOError, msg="a redirect reached the trap"):
            trap.accept()
        # A redirect in another spelling of an allowed URL is followed.
        r = self.call("http_follow", {"url": self.base + "/ok/redirect-case"}, cid="rc")
        self.assertEqual(json.loads(r.body)["body"], "hello world", r)
        self.assertEqual(self.paths()[-1], "/ok/hello")

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


# --------------------------------------------------------------------------
# A resolver that never answers

def _thread_count(pid):
    return len(os.listdir("/proc/%d/task" % pid))


def _fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


class _DnsHole:
    """A UDP socket on port 53 of a loopback address of its own that reads
    queries and never answers; counts what it got."""

    def __init__(self):
        self.queries = 0
        self.sock = None
        for _ in range(50):
            addr = "127.%d.%d.%d" % (random.randrange(1, 255), random.randrange(0, 256),
                                     random.randrange(1, 255))
            s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                s.bind((addr, 53))
            except OSError:
                s.close()
                continue
            self.sock, self.addr = s, addr
            break
        if self.sock is None:
            raise AssertionError("no free loopback address for port 53")
        # Thousands of lookups at once: do not let the kernel drop them
        # before we count them (a drop would still never be answered).
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.settimeout(0.2)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self):
        while not self.stopping.is_set():
            try:
                self.sock.recvfrom(4096)
                self.queries += 1
            except socket.timeout:
                pass
            except OSError:
                return

    def close(self):
        self.stopping.set()
        self.thread.join(5)
        self.sock.close()


class _NsTaskd(Taskd):
    """taskd in a mount namespace of its own, where /etc/resolv.conf is a
    file the test wrote: the only way found to make getaddrinfo itself
    wait (RES_OPTIONS and LOCALDOMAIN cannot change the server)."""

    def __init__(self, resolv_conf, *args, **kw):
        super().__init__(*args, **kw)
        self.wrapper = ("unshare", "--mount", "--propagation", "private",
                        "sh", "-c", 'mount --bind "$0" /etc/resolv.conf && exec "$@"',
                        resolv_conf)


class HungResolver(TaskdTestCase):
    """curl resolves names on a thread; a transfer abandoned mid-lookup
    (timeout, cancel) must not make the loop wait for that thread."""

    HOST = "hang.example"

    def setUp(self):
        super().setUp()
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            self.skipTest("needs root and unshare(1) for a mount namespace")
        self.hole = _DnsHole()
        self.addCleanup(self.hole.close)

    def start(self, resolver_timeout, http_timeout, grace=5.0):
        """taskd whose resolver asks only the hole and gives up after
        resolver_timeout seconds; task "http" may call http://HOST/ and
        127.0.0.1:1 (refused at once: warms curl up without a lookup)."""
        path = os.path.join(self.workdir, "resolv.conf")
        with open(path, "w") as f:
            f.write("nameserver %s\noptions timeout:%d attempts:1\n"
                    % (self.hole.addr, resolver_timeout))
        full = {"queue.name": self.queue, "reply.queue": self.reply_queue,
                "broker.heartbeat": 3, "io.max_concurrency": 5000,
                "shutdown.grace": grace}
        d = _NsTaskd(path, self.workdir, self.client, full, name="taskd-ns", tasks=[
            {"name": "echo", "handler": "echo"},
            {"name": "http", "handler": "http", "timeout": http_timeout,
             "allow": ["http://%s/" % self.HOST, "http://127.0.0.1:1/"]},
        ])
        self.daemons.append(d)
        d.start()
        r = self.run_task("http", json.dumps({"url": "http://127.0.0.1:1/"}).encode())
        self.assertEqual(r.status, "error", r)
        return d

    def publish_lookups(self, n, tag="h"):
        for i in range(n):
            self.publish(json.dumps({"url": "http://%s/n/%d" % (self.HOST, i)}).encode(),
                         task="http", correlation_id="%s%d" % (tag, i))

    def test_timeouts_in_a_hung_lookup_keep_the_loop_running(self):
        """2000 lookups that never end, each task timing out after 1 s:
        echo tasks sent meanwhile answer within a bound, the connection
        survives (heartbeat 3 s), and the resolver threads and their fds
        are gone once getaddrinfo gives up."""
        n, resolver_timeout, bound = 2000, 10, 3.0
        d = self.start(resolver_timeout, http_timeout=1.0)
        base_threads, base_fds = _thread_count(d.pid), _fd_count(d.pid)
        log_from = d.log_size()
        t0 = time.monotonic()
        self.publish_lookups(n)

        ch = self.client.channel()
        got = {}

        def on_message(chan, method, props, body):
            got[hstr(props.correlation_id)] = (time.monotonic(), Result.of(props, body))
            chan.basic_ack(method.delivery_tag)

        tag = ch.basic_consume(self.reply_queue, on_message)
        # Probe for longer than a lookup hangs: a loop that waits for the
        # resolver threads is caught whenever it does.
        sent = {}
        k = 0
        while time.monotonic() < t0 + resolver_timeout + 4:
            cid = "e%d" % k
            k += 1
            sent[cid] = time.monotonic()
            self.publish(b"ping", task="echo", correlation_id=cid)
            end = time.monotonic() + 0.2
            while time.monotonic() < end:
                self.client.conn.process_data_events(time_limit=0.05)
        want = set(sent) | {"h%d" % i for i in range(n)}
        end = time.monotonic() + 90
        while not want <= set(got) and time.monotonic() < end:
            self.client.conn.process_data_events(time_limit=0.1)
        ch.basic_cancel(tag)
        missing = want - set(got)
        if missing:
            self.fail("%d tasks never answered (e.g. %s)%s" % (
                len(missing), sorted(missing)[:5], self.daemon_logs()))
        self.assertGreater(self.hole.queries, 0,
                           "no lookup reached the test's resolver: DNS was not redirected")
        lat = sorted(got[c][0] - t for c, t in sent.items())
        print("  (%d echoes: median %.3f s, max %.3f s; %d queries held)"
              % (len(lat), lat[len(lat) // 2], lat[-1], self.hole.queries), end=" ", flush=True)
        self.assertLess(lat[-1], bound,
                        "an echo took %.1f s: the loop waited for a lookup" % lat[-1])
        bad = [r for c, (_, r) in got.items() if c.startswith("h") and r.status != "timeout"]
        self.assertFalse(bad, "http tasks not answered timeout: %r" % bad[:3])
        self.assertEqual(d.log_lines("broker connection lost", since=log_from), [],
                         "the broker connection was lost during the lookups")
        # Each abandoned lookup's thread ends when getaddrinfo gives up.
        self.wait_for("threads back to %d (now %d)" % (base_threads, _thread_count(d.pid)),
                      lambda: _thread_count(d.pid) <= base_threads, timeout=resolver_timeout + 30)
        self.wait_for("fds back to %d (now %d)" % (base_fds, _fd_count(d.pid)),
                      lambda: _fd_count(d.pid) <= base_fds, timeout=10)
        self.assert_alive(d)

    def test_stop_during_hung_lookups(self):
        """SIGTERM while 2000 tasks wait on lookups that never end: past
        shutdown.grace the tasks are cancelled and taskd exits at once."""
        n, grace = 2000, 1.0
        d = self.start(resolver_timeout=25, http_timeout=60.0, grace=grace)
        self.publish_lookups(n)
        self.wait_running(n, timeout=60)
        t0 = time.monotonic()
        d.stop(timeout=60)
        took = time.monotonic() - t0
        print("  (stopped in %.2f s)" % took, end=" ", flush=True)
        self.assertLess(took, grace + 5.0,
                        "taskd took %.1f s to stop: it waited for the lookups" % took)
