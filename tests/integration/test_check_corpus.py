"""`ficus check -c FILE` on the config corpus (issue 3), through the CLI:
every tests/data/config/invalid/*.yaml exits 1 with its .expect line first
on stderr (a longer .expect: all the errors, as in the unit suite); every valid example (and config/ficus.yaml) exits 0 with the
summary line. The unit suite checks the loader; this checks the command."""

import concurrent.futures
import glob
import hashlib
import os
import re
import subprocess

import shutil
import tempfile

import fxtest
import tlskit

DATA = os.path.join(fxtest.REPO, "tests", "data")


def scratch_data():
    """A copy of tests/data/config where the TLS placeholders of deploy/config/tls are real,
    freshly made key/certificate pairs (keys are never committed; the loader now really loads
    them). Same relative layout, so every path in the corpus and its .expect files holds."""
    root = tempfile.mkdtemp(prefix="fx-check-corpus-")
    shutil.copytree(os.path.join(DATA, "config"), os.path.join(root, "config"), symlinks=True)
    tls = os.path.join(root, "config", "deploy", "config", "tls")
    certs = tlskit.CertFactory(os.path.join(root, "ca"))
    for name in ("server", "api", "client"):
        certs.server(name, dns=(name + ".test",)).write_to(os.path.join(tls, name + ".pem"),
                                                           os.path.join(tls, name + ".key"))
    shutil.copyfile(certs.ca, os.path.join(tls, "ca.pem"))
    return root
# the environment the corpus is written for (the same as tests/unit/test_config.c main()):
# valid configs expand ${FICUS_TEST_MONOLITH} and an HS256 secret; invalid ones rely on
# unset variables staying unset and on a secret that is too short
ENV_SET = {"FICUS_TEST_MONOLITH": "127.0.0.1:8000",
           "FICUS_TEST_HS_SECRET": "0123456789abcdef0123456789abcdef",
           "FICUS_TEST_WEAK_SECRET": "too short"}
ENV_UNSET = ("FICUS_TEST_SURELY_UNSET", "FICUS_TEST_UNSET_SECRET")


def run_check(rel, cwd):
    env = dict(os.environ)
    env.update(fxtest.SANITIZER_ENV)
    env.update(ENV_SET)
    for k in ENV_UNSET:
        env.pop(k, None)
    p = subprocess.run([fxtest.ficus_bin(), "check", "-c", rel], cwd=cwd, env=env,
                       capture_output=True, timeout=60)
    return p.returncode, p.stdout.decode("utf-8", "replace"), p.stderr.decode("utf-8", "replace")


def run_all(rels, cwd):
    with concurrent.futures.ThreadPoolExecutor(4) as ex:
        return dict(zip(rels, ex.map(lambda r: run_check(r, cwd), rels)))


def summary_re(rel):
    return re.compile(re.escape(rel) + r": ok: (\d+) listeners?, (\d+) upstreams?, (\d+) routes?, "
                      r"(?:\d+) polic(?:y|ies) \(sha256 ([0-9a-f]{12})\)")


