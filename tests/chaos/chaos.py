"""The chaos test: taskd's delivery guarantees under random faults.

    chaos.py [--minutes N] [--seed S] [--taskd PATH] [--rate R] [--keep]

Starts a private RabbitMQ (tests/rabbitmq-private) and two taskd nodes on
one task queue, publishes a steady mixed workload with publisher confirms
(plus bursts of thousands of sleeps), consumes the results continuously
from a durable reply queue, and every few seconds injects a fault chosen at
random from the seed:

    kill9           SIGKILL a node, restart it after a pause
    term            SIGTERM a node (it must drain and exit 0), restart it
    hup             SIGHUP a node: the same file, or a changed pool size,
                    or a changed heartbeat (a reconnect with a drain)
    workers         SIGKILL every CPU worker of a node
    broker_restart  rabbitmqctl stop_app, a pause, start_app
    broker_freeze   SIGSTOP the broker's VM past two heartbeats, SIGCONT

At the end it stops publishing, waits (bounded) until every confirmed task
has an answer, stops the nodes with SIGTERM, and reports:

    lost         confirmed, never answered, and not in the task queue once
                 the nodes have stopped (a task the drain bound left in
                 the queue is counted as "still queued", not lost)
    stalled      the drain bound passed with tasks unanswered and no
                 answer came in its last 30 s: the nodes stopped working
    wrong        a result whose status cannot be right for its task, or an
                 "ok" whose body is not the task's correct result
    deaths       a node that exited without being killed or stopped by the
                 chaos, or not with status 0 after a SIGTERM
    sanitizer    AddressSanitizer/UBSan/LeakSanitizer reports in the logs
    duplicates   tasks answered more than once (at-least-once: reported,
                 not a failure)

Every task can be checked: echo answers its bytes, sha256 their hex digest,
sleep and burn their text.  A task whose `timeout` header is far below its
length must be answered "timeout" after 1 + retries attempts; a CPU task
may be answered "worker_crashed" only when a `workers` fault hit between
its publish and its answer.  The last line is "N passed, N failed" over the
four must-be-zero counts; the exit status is 0 only when all are zero.
"""

import argparse
import collections
import decimal
import errno
import hashlib
import json
import os
import random
import re
import resource
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid

TOP_SRCDIR = os.environ.get("TOP_SRCDIR") or os.path.dirname(
    os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
sys.path.insert(0, os.path.join(TOP_SRCDIR, "tests", "integration"))

import pika  # noqa: E402
import pika.exceptions  # noqa: E402

# Importing the test helpers also teaches pika to send float headers.
from taskdtest import hstr, libconfig_text  # noqa: E402

RABBITMQ_PRIVATE = os.path.join(TOP_SRCDIR, "tests", "rabbitmq-private")

# The nodes' task table: the four built-ins, and two with retries.
TASKS = [
    {"name": "echo", "handler": "echo"},
    {"name": "sleep", "handler": "sleep"},
    {"name": "sha256", "handler": "sha256"},
    {"name": "burn", "handler": "burn"},
    {"name": "sleep_retry", "handler": "sleep", "retries": 2},
    {"name": "burn_retry", "handler": "burn", "retries": 2},
]
RETRIES = {t["name"]: t.get("retries", 0) for t in TASKS}
CPU_TASKS = {"sha256", "burn", "burn_retry"}

HEARTBEATS = (2, 3)          # a hup fault switches between these
SHUTDOWN_GRACE = 10.0        # longer than any task that should finish
TASK_TIMEOUT = 120.0         # limits.timeout: far above any task's length
FAULTS = ("kill9", "term", "hup", "workers", "broker_restart", "broker_freeze")

SANITIZER_RE = re.compile(r"ERROR: \w*Sanitizer|runtime error:")


def say(msg):
    print("chaos: " + msg, flush=True)


def now():
    return time.monotonic()


# --------------------------------------------------------------------------
# The broker

def free_port():
    """A port P with P (AMQP), P+1 (epmd) and P+20000 (distribution) free."""
    def free(port):
        for family, addr in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::1")):
            try:
                s = socket.socket(family, socket.SOCK_STREAM)
            except OSError:
                continue
            try:
                s.bind((addr, port))
            except OSError as e:
                if family == socket.AF_INET6 and e.errno != errno.EADDRINUSE:
                    continue
                return False
            finally:
                s.close()
        return True

    rng = random.SystemRandom()
    for _ in range(200):
        p = rng.randrange(20000, 40000)
        if free(p) and free(p + 1) and free(p + 20000):
            return p
    raise RuntimeError("no free port triple found in 20000-40000")


class Broker:
    """The private RabbitMQ node; every call is bounded."""

    def __init__(self, directory, port):
        self.dir = directory
        self.port = port
        self.vm = None          # pid while it is frozen

    def _run(self, *args, timeout=120):
        cmd = [RABBITMQ_PRIVATE] + [str(a) for a in args]
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=timeout)
        if p.returncode != 0:
            raise RuntimeError("%s failed (%d): %s" % (
                " ".join(cmd[1:3]), p.returncode,
                (p.stdout + p.stderr).decode(errors="replace").strip()[-500:]))
        return p.stdout.decode(errors="replace")

    def start(self):
        self._run("start", self.dir, self.port, timeout=180)

    def ctl(self, *args):
        return self._run("ctl", self.dir, *args, timeout=90)

    def pid(self):
        return int(self._run("pid", self.dir).strip())

    def freeze(self):
        self.vm = self.pid()
        os.kill(self.vm, signal.SIGSTOP)

    def thaw(self):
        if self.vm is not None:
            try:
                os.kill(self.vm, signal.SIGCONT)
            except ProcessLookupError:
                pass
            self.vm = None

    def stop(self):
        self.thaw()
        try:
            self._run("stop", self.dir, timeout=120)
        except (RuntimeError, subprocess.TimeoutExpired) as e:
            say("stopping the broker: %s" % e)

    def queue_stats(self, name):
        """(ready, unacked, consumers) of a queue, or None."""
        out = self.ctl("list_queues", "name", "messages_ready",
                       "messages_unacknowledged", "consumers")
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[0] == name:
                return tuple(int(x) for x in parts[1:])
        return None


