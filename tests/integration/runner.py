"""Runs taskd's integration tests and ends with "N passed, N failed".

    runner.py DIR [-k PATTERN]... [NAME...]

Without NAMEs it discovers test_*.py in DIR (like `python3 -m unittest
discover -s DIR -p 'test_*.py' -v`); a NAME is a module, class or method
(test_bad_input, test_bad_input.BadInput.test_unknown_task).  -k keeps only
tests whose id contains PATTERN (unittest's own -k semantics).

A test counts once: it failed if it or any of its subtests failed or
errored, was skipped if skipped, passed otherwise.  Errors outside a test
(setUpModule, a module that does not import) count as failed tests.
Exit status 0 only when nothing failed and something ran.
"""

import signal
import sys
import time
import unittest


class CountingResult(unittest.TextTestResult):
    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.outcome = {}      # test id -> "passed" | "failed" | "skipped"

    def _mark(self, test, what):
        tid = test.id()
        if self.outcome.get(tid) == "failed":
            return
        self.outcome[tid] = what

    def addSuccess(self, test):
        super().addSuccess(test)
        self._mark(test, "passed")

    def addFailure(self, test, err):
        super().addFailure(test, err)
        self._mark(test, "failed")

    def addError(self, test, err):
        super().addError(test, err)
        self._mark(test, "failed")

    def addSkip(self, test, reason):
        super().addSkip(test, reason)
        self._mark(test, "skipped")

    def addExpectedFailure(self, test, err):
        super().addExpectedFailure(test, err)
        self._mark(test, "passed")

    def addUnexpectedSuccess(self, test):
        super().addUnexpectedSuccess(test)
        self._mark(test, "failed")

    def addSubTest(self, test, subtest, err):
        super().addSubTest(test, subtest, err)
        if err is not None:
            self.outcome[test.id()] = "failed"


def main(argv):
    if not argv:
        sys.exit(__doc__)
    start_dir, rest = argv[0], argv[1:]
    patterns, names = [], []
    i = 0
    while i < len(rest):
        if rest[i] == "-k" and i + 1 < len(rest):
            patterns.append(rest[i + 1])
            i += 2
        else:
            names.append(rest[i])
            i += 1

    sys.path.insert(0, start_dir)
    loader = unittest.TestLoader()
    if patterns:
        loader.testNamePatterns = ["*%s*" % p if "*" not in p else p for p in patterns]
    if names:
        suite = loader.loadTestsFromNames(names)
    else:
        suite = loader.discover(start_dir, pattern="test_*.py", top_level_dir=start_dir)

    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2,
                                     resultclass=CountingResult)
    # SIGTERM (run-integration's cleanup, a harness timeout) ends the run
    # like ^C; the daemons still running are killed at exit (taskdtest).
    def on_term(signum, frame):
        raise KeyboardInterrupt("signal %d" % signum)
    signal.signal(signal.SIGTERM, on_term)
    t0 = time.monotonic()
    try:
        result = runner.run(suite)
    except KeyboardInterrupt as e:
        print("\ninterrupted (%s)" % (e or "^C"))
        print("0 passed, 1 failed")
        return 130
    sys.stdout.flush()

    # Import errors and class/module fixture errors reach addError as
    # pseudo-tests of their own and count as one failed test each.
    counts = {"passed": 0, "failed": 0, "skipped": 0}
    for what in result.outcome.values():
        counts[what] += 1
    line = "%d passed, %d failed" % (counts["passed"], counts["failed"])
    if counts["skipped"]:
        line += ", %d skipped" % counts["skipped"]
    print("integration tests took %.0f s" % (time.monotonic() - t0))
    print(line)
    ok = counts["failed"] == 0 and counts["passed"] + counts["skipped"] > 0
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
