"""Timeouts and upstream failures: 408 for slow clients, idle close, 504 for
slow or unreachable upstreams, 502 for refused/reset/malformed ones — and
the gateway keeps serving afterwards."""

import socket
import time

import fxtest
from fxtest import build_request, fetch

LIMITS = {"header_timeout": "500ms", "idle_timeout": "1s"}
UPSTREAM = {"connect_timeout": "300ms", "timeout": "500ms"}
SLACK = 1.0  # seconds allowed beyond a timeout (sanitizer build, loaded machine)


class ClientTimeoutTest(fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.recording(name="up")
        self.gw = self.gateway(self.config([self.up.address], limits=LIMITS, upstream=UPSTREAM))

    def test_slowloris_partial_head_gets_408(self):
        c = self.client(self.gw.port)
        t0 = time.monotonic()
        c.send(b"GET /slow HTTP/1.1\r\nHost: a.test\r\nX-Partial: yes")
        r = c.read_response(timeout=5)
        elapsed = time.monotonic() - t0
        fxtest.measure("slowloris 408 after", f"{elapsed:.2f} s")
        self.assertProblem(r, 408)
        self.assertTrue(c.wait_closed(2), "connection open after 408")
        self.assertGreater(elapsed, 0.4)
        self.assertLess(elapsed, 0.5 + SLACK)
        self.assertEqual(self.up.connections, 0)

    def test_dripping_head_gets_408(self):
        """One byte every 100 ms: each read is recent, the head as a whole is late."""
        c = self.client(self.gw.port)
        head = b"GET /drip HTTP/1.1\r\nHost: a.test\r\nX-Slow: " + b"d" * 200 + b"\r\n\r\n"
        t0 = time.monotonic()
        sent = 0
        c.sock.settimeout(0.1)
        got = b""
        while sent < len(head) and time.monotonic() - t0 < 6:
            try:
                c.sock.send(head[sent:sent + 1])
                sent += 1
            except OSError:
                break  # closed on us: the answer, if any, is already queued for reading
            try:
                got = c.sock.recv(65536)
                break  # the gateway answered (or closed) before the head was complete
            except socket.timeout:
                pass
            except ConnectionResetError:
                break
        elapsed = time.monotonic() - t0
        c.buf += got
        fxtest.measure("dripping client answered after", f"{elapsed:.2f} s ({sent} bytes sent)")
        self.assertLess(sent, len(head), "the whole head was sent without a timeout")
        r = c.read_response(timeout=3)
        self.assertProblem(r, 408)
        self.assertLess(elapsed, 0.5 + SLACK)
        self.assertEqual(self.up.connections, 0)

    def test_idle_keepalive_connection_closed(self):
        c = self.client(self.gw.port)
        c.send(build_request("GET", "/once"))
        self.assertEqual(c.read_response().status, 200)
        t0 = time.monotonic()
        self.assertTrue(c.wait_closed(1 + 2 * SLACK), "idle connection not closed")
        elapsed = time.monotonic() - t0
        fxtest.measure("idle keep-alive closed after", f"{elapsed:.2f} s")
        self.assertGreater(elapsed, 0.7)
        self.assertEqual(c.buf, bytearray(), "idle close sent bytes")


class UpstreamFailureTest(fxtest.FxTestCase):
    def gateway_for(self, targets):
        ok = self.recording(name="healthy")
        routes = [{"name": "bad", "match": {"prefix": "/bad"}, "upstream": "up"},
                  {"name": "ok", "match": {"prefix": "/ok"}, "upstream": "ok"}]
        cfg = self.config(targets, limits=LIMITS, upstream=UPSTREAM, routes=routes)
        cfg["upstreams"]["ok"] = {"targets": [ok.address]}
        gw = self.gateway(cfg)
        return gw, ok

    def assert_still_serving(self, gw):
        r = fetch(gw.port, "GET", "/ok/after")
        self.assertEqual((r.status, r.body), (200, b"healthy"), repr(r))

    def timed(self, gw, target="/bad/x"):
        t0 = time.monotonic()
        r = fetch(gw.port, "GET", target, timeout=10)
        return r, time.monotonic() - t0

    def test_upstream_response_timeout_504(self):
        mono = self.monolith()
        cfg = self.config([mono.address], limits=LIMITS, upstream=UPSTREAM)
        gw = self.gateway(cfg)
        t0 = time.monotonic()
        r = fetch(gw.port, "GET", "/_test/slow?ms=3000", timeout=10)
        elapsed = time.monotonic() - t0
        fxtest.measure("slow upstream 504 after", f"{elapsed:.2f} s")
        self.assertProblem(r, 504)
        self.assertGreater(elapsed, 0.4)
        self.assertLess(elapsed, 0.5 + SLACK)
        ok = fetch(gw.port, "GET", "/_test/echo")
        self.assertEqual(ok.status, 200)

    def test_connect_timeout_504(self):
        # A listener that never accepts, its queue full: further SYNs go unanswered.
        blackhole = socket.socket()
        blackhole.bind(("127.0.0.1", 0))
        blackhole.listen(0)
        self.addCleanup(blackhole.close)
        fillers = []
        for _ in range(4):
            s = socket.socket()
            s.setblocking(False)
            s.connect_ex(blackhole.getsockname())
            fillers.append(s)
            self.addCleanup(s.close)
        time.sleep(0.1)
        probe = socket.socket()
        probe.settimeout(0.3)
        self.addCleanup(probe.close)
        with self.assertRaises(OSError, msg="the blackhole accepted a connection; the test cannot work"):
            probe.connect(blackhole.getsockname())
            probe.send(b"x")
            probe.recv(1)
        gw, _ = self.gateway_for([f"127.0.0.1:{blackhole.getsockname()[1]}"])
        r, elapsed = self.timed(gw)
        fxtest.measure("connect timeout 504 after", f"{elapsed:.2f} s")
        self.assertProblem(r, 504)
        self.assertGreater(elapsed, 0.25)
        self.assertLess(elapsed, 0.3 + SLACK)
        self.assert_still_serving(gw)

    def test_connection_refused_502(self):
        gw, _ = self.gateway_for([f"127.0.0.1:{fxtest.free_port()}"])
        r, elapsed = self.timed(gw)
        self.assertProblem(r, 502)
        self.assertLess(elapsed, SLACK)
        self.assert_still_serving(gw)

    def test_upstream_reset_502(self):
        up = self.scripted(["rst"])
        gw, _ = self.gateway_for([up.address])
        r, _ = self.timed(gw)
        self.assertProblem(r, 502)
        self.assertEqual(len(up.requests), 1, "the request never reached the resetting upstream")
        self.assert_still_serving(gw)

    def test_upstream_closes_without_response_502(self):
        up = self.scripted(["close"])
        gw, _ = self.gateway_for([up.address])
        r, _ = self.timed(gw)
        self.assertProblem(r, 502)
        self.assert_still_serving(gw)

    def malformed(self, raw):
        up = self.scripted([raw, "close"])
        gw, _ = self.gateway_for([up.address])
        r, _ = self.timed(gw)
        self.assertProblem(r, 502, f"upstream sent {raw!r}")
        self.assertEqual(len(up.requests), 1)
        self.assert_still_serving(gw)

    def test_malformed_garbage_status_line_502(self):
        self.malformed(b"garbage\r\n\r\n")

    def test_malformed_bad_version_502(self):
        self.malformed(b"HTXP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    def test_malformed_bad_content_length_502(self):
        self.malformed(b"HTTP/1.1 200 OK\r\nContent-Length: abc\r\n\r\nok")

    def test_malformed_differing_content_length_502(self):
        self.malformed(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok!")

    def test_malformed_bare_lf_head_502(self):
        self.malformed(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")

    def test_invalid_chunk_never_delivered_as_complete(self):
        """The first chunk size is invalid. The gateway may have sent the head
        already (it streams), so we accept either a 502 problem, or a response
        whose chunked body ends without its last chunk (connection closed) —
        never a complete 200 response."""
        up = self.scripted([b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
                            "close"])
        gw, _ = self.gateway_for([up.address])
        c = self.client(gw.port)
        c.send(build_request("GET", "/bad/chunk"))
        try:
            r = c.read_response(timeout=5)
        except fxtest.ConnectionClosed as e:
            self.assertTrue(c.eof, str(e))  # truncated after the head: acceptable
        except (ValueError, AssertionError) as e:
            self.fail(f"the invalid chunk was forwarded as is: {e}; buffer {bytes(c.buf[:100])!r}")
        else:
            self.assertProblem(r, 502)
        self.assertTrue(c.wait_closed(3), "connection still open after a broken upstream body")
        self.assert_still_serving(gw)