def config_sha12(path, policy_files):
    """The hash `ficus check` prints for a config that loads `policy_files`: the config's bytes,
    then each policy file's base name, a NUL and its bytes (gateway/config.c, config_hash)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        h.update(f.read())
    for p in policy_files:
        h.update(os.path.basename(p).encode() + b"\0")
        with open(p, "rb") as f:
            h.update(f.read())
    return h.hexdigest()[:12]


def sha12(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()[:12]


class CheckCorpusTest(fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.data = scratch_data()
        self.addCleanup(shutil.rmtree, self.data, True)

    def test_invalid_corpus(self):
        rels = sorted(os.path.relpath(p, DATA) for p in glob.glob(os.path.join(DATA, "config", "invalid", "*.yaml")))
        self.assertGreaterEqual(len(rels), 30, "the invalid corpus has fewer than 30 configs")
        results = run_all(rels, self.data)
        for rel in rels:
            with self.subTest(config=rel):
                expect_path = os.path.join(DATA, rel[:-len(".yaml")] + ".expect")
                self.assertTrue(os.path.exists(expect_path), f"{rel} has no .expect file")
                with open(expect_path, encoding="utf-8") as f:
                    expect = f.read().splitlines()
                self.assertTrue(expect, f"{expect_path} is empty")
                rc, out, err = results[rel]
                self.assertIsNone(fxtest.sanitizer_report(err), err)
                lines = err.splitlines()
                self.assertEqual(rc, 1, f"{rel}: exit {rc}\nstderr:\n{err}")
                self.assertTrue(lines, f"{rel}: nothing on stderr")
                # as in the unit suite: a one-line .expect is the first error, a longer one all of them
                self.assertEqual(lines[:len(expect)], expect, f"{rel}: first stderr line(s)")
                self.assertRegex(lines[-1], "^" + re.escape(rel) + r": [1-9]\d* errors?$", rel)
                n = int(lines[-1].rsplit(": ", 1)[1].split()[0])
                errors = [l for l in lines[:-1] if l.startswith(rel + ":")]
                self.assertEqual(len(errors), n, f"{rel}: summary says {n} errors; stderr:\n{err}")
                if len(expect) > 1:
                    self.assertEqual(n, len(expect), f"{rel}: {expect_path} lists every error; stderr:\n{err}")
                for l in errors:
                    self.assertRegex(l, "^" + re.escape(rel) + r":(\d+:\d+:)? error: \S", rel)
                self.assertEqual(out, "", f"{rel}: stdout on an invalid config")

    def test_valid_examples(self):
        rels = sorted(os.path.relpath(p, DATA) for p in glob.glob(os.path.join(DATA, "config", "valid", "*.yaml")))
        self.assertGreater(len(rels), 0)
        results = run_all(rels, self.data)
        for rel in rels:
            with self.subTest(config=rel):
                rc, out, err = results[rel]
                self.assertIsNone(fxtest.sanitizer_report(err), err)
                self.assertEqual(rc, 0, f"{rel}: exit {rc}\nstderr:\n{err}")
                self.assertNotIn("error:", err, rel)
                lines = out.splitlines()
                self.assertEqual(len(lines), 1, f"{rel}: stdout {out!r}")
                m = summary_re(rel).fullmatch(lines[0])
                self.assertTrue(m, f"{rel}: summary line {lines[0]!r}")
                self.assertEqual(m.group(4), sha12(os.path.join(DATA, rel)), rel)
                self.assertGreater(int(m.group(1)), 0, rel)
                self.assertGreater(int(m.group(3)), 0, rel)

    def test_example_deployment_config(self):
        rel = os.path.join("config", "ficus.yaml")
        rc, out, err = run_check(rel, fxtest.REPO)
        self.assertIsNone(fxtest.sanitizer_report(err), err)
        self.assertEqual(rc, 0, f"exit {rc}\nstderr:\n{err}")
        m = summary_re(rel).fullmatch(out.rstrip("\n"))
        self.assertTrue(m, f"summary line {out!r}")
        # the counts, from the file itself (block style: list items / keys at two spaces)
        counts = {"listen": 0, "upstreams": 0, "routes": 0}
        section = None
        with open(os.path.join(fxtest.REPO, rel)) as f:
            for line in f:
                if re.match(r"^[a-z_]+:", line):
                    section = line.split(":")[0]
                elif section in ("listen", "routes") and re.match(r"^  - ", line):
                    counts[section] += 1
                elif section == "upstreams" and re.match(r"^  [A-Za-z0-9_-]+:", line):
                    counts[section] += 1
        self.assertEqual([int(m.group(i)) for i in (1, 2, 3)],
                         [counts["listen"], counts["upstreams"], counts["routes"]], out)
        self.assertEqual(m.group(4), config_sha12(os.path.join(fxtest.REPO, rel),
                                                  sorted(glob.glob(os.path.join(fxtest.REPO, "policies", "*.yaml")))))
