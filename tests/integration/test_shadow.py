"""Shadow traffic (routes[].shadow, issue 7) through a real gateway process.

A route `r` forwards to `primary` and copies sampled requests to `shadow`.
Both are PathUpstreams that answer by path from a table, so a test decides
which answers differ (status, a header, the JSON body) and which only look
different (reordered keys, an ignored path). The shadow's answer is compared
off the client's path, so the counters are read with wait_until.

The gateway runs 2 workers: counters and pairs are sums over workers."""

import json
import time

import fxtest
from fxtest import build_request, fetch, free_port
from reloadkit import AdminMixin, wait_until

J = [("Content-Type", "application/json")]


class PathUpstream(fxtest.AnsweringUpstream):
    """Answers each request from `table` by path: (status, [(header, value)], body); the
    default for other paths. Records (method, target, body) of every request."""

    def __init__(self, test, table=None, default=(200, J, b'{"ok":true}'), delay=0.0):
        self.table = table or {}
        self.default = default
        self.delay = delay
        self.requests = []
        super().__init__(test)

    def answer(self, req):
        with self.lock:
            self.requests.append((req["method"], req["target"], bytes(req["body"])))
        if self.delay:
            time.sleep(self.delay)
        return self.table.get(req["target"].split("?")[0], self.default)

    def count(self):
        with self.lock:
            return len(self.requests)


def series(m, name, **labels):
    key = name + "{" + ",".join(f'{k}="{v}"' for k, v in labels.items()) + "}"
    return m.get(key, 0)


