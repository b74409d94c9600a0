"""Limits and poison messages: the output cap of exec tasks of both kinds,
results the broker would refuse (broker.max_message_size), and tasks that
keep coming back because they kill taskd itself (limits.max_deliveries)."""

import os
import time

from taskdtest import TaskdTestCase, broker_ctl, new_id

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
