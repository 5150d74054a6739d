"""Proxying: methods through to the monolith, routing, 404 problems, header
rewriting, framing, Expect, Connection: close, round-robin, access log."""

import hashlib
import json
import os
import time
import uuid

import fxtest
from fxtest import build_request, fetch, hall


def echo_headers(doc):
    """The /_test/echo header list as [(name, value)]."""
    return [(h[0], h[1]) for h in doc["headers"]]


class MonolithProxyTest(fxtest.FxTestCase):
    """Requests through the gateway reach the real monolith and change its state."""

    def setUp(self):
        super().setUp()
        self.mono = self.monolith()
        self.gw = self.gateway(self.config([self.mono.address]))

    def direct(self, method, target, body=None, headers=None):
        return fetch(self.mono.port, method, target, headers=headers, body=body)

    def via(self, method, target, body=None, headers=None):
        return fetch(self.gw.port, method, target, headers=headers, body=body)

    def test_get_matches_direct(self):
        d = self.direct("GET", "/api/documents/1")
        g = self.via("GET", "/api/documents/1")
        self.assertEqual(d.status, 200, repr(d))
        self.assertEqual(g.status, 200, repr(g))
        self.assertEqual(g.json(), d.json())

    def test_put_changes_the_monolith(self):
        marker = uuid.uuid4().hex
        body = json.dumps({"title": marker, "body": "written through ficus"}).encode()
        r = self.via("PUT", "/api/documents/1", body=body, headers=[("Content-Type", "application/json")])
        self.assertIn(r.status, (200, 201, 204), repr(r))
        d = self.direct("GET", "/api/documents/1")
        self.assertEqual(d.status, 200, repr(d))
        self.assertIn(marker, d.body.decode())

    def test_post_creates(self):
        marker = uuid.uuid4().hex
        body = json.dumps({"title": marker, "body": "created through ficus"}).encode()
        r = self.via("POST", "/api/documents", body=body, headers=[("Content-Type", "application/json")])
        self.assertIn(r.status, (200, 201), repr(r))
        self.assertIn(marker, r.body.decode())
        doc = r.json()
        new_id = doc.get("id")
        self.assertIsNotNone(new_id, doc)
        d = self.direct("GET", f"/api/documents/{new_id}")
        self.assertEqual(d.status, 200, repr(d))
        self.assertIn(marker, d.body.decode())

    def test_delete_removes(self):
        self.assertEqual(self.direct("GET", "/api/documents/2").status, 200)
        r = self.via("DELETE", "/api/documents/2")
        self.assertIn(r.status, (200, 204), repr(r))
        d = self.direct("GET", "/api/documents/2")
        self.assertEqual(d.status, 404, repr(d))
        # the monolith's own 404 passes through unchanged (not a gateway problem)
        g = self.via("GET", "/api/documents/2")
        self.assertEqual(g.status, 404)
        self.assertEqual(g.body, d.body)


