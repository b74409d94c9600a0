"""Limits and poison messages: the output cap of exec tasks of both kinds,
results the broker would refuse (broker.max_message_size), and tasks that
keep coming back because they kill taskd itself (limits.max_deliveries)."""

import json
import os
import re
import time

import pika

from taskdtest import TaskdTestCase, broker_ctl, new_id

BUILDDIR = os.environ.get("TOP_BUILDDIR") or os.path.dirname(os.environ.get("TASKD", "."))
MISBEHAVE = os.path.join(BUILDDIR, "tests", "plugins", "misbehave.so")

MAX = 1000


class ExecOutputCap(TaskdTestCase):
    """limits.max_payload caps what an exec task may write to stdout, the
    same way in a coroutine (io) and in a pool worker (cpu)."""

    def setUp(self):
        super().setUp()
        tasks = []
        for kind in ("io", "cpu"):
            # Writes MAX + 1 bytes, then would hang: the cap must stop it
            # at once, not at the task's timeout.
            tasks.append({"name": "over_" + kind, "kind": kind, "timeout": 40.0,
                          "exec": ["/bin/sh", "-c",
                                   "head -c %d /dev/zero; exec sleep 60" % (MAX + 1)]})
            tasks.append({"name": "at_" + kind, "kind": kind,
                          "exec": ["/usr/bin/head", "-c", str(MAX), "/dev/zero"]})
        self.d = self.taskd({"limits.max_payload": MAX}, tasks=tasks)

    def test_over_the_cap_same_answer_both_kinds(self):
        t0 = time.monotonic()
        for kind in ("io", "cpu"):
            self.publish(b"", task="over_" + kind, correlation_id=kind)
        got = {r.correlation_id: r for r in self.collect(2, timeout=60)}
        took = time.monotonic() - t0
        for kind in ("io", "cpu"):
            self.assertEqual(got[kind].status, "error", got[kind])
        io, cpu = got["io"].error(), got["cpu"].error()
        self.assertEqual(io, cpu, "io and cpu exec must answer output over "
                         "limits.max_payload alike")
        self.assertEqual(io["error"], "handler_failed")
        self.assertEqual(io["message"], "/bin/sh: output larger than %d bytes" % MAX)
        # The program sleeps 60 s after its output: only a kill at the cap
        # answers well before the 40 s timeout.
        self.assertLess(took, 30, "the over-cap program was not stopped at the cap")

    def test_at_the_cap_is_ok_both_kinds(self):
        for kind in ("io", "cpu"):
            self.publish(b"", task="at_" + kind, correlation_id=kind)
        got = {r.correlation_id: r for r in self.collect(2, timeout=60)}
        for kind in ("io", "cpu"):
            self.assertEqual(got[kind].status, "ok", got[kind])
            self.assertEqual(got[kind].body, b"\0" * MAX)


BROKER_DEFAULT_MAX = 134217728   # RabbitMQ's own default max_message_size
BROKER_LOW_MAX = 65536


def set_broker_max_message_size(n):
    """RabbitMQ reads max_message_size when a channel opens: set it before
    the daemon connects."""
    out = broker_ctl("eval", "application:set_env(rabbit, max_message_size, %d)." % n)
    if out.strip() != "ok":
        raise AssertionError("rabbitmqctl eval set_env answered %r" % out)


