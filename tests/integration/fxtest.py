"""fxtest — the harness for ficus integration tests.

Everything a test needs to drive real processes on loopback ports chosen at
run time, and to stop them again whatever happens:

  free_port()             a port nobody listens on (bind :0, read, close)
  Proc                    a child process: output to files in the test's temp
                          dir, bounded readiness poll, SIGTERM -> SIGKILL stop
  Gateway / Monolith      the ficus daemon (sanitizer reports fail the test)
                          and the example monolith
  Nginx                   nginx with a generated conf in a temp prefix
  RecordingUpstream       in-process upstreams on threads, for tests that
  AnsweringUpstream       (a subclass answers one request: status, headers, body)
  SinkUpstream            need control over raw bytes: record requests,
  BulkUpstream            swallow or send huge bodies, echo WebSocket
  WebSocketEchoUpstream   frames, or misbehave on purpose
  ScriptedUpstream
  RawClient               a socket client that sends exact bytes and reads
                          exact HTTP/1.1 responses (CL, chunked, close)
  FxTestCase              unittest.TestCase with a temp dir and factories that
                          register every stop with addCleanup
  DevBroker               `ficus devbroker` (librdkafka mock cluster): .bootstrap,
                          .command(line) over its stdin, down()/up()
  kcat_produce            produce, consume and read metadata with kcat; consumed
  kcat_consume            messages as dicts (key, value bytes, partition, offset,
  kcat_metadata           headers)

Binaries come from $FICUS_BIN and $MONOLITH_BIN (run.py sets both).
"""

import base64
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(os.path.dirname(HERE))

SANITIZER_MARKERS = ("ERROR: AddressSanitizer", "runtime error:", "LeakSanitizer")
SANITIZER_ENV = {
    "ASAN_OPTIONS": "abort_on_error=0:detect_leaks=1:quarantine_size_mb=16:malloc_context_size=20",
    "UBSAN_OPTIONS": "print_stacktrace=1",
}

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ficus_bin():
    return os.environ.get("FICUS_BIN", os.path.join(REPO, "build", "gateway", "ficus"))


def monolith_bin():
    return os.environ.get("MONOLITH_BIN", os.path.join(REPO, "build", "examples", "monolith", "monolith"))


def free_port():
    """A loopback TCP port that was free a moment ago."""
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
    finally:
        s.close()


def wait_for_port(port, timeout, host="127.0.0.1", alive=None):
    """Polls until a TCP connect succeeds; False on timeout or when alive() says the owner died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if alive is not None and not alive():
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.02)
    return False


def tail(text, lines=40):
    return "\n".join(text.splitlines()[-lines:])


def read_text(path):
    try:
        with open(path, "r", encoding="utf-8", errors="replace") as f:
            return f.read()
    except FileNotFoundError:
        return ""


def rss_kib(pid):
    """VmRSS of a process in KiB (None when it is gone)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError):
        return None
    return None


class RssSampler:
    """Samples a process's VmRSS on a thread; .max_kib is the highest seen."""

    def __init__(self, pid, interval=0.02):
        self.pid = pid
        self.interval = interval
        self.max_kib = rss_kib(pid) or 0
        self.samples = 0
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)
        self._t.start()

    def _run(self):
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self):
        v = rss_kib(self.pid)
        if v is not None:
            self.samples += 1
            self.max_kib = max(self.max_kib, v)
        return v

    def stop(self):
        self._stop.set()
        self._t.join(2)
        self.sample()
        return self.max_kib


def measure(name, value):
    """Prints a measured number so the runner's output carries it."""
    print(f"    [measure] {name}: {value}", flush=True)


# --------------------------------------------------------------------------
# YAML emitter (block style; enough for ficus.yaml)

_PLAIN_RE = re.compile(r"[A-Za-z0-9_./@-][A-Za-z0-9_./@+-]*")
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "~", "y", "n"}


def _yaml_scalar(v):
    if v is True:
        return "true"
    if v is False:
        return "false"
    if v is None:
        return "null"
    if isinstance(v, (int, float)):
        return str(v)
    s = str(v)
    if _PLAIN_RE.fullmatch(s) and s.lower() not in _YAML_WORDS:
        return s
    return json.dumps(s)


def _yaml_inline(v):
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_yaml_inline(x)}" for k, x in v.items()) + "}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_yaml_inline(x) for x in v) + "]"
    return _yaml_scalar(v)


def _yaml_block(obj, ind, out):
    pad = "  " * ind
    if isinstance(obj, dict):
        for k, v in obj.items():
            if isinstance(v, dict) and v:
                out.append(f"{pad}{k}:")
                _yaml_block(v, ind + 1, out)
            elif isinstance(v, (list, tuple)) and v and any(isinstance(x, dict) for x in v):
                out.append(f"{pad}{k}:")
                _yaml_block(v, ind + 1, out)
            else:
                out.append(f"{pad}{k}: {_yaml_inline(v)}")
    else:
        for item in obj:
            if isinstance(item, dict) and item:
                sub = []
                _yaml_block(item, ind + 1, sub)
                sub[0] = pad + "- " + sub[0][len(pad) + 2:]
                out.extend(sub)
            else:
                out.append(f"{pad}- {_yaml_inline(item)}")


def to_yaml(obj):
    out = []
    _yaml_block(obj, 0, out)
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# processes


