"""Coalesced acks (docs/decisions.md): tasks that finish out of order are
acked exactly once each, a multiple ack never covers a task still running,
and a graceful stop acks every task it answered."""

import collections

from taskdtest import TaskdTestCase


class AckCoalescing(TaskdTestCase):
    # One round of the mix: slow and fast tasks interleaved, so settled tags
    # sit behind open ones; an unknown task (rejected, its reject sent while
    # acks wait) and a task without reply_to (no reply.queue either: acked
    # with no result, straight from its handler).
    MIX = [("sleep", b"300"), ("echo", b"e"), ("sleep", b"10"), ("nosuch", b""),
           ("echo", b"f"), ("sleep", b"150"), ("echo", b"g"), ("sleep", b"0")]

    def publish_mix(self, rounds, tag):
        """Publishes rounds x MIX plus one no-reply echo per round; returns
        {correlation_id: (task, payload)} of the tasks that get a result."""
        want = {}
        for i in range(rounds):
            for j, (task, body) in enumerate(self.MIX):
                cid = "%s-%s-%03d-%d" % (tag, self.uid, i, j)
                want[cid] = (task, body)
                self.publish(body, task=task, correlation_id=cid)
            self.publish(b"x", task="echo", reply_to=None,
                         correlation_id="%s-%s-%03d-none" % (tag, self.uid, i))
        return want

    def check_results(self, got, want):
        seen = collections.Counter(r.correlation_id for r in got)
        dups = {c: n for c, n in seen.items() if n > 1}
        self.assertEqual(dups, {}, "tasks answered more than once (redelivered?)")
        self.assertEqual(set(seen), set(want), "results differ from the tasks sent")
        for r in got:
            task, body = want[r.correlation_id]
            if task == "nosuch":
                self.assertEqual(r.status, "rejected", repr(r))
            else:
                self.assertEqual(r.status, "ok", repr(r))
                self.assertEqual(r.body, body, repr(r))
            attempt = r.headers.get("taskd-attempt")
            if attempt is not None:
                self.assertEqual(int(attempt), 1, repr(r))

    def test_out_of_order_completion_acks_each_task_once(self):
        d = self.taskd({"broker.prefetch": 16, "reply.queue": ""})
        # The first tag stays open throughout: every ack after it must be
        # one of its own, never a multiple ack spanning it.
        long_id = "long-%s" % self.uid
        self.publish(b"15000", task="sleep", correlation_id=long_id)
        want = self.publish_mix(25, "o")
        # linger: a redelivered task would show up as a second result.
        got = self.collect(len(want), timeout=60, linger=0.5)
        self.assertNotIn(long_id, [r.correlation_id for r in got],
                         "the 15 s task finished before the mix: the test proves nothing")
        self.check_results(got, want)
        # Everything acked but the task still running: a wrong multiple ack
        # would have taken it too (0 unacked).
        self.wait_for("every finished task acked, the running one not "
                      "(queue %s: ready, unacked = 0, 1)" % self.queue,
                      lambda: self.queue_stats(self.queue)[:2] == (0, 1), 10)
        last = self.collect(1, timeout=25, linger=0.5)
        self.assertEqual([r.correlation_id for r in last], [long_id])
        self.wait_for("every task acked (queue %s: ready, unacked = 0, 0)" % self.queue,
                      lambda: self.queue_stats(self.queue)[:2] == (0, 0), 5)
        self.assert_alive(d)
        # A wrong ack closes the channel ("unknown delivery tag").
        self.assertEqual(d.log_lines("connection lost|closed channel|delivery tag"), [],
                         d.log_tail())
        d.stop()

    def test_graceful_stop_acks_every_answered_task(self):
        d = self.taskd({"broker.prefetch": 0, "shutdown.grace": 10.0, "reply.queue": ""})
        want = self.publish_mix(10, "g")
        # Stop while the slow tasks still run: the drain finishes them, and
        # their acks are the last thing sent before the connection closes.
        self.wait_for("the daemon took every task",
                      lambda: self.queue_stats(self.queue)[0] == 0, 15)
        d.stop()
        got = self.collect(len(want), timeout=30, linger=0.5)
        self.check_results(got, want)
        stats = self.queue_stats(self.queue)
        self.assertEqual(stats[:2], (0, 0),
                         "tasks back in the queue after a graceful stop: not acked\n"
                         + d.log_tail())
