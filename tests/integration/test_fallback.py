"""routes[].fallback and routes[].retries / upstreams.X.retries (with the
retry budget), through a real gateway process.

The route `api` goes to upstream `primary`, whose behaviour each test picks
(a refused port, a ScriptedUpstream that resets or hangs, a RecordingUpstream
answering 503), and falls back to `backup`, a RecordingUpstream answering
"backup". Every test checks what the client saw (one response, on a
keep-alive connection that then serves a second request cleanly), how many
requests each upstream received, and the access log line and metrics. One
worker, so the round-robin order and the per-worker retry budget are exact."""

import json
import os
import time

import fxtest
from fxtest import build_request, free_port
from reloadkit import AdminMixin, wait_until


def refused_address():
    """A loopback address nobody listens on (connect is refused)."""
    return f"127.0.0.1:{free_port()}"


class FallbackBase(AdminMixin, fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.backup = self.recording(name="backup")
        self.admin_port = free_port()
        self.log_path = os.path.join(self.tmp, "access.log")

    def start(self, primary_targets, route=None, primary=None, fallback=True):
        ups = {"primary": dict({"targets": primary_targets}, **(primary or {})),
               "backup": {"targets": [self.backup.address]}}
        r = {"name": "api", "match": {"prefix": "/api/"}, "upstream": "primary"}
        if fallback:
            r["fallback"] = "backup"
        r.update(route or {})
        self.gw = self.gateway({"workers": 1,
                                "admin": {"address": f"127.0.0.1:{self.admin_port}"},
                                "upstreams": ups, "routes": [r],
                                "log": {"access": self.log_path}})
        return self.gw

    def exchange(self, method="GET", target="/api/x", body=None, timeout=10):
        """The request, then a plain GET on the same connection: the first answer must be the only one
        (no stray bytes of a discarded response before the second)."""
        c = self.client(self.gw.port, timeout=timeout)
        c.send(build_request(method, target, None, body))
        r = c.read_response(timeout, method=method)
        if (r.header("connection") or "").lower() != "close":
            c.send(build_request("GET", "/api/second"))
            r2 = c.read_response(timeout)
            self.assertEqual((r2.status, r2.body), (r.status, r.body), repr(r2))
        return r

    def log_entries(self, n):
        entries = wait_until(lambda: (lambda ls: ls if len(ls) >= n else None)(
            [json.loads(l) for l in fxtest.read_text(self.log_path).splitlines() if l.strip()]), 5)
        self.assertIsNotNone(entries, f"fewer than {n} access log lines")
        return entries

    def fallbacks(self, reason):
        return self.metrics(self.gw).get(f'ficus_fallbacks_total{{route="api",reason="{reason}"}}')

    def assert_fell_back(self, r, reason, n=2):
        """r came from the fallback, and so did the second GET of exchange(): n fallbacks in all."""
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.body, b"backup")
        self.assertEqual(len(self.backup.requests), n)
        e = self.log_entries(1)[0]
        self.assertEqual(e["path"], "/api/x", e)
        self.assertEqual(e["status"], 200, e)
        self.assertIs(e.get("fallback"), True, e)
        self.assertEqual(e.get("fallback_reason"), reason, e)
        self.assertEqual(e["upstream"], "backup", e)
        self.assertNotIn("upstream_error", e)
        self.assertEqual(self.fallbacks(reason), float(n))