class Proc:
    """A child process whose stdout/stderr go to files in `workdir`.

    The owner must call stop() (FxTestCase factories register it with
    addCleanup right after the spawn, before readiness is awaited)."""

    def __init__(self, argv, workdir, name, env=None, cwd=None):
        self.argv = [str(a) for a in argv]
        self.name = name
        self.workdir = workdir
        self.stdout_path = os.path.join(workdir, f"{name}.stdout")
        self.stderr_path = os.path.join(workdir, f"{name}.stderr")
        full_env = dict(os.environ)
        if env:
            full_env.update(env)
        if not os.path.exists(self.argv[0]):
            raise AssertionError(f"{name}: binary {self.argv[0]} does not exist (build it first)")
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.DEVNULL, stdout=self._out,
                                      stderr=self._err, env=full_env, cwd=cwd or workdir)
        self.pid = self.popen.pid
        self.stopped = False
        self.returncode = None
        self.killed = False

    def alive(self):
        return self.popen.poll() is None

    def stdout(self):
        return read_text(self.stdout_path)

    def stderr(self):
        return read_text(self.stderr_path)

    def describe(self, lines=30):
        rc = self.popen.poll()
        state = "running" if rc is None else f"exited with {rc}"
        return (f"{self.name} ({' '.join(self.argv)}) {state}\n"
                f"--- {self.name} stderr (tail) ---\n{tail(self.stderr(), lines)}\n"
                f"--- {self.name} stdout (tail) ---\n{tail(self.stdout(), 10)}")

    def wait_ready(self, port, timeout=10.0):
        if not wait_for_port(port, timeout, alive=self.alive):
            raise AssertionError(f"{self.name} did not accept connections on 127.0.0.1:{port} "
                                 f"within {timeout}s\n{self.describe()}")

    def send_signal(self, sig):
        if self.alive():
            self.popen.send_signal(sig)

    def wait(self, timeout):
        """Waits for exit; returns the exit code or None on timeout."""
        try:
            return self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def stop(self, grace=5.0):
        """SIGTERM, wait up to `grace` s, then SIGKILL. Idempotent; returns the exit code."""
        if self.stopped:
            return self.returncode
        self.stopped = True
        if self.popen.poll() is None:
            try:
                self.popen.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
            try:
                self.popen.wait(grace)
            except subprocess.TimeoutExpired:
                self.killed = True
                self.popen.kill()
                self.popen.wait(5)
        self.returncode = self.popen.returncode
        self._out.close()
        self._err.close()
        return self.returncode


def sanitizer_report(text):
    """The first sanitizer report in a stderr text, or None."""
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if any(m in line for m in SANITIZER_MARKERS):
            return "\n".join(lines[max(0, i - 2):i + 40])
    return None


class Gateway:
    """`ficus serve -c ficus.yaml` with a config from a dict or YAML text.

    A dict without `listen` gets a free loopback port; dict configs also get
    `limits.drain_timeout: 2s` unless they set one, so stopping is quick.
    `args` are extra command-line arguments (e.g. ["--watch"]).
    On stop the gateway's stderr is scanned for sanitizer reports and the
    test fails if one is found.

    Reload helpers: write_config() replaces the config file (the same
    defaults as above; dicts without `listen` keep the first listen address),
    admin_port is the port of `admin.address` of the starting config (dict
    configs; a test that moves the admin listener updates it), sighup()."""

    def __init__(self, test, config, workdir, name="ficus", ready=True, wait_ready_s=15.0, args=None):
        self.test = test
        self.workdir = workdir
        if isinstance(config, dict):
            config = json.loads(json.dumps(config))  # private deep copy
            if "listen" not in config:
                config["listen"] = [{"address": f"127.0.0.1:{free_port()}"}]
            config.setdefault("limits", {}).setdefault("drain_timeout", "2s")
            self.config = config
            text = to_yaml(config)
            m = re.fullmatch(r"127\.0\.0\.1:(\d+)", str(config["listen"][0].get("address", "")))
        else:
            self.config = None
            text = config
            m = None
        if not m:  # YAML text (or a listen that is not 127.0.0.1:PORT): the first address in it
            m = re.search(r"address:\s*\"?127\.0\.0\.1:(\d+)", text)
        if not m:
            raise AssertionError("gateway config has no 127.0.0.1:PORT listen address")
        self.port = int(m.group(1))
        self.address = f"127.0.0.1:{self.port}"
        self.admin_port = self._admin_port(self.config)
        self.config_path = os.path.join(workdir, f"{name}.yaml")
        with open(self.config_path, "w") as f:
            f.write(text)
        self.expect_exit = False
        self.proc = Proc([ficus_bin(), "serve", "-c", self.config_path] + list(args or []), workdir,
                         name, env=SANITIZER_ENV)
        test.addCleanup(self.stop)
        if ready:
            try:
                self.proc.wait_ready(self.port, wait_ready_s)
                if self.admin_port:
                    # the admin listener opens on the main thread just after the workers'
                    self.proc.wait_ready(self.admin_port, wait_ready_s)
            except AssertionError:
                self.expect_exit = True  # reported here; stop() need not say it again
                raise

    @staticmethod
    def _admin_port(config):
        if not isinstance(config, dict):
            return None
        m = re.fullmatch(r"127\.0\.0\.1:(\d+)", str((config.get("admin") or {}).get("address", "")))
        return int(m.group(1)) if m else None

    def render(self, config):
        """YAML text of a config for this gateway: a dict gets this gateway's
        first listen address (unless it has `listen`) and drain_timeout 2s."""
        if not isinstance(config, dict):
            return config
        config = json.loads(json.dumps(config))
        if "listen" not in config:
            config["listen"] = [{"address": self.address}]
        config.setdefault("limits", {}).setdefault("drain_timeout", "2s")
        return to_yaml(config)

    def write_config(self, config, atomic=True):
        """Replaces the config file (temp file + rename, or in place when
        atomic=False); returns the text written. Nothing is reloaded."""
        text = self.render(config)
        if atomic:
            tmp = self.config_path + ".tmp"
            with open(tmp, "w") as f:
                f.write(text)
            os.rename(tmp, self.config_path)
        else:
            with open(self.config_path, "w") as f:  # same inode: O_TRUNC, then the new text
                f.write(text)
        return text

    def sighup(self):
        self.proc.send_signal(signal.SIGHUP)

    @property
    def pid(self):
        return self.proc.pid

    def rss_kib(self):
        return rss_kib(self.pid)

    def threads(self):
        return len(os.listdir(f"/proc/{self.pid}/task"))

    def terminate(self):
        """SIGTERM on purpose (drain tests): the exit is expected from now on."""
        self.expect_exit = True
        self.proc.send_signal(signal.SIGTERM)

    def check_sanitizers(self):
        report = sanitizer_report(self.proc.stderr())
        if report:
            self.test.fail(f"sanitizer report in gateway stderr:\n{report}")

    def stop(self):
        died_early = self.proc.popen.poll() is not None and not self.proc.stopped
        rc = self.proc.stop()
        self.check_sanitizers()
        if died_early and not self.expect_exit:
            self.test.fail(f"gateway exited by itself during the test (code {rc})\n"
                           f"{self.proc.describe()}")
        if rc is not None and rc < 0 and -rc not in (signal.SIGTERM, signal.SIGKILL):
            self.test.fail(f"gateway died from signal {-rc}\n{self.proc.describe()}")
        return rc


