"""Upstream health (issue 7): active checks (upstreams.X.health), passive outlier
ejection, and the circuit breaker (upstreams.X.max_pending, max_connections).

Every test runs real upstreams on loopback: a target whose health path can be
switched between 200 and 503, a port nobody listens on (connections refused)
that later starts listening, a listener with a full accept queue (connects
hang: requests wait for their connection) and a slow upstream. The ejection
test shortens the first ejection with FICUS_TEST_EJECT_BASE_MS (a knob for
tests, read once at start); the documented default is 10 s."""

import json
import os
import socket
import threading
import time

import fxtest
from fxtest import fetch, free_port, read_request, wants_close, _Reader
from reloadkit import AdminMixin, wait_until


class SwitchableUpstream(fxtest.AnsweringUpstream):
    """Answers GET /health with 200 while .healthy, else 503; every other request
    with 200 and its name. Counts the health checks it got."""

    def __init__(self, test, name):
        self.name = name
        self.healthy = True
        self.checks = 0
        self.served = 0
        super().__init__(test)

    def answer(self, req):
        if req["target"] == "/health":
            with self.lock:
                self.checks += 1
            return (200, [], b"ok") if self.healthy else (503, [], b"sick")
        with self.lock:
            self.served += 1
        return 200, [], self.name.encode()


class LateUpstream:
    """A port that refuses connections (bound, not listening) until start(): then it
    answers every request 200 with its name."""

    def __init__(self, test, name):
        self.name = name
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.stopping = threading.Event()
        self.threads = []
        self.conns = []
        self.served = 0
        test.addCleanup(self.stop)

    def start(self):
        self.sock.listen(16)
        self.sock.settimeout(0.05)
        t = threading.Thread(target=self._accept, daemon=True)
        self.threads.append(t)
        t.start()

    def _accept(self):
        while not self.stopping.is_set():
            try:
                s, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            s.settimeout(None)
            self.conns.append(s)
            t = threading.Thread(target=self._serve, args=(s,), daemon=True)
            self.threads.append(t)
            t.start()

    def _serve(self, s):
        try:
            reader = _Reader(s)
            while True:
                req = read_request(reader)
                if req is None:
                    return
                self.served += 1
                body = self.name.encode()
                s.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
                if wants_close(req):
                    return
        except OSError:
            pass
        finally:
            s.close()

    def stop(self):
        self.stopping.set()
        for c in self.conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.sock.close()
        for t in self.threads:
            t.join(2)


class FullBacklog:
    """A listener whose accept queue is full (backlog 0, one connection parked in it,
    never accepted): further connects hang until the connector gives up."""

    def __init__(self, test):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(0)
        self.port = self.sock.getsockname()[1]
        self.address = f"127.0.0.1:{self.port}"
        self.parked = socket.create_connection(("127.0.0.1", self.port), timeout=2)
        test.addCleanup(self.stop)

    def stop(self):
        self.parked.close()
        self.sock.close()


def bodies(port, n):
    """n GETs, each on a fresh connection: (status, body) in order."""
    out = []
    for _ in range(n):
        r = fetch(port, target="/x", headers=[("Connection", "close")])
        out.append((r.status, r.body.decode(errors="replace")))
    return out


