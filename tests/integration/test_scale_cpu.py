"""The CPU pool at scale, under fire: a backlog of hundreds of CPU tasks
while the workers are SIGKILLed again and again.  taskd lives on (same
pid), every task is answered exactly once and right (retries are high
enough that none runs out of them), none is lost, and the pool is whole
again at the end."""

import collections
import hashlib
import os
import random
import signal
import sys
import time

from test_pool import PoolTestCase, worker_pids

TASKS = int(os.environ.get("TASKD_SCALE_CPU_TASKS", "500"))
KILL_FOR = float(os.environ.get("TASKD_SCALE_CPU_KILL_SECONDS", "6"))
KILL_EVERY = 0.2


class ScaleCpu(PoolTestCase):
    def test_backlog_while_workers_are_killed_again_and_again(self):
        retries = 12
        # The deadline runs from the hand-over to the pool, backlog wait
        # included: generous, so that only a crash can end a task early.
        tasks = [{"name": n, "handler": n, "retries": retries, "timeout": 280.0}
                 for n in ("burn", "sha256")]
        d = self.taskd({"cpu.workers": 2}, tasks=tasks)
        pid = d.pid
        self.wait_pool(d, 2)

        rng = random.Random(self.uid)
        want = {}
        for i in range(TASKS):
            cid = "%s-%04d" % (self.uid, i)
            if i % 2 == 0:
                body = b"%d" % rng.randint(20, 50)
                want[cid] = ("burn", body, body)
            else:
                body = rng.randbytes(rng.randint(0, 100000))
                want[cid] = ("sha256", body, hashlib.sha256(body).hexdigest().encode())
        t0 = time.monotonic()
        for cid, (task, body, _) in want.items():
            self.publish(body, task=task, correlation_id=cid)

        # Kill every worker there is, every 200 ms: busy ones mid-task, new
        # ones while they start.
        killed = set()
        end = time.monotonic() + KILL_FOR
        while time.monotonic() < end:
            for w in worker_pids(pid):
                try:
                    os.kill(w, signal.SIGKILL)
                    killed.add(w)
                except ProcessLookupError:
                    pass
            time.sleep(KILL_EVERY)
        self.assertTrue(d.alive() and d.pid == pid, "taskd died under the kills")

        got = self.collect_ids(want, timeout=300)
        took = time.monotonic() - t0
        got += self.more_results(1.0)
        times = collections.Counter(r.correlation_id for r in got)
        twice = sorted(c for c, n in times.items() if n > 1)
        self.assertEqual(twice, [], "answered more than once")
        self.assertEqual(set(times), set(want), "answers to tasks never sent")
        attempts = collections.Counter()
        for r in got:
            task, _, body = want[r.correlation_id]
            self.assertEqual(r.status, "ok", r)
            self.assertEqual(r.props.type, task, r)
            self.assertEqual(r.body, body, r)
            attempts[r.headers.get("taskd-attempt")] += 1

        self.assert_alive(d)
        self.assertEqual(d.pid, pid)
        pool = self.wait_pool(d, 2, exclude=killed)
        crashes = d.log_lines(r"lost while running a task")
        # The kills did hit tasks, and those tasks were run again.
        self.assertGreaterEqual(len(crashes), 5, "kills that hit a running task")
        self.assertGreater(sum(n for a, n in attempts.items() if a > 1), 0, attempts)
        self.assertEqual(self.queue_stats(self.queue)[:2], (0, 0),
                         "(ready, unacked) of the task queue")
        # Both new workers take work.
        for _ in range(4):
            res = self.run_task("sha256", b"after")
            self.assertEqual(res.status, "ok", res)
        self.assertEqual(set(worker_pids(pid)), set(pool))
        sys.stderr.write("\n  %d tasks in %.1f s; %d workers killed, %d tasks hit; "
                         "attempts %s\n" % (TASKS, took, len(killed), len(crashes),
                                            dict(sorted(attempts.items()))))