class FallbackTest(FallbackBase):
    def test_connect_refused(self):
        self.start([refused_address()])
        r = self.exchange()
        self.assert_fell_back(r, "connect")
        self.assertEqual(self.backup.requests[0]["target"], "/api/x")

    def test_reset_before_head(self):
        primary = self.scripted(["rst"])
        self.start([primary.address])
        r = self.exchange()
        self.assert_fell_back(r, "reset")
        self.assertEqual(len(primary.requests), 2)  # each request reached it once, never retried there

    def test_timeout(self):
        primary = self.scripted(["hang"])
        self.start([primary.address], primary={"timeout": "300ms"})
        t0 = time.monotonic()
        r = self.exchange()
        self.assert_fell_back(r, "timeout")
        self.assertLess(time.monotonic() - t0, 5)

    def test_5xx_body_discarded(self):
        primary = self.recording(name="primary", status=503, body=b"P" * 200000)
        self.start([primary.address])
        r = self.exchange()
        self.assert_fell_back(r, "5xx")
        self.assertEqual(len(primary.requests), 2)
        self.assertNotIn(b"P", r.body)

    def test_5xx_without_fallback_passes_through(self):
        primary = self.recording(name="primary", status=503, body=b"down")
        self.start([primary.address], fallback=False)
        r = self.exchange()
        self.assertEqual((r.status, r.body), (503, b"down"))
        self.assertEqual(self.backup.requests, [])

    def test_post_with_no_byte_sent_falls_back(self):
        """Connect refused: not a byte reached the primary, so even a POST goes to the fallback, whole."""
        self.start([refused_address()])
        body = b"0123456789" * 300
        r = self.exchange("POST", body=body)
        self.assert_fell_back(r, "connect")
        self.assertEqual(self.backup.requests[0]["method"], "POST")
        self.assertEqual(self.backup.requests[0]["body"], body)

    def test_post_already_sent_does_not_fall_back(self):
        """A POST the primary received (here a large streamed body, then a reset; or a small one answered
        503) may have changed something: the client gets the primary's failure, the fallback nothing."""
        primary = self.scripted(["rst"])
        self.start([primary.address])
        big = b"x" * (1 << 20)
        for method in ("POST", "PUT"):  # a streamed PUT is idempotent but cannot be sent again
            with self.subTest(method=method):
                r = fxtest.fetch(self.gw.port, method, "/api/x", body=big, timeout=10)
                self.assertEqual(r.status, 502, repr(r))
        self.assertEqual(len(primary.requests), 2)
        self.assertEqual(primary.requests[0]["body_len"], len(big))
        self.assertEqual(self.backup.requests, [])
        e = self.log_entries(2)
        self.assertTrue(all("fallback" not in x for x in e), e)
        self.assertEqual(self.fallbacks("reset"), 0.0)

    def test_post_answered_5xx_does_not_fall_back(self):
        primary = self.recording(name="primary", status=503, body=b"down")
        self.start([primary.address])
        r = fxtest.fetch(self.gw.port, "POST", "/api/x", body=b"small")
        self.assertEqual((r.status, r.body), (503, b"down"))
        self.assertEqual(self.backup.requests, [])
        self.assertEqual(len(primary.requests), 1)


class RetryTest(FallbackBase):
    def test_attempts_across_targets(self):
        """Targets [refused, refused, good], round-robin: 2 attempts reach the good one, 1 does not."""
        good = self.recording(name="good")
        self.start([refused_address(), refused_address(), good.address], fallback=False, route={
            "retries": {"attempts": 2, "on": ["connect-failure"]}})
        r = fxtest.fetch(self.gw.port, "GET", "/api/x")
        self.assertEqual((r.status, r.body), (200, b"good"))
        self.assertEqual(len(good.requests), 1)
        e = self.log_entries(1)[0]
        self.assertEqual(e.get("retries"), 2, e)
        self.assertNotIn("fallback", e)
        m = self.metrics(self.gw)
        self.assertEqual(m['ficus_retries_total{upstream="primary",reason="connect"}'], 2.0)
        self.assertEqual(m['ficus_retries_total{upstream="primary",reason="reset"}'], 0.0)

    def test_route_setting_wins_and_then_fallback(self):
        """The upstream says 2 attempts, the route 1: one retry (refused again), then the fallback."""
        good = self.recording(name="good")
        self.start([refused_address(), refused_address(), good.address],
                   primary={"retries": {"attempts": 2, "on": ["connect-failure"]}},
                   route={"retries": {"attempts": 1, "on": ["connect-failure"]}})
        r = fxtest.fetch(self.gw.port, "GET", "/api/x")
        self.assertEqual((r.status, r.body), (200, b"backup"))
        self.assertEqual(good.requests, [])
        e = self.log_entries(1)[0]
        self.assertEqual((e.get("retries"), e.get("fallback"), e["upstream"]), (1, True, "backup"), e)

    def test_upstream_setting_applies_without_route_setting(self):
        good = self.recording(name="good")
        self.start([refused_address(), good.address], fallback=False,
                   primary={"retries": {"attempts": 1, "on": ["connect-failure"]}})
        r = fxtest.fetch(self.gw.port, "GET", "/api/x")
        self.assertEqual((r.status, r.body), (200, b"good"))

    def test_no_retry_for_post(self):
        good = self.recording(name="good")
        self.start([refused_address(), good.address], fallback=False, route={
            "retries": {"attempts": 3, "on": ["connect-failure"]}})
        r = fxtest.fetch(self.gw.port, "POST", "/api/x", body=b"once")
        self.assertEqual(r.status, 502, repr(r))
        self.assertEqual(good.requests, [])

    def test_retry_on_listed_status(self):
        bad = self.recording(name="bad", status=503, body=b"busy")
        good = self.recording(name="good")
        self.start([bad.address, good.address], fallback=False, route={"retries": {"attempts": 1, "on": [503]}})
        r = fxtest.fetch(self.gw.port, "GET", "/api/x")
        self.assertEqual((r.status, r.body), (200, b"good"))
        self.assertEqual(self.metrics(self.gw)['ficus_retries_total{upstream="primary",reason="5xx"}'], 1.0)

    def test_budget_stops_retries_in_an_outage(self):
        """An upstream that resets every request, 3 attempts each: 20 requests buy 3 + 20 % · 20 = 7
        retries in 10 s, not 60 — 27 connections reach it."""
        primary = self.scripted(["rst"])
        self.start([primary.address], fallback=False, route={"retries": {"attempts": 3, "on": ["reset"]}})
        for _ in range(20):
            r = fxtest.fetch(self.gw.port, "GET", "/api/x")
            self.assertEqual(r.status, 502, repr(r))
        self.assertTrue(wait_until(lambda: len(primary.requests) >= 27, 3), len(primary.requests))
        time.sleep(0.2)
        self.assertEqual(len(primary.requests), 27)
        m = self.metrics(self.gw)
        self.assertEqual(m['ficus_retries_total{upstream="primary",reason="reset"}'], 7.0)
        # refused: once by each of requests 2-4, and after its one granted retry by each of 5-20
        self.assertEqual(m['ficus_retry_budget_exhausted_total{upstream="primary"}'], 19.0)
        self.assertEqual(m['ficus_retry_budget_exhausted_total{upstream="backup"}'], 0.0)



