"""Helpers shared by test_reload.py and test_admin.py: the admin API, the
Prometheus text, routing probes and the configs the reload tests swap.

Not a test module (run.py only collects test_*.py)."""

import hashlib
import json
import os
import re
import socket
import time

import fxtest
from fxtest import fetch, free_port

HERE = os.path.dirname(os.path.abspath(__file__))


def sha256_text(text):
    return hashlib.sha256(text.encode()).hexdigest()


def sha256_file(path):
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


_METRIC_RE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")


def parse_metrics(text):
    """{'name{labels}' or 'name': float} from Prometheus text; raises on a malformed line."""
    out = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        m = _METRIC_RE.match(line)
        if not m:
            raise AssertionError(f"malformed metrics line {line!r}")
        out[m.group(1) + (m.group(2) or "")] = float(m.group(3))
    return out


def config_hashes(metrics):
    """The hash labels of every ficus_config_info sample."""
    return [re.fullmatch(r'ficus_config_info\{hash="([^"]*)"\}', k).group(1)
            for k in metrics if k.startswith("ficus_config_info{")]


def connect_refused(port, timeout=1.0):
    """True when a connect to 127.0.0.1:port is refused (nobody listens)."""
    try:
        s = socket.create_connection(("127.0.0.1", port), timeout=timeout)
    except ConnectionRefusedError:
        return True
    s.close()
    return False


def wait_until(fn, timeout, interval=0.02):
    """Polls fn() until it returns a true value; returns it, or None at the timeout."""
    deadline = time.monotonic() + timeout
    while True:
        v = fn()
        if v:
            return v
        if time.monotonic() >= deadline:
            return None
        time.sleep(interval)


class AdminMixin:
    """Admin API calls on gw.admin_port (a fresh connection each)."""

    def admin(self, gw, path, method="GET", port=None, body=None):
        if method == "POST" and body is None:
            body = b""
        return fetch(port or gw.admin_port, method, path, body=body, timeout=10)

    def metrics(self, gw, port=None):
        r = self.admin(gw, "/metrics", port=port)
        self.assertEqual(r.status, 200, repr(r))
        return parse_metrics(r.body.decode())

    def reload_counts(self, gw):
        m = self.metrics(gw)
        return (int(m['ficus_config_reloads_total{result="ok"}']),
                int(m['ficus_config_reloads_total{result="error"}']))

    def running_hash(self, gw):
        hashes = config_hashes(self.metrics(gw))
        self.assertEqual(len(hashes), 1, f"ficus_config_info samples: {hashes}")
        return hashes[0]

    def post_reload(self, gw):
        r = self.admin(gw, "/admin/reload", "POST")
        self.assertEqual(r.header("content-type"), "application/json", repr(r))
        return r, json.loads(r.body)

    def wait_counts(self, gw, ok, err, timeout=5.0, what="reload"):
        """Waits until the reload counters are exactly (ok, err)."""
        seen = []

        def check():
            seen[:] = [self.reload_counts(gw)]
            return seen[0] == (ok, err)

        if not wait_until(check, timeout):
            self.fail(f"{what}: ficus_config_reloads_total (ok, error) is {seen[0]}, expected "
                      f"{(ok, err)} within {timeout}s\n{gw.proc.describe()}")

    # routing probes: a fresh client connection per request
    def probe(self, port, path="/probe"):
        r = fetch(port, "GET", path, timeout=10)
        self.assertEqual(r.status, 200, f"probe {path}: {r!r}")
        return r.body.decode("latin-1")

    def wait_routing(self, port, expect, timeout=2.0, consecutive=3, path="/probe"):
        """Waits until `consecutive` fresh requests in a row answer `expect`
        (with SO_REUSEPORT that covers the workers); returns the seconds it took."""
        t0 = time.monotonic()
        deadline = t0 + timeout
        run = 0
        bodies = []
        while True:
            body = self.probe(port, path)
            bodies.append(body)
            run = run + 1 if body == expect else 0
            if run >= consecutive:
                return time.monotonic() - t0
            if time.monotonic() >= deadline:
                self.fail(f"routing did not follow the reload within {timeout}s: expected {expect!r}, "
                          f"last answers {bodies[-8:]}")
            time.sleep(0.005 if body == expect else 0.02)


def route_config(upstreams, route_to, admin_port, listen=None, workers=2, extra=None):
    """A config with the given upstreams {name: address} and one catch-all
    route `to-NAME` to `route_to`."""
    cfg = {}
    if listen is not None:
        cfg["listen"] = [{"address": a} for a in listen]
    cfg.update({
        "admin": {"address": f"127.0.0.1:{admin_port}"},
        "workers": workers,
        "upstreams": {n: {"targets": [a]} for n, a in upstreams.items()},
        "routes": [{"name": f"to-{route_to}", "match": {"prefix": "/"}, "upstream": route_to}],
        "log": {"access": "off"},
    })
    for k, v in (extra or {}).items():
        cfg[k] = v
    return cfg


def position(text, needle, occurrence=1):
    """(line, col), 1-based, of the n-th occurrence of needle in text."""
    i = -1
    for _ in range(occurrence):
        i = text.index(needle, i + 1)
    line = text.count("\n", 0, i) + 1
    col = i - (text.rfind("\n", 0, i) + 1) + 1
    return line, col


def check_errors(path, cwd=None, env=None):
    """`ficus check -c path`: (exit code, error lines (without the summary), stdout)."""
    import subprocess
    full_env = dict(os.environ)
    full_env.update(fxtest.SANITIZER_ENV)
    full_env.update(env or {})
    p = subprocess.run([fxtest.ficus_bin(), "check", "-c", path], cwd=cwd, env=full_env,
                       capture_output=True, text=True, timeout=30)
    lines = [l for l in p.stderr.splitlines() if ": error: " in l]
    return p.returncode, lines, p.stdout


__all__ = ["sha256_text", "sha256_file", "parse_metrics", "config_hashes", "connect_refused",
           "wait_until", "AdminMixin", "route_config", "position", "check_errors", "free_port", "HERE"]