class HealthBase(AdminMixin, fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.admin_port = free_port()

    def start(self, targets, upstream=None, workers=1, env=None):
        cfg = self.config(targets, upstream=upstream, admin={"address": f"127.0.0.1:{self.admin_port}"})
        cfg["workers"] = workers
        for k, v in (env or {}).items():
            os.environ[k] = v
            self.addCleanup(os.environ.pop, k, None)
        return self.gateway(cfg)

    def health(self, gw, target):
        return self.metrics(gw).get(f'ficus_upstream_health{{upstream="up",target="{target}"}}')

    def target_state(self, gw, target):
        doc = json.loads(self.admin(gw, "/admin/upstreams").body)
        up = [u for u in doc["upstreams"] if u["name"] == "up"][0]
        return [t for t in up["targets_state"] if t["address"] == target][0], up


class TestActiveChecks(HealthBase):
    def test_failing_target_is_taken_out_and_comes_back(self):
        a = SwitchableUpstream(self, "a")
        b = SwitchableUpstream(self, "b")
        gw = self.start([a.address, b.address], workers=2,
                        upstream={"health": {"path": "/health", "interval": "100ms", "timeout": "100ms",
                                             "healthy": 2, "unhealthy": 2}})
        self.assertEqual(set(body for _, body in bodies(gw.port, 8)), {"a", "b"})
        self.assertTrue(wait_until(lambda: b.checks >= 2, 3), "b got no health checks")

        b.healthy = False
        self.assertTrue(wait_until(lambda: self.health(gw, b.address) == 0, 3),
                        "b was not marked down after failing its health checks")
        state, up = self.target_state(gw, b.address)
        self.assertEqual(state["state"], "down", state)
        self.assertEqual(state["active_check"], "failing", state)
        self.assertEqual(state["last_error"], "status 503", state)
        self.assertEqual(up["health"]["path"], "/health")
        served = b.served
        # both workers skip it (fresh connections spread over them)
        self.assertEqual(bodies(gw.port, 20), [(200, "a")] * 20)
        self.assertEqual(b.served, served)
        self.assertEqual(self.health(gw, a.address), 1)

        b.healthy = True
        self.assertTrue(wait_until(lambda: self.health(gw, b.address) == 1, 3), "b did not come back")
        self.assertIn("b", [body for _, body in bodies(gw.port, 8)])
        self.assertEqual(self.target_state(gw, b.address)[0]["state"], "up")

    def test_reload_keeps_or_ends_the_checks(self):
        a = SwitchableUpstream(self, "a")
        b = SwitchableUpstream(self, "b")
        b.healthy = False
        checks = {"path": "/health", "interval": "100ms", "unhealthy": 1}
        gw = self.start([a.address, b.address], upstream={"health": checks})
        self.assertTrue(wait_until(lambda: self.health(gw, b.address) == 0, 3))
        # an unrelated change: the same checks go on, b stays down without a new round of failures
        cfg = dict(gw.config)
        cfg["limits"] = dict(cfg["limits"], idle_timeout="30s")
        gw.write_config(cfg)
        self.assertEqual(self.post_reload(gw)[0].status, 200)
        self.assertEqual(self.health(gw, b.address), 0)
        self.assertEqual(bodies(gw.port, 4), [(200, "a")] * 4)
        # the checks removed: b counts as up again at once
        cfg = json.loads(json.dumps(gw.config))
        del cfg["upstreams"]["up"]["health"]
        gw.write_config(cfg)
        self.assertEqual(self.post_reload(gw)[0].status, 200)
        self.assertEqual(self.health(gw, b.address), 1)
        self.assertEqual(self.target_state(gw, b.address)[0]["active_check"], "off")
        self.assertIn("b", [body for _, body in bodies(gw.port, 4)])

    def test_all_targets_down_still_get_traffic(self):
        """Panic mode (as Envoy): when every target failed its checks, they are all used anyway."""
        a = SwitchableUpstream(self, "a")
        a.healthy = False
        gw = self.start([a.address], upstream={"health": {"path": "/health", "interval": "100ms",
                                                          "unhealthy": 1}})
        self.assertTrue(wait_until(lambda: self.health(gw, a.address) == 0, 3))
        self.assertEqual(bodies(gw.port, 3), [(200, "a")] * 3)


class TestOutlierEjection(HealthBase):
    def test_refusing_target_is_ejected_then_returns(self):
        a = self.recording(name="a")
        b = LateUpstream(self, "b")  # refuses connections until started
        gw = self.start([a.address, b.address], env={"FICUS_TEST_EJECT_BASE_MS": "1500"})
        first = bodies(gw.port, 10)
        # round-robin: every second request went to b and failed, the fifth failure ejected it
        self.assertEqual([s for s, _ in first], [200, 502] * 5, first)
        ejected_at = time.monotonic()
        self.assertEqual(bodies(gw.port, 10), [(200, "a")] * 10)
        m = self.metrics(gw)
        self.assertEqual(m.get(f'ficus_upstream_ejections_total{{upstream="up",target="{b.address}"}}'), 1)
        self.assertEqual(m.get(f'ficus_upstream_health{{upstream="up",target="{b.address}"}}'), 0)
        state, _ = self.target_state(gw, b.address)
        self.assertEqual((state["state"], state["ejected_by_workers"], state["active_check"]),
                         ("ejected", 1, "off"), state)

        b.start()  # it works now, but stays ejected for the rest of the interval
        self.assertEqual(bodies(gw.port, 6), [(200, "a")] * 6)
        self.assertLess(time.monotonic() - ejected_at, 1.4, "too slow to observe the ejection interval")
        self.assertEqual(b.served, 0)
        time.sleep(max(0.0, 1.6 - (time.monotonic() - ejected_at)))
        self.assertEqual(sorted(body for _, body in bodies(gw.port, 6)), ["a"] * 3 + ["b"] * 3)
        self.assertEqual(self.health(gw, b.address), 1)

    def test_5xx_in_a_row_eject(self):
        ok = self.recording(name="ok")
        bad = self.recording(name="bad", status=500)
        gw = self.start([ok.address, bad.address], env={"FICUS_TEST_EJECT_BASE_MS": "60000"})
        statuses = [s for s, _ in bodies(gw.port, 10)]
        self.assertEqual(statuses, [200, 500] * 5)
        self.assertEqual([s for s, _ in bodies(gw.port, 8)], [200] * 8)
        self.assertEqual(len(bad.requests), 5)


class TestBreaker(HealthBase):
    def concurrent(self, port, n, gap=0.0):
        """n GETs on their own connections, started `gap` s apart: (status, seconds, response)."""
        out = [None] * n

        def one(i):
            t = time.monotonic()
            try:
                r = fetch(port, target="/x", headers=[("Connection", "close")], timeout=10)
                out[i] = (r.status, time.monotonic() - t, r)
            except Exception as e:  # reported below, not lost on the thread
                out[i] = (None, time.monotonic() - t, repr(e))

        ts = []
        for i in range(n):
            t = threading.Thread(target=one, args=(i,), daemon=True)
            t.start()
            ts.append(t)
            time.sleep(gap)
        for t in ts:
            t.join(15)
        return out

    def test_max_pending_answers_503_at_once(self):
        up = FullBacklog(self)  # connects hang: each request waits for its connection
        gw = self.start([up.address], upstream={"max_pending": 1, "connect_timeout": "1500ms"})
        first = []
        t = threading.Thread(target=lambda: first.append(self.concurrent(gw.port, 1)[0]), daemon=True)
        t.start()
        time.sleep(0.3)  # the first request is now waiting for its connection
        rest = self.concurrent(gw.port, 4)
        for status, secs, r in rest:
            self.assertEqual(status, 503, r)
            self.assertLess(secs, 0.5, f"the breaker answered after {secs:.3f} s")
            doc = self.assertProblem(r, 503)
            self.assertEqual(doc["detail"], "upstream up is overloaded (max_pending)")
        t.join(10)
        self.assertEqual(first[0][0], 504, first)  # its connect timed out
        m = self.metrics(gw)
        self.assertEqual(m.get('ficus_breaker_open_total{upstream="up",limit="max_pending"}'), 4)
        self.assertEqual(m.get('ficus_breaker_open_total{upstream="up",limit="max_connections"}'), 0)

    def test_max_connections_answers_503_at_once(self):
        slow = self.recording(name="slow", delay=1.0)
        gw = self.start([slow.address], upstream={"max_connections": 2})
        out = self.concurrent(gw.port, 5, gap=0.1)
        ok = [x for x in out if x[0] == 200]
        refused = [x for x in out if x[0] == 503]
        self.assertEqual((len(ok), len(refused)), (2, 3), out)
        for status, secs, r in refused:
            self.assertLess(secs, 0.5, f"the breaker answered after {secs:.3f} s")
            self.assertEqual(self.assertProblem(r, 503)["detail"], "upstream up is overloaded (max_connections)")
        for status, secs, r in ok:
            self.assertGreaterEqual(secs, 0.9)
        self.assertEqual(len(slow.requests), 2)
        m = self.metrics(gw)
        self.assertEqual(m.get('ficus_breaker_open_total{upstream="up",limit="max_connections"}'), 3)
        _, upj = self.target_state(gw, slow.address)
        self.assertEqual((upj["max_connections"], upj["breaker_open"]["max_connections"]), (2, 3))
        # once they are back (idle), the limit lets requests through again
        self.assertEqual([s for s, _ in bodies(gw.port, 2)], [200, 200])


if __name__ == "__main__":
    import unittest
    unittest.main()
