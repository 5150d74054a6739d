"""Hot reload (issue 3): SIGHUP, POST /admin/reload and --watch swap the
config snapshot under load without dropping a request; an invalid config
keeps the running one, is logged as FILE:LINE:COL and counted; in-flight
requests finish on their snapshot; listeners and the access log follow."""

import json
import os
import socket
import sys
import threading
import time

import fxtest
from fxtest import build_request, fetch, free_port
from reloadkit import (HERE, AdminMixin, check_errors, config_hashes, connect_refused, position,
                       route_config, sha256_text, wait_until)

RELOADS = 50
HOLD_S = 0.06   # each config serves the load at least this long


class ReloadUnderLoadTest(AdminMixin, fxtest.FxTestCase):
    def test_50_reloads_under_load_drop_nothing(self):
        alpha = self.recording(name="alpha")
        beta = self.recording(name="beta")
        admin = free_port()
        cfg_a = route_config({"alpha": alpha.address}, "alpha", admin)
        cfg_b = route_config({"beta": beta.address}, "beta", admin)
        # invalid: the route names an upstream that does not exist
        cfg_bad = route_config({"alpha": alpha.address}, "alpha", admin)
        cfg_bad["routes"][0]["upstream"] = "alpah"

        gw = self.gateway(cfg_a)
        text_a, text_b, text_bad = gw.render(cfg_a), gw.render(cfg_b), gw.render(cfg_bad)
        bad_line, bad_col = position(text_bad, "alpah")
        expect_bad = (f"{gw.config_path}:{bad_line}:{bad_col}: error: routes[0].upstream: "
                      f"unknown upstream 'alpah'")
        self.assertEqual(self.running_hash(gw), sha256_text(text_a))
        self.assertEqual(self.probe(gw.port), "alpha")

        # the load: a second process, 4 keep-alive connections, bounded by count and time
        load = fxtest.Proc([sys.executable, os.path.join(HERE, "loadgen.py"), "--port", gw.port,
                            "--threads", 4, "--max-requests", 400000, "--max-seconds", 50,
                            "--expect", "alpha", "beta"], self.tmp, "loadgen")
        self.addCleanup(load.stop)
        if not wait_until(lambda: len(alpha.requests) >= 200 or not load.alive(), 15):
            self.fail(f"the load did not start\n{load.describe()}")
        self.assertTrue(load.alive(), load.describe())

        texts = {"A": text_a, "B": text_b, "bad": text_bad}
        bodies = {"A": "alpha", "B": "beta"}
        current = "A"
        ok = err = 0
        follow = []
        t0 = time.monotonic()
        for i in range(RELOADS):
            kind = ("B", "A", "bad")[i % 3]
            how = "SIGHUP" if i % 2 == 0 else "POST"
            step = f"reload {i + 1}/{RELOADS} ({how}, config {kind})"
            gw.write_config(texts[kind])
            if how == "POST":
                r, doc = self.post_reload(gw)
                if kind == "bad":
                    self.assertEqual(r.status, 400, f"{step}: {r!r}")
                    self.assertEqual(doc["status"], "error", step)
                    self.assertIn(expect_bad, [e.split(" (did you mean")[0] for e in doc["errors"]],
                                  f"{step}: {doc}")
                else:
                    self.assertEqual(r.status, 200, f"{step}: {r!r}")
                    self.assertEqual(doc, {"status": "reloaded", "hash": sha256_text(texts[kind])}, step)
            else:
                gw.sighup()
            if kind == "bad":
                err += 1
            else:
                ok += 1
            self.wait_counts(gw, ok, err, what=step)
            self.assertTrue(gw.proc.alive(), f"{step}: gateway died\n{gw.proc.describe()}")
            if kind == "bad":
                for _ in range(3):
                    self.assertEqual(self.probe(gw.port), bodies[current],
                                     f"{step}: an invalid config changed the routing")
            else:
                current = kind
                follow.append(self.wait_routing(gw.port, bodies[current], timeout=2.0))
            self.assertEqual(self.running_hash(gw), sha256_text(texts[current]), step)
            # steady load through every snapshot: hold it until the load has passed through it
            rec = alpha if current == "A" else beta
            before = len(rec.requests)
            held = time.monotonic() + HOLD_S
            if not wait_until(lambda: len(rec.requests) >= before + 25 and time.monotonic() >= held, 3):
                self.fail(f"{step}: the load stalled ({len(rec.requests) - before} requests in 3 s)\n"
                          f"{load.describe()}")
        reload_s = time.monotonic() - t0

        load.send_signal(15)
        rc = load.wait(20)
        self.assertEqual(rc, 0, f"loadgen did not finish\n{load.describe()}")
        out = load.stdout().strip().splitlines()
        self.assertTrue(out, load.describe())
        res = json.loads(out[-1])
        fxtest.measure("reload under load: reloads", f"{RELOADS} ({ok} ok, {err} invalid) in {reload_s:.1f} s")
        fxtest.measure("reload under load: requests driven",
                       f"{res['requests']} in {res['duration_s']:.1f} s "
                       f"({res['requests'] / max(res['duration_s'], 0.001):.0f} req/s, 4 keep-alive "
                       f"connections, {res['connects']} connects, bodies {res['bodies']}, "
                       f"max latency {res['max_latency_ms']} ms)")
        fxtest.measure("reload under load: routing followed within",
                       f"max {max(follow) * 1000:.0f} ms, mean {sum(follow) / len(follow) * 1000:.0f} ms")
        self.assertEqual(res["threads_stuck"], 0, res)
        self.assertEqual(res["failures"], 0, f"failed requests under reload: {json.dumps(res, indent=1)}")
        self.assertEqual(res["ok"], res["requests"], res)
        self.assertEqual(res["server_closes"], 0, f"the gateway closed keep-alive connections: {res}")
        self.assertEqual(res["connects"], 4, f"connections were re-opened: {res}")
        self.assertGreater(res["bodies"].get("alpha", 0), 0, res)
        self.assertGreater(res["bodies"].get("beta", 0), 0, res)
        self.assertGreaterEqual(res["requests"], 1000, f"too little load to mean anything: {res}")
        self.assertEqual(self.reload_counts(gw), (ok, err))
        self.assertEqual(alpha.errors + beta.errors, [])