class RoutingTest(fxtest.FxTestCase):
    ROUTES = [
        ("doc-read", {"path": "/api/documents/{id}", "methods": ["GET"]}),
        ("doc-any", {"path": "/api/documents/{id}"}),
        ("get-only", {"path": "/get-only", "methods": ["GET"]}),
        ("exact", {"path": "/exact"}),
        ("prefix", {"prefix": "/pre/"}),
        ("vhost", {"prefix": "/", "host": "vhost.test"}),
        ("first", {"prefix": "/order/", "methods": ["GET"]}),
        ("second", {"prefix": "/order/deep/"}),
    ]

    def setUp(self):
        super().setUp()
        self.ups = {name: self.recording(name=name) for name, _ in self.ROUTES}
        cfg = {
            "workers": 1,
            "log": {"access": "off"},
            "upstreams": {name: {"targets": [u.address]} for name, u in self.ups.items()},
            "routes": [{"name": n, "match": m, "upstream": n} for n, m in self.ROUTES],
        }
        self.gw = self.gateway(cfg)

    def route_of(self, method, target, host="test.local", body=None):
        r = fetch(self.gw.port, method, target, host=host, body=body)
        if r.status == 404 and (r.header("content-type") or "").startswith("application/problem+json"):
            return None
        self.assertEqual(r.status, 200, f"{method} {target}: {r!r}")
        name = r.body.decode()
        self.assertEqual(self.ups[name].requests[-1]["target"], target)
        return name

    def test_path_template(self):
        self.assertEqual(self.route_of("GET", "/api/documents/7"), "doc-read")
        self.assertEqual(self.route_of("GET", "/api/documents/abc-9?x=1"), "doc-read")
        self.assertIsNone(self.route_of("GET", "/api/documents/7/more"))
        self.assertIsNone(self.route_of("GET", "/api/documents"))

    def test_methods_fall_through_to_next_route(self):
        self.assertEqual(self.route_of("POST", "/api/documents/7", body=b"{}"), "doc-any")
        self.assertEqual(self.route_of("DELETE", "/api/documents/7"), "doc-any")

    def test_methods_without_other_match_is_404(self):
        self.assertEqual(self.route_of("GET", "/get-only"), "get-only")
        self.assertIsNone(self.route_of("POST", "/get-only", body=b"x"))
        self.assertEqual(self.ups["get-only"].connections, 1)

    def test_exact_path(self):
        self.assertEqual(self.route_of("GET", "/exact"), "exact")
        self.assertEqual(self.route_of("GET", "/exact?q=1"), "exact")
        self.assertIsNone(self.route_of("GET", "/exact/"))
        self.assertIsNone(self.route_of("GET", "/exactly"))

    def test_prefix(self):
        self.assertEqual(self.route_of("GET", "/pre/"), "prefix")
        self.assertEqual(self.route_of("GET", "/pre/a/b"), "prefix")
        self.assertIsNone(self.route_of("GET", "/pre"))
        self.assertIsNone(self.route_of("GET", "/prefix"))

    def test_host(self):
        self.assertEqual(self.route_of("GET", "/anything", host="vhost.test"), "vhost")
        self.assertEqual(self.route_of("GET", "/anything", host="VHost.Test:8080"), "vhost")
        self.assertIsNone(self.route_of("GET", "/anything", host="other.test"))

    def test_first_match_wins(self):
        """'second' is more specific, but 'first' comes first in the file.
        (first is limited to GET so that second is not dead config, which
        the loader rightly refuses.)"""
        self.assertEqual(self.route_of("GET", "/order/deep/x"), "first")
        self.assertEqual(self.ups["second"].connections, 0)
        self.assertEqual(self.route_of("DELETE", "/order/deep/x"), "second")

    def test_404_problem(self):
        r = fetch(self.gw.port, "GET", "/nowhere/at/all")
        doc = self.assertProblem(r, 404)
        self.assertEqual(r.header("content-type").split(";")[0].strip(), "application/problem+json")
        self.assertEqual(len(r.header("x-request-id")), len(doc["request_id"]))
        self.assertTrue(all(u.connections == 0 for u in self.ups.values()))
        # a client-supplied id is the one reported
        r2 = fetch(self.gw.port, "GET", "/nowhere", headers=[("X-Request-Id", "req-404-check")])
        self.assertEqual(self.assertProblem(r2, 404)["request_id"], "req-404-check")


