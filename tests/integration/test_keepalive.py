"""Keep-alive on both sides: upstream pools, pipelining, HTTP/1.0 close."""

import time

import fxtest
from fxtest import build_request


class KeepAliveTest(fxtest.FxTestCase):
    def test_200_requests_one_upstream_connection(self):
        up = self.recording(name="pooled")
        gw = self.gateway(self.config([up.address], upstream={"keepalive": 8}))
        c = self.client(gw.port)
        for i in range(200):
            c.send(build_request("GET", f"/ka/{i}"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"pooled"), f"request {i}: {r!r}")
        self.assertEqual(len(up.requests), 200)
        self.assertEqual(up.connections, 1, "upstream connections were not reused")

    def test_keepalive_zero_opens_a_connection_per_request(self):
        up = self.recording(name="unpooled")
        gw = self.gateway(self.config([up.address], upstream={"keepalive": 0}))
        c = self.client(gw.port)
        for i in range(10):
            c.send(build_request("GET", f"/nk/{i}"))
            self.assertEqual(c.read_response().status, 200)
        self.assertEqual(len(up.requests), 10)
        self.assertEqual(up.connections, 10)
        self.assertEqual(sorted({q["conn"] for q in up.requests}), list(range(10)))

    def test_pipelined_requests_answered_in_order(self):
        mono = self.monolith()
        gw = self.gateway(self.config([mono.address]))
        c = self.client(gw.port)
        c.send(b"".join(build_request("GET", f"/_test/echo?n={i}") for i in range(5)))
        for i in range(5):
            r = c.read_response()
            self.assertEqual(r.status, 200, f"response {i}: {r!r}")
            self.assertEqual(r.json()["uri"], f"/_test/echo?n={i}")
        # the connection is still usable afterwards
        c.send(build_request("GET", "/_test/echo?n=after"))
        self.assertEqual(c.read_response().json()["uri"], "/_test/echo?n=after")

    def test_http10_without_keepalive_is_closed(self):
        up = self.recording(name="old")
        gw = self.gateway(self.config([up.address]))
        c = self.client(gw.port)
        c.send(b"GET /old HTTP/1.0\r\nHost: a.test\r\n\r\n")
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"old"), repr(r))
        self.assertTrue(c.wait_closed(3), "HTTP/1.0 connection without keep-alive stayed open")

    def test_http11_stays_open(self):
        """Control for the HTTP/1.0 case: an HTTP/1.1 connection is not closed after a response."""
        up = self.recording(name="new")
        gw = self.gateway(self.config([up.address]))
        c = self.client(gw.port)
        c.send(build_request("GET", "/new"))
        self.assertEqual(c.read_response().status, 200)
        self.assertFalse(c.wait_closed(0.5), "HTTP/1.1 connection closed after one response")

    def test_200_requests_with_nginx_upstream(self):
        page = b"<html>static page served by nginx</html>\n" * 20
        ng = self.nginx(files={"page.html": page})
        gw = self.gateway(self.config([ng.address], upstream={"keepalive": 8}))
        c = self.client(gw.port)
        for i in range(200):
            c.send(build_request("GET", f"/page.html?i={i}"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, page), f"request {i}: {r.status}")
        deadline = time.monotonic() + 3  # nginx logs a request after answering it
        lines = ng.log_lines()
        while len(lines) < 200 and time.monotonic() < deadline:
            time.sleep(0.02)
            lines = ng.log_lines()
        self.assertEqual(len(lines), 200, lines[-5:])
        connections = {l[0] for l in lines}
        self.assertEqual(len(connections), 1, f"nginx saw {len(connections)} connections")
        self.assertEqual(lines[-1][1], "200", "nginx's connection_requests of the last request")
