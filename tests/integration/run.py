#!/usr/bin/env python3
"""Runs the ficus integration tests.

    python3 tests/integration/run.py --build BUILD_DIR [PATTERN ...]

Sets FICUS_BIN, MONOLITH_BIN and AUTHZ_EMBED_BIN from BUILD_DIR, discovers
test_*.py beside this file and runs them with unittest, one line per test. A
PATTERN selects tests whose id (module.Class.method) contains it, or matches it
as a glob.
The last line printed is exactly `N passed, N failed`; skips count as failed
unless --allow-skips is given. Exit status 1 on any failure.
"""

import argparse
import fnmatch
import os
import sys
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))


class CountingResult(unittest.TextTestResult):
    def __init__(self, *a, **kw):
        super().__init__(*a, **kw)
        self.durations = []
        self._t0 = {}

    def startTest(self, test):
        self._t0[test.id()] = time.monotonic()
        super().startTest(test)

    def stopTest(self, test):
        t0 = self._t0.pop(test.id(), None)
        if t0 is not None:
            self.durations.append((time.monotonic() - t0, test.id()))
        super().stopTest(test)


def select(suite, patterns):
    out = unittest.TestSuite()
    for t in iter_tests(suite):
        tid = t.id()
        if not patterns or any(p in tid or fnmatch.fnmatchcase(tid, p) for p in patterns):
            out.addTest(t)
    return out


def iter_tests(suite):
    for t in suite:
        if isinstance(t, unittest.TestSuite):
            yield from iter_tests(t)
        else:
            yield t


def main():
    ap = argparse.ArgumentParser(description=__doc__.strip().splitlines()[0])
    ap.add_argument("--build", required=True, help="meson build directory")
    ap.add_argument("--allow-skips", action="store_true", help="do not count skipped tests as failed")
    ap.add_argument("--failfast", action="store_true")
    ap.add_argument("patterns", nargs="*")
    args = ap.parse_args()

    build = os.path.abspath(args.build)
    os.environ["FICUS_BIN"] = os.path.join(build, "gateway", "ficus")
    os.environ["MONOLITH_BIN"] = os.path.join(build, "examples", "monolith", "monolith")
    os.environ["AUTHZ_EMBED_BIN"] = os.path.join(build, "examples", "authz_embed", "authz_embed")
    sys.path.insert(0, HERE)

    loader = unittest.TestLoader()
    suite = select(loader.discover(HERE, pattern="test_*.py", top_level_dir=HERE), args.patterns)
    n = suite.countTestCases()
    print(f"ficus integration tests: {n} selected; FICUS_BIN={os.environ['FICUS_BIN']}", flush=True)

    runner = unittest.TextTestRunner(stream=sys.stdout, verbosity=2, resultclass=CountingResult, descriptions=False,
                                     failfast=args.failfast)
    t0 = time.monotonic()
    result = runner.run(suite)
    elapsed = time.monotonic() - t0

    slow = sorted(result.durations, reverse=True)[:8]
    if slow:
        print("slowest:")
        for d, tid in slow:
            print(f"  {d:7.2f}s  {tid}")
    print(f"total {elapsed:.1f}s")

    # a test can fail and then fail again in its cleanup: count tests, not reports
    bad = {t.id() for t, _ in result.failures + result.errors}
    bad |= {t.id() for t in result.unexpectedSuccesses}
    skipped = {t.id() for t, _ in result.skipped} - bad
    passed = max(0, result.testsRun - len(bad) - len(skipped))
    failed = len(bad) + (0 if args.allow_skips else len(skipped))
    # a test file that does not import shows up as an error above
    if n == 0:
        print("no test matched the given patterns")
    print(f"{passed} passed, {failed} failed", flush=True)
    return 1 if failed or n == 0 else 0


if __name__ == "__main__":
    sys.exit(main())
