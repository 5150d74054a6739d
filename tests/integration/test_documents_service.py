"""examples/documents-service: the extracted service and its materialized view (issue 9).

A real `ficus devbroker` holds the topics; kcat writes CloudEvents into them as the gateway would
(docs/events.md); the service consumes them as a group, keeps its view and offsets in SQLite and
serves the enriched documents. Covered: readiness (503 before the first assignment, 200 once caught
up), convergence with the author's profile, re-enrichment on a profile update, delete, per-document
authorization from the forwarded identity headers, malformed messages skipped and counted, the
metrics, a restart that resumes from the stored offsets, a rebuild after the store is deleted, a rebuild
when the broker is a new (empty) cluster under a kept store, an event whose data names another resource
than its key (skipped), OAuth scope from X-User-Scope, and paging of the list.
"""

import json
import os
import re
import time

import fxtest
from fxtest import FxTestCase

WAIT_S = 40.0  # a group (re)join on the dev broker takes a few seconds (session timeout of the old member)
TOPICS = ["--topic", "profiles:2", "--topic", "documents:2"]


def service_bin():
    env = os.environ.get("DOCUMENTS_SERVICE_BIN")
    if env:
        return env
    build = os.path.dirname(os.path.dirname(fxtest.ficus_bin()))
    return os.path.join(build, "examples", "documents-service", "documents-service")


def event(type_, subject=None, data=None, **extra):
    ev = {"specversion": "1.0", "id": f"ev-{time.monotonic_ns()}", "source": "/ficus/test", "type": type_}
    if subject is not None:
        ev["subject"] = ev["partitionkey"] = subject
    if data is not None:
        ev["datacontenttype"] = "application/json"
        ev["data"] = data
    ev.update(extra)
    return json.dumps(ev)


def profile(pid, name, team="core"):
    return (pid, event("profile.updated", pid, {"id": pid, "name": name, "team": team}))


def document(did, author, title="t", body="b"):
    return (did, event("document.updated", did, {"id": did, "title": title, "author": author, "body": body}))