def connection_parameters(port):
    # No client heartbeats: a frozen broker must not cost the checker its
    # connections (their unconfirmed publishes would become unknowns);
    # a restarted broker closes them, and they are made again.
    return pika.ConnectionParameters(
        host="127.0.0.1", port=port, virtual_host="/",
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0, connection_attempts=1, socket_timeout=5,
        stack_timeout=15, blocked_connection_timeout=None)


# --------------------------------------------------------------------------
# Tasks and their expected answers

class Task:
    """One published task and what may answer it."""

    __slots__ = ("n", "name", "label", "expect", "digest", "t_pub", "state",
                 "returned", "results")

    def __init__(self, n, name, label, expect, digest):
        self.n = n
        self.name = name
        self.label = label        # e.g. "sleep", "sleep/timeout", "sleep/burst"
        self.expect = expect      # "ok" or "timeout"
        self.digest = digest      # sha256 of the correct "ok" body
        self.t_pub = None
        self.state = "new"        # sent, confirmed, nacked, returned, unknown
        self.returned = False
        self.results = []         # Answer tuples, one per distinct result


Answer = collections.namedtuple(
    "Answer", "t status code digest attempt type task_id worker")


def sha(b):
    return hashlib.sha256(b).digest()


class Workload:
    """What to publish next, from its own seeded generator."""

    def __init__(self, rng, run_id):
        self.rng = rng
        self.run_id = run_id
        self.mix = [                 # (weight, maker)
            (30, self.echo), (15, self.sha256), (25, self.sleep),
            (5, self.burn), (4, self.burn_retry), (6, self.sleep_retry),
            (4, self.sleep_timeout), (4, self.sleep_retry_timeout),
            (0.5, self.burn_timeout),
        ]
        self.total = sum(w for w, _ in self.mix)

    def timeout_header(self, lo, hi):
        """A timeout in one of the number forms clients send."""
        v = self.rng.uniform(lo, hi)
        form = self.rng.randrange(3)
        if form == 0:
            return v                                   # double
        if form == 1:
            return decimal.Decimal("%.3f" % v)         # decimal
        return "%.3f" % v                              # decimal text

    def echo(self):
        body = self.rng.randbytes(self.rng.randrange(0, 2048))
        return "echo", "echo", body, "ok", sha(body), None

    def sha256(self):
        body = self.rng.randbytes(self.rng.randrange(0, 8192))
        return ("sha256", "sha256", body, "ok",
                sha(hashlib.sha256(body).hexdigest().encode()), None)

    def _text(self, name, label, lo, hi, expect="ok", timeout=None):
        body = str(self.rng.randint(lo, hi)).encode()
        return name, label, body, expect, sha(body), timeout

    def sleep(self):
        return self._text("sleep", "sleep", 0, 1500)

    def burn(self):
        return self._text("burn", "burn", 1, 30)

    def burn_retry(self):
        return self._text("burn_retry", "burn_retry", 1, 30)

    def sleep_retry(self):
        return self._text("sleep_retry", "sleep_retry", 0, 800)

    def sleep_timeout(self):
        return self._text("sleep", "sleep/timeout", 10000, 30000, "timeout",
                          self.timeout_header(0.1, 1.0))

    def sleep_retry_timeout(self):
        return self._text("sleep_retry", "sleep_retry/timeout", 10000, 30000,
                          "timeout", self.timeout_header(0.1, 0.4))

    def burn_timeout(self):
        return self._text("burn", "burn/timeout", 20000, 30000, "timeout",
                          self.timeout_header(0.1, 0.3))

    def next(self, burst=False):
        if burst:
            return self._text("sleep", "sleep/burst", 100, 3000)
        x = self.rng.uniform(0, self.total)
        for w, make in self.mix:
            x -= w
            if x < 0:
                return make()
        return self.mix[0][1]()

    def properties(self, n, name, timeout, reply_queue):
        rng = self.rng
        headers = {}
        kw = {}
        # The task name in `type`, or in the `task` header (design §4).
        if rng.random() < 0.8:
            kw["type"] = name
        else:
            headers["task"] = name
        if timeout is not None:
            headers["timeout"] = timeout
        # A result goes to reply_to, or without one to reply.queue: the
        # same durable queue here.
        if rng.random() < 0.7:
            kw["reply_to"] = reply_queue
        return pika.BasicProperties(
            message_id="m-%s-%d" % (self.run_id, n),
            correlation_id="c-%s-%d" % (self.run_id, n),
            delivery_mode=2, headers=headers or None, **kw)


# --------------------------------------------------------------------------
# The books: every task, every result, every fault

class Books:
    def __init__(self, run_id):
        self.run_id = run_id
        self.lock = threading.Lock()
        self.tasks = []
        self.cid_re = re.compile(r"^c-%s-(\d+)$" % re.escape(run_id))
        self.strays = []          # results for no task of ours
        self.results = 0
        self.answered = 0
        self.seen = set()         # result identities, for broker redeliveries
        self.faults = []          # [t start, kind, detail, t end]
        self.deaths = []          # text of each unexpected death
        self.t0 = now()           # reset when the workload starts

    def new_task(self, *args):
        with self.lock:
            t = Task(len(self.tasks), *args)
            self.tasks.append(t)
            return t

    def fault(self, kind, detail=""):
        """Records a fault as it starts; the caller may set its end ([3])."""
        t = now()
        f = [t, kind, detail, t]
        with self.lock:
            self.faults.append(f)
        say("fault %-14s %s" % (kind, detail))
        return f

    def last_fault(self, before=None):
        with self.lock:
            for f in reversed(self.faults):
                if before is None or f[0] <= before:
                    return f
        return None

    def record(self, props, body):
        headers = {k: hstr(v) for k, v in (props.headers or {}).items()}
        cid = hstr(props.correlation_id)
        status = headers.get("taskd-status")
        code = None
        if status != "ok":
            try:
                code = json.loads(body.decode("utf-8")).get("error")
            except (UnicodeDecodeError, ValueError, AttributeError):
                code = "(body not JSON)"
        ident = (cid, headers.get("taskd-worker"), headers.get("taskd-attempt"),
                 headers.get("taskd-duration-us"), props.timestamp, sha(body))
        a = Answer(now(), status, code, sha(body), headers.get("taskd-attempt"),
                   hstr(props.type), headers.get("taskd-task-id"),
                   headers.get("taskd-worker"))
        with self.lock:
            # A result our consumer took but could not ack before its
            # connection died comes again, identical: not taskd's duplicate.
            if ident in self.seen:
                return
            self.seen.add(ident)
            self.results += 1
            m = self.cid_re.match(cid or "")
            if m is None or int(m.group(1)) >= len(self.tasks):
                self.strays.append((cid, a))
                return
            t = self.tasks[int(m.group(1))]
            if not t.results:
                self.answered += 1
            t.results.append(a)

    def counts(self):
        with self.lock:
            c = collections.Counter(t.state for t in self.tasks)
            return len(self.tasks), c, self.answered, self.results

    def unanswered_confirmed(self):
        with self.lock:
            return [t for t in self.tasks if t.state == "confirmed" and not t.results]