class ShadowTest(AdminMixin, fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.admin_port = free_port()

    def start(self, primary, shadow_target, shadow=None, route=None, shadow_timeout="1s", workers=2):
        sh = {"upstream": "shadow", "percent": 100}
        sh.update(shadow or {})
        r = {"name": "r", "match": {"prefix": "/"}, "upstream": "primary", "shadow": sh}
        r.update(route or {})
        cfg = {"workers": workers,
               "upstreams": {"primary": {"targets": [primary.address]},
                             "shadow": {"targets": [shadow_target], "timeout": shadow_timeout,
                                        "connect_timeout": "1s"}},
               "routes": [r],
               "admin": {"address": f"127.0.0.1:{self.admin_port}"},
               "log": {"access": "off"}}
        return self.gateway(cfg)

    def shadow_metrics(self, gw):
        m = self.metrics(gw)
        out = {"requests": series(m, "ficus_shadow_requests_total", route="r"),
               "skipped": series(m, "ficus_shadow_skipped_total", route="r"),
               "too_large": series(m, "ficus_shadow_body_too_large_total", route="r")}
        for k in ("status", "headers", "body"):
            out["mismatch_" + k] = series(m, "ficus_shadow_mismatches_total", route="r", kind=k)
        for k in ("connect", "timeout", "reset", "malformed"):
            out["error_" + k] = series(m, "ficus_shadow_errors_total", route="r", kind=k)
        return out

    def wait_metrics(self, gw, want, timeout=5.0):
        """Waits until every key of `want` has its value; then checks the others are 0."""
        last = {}

        def check():
            last.update(self.shadow_metrics(gw))
            return all(last[k] == v for k, v in want.items())

        wait_until(check, timeout)
        self.assertTrue(all(last[k] == v for k, v in want.items()), f"want {want}, got {last}")
        for k, v in last.items():
            if k not in want:
                self.assertEqual(v, 0, f"{k}: {last}")
        return last

    # ---- the client never notices ----------------------------------------------------------

    def test_hanging_shadow_changes_nothing_for_the_client(self):
        primary = PathUpstream(self, default=(201, J + [("X-Side", "primary")], b'{"who":"primary"}'))
        hang = self.scripted(["hang"])
        gw = self.start(primary, hang.address)
        for i in range(4):
            t0 = time.monotonic()
            r = fetch(gw.port, "GET", f"/h/{i}")
            took = time.monotonic() - t0
            self.assertEqual(r.status, 201, repr(r))
            self.assertEqual(r.body, b'{"who":"primary"}')
            self.assertEqual(r.header("x-side"), "primary")
            self.assertLess(took, 0.5, "the client waited for the hanging shadow")
        # each copy ends with upstreams.timeout (1s) of the shadow: counted as a timeout, never compared
        self.wait_metrics(gw, {"requests": 4, "error_timeout": 4}, timeout=6)
        # a copy still out when the gateway stops: the worker lets go of it (the sanitizers check the stop)
        self.assertEqual(fetch(gw.port, "GET", "/last").status, 201)
        wait_until(lambda: len(hang.requests) == 5, 2)
        gw.stop()

    def test_copies_out_are_bounded_per_worker(self):
        primary = PathUpstream(self)
        hang = self.scripted(["hang"])
        gw = self.start(primary, hang.address, shadow_timeout="20s", workers=1)
        c = self.client(gw.port)
        for i in range(260):
            c.send(build_request("GET", f"/b/{i}"))
            self.assertEqual(c.read_response().status, 200)
        # 256 copies wait for the hanging shadow; the 4 after them are not copied
        self.wait_metrics(gw, {"requests": 256, "skipped": 4})
        gw.stop()  # with every copy still out

    def test_refused_shadow_changes_nothing_for_the_client(self):
        primary = PathUpstream(self, default=(200, J, b'{"a":1}'))
        gw = self.start(primary, f"127.0.0.1:{free_port()}")
        for i in range(3):
            r = fetch(gw.port, "GET", f"/x/{i}")
            self.assertEqual((r.status, r.body), (200, b'{"a":1}'), repr(r))
        self.wait_metrics(gw, {"requests": 3, "error_connect": 3})

    def test_slow_shadow_does_not_add_latency(self):
        primary = PathUpstream(self, default=(200, J, b'{"a":1}'))
        slow = PathUpstream(self, default=(200, J, b'{"a":1}'), delay=1.0)
        gw = self.start(primary, slow.address, shadow_timeout="5s")
        c = self.client(gw.port)
        for i in range(3):  # one keep-alive connection: the next request does not wait either
            t0 = time.monotonic()
            c.send(build_request("GET", f"/s/{i}"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b'{"a":1}'), repr(r))
            self.assertLess(time.monotonic() - t0, 0.5, "the client waited for the slow shadow")
        # the shadow answered the same, later: compared, no mismatch
        self.wait_metrics(gw, {"requests": 3}, timeout=8)
        wait_until(lambda: slow.count() == 3, 5)

    def test_the_exchange_outlives_the_client_and_a_reload(self):
        primary = PathUpstream(self, default=(200, J, b'{"a":1}'))
        slow = PathUpstream(self, default=(500, J, b'{"a":1}'), delay=0.6)
        gw = self.start(primary, slow.address, shadow_timeout="5s")
        for i in range(3):
            r = fetch(gw.port, "GET", f"/gone/{i}")  # closes its connection at once
            self.assertEqual(r.status, 200, repr(r))
        # a reload that keeps the route while the copies are out, and one that drops the shadow upstream
        self.assertEqual(self.post_reload(gw)[0].status, 200)
        self.wait_metrics(gw, {"requests": 3, "mismatch_status": 3}, timeout=8)
        cfg = json.loads(json.dumps(gw.config))
        del cfg["routes"][0]["shadow"]
        del cfg["upstreams"]["shadow"]
        self.assertEqual(fetch(gw.port, "GET", "/again").status, 200)
        gw.write_config(cfg)
        self.assertEqual(self.post_reload(gw)[0].status, 200)
        self.assertEqual(self.admin(gw, "/admin/shadow/r").status, 404)
        self.assertEqual(fetch(gw.port, "GET", "/after").status, 200)
        m = self.metrics(gw)
        self.assertFalse([k for k in m if k.startswith("ficus_shadow_")], "shadow metrics of a route without shadow")

    # ---- comparison ----------------------------------------------------------------------------

    def mismatch_setup(self):
        same = (200, J, b'{"a":1,"b":[1,2],"ts":"2026-01-01"}')
        primary = PathUpstream(self, table={
            "/same": same,
            "/reordered": (200, J, b'{"a":1,"b":{"x":1,"y":2}}'),
            "/ignored": same,
            "/status": (200, J, b'{"a":1}'),
            "/header": (200, J + [("X-Version", "1")], b'{"a":1}'),
            "/body": (200, J, b'{"a":1,"n":[1,2,3]}'),
        })
        shadow = PathUpstream(self, table={
            "/same": same,
            "/reordered": (200, J, b'{"b":{"y":2.0,"x":1},"a":1}'),
            "/ignored": (200, J, b'{"ts":"2026-07-07","b":[1,2],"a":1}'),
            "/status": (503, J, b'{"a":1}'),
            "/header": (200, J + [("X-Version", "2")], b'{"a":1}'),
            "/body": (200, J, b'{"a":1,"n":[1,2,4]}'),
        })
        gw = self.start(primary, shadow.address,
                        shadow={"compare": ["status", "headers", "body"], "ignore": ["$.ts"]})
        return primary, shadow, gw

    def test_mismatches_by_kind_and_the_admin_pairs(self):
        primary, shadow, gw = self.mismatch_setup()
        paths = ["/same", "/reordered", "/ignored", "/status", "/header", "/body"]
        for p in paths:
            r = fetch(gw.port, "GET", p)
            self.assertEqual(r.status, 200, f"{p}: the client gets the primary's answer, {r!r}")
        # exact values for this known mix: 6 copies, one mismatch of each kind, nothing else
        self.wait_metrics(gw, {"requests": 6, "mismatch_status": 1, "mismatch_headers": 1, "mismatch_body": 1})
        self.assertEqual(shadow.count(), 6)

        r = self.admin(gw, "/admin/shadow/r")
        self.assertEqual(r.status, 200, repr(r))
        doc = r.json()
        self.assertEqual((doc["route"], doc["upstream"], doc["requests"]), ("r", "shadow", 6))
        self.assertEqual(doc["mismatches"], {"status": 1, "headers": 1, "body": 1})
        pairs = {p["path"]: p for p in doc["pairs"]}
        self.assertEqual(sorted(pairs), ["/body", "/header", "/status"])
        st = pairs["/status"]
        self.assertEqual((st["method"], st["primary_status"], st["shadow_status"], st["kinds"]),
                         ("GET", 200, 503, ["status"]))
        self.assertIn("200", st["diff"])
        self.assertIn("503", st["diff"])
        self.assertEqual(pairs["/header"]["kinds"], ["headers"])
        self.assertIn("x-version", pairs["/header"]["diff"].lower())
        self.assertEqual(pairs["/body"]["kinds"], ["body"])
        self.assertTrue(pairs["/body"]["diff"], pairs["/body"])
        for p in pairs.values():
            self.assertRegex(p["request_id"], r"^[0-9a-f]{32}$")
            self.assertRegex(p["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")

        self.assertEqual(self.admin(gw, "/admin/shadow/nope").status, 404)
        self.assertEqual(self.admin(gw, "/admin/shadow/r", method="POST").status, 405)

        # the migration dashboard's view: /admin/routes carries the route's shadow figures
        routes = {x["name"]: x for x in self.admin(gw, "/admin/routes").json()["routes"]}
        sh = routes["r"]["shadow"]
        self.assertEqual((sh["upstream"], sh["requests"], sh["compared"], sh["mismatched"]), ("shadow", 6, 6, 3))
        self.assertEqual(sh["mismatches"], {"status": 1, "headers": 1, "body": 1})
        self.assertEqual(sh["mismatch_rate"], 0.5)

    def test_only_the_first_20_pairs_are_kept(self):
        primary = PathUpstream(self, default=(200, J, b'{"a":1}'))
        shadow = PathUpstream(self, default=(500, J, b'{"a":1}'))
        gw = self.start(primary, shadow.address)
        c = self.client(gw.port)
        for i in range(25):
            c.send(build_request("GET", f"/p/{i}"))
            self.assertEqual(c.read_response().status, 200)
        self.wait_metrics(gw, {"requests": 25, "mismatch_status": 25})
        doc = self.admin(gw, "/admin/shadow/r").json()
        self.assertEqual([p["path"] for p in doc["pairs"]], [f"/p/{i}" for i in range(20)])

    def test_bodies_over_1_mib_are_not_compared(self):
        big = b"a" * (1100 * 1024)
        primary = PathUpstream(self, table={"/big": (200, [], big), "/small": (200, [], b"x")})
        shadow = PathUpstream(self, table={"/big": (200, [], big[:-1] + b"b"), "/small": (200, [], b"y")})
        gw = self.start(primary, shadow.address)
        r = fetch(gw.port, "GET", "/big", timeout=10)
        self.assertEqual((r.status, len(r.body)), (200, len(big)))
        self.assertEqual(fetch(gw.port, "GET", "/small").body, b"x")
        # the big pair differs in its last byte but only status and headers were compared; the small one counts
        self.wait_metrics(gw, {"requests": 2, "too_large": 1, "mismatch_body": 1})

    # ---- sampling and methods --------------------------------------------------------------------

    def test_percent_50_over_400_requests(self):
        primary = PathUpstream(self)
        shadow = PathUpstream(self)
        gw = self.start(primary, shadow.address, shadow={"percent": 50})
        clients = [self.client(gw.port) for _ in range(4)]
        for i in range(400):
            c = clients[i % 4]
            c.send(build_request("GET", f"/pc/{i}"))
            self.assertEqual(c.read_response().status, 200)
        self.assertEqual(primary.count(), 400)
        time.sleep(0.3)
        wait_until(lambda: self.shadow_metrics(gw)["requests"] == shadow.count() or None, 5)
        got = self.shadow_metrics(gw)
        self.assertEqual(got["requests"], shadow.count(), got)
        # binomial(400, 0.5): sd 10; ±60 is 6 sd
        self.assertTrue(140 <= got["requests"] <= 260, f"{got['requests']} of 400 shadowed at 50%")

    def test_only_listed_methods_are_shadowed(self):
        primary = PathUpstream(self)
        shadow = PathUpstream(self)
        gw = self.start(primary, shadow.address)  # default methods: GET, HEAD, OPTIONS
        self.assertEqual(fetch(gw.port, "POST", "/w", body=b"x=1").status, 200)
        self.assertEqual(fetch(gw.port, "GET", "/g").status, 200)
        self.assertEqual(fetch(gw.port, "HEAD", "/h").status, 200)
        self.wait_metrics(gw, {"requests": 2})
        self.assertEqual(sorted(m for m, _, _ in shadow.requests), ["GET", "HEAD"])
        self.assertEqual(primary.count(), 3)

    def test_listed_post_is_shadowed_with_its_body_and_large_bodies_are_skipped(self):
        primary = PathUpstream(self)
        shadow = PathUpstream(self)
        gw = self.start(primary, shadow.address, shadow={"methods": ["GET", "POST"]})
        body = b'{"order":42,"items":[1,2,3]}'
        self.assertEqual(fetch(gw.port, "POST", "/orders", body=body,
                               headers=[("Content-Type", "application/json")]).status, 200)
        big = b"z" * (200 * 1024)  # over the 64 KiB a copy may take: not shadowed, counted as skipped
        self.assertEqual(fetch(gw.port, "POST", "/big", body=big).status, 200)
        self.wait_metrics(gw, {"requests": 1, "skipped": 1})
        self.assertEqual(shadow.requests, [("POST", "/orders", body)])
        self.assertEqual([t for _, t, _ in primary.requests], ["/orders", "/big"])
        self.assertEqual(primary.requests[1][2], big)


if __name__ == "__main__":
    import unittest
    unittest.main()