class Monolith:
    """The example monolith: `monolith --listen 127.0.0.1:PORT --quiet`."""

    def __init__(self, test, workdir, port=None, name="monolith"):
        self.port = port or free_port()
        self.address = f"127.0.0.1:{self.port}"
        self.proc = Proc([monolith_bin(), "--listen", self.address, "--quiet"], workdir, name,
                         env=SANITIZER_ENV)
        test.addCleanup(self.stop)
        self.proc.wait_ready(self.port, 10)

    def stop(self):
        rc = self.proc.stop()
        report = sanitizer_report(self.proc.stderr())
        if report:  # not the unit under test: say it, don't fail the gateway's test
            print(f"    [warning] sanitizer report in monolith stderr:\n{report}", flush=True)
        return rc


class Nginx:
    """nginx in a temp prefix serving `files` from html/, access log with
    `$connection $connection_requests $request_uri $status` per line."""

    def __init__(self, test, workdir, files=None, extra_server="", name="nginx"):
        self.prefix = os.path.join(workdir, name)
        self.port = free_port()
        self.address = f"127.0.0.1:{self.port}"
        html = os.path.join(self.prefix, "html")
        os.makedirs(html)
        for fname, data in (files or {}).items():
            with open(os.path.join(html, fname), "wb") as f:
                f.write(data)
        p = self.prefix
        self.access_log = os.path.join(p, "access.log")
        conf = f"""user root;
worker_processes 1;
error_log {p}/error.log info;
pid {p}/nginx.pid;
events {{ worker_connections 1024; }}
http {{
    log_format conn '$connection $connection_requests $request_uri $status';
    access_log {self.access_log} conn;
    client_body_temp_path {p}/client_body;
    proxy_temp_path {p}/proxy;
    fastcgi_temp_path {p}/fastcgi;
    uwsgi_temp_path {p}/uwsgi;
    scgi_temp_path {p}/scgi;
    keepalive_requests 100000;
    keepalive_timeout 60s;
    server {{
        listen 127.0.0.1:{self.port};
        root {html};
        {extra_server}
    }}
}}
"""
        self.conf_path = os.path.join(p, "nginx.conf")
        with open(self.conf_path, "w") as f:
            f.write(conf)
        nginx = shutil.which("nginx") or "/usr/sbin/nginx"
        self.proc = Proc([nginx, "-p", p, "-c", self.conf_path, "-g", "daemon off;"], workdir, name)
        test.addCleanup(self.proc.stop)
        self.proc.wait_ready(self.port, 10)

    def log_lines(self):
        return [l.split() for l in read_text(self.access_log).splitlines() if l.strip()]


# --------------------------------------------------------------------------
# HTTP bits shared by the client and the in-process upstreams


def hget(headers, name, default=None):
    """First value of a header (case-insensitive) in a [(name, value)] list."""
    n = name.lower()
    for k, v in headers:
        if k.lower() == n:
            return v
    return default


def hall(headers, name):
    n = name.lower()
    return [v for k, v in headers if k.lower() == n]


def parse_head_lines(head):
    """(first line, [(name, value)]) from a head without its final CRLF CRLF."""
    lines = head.split(b"\r\n")
    headers = []
    for line in lines[1:]:
        name, _, value = line.partition(b":")
        headers.append((name.decode("latin-1"), value.strip(b" \t").decode("latin-1")))
    return lines[0].decode("latin-1"), headers


def build_request(method, target, headers=None, body=None, host="test.local", version="HTTP/1.1"):
    """Request bytes. `headers` is a list of (name, value); Host and
    Content-Length (when a body is given) are added unless present."""
    headers = list(headers or [])
    if host is not None and hget(headers, "host") is None:
        headers.insert(0, ("Host", host))
    if body is not None and hget(headers, "content-length") is None \
            and hget(headers, "transfer-encoding") is None:
        headers.append(("Content-Length", str(len(body))))
    out = f"{method} {target} {version}\r\n"
    out += "".join(f"{k}: {v}\r\n" for k, v in headers)
    return out.encode("latin-1") + b"\r\n" + (body or b"")


def chunked(data, sizes):
    """`data` as a chunked body cut into the given sizes (cycled), with the last chunk."""
    out = bytearray()
    i = 0
    k = 0
    while i < len(data):
        n = sizes[k % len(sizes)]
        k += 1
        piece = data[i:i + n]
        i += n
        out += b"%x\r\n" % len(piece) + piece + b"\r\n"
    out += b"0\r\n\r\n"
    return bytes(out)


class ConnectionClosed(AssertionError):
    pass


class Response:
    def __init__(self, version, status, reason, headers, body, head):
        self.version = version
        self.status = status
        self.reason = reason
        self.headers = headers
        self.body = body
        self.head = head

    def header(self, name, default=None):
        return hget(self.headers, name, default)

    def header_all(self, name):
        return hall(self.headers, name)

    def json(self):
        return json.loads(self.body)

    def __repr__(self):
        return f"<Response {self.status} {self.headers!r} body={self.body[:300]!r}>"


