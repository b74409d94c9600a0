"""Fault paths with thousands of I/O tasks in flight.

Each test puts at least 2,000 sleep tasks on coroutines at once and then
ends them all the hard way: their deadlines together, a broker restart, a
frozen broker, a reload (one that changes io.stack_size too), a stop past
shutdown.grace.  Every coroutine is then cancelled or finished in a burst,
far more than the free list of stacks keeps (256).  Each test checks that
the same taskd process lives on (except where it is stopped), that every
task is answered or back in the queue (results counted by correlation id,
plus the queue's depth), that every answer is the right one, and that no
task is answered twice where the contract says once.
"""

import os
import signal
import time

import pika

from taskdtest import TaskdTestCase, broker_ctl, broker_pid

N = 2000
LOST_RE = r"(?i)heartbeat|lost|dead"


def sleep_task(name="sleep", **kw):
    task = {"name": name, "handler": "sleep", "retries": 0}
    task.update(kw)
    return task


class ScaleIo(TaskdTestCase):

    def scale_taskd(self, conf=None, tasks=None):
        """A taskd with room for all the tasks at once: every one is
        delivered (prefetch) and runs (io.max_concurrency) immediately."""
        full = {"broker.prefetch": 3 * N, "io.max_concurrency": 3 * N,
                "cpu.workers": 1}
        full.update(conf or {})
        return self.taskd(full, tasks=tasks or [sleep_task(), {"name": "echo", "handler": "echo"}])

    def publish_many(self, tag, n, body, headers=None, persistent=False, reply_to=True):
        """Publishes n tasks on one channel without confirms (a confirm per
        message would take longer than the tasks run); the channel's close
        returns once the broker has taken them all.  Returns their ids."""
        ids = ["%s-%s-%05d" % (tag, self.uid, i) for i in range(n)]
        self.client.channel()  # connects when needed
        ch = self.client.conn.channel()
        try:
            for cid in ids:
                props = pika.BasicProperties(
                    type="sleep", correlation_id=cid, headers=headers,
                    reply_to=self.reply_queue if reply_to else None,
                    delivery_mode=2 if persistent else None)
                ch.basic_publish("", self.queue, body, props)
        finally:
            ch.close()
        return ids

    def barrier(self, d, timeout=90):
        """Publishes an echo task behind every task published so far and
        waits for its answer.  taskd reads deliveries in order and, with
        io.max_concurrency above their count, starts each as it arrives:
        once the echo is answered, every task before it is running in
        taskd (the broker's "nothing ready" only says it sent them).
        Returns the other results that came meanwhile."""
        cid = "barrier-%s" % self.uid
        self.publish(b"barrier", task="echo", correlation_id=cid)
        got = self.collect_all(d, [cid], timeout)
        mine = [r for r in got if r.correlation_id == cid]
        self.assertEqual(len(mine), 1, "the barrier answered %d times" % len(mine))
        self.assertEqual((mine[0].status, mine[0].body), ("ok", b"barrier"), mine[0])
        return [r for r in got if r.correlation_id != cid]

    def collect_all(self, d, ids, timeout):
        """Results until every id in ids was answered at least once (all
        results returned, duplicates included); stops early, failing,
        when d has died: a crashed daemon answers nothing more."""
        want = set(ids)
        seen = set()
        checked = 0

        def done(got):
            nonlocal checked
            for r in got[checked:]:
                seen.add(r.correlation_id)
            checked = len(got)
            return want <= seen or not d.alive()

        got = self.client.consume_until(self.reply_queue, done, timeout)
        self.assert_alive(d)
        missing = want - set(r.correlation_id for r in got)
        if missing:
            self.fail("%d of %d tasks never answered within %.0f s (e.g. %s)%s"
                      % (len(missing), len(want), timeout, sorted(missing)[:5],
                         self.daemon_logs()))
        return got

    def by_id(self, results, ids):
        """{correlation id: [results]} for ids; fails on a result for a
        task that was not asked (an answer to the wrong task)."""
        want = set(ids)
        out = {}
        for r in results:
            self.assertIn(r.correlation_id, want, "a result for no task of this test: %r" % (r,))
            out.setdefault(r.correlation_id, []).append(r)
        return out

    def assert_answers(self, answers, ids, status, body=None, once=True):
        """Every id answered with status (and body, for ok), exactly once
        when `once`; returns how many ids were answered more than once."""
        missing = [cid for cid in ids if cid not in answers]
        self.assertEqual(missing, [], "%d tasks never answered" % len(missing))
        twice = {cid: rs for cid, rs in answers.items() if cid in set(ids) and len(rs) > 1}
        if once:
            self.assertEqual(len(twice), 0, "%d tasks answered twice, e.g. %r"
                             % (len(twice), list(twice.items())[:2]))
        for cid in ids:
            for r in answers[cid]:
                self.assertEqual(r.status, status, "task %s: %r" % (cid, r))
                if status == "ok":
                    self.assertEqual(r.body, body, "task %s: %r" % (cid, r))
                else:
                    self.assertEqual(r.error().get("error"), status, "task %s: %r" % (cid, r))
        return len(twice)

    def assert_same_daemon(self, d, pid, results):
        self.assert_alive(d)
        self.assertEqual(d.pid, pid)
        for r in results[:1] + results[-1:]:
            self.assertRegex(r.worker, r"(?<!\d)%d(?!\d)" % pid, "answered by another process")

    def assert_queue_empty(self):
        """Nothing ready and nothing unacked: every answered task was acked."""
        self.wait_for("task queue empty (ready, unacked) = (0, 0), now %s"
                      % (self.queue_stats(self.queue),),
                      lambda: self.queue_stats(self.queue)[:2] == (0, 0), 30, interval=0.5)

    # ------------------------------------------------------------------

    def test_timeouts_together(self):
        """N tasks whose 1 s deadline passes together: N coroutines are
        cancelled in a few loop iterations; each is answered "timeout" once."""
        d = self.scale_taskd()
        pid = d.pid
        t0 = time.monotonic()
        ids = self.publish_many("t", N, b"60000", headers={"timeout": 1.0})
        got = self.collect_all(d, ids, timeout=120)
        took = time.monotonic() - t0
        got += self.more_results(1.0)
        self.assert_answers(self.by_id(got, ids), ids, "timeout")
        self.assert_same_daemon(d, pid, got)
        self.assert_queue_empty()
        # They ran together: one after the other would take N seconds.
        self.assertLess(took, 100)
        print("  (%d timeouts answered in %.1f s)" % (N, took), end=" ", flush=True)

    def test_broker_restart_with_tasks_running(self):
        """stop_app/start_app with N tasks running: the lost connection
        cancels all N; the broker redelivers them (persistent, durable
        queue) and the same process answers every one."""
        d = self.scale_taskd()
        pid = d.pid
        ids = self.publish_many("r", N, b"6000", persistent=True, reply_to=False)
        early = self.barrier(d)
        self.client.close()
        since = d.log_size()
        broker_ctl("stop_app")
        try:
            d.wait_log(LOST_RE, 30, since)
            time.sleep(1)  # a failed reconnect or two, not just one
            self.assert_alive(d)
        finally:
            broker_ctl("start_app")
        self.client.connect(timeout=30)
        got = self.collect_all(d, ids, timeout=180) + early
        got += self.more_results(1.0)
        # At-least-once across a lost connection: a task may come twice,
        # but each answer must be its own.
        twice = self.assert_answers(self.by_id(got, ids), ids, "ok", b"6000", once=False)
        self.assert_same_daemon(d, pid, got)
        self.assert_queue_empty()
        print("  (%d answered twice)" % twice, end=" ", flush=True)

    def test_broker_frozen_with_tasks_running(self):
        """SIGSTOP the broker past two heartbeats (2 s) with N tasks
        running: taskd drops the dead connection (cancelling all N),
        reconnects after SIGCONT and answers every task."""
        hb = 2
        d = self.scale_taskd({"broker.heartbeat": hb, "broker.connect_timeout": 2.0})
        pid = d.pid
        ids = self.publish_many("f", N, b"10000")
        early = self.barrier(d)
        self.client.close()  # it would hang on the frozen broker
        vm = broker_pid()
        since = d.log_size()
        os.kill(vm, signal.SIGSTOP)
        try:
            t0 = time.monotonic()
            d.wait_log(LOST_RE, 5 * hb, since)
            while time.monotonic() - t0 < 3 * hb:
                self.assert_alive(d)
                time.sleep(0.2)
            self.assert_alive(d)
        finally:
            os.kill(vm, signal.SIGCONT)
        self.client.connect(timeout=30)
        got = self.collect_all(d, ids, timeout=180) + early
        got += self.more_results(1.0)
        twice = self.assert_answers(self.by_id(got, ids), ids, "ok", b"10000", once=False)
        self.assert_same_daemon(d, pid, got)
        self.assert_queue_empty()
        print("  (%d answered twice)" % twice, end=" ", flush=True)

    def reload_with_tasks_running(self, change):
        """N tasks running, half of them to finish (sleep 8 s), half to be
        cancelled by their 7 s deadline after the reload; SIGHUP with
        change(conf) applied.  Every task is answered once, by the same
        process, and a task started after the reload runs."""
        d = self.scale_taskd()
        pid = d.pid
        ok = self.publish_many("ok", N // 2, b"8000")
        late = self.publish_many("to", N // 2, b"60000", headers={"timeout": 7.0})
        early = self.barrier(d)
        change(d.conf)
        d.write_config()
        since = d.log_size()
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"configuration reloaded|reload refused", 20, since)
        self.assertTrue(d.log_lines(r"configuration reloaded", since),
                        "the reload was refused" + self.daemon_logs())
        got = self.collect_all(d, ok + late, timeout=120) + early
        after = self.run_task("echo", b"after the reload", timeout=30)
        self.assertEqual(after.body, b"after the reload")
        got += self.more_results(1.0)
        answers = self.by_id(got, ok + late)
        self.assert_answers(answers, ok, "ok", b"8000")
        self.assert_answers(answers, late, "timeout")
        self.assert_same_daemon(d, pid, got)
        self.assert_queue_empty()

    def test_reload_nothing_relevant(self):
        def change(conf):
            conf["limits"]["timeout"] = 50.0
        self.reload_with_tasks_running(change)

    def test_reload_new_stack_size(self):
        """Coroutines of the old stack size finish and are cancelled after
        the reload; new ones get the new size."""
        def change(conf):
            conf.setdefault("io", {})["stack_size"] = 131072
        self.reload_with_tasks_running(change)

    def test_stop_past_grace(self):
        """SIGTERM with N long and N/4 short tasks running: the short ones
        finish within shutdown.grace and are answered and acked, the long
        ones go back to the queue, taskd exits 0 within the grace and a
        bound; nothing is lost and nothing is both answered and requeued."""
        grace = 3.0
        d = self.scale_taskd({"shutdown.grace": grace})
        long_ids = self.publish_many("long", N, b"60000")
        short_ids = self.publish_many("short", N // 4, b"2000")
        early = self.barrier(d)
        t0 = time.monotonic()
        d.stop(expect=0, timeout=grace + 30)
        took = time.monotonic() - t0
        self.assertLess(took, grace + 10, "the stop took %.1f s with a grace of %.1f s"
                        % (took, grace))

        got = self.collect_ids(short_ids, timeout=30, got=early)
        got += self.more_results(1.0)
        answers = self.by_id(got, long_ids + short_ids)
        self.assertEqual(set(answers), set(short_ids),
                         "answered: a long task past the grace")
        self.assert_answers(answers, short_ids, "ok", b"2000")
        # The long ones are back in the queue, ready; the short ones were
        # acked (they would be back too otherwise).
        self.assertEqual(self.queue_stats(self.queue)[:2], (N, 0),
                         "(ready, unacked) after the stop\n" + d.log_tail())
        left = []
        while True:
            m = self.client.get(self.queue)
            if m is None:
                break
            left.append(m.correlation_id)
        self.assertEqual(sorted(left), sorted(long_ids))
        # The daemon's own account agrees (the barrier's echo is one ok).
        line = d.log_lines(r"stopped: \d+ ok")
        self.assertTrue(line, "no 'stopped:' line" + self.daemon_logs())
        self.assertIn("stopped: %d ok, 0 failed, 0 rejected, %d requeued"
                      % (len(short_ids) + 1, N), line[-1])
        print("  (stopped in %.1f s, grace %.1f s)" % (took, grace), end=" ", flush=True)
