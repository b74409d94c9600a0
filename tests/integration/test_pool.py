"""The CPU pool: CPU handlers run in worker processes sized to the machine;
a worker killed mid-task is replaced and its task retried; a runaway task
is killed at its deadline; workers are recycled; exec tasks of kind cpu."""

import hashlib
import os
import signal
import time

from taskdtest import TaskdTestCase, new_id

BUILDDIR = os.environ.get("TOP_BUILDDIR") or os.path.dirname(os.environ.get("TASKD", "."))
MISBEHAVE = os.path.join(BUILDDIR, "tests", "plugins", "misbehave.so")


def worker_pids(daemon_pid):
    """{pid: title} of the daemon's CPU workers, from /proc."""
    out = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open("/proc/%s/stat" % name) as f:
                stat = f.read()
            with open("/proc/%s/cmdline" % name, "rb") as f:
                cmd = f.read().split(b"\0")[0].decode(errors="replace")
        except OSError:
            continue
        # The comm field may hold blanks and parentheses: split after it.
        fields = stat[stat.rindex(")") + 2:].split()
        if int(fields[1]) == daemon_pid and fields[0] != "Z" and \
                cmd.startswith("taskd: cpu worker"):
            out[int(name)] = cmd
    return out


def proc_state(pid):
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2:].split()[0]


def cpu_seconds(pid):
    """User + system CPU time a process has used, or None when it is gone."""
    try:
        with open("/proc/%d/stat" % pid) as f:
            stat = f.read()
    except OSError:
        return None
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class PoolTestCase(TaskdTestCase):
    """Helpers of the pool's tests."""

    def wait_burning(self, pid):
        """Waits until worker pid is running a burn: more CPU than a worker
        spends starting (being runnable is not enough: a worker that has
        just been spawned is runnable too, and killing it then is a start-up
        failure, not a crash mid-task)."""
        self.wait_for("worker %d running the task" % pid,
                      lambda: (cpu_seconds(pid) or 0) >= 0.3, 20, interval=0.01)

    def start_with(self, conf=None, tasks=None, plugins=None):
        d = self.taskd(conf, start=False, tasks=tasks)
        if plugins:
            d.conf["plugins"] = plugins
            d.write_config()
        d.start()
        return d

    def wait_pool(self, d, n, exclude=()):
        """Waits until the daemon has exactly n workers, none in exclude."""
        def ok():
            pids = worker_pids(d.pid)
            return pids if len(pids) == n and not set(pids) & set(exclude) else None
        return self.wait_for("pool of %d workers (not %s)" % (n, sorted(exclude)), ok, 5)