# --------------------------------------------------------------------------
# The publisher: asynchronous confirms, so that thousands can be in flight

class Publisher(threading.Thread):
    TICK = 0.02
    MAX_UNCONFIRMED = 5000
    PER_TICK = 250

    def __init__(self, books, workload, port, queue, reply_queue, rate, rng):
        super().__init__(name="publisher", daemon=True)
        self.books = books
        self.workload = workload
        self.port = port
        self.queue = queue
        self.reply_queue = reply_queue
        self.rate = rate
        self.rng = rng               # bursts: when and how big
        self.stopping = False        # set by the main thread
        self.stop_deadline = None
        self.done = False
        self.conn = None
        self.ch = None
        self.pending = collections.OrderedDict()   # delivery tag -> Task
        self.tag = 0
        self.credit = 0.0
        self.last = None
        self.next_burst = now() + self.rng.uniform(8, 20)
        self.burst_left = 0
        self.bursts = 0
        self.errors = collections.Counter()

    def run(self):
        while not self.done:
            try:
                self.conn = pika.SelectConnection(
                    connection_parameters(self.port),
                    on_open_callback=self._on_open,
                    on_open_error_callback=lambda c, e: c.ioloop.stop(),
                    on_close_callback=self._on_close)
                self.conn.ioloop.start()
            except Exception as e:  # noqa: BLE001 -- any failure: reconnect
                self.errors[type(e).__name__] += 1
            self._forget_pending()
            if self.stopping:
                self.done = True
                break
            time.sleep(0.3)

    def _forget_pending(self):
        # A publish whose confirm never came: it may or may not be queued.
        with self.books.lock:
            for t in self.pending.values():
                t.state = "unknown"
        self.pending.clear()
        self.ch = None

    def _on_close(self, conn, reason):
        self.errors["closed: " + type(reason).__name__] += 1
        conn.ioloop.stop()

    def _on_open(self, conn):
        conn.channel(on_open_callback=self._on_channel)

    def _on_channel(self, ch):
        ch.add_on_close_callback(self._on_channel_close)
        ch.add_on_return_callback(self._on_return)
        self.tag = 0
        ch.confirm_delivery(ack_nack_callback=self._on_confirm,
                            callback=lambda frame: self._ready(ch))

    def _on_channel_close(self, ch, reason):
        self.errors["channel closed: " + str(reason)[:60]] += 1
        if self.conn.is_open:
            self.conn.close()

    def _ready(self, ch):
        self.ch = ch
        self.last = now()
        self.conn.ioloop.call_later(self.TICK, self._tick)

    def _on_return(self, ch, method, props, body):
        m = self.books.cid_re.match(hstr(props.correlation_id) or "")
        if m:
            with self.books.lock:
                self.books.tasks[int(m.group(1))].returned = True

    def _on_confirm(self, frame):
        method = frame.method
        ack = isinstance(method, pika.spec.Basic.Ack)
        tags = []
        if method.multiple:
            while self.pending and next(iter(self.pending)) <= method.delivery_tag:
                tags.append(self.pending.popitem(last=False)[1])
        elif method.delivery_tag in self.pending:
            tags.append(self.pending.pop(method.delivery_tag))
        with self.books.lock:
            for t in tags:
                t.state = ("returned" if t.returned else "confirmed") if ack else "nacked"

    def _tick(self):
        if self.ch is None or not self.ch.is_open:
            return
        t = now()
        if self.stopping:
            if self.stop_deadline is None:
                self.stop_deadline = t + 30
            if not self.pending or t >= self.stop_deadline:
                self.done = True
                self.conn.close()
                return
            self.conn.ioloop.call_later(self.TICK, self._tick)
            return
        self.credit = min(self.credit + (t - self.last) * self.rate, self.rate)
        self.last = t
        if t >= self.next_burst:
            self.burst_left += self.rng.randint(1000, 3000)
            self.bursts += 1
            self.next_burst = t + self.rng.uniform(15, 30)
        budget = self.PER_TICK
        while budget > 0 and len(self.pending) < self.MAX_UNCONFIRMED:
            if self.burst_left > 0:
                self.burst_left -= 1
                spec = self.workload.next(burst=True)
            elif self.credit >= 1:
                self.credit -= 1
                spec = self.workload.next()
            else:
                break
            self._publish(spec)
            budget -= 1
        self.conn.ioloop.call_later(self.TICK, self._tick)

    def _publish(self, spec):
        name, label, body, expect, digest, timeout = spec
        task = self.books.new_task(name, label, expect, digest)
        props = self.workload.properties(task.n, name, timeout, self.reply_queue)
        task.t_pub = now()
        task.state = "sent"
        self.tag += 1
        self.pending[self.tag] = task
        self.ch.basic_publish("", self.queue, body, properties=props, mandatory=True)


# --------------------------------------------------------------------------
# The result consumer

class Consumer(threading.Thread):
    def __init__(self, books, port, reply_queue):
        super().__init__(name="consumer", daemon=True)
        self.books = books
        self.port = port
        self.reply_queue = reply_queue
        self.stopping = False
        self.errors = collections.Counter()

    def run(self):
        while not self.stopping:
            conn = None
            try:
                conn = pika.BlockingConnection(connection_parameters(self.port))
                ch = conn.channel()
                ch.basic_qos(prefetch_count=2000)
                ch.basic_consume(self.reply_queue, self._on_message)
                while not self.stopping:
                    conn.process_data_events(time_limit=0.2)
                conn.close()
            except Exception as e:  # noqa: BLE001 -- any failure: reconnect
                self.errors[type(e).__name__] += 1
                try:
                    if conn is not None and conn.is_open:
                        conn.close()
                except Exception:  # noqa: BLE001
                    pass
                time.sleep(0.3)

    def _on_message(self, ch, method, props, body):
        self.books.record(props, bytes(body))
        ch.basic_ack(method.delivery_tag)