class RawClient:
    """A TCP client that sends exact bytes and reads HTTP/1.1 responses."""

    def __init__(self, port, host="127.0.0.1", timeout=5.0, rcvbuf=None):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        self.timeout = timeout
        self.sock.settimeout(timeout)
        self.sock.connect((host, port))
        self.buf = bytearray()
        self.eof = False
        self.reset = False

    def send(self, data):
        self.sock.settimeout(self.timeout)
        self.sock.sendall(data)

    def shutdown_write(self):
        self.sock.shutdown(socket.SHUT_WR)

    def close(self):
        try:
            self.sock.close()
        except OSError:
            pass

    def _fill(self, deadline, what):
        """Reads more into buf. False on EOF/reset; raises TimeoutError at the deadline."""
        if self.eof:
            return False
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"timed out waiting for {what}; have {bytes(self.buf[:300])!r}")
        self.sock.settimeout(remaining)
        try:
            data = self.sock.recv(1 << 20)
        except socket.timeout:
            raise TimeoutError(f"timed out waiting for {what}; have {bytes(self.buf[:300])!r}") from None
        except ConnectionResetError:
            self.eof = True
            self.reset = True
            return False
        if not data:
            self.eof = True
            return False
        self.buf += data
        return True

    def _take(self, n):
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def _read_line(self, deadline):
        while True:
            i = self.buf.find(b"\r\n")
            if i >= 0:
                line = self._take(i)
                del self.buf[:2]
                return line
            if not self._fill(deadline, "a chunk line"):
                raise ConnectionClosed(f"connection closed inside a chunked body; have {bytes(self.buf[:200])!r}")

    def _read_exact(self, n, deadline):
        while len(self.buf) < n:
            if not self._fill(deadline, f"{n} body bytes"):
                raise ConnectionClosed(f"connection closed after {len(self.buf)} of {n} body bytes")
        return self._take(n)

    def read_head(self, timeout=5.0):
        """(status line, headers, raw head) of the next response; raises ConnectionClosed."""
        deadline = time.monotonic() + timeout
        while True:
            i = self.buf.find(b"\r\n\r\n")
            if i >= 0:
                break
            if not self._fill(deadline, "a response head"):
                how = "reset" if self.reset else "closed"
                raise ConnectionClosed(f"connection {how} before a complete response head; "
                                       f"got {bytes(self.buf[:300])!r}")
        head = self._take(i)
        del self.buf[:4]
        first, headers = parse_head_lines(head)
        return first, headers, head

    def read_response(self, timeout=5.0, method="GET"):
        deadline = time.monotonic() + timeout
        first, headers, head = self.read_head(timeout)
        parts = first.split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise AssertionError(f"bad status line {first!r}")
        version, status = parts[0], int(parts[1])
        reason = parts[2] if len(parts) > 2 else ""
        te = (hget(headers, "transfer-encoding") or "").lower()
        cl = hget(headers, "content-length")
        if status < 200 or status in (204, 304) or method == "HEAD":
            body = b""
        elif "chunked" in te:
            out = bytearray()
            while True:
                line = self._read_line(deadline)
                size = int(line.split(b";")[0].strip(), 16)
                if size == 0:
                    while self._read_line(deadline):  # trailers
                        pass
                    break
                out += self._read_exact(size, deadline)
                if self._read_exact(2, deadline) != b"\r\n":
                    raise AssertionError("chunk data not followed by CRLF")
            body = bytes(out)
        elif cl is not None:
            body = self._read_exact(int(cl), deadline)
        else:
            while self._fill(deadline, "a close-delimited body"):
                pass
            body = self._take(len(self.buf))
        return Response(version, status, reason, headers, body, head)

    def read_ws_frame(self, timeout=10):
        """One WebSocket frame (ws_read_frame's (fin, opcode, payload)), or None at EOF."""
        deadline = time.monotonic() + timeout

        def read_exact(n):
            while len(self.buf) < n:
                if not self._fill(deadline, "a websocket frame"):
                    return None
            return self._take(n)

        return ws_read_frame(read_exact)

    def wait_closed(self, timeout=2.0):
        """True when the peer closes (FIN or RST) within `timeout`; data read meanwhile stays in buf."""
        deadline = time.monotonic() + timeout
        try:
            while self._fill(deadline, "the connection to close"):
                pass
        except TimeoutError:
            return False
        return True

    def stream_body(self, n, fn, timeout=60.0, chunk=1 << 20):
        """Reads n raw bytes (the rest of a CL body), passing pieces to fn."""
        deadline = time.monotonic() + timeout
        got = 0
        if self.buf:
            piece = self._take(min(n, len(self.buf)))
            fn(piece)
            got += len(piece)
        while got < n:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"body: {got} of {n} bytes before the deadline")
            self.sock.settimeout(remaining)
            data = self.sock.recv(min(chunk, n - got))
            if not data:
                raise ConnectionClosed(f"body: closed after {got} of {n} bytes")
            fn(data)
            got += len(data)
        return got


def fetch(port, method="GET", target="/", headers=None, body=None, host="test.local", timeout=5.0):
    """One request on a fresh connection; returns the Response."""
    c = RawClient(port, timeout=timeout)
    try:
        c.send(build_request(method, target, headers, body, host=host))
        return c.read_response(timeout, method=method)
    finally:
        c.close()


# --------------------------------------------------------------------------
# in-process upstreams


