#!/usr/bin/env python3
"""A bounded keep-alive HTTP/1.1 load loop, run as a separate process by
integration tests (test_reload.py): the load must not share the test's GIL
or its sockets.

    loadgen.py --port P [--threads 4] [--max-requests N] [--max-seconds S]
               [--path /load] [--expect BODY ...]

Each thread keeps one connection and sends `GET PATH/<thread>/<n>` back to
back, reading each response completely (Content-Length or chunked). A
response is valid when its status is 200 and (with --expect) its body is one
of the given bodies. Anything else is a failure: another status, an invalid
body, a reset, an EOF or a timeout before a complete response, a connect
error. After a failure the thread reconnects and goes on; a response that
says `Connection: close` is a clean end of the connection (counted, not a
failure).

Stops at --max-requests (all threads together), at --max-seconds, or on
SIGTERM/SIGINT (in-flight requests are finished first), then prints one JSON
line to stdout: {"requests", "ok", "failures", "failure_samples", "bodies",
"connects", "server_closes", "duration_s", "max_latency_ms"} and exits 0.
"""

import argparse
import json
import signal
import socket
import sys
import threading
import time


class Failure(Exception):
    pass


def read_response(sock, buf):
    """(status, headers dict lower-case, body, buf rest). Raises Failure on EOF/reset/timeout."""
    def fill():
        try:
            data = sock.recv(65536)
        except socket.timeout:
            raise Failure("timeout waiting for the response") from None
        except ConnectionResetError:
            raise Failure("connection reset") from None
        except OSError as e:
            raise Failure(f"recv: {e!r}") from None
        if not data:
            raise Failure(f"EOF before a complete response (had {bytes(buf[:120])!r})")
        buf.extend(data)

    while b"\r\n\r\n" not in buf:
        fill()
    i = buf.index(b"\r\n\r\n")
    head = bytes(buf[:i]).decode("latin-1")
    del buf[:i + 4]
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or not parts[0].startswith("HTTP/1.") or not parts[1].isdigit():
        raise Failure(f"bad status line {lines[0]!r}")
    status = int(parts[1])
    headers = {}
    for line in lines[1:]:
        k, sep, v = line.partition(":")
        if not sep:
            raise Failure(f"bad header line {line!r}")
        headers[k.strip().lower()] = v.strip()
    if "chunked" in headers.get("transfer-encoding", "").lower():
        body = bytearray()
        while True:
            while b"\r\n" not in buf:
                fill()
            j = buf.index(b"\r\n")
            size = int(bytes(buf[:j]).split(b";")[0], 16)
            del buf[:j + 2]
            while len(buf) < size + 2:
                fill()
            body += buf[:size]
            del buf[:size + 2]
            if size == 0:
                break
        body = bytes(body)
    elif "content-length" in headers:
        n = int(headers["content-length"])
        while len(buf) < n:
            fill()
        body = bytes(buf[:n])
        del buf[:n]
    else:
        raise Failure(f"response without a length: {head!r}")
    return status, headers, body


class Stats:
    def __init__(self):
        self.lock = threading.Lock()
        self.requests = 0
        self.ok = 0
        self.failures = 0
        self.samples = []
        self.bodies = {}
        self.connects = 0
        self.server_closes = 0
        self.max_latency = 0.0

    def fail(self, tid, n, what):
        with self.lock:
            self.failures += 1
            if len(self.samples) < 20:
                self.samples.append({"thread": tid, "n": n, "t": round(time.time(), 3), "what": what})


def worker(tid, args, stats, stop, budget):
    """One connection at a time; every budget unit is one request attempt."""
    sock = None
    buf = bytearray()
    n = 0
    while not stop.is_set():
        with stats.lock:
            if budget[0] <= 0:
                stop.set()
                break
            budget[0] -= 1
            stats.requests += 1
        n += 1
        t0 = time.monotonic()
        try:
            if sock is None:
                try:
                    sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
                except OSError as e:
                    raise Failure(f"connect: {e!r}") from None
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.settimeout(args.timeout)
                buf = bytearray()
                with stats.lock:
                    stats.connects += 1
            req = f"GET {args.path}/{tid}/{n} HTTP/1.1\r\nHost: load.test\r\nUser-Agent: fx-loadgen\r\n\r\n"
            try:
                sock.sendall(req.encode())
            except OSError as e:
                raise Failure(f"send: {e!r}") from None
            status, headers, body = read_response(sock, buf)
            lat = time.monotonic() - t0
            with stats.lock:
                stats.max_latency = max(stats.max_latency, lat)
                key = body[:64].decode("latin-1")
                stats.bodies[key] = stats.bodies.get(key, 0) + 1
            if status != 200:
                raise Failure(f"status {status}, headers {headers!r}, body {body[:200]!r}")
            if args.expect and body.decode("latin-1") not in args.expect:
                raise Failure(f"unexpected body {body[:200]!r}")
            with stats.lock:
                stats.ok += 1
            if "close" in headers.get("connection", "").lower():
                with stats.lock:
                    stats.server_closes += 1
                sock.close()
                sock = None
        except (Failure, ValueError) as e:  # ValueError: an unparseable length
            stats.fail(tid, n, f"{type(e).__name__}: {e}")
            if sock is not None:
                sock.close()
            sock = None
            time.sleep(0.005)
    if sock is not None:
        sock.close()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--max-requests", type=int, default=200000)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    ap.add_argument("--path", default="/load")
    ap.add_argument("--expect", nargs="*", default=[])
    args = ap.parse_args()

    stats = Stats()
    stop = threading.Event()
    budget = [args.max_requests]
    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    signal.signal(signal.SIGINT, lambda *a: stop.set())
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i, args, stats, stop, budget), daemon=True)
               for i in range(args.threads)]
    for t in threads:
        t.start()
    deadline = t0 + args.max_seconds
    while not stop.is_set() and time.monotonic() < deadline:
        stop.wait(0.05)
    stop.set()
    for t in threads:
        t.join(args.timeout + 5)
    out = {"requests": stats.requests, "ok": stats.ok, "failures": stats.failures,
           "failure_samples": stats.samples, "bodies": stats.bodies, "connects": stats.connects,
           "server_closes": stats.server_closes, "duration_s": round(time.monotonic() - t0, 3),
           "max_latency_ms": round(stats.max_latency * 1000, 1),
           "threads_stuck": sum(t.is_alive() for t in threads)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    sys.exit(main())