# --------------------------------------------------------------------------
# A taskd node

class Node:
    """One taskd process at a time under a fixed name, config and log.

    `expect` says what the chaos did to the running process (None, "kill9"
    or "term"); the monitor judges each exit against it."""

    KEEP_CORES = 5
    cores = 0

    def __init__(self, name, workdir, taskd, conf, books):
        self.name = name
        self.dir = os.path.join(workdir, name)
        os.mkdir(self.dir)
        self.taskd = taskd
        self.conf = conf
        self.books = books
        self.conf_path = os.path.join(self.dir, "taskd.conf")
        self.log_path = os.path.join(self.dir, "taskd.log")
        self.lock = threading.Lock()
        self.proc = None
        self.expect = None
        self.reaped = True
        self.restart_at = None      # after an unexpected death
        self.starts = []            # (pid, log offset)
        self.pids = set()
        self.write_config()

    def write_config(self):
        with open(self.conf_path, "w") as f:
            f.write(libconfig_text(self.conf))

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def start(self):
        """Starts a new process unless one runs or has not been judged yet
        (the monitor and the chaos may both want to); True if it did."""
        env = {k: v for k, v in os.environ.items()
               if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "INVOCATION_ID",
                            "LISTEN_FDS", "WATCHDOG_USEC", "WATCHDOG_PID")}
        with self.lock:
            if self.proc is not None and not self.reaped:
                return False
            offset = self.log_size()
            with open(self.log_path, "ab") as log:
                self.proc = subprocess.Popen(
                    [self.taskd, "-f", "-c", self.conf_path], stdin=subprocess.DEVNULL,
                    stdout=log, stderr=log, env=env, cwd=self.dir,
                    start_new_session=True)
            self.expect = None
            self.reaped = False
            self.restart_at = None
            self.starts.append((self.proc.pid, offset))
            self.pids.add(self.proc.pid)
            return True

    def alive(self):
        with self.lock:
            return self.proc is not None and not self.reaped and self.proc.poll() is None

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def send(self, sig, expect=None):
        """Signals the running process; False when there is none."""
        with self.lock:
            if self.proc is None or self.reaped or self.proc.poll() is not None:
                return False
            if expect is not None:
                self.expect = expect
            self.proc.send_signal(sig)
            return True

    def wait_reaped(self, timeout):
        deadline = now() + timeout
        while now() < deadline:
            with self.lock:
                if self.reaped:
                    return True
            time.sleep(0.05)
        return False

    def children(self):
        pid = self.pid
        kids = []
        try:
            for tid in os.listdir("/proc/%d/task" % pid):
                with open("/proc/%d/task/%s/children" % (pid, tid)) as f:
                    kids.extend(int(x) for x in f.read().split())
        except (FileNotFoundError, ProcessLookupError):
            pass
        return kids

    def log_segment(self, pid):
        """The log lines written by process pid (from its start on)."""
        offsets = [o for p, o in self.starts]
        for i, (p, o) in enumerate(self.starts):
            if p == pid:
                end = offsets[i + 1] if i + 1 < len(offsets) else None
                with open(self.log_path, "rb") as f:
                    f.seek(o)
                    data = f.read() if end is None else f.read(end - o)
                return data.decode("utf-8", errors="replace").splitlines()
        return []

    def check(self, final=False):
        """The monitor's look at the process: reaps it and judges the exit."""
        with self.lock:
            if self.proc is None or self.reaped:
                if (self.restart_at is not None and now() >= self.restart_at
                        and not final):
                    restart = True
                else:
                    return
            else:
                rc = self.proc.poll()
                if rc is None:
                    return
                self.reaped = True
                pid, expect = self.proc.pid, self.expect
                restart = False
        if restart:
            say("restarting %s after its unexpected exit" % self.name)
            self.start()
            return
        why = None
        if expect is None:
            why = "exited with %s without being signalled" % describe(rc)
        elif expect == "kill9" and rc != -signal.SIGKILL:
            why = "exited with %s while being killed" % describe(rc)
        elif expect == "term" and rc != 0:
            why = "exited with %s after SIGTERM" % describe(rc)
        if why is not None:
            self.unexpected(pid, why)
            if expect is None:
                with self.lock:
                    self.restart_at = now() + 1.0

    def unexpected(self, pid, why):
        f = self.books.last_fault()
        lines = self.log_segment(pid)
        text = ["%s (pid %d) %s; last fault before it: %s" % (
            self.name, pid, why,
            "%s %s, %.1f s earlier" % (f[1], f[2], now() - f[0]) if f else "none")]
        text.append("  --- last lines of its log:")
        text.extend("  | " + ln for ln in lines[-25:])
        core = os.path.join(self.dir, "core")
        if os.path.exists(core):
            kept = "%s.%d" % (core, pid)
            os.rename(core, kept)
            text.append("  --- backtrace (gdb, %s):" % kept)
            text.extend("  | " + ln for ln in backtrace(self.taskd, core=kept))
            # A crash loop would write tens of MB per crash and hold the
            # monitor in gdb: nodes started from now on dump no core.
            Node.cores += 1
            if Node.cores == Node.KEEP_CORES:
                soft, hard = resource.getrlimit(resource.RLIMIT_CORE)
                resource.setrlimit(resource.RLIMIT_CORE, (0, hard))
        say("UNEXPECTED: " + text[0])
        with self.books.lock:
            self.books.deaths.append((signature(why, text), "\n".join(text)))


FRAME_RES = (
    re.compile(r"#\d+\s+(?:0x[0-9a-f]+ in )?(\w+) \(.*\) at (\S+)"),   # gdb
    re.compile(r"#\d+ 0x[0-9a-f]+ in (\w+) (\S+)"),                            # ASan
)


