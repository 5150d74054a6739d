"""Per-route request metrics (issue 7): ficus_requests_total{route,upstream,code},
ficus_request_duration_seconds{route}, ficus_upstream_errors_total{upstream,kind},
GET /admin/routes and GET /admin/upstreams.

The gateway runs 2 workers, so every figure checked here is a sum over workers
(fresh client connections spread over the workers' SO_REUSEPORT sockets)."""

import os
import time

import fxtest
from fxtest import build_request, fetch, free_port
from reloadkit import AdminMixin, wait_until

NONE = "(none)"
HS_SECRET = "metrics-test-secret-0123456789abcdef"


class HalfFailingUpstream(fxtest.AnsweringUpstream):
    """Answers 500 and 200 in turn (one counter for all connections), so exactly half of an
    even number of requests fail."""

    def __init__(self, test=None):
        self.n = 0
        super().__init__(test)

    def answer(self, req):
        with self.lock:
            self.n += 1
            status = 500 if self.n % 2 else 200
        return status, [], b"half"


def series(m, name, **labels):
    """The value of one sample, 0 when absent (a counter that never moved)."""
    key = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return m.get(key, 0)


class MetricsBase(AdminMixin, fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        os.environ["FICUS_TEST_METRICS_SECRET"] = HS_SECRET
        self.addCleanup(os.environ.pop, "FICUS_TEST_METRICS_SECRET", None)
        self.ok = self.recording(name="ok")
        self.ok2 = self.recording(name="ok2")
        self.half = HalfFailingUpstream(self)
        self.dead = f"127.0.0.1:{free_port()}"  # nobody listens: connect refused
        self.admin_port = free_port()

    def cfg(self, routes=None):
        return {
            "admin": {"address": f"127.0.0.1:{self.admin_port}"},
            "workers": 2,
            "auth": {"issuers": [{"issuer": "https://issuer.test", "audiences": ["ficus"],
                                  "keys": [{"kid": "k1", "alg": "HS256",
                                            "secret_env": "FICUS_TEST_METRICS_SECRET"}]}]},
            "upstreams": {
                "ok": {"targets": [self.ok.address, self.ok2.address], "keepalive": 8,
                       "connect_timeout": "1500ms", "timeout": "7s"},
                "half": {"targets": [self.half.address]},
                "dead": {"targets": [self.dead], "connect_timeout": "1s"},
            },
            "routes": routes or [
                {"name": "ok", "match": {"prefix": "/ok/"}, "upstream": "ok", "auth": "none"},
                {"name": "half", "match": {"prefix": "/half/"}, "upstream": "half", "auth": "none"},
                {"name": "dead", "match": {"prefix": "/dead/"}, "upstream": "dead", "auth": "none"},
                {"name": "secure", "match": {"prefix": "/secure/"}, "upstream": "ok"},
                {"name": "split", "match": {"prefix": "/split/"}, "auth": "none",
                 "split": [{"upstream": "ok", "weight": 50}, {"upstream": "half", "weight": 50}]},
            ],
            "log": {"access": "off"},
        }

    def get(self, path, status):
        r = fetch(self.gw.port, "GET", path, timeout=10)
        self.assertEqual(r.status, status, f"GET {path}: {r!r}")
        return r

    def settle(self):
        """A worker counts a request just after its answer is written, so a reader that has its answer
        can be a moment ahead of the counters: wait until the request count stops moving (≤ 2 s)."""
        def total():
            m = AdminMixin.metrics(self, self.gw)
            return sum(v for k, v in m.items() if k.startswith("ficus_requests_total{"))
        last, deadline = total(), time.monotonic() + 2
        while time.monotonic() < deadline:
            time.sleep(0.05)
            now = total()
            if now == last:
                return
            last = now

    def metrics(self, gw, port=None):
        if gw is getattr(self, "gw", None) and port is None:
            self.settle()
        return AdminMixin.metrics(self, gw, port)

    def routes(self):
        self.settle()
        r = self.admin(self.gw, "/admin/routes")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.header("content-type"), "application/json")
        doc = r.json()
        return doc, {x["name"]: x for x in doc["routes"]}

    def upstreams(self):
        r = self.admin(self.gw, "/admin/upstreams")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.header("content-type"), "application/json")
        doc = r.json()
        return doc, {x["name"]: x for x in doc["upstreams"]}