class ResultTooLarge(TaskdTestCase):
    """A result larger than the broker takes must be answered with an error
    that fits, not published: RabbitMQ closes the channel over it, and the
    task would come back and fail the same way for ever."""

    def setUp(self):
        super().setUp()
        set_broker_max_message_size(BROKER_LOW_MAX)
        self.addCleanup(set_broker_max_message_size, BROKER_DEFAULT_MAX)
        self.tasks = [
            {"name": "echo", "handler": "echo"},
            # Expands: a small task asks for a result over the broker's limit.
            {"name": "big", "kind": "io", "exec": ["/usr/bin/head", "-c",
                                                   str(4 * BROKER_LOW_MAX), "/dev/zero"]},
            {"name": "fits", "kind": "io", "exec": ["/usr/bin/head", "-c",
                                                    str(BROKER_LOW_MAX), "/dev/zero"]},
        ]

    def check_no_loop(self, d, conf_says):
        ids = [new_id("big") for _ in range(20)]
        for i in ids:
            self.publish(b"", task="big", correlation_id=i)
        self.publish(b"", task="fits", correlation_id="fits")
        self.publish(b"hello", task="echo", correlation_id="echo")
        got = self.collect_ids(ids + ["fits", "echo"], timeout=60)
        got += self.more_results(3)
        by = {}
        for r in got:
            by.setdefault(r.correlation_id, []).append(r)
        for i in ids:
            self.assertEqual(len(by[i]), 1, "answered %d times: %r" % (len(by[i]), by[i][:3]))
            r = by[i][0]
            self.assertEqual(r.status, "error", r)
            doc = r.error()
            self.assertEqual(doc["error"], "result_too_large", doc)
            self.assertIn("%d bytes" % (4 * BROKER_LOW_MAX), doc["message"])
            self.assertIn(conf_says, doc["message"])
        self.assertEqual(by["fits"][0].status, "ok", by["fits"][0])
        self.assertEqual(len(by["fits"][0].body), BROKER_LOW_MAX)
        self.assertEqual(by["echo"][0].body, b"hello")
        self.wait_for("every task settled (queue %s empty, nothing unacked)" % self.queue,
                      lambda: (self.queue_stats(self.queue) or (1, 1, 0))[:2] == (0, 0), 15)
        self.assert_alive(d)

    def test_configured_limit(self):
        d = self.taskd({"broker.max_message_size": BROKER_LOW_MAX}, tasks=self.tasks)
        self.check_no_loop(d, "at most %d" % BROKER_LOW_MAX)
        # Checked before publishing: the broker never had to close anything.
        self.assertEqual(d.log_lines(r"connection lost"), [], d.log_tail())

    def test_limit_learned_from_the_broker(self):
        # taskd believes RabbitMQ's default; the broker's refusal teaches it
        # the real limit, once.
        d = self.taskd(tasks=self.tasks)
        self.check_no_loop(d, "at most %d" % BROKER_LOW_MAX)
        lost = d.log_lines(r"connection lost")
        self.assertLessEqual(len(lost), 1, "one refusal is enough to learn: %r" % lost)