class Pool(PoolTestCase):
    def test_size_and_titles(self):
        d = self.start_with({"cpu.workers": 2})
        pids = self.wait_pool(d, 2)
        self.assertEqual(sorted(pids.values()), ["taskd: cpu worker 1", "taskd: cpu worker 2"])
        line = d.wait_log(r"cpu pool: 2 workers \(cpu.workers = 2", 5)
        self.assertIn("usable cores", line)

    def test_default_size_is_usable_cores(self):
        d = self.start_with()
        line = d.wait_log(r"cpu pool: \d+ workers", 5)
        n = int(line.split("cpu pool: ")[1].split()[0])
        self.assertEqual(n, len(os.sched_getaffinity(0)), line)
        self.wait_pool(d, n)

    def test_worker_starts_clean(self):
        """Only its channel and stdio open, no signal blocked, own process
        group, and it dies with the daemon."""
        d = self.start_with({"cpu.workers": 2})
        pids = self.wait_pool(d, 2)
        def open_fds(pid):
            what = {}
            for fd in sorted(int(f) for f in os.listdir("/proc/%d/fd" % pid)):
                try:
                    what[fd] = os.readlink("/proc/%d/fd/%d" % (pid, fd))
                except OSError:
                    pass
            return what

        for pid in pids:
            # The title changes as execve replaces the image, a moment before
            # the kernel closes the close-on-exec fds (the binary's, fd 4):
            # a worker that has just appeared may still show it.  What
            # counts is what stays open.
            deadline = time.monotonic() + 5
            while sorted(open_fds(pid)) != [0, 1, 2, 3] and time.monotonic() < deadline:
                time.sleep(0.05)
            fds = open_fds(pid)
            self.assertEqual(sorted(fds), [0, 1, 2, 3], "fds of worker %d: %r" % (pid, fds))
            self.assertTrue(os.readlink("/proc/%d/fd/3" % pid).startswith("socket:"))
            with open("/proc/%d/status" % pid) as f:
                status = dict(line.split(":\t", 1) for line in f.read().splitlines()
                              if ":\t" in line)
            self.assertEqual(int(status["SigBlk"], 16), 0, "blocked signals of %d" % pid)
            self.assertEqual(os.getpgid(pid), pid, "worker %d leads its own group" % pid)
        d.kill9()
        self.wait_for("workers gone with the daemon (PR_SET_PDEATHSIG)",
                      lambda: all(proc_state(p) in (None, "Z") for p in pids), 5)

    def test_worker_that_cannot_start_is_not_respawned_in_a_loop(self):
        """The plugin file disappears after start: each replacement dies at
        once; the pool retries once a second, not as fast as it can fork."""
        import shutil
        so = os.path.join(self.workdir, "gone.so")
        shutil.copyfile(MISBEHAVE, so)
        os.chmod(so, 0o644)
        d = self.start_with({"cpu.workers": 1}, tasks=[{"name": "pid", "handler": "pid"}],
                            plugins=[so])
        (first,) = self.wait_pool(d, 1)
        os.unlink(so)
        since = d.log_size()
        os.kill(first, signal.SIGKILL)
        time.sleep(3.2)    # measuring a rate: a fixed window is the point
        deaths = d.log_lines(r"cpu worker 1 \(pid \d+\) lost", since)
        self.assertGreaterEqual(len(deaths), 2, "\n".join(deaths))
        self.assertLessEqual(len(deaths), 5, "\n".join(deaths))
        self.assert_alive(d)

    def test_result_size_limit(self):
        d = self.start_with({"cpu.workers": 1, "limits.max_payload": 1024 * 1024},
                            tasks=[{"name": "big", "handler": "big"}],
                            plugins=[MISBEHAVE])
        (first,) = self.wait_pool(d, 1)
        res = self.run_task("big", b"2")
        self.assertEqual(res.status, "error", res)
        doc = res.error()
        self.assertEqual(doc["error"], "handler_failed")
        self.assertIn("larger than 1048576 bytes", doc["message"])
        self.assertEqual(worker_pids(d.pid).keys(), {first}, "the worker is kept")

    def test_cpu_handlers_in_workers(self):
        d = self.start_with({"cpu.workers": 2})
        body = os.urandom(300000)
        res = self.run_task("sha256", body)
        self.assert_result(res, "sha256", correlation_id=res.correlation_id)
        self.assertEqual(res.body.decode(), hashlib.sha256(body).hexdigest())
        res = self.run_task("burn", b"30")
        self.assert_result(res, "burn", correlation_id=res.correlation_id)
        self.assertEqual(res.body, b"30")
        # Two burns at once take about one burn's wall time on 2 workers.
        ids = [new_id() for _ in range(2)]
        for cid in ids:
            self.publish(b"300", task="burn", correlation_id=cid)
        got = self.collect_ids(ids, 20)
        self.assertTrue(all(r.status == "ok" for r in got), got)
        self.wait_pool(d, 2)

    def test_worker_killed_mid_task_is_retried(self):
        d = self.start_with({"cpu.workers": 1},
                            tasks=[{"name": "burn", "handler": "burn", "retries": 1}])
        (victim,) = self.wait_pool(d, 1)
        cid = new_id()
        self.publish(b"1500", task="burn", correlation_id=cid)
        self.wait_burning(victim)
        os.kill(victim, signal.SIGKILL)
        # Replaced within a second, while the task waits out its backoff.
        self.wait_for("a new worker within 1 s", lambda: (
            len(worker_pids(d.pid)) == 1 and victim not in worker_pids(d.pid)), 1.0,
            interval=0.01)
        res = self.collect(1, 20)[0]
        self.assertEqual(res.correlation_id, cid)
        self.assertEqual(res.status, "ok", res)
        self.assertEqual(res.headers.get("taskd-attempt"), 2, res)
        self.assertEqual(res.body, b"1500")
        self.wait_pool(d, 1, exclude=[victim])
        d.wait_log(r"cpu worker 1 \(pid %d\) lost while running a task: .*signal 9" % victim, 5)

    def test_crash_without_retries_answers_worker_crashed(self):
        d = self.start_with({"cpu.workers": 1})
        (victim,) = self.wait_pool(d, 1)
        self.publish(b"5000", task="burn", correlation_id="c-crash")
        self.wait_burning(victim)
        os.kill(victim, signal.SIGKILL)
        res = self.collect(1, 10)[0]
        self.assertEqual(res.status, "error", res)
        self.assertEqual(res.error()["error"], "worker_crashed")
        self.assertEqual(res.headers.get("taskd-attempt"), 1)
        self.wait_pool(d, 1, exclude=[victim])

    def test_runaway_task_is_killed_at_deadline(self):
        d = self.start_with({"cpu.workers": 1},
                            tasks=[{"name": "spin", "handler": "spin", "timeout": 1.0},
                                   {"name": "pid", "handler": "pid"}],
                            plugins=[MISBEHAVE])
        (first,) = self.wait_pool(d, 1)
        t0 = time.monotonic()
        self.publish(b"", task="spin", correlation_id="c-spin")
        res = self.collect(1, 10)[0]
        elapsed = time.monotonic() - t0
        self.assertEqual(res.status, "timeout", res)
        self.assertEqual(res.error()["error"], "timeout")
        self.assertLess(elapsed, 2.0, "timeout answered after %.2f s" % elapsed)
        self.assertGreaterEqual(elapsed, 0.95)
        self.wait_pool(d, 1, exclude=[first])
        # The replacement works.
        res = self.run_task("pid", b"")
        self.assertEqual(res.status, "ok", res)
        self.assertNotEqual(int(res.body), first)

    def test_max_tasks_per_child_recycles(self):
        d = self.start_with({"cpu.workers": 1, "cpu.max_tasks_per_child": 2},
                            tasks=[{"name": "pid", "handler": "pid"}],
                            plugins=[MISBEHAVE])
        pids = [int(self.run_task("pid", b"").body) for _ in range(5)]
        self.assertEqual(pids[0], pids[1], pids)
        self.assertEqual(pids[2], pids[3], pids)
        self.assertEqual(len(set(pids)), 3, pids)
        self.wait_pool(d, 1, exclude=pids[:4])

    def test_max_memory_recycles(self):
        d = self.start_with({"cpu.workers": 1, "cpu.max_memory": 64 * 1024 * 1024,
                             "log.level": "debug"},
                            tasks=[{"name": "grow", "handler": "grow"},
                                   {"name": "pid", "handler": "pid"}],
                            plugins=[MISBEHAVE])
        small = int(self.run_task("grow", b"1").body)
        self.assertEqual(int(self.run_task("pid", b"").body), small, "1 MiB keeps the worker")
        big = int(self.run_task("grow", b"100").body)
        self.assertEqual(big, small)
        d.wait_log(r"recycled: RSS \d+ bytes is above cpu.max_memory", 5)
        after = int(self.run_task("pid", b"").body)
        self.assertNotEqual(after, big, "a worker above cpu.max_memory is replaced")

    def test_reload_resizes(self):
        d = self.start_with({"cpu.workers": 1})
        self.wait_pool(d, 1)
        d.conf["cpu"]["workers"] = 2
        d.write_config()
        os.kill(d.pid, signal.SIGHUP)
        self.wait_pool(d, 2)
        d.conf["cpu"]["workers"] = 1
        d.write_config()
        os.kill(d.pid, signal.SIGHUP)
        self.wait_pool(d, 1)
        res = self.run_task("burn", b"10")
        self.assertEqual(res.status, "ok", res)

    def test_exec_cpu(self):
        d = self.start_with({"cpu.workers": 1}, tasks=[
            {"name": "cat", "kind": "cpu", "exec": ["/bin/cat"]},
            {"name": "fail", "kind": "cpu",
             "exec": ["/bin/sh", "-c", "echo oops >&2; exit 3"]},
            {"name": "hang", "kind": "cpu", "exec": ["/bin/sleep", "30"], "timeout": 1.0},
        ])
        (first,) = self.wait_pool(d, 1)
        body = os.urandom(200000)
        res = self.run_task("cat", body)
        self.assertEqual(res.status, "ok", res)
        self.assertEqual(res.body, body)
        res = self.run_task("fail", b"")
        self.assertEqual(res.status, "error", res)
        doc = res.error()
        self.assertEqual(doc["error"], "handler_failed")
        self.assertIn("oops", doc["message"])
        self.assertIn("3", doc["message"])
        t0 = time.monotonic()
        res = self.run_task("hang", b"")
        self.assertEqual(res.status, "timeout", res)
        self.assertLess(time.monotonic() - t0, 2.5)
        # No sleep left behind, and the pool is whole.
        self.wait_pool(d, 1)

        def sleepers():
            found = []
            for name in os.listdir("/proc"):
                if name.isdigit():
                    try:
                        with open("/proc/%s/cmdline" % name, "rb") as f:
                            if f.read() == b"/bin/sleep\x0030\x00":
                                found.append(name)
                    except OSError:
                        pass
            return found
        self.wait_for("the timed-out program gone", lambda: not sleepers(), 5)