class RequestMetricsTest(MetricsBase):
    def setUp(self):
        super().setUp()
        self.ws = self.ws_echo()
        cfg = self.cfg()
        cfg["upstreams"]["ws"] = {"targets": [self.ws.address]}
        cfg["routes"].append({"name": "ws", "match": {"prefix": "/ws"}, "upstream": "ws", "auth": "none"})
        self.gw = self.gateway(cfg)

    def test_requests_total_by_route_upstream_and_code(self):
        for i in range(5):
            self.get(f"/ok/{i}", 200)
        for i in range(3):
            self.get(f"/nope/{i}", 404)
        for i in range(2):
            self.get(f"/dead/{i}", 502)
        for i in range(2):
            self.get(f"/secure/{i}", 401)
        # a worker counts a request just after its answer is written: the last one may still be on its way
        m = wait_until(lambda: (lambda mm: mm if sum(v for k, v in mm.items()
                                                     if k.startswith("ficus_requests_total{")) >= 12 else None)(
            self.metrics(self.gw)), 5) or self.metrics(self.gw)
        self.assertEqual(series(m, "ficus_requests_total", route="ok", upstream="ok", code="200"), 5)
        self.assertEqual(series(m, "ficus_requests_total", route=NONE, upstream=NONE, code="404"), 3)
        self.assertEqual(series(m, "ficus_requests_total", route="dead", upstream="dead", code="502"), 2)
        # refused before forwarding: no upstream
        self.assertEqual(series(m, "ficus_requests_total", route="secure", upstream=NONE, code="401"), 2)
        self.assertEqual(series(m, "ficus_requests_total", route="secure", upstream="ok", code="401"), 0)
        total = sum(v for k, v in m.items() if k.startswith("ficus_requests_total{"))
        self.assertEqual(total, 12, {k: v for k, v in m.items() if k.startswith("ficus_requests_total{")})

        # the duration histogram counts each request once, per route
        for route, n in (("ok", 5), (NONE, 3), ("dead", 2), ("secure", 2)):
            count = series(m, "ficus_request_duration_seconds_count", route=route)
            self.assertEqual(count, n, route)
            self.assertEqual(m[f'ficus_request_duration_seconds_bucket{{route="{route}",le="+Inf"}}'], n, route)
            buckets = [v for k, v in m.items()
                       if k.startswith(f'ficus_request_duration_seconds_bucket{{route="{route}",')]
            self.assertEqual(buckets, sorted(buckets), f"{route}: buckets not cumulative")
            self.assertGreater(series(m, "ficus_request_duration_seconds_sum", route=route), 0, route)
        # and by the upstream that answered: the gateway's own answers (404, 401) are not in it
        self.assertEqual(series(m, "ficus_upstream_request_duration_seconds_count", upstream="ok"), 5)
        self.assertEqual(series(m, "ficus_upstream_request_duration_seconds_count", upstream="dead"), 2)
        self.assertEqual(series(m, "ficus_upstream_errors_total", upstream="dead", kind="connect"), 2)
        self.assertEqual(series(m, "ficus_upstream_errors_total", upstream="ok", kind="connect"), 0)
        self.assertIn('ficus_upstream_errors_total{upstream="ok",kind="connect"}', m, "zeros are exported too")

        text = self.admin(self.gw, "/metrics").body.decode()
        for name, kind in (("ficus_requests_total", "counter"), ("ficus_request_duration_seconds", "histogram"),
                           ("ficus_upstream_errors_total", "counter")):
            self.assertIn(f"# TYPE {name} {kind}\n", text)
            self.assertIn(f"# HELP {name} ", text)

    def test_duration_runs_from_the_first_byte_of_the_head(self):
        c = self.client(self.gw.port, timeout=10)
        req = build_request("GET", "/ok/slow-client")
        c.send(req[:10])
        time.sleep(0.4)
        c.send(req[10:])
        self.assertEqual(c.read_response().status, 200)
        c.close()
        m = self.metrics(self.gw)
        self.assertEqual(series(m, "ficus_request_duration_seconds_count", route="ok"), 1)
        self.assertEqual(m['ficus_request_duration_seconds_bucket{route="ok",le="0.25"}'], 0,
                         "the head took 0.4 s to arrive")
        self.assertEqual(m['ficus_request_duration_seconds_bucket{route="ok",le="1"}'], 1)
        self.assertGreaterEqual(series(m, "ficus_request_duration_seconds_sum", route="ok"), 0.39)
        doc, routes = self.routes()
        p99 = routes["ok"]["sides"][0]["last_minute"]["p99_seconds"]
        self.assertLessEqual(abs(p99 / 0.4 - 1), 0.2, f"p99 {p99} s for one request of ~0.4 s")

    def test_admin_routes_after_a_burst(self):
        for i in range(200):
            fetch(self.gw.port, "GET", f"/half/{i}", timeout=10)
        for i in range(3):
            self.get(f"/ok/{i}", 200)
        for i in range(4):
            self.get(f"/nope/{i}", 404)
        for i in range(100):
            fetch(self.gw.port, "GET", f"/split/{i}", timeout=10)
        self.get("/secure/x", 401)
        # a worker counts a request just after its answer is written: wait for the last one
        wait_until(lambda: self.routes()[1]["secure"]["total"]["requests"] >= 1, 5, 0.05)
        doc, routes = self.routes()
        self.assertEqual([x["name"] for x in doc["routes"]], ["ok", "half", "dead", "secure", "split", "ws"])
        self.assertGreater(doc["window_seconds"], 0)
        self.assertLessEqual(doc["window_seconds"], 60)
        self.assertEqual(doc["uncounted"], 0)

        half = routes["half"]
        self.assertEqual(half["match"], {"prefix": "/half/"})
        self.assertEqual(half["upstream"], "half")
        self.assertNotIn("split", half)
        self.assertEqual(len(half["sides"]), 1)
        side = half["sides"][0]
        self.assertEqual(side["upstream"], "half")
        lm = side["last_minute"]
        self.assertEqual(lm["requests"], 200)
        self.assertGreater(lm["requests_per_second"], 0)
        self.assertAlmostEqual(lm["requests_per_second"], 200 / doc["window_seconds"], delta=0.5)
        self.assertAlmostEqual(lm["error_rate"], 0.5, delta=0.01)
        self.assertEqual(lm["errors"], 100)
        self.assertIsNotNone(lm["p99_seconds"])
        self.assertGreater(lm["p99_seconds"], 0)
        self.assertLess(lm["p99_seconds"], 5)
        self.assertEqual(side["total"], {"requests": 200, "errors": 100})
        self.assertEqual(half["total"], {"requests": 200, "errors": 100})
        self.assertEqual(half["gateway"]["total"], {"requests": 0, "errors": 0})

        # a route without traffic: no rate to speak of
        dead = routes["dead"]["sides"][0]["last_minute"]
        self.assertEqual((dead["requests"], dead["requests_per_second"], dead["error_rate"], dead["p99_seconds"]),
                         (0, 0, None, None))
        # the gateway's own answers are the route's, not a side's
        secure = routes["secure"]
        self.assertEqual(secure["sides"][0]["total"]["requests"], 0)
        self.assertEqual(secure["gateway"]["total"], {"requests": 1, "errors": 0})
        self.assertEqual(secure["total"]["requests"], 1)
        self.assertEqual(doc["unrouted"]["total"], {"requests": 4, "errors": 0})
        self.assertEqual(doc["unrouted"]["last_minute"]["requests"], 4)

        # a split: each side with its weight and its own figures
        split = routes["split"]
        self.assertEqual(split["split"], [{"upstream": "ok", "weight": 50}, {"upstream": "half", "weight": 50}])
        sides = {s["upstream"]: s for s in split["sides"]}
        self.assertEqual(set(sides), {"ok", "half"})
        self.assertEqual(sides["ok"]["weight"], 50)
        n_ok = sides["ok"]["last_minute"]["requests"]
        n_half = sides["half"]["last_minute"]["requests"]
        self.assertEqual(n_ok + n_half, 100)
        self.assertGreater(n_ok, 10)
        self.assertGreater(n_half, 10)
        self.assertEqual(sides["ok"]["last_minute"]["error_rate"], 0)
        self.assertGreater(sides["half"]["last_minute"]["error_rate"], 0.3)
        self.assertEqual(split["last_minute"]["requests"], 100)
        self.assertEqual(split["last_minute"]["errors"],
                         sides["half"]["last_minute"]["errors"])

        # the upstream view: every route's requests to it
        udoc, ups = self.upstreams()
        self.assertEqual(ups["half"]["total"]["requests"], 200 + n_half)
        self.assertEqual(ups["ok"]["total"]["requests"], 3 + n_ok)
        self.assertEqual(ups["half"]["last_minute"]["requests"], 200 + n_half)
        self.assertAlmostEqual(ups["half"]["last_minute"]["error_rate"], 0.5, delta=0.01)

    def test_websocket_counts_at_the_101(self):
        c = self.client(self.gw.port, timeout=10)
        c.send(build_request("GET", "/ws", [("Upgrade", "websocket"), ("Connection", "Upgrade"),
                                            ("Sec-WebSocket-Key", "dGhlIHNhbXBsZSBub25jZQ=="),
                                            ("Sec-WebSocket-Version", "13")]))
        first, _, _ = c.read_head()
        self.assertIn(" 101 ", first)
        time.sleep(0.5)  # the tunnel stays open: its life is not the request's latency
        m = self.metrics(self.gw)
        self.assertEqual(series(m, "ficus_requests_total", route="ws", upstream="ws", code="101"), 1)
        self.assertEqual(m['ficus_request_duration_seconds_bucket{route="ws",le="0.25"}'], 1)
        c.close()
        time.sleep(0.3)
        m = self.metrics(self.gw)
        self.assertEqual(series(m, "ficus_requests_total", route="ws", upstream="ws", code="101"), 1,
                         "the tunnel's end is not a second request")

    def test_admin_upstreams_lists_targets_and_errors(self):
        for i in range(3):
            self.get(f"/dead/{i}", 502)
        self.get("/ok/1", 200)
        doc, ups = self.upstreams()
        self.assertEqual([x["name"] for x in doc["upstreams"]], ["ok", "half", "dead", "ws"])
        ok = ups["ok"]
        self.assertEqual(ok["targets"], [self.ok.address, self.ok2.address])
        self.assertEqual((ok["keepalive"], ok["connect_timeout_ms"], ok["timeout_ms"]), (8, 1500, 7000))
        self.assertEqual(ok["total"], {"requests": 1, "errors": 0})
        dead = ups["dead"]
        self.assertEqual(dead["targets"], [self.dead])
        self.assertEqual(dead["last_minute"]["requests"], 3)
        self.assertEqual(dead["last_minute"]["error_rate"], 1)
        self.assertEqual(dead["errors_by_kind"]["connect"], 3)
        self.assertEqual(sum(dead["errors_by_kind"].values()), 3)
        self.assertEqual(set(dead["errors_by_kind"]),
                         {"connect", "connect_timeout", "reset", "timeout", "malformed", "internal", "overloaded", "tls",
                          "other"})
        self.assertEqual(ups["half"]["last_minute"]["p99_seconds"], None)

    def test_wrong_method(self):
        for path in ("/admin/routes", "/admin/upstreams"):
            r = self.admin(self.gw, path, "POST")
            self.assertEqual(r.status, 405, f"POST {path}: {r!r}")