def metrics(text):
    """Prometheus text → {(name, frozenset(labels)): value}."""
    out = {}
    for line in text.splitlines():
        m = re.match(r'^([a-z_]+)(?:\{(.*)\})? (\S+)$', line)
        if m:
            labels = frozenset(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


class DocumentsService:
    """The service on a free port; stop() fails the test on a sanitizer report or a bad exit."""

    def __init__(self, test, workdir, brokers, store, name="docsvc", group="documents-service"):
        self.test = test
        self.port = fxtest.free_port()
        self.proc = fxtest.Proc([service_bin(), "--listen", f"127.0.0.1:{self.port}", "--brokers", brokers,
                                 "--store", store, "--group", group,
                                 "--policies", os.path.join(fxtest.REPO, "policies")],
                                workdir, name, env=fxtest.SANITIZER_ENV)
        test.addCleanup(self.stop)
        deadline = time.monotonic() + 15
        while f"documents-service listening on 127.0.0.1:{self.port}" not in self.proc.stdout():
            if not self.proc.alive() or time.monotonic() > deadline:
                raise AssertionError(f"documents-service did not start\n{self.proc.describe()}")
            time.sleep(0.02)

    def get(self, target, user=None, roles=None, scope=None):
        headers = []
        if user is not None:
            headers.append(("X-User-Id", user))
        if roles is not None:
            headers.append(("X-User-Roles", roles))
        if scope is not None:
            headers.append(("X-User-Scope", scope))
        r = fxtest.fetch(self.port, "GET", target, headers=headers)
        self.test.assertEqual(r.header("x-served-by"), "documents-service", r)
        return r

    def metrics(self):
        r = self.get("/metrics")
        self.test.assertEqual(r.status, 200, r)
        self.test.assertEqual(r.header("access-control-allow-origin"), "*", r)
        return metrics(r.body.decode())

    def wait_ready(self, timeout=WAIT_S):
        deadline = time.monotonic() + timeout
        while True:
            r = self.get("/healthz")
            if r.status == 200:
                self.test.assertEqual(r.json()["status"], "ready", r)
                return r.json()
            self.test.assertEqual(r.status, 503, r)
            self.test.assertEqual(r.json()["status"], "catching_up", r)
            if not self.proc.alive() or time.monotonic() > deadline:
                raise AssertionError(f"documents-service not ready within {timeout}s: {r!r}\n{self.proc.describe()}")
            time.sleep(0.1)

    def wait_for(self, what, predicate, timeout=WAIT_S):
        """Polls predicate() (truthy = done) until the deadline; returns its value."""
        deadline = time.monotonic() + timeout
        while True:
            v = predicate()
            if v:
                return v
            if not self.proc.alive() or time.monotonic() > deadline:
                raise AssertionError(f"documents-service: {what} not reached within {timeout}s\n"
                                     f"{self.proc.describe()}")
            time.sleep(0.05)

    def view(self):
        """Every document of the view, as an admin sees it (list of dicts)."""
        r = self.get("/api/documents", user="root", roles="admin")
        self.test.assertEqual(r.status, 200, r)
        return r.json()["items"]

    def stop(self):
        if self.proc.stopped:
            return self.proc.returncode
        rc = self.proc.stop(grace=15)
        report = fxtest.sanitizer_report(self.proc.stderr())
        if report:
            self.test.fail(f"sanitizer report in documents-service stderr:\n{report}")
        self.test.assertEqual(rc, 0, f"documents-service exit code on SIGTERM\n{self.proc.describe()}")
        return rc


class DocumentsServiceTest(FxTestCase):
    def setUp(self):
        super().setUp()
        if not os.path.exists(service_bin()):
            self.fail(f"{service_bin()} does not exist (build it first)")
        self.store = os.path.join(self.tmp, "view.db")

    def produce(self, broker, topic, messages):
        p = fxtest.kcat_produce(broker.bootstrap, topic, messages)
        self.assertEqual(p.returncode, 0, f"kcat: {p.stderr}")

    def service(self, broker, **kw):
        return DocumentsService(self, self.tmp, broker.bootstrap, self.store, **kw)

    def test_view_follows_events_with_authz_skips_and_metrics(self):
        broker = fxtest.DevBroker(self, self.tmp, args=TOPICS)
        broker.down()  # no assignment can happen: the service must say it is not ready
        svc = self.service(broker)
        for _ in range(10):
            r = svc.get("/healthz")
            self.assertEqual(r.status, 503, r)
            self.assertEqual(r.json()["status"], "catching_up", r)
            self.assertIn("lag", r.json())
            time.sleep(0.05)
        self.assertEqual(svc.metrics()[("documents_service_ready", frozenset())], 0)
        broker.up()

        self.produce(broker, "profiles", [profile("u1", "Ada")])
        self.produce(broker, "documents", [document("d1", "u1", "one"), document("d2", "u1", "two"),
                                           document("d3", "u2", "three")])
        svc.wait_ready()
        docs = svc.wait_for("three documents in the view", lambda: len(svc.view()) == 3 and svc.view())
        self.assertEqual([d["id"] for d in docs], ["d1", "d2", "d3"])
        self.assertEqual(docs[0], {"id": "d1", "title": "one", "author": "u1", "body": "b",
                                   "author_profile": {"id": "u1", "name": "Ada", "team": "core"}})
        self.assertIsNone(docs[2]["author_profile"])  # u2 has no profile (yet)

        # single GET: the document exactly as published, plus author_profile
        r = svc.get("/api/documents/d1", user="u1")
        self.assertEqual(r.status, 200, r)
        self.assertEqual(r.header("content-type"), "application/json")
        self.assertEqual(r.json(), docs[0])

        # a profile update re-enriches every document of that author; a new profile joins too
        self.produce(broker, "profiles", [profile("u1", "Ada Lovelace", "math"), profile("u2", "Grace")])
        svc.wait_for("re-enrichment", lambda: [d["author_profile"] and d["author_profile"]["name"]
                                               for d in svc.view()] == ["Ada Lovelace", "Ada Lovelace", "Grace"])
        self.assertEqual(svc.get("/api/documents/d2", user="u1").json()["author_profile"],
                         {"id": "u1", "name": "Ada Lovelace", "team": "math"})

        # delete removes; a deleted event has no data (the key and subject name the document)
        self.produce(broker, "documents", [("d2", event("document.deleted", "d2"))])
        svc.wait_for("d2 deleted", lambda: [d["id"] for d in svc.view()] == ["d1", "d3"])
        r = svc.get("/api/documents/d2", user="u1")
        self.assertEqual(r.status, 404, r)
        self.assertTrue(r.header("content-type").startswith("application/problem+json"), r)

        # per-document authorization from the forwarded identity only
        self.assertEqual(svc.get("/api/documents/d3", user="u1").status, 403)           # not the author
        self.assertEqual(svc.get("/api/documents/d3", user="u2").status, 200)           # the author
        self.assertEqual(svc.get("/api/documents/d3", user="u1", roles="editor").status, 200)
        self.assertEqual(svc.get("/api/documents/d3", user="u1", roles="viewer, admin").status, 200)
        self.assertEqual(svc.get("/api/documents/d3").status, 401)                      # no identity
        listing = lambda **kw: [d["id"] for d in svc.get("/api/documents" + kw.pop("q", ""), **kw).json()["items"]]
        self.assertEqual(listing(user="u1"), ["d1"])
        self.assertEqual(listing(user="u2"), ["d3"])
        self.assertEqual(listing(user="u9"), [])
        self.assertEqual(listing(user="u9", roles="editor"), ["d1", "d3"])
        self.assertEqual(listing(user="u9", roles="editor", q="?author=u2"), ["d3"])
        self.assertEqual(listing(user="u1", q="?author=u2"), [])
        self.assertEqual(svc.get("/api/documents?author=u1").status, 401)

        # scope, as the gateway forwards it (auth.forward X-User-Scope: scope): the route's policy
        # permits 'documents:read' in token.scope — an OAuth string of words, or a ","-joined array
        self.assertEqual(svc.get("/api/documents/d3", user="u9", scope="openid documents:read").status, 200)
        self.assertEqual(svc.get("/api/documents/d3", user="u9", scope="profile,documents:read").status, 200)
        self.assertEqual(svc.get("/api/documents/d3", user="u9", scope="openid documents:write").status, 403)
        self.assertEqual(svc.get("/api/documents/d3", user="u9", scope="documents:readx").status, 403)
        self.assertEqual(listing(user="u9", scope="documents:read"), ["d1", "d3"])
        # roles rendered as JSON (an array the gateway does not join: a non-string element)
        self.assertEqual(svc.get("/api/documents/d3", user="u9", roles='["editor",{"x":1}]').status, 200)
        self.assertEqual(svc.get("/api/documents/d3", user="u9", roles='["x,editor",{"x":1}]').status, 403)

        # pages: ?limit=&after=, "next" only when there are more readable items
        page = svc.get("/api/documents?limit=1", user="root", roles="admin").json()
        self.assertEqual(([d["id"] for d in page["items"]], page.get("next")), (["d1"], "d1"))
        page = svc.get("/api/documents?limit=1&after=d1", user="root", roles="admin").json()
        self.assertEqual(([d["id"] for d in page["items"]], page.get("next")), (["d3"], None))
        page = svc.get("/api/documents?limit=1", user="u2").json()  # d1 is not u2's: not counted
        self.assertEqual(([d["id"] for d in page["items"]], page.get("next")), (["d3"], None))
        for bad in ("0", "1001", "x", "-1", ""):
            r = svc.get(f"/api/documents?limit={bad}", user="root", roles="admin")
            self.assertEqual(r.status, 400, (bad, r))
        r = fxtest.fetch(svc.port, "GET", "/api/documents", headers=[("X-User-Id", "u1"), ("X-Big", "x" * 20000)])
        self.assertGreaterEqual(r.status, 400, r)

        # the review's forged write: PUT /api/profiles/2 {"\u0069d":"1",...} reaches the topic keyed "2"
        # with both members (the monolith drops only a literal "id"); profile u1 must not change
        before = svc.metrics()
        forged = ('{"specversion":"1.0","id":"e1","type":"profile.updated","subject":"u2",'
                  '"data":{"id":"u2","\\u0069d":"u1","name":"Mallory","team":"x"}}')
        self.produce(broker, "profiles", [("u2", forged),
                                          ("u2", event("profile.updated", "u2", {"id": "u1", "name": "Mallory"})),
                                          ("u9", event("profile.updated", "u9", {"id": "u9", "name": "Nine"}))])
        prof = lambda m, reason: m[("documents_service_events_skipped_total",
                                    frozenset({("topic", "profiles"), ("reason", reason)}))]
        applied_p = ("documents_service_events_applied_total", frozenset({("topic", "profiles")}))
        svc.wait_for("the forged profiles skipped, u9 applied", lambda: (lambda m: (
            prof(m, "duplicate_member") > prof(before, "duplicate_member")
            and prof(m, "id_mismatch") > prof(before, "id_mismatch") and m[applied_p] > before[applied_p]))(
            svc.metrics()))
        m = svc.metrics()
        for reason in ("duplicate_member", "id_mismatch"):
            key = ("documents_service_events_skipped_total", frozenset({("topic", "profiles"), ("reason", reason)}))
            self.assertEqual(m[key] - before[key], 1, reason)
        self.assertEqual(svc.get("/api/documents/d1", user="u1").json()["author_profile"]["name"], "Ada Lovelace")

        # malformed messages: skipped, counted by reason, never a crash; their offsets advance
        before = svc.metrics()
        self.produce(broker, "documents", [
            ("m1", "this is not JSON"),
            ("m2", json.dumps(["an", "array"])),
            ("m4", event("document.exploded", "m4", {"id": "m4"})),
            ("m5", event("document.updated", "m5")),  # no data
        ])
        # no key, no subject, no data.id (kcat_produce sends every message of a call keyed or none)
        self.produce(broker, "documents", [(None, event("document.updated", None, {"title": "no id anywhere"}))])
        self.produce(broker, "documents", [("d4", json.dumps({"specversion": "1.0", "type": "document.updated",
                                                              "data": {"id": "d4", "author": "u2"}}))])
        svc.wait_for("d4 after the malformed ones", lambda: "d4" in [d["id"] for d in svc.view()])
        m = svc.metrics()

        def skipped(reason):
            key = ("documents_service_events_skipped_total", frozenset({("topic", "documents"), ("reason", reason)}))
            return m[key] - before[key]
        self.assertEqual((skipped("not_json"), skipped("no_id"), skipped("unknown_type"), skipped("no_data")),
                         (2, 1, 1, 1))
        applied = ("documents_service_events_applied_total", frozenset({("topic", "documents")}))
        self.assertEqual(m[applied], 5)  # d1 d2 d3, the delete, d4
        self.assertEqual(m[("documents_service_events_applied_total", frozenset({("topic", "profiles")}))], 4)
        self.assertEqual(m[("documents_service_view_documents", frozenset())], 3)
        self.assertEqual(m[("documents_service_ready", frozenset())], 1)
        lags = {k: v for k, v in m.items() if k[0] == "documents_service_consumer_lag"}
        self.assertEqual(sorted(dict(k[1])["topic"] + dict(k[1])["partition"] for k in lags),
                         ["documents0", "documents1", "profiles0", "profiles1"])
        svc.wait_for("zero lag", lambda: all(v == 0 for k, v in svc.metrics().items()
                                             if k[0] == "documents_service_consumer_lag"))
        self.assertTrue(svc.proc.alive())

    def test_restart_resumes_from_stored_offsets_and_deleted_store_rebuilds(self):
        broker = fxtest.DevBroker(self, self.tmp, args=TOPICS)
        self.produce(broker, "profiles", [profile("u1", "Ada")])
        self.produce(broker, "documents", [document(f"d{i}", "u1", f"doc {i}") for i in range(1, 7)])
        svc = self.service(broker, name="first")
        svc.wait_ready()  # caught up: every message before it is applied
        self.assertEqual(len(svc.view()), 6)
        m = svc.metrics()
        self.assertEqual(m[("documents_service_events_applied_total", frozenset({("topic", "documents")}))], 6)
        self.assertEqual(m[("documents_service_events_applied_total", frozenset({("topic", "profiles")}))], 1)
        first_view = svc.view()
        svc.stop()

        # written while the service is down: only these are read after the restart
        self.produce(broker, "documents", [document("d7", "u1", "doc 7"), document("d1", "u1", "doc 1, edited")])
        svc = self.service(broker, name="second")
        svc.wait_ready()
        m = svc.metrics()
        self.assertEqual(m[("documents_service_events_applied_total", frozenset({("topic", "documents")}))], 2)
        self.assertEqual(m[("documents_service_events_applied_total", frozenset({("topic", "profiles")}))], 0)
        view = svc.view()
        ids = [d["id"] for d in view]
        self.assertEqual(ids, sorted(set(ids)), "duplicates in the view")
        self.assertEqual(ids, ["d1", "d2", "d3", "d4", "d5", "d6", "d7"])
        self.assertEqual(view[0]["title"], "doc 1, edited")
        self.assertEqual(view[6]["author_profile"], {"id": "u1", "name": "Ada", "team": "core"})
        self.assertEqual(view[1:6], first_view[1:6])
        self.assertIn("at stored offset", svc.proc.stderr())
        svc.stop()

        # the store deleted: the next start reads both topics from the beginning
        os.unlink(self.store)
        svc = self.service(broker, name="third")
        svc.wait_ready()
        m = svc.metrics()
        self.assertEqual(m[("documents_service_events_applied_total", frozenset({("topic", "documents")}))], 8)
        self.assertEqual(m[("documents_service_events_applied_total", frozenset({("topic", "profiles")}))], 1)
        self.assertEqual(svc.view(), view)
        self.assertNotIn("at stored offset", svc.proc.stderr())

    def test_new_cluster_under_a_kept_store_rebuilds(self):
        """The embedded broker restarted empty (a new cluster id) while the store file stayed: the
        stored offsets point into logs that no longer exist. The view is cleared and rebuilt from the
        new topics — not left with the old rows, not resumed at an offset the new log never had."""
        old = fxtest.DevBroker(self, self.tmp, name="old", args=TOPICS)
        self.produce(old, "profiles", [profile("u1", "Ada")])
        self.produce(old, "documents", [document(f"d{i}", "u1", f"doc {i}") for i in range(1, 7)])
        svc = self.service(old, name="first")
        svc.wait_ready()
        self.assertEqual(len(svc.view()), 6)
        svc.stop()
        old.stop()

        new = fxtest.DevBroker(self, self.tmp, name="new", args=TOPICS)
        self.produce(new, "documents", [document("d1", "u1", "doc 1, new cluster"), document("d9", "u1", "nine")])
        svc = self.service(new, name="second")
        svc.wait_ready()
        view = svc.wait_for("the new cluster's two documents",
                            lambda: [d["id"] for d in svc.view()] == ["d1", "d9"] and svc.view())
        self.assertEqual(view[0]["title"], "doc 1, new cluster")
        self.assertIsNone(view[0]["author_profile"])  # u1's profile was in the old cluster only
        # a new cluster id, or (the dev broker's id can repeat) a partition that went back
        self.assertIn("rebuilding the view from the beginning", svc.proc.stderr())
        m = svc.metrics()
        self.assertEqual(m[("documents_service_view_resets_total", frozenset())], 1)
        self.assertEqual(m[("documents_service_view_documents", frozenset())], 2)
        # written after the rebuild: still applied (the offsets now belong to the new cluster)
        self.produce(new, "documents", [document("d10", "u1", "ten")])
        svc.wait_for("d10", lambda: [d["id"] for d in svc.view()] == ["d1", "d10", "d9"])
        svc.stop()

        # and a restart on the same new cluster resumes, no second reset
        svc = self.service(new, name="third")
        svc.wait_ready()
        self.assertEqual([d["id"] for d in svc.view()], ["d1", "d10", "d9"])
        self.assertNotIn("rebuilding the view", svc.proc.stderr())
        self.assertIn("at stored offset", svc.proc.stderr())


if __name__ == "__main__":
    import unittest
    unittest.main()
