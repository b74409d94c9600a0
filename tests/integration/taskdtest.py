"""Helpers for taskd's integration tests.

The tests run against one private RabbitMQ node that tests/run-integration
starts for the whole run, and against the real daemon.  The environment
tells where things are:

    AMQP_PORT         the broker's AMQP port on 127.0.0.1 (guest/guest, vhost /)
    BROKER_DIR        the node's directory, for tests/rabbitmq-private
    RABBITMQ_PRIVATE  path of tests/rabbitmq-private (ctl, pid)
    TASKD             the taskd binary under test

Every test gets its own queue names (prefix taskdtest.<test>.<random>), its
own temporary directory, and its own daemons; the cleanup stops the daemons
(SIGTERM, and checks they exit 0) before it deletes the queues, since taskd
treats a deleted queue as a reason to reconnect.

Waiting is always bounded: a helper that waits for an event polls with a
deadline and fails with a message that says what it waited for and ends
with the tail of each daemon's log.
"""

import atexit
import collections
import decimal
import hashlib  # noqa: F401  (re-exported for tests)
import json
import os
import re
import shutil
import signal
import struct
import subprocess
import tempfile
import time
import unittest
import uuid

import pika
import pika.data
import pika.exceptions

# --------------------------------------------------------------------------
# Environment

AMQP_PORT = int(os.environ.get("AMQP_PORT", "0") or 0)
BROKER_DIR = os.environ.get("BROKER_DIR", "")
RABBITMQ_PRIVATE = os.environ.get("RABBITMQ_PRIVATE", "")
TASKD = os.environ.get("TASKD", "")

UUID_RE = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-"
                     r"[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")


def check_environment(need_broker=True):
    """Raises AssertionError naming what is missing to run the tests."""
    missing = []
    if need_broker:
        if not AMQP_PORT:
            missing.append("AMQP_PORT")
        if not BROKER_DIR:
            missing.append("BROKER_DIR")
        if not RABBITMQ_PRIVATE:
            missing.append("RABBITMQ_PRIVATE")
    if not TASKD:
        missing.append("TASKD")
    if missing:
        raise AssertionError("environment lacks %s: run the tests through "
                             "tests/run-integration" % ", ".join(missing))
    if not (os.path.isfile(TASKD) and os.access(TASKD, os.X_OK)):
        raise AssertionError("TASKD=%s is not an executable file (build it first)" % TASKD)


# --------------------------------------------------------------------------
# pika 1.2 cannot encode a float header value; other clients (Java, Go,
# amqplib) send one as a double ('d'), so teach it to, for the timeout
# header tests.

_pika_encode_value = pika.data.encode_value


def _encode_value(pieces, value):
    if isinstance(value, float):
        pieces.append(struct.pack(">cd", b"d", value))
        return 9
    return _pika_encode_value(pieces, value)


pika.data.encode_value = _encode_value


# --------------------------------------------------------------------------
# The broker

def broker_uri():
    return "amqp://guest:guest@127.0.0.1:%d/%%2f" % AMQP_PORT


def rabbitmq_private(*args, timeout=90):
    """Runs tests/rabbitmq-private CMD BROKER_DIR ARGS; returns its stdout."""
    cmd = [RABBITMQ_PRIVATE, args[0], BROKER_DIR] + [str(a) for a in args[1:]]
    p = subprocess.run(cmd, stdin=subprocess.DEVNULL, capture_output=True,
                       timeout=timeout)
    if p.returncode != 0:
        raise AssertionError("%s failed (%d): %s" % (
            " ".join(cmd), p.returncode,
            (p.stdout + p.stderr).decode(errors="replace").strip()))
    return p.stdout.decode(errors="replace")


def broker_ctl(*args):
    """rabbitmqctl against the test node (-q: no table headers)."""
    return rabbitmq_private("ctl", *args)


def broker_pid():
    return int(rabbitmq_private("pid").strip())


