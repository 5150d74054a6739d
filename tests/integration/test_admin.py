"""The admin listener (issue 3): /healthz, /readyz, /metrics, /admin/config,
POST /admin/reload; 404/405 as problem+json; readiness during drain; the
listener moves when a reload changes admin.address."""

import calendar
import socket
import threading
import time

import fxtest
from fxtest import build_request, free_port
from reloadkit import (AdminMixin, config_hashes, connect_refused, route_config, sha256_file,
                       wait_until)

METRIC_TYPES = {
    "ficus_config_reloads_total": "counter",
    "ficus_config_info": "gauge",
    "ficus_config_loaded_timestamp_seconds": "gauge",
    "ficus_connections_active": "gauge",
}


def iso_to_epoch(s):
    return calendar.timegm(time.strptime(s, "%Y-%m-%dT%H:%M:%SZ"))


class AdminEndpointsTest(AdminMixin, fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.up = self.recording(name="up")
        self.admin_port = free_port()
        self.t_start = time.time()
        self.gw = self.gateway(route_config({"up": self.up.address}, "up", self.admin_port))

    def test_health_and_readiness(self):
        for path, body in (("/healthz", {"status": "ok"}), ("/readyz", {"status": "ready"})):
            r = self.admin(self.gw, path)
            self.assertEqual(r.status, 200, f"{path}: {r!r}")
            self.assertEqual(r.header("content-type"), "application/json", path)
            self.assertEqual(r.json(), body, path)

    def test_metrics(self):
        # three idle client connections are counted as active
        conns = []
        for i in range(3):
            c = self.client(self.gw.port)
            c.send(build_request("GET", f"/m{i}"))
            self.assertEqual(c.read_response().status, 200)
            conns.append(c)
        r = self.admin(self.gw, "/metrics")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.header("content-type"), "text/plain; version=0.0.4; charset=utf-8")
        text = r.body.decode()
        for name, kind in METRIC_TYPES.items():
            self.assertIn(f"# TYPE {name} {kind}\n", text)
            self.assertIn(f"# HELP {name} ", text)
        m = self.metrics(self.gw)
        self.assertEqual(m['ficus_config_reloads_total{result="ok"}'], 0)
        self.assertEqual(m['ficus_config_reloads_total{result="error"}'], 0)
        self.assertEqual(config_hashes(m), [sha256_file(self.gw.config_path)])
        self.assertEqual(m[f'ficus_config_info{{hash="{sha256_file(self.gw.config_path)}"}}'], 1)
        loaded = m["ficus_config_loaded_timestamp_seconds"]
        self.assertLessEqual(abs(loaded - self.t_start), 5, f"loaded at {loaded}, started {self.t_start}")
        self.assertTrue(wait_until(lambda: self.metrics(self.gw)["ficus_connections_active"] == 3, 2),
                        f"ficus_connections_active {self.metrics(self.gw)['ficus_connections_active']}, "
                        "expected 3")
        for c in conns:
            c.close()
        self.assertTrue(wait_until(lambda: self.metrics(self.gw)["ficus_connections_active"] == 0, 2),
                        f"ficus_connections_active {self.metrics(self.gw)['ficus_connections_active']} "
                        "after the clients closed")
        # a scraper's query string does not change the answer
        self.assertEqual(self.admin(self.gw, "/metrics?name[]=x").status, 200)

    def test_admin_config(self):
        gw = self.gw
        r = self.admin(gw, "/admin/config")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.header("content-type"), "application/json")
        doc = r.json()
        self.assertEqual(set(doc), {"file", "hash", "loaded_at", "config"})
        self.assertEqual(doc["file"], gw.config_path)
        self.assertEqual(doc["hash"], sha256_file(gw.config_path))
        self.assertRegex(doc["loaded_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$")
        self.assertLessEqual(abs(iso_to_epoch(doc["loaded_at"]) - self.t_start), 5, doc["loaded_at"])
        cfg = doc["config"]
        self.assertEqual(set(cfg), {"listen", "admin", "workers", "limits", "upstreams", "routes", "log"})
        self.assertEqual(cfg["listen"], [{"address": gw.address}])
        self.assertEqual(cfg["admin"], {"address": f"127.0.0.1:{self.admin_port}"})
        self.assertEqual(cfg["workers"], 2)
        self.assertEqual(cfg["limits"]["drain_timeout_ms"], 2000)
        for k in ("max_header_bytes", "max_body_bytes", "header_timeout_ms", "idle_timeout_ms",
                  "max_connections"):
            self.assertIsInstance(cfg["limits"][k], int, k)
        self.assertEqual(list(cfg["upstreams"]), ["up"])
        self.assertEqual(cfg["upstreams"]["up"]["targets"], [self.up.address])
        self.assertEqual([(x["name"], x["match"], x["upstream"]) for x in cfg["routes"]],
                         [("to-up", {"prefix": "/"}, "up")])
        self.assertEqual(cfg["log"]["access"], "off")

    def test_admin_config_follows_reloads(self):
        gw = self.gw
        before = self.admin(gw, "/admin/config").json()
        other = self.recording(name="other")
        new = route_config({"up": self.up.address, "other": other.address}, "up", self.admin_port)
        new["routes"] = [
            {"name": "reads", "match": {"path": "/r/{id}", "methods": ["GET", "HEAD"]}, "upstream": "other"},
            {"name": "rest", "match": {"prefix": "/"}, "upstream": "up"},
        ]
        time.sleep(1.05)  # loaded_at has one-second resolution
        gw.write_config(new)
        r, body = self.post_reload(gw)
        self.assertEqual(r.status, 200, repr(r))
        new_hash = sha256_file(gw.config_path)
        self.assertEqual(body, {"status": "reloaded", "hash": new_hash})
        self.assertNotEqual(new_hash, before["hash"])
        after = self.admin(gw, "/admin/config").json()
        self.assertEqual(after["hash"], new_hash)
        self.assertGreater(iso_to_epoch(after["loaded_at"]), iso_to_epoch(before["loaded_at"]))
        routes = after["config"]["routes"]
        self.assertEqual([x["name"] for x in routes], ["reads", "rest"])
        self.assertEqual(routes[0]["match"], {"path": "/r/{id}", "methods": ["GET", "HEAD"]})
        self.assertEqual(routes[0]["upstream"], "other")
        self.assertEqual(set(after["config"]["upstreams"]), {"up", "other"})
        m = self.metrics(gw)
        self.assertEqual(config_hashes(m), [new_hash])
        self.assertEqual(m["ficus_config_loaded_timestamp_seconds"], iso_to_epoch(after["loaded_at"]))
        self.wait_routing(gw.port, "other", path="/r/7")
        self.assertEqual(self.probe(gw.port, "/x"), "up")

        # a failed reload changes none of it
        bad = dict(new)
        bad["routes"] = [{"name": "rest", "match": {"prefix": "/"}, "upstream": "nope"}]
        gw.write_config(bad)
        r, body = self.post_reload(gw)
        self.assertEqual(r.status, 400, repr(r))
        self.assertEqual(body["status"], "error")
        self.assertTrue(body["errors"] and all(e.startswith(f"{gw.config_path}:") for e in body["errors"]),
                        body)
        again = self.admin(gw, "/admin/config").json()
        self.assertEqual(again, after)
        self.assertEqual(self.reload_counts(gw), (1, 1))

    def test_unknown_paths_and_wrong_methods(self):
        gw = self.gw
        # /admin/ is the dashboard (test_dashboard.py), /admin redirects to it
        for path in ("/", "/nope", "/admin/x", "/admin/config/x", "/healthz/", "/metricsx"):
            r = self.admin(gw, path)
            self.assertEqual(r.status, 404, f"GET {path}: {r!r}")
            self.assertProblemBody(r, 404, f"GET {path}")
        for method, path in (("POST", "/healthz"), ("POST", "/readyz"), ("POST", "/metrics"),
                             ("PUT", "/admin/config"), ("POST", "/admin/config"), ("GET", "/admin/reload"),
                             ("DELETE", "/admin/reload")):
            r = self.admin(gw, path, method, body=b"" if method in ("POST", "PUT") else None)
            self.assertEqual(r.status, 405, f"{method} {path}: {r!r}")
            self.assertProblemBody(r, 405, f"{method} {path}")
        # GET /admin/reload did not reload
        self.assertEqual(self.reload_counts(gw), (0, 0))

    def test_keep_alive_admin_connection(self):
        c = self.client(self.gw.admin_port)
        for path in ("/healthz", "/metrics", "/nope", "/admin/config", "/readyz"):
            c.send(build_request("GET", path))
            r = c.read_response()
            self.assertIn(r.status, (200, 404), f"{path}: {r!r}")
        c.send(build_request("POST", "/admin/reload", body=b""))
        r = c.read_response()
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(self.reload_counts(self.gw), (1, 0))

    def assertProblemBody(self, r, status, where):
        self.assertTrue((r.header("content-type") or "").startswith("application/problem+json"),
                        f"{where}: {r!r}")
        doc = r.json()
        for k in ("type", "title", "status", "detail"):
            self.assertIn(k, doc, where)
        self.assertEqual(doc["status"], status, where)


class AdminDrainTest(AdminMixin, fxtest.FxTestCase):
    def test_readyz_503_while_draining(self):
        mono = self.monolith()
        admin = free_port()
        cfg = route_config({"m": mono.address}, "m", admin, extra={"limits": {"drain_timeout": "5s"}})
        gw = self.gateway(cfg)
        self.assertEqual(self.admin(gw, "/readyz").status, 200)
        busy = self.client(gw.port, timeout=10)
        result = {}

        def slow():
            try:
                busy.send(build_request("GET", "/_test/slow?ms=1500"))
                result["resp"] = busy.read_response(timeout=10)
            except Exception as e:
                result["error"] = e

        t = threading.Thread(target=slow)
        t.start()
        self.addCleanup(t.join, 12)
        time.sleep(0.3)
        gw.terminate()
        time.sleep(0.1)
        r = self.admin(gw, "/readyz")
        self.assertNotIn("resp", result, "the slow request finished before the check")
        self.assertEqual(r.status, 503, repr(r))
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(r.json(), {"status": "draining"})
        self.assertEqual(self.admin(gw, "/healthz").status, 200)
        # a reload during the drain is refused, and it says why
        r, body = self.post_reload(gw)
        self.assertEqual(r.status, 400, repr(r))
        self.assertTrue(any("shutting down" in e for e in body["errors"]), body)
        t.join(10)
        self.assertNotIn("error", result, repr(result.get("error")))
        self.assertEqual(result["resp"].status, 200, repr(result["resp"]))
        rc = gw.proc.wait(6)
        self.assertEqual(rc, 0, gw.proc.describe())
        self.assertTrue(connect_refused(admin), "admin listener still open after exit")


class AdminMoveTest(AdminMixin, fxtest.FxTestCase):
    def test_admin_moves_with_reload(self):
        up = self.recording(name="up")
        old = free_port()
        gw = self.gateway(route_config({"up": up.address}, "up", old))
        new = free_port()
        gw.write_config(route_config({"up": up.address}, "up", new))
        r, body = self.post_reload(gw)      # answered on the old port
        self.assertEqual(r.status, 200, repr(r))
        gw.admin_port = new
        self.assertEqual(self.admin(gw, "/healthz").status, 200)
        self.assertTrue(wait_until(lambda: connect_refused(old), 2), f"admin still on {old}")
        doc = self.admin(gw, "/admin/config").json()
        self.assertEqual(doc["config"]["admin"], {"address": f"127.0.0.1:{new}"})
        # and reloads keep working through the new address
        r, body = self.post_reload(gw)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(self.reload_counts(gw), (2, 0))

        # a reload without admin closes the listener; SIGHUP still reloads
        cfg = route_config({"up": up.address}, "up", new)
        del cfg["admin"]
        gw.write_config(cfg)
        r, body = self.post_reload(gw)
        self.assertEqual(r.status, 200, repr(r))
        self.assertTrue(wait_until(lambda: connect_refused(new), 2), f"admin still on {new}")
        again = free_port()
        gw.write_config(route_config({"up": up.address}, "up", again))
        gw.sighup()
        gw.admin_port = again
        self.assertTrue(fxtest.wait_for_port(again, 3), "SIGHUP did not re-open the admin listener")
        self.assertEqual(self.reload_counts(gw), (4, 0))
        self.assertEqual(self.probe(gw.port), "up")

    def test_admin_move_to_a_busy_address_fails_the_reload(self):
        # the same rule as for listeners: an address that cannot be opened fails the
        # reload and the running config stays whole (never a partially applied config)
        up = self.recording(name="up")
        other = self.recording(name="other")
        old = free_port()
        gw = self.gateway(route_config({"up": up.address}, "up", old))
        before = self.admin(gw, "/admin/config").json()
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(8)
        taken = busy.getsockname()[1]
        gw.write_config(route_config({"other": other.address}, "other", taken))
        r, body = self.post_reload(gw)
        self.assertEqual(r.status, 400, f"reload moving admin.address to 127.0.0.1:{taken} (in use by "
                                        f"another socket) answered {r!r}")
        self.assertTrue(any(f"127.0.0.1:{taken}" in e for e in body.get("errors", [])), body)
        self.assertEqual(self.reload_counts(gw), (0, 1))
        after = self.admin(gw, "/admin/config").json()
        self.assertEqual(after, before, "a failed reload changed the running config")
        self.assertEqual(self.probe(gw.port), "up")