class MetricsReloadTest(MetricsBase):
    def test_counts_survive_a_reload_that_keeps_the_route(self):
        self.gw = self.gateway(self.cfg())
        for i in range(6):
            self.get(f"/ok/{i}", 200)
        for i in range(2):
            self.get(f"/dead/{i}", 502)
        before = self.metrics(self.gw)
        self.assertEqual(series(before, "ficus_requests_total", route="ok", upstream="ok", code="200"), 6)

        # routes reordered, "dead" removed, a new route first; "ok" kept
        cfg = self.cfg(routes=[
            {"name": "half", "match": {"prefix": "/half/"}, "upstream": "half", "auth": "none"},
            {"name": "ok", "match": {"prefix": "/ok/"}, "upstream": "ok", "auth": "none"},
        ])
        del cfg["upstreams"]["dead"]
        self.gw.write_config(cfg)
        r, body = self.post_reload(self.gw)
        self.assertEqual(r.status, 200, body)
        # the workers adopt the snapshot at their next loop turn; then the removed names are gone
        mine = ("ficus_requests_total", "ficus_request_duration_seconds", "ficus_upstream_errors_total")
        gone = wait_until(lambda: not [k for k in self.metrics(self.gw) if k.startswith(mine) and '"dead"' in k], 5)
        self.assertTrue(gone, "a removed route or upstream is still reported")
        m = self.metrics(self.gw)
        self.assertEqual(series(m, "ficus_requests_total", route="ok", upstream="ok", code="200"), 6,
                         "the reload lost the route's counts")
        self.assertEqual(series(m, "ficus_request_duration_seconds_count", route="ok"), 6)
        for i in range(4):
            self.get(f"/ok/{i}", 200)
        m = self.metrics(self.gw)
        self.assertEqual(series(m, "ficus_requests_total", route="ok", upstream="ok", code="200"), 10)
        doc, routes = self.routes()
        self.assertEqual([x["name"] for x in doc["routes"]], ["half", "ok"])
        self.assertEqual(routes["ok"]["total"]["requests"], 10)
        self.assertEqual(routes["ok"]["sides"][0]["last_minute"]["requests"], 10)
        udoc, ups = self.upstreams()
        self.assertEqual(ups["ok"]["total"]["requests"], 10)
        self.assertNotIn("dead", ups)