class EventsTest(FallbackBase):
    """A retried or fallen-back PUT on a route with `events` makes exactly one change event: the one of
    the answer the client got (a primary's 5xx never makes one)."""

    def test_one_event_after_retry_and_after_fallback(self):
        db = fxtest.DevBroker(self, self.tmp)
        bad = self.recording(name="bad", status=503, body=b"busy")
        good = self.recording(name="good", status=200, body=b'{"ok":true}',
                              extra_headers=[("Content-Type", "application/json")])
        ev = {"topic": "docs", "type": "doc.changed", "key": "{id}"}
        self.gw = self.gateway({
            "workers": 1, "admin": {"address": f"127.0.0.1:{self.admin_port}"},
            "upstreams": {"retrying": {"targets": [bad.address, good.address]},
                          "primary": {"targets": [bad.address]},
                          "backup": {"targets": [self.backup.address]}},
            "routes": [{"name": "r", "match": {"path": "/r/{id}"}, "upstream": "retrying", "auth": "none",
                        "retries": {"attempts": 1, "on": [503]}, "events": ev},
                       {"name": "f", "match": {"path": "/f/{id}"}, "upstream": "primary", "auth": "none",
                        "fallback": "backup", "events": ev}],
            "events": {"brokers": db.bootstrap, "spool_dir": os.path.join(self.tmp, "spool")},
            "log": {"access": self.log_path}})
        r1 = fxtest.fetch(self.gw.port, "PUT", "/r/1", body=b'{"v":1}', timeout=10)
        self.assertEqual((r1.status, r1.body), (200, b'{"ok":true}'))
        r2 = fxtest.fetch(self.gw.port, "PUT", "/f/2", body=b'{"v":2}', timeout=10)
        self.assertEqual((r2.status, r2.body), (200, b"backup"))
        self.assertEqual(len(bad.requests), 2)
        self.assertEqual(self.backup.requests[0]["body"], b'{"v":2}')
        msgs = []
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and len(msgs) < 2:
            msgs = fxtest.kcat_consume(db.bootstrap, "docs", 10, timeout=10)
            time.sleep(0.2)
        time.sleep(0.5)
        msgs = fxtest.kcat_consume(db.bootstrap, "docs", 10, timeout=10)
        self.assertEqual(len(msgs), 2, msgs)
        events = {m["key"]: json.loads(m["value"]) for m in msgs}
        self.assertEqual(set(events), {"1", "2"})
        self.assertEqual(events["1"]["ficusrequestid"], r1.header("x-request-id"))
        self.assertEqual(events["2"]["ficusrequestid"], r2.header("x-request-id"))
        self.assertEqual([e["ficusstatus"] for e in events.values()], [200, 200])


if __name__ == "__main__":
    import unittest
    unittest.main()