class _Reader:
    """Buffered reads on a server-side socket; `on_data` sees every byte received."""

    def __init__(self, sock, on_data=None):
        self.sock = sock
        self.buf = bytearray()
        self.eof = False
        self.on_data = on_data

    def fill(self):
        if self.eof:
            return False
        try:
            data = self.sock.recv(1 << 18)
        except OSError:
            data = b""
        if not data:
            self.eof = True
            return False
        if self.on_data:
            self.on_data(data)
        self.buf += data
        return True

    def read_until(self, delim, limit=1 << 20):
        start = 0
        while True:
            i = self.buf.find(delim, start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[:i + len(delim)]
                return out
            if len(self.buf) > limit:
                return None
            start = max(0, len(self.buf) - len(delim) + 1)
            if not self.fill():
                return None

    def read_exact(self, n):
        while len(self.buf) < n:
            if not self.fill():
                return None
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    def stream(self, n, fn):
        """Passes exactly n bytes to fn without keeping them; False on early EOF."""
        if self.buf:
            k = min(n, len(self.buf))
            fn(bytes(self.buf[:k]))
            del self.buf[:k]
            n -= k
        scratch = bytearray(1 << 18)
        view = memoryview(scratch)
        while n > 0:
            try:
                got = self.sock.recv_into(view, min(n, len(scratch)))
            except OSError:
                got = 0
            if not got:
                self.eof = True
                return False
            if self.on_data:
                self.on_data(view[:got])
            fn(view[:got])
            n -= got
        return True


def read_request(reader, on_body=None):
    """Reads one request; returns dict(method, target, version, headers, body_len,
    chunked, body) or None on EOF / unparseable input. Body bytes go to
    on_body when given (then `body` stays empty)."""
    head = reader.read_until(b"\r\n\r\n")
    if head is None:
        return None
    first, headers = parse_head_lines(head)
    parts = first.split(" ")
    if len(parts) != 3:
        return None
    body = bytearray()
    sink = on_body or body.extend
    total = 0
    te = (hget(headers, "transfer-encoding") or "").lower()
    cl = hget(headers, "content-length")
    is_chunked = "chunked" in te
    if is_chunked:
        while True:
            line = reader.read_until(b"\r\n")
            if line is None:
                return None
            try:
                size = int(line.split(b";")[0].strip(), 16)
            except ValueError:
                return None
            if size == 0:
                while True:
                    t = reader.read_until(b"\r\n")
                    if t is None:
                        return None
                    if t == b"":
                        break
                break
            if not reader.stream(size, sink):
                return None
            total += size
            if reader.read_exact(2) != b"\r\n":
                return None
    elif cl is not None:
        try:
            n = int(cl)
        except ValueError:
            return None
        if not reader.stream(n, sink):
            return None
        total = n
    return {"method": parts[0], "target": parts[1], "version": parts[2], "headers": headers,
            "body_len": total, "chunked": is_chunked, "body": bytes(body), "head": head}


def wants_close(req):
    conn = (hget(req["headers"], "connection") or "").lower()
    if "close" in conn:
        return True
    return req["version"] == "HTTP/1.0" and "keep-alive" not in conn


class ThreadedServer:
    """Accept loop on a thread, one thread per connection (handle(sock, index))."""

    def __init__(self, test=None, backlog=128):
        self.lsock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.lsock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.lsock.bind(("127.0.0.1", 0))
        self.lsock.listen(backlog)
        self.lsock.settimeout(0.05)
        self.port = self.lsock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.conns = []
        self.threads = []
        self.connections = 0
        self.errors = []
        self._acceptor = threading.Thread(target=self._accept_loop, daemon=True)
        self._acceptor.start()
        if test is not None:
            test.addCleanup(self.stop)

    def _accept_loop(self):
        while not self.stopping.is_set():
            try:
                sock, _ = self.lsock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            sock.settimeout(None)
            with self.lock:
                index = self.connections
                self.connections += 1
                self.conns.append(sock)
            t = threading.Thread(target=self._run, args=(sock, index), daemon=True)
            self.threads.append(t)
            t.start()

    def _run(self, sock, index):
        try:
            self.handle(sock, index)
        except OSError:
            pass
        except Exception as e:  # a harness bug should be visible, not silent
            self.errors.append(repr(e))
        finally:
            try:
                sock.close()
            except OSError:
                pass

    def handle(self, sock, index):
        raise NotImplementedError

    def close_connections(self):
        with self.lock:
            conns = list(self.conns)
        for s in conns:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def stop(self):
        if self.stopping.is_set():
            return
        self.stopping.set()
        self._acceptor.join(2)
        self.lsock.close()
        self.close_connections()
        for t in self.threads:
            t.join(2)


class RecordingUpstream(ThreadedServer):
    """Records the raw bytes of every connection and every parsed request, and
    answers each with a fixed 200 (body defaults to the upstream's name)."""

    def __init__(self, test=None, name="rec", body=None, status=200, extra_headers=None, delay=0.0):
        self.name = name
        self.body = name.encode() if body is None else body
        self.status = status
        self.extra_headers = extra_headers or []
        self.delay = delay
        self.raw = []        # bytearray per connection
        self.requests = []   # parsed requests, in arrival order
        super().__init__(test)

    def raw_all(self):
        with self.lock:
            return b"".join(bytes(r) for r in self.raw)

    def response_bytes(self, close):
        head = f"HTTP/1.1 {self.status} OK\r\nContent-Type: text/plain\r\nContent-Length: {len(self.body)}\r\n"
        head += "".join(f"{k}: {v}\r\n" for k, v in self.extra_headers)
        if close:
            head += "Connection: close\r\n"
        return head.encode() + b"\r\n" + self.body

    def handle(self, sock, index):
        raw = bytearray()
        with self.lock:
            self.raw.append(raw)

        def record(data):
            with self.lock:
                raw.extend(data)

        reader = _Reader(sock, record)
        while True:
            req = read_request(reader)
            if req is None:
                return
            req["conn"] = index
            with self.lock:
                self.requests.append(req)
            if self.delay:
                time.sleep(self.delay)
            close = wants_close(req)
            sock.sendall(self.response_bytes(close))
            if close:
                return


class AnsweringUpstream(ThreadedServer):
    """A keep-alive HTTP/1.1 upstream whose subclass only decides the answer: answer(req)
    returns (status, [(header, value)], body) for one request (read_request's dict). This
    class reads requests in turn, writes Content-Length and, when the request asked for it,
    Connection: close (then closes)."""

    def answer(self, req):
        raise NotImplementedError

    def handle(self, sock, index):
        reader = _Reader(sock)
        while True:
            req = read_request(reader)
            if req is None:
                return
            status, headers, body = self.answer(req)
            head = f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n"
            head += "".join(f"{k}: {v}\r\n" for k, v in headers)
            close = wants_close(req)
            if close:
                head += "Connection: close\r\n"
            sock.sendall(head.encode() + b"\r\n" + body)
            if close:
                return


class SinkUpstream(ThreadedServer):
    """Swallows request bodies (CL or chunked) hashing them on the fly;
    answers 200 with JSON {"bytes": N, "sha256": HEX}."""

    def __init__(self, test=None):
        self.requests = []
        self.progress = 0
        super().__init__(test)

    def handle(self, sock, index):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        reader = _Reader(sock)
        while True:
            h = hashlib.sha256()

            def take(data):
                h.update(data)
                self.progress += len(data)

            req = read_request(reader, on_body=take)
            if req is None:
                return
            req["sha256"] = h.hexdigest()
            with self.lock:
                self.requests.append(req)
            body = json.dumps({"bytes": req["body_len"], "sha256": req["sha256"]}).encode()
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                         b"Content-Length: %d\r\n\r\n" % len(body) + body)
            if wants_close(req):
                return