def signature(why, lines):
    """What tells one defect from another: how the process ended and the
    first two frames of its stack (gdb's or the sanitizer's), if any."""
    frames = []
    for ln in "\n".join(lines).splitlines():
        for rx in FRAME_RES:
            m = rx.search(ln)
            if m and m.group(1) not in ("abort", "raise", "__GI_raise", "__GI_abort",
                                        "__pthread_kill_implementation"):
                f = "%s %s" % (m.group(1), os.path.basename(m.group(2)))
                if not frames or frames[-1] != f:     # gdb prints #0 twice
                    frames.append(f)
                break
        if len(frames) == 2:
            break
    how = re.sub(r"0x[0-9a-f]+", "0x...", why.split(";")[0])
    how = re.sub(r"\b\d+(\.\d+)?\b", "N", how)
    return how + (" at " + " < ".join(frames) if frames else "")


def describe(rc):
    if rc is None:
        return "no exit"
    if rc < 0:
        try:
            return "signal %s" % signal.Signals(-rc).name
        except ValueError:
            return "signal %d" % -rc
    return "status %d" % rc


def backtrace(taskd, core=None, pid=None):
    if shutil.which("gdb") is None:
        return ["(no gdb)"]
    cmd = ["gdb", "-batch", "-nx", "-ex", "set pagination off",
           "-ex", "thread apply all bt 30", taskd]
    cmd += [core] if core else ["-p", str(pid)]
    try:
        p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                           timeout=90)
    except subprocess.TimeoutExpired:
        return ["(gdb timed out)"]
    out = p.stdout.decode(errors="replace").splitlines()
    keep = [ln for ln in out if ln.startswith(("#", "Thread", "Program terminated"))]
    return keep[:80] or out[-20:]


class Monitor(threading.Thread):
    def __init__(self, nodes):
        super().__init__(name="monitor", daemon=True)
        self.nodes = nodes
        self.final = False
        self.stopping = False

    def run(self):
        while not self.stopping:
            for n in self.nodes:
                n.check(self.final)
            time.sleep(0.1)


# --------------------------------------------------------------------------
# The chaos

class Chaos:
    def __init__(self, rng, books, broker, nodes, taskd):
        self.rng = rng
        self.books = books
        self.broker = broker
        self.nodes = nodes
        self.taskd = taskd
        self.counts = collections.Counter()

    def pick_node(self):
        up = [n for n in self.nodes if n.alive()]
        # Draw even when none is up, so the seed's sequence stays the same.
        i = self.rng.randrange(len(self.nodes))
        if self.nodes[i] in up or not up:
            return self.nodes[i] if up else None
        return up[0]

    def run_one(self):
        kind = self.rng.choice(FAULTS)
        node = self.pick_node() if kind in ("kill9", "term", "hup", "workers") else None
        if kind in ("kill9", "term", "hup", "workers") and node is None:
            kind = "broker_restart"
        getattr(self, kind)(node) if node is not None else getattr(self, kind)()
        self.counts[kind] += 1

    def kill9(self, node):
        self.books.fault("kill9", "%s pid %d" % (node.name, node.pid))
        if not node.send(signal.SIGKILL, expect="kill9"):
            return                  # it had just died: the monitor restarts it
        node.wait_reaped(15)
        time.sleep(self.rng.uniform(0.3, 3.0))
        node.start()

    def term(self, node):
        self.books.fault("term", "%s pid %d" % (node.name, node.pid))
        limit = SHUTDOWN_GRACE + 25
        if not node.send(signal.SIGTERM, expect="term"):
            return                  # it had just died: the monitor restarts it
        if not node.wait_reaped(limit):
            pid = node.pid
            bt = backtrace(self.taskd, pid=pid)
            node.unexpected(pid, "did not exit within %.0f s of SIGTERM; backtrace:\n%s"
                            % (limit, "\n".join("    " + ln for ln in bt)))
            node.send(signal.SIGKILL, expect="kill9")
            node.wait_reaped(15)
        time.sleep(self.rng.uniform(0.2, 2.0))
        node.start()

    def hup(self, node):
        variant = self.rng.choice(("same", "workers", "heartbeat"))
        if variant == "workers":
            node.conf["cpu"]["workers"] = 3 if node.conf["cpu"]["workers"] == 2 else 2
        elif variant == "heartbeat":
            hb = node.conf["broker"]["heartbeat"]
            node.conf["broker"]["heartbeat"] = HEARTBEATS[1] if hb == HEARTBEATS[0] else HEARTBEATS[0]
        node.write_config()
        self.books.fault("hup", "%s pid %d (%s: workers %d, heartbeat %d)" % (
            node.name, node.pid, variant, node.conf["cpu"]["workers"],
            node.conf["broker"]["heartbeat"]))
        self.counts["hup/" + variant] += 1
        since = node.log_size()
        node.send(signal.SIGHUP)
        # A refused reload would mean the checker wrote a bad file.
        deadline = now() + 10
        while now() < deadline and node.alive():
            with open(node.log_path, "rb") as f:
                f.seek(since)
                text = f.read().decode(errors="replace")
            if "reload refused" in text:
                raise RuntimeError("%s refused the checker's config: %s" % (node.name, text[-500:]))
            if "configuration reloaded" in text:
                break
            time.sleep(0.1)

    def workers(self, node):
        kids = node.children()
        f = self.books.fault("workers", "%s pid %d: %d workers %s" % (
            node.name, node.pid, len(kids), kids))
        for k in kids:
            try:
                os.kill(k, signal.SIGKILL)
            except ProcessLookupError:
                pass
        # A task published until now may have been in a worker just killed.
        f[3] = now()

    def broker_restart(self):
        pause = self.rng.uniform(1.0, 4.0)
        self.books.fault("broker_restart", "stop_app, %.1f s, start_app" % pause)
        self.broker.ctl("stop_app")
        time.sleep(pause)
        for attempt in range(3):
            try:
                self.broker.ctl("start_app")
                return
            except RuntimeError:
                if attempt == 2:
                    raise
                time.sleep(2)

    def broker_freeze(self):
        hb = max(n.conf["broker"]["heartbeat"] for n in self.nodes)
        length = 2 * hb + self.rng.uniform(1.0, 3.0)
        self.books.fault("broker_freeze", "SIGSTOP for %.1f s" % length)
        self.broker.freeze()
        try:
            time.sleep(length)
        finally:
            self.broker.thaw()


# --------------------------------------------------------------------------
# The checker