class InFlightTest(AdminMixin, fxtest.FxTestCase):
    def test_in_flight_request_finishes_on_its_snapshot(self):
        mono = self.monolith()
        other = self.recording(name="other")
        admin = free_port()
        gw = self.gateway(route_config({"x": mono.address}, "x", admin))
        c = self.client(gw.port, timeout=10)
        result = {}

        def slow():
            try:
                t = time.monotonic()
                c.send(build_request("GET", "/_test/slow?ms=1500"))
                result["resp"] = c.read_response(timeout=10)
                result["elapsed"] = time.monotonic() - t
            except Exception as e:  # reported below
                result["error"] = e

        th = threading.Thread(target=slow)
        th.start()
        self.addCleanup(th.join, 12)
        time.sleep(0.3)  # the request is at the monolith now
        # the new config has no upstream x at all: its pool is retired
        gw.write_config(route_config({"y": other.address}, "y", admin))
        r, doc = self.post_reload(gw)
        self.assertEqual(r.status, 200, repr(r))
        self.wait_routing(gw.port, "other")
        self.assertNotIn("resp", result, "the slow request finished before the reload: the test proves nothing")
        th.join(10)
        self.assertNotIn("error", result, f"in-flight request failed: {result.get('error')!r}")
        resp = result["resp"]
        self.assertEqual(resp.status, 200, repr(resp))
        self.assertEqual(resp.json(), {"slept_ms": 1500}, repr(resp))
        self.assertGreater(result["elapsed"], 1.4)
        self.assertEqual([q["target"] for q in other.requests if "slow" in q["target"]], [])
        # the next request on the same connection routes on the new snapshot
        c.send(build_request("GET", "/next"))
        r2 = c.read_response(timeout=5)
        self.assertEqual((r2.status, r2.body), (200, b"other"), repr(r2))