class PoisonLoop(TaskdTestCase):
    """A task that kills taskd itself (an io plugin handler that segfaults
    the daemon) comes back after every crash.  Restarted each time, as
    systemd's Restart= does, taskd must answer it "rejected" /
    delivery_limit after limits.max_deliveries deliveries and reject it
    without requeue (it lands in the dead-letter queue), and it alone: every
    task that was in flight with it at a crash must still be answered ok
    (suspects run alone, docs/decisions.md), then taskd keeps running
    everything else."""

    MAX = 3
    OTHERS = 3000

    def poison_loop(self, queue_type, preload):
        dlq = self.use_queue(self.prefix + ".dead")
        self.client.declare(dlq, durable=True)
        args = {"x-dead-letter-exchange": "", "x-dead-letter-routing-key": dlq}
        if queue_type == "quorum":
            args["x-queue-type"] = "quorum"
        self.client.declare(self.queue, durable=True, arguments=args)
        d = self.taskd({"queue.type": queue_type, "limits.max_deliveries": self.MAX},
                       start=False, tasks=[{"name": "segv", "handler": "segv"},
                                           {"name": "echo", "handler": "echo"},
                                           {"name": "sleep", "handler": "sleep"}])
        d.conf["plugins"] = [MISBEHAVE]
        d.write_config()

        crashes = 0

        def restart_if_dead():
            nonlocal crashes
            if not d.alive():
                crashes += 1
                self.assertLessEqual(crashes, self.MAX, "taskd crashed more often than "
                                     "limits.max_deliveries: the poison loops%s"
                                     % self.daemon_logs())
                d.start(wait=False)

        # The poison amid thousands of others: they are in flight (prefetch)
        # whenever it strikes.
        others = ["o-%d" % i for i in range(self.OTHERS)]

        def publish_all(between):
            for i, cid in enumerate(others):
                if i == self.OTHERS // 2:
                    self.publish(b"", task="segv", correlation_id="poison",
                                 message_id="poison", persistent=True)
                if i % 2:
                    self.publish(b"200", task="sleep", correlation_id=cid, persistent=True)
                else:
                    self.publish(cid.encode(), task="echo", correlation_id=cid,
                                 persistent=True)
                if i % 25 == 0:
                    between()

        if preload:
            # Started on the full queue: all of it arrives at once.
            publish_all(lambda: None)
            d.start(wait=False)
        else:
            # Published while taskd runs (and crashes, and is restarted).
            d.start()
            publish_all(restart_if_dead)

        # Restart it whenever it dies, until the poison is answered.
        got = []
        deadline = time.monotonic() + 300
        while not any(r.correlation_id == "poison" for r in got):
            if time.monotonic() > deadline:
                self.fail("no answer to the poison task within 300 s; %d crashes%s"
                          % (crashes, self.daemon_logs()))
            restart_if_dead()
            got += self.client.consume_until(self.reply_queue, lambda r: False, 0.3)

        (p,) = [r for r in got if r.correlation_id == "poison"]
        self.assertEqual(crashes, self.MAX, "one crash per allowed delivery; answered %r"
                         % (p.body,))
        doc = self.assert_rejected(p, "delivery_limit")
        self.assertIn("delivered %d times" % (self.MAX + 1), doc["message"])
        # Rejected without requeue: dead-lettered, not back in the queue.
        self.wait_for("the poison task in the dead-letter queue",
                      lambda: (self.client.counts(dlq) or (0, 0))[0] >= 1, 15)
        dead = []
        while True:
            r = self.client.get(dlq)
            if r is None:
                break
            dead.append(r)
        self.assertEqual([r.correlation_id for r in dead], ["poison"],
                         "only the poison may be dead-lettered; answers: %r"
                         % [r.body for r in got if r.status != "ok"][:4])

        # Everything else is answered ok (at least once: at-least-once), and
        # never rejected: the poison cost only itself.
        got = self.collect_ids(others, timeout=180, got=got)
        self.assert_alive(d)
        by = {}
        for r in got:
            by.setdefault(r.correlation_id, []).append(r)
        collateral = [c for c in others if any(r.status != "ok" for r in by[c])]
        print("\n%s (%s): %d crashes, %d of %d other tasks not answered ok, "
              "%d answers for them in all"
              % (queue_type, "pre-loaded" if preload else "published while running",
                 crashes, len(collateral), len(others),
                 sum(len(by[c]) for c in others)))
        self.assertEqual(collateral, [], "%d of %d tasks in flight with the poison were "
                         "not answered ok, e.g. %r" % (len(collateral), len(others),
                                                       [by[c][0] for c in collateral[:3]]))
        # The operator's clue: the task that was running alone when taskd
        # died last is named in the log.
        alone = d.log_lines(r"task poison .*running it alone")
        self.assertTrue(alone, "no log line names the poison as run alone%s"
                        % self.daemon_logs())

        # And the daemon keeps running new work at scale.
        after = ["a-%d" % i for i in range(2000)]
        for cid in after:
            self.publish(cid.encode(), task="echo", correlation_id=cid)
        res = self.collect_ids(after, timeout=120)
        for r in res:
            if r.correlation_id in after:
                self.assertEqual(r.status, "ok", r)
        self.assert_alive(d)
        self.wait_for("queue %s drained" % self.queue,
                      lambda: (self.queue_stats(self.queue) or (1, 1, 0))[:2] == (0, 0), 30)

    def test_quorum_queue(self):
        self.poison_loop("quorum", preload=True)

    def test_classic_queue(self):
        self.poison_loop("classic", preload=True)

    def test_quorum_queue_published_while_running(self):
        self.poison_loop("quorum", preload=False)

    def test_classic_queue_published_while_running(self):
        self.poison_loop("classic", preload=False)


