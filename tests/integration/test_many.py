"""1,000 echo tasks with distinct correlation ids: every one answered
exactly once, each with its own payload."""

import collections
import time

from taskdtest import TaskdTestCase


class Many(TaskdTestCase):
    N = 1000

    def test_thousand_echo_tasks(self):
        self.taskd()
        ids = ["c-%s-%04d" % (self.uid, i) for i in range(self.N)]
        t0 = time.monotonic()
        for i, cid in enumerate(ids):
            self.publish(b"payload %d" % i, task="echo", correlation_id=cid,
                         message_id="m-%04d" % i)
        # Linger a little after the last one so a duplicate would show.
        got = self.client.collect(self.reply_queue, self.N, timeout=90, linger=0.5)
        took = time.monotonic() - t0
        counts = collections.Counter(r.correlation_id for r in got)
        missing = [c for c in ids if c not in counts]
        dups = sorted(c for c, n in counts.items() if n > 1)
        strangers = sorted(set(counts) - set(ids))
        self.assertFalse(missing, "%d tasks not answered within 90 s (e.g. %s)%s"
                         % (len(missing), missing[:5], self.daemon_logs()))
        self.assertFalse(dups, "answered more than once: %s" % dups[:10])
        self.assertFalse(strangers, "results for tasks never sent: %s" % strangers[:10])
        for r in got:
            i = int(r.correlation_id.rsplit("-", 1)[1])
            self.assertEqual(r.status, "ok", repr(r))
            self.assertEqual(r.body, b"payload %d" % i, "result matched to the wrong task")
            self.assertEqual(r.headers.get("taskd-task-id"), "m-%04d" % i)
        self.assertEqual(self.client.counts(self.queue)[0], 0, "tasks left in the queue")
        print("  (%d echo round trips in %.2f s)" % (self.N, took), end=" ", flush=True)