class ListenerReloadTest(AdminMixin, fxtest.FxTestCase):
    def test_listeners_open_close_and_busy_address_fails(self):
        up = self.recording(name="up")
        admin = free_port()
        l1 = free_port()
        l2 = free_port()
        a1, a2 = f"127.0.0.1:{l1}", f"127.0.0.1:{l2}"

        def cfg(*listen):
            return route_config({"up": up.address}, "up", admin, listen=list(listen))

        gw = self.gateway(cfg(a1))
        self.assertTrue(connect_refused(l2))

        # added: open as soon as the reload answers
        gw.write_config(cfg(a1, a2))
        r, doc = self.post_reload(gw)
        self.assertEqual(r.status, 200, repr(r))
        for _ in range(6):  # several connections: every worker's socket serves
            self.assertEqual(self.probe(l2), "up")
        self.assertEqual(self.probe(l1), "up")
        listed = [x["address"] for x in self.admin(gw, "/admin/config").json()["config"]["listen"]]
        self.assertEqual(listed, [a1, a2])

        # removed: closed (every worker's socket) shortly after
        gw.write_config(cfg(a1))
        r, doc = self.post_reload(gw)
        self.assertEqual(r.status, 200, repr(r))
        if not wait_until(lambda: connect_refused(l2), 2.0):
            self.fail(f"{a2} still accepts connections 2 s after a reload removed it")
        self.assertEqual(self.probe(l1), "up")

        # an address taken by another socket: the reload fails as a whole,
        # the listener it opened for l2 on the way is closed again
        busy = socket.socket()
        self.addCleanup(busy.close)
        busy.bind(("127.0.0.1", 0))
        busy.listen(8)
        busy.settimeout(2)
        a3 = f"127.0.0.1:{busy.getsockname()[1]}"
        gw.write_config(cfg(a1, a2, a3))
        r, doc = self.post_reload(gw)
        self.assertEqual(r.status, 400, repr(r))
        self.assertEqual(doc["status"], "error")
        self.assertTrue(any(a3 in e and f"{gw.config_path}:" in e for e in doc["errors"]),
                        f"no error names {a3}: {doc['errors']}")
        self.assertEqual(self.reload_counts(gw), (2, 1))
        self.assertEqual(self.probe(l1), "up")
        self.assertTrue(connect_refused(l2), f"{a2} stays open after the failed reload")
        # the busy socket still owns its address
        s = socket.create_connection(busy.getsockname(), timeout=2)
        self.addCleanup(s.close)
        conn, _ = busy.accept()
        conn.close()
        listed = [x["address"] for x in self.admin(gw, "/admin/config").json()["config"]["listen"]]
        self.assertEqual(listed, [a1])


class WatchTest(AdminMixin, fxtest.FxTestCase):
    def test_watch_follows_renames_and_in_place_writes(self):
        alpha = self.recording(name="alpha")
        beta = self.recording(name="beta")
        admin = free_port()
        ups = {"alpha": alpha.address, "beta": beta.address}
        cfg_a = route_config(ups, "alpha", admin, workers=1)
        cfg_b = route_config(ups, "beta", admin, workers=1)
        gw = self.gateway(cfg_a, args=["--watch"])
        self.assertEqual(self.probe(gw.port), "alpha")

        gw.write_config(cfg_b)                    # temp file + rename
        took = self.wait_routing(gw.port, "beta", timeout=3.0)
        fxtest.measure("--watch: rename picked up after", f"{took:.2f} s")
        self.wait_counts(gw, 1, 0)

        text_a = gw.write_config(cfg_a, atomic=False)  # in place, same inode
        took = self.wait_routing(gw.port, "alpha", timeout=3.0)
        fxtest.measure("--watch: in-place write picked up after", f"{took:.2f} s")
        self.wait_counts(gw, 2, 0)

        bad = route_config(ups, "alpha", admin, workers=1)
        bad["routes"][0]["upstream"] = "gamma"
        gw.write_config(bad)
        self.wait_counts(gw, 2, 1, timeout=3.0, what="--watch with an invalid file")
        for _ in range(3):
            self.assertEqual(self.probe(gw.port), "alpha")
        self.assertEqual(self.running_hash(gw), sha256_text(text_a))
        self.assertIn("unknown upstream 'gamma'", gw.proc.stderr())
        # an unchanged broken file is not reloaded (and counted) again every second
        time.sleep(1.5)
        self.assertEqual(self.reload_counts(gw), (2, 1))

        gw.write_config(cfg_b, atomic=False)      # and it recovers with the next good write
        self.wait_routing(gw.port, "beta", timeout=3.0)
        self.wait_counts(gw, 3, 1)


