"""Limits: header bytes (431), body bytes (413), concurrent connections (503)."""

import time

import fxtest
from fxtest import build_request, fetch


class HeaderLimitTest(fxtest.FxTestCase):
    def test_headers_over_limit_431_under_limit_ok(self):
        up = self.recording(name="up")
        gw = self.gateway(self.config([up.address], limits={"max_header_bytes": 4096}))
        ok = fetch(gw.port, "GET", "/small", headers=[("X-Fill", "a" * 3000)])
        self.assertEqual(ok.status, 200, repr(ok))
        c = self.client(gw.port)
        c.send(build_request("GET", "/big", headers=[("X-Fill", "a" * 3000), ("X-More", "b" * 2000)]))
        self.assertProblem(c.read_response(), 431)
        self.assertTrue(c.wait_closed(3))
        self.assertEqual([q["target"] for q in up.requests], ["/small"])


class BodyLimitTest(fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.recording(name="up")
        self.gw = self.gateway(self.config([self.up.address], limits={"max_body_bytes": "1MiB"}))

    def test_content_length_over_limit_413_before_body(self):
        c = self.client(self.gw.port)
        # announce 2 MiB, send none of it: the answer must not wait for the body
        c.send(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Length: 2097152\r\n\r\n")
        t0 = time.monotonic()
        r = c.read_response(timeout=3)
        self.assertProblem(r, 413)
        self.assertLess(time.monotonic() - t0, 2)
        time.sleep(0.1)
        self.assertEqual(self.up.connections, 0)

    def test_content_length_at_limit_ok(self):
        """Control: exactly max_body_bytes goes through."""
        r = fetch(self.gw.port, "POST", "/upload", body=b"z" * (1 << 20), timeout=10)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(self.up.requests[0]["body_len"], 1 << 20)

    def test_chunked_over_limit_413(self):
        """The upstream answers only after a complete body, so no response
        has started when the limit is crossed: we assert a 413 problem, and
        that the upstream never received a complete request."""
        c = self.client(self.gw.port, timeout=10)
        c.send(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nTransfer-Encoding: chunked\r\n\r\n")
        piece = b"%x\r\n" % 65536 + b"q" * 65536 + b"\r\n"
        try:
            for _ in range(32):  # 2 MiB
                c.send(piece)
            c.send(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the gateway stopped reading once the limit was crossed
        r = c.read_response(timeout=5)
        self.assertProblem(r, 413)
        self.assertTrue(c.wait_closed(3))
        time.sleep(0.1)
        self.assertEqual(self.up.requests, [], "the oversized body was forwarded completely")


class ConnectionLimitTest(fxtest.FxTestCase):
    def test_third_connection_gets_503(self):
        up = self.recording(name="up")
        gw = self.gateway(self.config([up.address], limits={"max_connections": 2}, workers=2))
        time.sleep(0.3)  # let the gateway forget the readiness probe's connection
        held = []
        for i in range(2):
            c = self.client(gw.port)
            c.send(build_request("GET", f"/held/{i}"))
            self.assertEqual(c.read_response().status, 200)
            held.append(c)
        third = self.client(gw.port)
        third.send(build_request("GET", "/third"))
        self.assertProblem(third.read_response(), 503)
        self.assertTrue(third.wait_closed(3))
        self.assertNotIn("/third", [q["target"] for q in up.requests])
        # the held connections still work, and freeing one admits a new one
        held[0].send(build_request("GET", "/held/again"))
        self.assertEqual(held[0].read_response().status, 200)
        held[1].close()
        time.sleep(0.3)
        r = fetch(gw.port, "GET", "/after")
        self.assertEqual(r.status, 200, repr(r))