class SuspectAlone(TaskdTestCase):
    """A task whose count says it is on its last allowed delivery runs with
    nothing else in flight: the consumer is cancelled, what arrives after
    that goes back to the queue with its count unchanged, what was taken
    before finishes, and only then does the suspect run.  Its count is set
    here by the client (x-taskd-deliveries may only add deliveries), so the
    isolation is seen without a crash."""

    MAX = 3
    OTHERS = 600
    # A message id with a newline: the log names it escaped, on one line
    # (envelope.c: \u000a).
    SUSPECT_ID = "suspect\n1"

    def start_with_suspect(self, queue_type, others_ms=100, wait=True):
        args = {"x-queue-type": "quorum"} if queue_type == "quorum" else {}
        self.client.declare(self.queue, durable=True, arguments=args)
        self.others = ["o-%d" % i for i in range(self.OTHERS)]
        for i, cid in enumerate(self.others):
            if i == self.OTHERS // 3:
                self.publish(b"3000", task="sleep", correlation_id="suspect",
                             message_id=self.SUSPECT_ID, persistent=True,
                             headers={"x-taskd-deliveries": self.MAX - 1})
            self.publish(str(others_ms).encode(), task="sleep", correlation_id=cid,
                         persistent=True)
        # Not waiting for its consumer: it is cancelled at once, when the
        # suspect arrives.
        d = self.taskd({"queue.type": queue_type, "limits.max_deliveries": self.MAX},
                       start=False)
        d.start(wait=False)
        line = d.wait_log(r'task suspect\\+u000a1 \(sleep\), delivered 2 times before \(its '
                          r'last allowed delivery\), may be what crashed taskd: running it '
                          r'alone once the (\d+) others in flight are done', 30)
        self.in_flight = int(re.search(r"once the (\d+) others", line).group(1))
        self.assertGreater(self.in_flight, 0, "the suspect came first: nothing to wait for")
        # Those finish first (results are published in order); what came
        # after the cancel went back to the queue.
        got = self.collect(self.in_flight) if wait else []
        return d, got

    def check_alone(self, got):
        """Exactly the tasks in flight at the isolation were answered
        before the suspect, and none after it until its answer."""
        order = [r.correlation_id for r in got]
        self.assertIn("suspect", order)
        self.assertEqual(order.index("suspect"), self.in_flight,
                         "%d results before the suspect's, %d tasks were in flight"
                         % (order.index("suspect"), self.in_flight))

    def check_all_ok(self, got):
        by = {}
        for r in got:
            by.setdefault(r.correlation_id, []).append(r)
        bad = [c for c in self.others + ["suspect"] if any(r.status != "ok" for r in by[c])]
        self.assertEqual(bad, [], "not answered ok: %r%s" % ([by[c][0] for c in bad[:3]],
                                                            self.daemon_logs()))

    def check_runs_alone(self, queue_type):
        d, got = self.start_with_suspect(queue_type)
        got = self.collect_ids(["suspect"], timeout=30, got=got)
        self.check_alone(got)
        self.assertEqual(d.log_lines(r"runs beside"), [], d.log_tail())
        d.wait_log(r'task suspect\\+u000a1 \(sleep\) ran alone and was answered ok', 15)
        d.wait_log(r"taking tasks again, at most 1 at a time \(\d+ handed back", 15)
        got = self.collect_ids(self.others, timeout=120, got=got)
        self.check_all_ok(got)
        # The copies kept their counts: nothing was delivered more than
        # once, so none of them was held (delivered before) or isolated.
        self.assertEqual(len(d.log_lines(r"running it alone")), 1, d.log_tail())
        self.wait_for("queue %s drained" % self.queue,
                      lambda: (self.queue_stats(self.queue) or (1, 1, 0))[:2] == (0, 0), 30)
        d.wait_log(r"more than 0 times before among the last ones: taking up to", 30)
        self.assert_alive(d)

    def test_classic_queue(self):
        self.check_runs_alone("classic")

    def test_quorum_queue(self):
        self.check_runs_alone("quorum")

    def test_stop_while_the_suspect_runs(self):
        # SIGTERM while it runs alone: it finishes within shutdown.grace and
        # is answered, and the rest is still in the queue for the next start.
        d, got = self.start_with_suspect("classic")
        d.wait_log(r"task suspect\\+u000a1 \(sleep\) runs alone now", 15)
        d.stop()
        got = self.collect_ids(["suspect"], timeout=15, got=got)
        self.check_alone(got)
        self.assertEqual([r.status for r in got if r.correlation_id == "suspect"], ["ok"])
        d.start()
        got = self.collect_ids(self.others, timeout=120, got=got)
        self.check_all_ok(got)
        self.assert_alive(d)

    def test_stop_while_the_suspect_waits(self):
        # SIGTERM while the tasks taken before it still run: the suspect goes
        # back as a copy with its count unchanged.  A requeue would count a
        # delivery, and on its last allowed one it would be rejected without
        # having crashed anything.
        d, got = self.start_with_suspect("classic", others_ms=2500, wait=False)
        d.stop()
        self.assertEqual(d.log_lines(r"ran alone"), [], "the suspect ran before the stop%s"
                         % self.daemon_logs())
        d.start()
        got = self.collect_ids(self.others + ["suspect"], timeout=120, got=got)
        self.check_all_ok(got)
        d.wait_log(r"task suspect\\+u000a1 \(sleep\) ran alone and was answered ok", 15)
        self.assert_alive(d)