def connection_parameters():
    # Heartbeats off for the test client: it sits idle for long stretches
    # (waiting on a subprocess, a frozen broker) and must not be dropped
    # for that; failures show up as socket errors or deadlines instead.
    return pika.ConnectionParameters(
        host="127.0.0.1", port=AMQP_PORT, virtual_host="/",
        credentials=pika.PlainCredentials("guest", "guest"),
        heartbeat=0, connection_attempts=1, socket_timeout=5,
        stack_timeout=15, blocked_connection_timeout=60)


def hstr(v):
    """A header value as text (rabbitmq-c may send strings as bytes 'x')."""
    if isinstance(v, bytes):
        return v.decode("utf-8", errors="replace")
    return v


class Result(collections.namedtuple("Result", "props headers body")):
    """One result message: pika BasicProperties, a dict of its headers
    (byte strings decoded to str), and the body as bytes."""
    __slots__ = ()

    @classmethod
    def of(cls, props, body):
        headers = {k: hstr(v) for k, v in (props.headers or {}).items()}
        return cls(props, headers, bytes(body))

    @property
    def status(self):
        return self.headers.get("taskd-status")

    @property
    def correlation_id(self):
        return hstr(self.props.correlation_id)

    @property
    def worker(self):
        return self.headers.get("taskd-worker")

    def error(self):
        """The JSON error body as a dict (raises AssertionError if not JSON)."""
        try:
            doc = json.loads(self.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise AssertionError("result body is not JSON (%s): %r" % (e, self.body[:200]))
        if not isinstance(doc, dict):
            raise AssertionError("result body is JSON but not an object: %r" % (doc,))
        return doc

    def __repr__(self):
        return "Result(status=%r, correlation_id=%r, type=%r, headers=%r, body=%r)" % (
            self.status, self.correlation_id, self.props.type, self.headers,
            self.body[:120])


# --------------------------------------------------------------------------
# A client

_ABSENT = object()


class Client:
    """A pika BlockingConnection with one channel in confirm mode, made
    again on first use after it was lost or closed."""

    def __init__(self):
        self.conn = None
        self.ch = None

    def connect(self, timeout=0.0):
        """(Re)connects, retrying until timeout seconds have passed."""
        self.close()
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.conn = pika.BlockingConnection(connection_parameters())
                break
            except pika.exceptions.AMQPConnectionError as e:
                if time.monotonic() >= deadline:
                    raise AssertionError("cannot connect to the broker on 127.0.0.1:%d "
                                         "within %.0f s: %r" % (AMQP_PORT, timeout, e))
                time.sleep(0.2)
        self._open_channel()
        return self

    def _open_channel(self):
        self.ch = self.conn.channel()
        self.ch.confirm_delivery()

    def channel(self):
        if self.conn is None or not self.conn.is_open:
            self.connect()
        elif self.ch is None or not self.ch.is_open:
            self._open_channel()
        return self.ch

    def close(self):
        if self.conn is not None:
            try:
                if self.conn.is_open:
                    self.conn.close()
            except Exception:  # noqa: BLE001 -- a dead connection closes anyway
                pass
        self.conn = None
        self.ch = None

    # queues and exchanges --------------------------------------------------

    def declare(self, name, durable=True, arguments=None, exclusive=False,
                auto_delete=False):
        self.channel().queue_declare(name, durable=durable, arguments=arguments,
                                     exclusive=exclusive, auto_delete=auto_delete)

    def declare_exchange(self, name, kind="fanout", durable=False):
        self.channel().exchange_declare(name, exchange_type=kind, durable=durable)

    def bind(self, queue, exchange, routing_key=""):
        self.channel().queue_bind(queue, exchange, routing_key=routing_key)

    def delete(self, name):
        try:
            self.channel().queue_delete(name)
        except pika.exceptions.AMQPError:
            pass

    def delete_exchange(self, name):
        try:
            self.channel().exchange_delete(name)
        except pika.exceptions.AMQPError:
            pass

    def counts(self, name):
        """(ready messages, consumers) of a queue, or None if it does not exist."""
        try:
            ok = self.channel().queue_declare(name, passive=True)
        except pika.exceptions.ChannelClosedByBroker as e:
            if e.reply_code == 404:
                return None
            raise
        return ok.method.message_count, ok.method.consumer_count

    # publishing -------------------------------------------------------------

    def publish(self, queue, body=b"", task=None, message_id=None,
                correlation_id=None, reply_to=None, headers=None,
                content_type=None, persistent=False, properties=None):
        """Publishes one task to queue (default exchange) and waits for the
        broker's confirm; an unroutable message (no such queue) raises."""
        if properties is None:
            properties = pika.BasicProperties(
                type=task, message_id=message_id, correlation_id=correlation_id,
                reply_to=reply_to, headers=headers, content_type=content_type,
                delivery_mode=2 if persistent else None)
        if isinstance(body, str):
            body = body.encode()
        self.channel().basic_publish("", queue, body, properties, mandatory=True)

    def get(self, queue):
        """basic.get with ack: a Result, or None when the queue is empty."""
        method, props, body = self.channel().basic_get(queue, auto_ack=True)
        if method is None:
            return None
        return Result.of(props, body)

    # collecting -------------------------------------------------------------

    def consume_until(self, queue, done, timeout, linger=0.0):
        """Consumes queue (acking each message as it arrives) until
        done(results) is true or timeout seconds have passed, then for
        linger more seconds (to catch extra messages); returns the list of
        Results received, possibly short of what done() wanted."""
        ch = self.channel()
        got = []

        def on_message(chan, method, props, body):
            got.append(Result.of(props, body))
            chan.basic_ack(method.delivery_tag)

        tag = ch.basic_consume(queue, on_message, auto_ack=False)
        deadline = time.monotonic() + timeout
        try:
            while not done(got):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.conn.process_data_events(time_limit=min(0.1, left))
            end = time.monotonic() + linger
            while linger > 0 and time.monotonic() < end:
                self.conn.process_data_events(time_limit=max(0.0, min(0.1, end - time.monotonic())))
        finally:
            try:
                # Messages delivered but not yet dispatched are nacked with
                # requeue by pika: none is lost.
                ch.basic_cancel(tag)
            except pika.exceptions.AMQPError:
                pass
        return got

    def collect(self, queue, n, timeout, linger=0.0):
        """At least n results from queue within timeout (fewer on timeout)."""
        return self.consume_until(queue, lambda got: len(got) >= n, timeout, linger)


# --------------------------------------------------------------------------
# The daemon

DEFAULT_TASKS = [
    {"name": "echo", "handler": "echo"},
    {"name": "sleep", "handler": "sleep"},
    {"name": "sha256", "handler": "sha256"},
    {"name": "burn", "handler": "burn"},
]


def libconfig_value(v, indent="  "):
    """A Python value in libconfig syntax: bool, int, float, str, list of
    scalars (array), list of dicts (list of groups), dict (group)."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        r = repr(v)
        return r if ("." in r or "e" in r) else r + ".0"
    if isinstance(v, str):
        out = ['"']
        for c in v:
            if c in '"\\':
                out.append("\\" + c)
            elif c == "\n":
                out.append("\\n")
            elif c == "\t":
                out.append("\\t")
            elif ord(c) < 0x20:
                out.append("\\x%02x" % ord(c))
            else:
                out.append(c)
        out.append('"')
        return "".join(out)
    if isinstance(v, dict):
        inner = " ".join("%s = %s;" % (k, libconfig_value(x, indent)) for k, x in v.items())
        return "{ %s }" % inner
    if isinstance(v, (list, tuple)):
        if v and all(isinstance(x, dict) for x in v):
            return "(\n" + ",\n".join(indent + libconfig_value(x, indent) for x in v) + "\n)"
        return "[ " + ", ".join(libconfig_value(x, indent) for x in v) + " ]"
    raise TypeError("no libconfig form for %r" % (v,))


def libconfig_text(conf):
    """conf: {"section": {"key": value}, "tasks": [...]} → file text."""
    lines = []
    for section, body in conf.items():
        if isinstance(body, dict):
            lines.append("%s = {" % section)
            for k, v in body.items():
                lines.append("  %s = %s;" % (k, libconfig_value(v)))
            lines.append("};")
        else:
            lines.append("%s = %s;" % (section, libconfig_value(body)))
    return "\n".join(lines) + "\n"


# Daemons still running when the interpreter exits (an interrupted run)
# are killed rather than left behind retrying a broker that is gone.
_LIVE = set()


@atexit.register
def _kill_leftovers():
    for proc in list(_LIVE):
        if proc.poll() is None:
            proc.kill()
            try:
                proc.wait(5)
            except subprocess.TimeoutExpired:
                pass
    _LIVE.clear()


class Taskd:
    """One taskd process with a config file of its own.

        d = Taskd(workdir, client, {"queue.name": "q", "broker.heartbeat": 2})
        d.start()            # returns once the queue has a consumer
        d.stop()             # SIGTERM, exit status 0 expected

    conf holds dotted keys ("section.key") laid over defaults that suit the
    tests: this broker, short reconnect backoff, short shutdown grace, the
    four built-in tasks.
    """

    # argv put before taskd's own, e.g. to run it in a namespace of its
    # own (test_http.py); the program it runs must exec taskd in place, so
    # that the pid stays taskd's.
    wrapper = ()

    def __init__(self, workdir, client, conf=None, name="taskd", tasks=None):
        self.workdir = workdir
        self.client = client
        self.name = name
        self.conf = {
            "broker": {
                "uri": broker_uri(),
                "heartbeat": 30,
                "prefetch": 0,
                "connect_timeout": 5.0,
                "reconnect_max": 2.0,
            },
            "queue": {"name": "distributed_tasks", "durable": True, "default_task": ""},
            "reply": {"queue": "distributed_results"},
            "limits": {"timeout": 60.0, "max_payload": 16777216},
            "log": {"level": "info"},
            "shutdown": {"grace": 5.0},
            "tasks": list(tasks if tasks is not None else DEFAULT_TASKS),
        }
        for key, value in (conf or {}).items():
            section, _, k = key.partition(".")
            self.conf.setdefault(section, {})[k] = value
        self.conf_path = os.path.join(workdir, name + ".conf")
        self.log_path = os.path.join(workdir, name + ".log")
        self.proc = None
        self.write_config()

    @property
    def queue(self):
        return self.conf["queue"]["name"]

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def write_config(self):
        with open(self.conf_path, "w") as f:
            f.write(libconfig_text(self.conf))

    def start(self, wait=True, consumers=1, timeout=30, env=None):
        """Starts `taskd -f -c FILE`, stderr to the log file; with wait,
        returns once the queue has at least `consumers` consumers.  env:
        variables added to the (cleaned) environment, e.g. NOTIFY_SOCKET."""
        clean = {k: v for k, v in os.environ.items()
                 if k not in ("JOURNAL_STREAM", "NOTIFY_SOCKET", "INVOCATION_ID",
                              "LISTEN_FDS", "WATCHDOG_USEC", "WATCHDOG_PID")}
        env = dict(clean, **(env or {}))
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [*self.wrapper, TASKD, "-f", "-c", self.conf_path], stdin=subprocess.DEVNULL,
                stdout=log, stderr=log, env=env, cwd=self.workdir)
        _LIVE.add(self.proc)
        if wait:
            self.wait_consuming(consumers, timeout)
        return self

    def alive(self):
        return self.proc is not None and self.proc.poll() is None

    def wait_consuming(self, consumers=1, timeout=30):
        deadline = time.monotonic() + timeout
        seen = None
        while True:
            if not self.alive():
                raise AssertionError("%s exited with status %s before consuming '%s'\n%s" % (
                    self.name, self.proc.returncode, self.queue, self.log_tail()))
            seen = self.client.counts(self.queue)
            if seen is not None and seen[1] >= consumers:
                return
            if time.monotonic() >= deadline:
                raise AssertionError(
                    "%s: queue '%s' did not get %d consumer(s) within %.0f s "
                    "(queue state (ready, consumers): %s)\n%s" % (
                        self.name, self.queue, consumers, timeout, seen, self.log_tail()))
            time.sleep(0.05)

    def stop(self, expect=0, timeout=None):
        """SIGTERM, then a bounded wait; SIGKILL and fail if it does not
        exit.  Fails when the exit status is not `expect` (None: any).
        Returns the exit status.  A process already gone is only reaped."""
        if self.proc is None:
            return None
        if self.proc.poll() is not None:
            _LIVE.discard(self.proc)
            return self.proc.returncode
        if timeout is None:
            timeout = float(self.conf.get("shutdown", {}).get("grace", 30.0)) + 15
        self.proc.send_signal(signal.SIGTERM)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            _LIVE.discard(self.proc)
            raise AssertionError("%s (pid %d) did not exit within %.0f s of SIGTERM; killed\n%s"
                                 % (self.name, self.proc.pid, timeout, self.log_tail()))
        _LIVE.discard(self.proc)
        if expect is not None and rc != expect:
            raise AssertionError("%s exited with status %d after SIGTERM, expected %d\n%s"
                                 % (self.name, rc, expect, self.log_tail()))
        return rc

    def kill9(self):
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)
        _LIVE.discard(self.proc)

    # the log ----------------------------------------------------------------

    def log_text(self, since=0):
        try:
            with open(self.log_path, "rb") as f:
                f.seek(since)
                return f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""

    def log_size(self):
        try:
            return os.path.getsize(self.log_path)
        except FileNotFoundError:
            return 0

    def log_tail(self, n=40):
        lines = self.log_text().splitlines()[-n:]
        return "--- last %d lines of %s (pid %s) log:\n%s\n---" % (
            len(lines), self.name, self.pid, "\n".join(lines))

    def log_lines(self, pattern, since=0):
        rx = re.compile(pattern)
        return [ln for ln in self.log_text(since).splitlines() if rx.search(ln)]

    def wait_log(self, pattern, timeout, since=0):
        """The first log line after byte offset `since` matching the regex,
        polled until timeout; fails with the log's tail."""
        deadline = time.monotonic() + timeout
        while True:
            found = self.log_lines(pattern, since)
            if found:
                return found[0]
            if time.monotonic() >= deadline:
                raise AssertionError("%s: no log line matching /%s/ within %.1f s\n%s"
                                     % (self.name, pattern, timeout, self.log_tail()))
            time.sleep(0.05)


# --------------------------------------------------------------------------
# The test case base

class TaskdTestCase(unittest.TestCase):
    """Base class: unique names, a client, daemons stopped at the end."""

    need_broker = True

    def setUp(self):
        check_environment(self.need_broker)
        short = self.id().rsplit(".", 1)[-1]
        self.uid = uuid.uuid4().hex[:8]
        self.prefix = "taskdtest.%s.%s" % (short, self.uid)
        self.queue = self.prefix + ".tasks"
        self.reply_queue = self.prefix + ".results"
        self.workdir = tempfile.mkdtemp(prefix="%s.%s." % (short, self.uid))
        self.daemons = []
        self._queues = [self.queue, self.reply_queue]
        self._exchanges = []
        self.client = Client()
        self.addCleanup(self._cleanup)
        if self.need_broker:
            self.client.connect(timeout=10)
            # Results go here: tests pass it as reply_to, and the daemons
            # have it as reply.queue.  Durable, so results survive a broker
            # restart (taskd then publishes them persistent).
            self.client.declare(self.reply_queue, durable=True)

    def _cleanup(self):
        problems = []
        for d in reversed(self.daemons):
            try:
                d.stop()
            except AssertionError as e:
                problems.append(str(e))
        if self.need_broker:
            for q in self._queues:
                self.client.delete(q)
            for x in self._exchanges:
                self.client.delete_exchange(x)
        self.client.close()
        if os.environ.get("TASKD_TEST_KEEP"):
            print("\nkept %s" % self.workdir)
        else:
            shutil.rmtree(self.workdir, ignore_errors=True)
        if problems:
            self.fail("\n".join(problems))

    # daemons --------------------------------------------------------------

    def taskd(self, conf=None, start=True, consumers=1, name=None, tasks=None):
        """A Taskd on this test's queue and reply queue (conf: dotted keys
        laid over that), started unless start=False."""
        full = {"queue.name": self.queue, "reply.queue": self.reply_queue}
        full.update(conf or {})
        d = Taskd(self.workdir, self.client, full,
                  name=name or "taskd%d" % (len(self.daemons) + 1), tasks=tasks)
        self.daemons.append(d)
        if start:
            d.start(consumers=consumers)
        return d

    def daemon_logs(self):
        return "\n" + "\n".join(d.log_tail() for d in self.daemons)

    def assert_alive(self, d):
        if not d.alive():
            self.fail("%s (pid %s) is not running any more (status %s)%s"
                      % (d.name, d.pid, d.proc.returncode if d.proc else None,
                         self.daemon_logs()))

    # queues ------------------------------------------------------------------

    def use_queue(self, name):
        """Deleted at the end of the test."""
        self._queues.append(name)
        return name

    def use_exchange(self, name):
        self._exchanges.append(name)
        return name

    def queue_stats(self, name):
        """(ready, unacknowledged, durable) of a queue from rabbitmqctl,
        or None when it does not exist."""
        out = broker_ctl("list_queues", "name", "messages_ready",
                         "messages_unacknowledged", "durable")
        for line in out.splitlines():
            parts = line.split("\t")
            if len(parts) == 4 and parts[0] == name:
                return int(parts[1]), int(parts[2]), parts[3].strip() == "true"
        return None

    def wait_running(self, n, timeout=15):
        """Waits until this test's queue has no task ready and n unacked,
        i.e. taskd has taken n tasks and not yet settled them."""
        self.wait_for("%d tasks taken and running (queue %s: ready, unacked = 0, %d)"
                      % (n, self.queue, n),
                      lambda: (self.queue_stats(self.queue) or (0, 0, 0))[:2] == (0, n),
                      timeout)

    def wait_for(self, what, predicate, timeout, interval=0.05):
        """Polls predicate() until it returns a true value (returned) or
        fails after timeout seconds saying `what` did not happen."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if time.monotonic() >= deadline:
                self.fail("%s: not within %.1f s%s" % (what, timeout, self.daemon_logs()))
            time.sleep(interval)

    # tasks and results ---------------------------------------------------------

    def publish(self, body=b"", task=None, reply_to=_ABSENT, queue=None, **kw):
        """Publishes a task to this test's queue; reply_to defaults to this
        test's reply queue (pass None for none)."""
        if reply_to is _ABSENT:
            reply_to = self.reply_queue
        self.client.publish(queue or self.queue, body, task=task, reply_to=reply_to, **kw)

    def collect(self, n, timeout=30, queue=None, linger=0.0):
        """At least n results from the reply queue within timeout, or fail."""
        queue = queue or self.reply_queue
        got = self.client.collect(queue, n, timeout, linger)
        if len(got) < n:
            self.fail("got %d of %d results from '%s' within %.0f s: %r%s"
                      % (len(got), n, queue, timeout, got[:5], self.daemon_logs()))
        return got

    def more_results(self, seconds, queue=None):
        """Whatever else reaches the reply queue within seconds: a task
        answered twice shows up here."""
        return self.client.consume_until(queue or self.reply_queue, lambda r: False, seconds)

    def collect_ids(self, ids, timeout, queue=None, got=None):
        """Consumes results until every correlation id in ids was seen at
        least once; returns all Results received (duplicates included),
        appended to `got` when given.  Fails naming the missing ids."""
        queue = queue or self.reply_queue
        want = set(ids)
        out = got if got is not None else []
        seen = set(r.correlation_id for r in out)
        checked = 0

        def done(new):
            nonlocal checked
            for r in new[checked:]:
                seen.add(r.correlation_id)
            checked = len(new)
            return want <= seen

        if not want <= seen:
            out.extend(self.client.consume_until(queue, done, timeout))
        missing = want - set(r.correlation_id for r in out)
        if missing:
            self.fail("%d of %d tasks never answered within %.0f s (e.g. %s)%s"
                      % (len(missing), len(want), timeout, sorted(missing)[:10],
                         self.daemon_logs()))
        return out

    def run_task(self, task, body=b"", timeout=15, **kw):
        """Publishes one task with a fresh correlation id and returns its
        (single) result."""
        kw.setdefault("correlation_id", "c-" + uuid.uuid4().hex)
        self.publish(body, task=task, **kw)
        res = self.collect(1, timeout)
        self.assertEqual(res[0].correlation_id, kw["correlation_id"],
                         "the result answers another task: %r" % (res[0],))
        return res[0]

    def assert_result(self, res, task, status="ok", correlation_id=None,
                      task_id=None, daemon=None):
        """Checks a result's properties and headers against design §4.
        task_id None: a generated UUID is expected; correlation_id None:
        the task id is expected."""
        h = res.headers
        self.assertEqual(h.get("taskd-status"), status, "taskd-status of %r" % (res,))
        tid = h.get("taskd-task-id")
        self.assertIsInstance(tid, str, "taskd-task-id missing or not a string: %r" % (res,))
        if task_id is None:
            self.assertRegex(tid, UUID_RE, "taskd-task-id should be a generated UUID")
        else:
            self.assertEqual(tid, task_id, "taskd-task-id should copy message_id")
        self.assertEqual(res.correlation_id, correlation_id if correlation_id is not None else tid,
                         "correlation_id (copied, or the task id when absent)")
        self.assertEqual(hstr(res.props.type), task, "type property = task name")
        self.assertEqual(hstr(res.props.app_id), "taskd", "app_id")
        ts = res.props.timestamp
        self.assertIsNotNone(ts, "timestamp property missing")
        self.assertLess(abs(int(ts) - time.time()), 300, "timestamp %r is not now" % (ts,))
        worker = h.get("taskd-worker")
        self.assertIsInstance(worker, str, "taskd-worker missing: %r" % (res,))
        self.assertTrue(worker.strip(), "taskd-worker empty")
        if daemon is not None:
            self.assertRegex(worker, r"(?<!\d)%d(?!\d)" % daemon.pid,
                             "taskd-worker should name the daemon's pid %d" % daemon.pid)
        self.assertEqual(h.get("taskd-attempt"), 1, "taskd-attempt of a first run")
        self.assertNotIsInstance(h.get("taskd-attempt"), bool)
        dur = h.get("taskd-duration-us")
        self.assertIsInstance(dur, int, "taskd-duration-us should be an integer: %r" % (dur,))
        self.assertNotIsInstance(dur, bool)
        self.assertGreaterEqual(dur, 0)

    def assert_rejected(self, res, code):
        self.assertEqual(res.status, "rejected", "taskd-status of %r" % (res,))
        doc = res.error()
        if isinstance(code, str):
            self.assertEqual(doc.get("error"), code, "error code in %r" % (doc,))
        else:
            self.assertIn(doc.get("error"), code, "error code in %r" % (doc,))
        self.assertIsInstance(doc.get("message"), str, "message in %r" % (doc,))
        self.assertTrue(doc["message"].strip(), "empty message in %r" % (doc,))
        return doc


def sockets_of(pid):
    """Inodes of the sockets open in pid."""
    out = set()
    for fd in os.listdir("/proc/%d/fd" % pid):
        try:
            link = os.readlink("/proc/%d/fd/%s" % (pid, fd))
        except OSError:
            continue
        if link.startswith("socket:["):
            out.add(link[8:-1])
    return out


def process_running(pid):
    """Alive and not a zombie nobody has reaped yet."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            return ") Z " not in f.read()
    except FileNotFoundError:
        return False


def new_id(prefix="c"):
    return "%s-%s" % (prefix, uuid.uuid4().hex)


__all__ = [
    "AMQP_PORT", "BROKER_DIR", "RABBITMQ_PRIVATE", "TASKD", "UUID_RE",
    "Client", "Result", "Taskd", "TaskdTestCase", "broker_ctl", "broker_pid",
    "broker_uri", "check_environment", "decimal", "hstr", "libconfig_text",
    "libconfig_value", "new_id", "process_running", "rabbitmq_private",
]
