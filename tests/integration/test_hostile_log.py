"""Log lines cannot be forged by a client (design §6: one line per event).

Every string in a task message is chosen by whoever can publish to the
queue, and some of them reach the log: the reply address of a returned
result, the task name and id of a rejected task.  Under journald each line
carries a priority prefix ("<4>"), so a newline followed by "<0>" in such a
string would forge a line of its own, at emergency priority, and an ESC
sequence would rewrite the terminal of whoever reads the log.

The tests publish messages whose properties hold newlines, forged
prefixes, ESC sequences, C1 controls, invalid UTF-8 and NUL bytes, with
taskd's stderr set up the way journald hands it over (JOURNAL_STREAM
naming the stream), and check every byte of the log: each line is valid
UTF-8 without control characters, starts with exactly one priority prefix
of a level taskd uses, and no line begins with the forged text."""

import os
import re

from taskdtest import TaskdTestCase, new_id

FORGED = b"\n<0>forged by a client"
HOSTILE = [
    FORGED,
    b"\r<0>carriage return",
    b"\x1b[2J\x1b]0;title\x07 escape sequences",
    b"\xc2\x9b31m C1 control",
    b"\xff\xfe\xc3 invalid utf-8",
    b"nul\x00byte",
    b"back\\slash\\x0a",
    b"\x7f delete",
]

# What taskd's own prefixes look like: sd-daemon err, warning, info, debug.
JOURNAL_LINE = re.compile(rb"^<[3467]>[^<\x00-\x1f\x7f]")
PLAIN_LINE = re.compile(rb"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d\.\d{3} taskd\[\d+\]: "
                        rb"(error|warn|info|debug): ")
CONTROL = re.compile(rb"[\x00-\x1f\x7f]|\xc2[\x80-\x9f]")


class HostileLog(TaskdTestCase):
    def start_daemon(self, journal):
        d = self.taskd({"log.level": "debug"}, start=False)
        # taskd's stderr is this file; JOURNAL_STREAM names it as journald
        # names the stream it gives a service, so taskd writes prefixes.
        open(d.log_path, "ab").close()
        st = os.stat(d.log_path)
        env = {"JOURNAL_STREAM": "%d:%d" % (st.st_dev, st.st_ino)} if journal else {}
        d.start(env=env)
        return d

    def publish_hostile(self):
        """Messages with hostile properties; returns the correlation ids
        of those that get a result in this test's reply queue."""
        answered = []
        for i, evil in enumerate(HOSTILE):
            # A reply address with no queue: the broker returns the result
            # and taskd logs the address.
            self.publish(b"x", task="echo", reply_to=b"nowhere." + evil,
                         correlation_id=new_id())
            # An unknown task name, a message id, a content type and a
            # correlation id, all hostile: answered "rejected" and logged.
            cid = b"cid-%d-" % i + evil
            self.publish(b"y", task=b"no-such-task" + evil, message_id=b"mid" + evil,
                         correlation_id=cid, content_type=b"text/" + evil)
            answered.append(cid)
            # A known task with hostile ids: answered "ok".
            cid = b"ok-%d-" % i + evil
            self.publish(b"z", task="echo", message_id=b"mid-ok" + evil,
                         correlation_id=cid, content_type=b"text/" + evil,
                         headers={"task": evil.decode("latin-1")})
            answered.append(cid)
        return answered

    def check_log(self, d, journal):
        with open(d.log_path, "rb") as f:
            raw = f.read()
        self.assertTrue(raw.endswith(b"\n"), "the log does not end with a newline")
        lines = raw[:-1].split(b"\n")
        pattern = JOURNAL_LINE if journal else PLAIN_LINE
        bad = []
        for ln in lines:
            problems = []
            if not pattern.match(ln):
                problems.append("no taskd prefix")
            if CONTROL.search(ln):
                problems.append("a control character")
            try:
                ln.decode("utf-8")
            except UnicodeDecodeError:
                problems.append("invalid UTF-8")
            if re.match(rb"^(<[0-7]>)?forged", ln):
                problems.append("a forged line")
            if problems:
                bad.append("%s: %r" % (", ".join(problems), ln[:200]))
        self.assertEqual(bad, [], "log lines a client shaped:\n" + "\n".join(bad[:20]))
        return lines

    def run_case(self, journal):
        d = self.start_daemon(journal)
        answered = self.publish_hostile()
        got = self.collect(len(answered), timeout=30)
        # pika hands back a short string as str when it is UTF-8.
        cids = sorted(c if isinstance(c, bytes) else c.encode("utf-8")
                      for c in (r.props.correlation_id for r in got))
        self.assertEqual(cids, sorted(answered), "one result per task, ids byte for byte")
        # Every returned result is logged (taskd counts and logs each).
        self.wait_for("all the returns logged", lambda: len(
            d.log_lines(r"returned by the broker")) >= len(HOSTILE), 15)
        self.wait_for("every task settled",
                      lambda: self.queue_stats(self.queue)[:2] == (0, 0), 15)
        d.stop()
        lines = self.check_log(d, journal)
        returns = [ln for ln in lines if b"returned by the broker" in ln]
        self.assertEqual(len(returns), len(HOSTILE), b"\n".join(returns))
        # The forged text is there, escaped, inside a warning.
        forged = [ln for ln in returns if b"nowhere.\\x0a<0>forged by a client" in ln]
        self.assertEqual(len(forged), 1, "the hostile reply address, escaped as \\x0a:\n%s"
                         % b"\n".join(returns).decode("utf-8", "replace"))
        if journal:
            self.assertTrue(forged[0].startswith(b"<4>"), forged[0])
        # A backslash from the client is doubled, so an escape in the log
        # always means a byte the client sent, never the text "\x0a".
        self.assertTrue([ln for ln in returns if b"back\\\\slash\\\\x0a" in ln],
                        b"\n".join(returns))

    def test_journal_lines_cannot_be_forged(self):
        self.run_case(journal=True)

    def test_plain_lines_cannot_be_forged(self):
        self.run_case(journal=False)