class InvalidReloadLogTest(AdminMixin, fxtest.FxTestCase):
    def test_invalid_reload_logs_positioned_errors(self):
        up = self.recording(name="up")
        admin = free_port()
        cfg = route_config({"up": up.address}, "up", admin)
        gw = self.gateway(cfg)
        bad = route_config({"up": up.address}, "up", admin)
        bad["upstreams"]["up"]["timout"] = "5s"   # unknown key (did you mean 'timeout'?)
        bad["routes"][0]["upstream"] = "upp"     # unknown upstream
        text = gw.write_config(bad)
        l1, c1 = position(text, "timout")
        l2, c2 = position(text, "upp\n")
        rc, expected, _ = check_errors(gw.config_path)
        self.assertEqual(rc, 1)
        self.assertEqual(len(expected), 2, expected)
        self.assertTrue(expected[0].startswith(f"{gw.config_path}:{l1}:{c1}: error: "), expected)
        self.assertIn("timeout", expected[0])
        self.assertTrue(expected[1].startswith(f"{gw.config_path}:{l2}:{c2}: error: "), expected)

        gw.sighup()
        self.wait_counts(gw, 0, 1)
        err = gw.proc.stderr()
        for line in expected:
            self.assertIn(line + "\n", err, f"SIGHUP: stderr lacks the error line\n{fxtest.tail(err)}")

        r, doc = self.post_reload(gw)
        self.assertEqual(r.status, 400, repr(r))
        self.assertEqual(doc, {"status": "error", "errors": expected})
        self.wait_counts(gw, 0, 2)
        err = gw.proc.stderr()
        for line in expected:
            self.assertEqual(err.count(line + "\n"), 2, f"POST: stderr\n{fxtest.tail(err)}")
        self.assertEqual(self.probe(gw.port), "up")


class AccessLogReloadTest(AdminMixin, fxtest.FxTestCase):
    def test_access_log_moves_to_the_new_file(self):
        up = self.recording(name="up")
        admin = free_port()
        log1 = os.path.join(self.tmp, "access-1.log")
        log2 = os.path.join(self.tmp, "access-2.log")

        def cfg(log):
            return route_config({"up": up.address}, "up", admin, extra={"log": {"access": log}})

        gw = self.gateway(cfg(log1))
        keep = self.client(gw.port)
        keep.send(build_request("GET", "/before-keepalive"))
        self.assertEqual(keep.read_response().status, 200)
        self.assertEqual(self.probe(gw.port, "/before-fresh"), "up")

        def paths(path):
            out = []
            for line in fxtest.read_text(path).splitlines():
                out.append(json.loads(line)["path"])
            return out

        self.assertTrue(wait_until(lambda: "/before-fresh" in paths(log1), 2), paths(log1))

        gw.write_config(cfg(log2))
        r, doc = self.post_reload(gw)
        self.assertEqual(r.status, 200, repr(r))
        time.sleep(0.1)  # the workers adopt the snapshot at their next loop turn
        self.assertEqual(self.probe(gw.port, "/after-fresh"), "up")
        keep.send(build_request("GET", "/after-keepalive"))
        self.assertEqual(keep.read_response().status, 200)
        self.assertTrue(wait_until(lambda: {"/after-fresh", "/after-keepalive"} <= set(paths(log2)), 2),
                        f"new file: {paths(log2)}")
        self.assertEqual([p for p in paths(log1) if p.startswith("/after")], [],
                         "requests after the reload were logged to the old file")
        self.assertEqual(self.admin(gw, "/admin/config").json()["config"]["log"]["access"], log2)

        # one more reload: by then the first file is no longer held open
        gw.write_config(cfg("off"))
        r, doc = self.post_reload(gw)
        self.assertEqual(r.status, 200, repr(r))

        def open_files():
            out = set()
            for fd in os.listdir(f"/proc/{gw.pid}/fd"):
                try:
                    out.add(os.readlink(f"/proc/{gw.pid}/fd/{fd}"))
                except OSError:
                    pass
            return out

        self.assertTrue(wait_until(lambda: log1 not in open_files(), 2),
                        f"{log1} is still open two reloads later")
        n2 = len(paths(log2))
        self.assertEqual(self.probe(gw.port, "/after-off"), "up")
        time.sleep(0.2)
        self.assertNotIn("/after-off", paths(log1) + paths(log2))
        self.assertEqual(len(paths(log2)), n2)
