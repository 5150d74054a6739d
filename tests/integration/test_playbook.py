"""docs/migration-playbook.md, walked through by config alone on one running
gateway: shadow → compare → a small sticky split with a fallback → grow →
switch (fallback kept) → remove. Every step is a config rewrite and a
POST /admin/reload, and every step is checked where an operator would look:
/metrics and GET /admin/routes (and /admin/shadow/ROUTE)."""

import time

import fxtest
from fxtest import fetch
from reloadkit import AdminMixin, wait_until

USERS = [f"user-{i}" for i in range(200)]
DOC = b'{"id":"42","title":"Quarterly report"}'


class PlaybookTest(AdminMixin, fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        # the monolith and the extracted service answer the same document; a header says who served it
        self.mono = self.recording(name="monolith", body=DOC, extra_headers=[("X-Served-By", "monolith")])
        self.svc = self.recording(name="svc", body=DOC, extra_headers=[("X-Served-By", "svc")])
        self.admin_port = fxtest.free_port()

    def config(self, route):
        base = {"name": "documents", "match": {"prefix": "/api/documents/"}}
        base.update(route)
        return {"workers": 2, "admin": {"address": f"127.0.0.1:{self.admin_port}"},
                "upstreams": {"monolith": {"targets": [self.mono.address]},
                              "svc": {"targets": [self.svc.address]}},
                "routes": [base], "log": {"access": "off"}}

    def step(self, gw, route):
        gw.write_config(self.config(route))
        r, doc = self.post_reload(gw)
        self.assertEqual(r.status, 200, doc)

    def get(self, gw, user):
        r = fetch(gw.port, "GET", "/api/documents/42", headers=[("X-User", user)])
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.body, DOC)
        return r.header("x-served-by")

    def route(self, gw):
        (doc,) = [x for x in self.admin(gw, "/admin/routes").json()["routes"] if x["name"] == "documents"]
        return doc

    def served(self, gw, upstream):
        return self.metrics(gw).get(f'ficus_requests_total{{route="documents",upstream="{upstream}",code="200"}}', 0)

    def wait_compared(self, gw, n):
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            sh = self.route(gw).get("shadow") or {}
            if sh.get("compared", 0) >= n:
                return sh
            time.sleep(0.05)
        self.fail(f"shadow comparisons did not reach {n}: {self.route(gw)}")

    def test_the_playbook_by_config_alone(self):
        gw = self.gateway(self.config({"upstream": "monolith"}))
        for u in USERS[:20]:
            self.assertEqual(self.get(gw, u), "monolith")

        # step 1: shadow every read to the new service and compare the answers
        self.step(gw, {"upstream": "monolith",
                       "shadow": {"upstream": "svc", "percent": 100, "compare": ["status", "body"]}})
        for u in USERS[:50]:
            self.assertEqual(self.get(gw, u), "monolith", "a shadow never answers the client")
        sh = self.wait_compared(gw, 50)
        self.assertEqual((sh["upstream"], sh["mismatched"], sh["mismatch_rate"]), ("svc", 0, 0.0))
        self.assertGreaterEqual(self.metrics(gw).get('ficus_shadow_requests_total{route="documents"}', 0), 50)

        # step 2: 10 % of the users, always the same ones, to the service; the monolith as fallback
        self.step(gw, {"split": [{"upstream": "svc", "weight": 10}, {"upstream": "monolith", "weight": 90}],
                       "sticky": "header:X-User", "fallback": "monolith"})
        side = {u: self.get(gw, u) for u in USERS}
        for u in USERS[:50]:
            self.assertEqual(self.get(gw, u), side[u], f"{u} changed sides")
        on_svc = {u for u, s in side.items() if s == "svc"}
        self.assertTrue(8 <= len(on_svc) <= 40, f"{len(on_svc)} of {len(USERS)} users on the service at 10 %")
        sides = {s["upstream"]: s for s in self.route(gw)["sides"] if not s.get("fallback")}
        self.assertEqual((sides["svc"]["weight"], sides["monolith"]["weight"]), (10, 90))
        self.assertGreater(sides["svc"]["total"]["requests"], 0)
        self.assertGreater(self.served(gw, "svc"), 0)

        # step 3: grow to 50 %: nobody who was on the service goes back
        self.step(gw, {"split": [{"upstream": "svc", "weight": 50}, {"upstream": "monolith", "weight": 50}],
                       "sticky": "header:X-User", "fallback": "monolith"})
        grown = {u: self.get(gw, u) for u in USERS}
        self.assertTrue(all(grown[u] == "svc" for u in on_svc), "a user moved back to the monolith")
        self.assertGreater(sum(1 for s in grown.values() if s == "svc"), len(on_svc))

        # step 4: switch, keep the fallback; the service going away is covered by the monolith
        self.step(gw, {"upstream": "svc", "fallback": "monolith"})
        for u in USERS[:20]:
            self.assertEqual(self.get(gw, u), "svc")
        self.svc.stop()
        for u in USERS[:5]:
            self.assertEqual(self.get(gw, u), "monolith", "the fallback answers while the service is down")
        def fallbacks():
            return sum(v for k, v in self.metrics(gw).items() if k.startswith('ficus_fallbacks_total{route="documents"'))
        # counted just after each answer is written: the last one may still be on its way
        wait_until(lambda: fallbacks() >= 5, 5, 0.05)
        self.assertEqual(fallbacks(), 5)
        self.assertTrue(any(s.get("fallback") for s in self.route(gw)["sides"]))

        # step 5: remove the fallback: from now on the service alone answers (here: it is down, so 502)
        self.step(gw, {"upstream": "svc"})
        r = fetch(gw.port, "GET", "/api/documents/42")
        self.assertEqual(r.status, 502)
        self.assertFalse(any(s.get("fallback") for s in self.route(gw)["sides"]))
        self.assertEqual(self.route(gw)["upstream"], "svc")