# limits.max_deliveries as the nodes run (taskd's default), and the faults
# that put a node's tasks back in the queue.
MAX_DELIVERIES = 5
REDELIVERING = ("kill9", "term", "hup", "broker_restart", "broker_freeze")


def judge(books):
    """(wrong list, status counter, duplicate count, tasks answered twice+)."""
    wrong = []
    statuses = collections.Counter()
    dups = 0
    dup_tasks = 0
    kills = [(f[0], f[3]) for f in books.faults if f[1] == "workers"]
    for t in books.tasks:
        if len(t.results) > 1:
            dup_tasks += 1
            dups += len(t.results) - 1
        retries = RETRIES[t.name]
        for a in t.results:
            key = a.status if a.status == "ok" else "%s/%s" % (a.status, a.code)
            statuses[key] += 1
            why = None
            if a.type != t.name:
                why = "type %r, not the task name" % (a.type,)
            elif a.task_id != "m-%s-%d" % (books.run_id, t.n):
                why = "taskd-task-id %r is not the message_id" % (a.task_id,)
            elif a.status == "ok":
                if t.expect != "ok":
                    why = "ok for a task that must time out"
                elif a.digest != t.digest:
                    why = "ok with a body that is not the task's result"
            elif a.status == "timeout":
                if t.expect != "timeout":
                    # The deadline runs from the delivery: only an answer
                    # sooner than limits.timeout after the publish is sure
                    # to be wrong.
                    if a.t - t.t_pub < TASK_TIMEOUT:
                        why = "timeout for a task far shorter than its timeout"
                elif a.code != "timeout":
                    why = "timeout status with error code %r" % (a.code,)
                elif a.attempt != 1 + retries:
                    why = "timeout after %r attempts, not 1 + %d retries" % (a.attempt, retries)
            elif a.status == "error" and a.code == "worker_crashed":
                if t.name not in CPU_TASKS:
                    why = "worker_crashed for an I/O task"
                elif a.attempt != 1 + retries:
                    why = "worker_crashed after %r attempts, not 1 + %d retries" % (
                        a.attempt, retries)
                elif not any(t.t_pub <= end and start <= a.t for start, end in kills):
                    why = "worker_crashed, but no worker was killed while it ran"
            elif a.status == "rejected" and a.code == "delivery_limit":
                # Right only for a task that could have been delivered more
                # than limits.max_deliveries times: each fault that ends a
                # node or its connection hands its tasks out again.
                hits = sum(1 for f in books.faults if f[1] in REDELIVERING and
                           t.t_pub <= f[0] <= a.t)
                if hits < MAX_DELIVERIES:
                    why = "delivery_limit after only %d faults that redeliver" % hits
            else:
                why = "status %r, error %r" % (a.status, a.code)
            if why:
                wrong.append((t, a, why))
    return wrong, statuses, dups, dup_tasks


def judge_selftest():
    """The checker checks itself before it checks taskd: each rule of
    judge() must reject a made-up wrong answer and accept a right one."""
    books = Books("self")
    books.faults.append([100.0, "workers", "", 100.5])
    for i in range(MAX_DELIVERIES):
        books.faults.append([300.0 + i, "kill9", "", 300.0 + i])
    body = b"42"

    def case(name, expect, status, code=None, out=body, attempt=1, t_answer=50.0,
             t_pub=10.0, typ=None):
        t = books.new_task(name, name, expect, sha(body))
        t.t_pub = t_pub
        t.results.append(Answer(t_answer, status, code, sha(out), attempt,
                                typ or name, "m-self-%d" % t.n, "h:1"))
        return t

    right = [case("sleep", "ok", "ok"),
             case("sleep", "timeout", "timeout", "timeout"),
             case("sleep_retry", "timeout", "timeout", "timeout", attempt=3),
             case("sha256", "ok", "error", "worker_crashed", t_answer=101.0),
             case("burn", "ok", "error", "worker_crashed", t_pub=100.2, t_answer=100.3),
             case("echo", "ok", "timeout", "timeout", t_pub=0.0, t_answer=200.0),
             case("sleep", "ok", "rejected", "delivery_limit", t_pub=299.0, t_answer=310.0)]
    wrong = [case("echo", "ok", "ok", out=b"43"),
             case("echo", "ok", "ok", typ="sleep"),
             case("sleep", "timeout", "ok"),
             case("sleep", "ok", "timeout", "timeout"),
             case("sleep_retry", "timeout", "timeout", "timeout", attempt=1),
             case("sha256", "ok", "error", "worker_crashed"),
             case("sha256", "ok", "error", "worker_crashed", t_pub=100.6, t_answer=101.0),
             case("burn_retry", "ok", "error", "worker_crashed", t_answer=101.0),
             case("sleep", "ok", "error", "worker_crashed", t_answer=101.0),
             case("echo", "ok", "error", "handler_failed"),
             case("echo", "ok", "rejected", "unknown_task"),
             case("sleep", "ok", "rejected", "delivery_limit", t_pub=301.5, t_answer=310.0)]
    found = set(t.n for t, a, why in judge(books)[0])
    for t in right:
        assert t.n not in found, "judge() rejects right answer %d" % t.n
    for t in wrong:
        assert t.n in found, "judge() accepts wrong answer %d" % t.n


def describe_task(books, t, a=None):
    s = "task %d (%s, published at %.1f s" % (t.n, t.label, t.t_pub - books.t0)
    if a is not None:
        s += ", answered at %.1f s by %s attempt %r" % (a.t - books.t0, a.worker, a.attempt)
        f = books.last_fault(before=a.t)
        if f is not None:
            s += "; last fault before: %s %s at %.1f s" % (f[1], f[2], f[0] - books.t0)
    return s + ")"


def print_grouped(items):
    """(signature, text) items: a count per signature, then the text of
    the first of each."""
    groups = collections.OrderedDict()
    for sig, text in items:
        groups.setdefault(sig, []).append(text)
    for sig, texts in groups.items():
        print("  %d x %s" % (len(texts), sig), flush=True)
    for sig, texts in groups.items():
        print("  --- the first of %d x %s:" % (len(texts), sig), flush=True)
        print("  " + texts[0].replace("\n", "\n  "), flush=True)


