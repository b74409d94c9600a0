"""taskd under a service manager: the sd_notify protocol.

The test plays systemd's part: it binds a unix datagram socket in the
abstract namespace with SO_PASSCRED, starts taskd with NOTIFY_SOCKET (and
WATCHDOG_USEC) pointing at it, and reads what the daemon says, checking
the sender's pid from the kernel's SCM_CREDENTIALS as systemd does with
NotifyAccess=main.
"""

import os
import signal
import socket
import struct
import time
import uuid

from taskdtest import TaskdTestCase, new_id

SCM_CREDENTIALS = getattr(socket, "SCM_CREDENTIALS", 2)
SO_PASSCRED = getattr(socket, "SO_PASSCRED", 16)


class Message:
    def __init__(self, when, pid, text):
        self.when = when
        self.pid = pid
        self.text = text
        self.fields = {}
        for line in text.split("\n"):
            key, sep, value = line.partition("=")
            if sep:
                self.fields[key] = value

    def __repr__(self):
        return "Message(pid=%s, %r)" % (self.pid, self.text)


class Manager:
    """The service manager's end of the notification socket."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.setsockopt(socket.SOL_SOCKET, SO_PASSCRED, 1)
        name = "taskd-test-%d-%s" % (os.getpid(), uuid.uuid4().hex[:8])
        self.sock.bind("\0" + name)
        self.address = "@" + name
        self.messages = []

    def close(self):
        self.sock.close()

    def _receive(self, timeout):
        self.sock.settimeout(max(timeout, 0.001))
        try:
            data, anc, _flags, _addr = self.sock.recvmsg(
                65536, socket.CMSG_SPACE(struct.calcsize("iII")))
        except socket.timeout:
            return None
        pid = None
        for level, kind, cdata in anc:
            if level == socket.SOL_SOCKET and kind == SCM_CREDENTIALS:
                pid, _uid, _gid = struct.unpack("iII", cdata[:struct.calcsize("iII")])
        m = Message(time.monotonic(), pid, data.decode("utf-8", errors="replace"))
        self.messages.append(m)
        return m

    def wait(self, predicate, timeout, what, since=0):
        """The first message (index >= since) for which predicate holds;
        reads more from the socket until timeout.  Returns (index, msg)."""
        deadline = time.monotonic() + timeout
        i = since
        while True:
            while i < len(self.messages):
                if predicate(self.messages[i]):
                    return i, self.messages[i]
                i += 1
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError("no %s notification within %.1f s; got %r"
                                     % (what, timeout, self.messages[since:][-10:]))
            self._receive(min(left, 0.2))

    def drain(self, seconds):
        """Reads everything that arrives during `seconds`."""
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            self._receive(end - time.monotonic())


def has(key, value=None):
    return lambda m: key in m.fields and (value is None or m.fields[key] == value)


class Notify(TaskdTestCase):

    def setUp(self):
        super().setUp()
        self.mgr = Manager()
        self.addCleanup(self.mgr.close)

    def start(self, conf=None, watchdog_usec=None, extra_env=None):
        env = {"NOTIFY_SOCKET": self.mgr.address}
        if watchdog_usec is not None:
            env["WATCHDOG_USEC"] = str(watchdog_usec)
        env.update(extra_env or {})
        d = self.taskd(conf, start=False)
        d.start(wait=False, env=env)
        return d

    def test_ready_after_consumer_then_watchdog_status_reload_stop(self):
        d = self.start(watchdog_usec=1000000)

        # READY=1 only once the broker has the consumer.
        i, ready = self.mgr.wait(has("READY", "1"), 30, "READY=1")
        counts = self.client.counts(self.queue)
        self.assertIsNotNone(counts, "READY=1 before the queue exists")
        self.assertGreaterEqual(counts[1], 1, "READY=1 before the consumer exists")
        self.assertEqual(ready.pid, d.pid, "READY=1 must come from the main pid")
        self.assertIn("consuming from 127.0.0.1", ready.fields.get("STATUS", ""))
        for m in self.mgr.messages[:i]:
            self.assertNotIn("READY", m.fields, "an earlier READY: %r" % (m,))

        # WATCHDOG=1 every half WATCHDOG_USEC (0.5 s), from the main pid.
        self.mgr.drain(3.0)
        pings = [m for m in self.mgr.messages if has("WATCHDOG", "1")(m)]
        self.assertGreaterEqual(len(pings), 4, "watchdog pings in ~3 s: %r" % (pings,))
        self.assertTrue(all(m.pid == d.pid for m in pings), "a ping from another pid")
        late = pings[-5:]
        gaps = [b.when - a.when for a, b in zip(late, late[1:])]
        self.assertLess(max(gaps), 0.9, "pings must come well within WATCHDOG_USEC: %r" % gaps)

        # STATUS= is refreshed with live figures.
        cid = new_id()
        self.publish(b"hi", task="echo", correlation_id=cid)
        self.collect_ids([cid], 15)
        since = len(self.mgr.messages)
        _, st = self.mgr.wait(lambda m: "1 ok" in m.fields.get("STATUS", ""), 10,
                              "a STATUS= that counts the task done", since)
        self.assertRegex(st.fields["STATUS"], r"running 0 io, 0 cpu")

        # SIGHUP: RELOADING=1 (with MONOTONIC_USEC) ... READY=1.
        since = len(self.mgr.messages)
        d.proc.send_signal(signal.SIGHUP)
        i, rel = self.mgr.wait(has("RELOADING", "1"), 10, "RELOADING=1", since)
        usec = int(rel.fields.get("MONOTONIC_USEC", "0"))
        now = time.clock_gettime(time.CLOCK_MONOTONIC) * 1e6
        self.assertLess(abs(now - usec), 10e6, "MONOTONIC_USEC is CLOCK_MONOTONIC now")
        self.mgr.wait(has("READY", "1"), 10, "READY=1 after the reload", i + 1)

        # SIGTERM: STOPPING=1, with more time asked for the drain.
        since = len(self.mgr.messages)
        d.proc.send_signal(signal.SIGTERM)
        _, stop = self.mgr.wait(has("STOPPING", "1"), 10, "STOPPING=1", since)
        self.assertIn("EXTEND_TIMEOUT_USEC", stop.fields)
        self.assertGreater(int(stop.fields["EXTEND_TIMEOUT_USEC"]), 5 * 1000000,
                           "EXTEND_TIMEOUT_USEC covers shutdown.grace (5 s)")
        self.assertEqual(d.proc.wait(20), 0, "exit status after SIGTERM" + self.daemon_logs())

    def test_ready_when_the_broker_is_unreachable(self):
        # A port nothing listens on: the first attempt fails at once, and
        # the boot must not wait for the broker.
        s = socket.socket()
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
        s.close()
        d = self.start({"broker.uri": "amqp://guest:guest@127.0.0.1:%d/%%2f" % port})
        _, ready = self.mgr.wait(has("READY", "1"), 15, "READY=1 with the broker down")
        self.assertEqual(ready.pid, d.pid)
        self.assertRegex(ready.fields.get("STATUS", ""), r"reconnecting to 127\.0\.0\.1:%d" % port)
        d.stop()

    def test_no_watchdog_for_another_pid(self):
        # WATCHDOG_PID names another process: the watchdog is not ours.
        d = self.start(watchdog_usec=200000, extra_env={"WATCHDOG_PID": "1"})
        self.mgr.wait(has("READY", "1"), 30, "READY=1")
        self.mgr.drain(1.0)
        pings = [m for m in self.mgr.messages if "WATCHDOG" in m.fields]
        self.assertEqual(pings, [], "pings although WATCHDOG_PID is another process")
        d.stop()

    def test_refused_reload_says_so(self):
        d = self.start()
        self.mgr.wait(has("READY", "1"), 30, "READY=1")
        with open(d.conf_path, "a") as f:
            f.write("io = { max_concurrency = 0; };\n")
        since = len(self.mgr.messages)
        d.proc.send_signal(signal.SIGHUP)
        i, _ = self.mgr.wait(has("RELOADING", "1"), 10, "RELOADING=1", since)
        _, ready = self.mgr.wait(has("READY", "1"), 10, "READY=1 after a refused reload", i + 1)
        self.assertIn("reload refused", ready.fields.get("STATUS", ""))
        d.stop()

    def test_without_notify_socket_nothing_is_sent(self):
        # The usual Taskd (no NOTIFY_SOCKET): runs, and says nothing here.
        d = self.taskd()
        self.mgr.drain(0.5)
        self.assertEqual(self.mgr.messages, [])
        d.stop()
