"""At-least-once across a crash of taskd, and several nodes on one queue."""

import collections
import re

from taskdtest import TaskdTestCase


class Delivery(TaskdTestCase):
    def test_kill9_mid_batch_then_restart(self):
        """kill -9 while tasks run: after a restart every task is answered
        at least once (duplicates allowed)."""
        conf = {"broker.prefetch": 10}
        d1 = self.taskd(conf, name="first")
        ids = ["k-%s-%03d" % (self.uid, i) for i in range(200)]
        for cid in ids:
            self.publish(b"50", task="sleep", correlation_id=cid, persistent=True)
        # 10 at a time, 50 ms each: the batch takes about 1 s; kill it after
        # the first 40 answers.
        got = self.collect(40, timeout=30)
        self.assertLess(len(set(r.correlation_id for r in got)), len(ids),
                        "the whole batch was done before the kill; the test proves nothing")
        d1.kill9()
        self.assertEqual(d1.proc.returncode, -9)

        d2 = self.taskd(conf, name="second")
        got = self.collect_ids(ids, timeout=60, got=got)
        for r in got:
            self.assertEqual(r.status, "ok", repr(r))
            self.assertEqual(r.body, b"50")
        pids = set()
        for r in got:
            pids.add(r.worker)
        self.assertTrue(any(re.search(r"(?<!\d)%d(?!\d)" % d2.pid, w) for w in pids),
                        "the restarted daemon answered nothing: workers %s" % pids)
        self.assertEqual(self.client.counts(self.queue)[0], 0)

    def test_two_daemons_share_the_queue(self):
        conf = {"broker.prefetch": 5}
        a = self.taskd(conf, name="a")
        b = self.taskd(conf, name="b", consumers=2)
        ids = ["s-%s-%03d" % (self.uid, i) for i in range(200)]
        for cid in ids:
            self.publish(b"20", task="sleep", correlation_id=cid)
        got = self.collect_ids(ids, timeout=60)
        per = collections.Counter()
        for r in got:
            self.assertEqual(r.status, "ok", repr(r))
            for d in (a, b):
                if re.search(r"(?<!\d)%d(?!\d)" % d.pid, r.worker or ""):
                    per[d.name] += 1
        workers = sorted(set(r.worker for r in got))
        self.assertGreaterEqual(len(workers), 2, "one worker did everything: %s" % workers)
        for d in (a, b):
            self.assertGreaterEqual(per[d.name], 20,
                                    "%s (pid %d) ran %d of 200 tasks (workers seen: %s)"
                                    % (d.name, d.pid, per[d.name], workers))