def sanitizer_reports(nodes):
    found = []
    for n in nodes:
        try:
            with open(n.log_path, "rb") as f:
                lines = f.read().decode("utf-8", errors="replace").splitlines()
        except FileNotFoundError:
            continue
        for i, ln in enumerate(lines):
            if SANITIZER_RE.search(ln):
                block = lines[i:i + 30]
                what = ln[SANITIZER_RE.search(ln).start():][:100]
                found.append((signature(what, block),
                              "%s log line %d:\n%s" % (
                                  n.name, i + 1, "\n".join("  | " + x for x in block))))
    return found


# --------------------------------------------------------------------------
# The run

def node_conf(port, queue, reply_queue):
    return {
        "broker": {
            "uri": "amqp://guest:guest@127.0.0.1:%d/%%2f" % port,
            "heartbeat": HEARTBEATS[0],
            "prefetch": 0,
            "connect_timeout": 2.0,
            "reconnect_max": 2.0,
        },
        "queue": {"name": queue, "durable": True, "default_task": ""},
        "reply": {"queue": reply_queue},
        "io": {"max_concurrency": 10000},
        "cpu": {"workers": 2},
        "limits": {"timeout": TASK_TIMEOUT, "max_payload": 16777216},
        "log": {"level": "info"},
        "shutdown": {"grace": SHUTDOWN_GRACE},
        "tasks": [dict(t) for t in TASKS],
    }


def declare_queues(port, queue, reply_queue):
    deadline = now() + 60
    while True:
        try:
            conn = pika.BlockingConnection(connection_parameters(port))
            break
        except pika.exceptions.AMQPConnectionError:
            if now() >= deadline:
                raise
            time.sleep(0.5)
    ch = conn.channel()
    ch.queue_declare(queue, durable=True)
    ch.queue_declare(reply_queue, durable=True)
    conn.close()


def wait_for(what, predicate, timeout, interval=0.2):
    deadline = now() + timeout
    while not predicate():
        if now() >= deadline:
            raise RuntimeError("%s: not within %.0f s" % (what, timeout))
        time.sleep(interval)


def progress(books, pub, label):
    total, states, answered, results = books.counts()
    say("%-8s t=%4.0fs published %d (confirmed %d, unconfirmed %d) answered %d, "
        "results %d, bursts %d" % (
            label, now() - books.t0, total, states["confirmed"], states["sent"],
            answered, results, pub.bursts))


def run(args, workdir):
    rng = random.Random(args.seed)
    run_id = uuid.uuid4().hex[:8]
    books = Books(run_id)
    queue = "chaos.%s.tasks" % run_id
    reply_queue = "chaos.%s.results" % run_id

    port = free_port()
    broker = Broker(os.path.join(workdir, "broker"), port)
    say("seed %d, %.1f minutes, %d tasks/s, taskd %s" % (
        args.seed, args.minutes, args.rate, args.taskd))
    say("starting a private RabbitMQ on 127.0.0.1:%d" % port)
    broker.start()
    nodes = []
    threads = []
    try:
        declare_queues(port, queue, reply_queue)
        for name in ("node1", "node2"):
            nodes.append(Node(name, workdir, args.taskd,
                              node_conf(port, queue, reply_queue), books))
        for n in nodes:
            n.start()
        wait_for("both nodes consuming",
                 lambda: (broker.queue_stats(queue) or (0, 0, 0))[2] >= 2, 90, 0.5)
        monitor = Monitor(nodes)
        consumer = Consumer(books, port, reply_queue)
        pub = Publisher(books, Workload(random.Random(rng.random()), run_id), port,
                        queue, reply_queue, args.rate, random.Random(rng.random()))
        chaos = Chaos(random.Random(rng.random()), books, broker, nodes, args.taskd)
        threads = [monitor, consumer, pub]
        for th in threads:
            th.start()
        books.t0 = now()

        # The chaos phase.
        end = books.t0 + args.minutes * 60
        next_fault = now() + chaos.rng.uniform(3, 6)
        next_report = now() + 15
        while now() < end:
            if now() >= next_report:
                progress(books, pub, "chaos")
                next_report = now() + 15
            if now() >= next_fault:
                chaos.run_one()
                next_fault = now() + chaos.rng.uniform(2, 5)
            time.sleep(0.1)

        # The drain: no more publishing, both nodes up, every confirmed
        # task answered, within a bound.
        say("chaos over; stopping the publisher")
        pub.stopping = True
        pub.join(60)
        for n in nodes:
            if not n.alive():
                n.wait_reaped(5)
                n.start()
        deadline = now() + args.drain
        next_report = now()
        answers = [(now(), books.counts()[2])]
        while books.unanswered_confirmed() and now() < deadline:
            if now() >= next_report:
                progress(books, pub, "drain")
                next_report = now() + 10
            answers.append((now(), books.counts()[2]))
            time.sleep(0.2)
        progress(books, pub, "drained")
        # Answers in the drain's last 30 s: none, with tasks unanswered,
        # means the nodes stopped working, not that they were slow.
        recent = [a for t, a in answers if t >= answers[-1][0] - 30]
        stalled = bool(books.unanswered_confirmed()) and recent[-1] == recent[0] \
            and answers[-1][0] - answers[0][0] >= 30
        qstats = broker.queue_stats(queue)

        # Stop the nodes: each must drain and exit 0.
        monitor.final = True
        for n in nodes:
            if n.send(signal.SIGTERM, expect="term") and not n.wait_reaped(SHUTDOWN_GRACE + 25):
                n.unexpected(n.pid, "did not exit within %.0f s of the final SIGTERM"
                             % (SHUTDOWN_GRACE + 25))
                n.send(signal.SIGKILL, expect="kill9")
                n.wait_reaped(15)
        # Results of the last drains, and duplicates that are still coming.
        time.sleep(2)
        consumer.stopping = True
        monitor.stopping = True
        for th in (consumer, monitor):
            th.join(30)
        # What the drain bound left: still in the queue, so not lost.
        queued = set()
        if books.unanswered_confirmed():
            queued = queue_census(broker.port, queue)
        return report(args, books, pub, consumer, chaos, nodes, qstats, queued, stalled)
    finally:
        for n in nodes:
            if n.alive():
                n.send(signal.SIGKILL, expect="kill9")
                n.wait_reaped(10)
        broker.stop()