class HeaderTest(fxtest.FxTestCase):
    """What the upstream sees, via the monolith's /_test/echo."""

    def setUp(self):
        super().setUp()
        self.mono = self.monolith()
        self.gw = self.gateway(self.config([self.mono.address]))

    def echo(self, headers=None, host="front.test:8443", target="/_test/echo", method="GET", body=None):
        c = self.client(self.gw.port)
        c.send(build_request(method, target, headers, body, host=host))
        r = c.read_response(method=method)
        self.assertEqual(r.status, 200, repr(r))
        return r, r.json()

    def test_hop_by_hop_removed(self):
        _, doc = self.echo([
            ("Connection", "keep-alive, X-Drop-Me, x-drop-too"),
            ("Keep-Alive", "timeout=5"),
            ("Proxy-Connection", "keep-alive"),
            ("TE", "trailers"),
            ("Trailer", "X-Checksum"),
            ("Upgrade", "h2c"),
            ("X-Drop-Me", "1"),
            ("X-Drop-Too", "2"),
            ("X-Keep", "3"),
        ])
        h = echo_headers(doc)
        for name in ("Keep-Alive", "Proxy-Connection", "TE", "Trailer", "Upgrade", "X-Drop-Me", "X-Drop-Too"):
            self.assertEqual(hall(h, name), [], f"{name} forwarded: {h}")
        for v in hall(h, "Connection"):
            self.assertIn(v.lower(), ("keep-alive", "close"), f"client Connection tokens forwarded: {h}")
        self.assertEqual(hall(h, "X-Keep"), ["3"])

    def test_x_forwarded_for_appended(self):
        _, doc = self.echo([("X-Forwarded-For", "1.2.3.4")])
        self.assertEqual(hall(echo_headers(doc), "X-Forwarded-For"), ["1.2.3.4, 127.0.0.1"])
        _, doc = self.echo()
        self.assertEqual(hall(echo_headers(doc), "X-Forwarded-For"), ["127.0.0.1"])

    def test_x_forwarded_proto_and_host_replaced(self):
        _, doc = self.echo([("X-Forwarded-Proto", "https"), ("X-Forwarded-Host", "evil.test")])
        h = echo_headers(doc)
        self.assertEqual(hall(h, "X-Forwarded-Proto"), ["http"])
        self.assertEqual(hall(h, "X-Forwarded-Host"), ["front.test:8443"])
        _, doc = self.echo(host="plain.test")
        h = echo_headers(doc)
        self.assertEqual(hall(h, "X-Forwarded-Proto"), ["http"])
        self.assertEqual(hall(h, "X-Forwarded-Host"), ["plain.test"])

    def test_request_id_generated_and_returned(self):
        r, doc = self.echo()
        rid = r.header("x-request-id")
        self.assertTrue(rid, repr(r))
        self.assertEqual(hall(echo_headers(doc), "X-Request-Id"), [rid])
        r2, doc2 = self.echo()
        self.assertNotEqual(r2.header("x-request-id"), rid)

    def test_request_id_from_client_kept(self):
        r, doc = self.echo([("X-Request-Id", "client-chosen-42")])
        self.assertEqual(r.header("x-request-id"), "client-chosen-42")
        self.assertEqual(hall(echo_headers(doc), "X-Request-Id"), ["client-chosen-42"])

    def test_traceparent_and_host_unchanged(self):
        tp = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
        _, doc = self.echo([("traceparent", tp), ("tracestate", "vendor=1")], host="Front.Test:8443")
        h = echo_headers(doc)
        self.assertEqual(hall(h, "traceparent"), [tp])
        self.assertEqual(hall(h, "Host"), ["Front.Test:8443"])
        self.assertEqual(doc["method"], "GET")
        self.assertEqual(doc["uri"], "/_test/echo")

    def test_body_arrives_intact(self):
        body = os.urandom(100000)
        _, doc = self.echo(method="POST", body=body)
        self.assertEqual(doc["body_len"], len(body))
        self.assertEqual(doc["body_sha256"], hashlib.sha256(body).hexdigest())


