"""SIGHUP reloads the config file (design §3).

A valid new file is swapped in whole: new tasks are served, the log level
and limits change in place, tasks in flight finish unharmed, changed broker
settings make a clean reconnect.  A broken file is refused with its
file:line message and the old config stays in force.  broker.password_file
is read at start and again on every reload.
"""

import os
import signal

from taskdtest import TaskdTestCase, broker_uri, new_id

ECHO = {"name": "echo", "handler": "echo"}
SLEEP = {"name": "sleep", "handler": "sleep"}


class Reload(TaskdTestCase):

    def reload(self, d, since=None):
        """SIGHUP, and wait for the verdict line; returns it."""
        since = d.log_size() if since is None else since
        d.proc.send_signal(signal.SIGHUP)
        return d.wait_log(r"configuration reloaded|reload refused", 10, since)

    def test_new_task_served_after_reload(self):
        d = self.taskd(tasks=[SLEEP])
        res = self.run_task("echo", b"x")
        self.assert_rejected(res, "unknown_task")

        d.conf["tasks"] = [SLEEP, ECHO]
        d.write_config()
        line = self.reload(d)
        self.assertIn("configuration reloaded: 2 tasks", line)
        res = self.run_task("echo", b"after reload")
        self.assert_result(res, "echo", correlation_id=res.correlation_id, daemon=d)
        self.assertEqual(res.body, b"after reload")
        self.assert_alive(d)

    def test_broken_file_refused_old_config_stays(self):
        d = self.taskd(tasks=[ECHO])
        good = open(d.conf_path).read()
        # A valid file with one bad value on a known line.
        lines = good.splitlines()
        lines.append("io = { max_concurrency = 0; };")
        bad_line = len(lines)
        with open(d.conf_path, "w") as f:
            f.write("\n".join(lines) + "\n")
        since = d.log_size()
        line = self.reload(d, since)
        self.assertIn("reload refused", line)
        want = "%s:%d: io.max_concurrency: must be from 1" % (d.conf_path, bad_line)
        problems = [ln for ln in d.log_lines(r"error: ", since) if want in ln]
        self.assertTrue(problems, "no '%s...' message%s" % (want, self.daemon_logs()))
        self.assert_alive(d)
        res = self.run_task("echo", b"still here")
        self.assertEqual(res.status, "ok")
        self.assertEqual(res.body, b"still here")

    def test_syntax_error_refused_with_line(self):
        d = self.taskd(tasks=[ECHO])
        with open(d.conf_path, "a") as f:
            f.write("\nlog = { level = ; };\n")
        n = sum(1 for _ in open(d.conf_path))
        since = d.log_size()
        self.assertIn("reload refused", self.reload(d, since))
        self.assertTrue(d.log_lines(r"%s:%d: " % (d.conf_path.replace(".", r"\."), n), since),
                        "no %s:%d: message%s" % (d.conf_path, n, self.daemon_logs()))
        self.assertEqual(self.run_task("echo", b"ok").status, "ok")

    def test_in_flight_tasks_finish_across_reload(self):
        d = self.taskd(tasks=[SLEEP, ECHO])
        ids = [new_id() for _ in range(5)]
        # Long enough that rabbitmqctl (a second or more on a busy machine)
        # sees them running.
        for cid in ids:
            self.publish(b"4000", task="sleep", correlation_id=cid)
        self.wait_for("5 tasks running (unacked)",
                      lambda: (self.queue_stats(self.queue) or (0, 0, 0))[1] == 5, 10)
        # A new table without "sleep": the running ones keep their handler.
        d.conf["tasks"] = [ECHO]
        d.conf["log"] = {"level": "debug"}
        d.write_config()
        self.assertIn("configuration reloaded", self.reload(d))
        got = self.collect_ids(ids, 20)
        for r in got:
            self.assertEqual(r.status, "ok", r)
            self.assertEqual(r.body, b"4000")
        # The new table is in force for new tasks.
        self.assert_rejected(self.run_task("sleep", b"1"), "unknown_task")

    def test_log_level_changes_in_place(self):
        d = self.taskd(tasks=[ECHO])
        good = open(d.conf_path).read()
        d.conf["log"] = {"level": "warn"}
        d.write_config()
        d.proc.send_signal(signal.SIGHUP)
        # At "warn" the verdict (info) is not logged any more.  The reload
        # runs in the loop callback that logged "reloading"; a task answered
        # after that line proves the loop has moved past it.
        d.wait_log(r"info: reloading", 5, 0)
        self.assertEqual(self.run_task("echo", b"w").status, "ok")
        # Then a bad file: a refused reload logs errors but no info line.
        with open(d.conf_path, "a") as f:
            f.write("io = { max_concurrency = 0; };\n")
        since = d.log_size()
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"reload refused", 10, since)
        self.assertEqual(d.log_lines(r"info: ", since), [],
                         "info lines at log.level warn" + self.daemon_logs())
        # Back to info.
        with open(d.conf_path, "w") as f:
            f.write(good)
        since = d.log_size()
        d.proc.send_signal(signal.SIGHUP)
        d.wait_log(r"info: configuration reloaded", 10, since)
        self.assertEqual(self.run_task("echo", b"x").status, "ok")

    def test_changed_broker_settings_reconnect(self):
        d = self.taskd(tasks=[ECHO])
        # Tasks answered just before the reload: the reconnect waits for
        # their results' confirms and sends their acks first, so none of
        # them comes back to be answered again.
        ids = [new_id() for _ in range(200)]
        for cid in ids:
            self.publish(b"e", task="echo", correlation_id=cid)
        got = self.collect_ids(ids, 20)
        since = d.log_size()
        d.conf["broker"]["heartbeat"] = 10
        d.write_config()
        self.reload(d, since)
        d.wait_log(r"connected to .*heartbeat 10 s", 15, since)
        d.wait_consuming(1, 15)
        self.assertEqual(self.run_task("echo", b"y").body, b"y")
        got += self.more_results(1.0)
        again = [r.correlation_id for r in got if r.correlation_id in ids]
        self.assertEqual(len(again), len(ids), "tasks answered twice across the reload")
        # Unchanged broker settings: no reconnect.
        since = d.log_size()
        d.conf["limits"]["timeout"] = 30.0
        d.write_config()
        self.reload(d, since)
        self.assertEqual(self.run_task("echo", b"z").body, b"z")
        self.assertEqual(d.log_lines(r"connected to|connection lost", since), [])

    def switch_with_tasks_running(self, d, n, ms):
        """Publishes n sleep(ms) tasks, waits until they run, then reloads
        with a changed broker.heartbeat (10 s), which makes taskd reconnect
        once they are done.  Returns their ids and the log offset from
        before the reload."""
        ids = [new_id() for _ in range(n)]
        for cid in ids:
            self.publish(str(ms).encode(), task="sleep", correlation_id=cid)
        self.wait_running(n, 10)
        since = d.log_size()
        d.conf["broker"]["heartbeat"] = 10
        d.write_config()
        self.reload(d, since)
        return ids, since

    def test_broker_change_lets_tasks_in_flight_finish(self):
        """New broker settings with tasks running: the consumer is
        cancelled, the running tasks finish and are answered once (first
        attempt), and only then does taskd reconnect and consume again."""
        d = self.taskd({"shutdown.grace": 20.0}, tasks=[SLEEP, ECHO])
        ids, since = self.switch_with_tasks_running(d, 4, 5000)
        d.wait_log(r"reconnecting once 4 tasks in flight finish", 5, since)
        got = self.collect_ids(ids, 25)
        d.wait_log(r"connected to .*heartbeat 10 s", 15, since)
        d.wait_consuming(1, 15)
        self.assertEqual(self.run_task("echo", b"after").body, b"after")
        got += self.more_results(0.5)
        answers = [r for r in got if r.correlation_id in ids]
        self.assertEqual(len(answers), len(ids), "a task answered twice: %r" % answers)
        for r in answers:
            self.assertEqual(r.status, "ok", r)
            self.assertEqual(r.headers.get("taskd-attempt"), 1, r)
        self.assertEqual(d.log_lines(r"grace period", since), [])

    def test_broker_change_grace_over_requeues(self):
        """A task that outlasts shutdown.grace before the reconnect goes
        back to the queue and runs again on the new connection: answered
        once, never lost."""
        d = self.taskd({"shutdown.grace": 0.5}, tasks=[SLEEP, ECHO])
        (cid,), since = self.switch_with_tasks_running(d, 1, 6000)
        d.wait_log(r"grace period before the reconnect over: 1 tasks", 5, since)
        d.wait_log(r"connected to .*heartbeat 10 s", 15, since)
        got = self.collect_ids([cid], 30)
        got += self.more_results(0.5)
        self.assertEqual([r.correlation_id for r in got], [cid])
        self.assertEqual(got[0].status, "ok", got[0])

    def test_settings_put_back_during_broker_switch(self):
        """A second reload restores the old broker settings while the first
        waits for its tasks: the consumer was cancelled all the same, so
        taskd still reconnects and consumes again."""
        d = self.taskd({"shutdown.grace": 20.0}, tasks=[SLEEP, ECHO])
        (cid,), since = self.switch_with_tasks_running(d, 1, 3000)
        d.wait_log(r"reconnecting once 1 tasks in flight finish", 5, since)
        d.conf["broker"]["heartbeat"] = 30
        d.write_config()
        self.reload(d, d.log_size())
        got = self.collect_ids([cid], 10)
        self.assertEqual(got[0].status, "ok", got[0])
        d.wait_log(r"connected to .*heartbeat 30 s", 15, since)
        d.wait_consuming(1, 15)
        self.assertEqual(self.run_task("echo", b"still consuming").body, b"still consuming")

    def test_stop_during_broker_switch(self):
        """SIGTERM while a reload waits for tasks before reconnecting: the
        stop takes over (no reconnect), the task is answered, exit 0."""
        d = self.taskd({"shutdown.grace": 20.0}, tasks=[SLEEP, ECHO])
        (cid,), since = self.switch_with_tasks_running(d, 1, 3000)
        d.wait_log(r"reconnecting once 1 tasks in flight finish", 5, since)
        d.stop(expect=0)
        got = self.collect_ids([cid], 10)
        self.assertEqual(got[0].status, "ok", got[0])
        self.assertEqual(d.log_lines(r"connected to ", since), [])
        self.assertEqual(self.queue_stats(self.queue)[:2], (0, 0))

    def test_password_file_read_at_start_and_on_reload(self):
        # The URI's own password is wrong: only the file's can log in.
        pw = os.path.join(self.workdir, "broker-password")
        with open(pw, "w") as f:
            f.write("guest\n")
        os.chmod(pw, 0o600)
        uri = broker_uri().replace("guest:guest@", "guest:not-the-password@")
        d = self.taskd({"broker.uri": uri, "broker.password_file": pw}, tasks=[ECHO])
        self.assertEqual(self.run_task("echo", b"a").body, b"a")

        # A wrong password in the file: the reload reconnects and fails.
        with open(pw, "w") as f:
            f.write("wrong\n")
        since = d.log_size()
        self.reload(d, since)
        d.wait_log(r"cannot reach the broker: .*(ACCESS_REFUSED|refused|login|auth)", 15, since)
        self.assert_alive(d)

        # Fixed again: consuming again without a restart.
        with open(pw, "w") as f:
            f.write("guest\n")
        since = d.log_size()
        self.reload(d, since)
        d.wait_log(r"connected to ", 20, since)
        self.assertEqual(self.run_task("echo", b"b").body, b"b")
