"""Abandoning a connection attempt never holds up the event loop.

A connection attempt runs on a thread of its own and can sit in a step for
the whole broker.connect_timeout: a TCP connect whose SYN gets no answer,
a TLS handshake with a peer that never answers, a login to a port that
accepts and says nothing.  A stop or a reload with new broker settings
during such a step must not wait for it: taskd exits, or connects with the
new settings, at once, and the abandoned attempt leaves no socket, thread
or fd behind once it ends.

The stalled peers are listeners of the test's own:
  - SilentListener accepts connections and never sends a byte (as plain
    TCP, the login waits; as amqps://, the TLS handshake waits);
  - FullBacklog listens with a backlog of 0 and never accepts, and one
    connection of the test's own fills the queue, so the kernel drops
    taskd's SYN and its connect() waits.
"""

import os
import selectors
import signal
import socket
import threading
import time

from taskdtest import TaskdTestCase, broker_uri, sockets_of

STALL = 30.0     # broker.connect_timeout: far longer than any bound below
EXIT_BOUND = 3.0
CUT_BOUND = 10.0  # an abandoned attempt past its TCP connect ends well within this


class SilentListener:
    """Accepts on 127.0.0.1 and never writes; counts the connections it
    accepted and those the peer has closed."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(64)
        self.port = self.sock.getsockname()[1]
        self.accepted = 0
        self.closed = 0
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()

    def run(self):
        sel = selectors.DefaultSelector()
        self.sock.setblocking(False)
        sel.register(self.sock, selectors.EVENT_READ)
        conns = []
        while not self.stop.is_set():
            for key, _ in sel.select(0.05):
                if key.fileobj is self.sock:
                    try:
                        c, _ = self.sock.accept()
                    except BlockingIOError:
                        continue
                    c.setblocking(False)
                    sel.register(c, selectors.EVENT_READ)
                    conns.append(c)
                    with self.lock:
                        self.accepted += 1
                    continue
                c = key.fileobj
                try:
                    data = c.recv(65536)   # what taskd sends is read and dropped
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError:
                    data = b""
                if not data:
                    sel.unregister(c)
                    c.close()
                    conns.remove(c)
                    with self.lock:
                        self.closed += 1
        for c in conns:
            c.close()
        sel.close()

    def counts(self):
        with self.lock:
            return self.accepted, self.closed

    def close(self):
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


class FullBacklog:
    """A listener whose accept queue is full: a connect() to it gets no
    SYN-ACK and waits."""

    def __init__(self):
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.fillers = []
        # Connect until one connect does not complete: the queue is full.
        for _ in range(8):
            c = socket.socket()
            c.setblocking(False)
            c.connect_ex(("127.0.0.1", self.port))
            self.fillers.append(c)
            sel = selectors.DefaultSelector()
            sel.register(c, selectors.EVENT_WRITE)
            done = sel.select(1.0)
            sel.close()
            if not done:
                return
        raise AssertionError("cannot fill the accept queue of a listen(0) socket")

    def close(self):
        for c in self.fillers:
            c.close()
        self.sock.close()


def syn_sent_to(pid, port):
    """Whether pid has a socket in SYN-SENT towards 127.0.0.1:port."""
    mine = sockets_of(pid)
    with open("/proc/net/tcp") as f:
        for line in f.readlines()[1:]:
            parts = line.split()
            rem, state, inode = parts[2], parts[3], parts[9]
            if state == "02" and int(rem.split(":")[1], 16) == port and inode in mine:
                return True
    return False


def fd_count(pid):
    return len(os.listdir("/proc/%d/fd" % pid))


def thread_count(pid):
    return len(os.listdir("/proc/%d/task" % pid))


class Connector(TaskdTestCase):
    def stalled(self, uri, **conf):
        full = {"broker.uri": uri, "broker.connect_timeout": STALL}
        full.update(conf)
        d = self.taskd(full, start=False)
        d.start(wait=False)
        return d

    def stop_within(self, d, bound):
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGTERM)
        try:
            rc = d.proc.wait(STALL + 10)
        except Exception:
            d.proc.kill()
            d.proc.wait(10)
            self.fail("no exit after SIGTERM" + self.daemon_logs())
        took = time.monotonic() - t0
        self.assertEqual(rc, 0, "exit status after SIGTERM" + self.daemon_logs())
        self.assertLess(took, bound, "SIGTERM during a stalled connection attempt: "
                        "exit took %.1f s (connect_timeout %.0f s)%s"
                        % (took, STALL, self.daemon_logs()))
        return took

    def reload_to_broker(self, d):
        """Points d at the real broker again; returns the seconds until it
        consumes."""
        d.conf["broker"]["uri"] = broker_uri()
        d.write_config()
        t0 = time.monotonic()
        d.proc.send_signal(signal.SIGHUP)
        d.wait_consuming(timeout=STALL + 10)
        return time.monotonic() - t0

    def test_stop_during_tcp_connect(self):
        peer = FullBacklog()
        self.addCleanup(peer.close)
        d = self.stalled("amqp://guest:guest@127.0.0.1:%d/%%2f" % peer.port)
        self.wait_for("taskd's connect() to the full listener under way",
                      lambda: syn_sent_to(d.pid, peer.port), 15)
        took = self.stop_within(d, EXIT_BOUND)
        print("  (exit %.2f s after SIGTERM)" % took, end=" ", flush=True)

    def test_stop_during_tls_handshake(self):
        peer = SilentListener()
        self.addCleanup(peer.close)
        d = self.stalled("amqps://guest:guest@localhost:%d/%%2f" % peer.port)
        self.wait_for("taskd's TLS connection accepted", lambda: peer.counts()[0] >= 1, 15)
        took = self.stop_within(d, EXIT_BOUND)
        print("  (exit %.2f s after SIGTERM)" % took, end=" ", flush=True)

    def test_stop_during_login(self):
        peer = SilentListener()
        self.addCleanup(peer.close)
        d = self.stalled("amqp://guest:guest@127.0.0.1:%d/%%2f" % peer.port)
        self.wait_for("taskd's connection accepted", lambda: peer.counts()[0] >= 1, 15)
        self.stop_within(d, EXIT_BOUND)
        # The abandoned attempt's socket is closed, not left open.
        self.wait_for("the stalled connection closed by taskd",
                      lambda: peer.counts()[1] >= 1, 5)

    def test_reload_away_from_a_stalled_handshake(self):
        peer = SilentListener()
        self.addCleanup(peer.close)
        d = self.stalled("amqps://guest:guest@localhost:%d/%%2f" % peer.port)
        self.wait_for("taskd's TLS connection accepted", lambda: peer.counts()[0] >= 1, 15)
        took = self.reload_to_broker(d)
        self.assertLess(took, 10, "consuming %.1f s after the reload away from a stalled "
                        "attempt%s" % (took, self.daemon_logs()))
        self.assertEqual(self.run_task("echo", b"after").body, b"after")
        print("  (consuming %.2f s after SIGHUP)" % took, end=" ", flush=True)

    def abort_many(self, d, peer, n):
        """Reloads d n times with settings that differ each time (the
        heartbeat), each once the listener has taken the attempt before,
        so every reload abandons an attempt in its stalled step."""
        for i in range(n):
            self.wait_for("connection attempt %d accepted" % (i + 1),
                          lambda: peer.counts()[0] >= i + 1, 15)
            d.conf["broker"]["heartbeat"] = 30 + (i + 1) % 2
            d.write_config()
            d.proc.send_signal(signal.SIGHUP)
            self.assert_alive(d)

    def check_no_leak(self, uri, n, settle):
        d = self.taskd({"broker.connect_timeout": settle})
        pid = d.pid
        self.assertEqual(self.run_task("echo", b"before").body, b"before")
        fds, threads = fd_count(pid), thread_count(pid)

        peer = SilentListener()
        self.addCleanup(peer.close)
        d.conf["broker"]["uri"] = uri % peer.port
        d.write_config()
        d.proc.send_signal(signal.SIGHUP)
        self.abort_many(d, peer, n)
        self.wait_for("attempt %d accepted" % (n + 1), lambda: peer.counts()[0] >= n + 1, 15)
        took = self.reload_to_broker(d)
        self.assertLess(took, 10, "consuming %.1f s after the reload%s"
                        % (took, self.daemon_logs()))
        self.assertEqual(self.run_task("echo", b"after").body, b"after")

        # Every abandoned attempt ends at once, far inside connect_timeout,
        # and takes its socket and thread with it.
        self.wait_for("every stalled connection closed by taskd (accepted, closed: %s)"
                      % (peer.counts(),), lambda: peer.counts()[1] >= n + 1, CUT_BOUND)
        self.wait_for("taskd back to %d fds and %d threads (now %d, %d)"
                      % (fds, threads, fd_count(pid), thread_count(pid)),
                      lambda: (fd_count(pid), thread_count(pid)) == (fds, threads),
                      CUT_BOUND)
        self.assertEqual(peer.counts(), (n + 1, n + 1))

    def test_aborted_logins_leak_nothing(self):
        # The socket is known once connected, so an abandoned login is
        # shut down at once: closed well before connect_timeout.
        self.check_no_leak("amqp://guest:guest@127.0.0.1:%d/%%2f", 40, STALL)

    def test_aborted_handshakes_leak_nothing(self):
        # Inside the TLS handshake the socket belongs to the library; taskd
        # learns it when the handshake starts, so an abandoned handshake is
        # cut at once too, and frees everything.
        self.check_no_leak("amqps://guest:guest@localhost:%d/%%2f", 15, STALL)