def queue_census(port, queue):
    """The correlation ids of every task message left in the queue, which
    it empties (the run is over)."""
    cids = set()
    conn = pika.BlockingConnection(connection_parameters(port))
    try:
        ch = conn.channel()
        ch.basic_qos(prefetch_count=1000)
        for method, props, body in ch.consume(queue, auto_ack=True, inactivity_timeout=3):
            if method is None:
                break
            cids.add(props.correlation_id)
        ch.cancel()
    finally:
        conn.close()
    return cids


def report(args, books, pub, consumer, chaos, nodes, qstats, queued=frozenset(),
           stalled=False):
    wrong, statuses, dups, dup_tasks = judge(books)
    unanswered = books.unanswered_confirmed()
    in_queue = set()
    for cid in queued:
        m = books.cid_re.match(cid or "")
        if m:
            in_queue.add(int(m.group(1)))
    lost = [t for t in unanswered if t.n not in in_queue]
    still = len(unanswered) - len(lost)
    total, states, answered, results = books.counts()
    sanitizer = sanitizer_reports(nodes)
    labels = collections.Counter(t.label for t in books.tasks)

    say("seed %d: %.1f minutes of chaos" % (args.seed, args.minutes))
    say("faults: " + ", ".join("%s %d" % (k, chaos.counts[k])
                               for k in sorted(chaos.counts)))
    say("tasks published %d: confirmed %d, unconfirmed %d, nacked %d, returned %d; "
        "bursts %d" % (total, states["confirmed"], states["unknown"] + states["sent"],
                       states["nacked"], states["returned"], pub.bursts))
    say("tasks by kind: " + ", ".join("%s %d" % kv for kv in sorted(labels.items())))
    say("answered %d tasks with %d results; statuses: %s" % (
        answered, results, ", ".join("%s %d" % kv for kv in sorted(statuses.items()))))
    unconf = sum(1 for t in books.tasks if t.state in ("unknown", "sent") and not t.results)
    say("unconfirmed and unanswered (may never have reached the broker): %d" % unconf)
    say("task queue at the end (ready, unacked, consumers): %s" % (qstats,))
    per_node = collections.Counter()
    for n in nodes:
        for t in books.tasks:
            for a in t.results:
                m = re.search(r":(\d+)$", a.worker or "")
                if m and int(m.group(1)) in n.pids:
                    per_node[n.name] += 1
    say("results per node: %s; node processes started: %s" % (
        dict(per_node), {n.name: len(n.starts) for n in nodes}))
    say("client reconnects: publisher %s, consumer %s" % (
        dict(pub.errors), dict(consumer.errors)))

    say("duplicates: %d extra results for %d tasks (at-least-once; not a failure)"
        % (dups, dup_tasks))
    say("still queued (unanswered when the drain bound passed, safe in the queue): %d"
        % still)
    say("stalled: %s" % ("yes: no answer in the drain's last 30 s" if stalled else "no"))
    say("lost: %d" % len(lost))
    if lost:
        print("  by kind: " + ", ".join("%s %d" % kv for kv in sorted(
            collections.Counter(t.label for t in lost).items())), flush=True)
    for t in lost[:5]:
        print("  " + describe_task(books, t), flush=True)
    say("wrong: %d" % (len(wrong) + len(books.strays)))
    reasons = collections.OrderedDict()
    for t, a, why in wrong:
        reasons.setdefault(re.sub(r"\b\d+\b", "N", why), []).append((t, a, why))
    for r, items in reasons.items():
        print("  %d x %s; e.g." % (len(items), r), flush=True)
        for t, a, why in items[:3]:
            print("    %s" % describe_task(books, t, a), flush=True)
    for cid, a in books.strays[:5]:
        print("  a result for no task of ours: %r %r" % (cid, a), flush=True)
    say("unexpected deaths: %d" % len(books.deaths))
    print_grouped(books.deaths)
    say("sanitizer reports: %d" % len(sanitizer))
    print_grouped(sanitizer)

    verdicts = [len(lost) == 0, not stalled, len(wrong) + len(books.strays) == 0,
                len(books.deaths) == 0, len(sanitizer) == 0]
    passed = sum(verdicts)
    print("%d passed, %d failed" % (passed, len(verdicts) - passed), flush=True)
    return 0 if all(verdicts) else 1


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--minutes", type=float, default=2.0, help="length of the chaos phase")
    ap.add_argument("--seed", type=int, default=10, help="seed of the faults and the workload")
    ap.add_argument("--taskd", default=os.environ.get("TASKD") or os.path.abspath("taskd"),
                    help="the taskd binary (default $TASKD, else ./taskd)")
    ap.add_argument("--rate", type=float, default=120, help="steady tasks per second")
    ap.add_argument("--drain", type=float, default=180,
                    help="seconds to wait at the end for every answer")
    ap.add_argument("--keep", action="store_true", help="keep the logs' directory")
    args = ap.parse_args()
    if not (os.path.isfile(args.taskd) and os.access(args.taskd, os.X_OK)):
        say("%s is not an executable file (build taskd first, or pass --taskd)" % args.taskd)
        print("0 passed, 1 failed")
        return 1
    args.taskd = os.path.abspath(args.taskd)
    try:
        judge_selftest()
    except AssertionError as e:
        say("the checker's self-test failed: %s" % e)
        print("0 passed, 1 failed")
        return 1

    # Cores of the nodes land in their directories (kernel core_pattern
    # permitting); gdb reads them for the report.
    try:
        resource.setrlimit(resource.RLIMIT_CORE, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    except (ValueError, OSError):
        pass

    def on_signal(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_signal)

    workdir = tempfile.mkdtemp(prefix="taskd-chaos.")
    os.chmod(workdir, 0o711)     # the broker (user rabbitmq) lives inside
    status = 1
    try:
        status = run(args, workdir)
    except KeyboardInterrupt as e:
        say("interrupted (%s)" % e)
        print("0 passed, 1 failed")
    except (RuntimeError, subprocess.TimeoutExpired, pika.exceptions.AMQPError) as e:
        say("the test itself failed: %s" % e)
        print("0 passed, 1 failed")
    finally:
        if args.keep or status != 0:
            say("logs kept in %s" % workdir)
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    return status


if __name__ == "__main__":
    sys.exit(main())