class FailoverNotCounted(TaskdTestCase):
    """A task handed back by a lost connection is no crash: the taskd that
    lost the connection tells the fleet (control exchange), and no node
    counts that delivery against limits.max_deliveries (docs/decisions.md,
    "Failovers are not crashes").  Thousands of tasks are in flight on the
    connection the broker closes; with a limit of 2 each would otherwise
    come back on its last allowed delivery and run alone, one at a time."""

    N = 2000

    def control_status(self, exchange, n):
        """Every node's status answer, by pid."""
        q = self.use_queue(self.prefix + ".status")
        self.client.declare(q, durable=False)
        self.client.channel().basic_publish(exchange, "", b"", pika.BasicProperties(
            type="status", reply_to=q, correlation_id="st"))
        docs = [json.loads(r.body) for r in self.client.collect(q, n, 15)]
        return {int(doc["node"].rsplit(":", 1)[1]): doc for doc in docs}

    def test_quorum_queue(self):
        self.broker_closes_the_connection("quorum")

    def test_classic_queue(self):
        # Counted by taskd's copies (x-taskd-deliveries), not the broker.
        self.broker_closes_the_connection("classic")

    def broker_closes_the_connection(self, queue_type):
        exchange = self.use_exchange(self.prefix + ".control")
        self.use_queue(exchange + ".log")
        args = {"x-queue-type": "quorum"} if queue_type == "quorum" else {}
        self.client.declare(self.queue, durable=True, arguments=args)
        conf = {"queue.type": queue_type, "limits.max_deliveries": 2,
                "control.exchange": exchange}
        a = self.taskd(conf, name="a")
        ids = ["fo-%04d" % i for i in range(self.N)]
        for cid in ids:
            self.publish(b"15000", task="sleep", message_id=cid, correlation_id=cid,
                         persistent=True)
        self.wait_running(self.N, timeout=60)
        b = self.taskd(conf, name="b")

        # The broker closes a's connection (as a node that stops would):
        # every task comes back with x-delivery-count 1.
        out = broker_ctl("list_connections", "pid", "client_properties")
        mine = re.compile(r'connection_name[^}]*:%d"' % a.pid)
        conns = [ln.split("\t")[0] for ln in out.splitlines() if mine.search(ln)]
        self.assertEqual(len(conns), 1, "a's connection among: %r" % out)
        since = a.log_size()
        broker_ctl("close_connection", conns[0], "test: a failover")
        told = a.wait_log(r"told the fleet of \d+ tasks", timeout=30, since=since)
        self.assertIn("told the fleet of %d tasks" % self.N, told)

        got = self.collect_ids(ids, timeout=120)
        by = {}
        for r in got:
            by.setdefault(r.correlation_id, []).append(r)
        bad = [by[c][0] for c in ids if any(r.status != "ok" for r in by[c])]
        self.assertEqual(bad, [], "%d of %d tasks not answered ok, e.g. %r"
                         % (len(bad), self.N, bad[:3]))
        for d in (a, b):
            self.assert_alive(d)
            self.assertEqual(d.log_lines(r"may be what crashed taskd"), [],
                             "%s ran failed-over tasks as crash suspects%s"
                             % (d.name, self.daemon_logs()))
        # Each node heard of the failover (a from itself).
        status = self.control_status(exchange, 2)
        for d in (a, b):
            self.assertEqual(status[d.pid]["failovers_remembered"], self.N, d.name)
        print("\n%s: %d tasks failed over: all answered ok, none run as a suspect; "
              "%d answers in all" % (queue_type, self.N, len(got)))
