"""Weighted and sticky splits (routes[].split, routes[].sticky) and path
rewriting (routes[].rewrite), through real gateway processes.

Two recording upstreams, `a` and `b`, answer their own name, so every
response says which side served it. Many requests go out over keep-alive
connections from several threads (the gateway runs two workers, so a user's
requests cross workers); reloads are POST /admin/reload or SIGHUP, and a
`/probe` route whose upstream flips with every config generation tells when
both workers serve the new snapshot."""

import json
import os
import random
import threading
import time

import jwt  # python3-jwt

import fxtest
from fxtest import build_request, fetch
from reloadkit import AdminMixin, wait_until

ISS = "https://id.split.test"
AUD = "ficus-split-tests"
THREADS = 8


def run_load(port, jobs, threads=THREADS):
    """Sends every (target, headers) job, spread over `threads` keep-alive
    connections; returns the responses in job order."""
    out = [None] * len(jobs)
    errors = []

    def worker(k):
        c = None
        try:
            for i in range(k, len(jobs), threads):
                target, headers = jobs[i]
                if c is None:
                    c = fxtest.RawClient(port, timeout=10)
                c.send(build_request("GET", target, headers))
                r = c.read_response(10)
                out[i] = r
                if (r.header("connection") or "").lower() == "close":
                    c.close()
                    c = None
        except Exception as e:  # reported by the test, not lost on a thread
            errors.append(f"{type(e).__name__}: {e}")
        finally:
            if c is not None:
                c.close()

    ts = [threading.Thread(target=worker, args=(k,), daemon=True) for k in range(threads)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(120)
    if errors:
        raise AssertionError(f"load errors: {errors[:3]}")
    return out


def sides(test, responses):
    """The bodies ('a' / 'b') of 200 responses."""
    names = []
    for r in responses:
        test.assertIsNotNone(r)
        test.assertEqual(r.status, 200, repr(r))
        names.append(r.body.decode())
    return names


class SplitBase(AdminMixin, fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.a = self.recording(name="a")
        self.b = self.recording(name="b")
        self.admin_port = fxtest.free_port()
        self.gen = 0

    def cfg(self, split, sticky=None, routes_extra=(), prefix="/api/", **top):
        """Route `split` on `prefix` to `split` ([(name, weight)]), plus the `/probe` route for this
        config generation (to `a` in even generations, `b` in odd ones)."""
        route = {"name": "split", "match": {"prefix": prefix},
                 "split": [{"upstream": n, "weight": w} for n, w in split]}
        if sticky:
            route["sticky"] = sticky
        cfg = {"workers": 2,
               "admin": {"address": f"127.0.0.1:{self.admin_port}"},
               "upstreams": {"a": {"targets": [self.a.address]}, "b": {"targets": [self.b.address]}},
               "routes": [{"name": "probe", "match": {"path": "/probe"}, "upstream": "ab"[self.gen % 2],
                           "auth": "none"},
                          route] + list(routes_extra),
               "log": {"access": "off"}}
        cfg.update(top)
        return cfg

    def start(self, cfg):
        self.gw = self.gateway(cfg)
        return self.gw

    def reload(self, make_cfg, how="POST"):
        """The next config generation (make_cfg() sees the new self.gen), reloaded; returns once both
        workers route /probe by it."""
        self.gen += 1
        self.gw.write_config(make_cfg())
        if how == "POST":
            r, doc = self.post_reload(self.gw)
            self.assertEqual(r.status, 200, f"{r!r} {doc}")
        else:
            self.gw.sighup()
        self.wait_routing(self.gw.port, "ab"[self.gen % 2], timeout=5, consecutive=10)

    def placement(self, users, headers_for, rounds=1, path="/api/u"):
        """{user: side} over `rounds` passes (shuffled, so a user's requests use different connections
        and workers); fails if any user saw two sides."""
        jobs = []
        for _ in range(rounds):
            batch = [(u, (f"{path}/{u}", headers_for(u))) for u in users]
            random.shuffle(batch)
            jobs.extend(batch)
        got = sides(self, run_load(self.gw.port, [j for _, j in jobs]))
        seen = {}
        for (u, _), side in zip(jobs, got):
            seen.setdefault(u, set()).add(side)
        split_users = {u: s for u, s in seen.items() if len(s) > 1}
        self.assertFalse(split_users, f"users served by both sides: {list(split_users.items())[:5]}")
        return {u: s.pop() for u, s in seen.items()}

    def assertShare(self, placement, side, lo, hi):
        share = sum(1 for s in placement.values() if s == side) / len(placement)
        self.assertTrue(lo <= share <= hi, f"{share:.3f} of the users on {side}, want {lo}..{hi}")


class WeightedTest(SplitBase):
    def test_ratio_10_90_over_10000_requests(self):
        self.start(self.cfg([("a", 10), ("b", 90)]))
        n = 10000
        t0 = time.monotonic()
        got = sides(self, run_load(self.gw.port, [(f"/api/r/{i}", None) for i in range(n)]))
        fxtest.measure("split: 10,000 requests (s)", round(time.monotonic() - t0, 2))
        na = got.count("a")
        # binomial(10000, 0.1): sd 30; 150 is five of them
        self.assertTrue(850 <= na <= 1150, f"{na} of {n} requests went to a (weight 10 of 100)")
        self.assertEqual(got.count("b"), n - na)
        # what the clients saw is what the upstreams served
        self.assertEqual((len(self.a.requests), len(self.b.requests)), (na, n - na))

    def test_weight_zero_drains(self):
        sticky = {"name": "sticky", "match": {"prefix": "/s/"}, "sticky": "header:X-User",
                  "split": [{"upstream": "a", "weight": 0}, {"upstream": "b", "weight": 5}]}
        self.start(self.cfg([("a", 0), ("b", 5)], routes_extra=[sticky]))
        got = sides(self, run_load(self.gw.port, [(f"/api/r/{i}", None) for i in range(1000)]))
        self.assertEqual(got.count("b"), 1000, "a side of weight 0 was chosen at random")
        users = [f"user-{i}" for i in range(300)]
        placed = self.placement(users, lambda u: [("X-User", u)], path="/s")
        self.assertEqual(set(placed.values()), {"b"}, "a side of weight 0 was chosen for a sticky user")
        self.assertEqual(len(self.a.requests), 0)

        # drained later by a reload: the users of `a` all go to `b`, the others stay
        self.reload(lambda: self.cfg([("a", 0), ("b", 5)], routes_extra=[
            dict(sticky, split=[{"upstream": "a", "weight": 5}, {"upstream": "b", "weight": 5}])]))
        before = self.placement(users, lambda u: [("X-User", u)], path="/s")
        self.assertShare(before, "a", 0.35, 0.65)
        self.reload(lambda: self.cfg([("a", 0), ("b", 5)], routes_extra=[sticky]))
        after = self.placement(users, lambda u: [("X-User", u)], path="/s")
        self.assertEqual(set(after.values()), {"b"})

    def test_access_log_names_the_side(self):
        log_path = os.path.join(self.tmp, "access.log")
        self.start(self.cfg([("a", 1), ("b", 1)], log={"access": log_path}))
        rs = run_load(self.gw.port, [(f"/api/log/{i}", None) for i in range(200)])
        got = sides(self, rs)
        self.assertTrue(30 < got.count("a") < 170, f"a served {got.count('a')} of 200")
        by_id = {}

        def logged():
            for line in fxtest.read_text(log_path).splitlines():
                if line.strip():
                    e = json.loads(line)
                    by_id[e["request_id"]] = e
            return len(by_id) >= 200

        self.assertTrue(wait_until(logged, 5), f"{len(by_id)} access log lines of 200")
        for r, side in zip(rs, got):
            e = by_id[r.header("x-request-id")]
            self.assertEqual((e["route"], e["upstream"]), ("split", side), e)


class StickyTest(SplitBase):
    def setUp(self):
        super().setUp()
        self.users = [f"user-{i}" for i in range(300)]

    def test_header_same_side_every_time_and_after_reload(self):
        make = lambda: self.cfg([("a", 50), ("b", 50)], sticky="header:X-User")
        self.start(make())
        hdr = lambda u: [("X-User", u)]
        first = self.placement(self.users, hdr, rounds=3)
        self.assertShare(first, "a", 0.35, 0.65)
        # a request without the header is still served, drawn by weight: both sides over 200
        anon = sides(self, run_load(self.gw.port, [(f"/api/anon/{i}", None) for i in range(200)]))
        self.assertTrue(30 < anon.count("a") < 170, f"without the header, a served {anon.count('a')} of 200")

        # the same weights, the split written in the other order: nobody moves
        self.reload(lambda: self.cfg([("b", 50), ("a", 50)], sticky="header:X-User"))
        self.assertEqual(self.placement(self.users, hdr, rounds=2), first)

        # another gateway process with the same weights places everybody the same way
        other = self.gateway(self.cfg([("a", 50), ("b", 50)], sticky="header:X-User",
                                      admin={"address": f"127.0.0.1:{fxtest.free_port()}"}), name="other")
        jobs = [(f"/api/u/{u}", hdr(u)) for u in self.users]
        self.assertEqual(dict(zip(self.users, sides(self, run_load(other.port, jobs)))), first)

    def test_cookie_same_side_every_time_and_after_sighup(self):
        make = lambda: self.cfg([("a", 30), ("b", 70)], sticky="cookie:sid")
        self.start(make())
        ck = lambda u: [("Cookie", f"theme=dark; sid={u}"), ("Cookie", "lang=en")]
        first = self.placement(self.users, ck, rounds=3)
        self.assertShare(first, "a", 0.18, 0.42)
        # the cookie alone decides: another cookie beside it, or its own Cookie header, changes nothing
        again = self.placement(self.users, lambda u: [("Cookie", "lang=fr"), ("Cookie", f"sid={u}")])
        self.assertEqual(again, first)
        self.reload(make, how="SIGHUP")
        self.assertEqual(self.placement(self.users, ck, rounds=2), first)

    def test_client_ip(self):
        self.start(self.cfg([("a", 50), ("b", 50)], sticky="client_ip"))
        got = sides(self, run_load(self.gw.port, [(f"/api/ip/{i}", None) for i in range(200)]))
        self.assertEqual(len(set(got)), 1, f"one client address, both sides: {got.count('a')} / {got.count('b')}")

    def test_weights_10_90_to_20_80_move_users_only_to_the_side_that_grew(self):
        users = [f"user-{i}" for i in range(2000)]
        hdr = lambda u: [("X-User", u)]
        self.start(self.cfg([("a", 10), ("b", 90)], sticky="header:X-User"))
        before = self.placement(users, hdr)
        self.assertShare(before, "a", 0.07, 0.13)
        self.reload(lambda: self.cfg([("a", 20), ("b", 80)], sticky="header:X-User"))
        after = self.placement(users, hdr)
        self.assertShare(after, "a", 0.16, 0.24)
        moved = [u for u in users if before[u] != after[u]]
        wrong = [u for u in moved if not (before[u] == "b" and after[u] == "a")]
        self.assertEqual(wrong, [], "users moved away from the side that grew")
        # 10% must move; a modulo hash would move far more
        self.assertTrue(0.07 <= len(moved) / len(users) <= 0.13, f"{len(moved)} of {len(users)} users moved")


class TokenStickyTest(SplitBase):
    def setUp(self):
        super().setUp()
        self.key, self.pub_path = self.es256_key()
        self.policies = self.permit_all()
        self.jti = 0

    def token(self, sub):
        self.jti += 1  # every token differs: the claim is what sticks, not the token
        now = int(time.time())
        return jwt.encode({"iss": ISS, "aud": AUD, "iat": now, "exp": now + 600, "sub": sub, "jti": str(self.jti)},
                          self.key, algorithm="ES256", headers={"kid": "k1"})

    def make(self, split):
        cfg = self.cfg(split, sticky="token.sub",
                       auth={"issuers": [{"issuer": ISS, "audiences": [AUD],
                                          "keys": [{"kid": "k1", "alg": "ES256", "pem_file": self.pub_path}]}]},
                       policies=self.policies)
        cfg["routes"][1]["auth"] = "optional"
        return cfg

    def test_token_sub_same_side_every_time_and_after_reload(self):
        self.start(self.make([("a", 50), ("b", 50)]))
        users = [f"sub-{i}" for i in range(200)]
        bearer = lambda u: [("Authorization", f"Bearer {self.token(u)}")]
        first = self.placement(users, bearer, rounds=3)
        self.assertShare(first, "a", 0.33, 0.67)
        # anonymous on an `auth: optional` route: served, drawn by weight
        anon = sides(self, run_load(self.gw.port, [(f"/api/anon/{i}", None) for i in range(200)]))
        self.assertTrue(30 < anon.count("a") < 170, f"anonymous: a served {anon.count('a')} of 200")
        # a bad token is refused before any side is chosen
        r = fetch(self.gw.port, "GET", "/api/u/x", headers=[("Authorization", "Bearer not.a.token")])
        self.assertEqual(r.status, 401, repr(r))

        self.reload(lambda: self.make([("a", 50), ("b", 50)]))
        self.assertEqual(self.placement(users, bearer, rounds=2), first)


class RewriteTest(SplitBase):
    def test_strip_and_prefix_seen_by_the_upstream(self):
        routes = [
            {"name": "docs", "match": {"prefix": "/api/documents/"}, "upstream": "a",
             "rewrite": {"strip_prefix": "/api", "prefix": "/v2"}},
            {"name": "slash", "match": {"prefix": "/old/"}, "upstream": "a",
             "rewrite": {"strip_prefix": "/old", "prefix": "/v3/"}},
            {"name": "strip", "match": {"prefix": "/svc/"}, "upstream": "a", "rewrite": {"strip_prefix": "/svc"}},
            {"name": "add", "match": {"prefix": "/p/"}, "upstream": "a", "rewrite": {"prefix": "/internal"}},
            {"name": "exact", "match": {"path": "/healthz"}, "upstream": "a",
             "rewrite": {"strip_prefix": "/healthz", "prefix": "/status"}},
            {"name": "tpl", "match": {"path": "/users/{id}/profile"}, "upstream": "a",
             "rewrite": {"strip_prefix": "/users/"}},
            {"name": "plain", "match": {"prefix": "/plain/"}, "upstream": "a"},
        ]
        cfg = self.cfg([("a", 1), ("b", 1)], routes_extra=routes, prefix="/split/")
        cfg["routes"][1]["rewrite"] = {"strip_prefix": "/split", "prefix": "/new"}
        log_path = os.path.join(self.tmp, "access.log")
        cfg["log"] = {"access": log_path}
        self.start(cfg)
        cases = [
            ("/api/documents/42", "/v2/documents/42"),
            ("/api/documents/42?fields=title&x=%2F", "/v2/documents/42?fields=title&x=%2F"),
            ("/api/documents/?", "/v2/documents/?"),
            ("/old/a/b", "/v3/a/b"),
            ("/svc/x/y?q=1", "/x/y?q=1"),
            ("/svc/", "/"),
            ("/p/1", "/internal/p/1"),
            ("/healthz?full=1", "/status?full=1"),
            ("/users/7/profile", "/7/profile"),
            ("/plain/kept?as=is", "/plain/kept?as=is"),
        ]
        for target, want in cases:
            n = len(self.a.requests)
            r = fetch(self.gw.port, "GET", target)
            self.assertEqual((r.status, r.body), (200, b"a"), f"{target}: {r!r}")
            self.assertEqual(len(self.a.requests), n + 1, target)
            self.assertEqual(self.a.requests[-1]["target"], want, target)
        # the client's Host is still the one forwarded
        self.assertEqual(fxtest.hget(self.a.requests[0]["headers"], "host"), "test.local")

        # on a split, every side sees the rewritten path; the access log keeps the client's path
        rs = run_load(self.gw.port, [(f"/split/{i}?k={i}", None) for i in range(100)])
        got = sides(self, rs)
        self.assertEqual(set(got), {"a", "b"})
        targets = sorted(q["target"] for q in self.a.requests + self.b.requests if q["target"].startswith("/new/"))
        self.assertEqual(targets, sorted(f"/new/{i}?k={i}" for i in range(100)))
        by_id = {}

        def logged():
            for line in fxtest.read_text(log_path).splitlines():
                if line.strip():
                    e = json.loads(line)
                    by_id[e["request_id"]] = e
            return all(r.header("x-request-id") in by_id for r in rs)

        self.assertTrue(wait_until(logged, 5), "access log lines missing")
        for i, (r, side) in enumerate(zip(rs, got)):
            e = by_id[r.header("x-request-id")]
            self.assertIn(e["path"], (f"/split/{i}", f"/split/{i}?k={i}"), e)
            self.assertEqual(e["upstream"], side, e)