def rss_bytes(pid):
    """VmRSS of a process in bytes (0 when it is gone)."""
    try:
        with open("/proc/%d/status" % pid) as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


class PoolFaults(PoolTestCase):
    """Faults at the pool's edges: a worker that died unseen, a worker that
    breaks the frame protocol."""

    TASKS = [{"name": "hangup", "handler": "hangup"},
             {"name": "sha256", "handler": "sha256", "timeout": 1.0}]

    def test_task_given_to_a_worker_that_died_idle_runs_on_the_next(self):
        """The worker went away after its last task; the next task's frame
        cannot be written to it.  That task never reached a worker: not a
        crash, so it runs (attempt 1) on the replacement instead of being
        answered worker_crashed, and it is answered once."""
        d = self.start_with({"cpu.workers": 1}, tasks=self.TASKS, plugins=[MISBEHAVE])
        (victim,) = self.wait_pool(d, 1)
        res = self.run_task("hangup", b"")
        self.assertEqual(res.status, "ok", res)
        cid = new_id()
        res = self.run_task("sha256", b"abc", correlation_id=cid)
        self.assertEqual(res.status, "ok", res)
        self.assertEqual(res.body.decode(), hashlib.sha256(b"abc").hexdigest())
        self.assertEqual(res.headers.get("taskd-attempt"), 1, res)
        # Past the task's 1 s deadline: a timer left running fires.
        self.assertEqual(self.more_results(2.0), [], "answered once")
        self.assert_alive(d)
        self.wait_pool(d, 1, exclude=[victim])
        self.assertEqual(d.log_lines(r"lost while running a task"), [],
                         "the task was not a crash")

    def test_task_without_reply_given_to_a_worker_that_died_idle(self):
        """Without a reply address a task is settled as soon as it is
        answered: the dispatcher must not touch it after pool_submit (with
        the old contract it armed the deadline timer of a freed task)."""
        d = self.start_with({"cpu.workers": 1, "reply.queue": ""}, tasks=self.TASKS,
                            plugins=[MISBEHAVE])
        (victim,) = self.wait_pool(d, 1)

        def settled():
            return (self.queue_stats(self.queue) or (1, 1, 0))[:2] == (0, 0)
        self.publish(b"", task="hangup", reply_to=None)
        self.wait_for("the hangup task acked", settled, 20)
        self.publish(b"abc", task="sha256", reply_to=None)
        self.wait_for("the sha256 task acked", settled, 20)
        time.sleep(2.0)   # past its 1 s deadline
        self.assert_alive(d)
        self.wait_pool(d, 1, exclude=[victim])
        self.publish(b"after", task="sha256", reply_to=None)
        self.wait_for("one more task acked", settled, 20)
        self.assert_alive(d)
        self.assertEqual(d.log_lines(r"lost while running a task"), [],
                         "the task was not a crash")

    def assert_rss_bounded(self, d, limit, until):
        """Polls the daemon's RSS until until() is true; fails (and kills
        the daemon, which could take the machine's memory) once it is
        more than limit bytes above where it started."""
        base = rss_bytes(d.pid)
        peak = base
        deadline = time.monotonic() + 60
        while not until():
            rss = rss_bytes(d.pid)
            peak = max(peak, rss)
            if rss - base > limit:
                d.kill9()
                self.fail("taskd's RSS grew from %d to %d MiB while a worker flooded "
                          "its channel" % (base >> 20, rss >> 20))
            if time.monotonic() > deadline:
                self.fail("no end to the flood within 60 s%s" % self.daemon_logs())
            time.sleep(0.02)
        return base, peak

    def test_flooding_worker_is_killed_and_memory_stays_bounded(self):
        """A worker sends CHILD frames for its task without end (in writes
        that end mid-frame): the second one is a protocol violation, the
        worker is killed, the task retried (and killed again), and the
        daemon's memory does not follow the flood."""
        d = self.start_with({"cpu.workers": 1, "limits.max_payload": 1 << 20},
                            tasks=[{"name": "flood", "handler": "flood", "retries": 1},
                                   {"name": "sha256", "handler": "sha256"}],
                            plugins=[MISBEHAVE])
        (first,) = self.wait_pool(d, 1)
        cid = new_id()
        # The first cpu task of this daemon has sequence number 1.
        self.publish(b"child 1", task="flood", correlation_id=cid)
        got = []
        base, peak = self.assert_rss_bounded(
            d, 64 << 20, lambda: got.extend(self.client.collect(self.reply_queue, 1, 0.2))
            or got)
        res = got[0]
        self.assertEqual(res.correlation_id, cid)
        self.assertEqual(res.status, "error", res)
        self.assertEqual(res.error()["error"], "worker_crashed", res)
        self.assertEqual(res.headers.get("taskd-attempt"), 2, res)
        self.assert_alive(d)
        lines = d.log_lines(r"lost while running a task: .*child frame")
        self.assertEqual(len(lines), 2, "\n".join(d.log_lines("lost")))
        self.wait_pool(d, 1, exclude=[first])
        res = self.run_task("sha256", b"after")
        self.assertEqual(res.status, "ok", res)

    def test_protocol_violations_kill_the_worker_and_retry_the_task(self):
        d = self.start_with({"cpu.workers": 1},
                            tasks=[{"name": "flood", "handler": "flood", "retries": 1},
                                   {"name": "sha256", "handler": "sha256"}],
                            plugins=[MISBEHAVE])
        self.wait_pool(d, 1)
        for mode in ("ready", "zero", "huge", "type"):
            since = d.log_size()
            before = set(worker_pids(d.pid))
            res = self.run_task("flood", mode.encode(), timeout=20)
            self.assertEqual(res.status, "error", (mode, res))
            self.assertEqual(res.error()["error"], "worker_crashed", (mode, res))
            self.assertEqual(res.headers.get("taskd-attempt"), 2, (mode, res))
            lost = d.log_lines(r"lost while running a task: sent", since)
            self.assertEqual(len(lost), 2, (mode, lost))
            self.wait_pool(d, 1, exclude=before)
            self.assert_alive(d)
        res = self.run_task("sha256", b"after")
        self.assertEqual(res.status, "ok", res)