class BulkUpstream(ThreadedServer):
    """Answers every request with `total` bytes (Content-Length), written in
    1 MiB blocking sends: .sent shows how far backpressure let it get."""

    def __init__(self, test=None, total=256 << 20):
        self.total = total
        self.sent = 0
        self.block = bytes(range(256)) * 4096
        super().__init__(test)

    def handle(self, sock, index):
        reader = _Reader(sock)
        while True:
            req = read_request(reader)
            if req is None:
                return
            sock.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                         b"Content-Length: %d\r\n\r\n" % self.total)
            left = self.total
            view = memoryview(self.block)
            while left:
                n = min(left, len(self.block))
                sock.sendall(view[:n])
                left -= n
                self.sent += n
            if wants_close(req):
                return


def ws_accept(key):
    return base64.b64encode(hashlib.sha1((key + WS_GUID).encode()).digest()).decode()


def ws_frame(opcode, payload, mask=True, fin=True):
    """One WebSocket frame (client frames are masked)."""
    b0 = (0x80 if fin else 0) | opcode
    n = len(payload)
    mbit = 0x80 if mask else 0
    if n < 126:
        head = struct.pack("!BB", b0, mbit | n)
    elif n < 65536:
        head = struct.pack("!BBH", b0, mbit | 126, n)
    else:
        head = struct.pack("!BBQ", b0, mbit | 127, n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + ws_mask(payload, key)


def ws_mask(payload, key):
    if not payload:
        return b""
    k = (key * (len(payload) // 4 + 1))[:len(payload)]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(k, "big")).to_bytes(len(payload), "big")


def ws_read_frame(read_exact):
    """(fin, opcode, payload, masked) using read_exact(n) -> bytes|None; None on EOF."""
    h = read_exact(2)
    if h is None:
        return None
    fin = bool(h[0] & 0x80)
    opcode = h[0] & 0x0F
    masked = bool(h[1] & 0x80)
    n = h[1] & 0x7F
    if n == 126:
        ext = read_exact(2)
        if ext is None:
            return None
        n = struct.unpack("!H", ext)[0]
    elif n == 127:
        ext = read_exact(8)
        if ext is None:
            return None
        n = struct.unpack("!Q", ext)[0]
    key = read_exact(4) if masked else None
    if masked and key is None:
        return None
    payload = read_exact(n) if n else b""
    if payload is None:
        return None
    if masked:
        payload = ws_mask(payload, key)
    return fin, opcode, payload, masked


class WebSocketEchoUpstream(ThreadedServer):
    """Minimal RFC 6455 server: handshake, echo data frames unmasked, answer
    close with close. Records the handshake request and what happened."""

    def __init__(self, test=None):
        self.handshakes = []
        self.frames = []                      # (opcode, len, masked) received
        self.got_close_frame = threading.Event()
        self.saw_eof = threading.Event()      # the gateway closed on us
        super().__init__(test)

    def handle(self, sock, index):
        reader = _Reader(sock)
        req = read_request(reader)
        if req is None:
            return
        self.handshakes.append(req)
        key = hget(req["headers"], "sec-websocket-key")
        if (hget(req["headers"], "upgrade") or "").lower() != "websocket" or not key:
            sock.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            return
        sock.sendall(("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                      f"Sec-WebSocket-Accept: {ws_accept(key)}\r\n\r\n").encode())
        while True:
            f = ws_read_frame(reader.read_exact)
            if f is None:
                self.saw_eof.set()
                return
            fin, opcode, payload, masked = f
            self.frames.append((opcode, len(payload), masked))
            if opcode == 8:
                self.got_close_frame.set()
                sock.sendall(ws_frame(8, payload[:2], mask=False))
                # RFC 6455 §7.1.1: after the close handshake, wait (briefly) for the peer's FIN
                sock.shutdown(socket.SHUT_WR)
                sock.settimeout(2)
                try:
                    while sock.recv(65536):
                        pass
                except OSError:
                    pass
                self.saw_eof.set()
                return
            if opcode == 9:
                sock.sendall(ws_frame(10, payload, mask=False))
                continue
            sock.sendall(ws_frame(opcode, payload, mask=False, fin=fin))


class ScriptedUpstream(ThreadedServer):
    """Plays a script on every connection: reads one request head (+CL body)
    first unless read_request=False, then for each step: bytes → send,
    ("sleep", s), "close", "rst" (SO_LINGER 0), "hang" (until stopped)."""

    def __init__(self, test=None, script=(), read_first=True):
        self.script = list(script)
        self.read_first = read_first
        self.requests = []
        super().__init__(test)

    def handle(self, sock, index):
        reader = _Reader(sock)
        if self.read_first:
            req = read_request(reader)
            if req is None:
                return
            self.requests.append(req)
        for step in self.script:
            if isinstance(step, (bytes, bytearray)):
                sock.sendall(step)
            elif isinstance(step, tuple) and step[0] == "sleep":
                time.sleep(step[1])
            elif step == "close":
                sock.close()
                return
            elif step == "rst":
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                return
            elif step == "hang":
                self.stopping.wait()
                return
            else:
                raise ValueError(f"bad script step {step!r}")


# --------------------------------------------------------------------------
# the test case base


class FxTestCase(unittest.TestCase):
    """A TestCase with self.tmp (removed afterwards unless FX_KEEP=1) and
    factories for processes and upstreams that are always stopped."""

    def setUp(self):
        base = os.environ.get("FX_TMP") or None
        self.tmp = tempfile.mkdtemp(prefix="fx-" + self.id().rsplit(".", 1)[-1][:40] + "-", dir=base)
        if not os.environ.get("FX_KEEP"):
            self.addCleanup(shutil.rmtree, self.tmp, True)

    # processes
    def gateway(self, config, **kw):
        return Gateway(self, config, self.tmp, **kw)

    def monolith(self, **kw):
        return Monolith(self, self.tmp, **kw)

    def nginx(self, **kw):
        return Nginx(self, self.tmp, **kw)

    # in-process upstreams
    def recording(self, **kw):
        return RecordingUpstream(self, **kw)

    def sink(self):
        return SinkUpstream(self)

    def bulk(self, total):
        return BulkUpstream(self, total)

    def ws_echo(self):
        return WebSocketEchoUpstream(self)

    def scripted(self, script, **kw):
        return ScriptedUpstream(self, script, **kw)

    def client(self, port, **kw):
        c = RawClient(port, **kw)
        self.addCleanup(c.close)
        return c

    # keys
    def es256_key(self, name="es256.pub.pem"):
        """A fresh P-256 private key (python3-cryptography) and the path of its public key as PEM in
        the test's temp dir: for `auth` issuers whose tokens the test mints with PyJWT."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        key = ec.generate_private_key(ec.SECP256R1())
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(key.public_key().public_bytes(serialization.Encoding.PEM,
                                                  serialization.PublicFormat.SubjectPublicKeyInfo))
        return key, path

    # config shorthands
    def permit_all(self):
        """A `policies` section with one policy that permits every request: for tests of
        other features on a gateway with `auth` (policies default to deny)."""
        path = os.path.join(self.tmp, "permit-all.yaml")
        with open(path, "w") as f:
            f.write('policies:\n  - id: permit-all\n    effect: permit\n    when: "true"\n')
        return {"files": [path]}

    @staticmethod
    def config(targets, limits=None, upstream=None, routes=None, **top):
        """One upstream `up` with `targets` and a catch-all route `all` to it."""
        up = {"targets": list(targets)}
        up.update(upstream or {})
        cfg = {"workers": 1, "upstreams": {"up": up},
               "routes": routes or [{"name": "all", "match": {"prefix": "/"}, "upstream": "up"}],
               "log": {"access": "off"}}
        if limits:
            cfg["limits"] = dict(limits)
        cfg.update(top)
        return cfg

    # assertions
    def assertProblem(self, resp, status, msg=None):
        """A gateway error: status, problem+json with the RFC 9457 fields, X-Request-Id = request_id."""
        where = f"{msg + ': ' if msg else ''}{resp!r}"
        self.assertEqual(resp.status, status, where)
        ctype = resp.header("content-type") or ""
        self.assertTrue(ctype.startswith("application/problem+json"), f"content-type {ctype!r}; {where}")
        try:
            doc = resp.json()
        except ValueError:
            self.fail(f"problem body is not JSON; {where}")
        for key in ("type", "title", "status", "detail", "request_id"):
            self.assertIn(key, doc, where)
        self.assertEqual(doc["status"], status, where)
        self.assertTrue(doc["request_id"], where)
        self.assertEqual(resp.header("x-request-id"), doc["request_id"], where)
        return doc


# --------------------------------------------------------------------------
# Kafka: the development broker and kcat


class _StdinPipeProc(Proc):
    """A Proc whose stdin is a pipe (.stdin, binary) instead of /dev/null."""

    def __init__(self, argv, workdir, name, env=None, cwd=None):  # Proc.__init__ with stdin=PIPE
        self.argv = [str(a) for a in argv]
        self.name = name
        self.workdir = workdir
        self.stdout_path = os.path.join(workdir, f"{name}.stdout")
        self.stderr_path = os.path.join(workdir, f"{name}.stderr")
        if not os.path.exists(self.argv[0]):
            raise AssertionError(f"{name}: binary {self.argv[0]} does not exist (build it first)")
        self._out = open(self.stdout_path, "wb")
        self._err = open(self.stderr_path, "wb")
        self.popen = subprocess.Popen(self.argv, stdin=subprocess.PIPE, stdout=self._out, stderr=self._err,
                                      env={**os.environ, **(env or {})}, cwd=cwd or workdir)
        self.stdin = self.popen.stdin
        self.pid = self.popen.pid
        self.stopped = False
        self.returncode = None
        self.killed = False

    def stop(self, grace=5.0):
        rc = super().stop(grace)
        try:
            self.stdin.close()
        except OSError:  # the child is gone and the pipe with it
            pass
        return rc


class DevBroker:
    """`ficus devbroker --bootstrap-file F [args]` with stdin as a pipe.

    .bootstrap is the address ("127.0.0.1:PORT[,...]") read from the file;
    .command(line) writes one command and returns its one-line answer
    ("ok ..." / "error: ..."); down()/up() are the commands that must
    succeed. Stopped (SIGTERM) by the test's cleanup; a sanitizer report
    in its stderr, a death by itself or an exit code other than 0 fails
    the test then."""

    def __init__(self, test, workdir, name="devbroker", args=None, wait_s=15.0):
        self.test = test
        self.bootstrap_file = os.path.join(workdir, f"{name}.bootstrap")
        self.expect_exit = False
        self.proc = _StdinPipeProc([ficus_bin(), "devbroker", "--bootstrap-file", self.bootstrap_file]
                                   + list(args or []), workdir, name, env=SANITIZER_ENV)
        test.addCleanup(self.stop)
        self._pos = 0  # how much of the stdout file the answers have consumed
        try:
            deadline = time.monotonic() + wait_s
            while not os.path.exists(self.bootstrap_file):
                if not self.proc.alive() or time.monotonic() > deadline:
                    raise AssertionError(f"devbroker wrote no {self.bootstrap_file} within {wait_s}s\n"
                                         f"{self.proc.describe()}")
                time.sleep(0.02)
            self.bootstrap = read_text(self.bootstrap_file).strip()
            first = self._line(deadline - time.monotonic())
        except AssertionError:
            self.expect_exit = True
            raise
        if first != f"devbroker: bootstrap {self.bootstrap}":
            raise AssertionError(f"devbroker's first line {first!r} does not give {self.bootstrap!r}")
        self.ports = [int(a.rsplit(":", 1)[1]) for a in self.bootstrap.split(",")]

    def _line(self, timeout):
        """The next complete stdout line (without newline)."""
        deadline = time.monotonic() + max(timeout, 0.1)
        while True:
            with open(self.proc.stdout_path, "rb") as f:
                f.seek(self._pos)
                data = f.read()
            nl = data.find(b"\n")
            if nl >= 0:
                self._pos += nl + 1
                return data[:nl].decode("utf-8", "replace")
            if not self.proc.alive():
                raise AssertionError(f"devbroker exited while an answer was awaited\n{self.proc.describe()}")
            if time.monotonic() > deadline:
                raise AssertionError(f"devbroker did not answer within {timeout}s\n{self.proc.describe()}")
            time.sleep(0.01)

    def command(self, line, timeout=10.0):
        """Sends one command line; returns the answer line."""
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return self._line(timeout)

    def _ok(self, line):
        reply = self.command(line)
        if not reply.startswith("ok"):
            raise AssertionError(f"devbroker {line!r}: {reply}")
        return reply

    def down(self):
        return self._ok("down")

    def up(self):
        return self._ok("up")

    @property
    def pid(self):
        return self.proc.pid

    def send_signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        died_early = self.proc.popen.poll() is not None and not self.proc.stopped
        rc = self.proc.stop()
        report = sanitizer_report(self.proc.stderr())
        if report:
            self.test.fail(f"sanitizer report in devbroker stderr:\n{report}")
        if died_early and not self.expect_exit:
            self.test.fail(f"devbroker exited by itself during the test (code {rc})\n{self.proc.describe()}")
        if not self.expect_exit and rc not in (0, None) and not self.proc.killed:
            self.test.fail(f"devbroker exited with {rc} on SIGTERM\n{self.proc.describe()}")
        return rc


def kcat_produce(bootstrap, topic, messages, headers=(), timeout=20.0, config=None, partition=None):
    """Produces `messages` ((key, value) pairs of str/bytes; key None for none) to `topic` with one kcat
    process; `headers` ((name, value) pairs) go on every message, `config` is extra -X properties.
    Values and keys cannot hold the bytes 0x1e/0x1f (the delimiters). The CompletedProcess (stdout,
    stderr as text); on timeout, one with returncode None."""
    def raw(v):
        return v if isinstance(v, bytes) else str(v).encode()
    keyed = any(k is not None for k, _ in messages)
    data = b"".join(((raw(k) + b"\x1f") if keyed else b"") + raw(v) + b"\x1e" for k, v in messages)
    argv = ["kcat", "-P", "-b", bootstrap, "-t", topic, "-D", "\x1e"]
    if keyed:
        argv += ["-K", "\x1f"]
    if partition is not None:
        argv += ["-p", str(partition)]
    for name, value in headers:
        argv += ["-H", f"{name}={value}"]
    for k, v in (config or {}).items():
        argv += ["-X", f"{k}={v}"]
    try:
        p = subprocess.run(argv, input=data, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired as e:
        return subprocess.CompletedProcess(argv, None, (e.stdout or b"").decode("utf-8", "replace"),
                                           (e.stderr or b"").decode("utf-8", "replace"))
    return subprocess.CompletedProcess(argv, p.returncode, p.stdout.decode("utf-8", "replace"),
                                       p.stderr.decode("utf-8", "replace"))


def kcat_consume(bootstrap, topic, count, timeout=20.0, config=None):
    """Up to `count` messages of `topic` from the beginning (kcat -C -e -J: stops at the end of every
    partition), as dicts: key (str or None), value (bytes or None), partition, offset, headers
    ([(name, value)] in order). Fewer than `count` when the topic holds fewer or the timeout hit."""
    argv = ["kcat", "-C", "-b", bootstrap, "-t", topic, "-o", "beginning", "-e", "-q", "-J", "-c", str(count)]
    for k, v in (config or {}).items():
        argv += ["-X", f"{k}={v}"]
    try:
        out = subprocess.run(argv, capture_output=True, timeout=timeout).stdout
    except subprocess.TimeoutExpired as e:
        out = e.stdout or b""
    msgs = []
    # kcat writes payload bytes that are not UTF-8 as they are: surrogateescape brings them back
    for line in out.decode("utf-8", "surrogateescape").splitlines():
        if not line.startswith("{"):
            continue
        try:
            m = json.loads(line)
        except ValueError:  # a line cut by the timeout
            continue
        h = m.get("headers") or []
        payload = m.get("payload")
        msgs.append({"key": m.get("key"),
                     "value": None if payload is None else payload.encode("utf-8", "surrogateescape"),
                     "partition": m["partition"], "offset": m["offset"],
                     "headers": [(h[i], h[i + 1]) for i in range(0, len(h) - 1, 2)]})
    return msgs


def kcat_metadata(bootstrap, topic=None, timeout=10.0):
    """kcat -L -J: the cluster's metadata as a dict, or None when kcat failed."""
    argv = ["kcat", "-L", "-J", "-b", bootstrap] + (["-t", topic] if topic else [])
    try:
        p = subprocess.run(argv, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        return None
    try:
        return json.loads(p.stdout) if p.returncode == 0 else None
    except ValueError:
        return None