class FramingTest(fxtest.FxTestCase):
    """Raw bytes at the upstream (RecordingUpstream)."""

    def setUp(self):
        super().setUp()
        self.up = self.recording(name="up")
        self.gw = self.gateway(self.config([self.up.address], routes=[
            {"name": "x", "match": {"prefix": "/x"}, "upstream": "up"}]))

    def test_content_length_normalized(self):
        c = self.client(self.gw.port)
        c.send(b"POST /x HTTP/1.1\r\nHost: a.test\r\nContent-Length: 010\r\n\r\n0123456789")
        r = c.read_response()
        self.assertEqual(r.status, 200, repr(r))
        req = self.up.requests[0]
        self.assertEqual(hall(req["headers"], "Content-Length"), ["10"], req["head"])
        self.assertEqual(req["body"], b"0123456789")

    def test_expect_100_continue(self):
        c = self.client(self.gw.port)
        c.send(b"PUT /x/doc HTTP/1.1\r\nHost: a.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        interim = c.read_response(timeout=3)
        self.assertEqual(interim.status, 100, repr(interim))
        self.assertEqual(self.up.requests, [])
        c.send(b"hello world")
        final = c.read_response()
        self.assertEqual(final.status, 200, repr(final))
        self.assertEqual(self.up.requests[0]["body"], b"hello world")
        self.assertNotIn(b"expect", self.up.raw_all().lower())
        self.assertNotIn(b"100-continue", self.up.raw_all().lower())

    def test_expect_on_unroutable_gets_final_status_only(self):
        c = self.client(self.gw.port)
        c.send(b"PUT /nope HTTP/1.1\r\nHost: a.test\r\nContent-Length: 11\r\nExpect: 100-continue\r\n\r\n")
        r = c.read_response(timeout=3)
        self.assertProblem(r, 404)
        self.assertEqual(self.up.connections, 0)

    def test_nothing_after_connection_close_is_forwarded(self):
        c = self.client(self.gw.port)
        c.send(b"GET /x/1 HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n"
               b"GET /x/2 HTTP/1.1\r\nHost: a.test\r\n\r\n")
        r = c.read_response()
        self.assertEqual(r.status, 200, repr(r))
        self.assertTrue(c.wait_closed(3), "connection not closed after Connection: close")
        self.assertEqual(c.buf, bytearray(), "a second response was sent")
        time.sleep(0.1)
        self.assertEqual([q["target"] for q in self.up.requests], ["/x/1"])
        self.assertNotIn(b"/x/2", self.up.raw_all())


class RoundRobinTest(fxtest.FxTestCase):
    def test_two_targets_share_requests(self):
        a = self.recording(name="a")
        b = self.recording(name="b")
        gw = self.gateway(self.config([a.address, b.address]))
        c = self.client(gw.port)
        seen = []
        for i in range(10):
            c.send(build_request("GET", f"/rr/{i}"))
            r = c.read_response()
            self.assertEqual(r.status, 200, repr(r))
            seen.append(r.body.decode())
        self.assertEqual(len(a.requests) + len(b.requests), 10)
        self.assertTrue(4 <= len(a.requests) <= 6, f"a={len(a.requests)} b={len(b.requests)} order={seen}")
        # alternation, not just a split
        self.assertNotIn("a,a,a", ",".join(seen))
        self.assertNotIn("b,b,b", ",".join(seen))


class AccessLogTest(fxtest.FxTestCase):
    KEYS = ("time", "request_id", "client", "method", "path", "route", "upstream", "status",
            "bytes_in", "bytes_out", "duration_us")

    def test_one_json_line_per_request(self):
        up = self.recording(name="up", body=b"x" * 1234)
        log_path = os.path.join(self.tmp, "access.log")
        gw = self.gateway(self.config([up.address], log={"access": log_path}, routes=[
            {"name": "api", "match": {"prefix": "/api/"}, "upstream": "up"}]))
        r1 = fetch(gw.port, "GET", "/api/one?q=1")
        r2 = fetch(gw.port, "POST", "/api/two", body=b"b" * 500)
        r3 = fetch(gw.port, "GET", "/missing")
        self.assertEqual((r1.status, r2.status, r3.status), (200, 200, 404))
        lines = []
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            lines = [l for l in fxtest.read_text(log_path).splitlines() if l.strip()]
            if len(lines) >= 3:
                break
            time.sleep(0.05)
        self.assertEqual(len(lines), 3, lines)
        entries = [json.loads(l) for l in lines]
        for e in entries:
            for k in self.KEYS:
                self.assertIn(k, e, e)
            self.assertTrue(str(e["client"]).startswith("127.0.0.1"), e)
            self.assertIsInstance(e["duration_us"], int, e)
            self.assertGreaterEqual(e["duration_us"], 0)
            self.assertTrue(e["time"], e)
        by_id = {e["request_id"]: e for e in entries}
        e1 = by_id[r1.header("x-request-id")]
        self.assertEqual((e1["method"], e1["route"], e1["status"]), ("GET", "api", 200))
        self.assertIn(e1["path"], ("/api/one", "/api/one?q=1"), e1)
        self.assertIn(e1["upstream"], ("up", up.address), e1)
        self.assertGreaterEqual(e1["bytes_out"], 1234)
        e2 = by_id[r2.header("x-request-id")]
        self.assertEqual((e2["method"], e2["path"], e2["status"]), ("POST", "/api/two", 200))
        self.assertGreaterEqual(e2["bytes_in"], 500)
        e3 = by_id[r3.header("x-request-id")]
        self.assertEqual((e3["method"], e3["path"], e3["status"]), ("GET", "/missing", 404))
