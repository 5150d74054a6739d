"""The command line: `ficus version`, `ficus check -c FILE`."""

import os
import re
import subprocess

import fxtest

VALID = """\
listen:
  - address: "127.0.0.1:18080"
workers: 1
upstreams:
  monolith:
    targets: ["127.0.0.1:18000"]
  documents:
    targets: ["127.0.0.1:18101", "127.0.0.1:18102"]
routes:
  - name: documents-read
    match: { path: "/api/documents/{id}", methods: [GET, HEAD] }
    upstream: documents
  - name: health
    match: { path: "/healthz" }
    upstream: monolith
  - name: everything-else
    match: { prefix: "/" }
    upstream: monolith
"""

# line 2: unknown top-level key; line 9: unknown upstream name
INVALID = """\
listen: [{ address: "127.0.0.1:18080" }]
bogus_key: 1
upstreams:
  monolith:
    targets: ["127.0.0.1:18000"]
routes:
  - name: all
    match: { prefix: "/" }
    upstream: nowhere
"""


def project_version():
    with open(os.path.join(fxtest.REPO, "meson.build")) as f:
        m = re.search(r"version\s*:\s*'([^']+)'", f.read())
    return m.group(1)


class CliTest(fxtest.FxTestCase):
    def ficus(self, *args):
        return subprocess.run([fxtest.ficus_bin(), *args], capture_output=True, text=True, timeout=30,
                              env={**os.environ, **fxtest.SANITIZER_ENV}, cwd=self.tmp)

    def write(self, name, text):
        path = os.path.join(self.tmp, name)
        with open(path, "w") as f:
            f.write(text)
        return path

    def assertClean(self, p):
        report = fxtest.sanitizer_report(p.stderr)
        self.assertIsNone(report, report)

    def test_version(self):
        p = self.ficus("version")
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertClean(p)
        out = p.stdout
        self.assertIn(project_version(), out)
        for lib in ("libevent", "llhttp", "OpenSSL", "libyaml", "librdkafka"):
            self.assertRegex(out, rf"(?i){lib}\D{{0,20}}\d+\.\d+", f"no {lib} version in:\n{out}")

    def test_check_valid(self):
        path = self.write("ok.yaml", VALID)
        p = self.ficus("check", "-c", path)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        self.assertClean(p)
        self.assertRegex(p.stdout + p.stderr, r"(?i)\b3\s+routes?\b|routes?\W{0,3}3\b",
                         "summary does not give the route count")

    def test_check_invalid(self):
        path = self.write("bad.yaml", INVALID)
        p = self.ficus("check", "-c", path)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertClean(p)
        out = p.stdout + p.stderr
        errors = re.findall(rf"^{re.escape(path)}:(\d+):(\d+): error: (.+)$", out, re.M)
        self.assertTrue(errors, f"no FILE:LINE:COL: error: lines in:\n{out}")
        lines = {int(l) for l, _, _ in errors}
        self.assertIn(2, lines, f"unknown key on line 2 not reported:\n{out}")
        self.assertIn(9, lines, f"unknown upstream on line 9 not reported:\n{out}")
        self.assertTrue(any("bogus_key" in m for _, _, m in errors), out)
        self.assertTrue(any("nowhere" in m for _, _, m in errors), out)

    def test_check_missing_file(self):
        p = self.ficus("check", "-c", os.path.join(self.tmp, "absent.yaml"))
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn("absent.yaml", p.stdout + p.stderr)
