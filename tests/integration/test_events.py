"""Change events: a 2xx to a state-changing request on a route with `events`
becomes a CloudEvent in Kafka, keyed by the entity.

Real parts only: the gateway, `ficus devbroker` (librdkafka's mock cluster,
standalone so that it can be taken down and up while the gateway runs, or
outlive a gateway killed with SIGKILL) or the embedded broker, an upstream
that answers what each request asks for (status, delay) with the request's
own body, and kcat as the consumer.

The mock cluster keeps its log in memory, ignores acks and checks sequence
numbers only for transactional producers: these tests assert what reaches a
consumer and what the gateway counts, and inject faults with the broker's
own error injection (down/up, topic errors), never by relying on guarantees
the mock cannot give."""

import json
import os
import re
import signal
import socket
import threading
import time

import jwt  # python3-jwt

import fxtest
from fxtest import DevBroker, fetch, kcat_consume
from reloadkit import parse_metrics, wait_until

ISS = "https://id.events.test"
AUD = "ficus-events-tests"
UUID7_RE = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")
TIME_RE = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
# two routes publishing to two topics (a failure on one must not hold up the other)
TWO_TOPICS = [
    {"name": "docs", "match": {"path": "/docs/{id}"}, "upstream": "up", "auth": "none",
     "events": {"topic": "docs", "type": "doc.changed", "key": "{id}"}},
    {"name": "other", "match": {"path": "/other/{id}"}, "upstream": "up", "auth": "none",
     "events": {"topic": "other", "type": "o.changed", "key": "{id}"}},
]
ORDER = ["specversion", "id", "source", "type", "subject", "partitionkey", "time", "datacontenttype", "data",
         "data_base64", "ficusrequestid", "ficusactor", "ficusmethod", "ficusstatus", "ficusdataomitted"]


class EchoUpstream(fxtest.ThreadedServer):
    """Answers each request with status X-Status (default 200) after X-Delay seconds, with the
    request's body and Content-Type (or X-Reply as a text body). Counts requests per path."""

    def __init__(self, test):
        self.requests = []
        super().__init__(test)

    def handle(self, sock, index):
        reader = fxtest._Reader(sock)
        while True:
            req = fxtest.read_request(reader)
            if req is None:
                return
            with self.lock:
                self.requests.append(req)
            h = req["headers"]
            status = int(fxtest.hget(h, "x-status", "200"))
            delay = float(fxtest.hget(h, "x-delay", "0"))
            if delay:
                time.sleep(delay)
            body = req["body"]
            ctype = fxtest.hget(h, "content-type")
            reply = fxtest.hget(h, "x-reply")
            if reply is not None:
                body, ctype = reply.encode(), "text/plain"
            head = f"HTTP/1.1 {status} X\r\n"
            if ctype:
                head += f"Content-Type: {ctype}\r\n"
            if status in (204, 304):
                body = b""
            else:
                head += f"Content-Length: {len(body)}\r\n"
            close = fxtest.wants_close(req)
            if close:
                head += "Connection: close\r\n"
            sock.sendall(head.encode() + b"\r\n" + body)
            if close:
                return

    def count(self, path_prefix=""):
        with self.lock:
            return sum(1 for r in self.requests if r["target"].startswith(path_prefix))


def metric(text, name, **labels):
    """The value of the first sample `name` whose labels include `labels`, or None."""
    for k, v in parse_metrics(text).items():
        m = re.fullmatch(r"([a-z_]+)(?:\{(.*)\})?", k)
        if not m or m.group(1) != name:
            continue
        have = dict(re.findall(r'(\w+)="([^"]*)"', m.group(2) or ""))
        if all(have.get(lk) == lv for lk, lv in labels.items()):
            return v
    return None


def wait_for(test, fn, timeout, what):
    if not wait_until(fn, timeout, 0.1):
        test.fail(f"timed out after {timeout}s waiting for: {what}")


class EventsTest(fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.key, self.pub_path = self.es256_key()
        self.up = EchoUpstream(self)
        self.spool = os.path.join(self.tmp, "spool")

    # --- set-up helpers -------------------------------------------------------------------------

    def token(self, **claims):
        now = int(time.time())
        body = {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 600, "sub": "u7"}
        body.update(claims)
        return jwt.encode(body, self.key, algorithm="ES256", headers={"kid": "k1"})

    def config(self, brokers, routes=None, **events):
        ev = {"brokers": brokers, "spool_dir": self.spool}
        ev.update(events)
        routes = routes or [
            {"name": "docs", "match": {"path": "/docs/{id}"}, "upstream": "up", "auth": "optional",
             "events": {"topic": "docs", "type": "doc.changed", "key": "{id}", "data": "response"}},
        ]
        return {"workers": 2, "upstreams": {"up": {"targets": [self.up.address]}}, "routes": routes,
                "admin": {"address": f"127.0.0.1:{fxtest.free_port()}"},
                "auth": {"issuers": [{"issuer": ISS, "audiences": [AUD],
                                      "keys": [{"kid": "k1", "alg": "ES256", "pem_file": self.pub_path}]}]},
                "policies": self.permit_all(),
                "events": ev, "log": {"access": "off", "decisions": "off"}}

    def broker(self, name="devbroker"):
        return DevBroker(self, self.tmp, name=name)

    def admin(self, gw, path):
        return fetch(gw.admin_port, "GET", path)

    def metrics(self, gw):
        return self.admin(gw, "/metrics").body.decode()

    def put(self, gw, path, obj=None, token=None, headers=None, body=None, method="PUT", timeout=10.0):
        h = {"Content-Type": "application/json"}
        if token:
            h["Authorization"] = f"Bearer {token}"
        h.update(headers or {})
        if body is None and obj is not None:
            body = json.dumps(obj).encode()
        return fetch(gw.port, method, path, headers=list(h.items()), body=body, timeout=timeout)

    def consume(self, bootstrap, topic, n, timeout=30.0, exact=True):
        """Waits until `topic` holds at least n messages; returns them (decoded values) in
        partition/offset order. With exact, also waits a moment and checks no more came."""
        deadline = time.monotonic() + timeout
        msgs = []
        while time.monotonic() < deadline:
            msgs = kcat_consume(bootstrap, topic, n + 100, timeout=10)
            if len(msgs) >= n:
                break
            time.sleep(0.2)
        self.assertGreaterEqual(len(msgs), n, f"{topic}: {len(msgs)} of {n} events arrived")
        if exact:
            time.sleep(0.5)
            again = kcat_consume(bootstrap, topic, n + 100, timeout=10)
            self.assertEqual(len(again), n, f"{topic}: expected exactly {n} events, found {len(again)}")
            msgs = again
        for m in msgs:
            m["event"] = json.loads(m["value"])
        return sorted(msgs, key=lambda m: (m["partition"], m["offset"]))

    # --- the event contract ---------------------------------------------------------------------

    def test_one_event_as_the_contract_says(self):
        db = self.broker()
        gw = self.gateway(self.config(db.bootstrap))
        doc = {"id": "42", "title": "Quarterly report", "tags": ["a", "b"], "n": 1.5}
        r = self.put(gw, "/docs/42", doc, token=self.token(sub="user-9"))
        self.assertEqual(r.status, 200, r)
        self.assertEqual(json.loads(r.body), doc, "the client gets the upstream's body unchanged")
        (m,) = self.consume(db.bootstrap, "docs", 1)
        self.assertEqual(m["key"], "42")
        self.assertEqual(m["headers"], [("content-type", "application/cloudevents+json")])
        ev = m["event"]
        self.assertEqual([k for k in ORDER if k in ev], list(ev.keys()), "attribute order of DESIGN.md")
        self.assertEqual(ev["specversion"], "1.0")
        self.assertRegex(ev["id"], UUID7_RE)
        self.assertEqual(ev["source"], "/ficus/docs")
        self.assertEqual(ev["type"], "doc.changed")
        self.assertEqual(ev["subject"], "42")
        self.assertEqual(ev["partitionkey"], "42")
        self.assertRegex(ev["time"], TIME_RE)
        self.assertLess(abs(time.mktime(time.strptime(ev["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
                            - time.time()), 60, ev["time"])
        self.assertEqual(ev["datacontenttype"], "application/json")
        self.assertEqual(ev["data"], doc)
        self.assertEqual(ev["ficusrequestid"], r.header("x-request-id"))
        self.assertEqual(ev["ficusactor"], "user-9")
        self.assertEqual(ev["ficusmethod"], "PUT")
        self.assertEqual(ev["ficusstatus"], 200)
        self.assertNotIn("ficusdataomitted", ev)
        text = self.metrics(gw)
        self.assertEqual(metric(text, "ficus_events_published_total", topic="docs"), 1.0)
        self.assertEqual(metric(text, "ficus_events_spooled"), 0.0)
        self.assertEqual(metric(text, "ficus_events_delivery_seconds_count"), 1.0)

    def test_only_successful_state_changes_publish(self):
        db = self.broker()
        gw = self.gateway(self.config(db.bootstrap))
        anon = {}
        ids = []
        for method, status, expect in [("GET", 200, False), ("HEAD", 200, False), ("PUT", 404, False),
                                       ("PUT", 409, False), ("POST", 500, False), ("PUT", 503, False),
                                       ("POST", 201, True), ("PATCH", 200, True), ("DELETE", 204, True),
                                       ("PUT", 302, False), ("OPTIONS", 200, False)]:
            r = self.put(gw, "/docs/7", {"m": method, "s": status}, method=method,
                         headers={"X-Status": str(status)}, **anon)
            self.assertEqual(r.status, status, f"{method} {status}: {r!r}")
            if expect:
                ids.append(r.header("x-request-id"))
        # a 404 from the gateway itself (no route) and a 401 (bad token) publish nothing either
        self.assertEqual(self.put(gw, "/nowhere", {}).status, 404)
        self.assertEqual(self.put(gw, "/docs/7", {}, token="not-a-token").status, 401)
        msgs = self.consume(db.bootstrap, "docs", 3)
        self.assertEqual(sorted(m["event"]["ficusrequestid"] for m in msgs), sorted(ids))
        by_method = {m["event"]["ficusmethod"]: m["event"] for m in msgs}
        self.assertEqual(by_method["POST"]["ficusstatus"], 201)
        self.assertEqual(by_method["PATCH"]["data"], {"m": "PATCH", "s": 200})
        # 204: no body, so no data and no datacontenttype
        self.assertEqual(by_method["DELETE"]["ficusstatus"], 204)
        self.assertNotIn("data", by_method["DELETE"])
        self.assertNotIn("datacontenttype", by_method["DELETE"])
        self.assertNotIn("ficusactor", by_method["DELETE"], "anonymous: no actor")

    def test_data_modes_and_bodies(self):
        db = self.broker()
        routes = [
            {"name": "resp", "match": {"path": "/resp/{id}"}, "upstream": "up", "auth": "none",
             "events": {"topic": "resp", "type": "t.resp", "key": "{id}"}},
            {"name": "req", "match": {"path": "/req/{id}"}, "upstream": "up", "auth": "none",
             "events": {"topic": "req", "type": "t.req", "key": "{id}", "data": "request"}},
            {"name": "nodata", "match": {"path": "/none/{id}"}, "upstream": "up", "auth": "none",
             "events": {"topic": "nodata", "type": "t.none", "key": "n-{id}", "data": "none", "on": ["POST"]}},
        ]
        gw = self.gateway(self.config(db.bootstrap, routes=routes, max_data_bytes="1KiB"))
        # response data differs from the request: the event carries what the upstream answered
        r = self.put(gw, "/resp/1", {"ignored": True}, headers={"X-Reply": "plain words ü"})
        self.assertEqual(r.status, 200)
        self.assertEqual(self.put(gw, "/resp/2", body=b"\xff\x00\xfe binary",
                                  headers={"Content-Type": "application/octet-stream"}).status, 200)
        self.assertEqual(self.put(gw, "/resp/3", body=b"{not json",
                                  headers={"Content-Type": "application/json"}).status, 200)
        big = {"blob": "x" * 5000}
        r = self.put(gw, "/resp/4", big)
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.body), big, "the client gets the whole body even when the event cannot")
        self.assertEqual(self.put(gw, "/resp/5", body=b'{"a":[1,2,{"b":null}]}',
                                  headers={"Content-Type": "application/vnd.x+json; charset=utf-8"}).status, 200)
        resp = {m["key"]: m["event"] for m in self.consume(db.bootstrap, "resp", 5)}
        self.assertEqual(resp["1"]["data"], "plain words ü")
        self.assertEqual(resp["1"]["datacontenttype"], "text/plain")
        self.assertEqual(resp["2"]["data_base64"], "/wD+IGJpbmFyeQ==")
        self.assertEqual(resp["2"]["datacontenttype"], "application/octet-stream")
        self.assertNotIn("data", resp["2"])
        self.assertEqual(resp["3"]["data"], "{not json", "invalid JSON goes in as a string")
        self.assertNotIn("data", resp["4"])
        self.assertEqual(resp["4"]["ficusdataomitted"], "too_large")
        self.assertEqual(resp["5"]["data"], {"a": [1, 2, {"b": None}]})
        self.assertEqual(resp["5"]["datacontenttype"], "application/vnd.x+json; charset=utf-8")

        # data: request, chunked request body
        c = self.client(gw.port)
        c.send(fxtest.build_request("POST", "/req/9", headers=[("Content-Type", "application/json"),
                                                                ("Transfer-Encoding", "chunked"),
                                                                ("X-Reply", "ok")],
                                    body=fxtest.chunked(b'{"k": "v", "list": [true, false]}', [3, 10, 100])))
        self.assertEqual(c.read_response().status, 200)
        (m,) = self.consume(db.bootstrap, "req", 1)
        self.assertEqual(m["event"]["data"], {"k": "v", "list": [True, False]})
        self.assertEqual(m["event"]["ficusmethod"], "POST")

        # data: none, and `on` narrowed to POST: a PUT publishes nothing
        self.assertEqual(self.put(gw, "/none/3", {"x": 1}, method="POST").status, 200)
        self.assertEqual(self.put(gw, "/none/3", {"x": 2}).status, 200)
        (m,) = self.consume(db.bootstrap, "nodata", 1)
        self.assertEqual(m["key"], "n-3")
        self.assertNotIn("data", m["event"])
        self.assertNotIn("datacontenttype", m["event"])

    def test_key_from_claims_and_params(self):
        db = self.broker()
        routes = [{"name": "tenant-docs", "match": {"path": "/t/{id}"}, "upstream": "up",
                   "events": {"topic": "tdocs", "type": "t.doc", "key": "{token.tenant}/{id}"}}]
        gw = self.gateway(self.config(db.bootstrap, routes=routes))
        r = self.put(gw, "/t/a%20b", {"v": 1}, token=self.token(tenant="acme"))
        self.assertEqual(r.status, 200, r)
        r = self.put(gw, "/t/5", {"v": 2}, token=self.token(tenant=12))
        self.assertEqual(r.status, 200, r)
        before = self.up.count("/t/")
        # a token without the claim the key needs: refused before anything is forwarded
        r = self.put(gw, "/t/6", {"v": 3}, token=self.token())
        doc = self.assertProblem(r, 400)
        self.assertIn("tenant", doc["detail"])
        r = self.put(gw, "/t/7", {"v": 4}, token=self.token(tenant={"nested": 1}))
        self.assertProblem(r, 400)
        self.assertEqual(self.up.count("/t/"), before, "no request reached the upstream without its event key")
        msgs = self.consume(db.bootstrap, "tdocs", 2)
        self.assertEqual(sorted(m["key"] for m in msgs), ["12/5", "acme/a b"])
        self.assertEqual(sorted(m["event"]["subject"] for m in msgs), ["12/5", "acme/a b"])

    def test_per_key_order_under_concurrent_requests(self):
        db = self.broker()
        gw = self.gateway(self.config(db.bootstrap))
        keys, per_key = 8, 25
        errors = []

        def writer(k):
            for n in range(per_key):
                try:
                    r = self.put(gw, f"/docs/k{k}", {"k": k, "n": n})
                    if r.status != 200:
                        errors.append(r.status)
                except Exception as e:  # noqa: BLE001 - collected and asserted below
                    errors.append(repr(e))

        threads = [threading.Thread(target=writer, args=(k,)) for k in range(keys)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
        self.assertEqual(errors, [])
        msgs = self.consume(db.bootstrap, "docs", keys * per_key)
        seen = {}
        partition_of = {}
        for m in msgs:  # partition/offset order
            k = m["key"]
            partition_of.setdefault(k, m["partition"])
            self.assertEqual(m["partition"], partition_of[k], f"key {k} moved partitions")
            seen.setdefault(k, []).append(m["event"]["data"]["n"])
        for k in range(keys):
            self.assertEqual(seen[f"k{k}"], list(range(per_key)), f"order of key k{k}")
        self.assertEqual(len({m["event"]["id"] for m in msgs}), keys * per_key, "ids are unique")

    # --- brokers ----------------------------------------------------------------------------------

    def test_embedded_broker_and_admin_events(self):
        gw = self.gateway(self.config("embedded", kafka={"compression.type": "lz4",
                                                         "sasl.password": "s3cret-never-shown"}))
        info = json.loads(self.admin(gw, "/admin/events").body)
        self.assertTrue(info["embedded"])
        self.assertEqual(info["brokers"], "embedded")
        self.assertRegex(info["bootstrap"], r"^127\.0\.0\.1:\d+$")
        self.assertEqual(info["spool"]["dir"], self.spool)
        self.assertIn("sasl.password", info["producer"]["kafka_properties"])
        self.assertNotIn("s3cret", json.dumps(info))
        self.assertNotIn("s3cret", self.admin(gw, "/admin/config").body.decode())
        self.assertIn(f"embedded broker (development only) at {info['bootstrap']}", gw.proc.stderr())
        for i in range(3):
            self.assertEqual(self.put(gw, f"/docs/{i}", {"i": i}).status, 200)
        msgs = self.consume(info["bootstrap"], "docs", 3)
        self.assertEqual(sorted(m["key"] for m in msgs), ["0", "1", "2"])
        info = json.loads(self.admin(gw, "/admin/events").body)
        self.assertEqual(info["topics"], [{"topic": "docs", "published": 3, "failed": {}}])
        self.assertEqual(info["spool"]["undone"], 0)

    def test_sync_delivery_answers_after_the_ack(self):
        db = self.broker()
        gw = self.gateway(self.config(db.bootstrap, delivery="sync"))
        t0 = time.monotonic()
        self.assertEqual(self.put(gw, "/docs/1", {"v": 1}).status, 200)
        self.assertLess(time.monotonic() - t0, 5)
        db.down()
        result = {}

        def slow():
            result["r"] = self.put(gw, "/docs/2", {"v": 2}, timeout=30)
            result["t"] = time.monotonic()

        th = threading.Thread(target=slow)
        th.start()
        th.join(2.0)
        self.assertTrue(th.is_alive(), "with delivery: sync and Kafka down, the client must still wait")
        self.assertEqual(self.up.count("/docs/2"), 1, "the upstream already answered")
        t_up = time.monotonic()
        db.up()
        th.join(25)
        self.assertFalse(th.is_alive())
        self.assertEqual(result["r"].status, 200)
        self.assertGreaterEqual(result["t"], t_up)
        msgs = self.consume(db.bootstrap, "docs", 2)
        self.assertEqual([m["event"]["data"]["v"] for m in msgs if m["key"] == "2"], [2])

    # --- faults -----------------------------------------------------------------------------------

    def send_many(self, gw, n, prefix="/docs/", threads=8):
        """n PUTs from `threads` clients; returns {request_id: body} of the 200s, and the failures."""
        ok, bad = {}, []
        lock = threading.Lock()

        def run(t):
            for i in range(t, n, threads):
                body = {"i": i, "pad": "p" * (i % 50)}
                try:
                    r = self.put(gw, f"{prefix}{i % 40}", body)
                except Exception as e:  # noqa: BLE001
                    with lock:
                        bad.append(repr(e))
                    continue
                with lock:
                    if r.status == 200:
                        ok[r.header("x-request-id")] = body
                    else:
                        bad.append(r.status)

        ts = [threading.Thread(target=run, args=(t,)) for t in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        return ok, bad

    def assert_all_delivered(self, bootstrap, sent, timeout=90.0):
        """Every request id of `sent` at least once, every event whole and matching its request."""
        deadline = time.monotonic() + timeout
        got = {}
        while time.monotonic() < deadline:
            for m in kcat_consume(bootstrap, "docs", len(sent) * 2 + 100, timeout=20):
                ev = json.loads(m["value"])  # a corrupted body fails here
                got.setdefault(ev["ficusrequestid"], []).append((m["key"], ev))
            if set(sent) <= set(got):
                break
            got = {}
            time.sleep(0.5)
        missing = set(sent) - set(got)
        self.assertFalse(missing, f"{len(missing)} of {len(sent)} events never arrived")
        for rid, body in sent.items():
            for key, ev in got[rid]:
                self.assertEqual(ev["data"], body, rid)
                self.assertEqual(key, str(body["i"] % 40))
        return got

    def test_broker_down_1000_events_wait_in_the_spool(self):
        db = self.broker()
        gw = self.gateway(self.config(db.bootstrap))
        self.assertEqual(self.put(gw, "/docs/0", {"warm": 1}).status, 200)
        self.consume(db.bootstrap, "docs", 1)
        db.down()
        t0 = time.monotonic()
        sent, bad = self.send_many(gw, 1000)
        took = time.monotonic() - t0
        self.assertEqual(bad, [])
        self.assertEqual(len(sent), 1000)
        self.assertLess(took, 60, "async delivery: requests do not wait for Kafka")
        spooled = metric(self.metrics(gw), "ficus_events_spooled")
        self.assertGreaterEqual(spooled, 990, "the events wait in the spool")
        db.up()
        got = self.assert_all_delivered(db.bootstrap, sent)
        wait_for(self, lambda: metric(self.metrics(gw), "ficus_events_spooled") == 0, 30, "spool drained")
        dups = sum(len(v) - 1 for v in got.values())
        fxtest.measure("events_broker_down_duplicates", dups)

    def test_sigkill_with_undelivered_events_then_restart_delivers_them(self):
        db = self.broker()
        cfg = self.config(db.bootstrap)
        gw = self.gateway(cfg)
        db.down()
        sent, bad = self.send_many(gw, 300)
        self.assertEqual((len(sent), bad), (300, []))
        gw.expect_exit = True
        gw.proc.popen.send_signal(signal.SIGKILL)
        gw.proc.popen.wait(10)
        db.up()
        time.sleep(1)
        self.assertEqual(kcat_consume(db.bootstrap, "docs", 10, timeout=5), [],
                         "nothing was delivered before the kill")
        gw2 = self.gateway(cfg, name="ficus2")
        self.assert_all_delivered(db.bootstrap, sent)
        self.assertIn("300 undelivered events recovered", gw2.proc.stderr())

    def test_corrupted_spool_tail_is_reported_and_the_rest_delivered(self):
        db = self.broker()
        cfg = self.config(db.bootstrap)
        gw = self.gateway(cfg)
        db.down()
        sent, bad = self.send_many(gw, 60, threads=1)
        self.assertEqual((len(sent), bad), (60, []))
        gw.terminate()  # drain: the events stay in the spool (Kafka is down)
        gw.proc.popen.wait(20)
        segs = sorted(f for f in os.listdir(self.spool) if f.startswith("seg-"))
        self.assertTrue(segs)
        path = os.path.join(self.spool, segs[-1])
        data = bytearray(open(path, "rb").read())
        # flip one byte inside the event of request i=20, and cut the last record in half
        by_i = {body["i"]: rid for rid, body in sent.items()}
        flip_at = data.index(by_i[20].encode())
        data[flip_at] ^= 0x20
        last_at = data.index(by_i[59].encode())
        cut = last_at + 10
        with open(path, "wb") as f:
            f.write(bytes(data[:cut]))
        db.up()
        gw2 = self.gateway(cfg, name="ficus2")
        expect = {rid: body for rid, body in sent.items() if body["i"] not in (20, 59)}
        self.assert_all_delivered(db.bootstrap, expect)
        err = gw2.proc.stderr()
        damaged = re.findall(r"spool .*?(seg-[0-9a-f]+\.log): damaged record at offset (\d+) \((\d+) bytes skipped\): "
                             r"(.*)", err)
        self.assertEqual(len(damaged), 2, err)
        offsets = sorted(int(d[1]) for d in damaged)
        self.assertTrue(offsets[0] < flip_at < offsets[0] + int(damaged[0][2] if int(damaged[0][1]) == offsets[0]
                                                                 else damaged[1][2]) + 1, (offsets, flip_at))
        self.assertTrue(offsets[1] < last_at < cut, (offsets, last_at, cut))
        self.assertTrue(any("truncated" in d[3] for d in damaged), damaged)
        # the two damaged events are not delivered (their bytes are gone); nothing else is missing
        got = kcat_consume(db.bootstrap, "docs", 200, timeout=10)
        rids = {json.loads(m["value"])["ficusrequestid"] for m in got}
        self.assertNotIn(by_i[20], rids)
        self.assertNotIn(by_i[59], rids)

    def test_spool_full_with_reject_refuses_before_forwarding(self):
        db = self.broker()
        gw = self.gateway(self.config(db.bootstrap, spool_max_bytes="1MiB", max_data_bytes="64KiB"))
        db.down()
        blob = "b" * 60000
        statuses = []
        for i in range(40):
            r = self.put(gw, f"/docs/{i}", {"i": i, "blob": blob})
            statuses.append(r.status)
            if r.status == 503:
                doc = self.assertProblem(r, 503)
                self.assertIn("spool is full", doc["detail"])
                self.assertEqual(r.header("retry-after"), "5")
                break
        self.assertEqual(statuses[-1], 503, statuses)
        self.assertGreater(len(statuses), 5, statuses)
        forwarded = self.up.count(f"/docs/{len(statuses) - 1}")
        self.assertEqual(forwarded, 0, "the refused request never reached the upstream")
        # reads still pass; other writes keep being refused while the spool is full
        self.assertEqual(fetch(gw.port, "GET", "/docs/1").status, 200)
        self.assertEqual(self.put(gw, "/docs/99", {"x": 1}).status, 503)
        self.assertEqual(self.up.count("/docs/99"), 0)
        db.up()
        self.consume(db.bootstrap, "docs", len(statuses) - 1, timeout=60)
        wait_for(self, lambda: self.put(gw, "/docs/100", {"x": 2}).status == 200, 30,
                 "writes pass again once the spool has room")

    def test_spool_full_with_drop_forwards_and_counts(self):
        db = self.broker()
        gw = self.gateway(self.config(db.bootstrap, spool_max_bytes="1MiB", max_data_bytes="64KiB",
                                      when_full="drop"))
        db.down()
        blob = "b" * 60000
        for i in range(30):
            self.assertEqual(self.put(gw, f"/docs/{i}", {"i": i, "blob": blob}).status, 200)
        dropped = metric(self.metrics(gw), "ficus_events_failed_total", topic="docs", reason="spool_full")
        self.assertGreater(dropped or 0, 0)
        self.assertIn("spool full (when_full: drop)", gw.proc.stderr())
        self.assertEqual(self.up.count("/docs/"), 30)

    def test_permanent_failure_goes_to_the_dead_letter_topic(self):
        db = self.broker()
        routes = TWO_TOPICS
        gw = self.gateway(self.config(db.bootstrap, routes=routes, dead_letter_topic="ficus-dlq"))
        # the broker refuses the next produce request as a topic authorization failure
        self.assertTrue(db.command("request-errors Produce 1 TOPIC_AUTHORIZATION_FAILED").startswith("ok"))
        r = self.put(gw, "/docs/1", {"v": 1})
        self.assertEqual(r.status, 200)
        wait_for(self, lambda: metric(self.metrics(gw), "ficus_events_failed_total", topic="docs",
                                      reason="authorization") == 1.0, 15, "the failure counted")
        self.assertEqual(self.put(gw, "/other/1", {"v": 2}).status, 200)
        (dl,) = self.consume(db.bootstrap, "ficus-dlq", 1)
        self.assertEqual(dl["key"], "1")
        self.assertEqual(dl["event"]["ficusrequestid"], r.header("x-request-id"))
        headers = dict(dl["headers"])
        self.assertEqual(headers["ficus-original-topic"], "docs")
        self.assertIn("TOPIC_AUTHORIZATION_FAILED", headers["ficus-failure"])
        self.consume(db.bootstrap, "other", 1)
        text = self.metrics(gw)
        self.assertEqual(metric(text, "ficus_events_failed_total", topic="docs", reason="authorization"), 1.0)
        self.assertEqual(metric(text, "ficus_events_dead_lettered_total"), 1.0)
        wait_for(self, lambda: metric(self.metrics(gw), "ficus_events_spooled") == 0, 10, "nothing left undone")

    def test_permanent_failure_without_dead_letter_topic_is_quarantined(self):
        db = self.broker()
        routes = TWO_TOPICS
        gw = self.gateway(self.config(db.bootstrap, routes=routes))
        self.assertTrue(db.command("request-errors Produce 1 MSG_SIZE_TOO_LARGE").startswith("ok"))
        r = self.put(gw, "/docs/1", {"v": 1})
        self.assertEqual(r.status, 200)
        wait_for(self, lambda: metric(self.metrics(gw), "ficus_events_quarantined_total") == 1.0, 15,
                 "the event quarantined")
        self.assertEqual(metric(self.metrics(gw), "ficus_events_failed_total", topic="docs", reason="too_large"), 1.0)
        # the failure does not hold up the events behind it
        for i in range(5):
            self.assertEqual(self.put(gw, f"/other/{i}", {"v": i}).status, 200)
        self.consume(db.bootstrap, "other", 5)
        dead = os.path.join(self.spool, "dead-letter.log")
        wait_for(self, lambda: os.path.exists(dead) and r.header("x-request-id").encode() in open(dead, "rb").read(),
                 15, "the event is in the spool's dead-letter file")
        self.assertIn(b"MSG_SIZE_TOO_LARGE", open(dead, "rb").read())
        self.assertIn("quarantined", gw.proc.stderr())
        self.assertEqual(metric(self.metrics(gw), "ficus_events_quarantined_total"), 1.0)

    def test_config_errors_are_positioned(self):
        cfg = self.config("embedded", kafka={"compression.type": "zstd9", "no.such.property": "1"})
        path = os.path.join(self.tmp, "bad.yaml")
        with open(path, "w") as f:
            f.write(fxtest.to_yaml(cfg))
        import subprocess
        p = subprocess.run([fxtest.ficus_bin(), "check", "-c", path], capture_output=True, text=True)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        out = p.stdout + p.stderr
        self.assertRegex(out, r"bad\.yaml:\d+:\d+: error: events\.kafka\.compression\.type: .*zstd9")
        self.assertRegex(out, r"bad\.yaml:\d+:\d+: error: events\.kafka\.no\.such\.property: ")

    def test_fatal_producer_error_replaces_the_producer_and_loses_nothing(self):
        db = self.broker()
        gw = self.gateway(self.config(db.bootstrap))
        self.assertEqual(self.put(gw, "/docs/0", {"i": 0}).status, 200)
        self.consume(db.bootstrap, "docs", 1)
        # a sequence desynchronization is fatal for an idempotent producer (librdkafka raises
        # RD_KAFKA_RESP_ERR__FATAL): the gateway must replace it and produce the events again
        self.assertTrue(db.command("request-errors Produce 1 OUT_OF_ORDER_SEQUENCE_NUMBER").startswith("ok"))
        sent = {}
        for i in range(1, 6):
            r = self.put(gw, f"/docs/{i}", {"i": i})
            self.assertEqual(r.status, 200)
            sent[r.header("x-request-id")] = {"i": i}
        wait_for(self, lambda: metric(self.metrics(gw), "ficus_events_producer_restarts_total") == 1.0, 20,
                 "the producer replaced once")
        msgs = self.consume(db.bootstrap, "docs", 6, exact=False)
        got = {m["event"]["ficusrequestid"] for m in msgs}
        self.assertTrue(set(sent) <= got, f"missing after the fatal error: {set(sent) - got}")
        self.assertIn("producer fatal error", gw.proc.stderr())
        wait_for(self, lambda: metric(self.metrics(gw), "ficus_events_spooled") == 0, 20, "nothing left undone")

    def test_an_event_larger_than_a_kafka_message_goes_without_its_data(self):
        db = self.broker()
        gw = self.gateway(self.config(db.bootstrap, max_data_bytes="64KiB",
                                      kafka={"message.max.bytes": "4000"}))
        small, big = {"s": "x" * 100}, {"b": "y" * 5000}
        self.assertEqual(self.put(gw, "/docs/1", small).status, 200)
        r = self.put(gw, "/docs/2", big)
        self.assertEqual(r.status, 200)
        self.assertEqual(json.loads(r.body), big, "the client still gets the whole body")
        ev = {m["key"]: m["event"] for m in self.consume(db.bootstrap, "docs", 2)}
        self.assertEqual(ev["1"]["data"], small)
        self.assertNotIn("data", ev["2"])
        self.assertEqual(ev["2"]["ficusdataomitted"], "too_large")
        self.assertIsNone(metric(self.metrics(gw), "ficus_events_quarantined_total") or None,
                          "not dead-lettered: it fits without its data")

    def test_an_early_answer_ends_the_request_body_and_is_never_sent_twice(self):
        db = self.broker()
        # the upstream answers 200 without reading the body, then closes its connection
        up = self.scripted([("sleep", 0.1),
                            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 11\r\n"
                            b"Connection: close\r\n\r\n{\"ok\":true}", ("sleep", 0.2), "close"], read_first=False)
        cfg = self.config(db.bootstrap, delivery="sync")
        cfg["upstreams"]["up"]["targets"] = [up.address]
        gw = self.gateway(cfg)
        # Kafka down: the answer is held (sync) while the upstream has gone and the client keeps sending
        db.down()
        c = self.client(gw.port)
        c.send(fxtest.build_request("PUT", "/docs/5", headers=[("Content-Type", "application/octet-stream"),
                                                                ("Content-Length", str(8 << 20))]))
        # part of the body, slowly (so that no buffer fills and pauses the reading), while the answer
        # is held and after the upstream has gone
        deadline = time.monotonic() + 2.0
        try:
            while time.monotonic() < deadline:
                c.send(b"z" * 16384)
                time.sleep(0.1)
        except OSError:
            pass
        db.up()
        r = c.read_response(timeout=20)
        self.assertEqual(r.status, 200)
        self.assertEqual(r.body, b'{"ok":true}')
        (m,) = self.consume(db.bootstrap, "docs", 1)
        self.assertEqual(m["event"]["data"], {"ok": True})
        time.sleep(0.5)
        self.assertEqual(up.connections, 1, "the rest of the body was never forwarded on a new connection")

    def test_a_refused_delivery_is_produced_again_after_a_pause(self):
        db = self.broker()
        gw = self.gateway(self.config(db.bootstrap))
        self.assertEqual(self.put(gw, "/docs/0", {"i": 0}).status, 200)
        self.consume(db.bootstrap, "docs", 1)
        # a broker error librdkafka does not retry itself and that is not permanent for the event
        self.assertTrue(db.command("request-errors Produce 1 INVALID_PRODUCER_EPOCH").startswith("ok"))
        r = self.put(gw, "/docs/1", {"i": 1})
        self.assertEqual(r.status, 200)
        msgs = self.consume(db.bootstrap, "docs", 2, exact=False)
        self.assertIn(r.header("x-request-id"), {m["event"]["ficusrequestid"] for m in msgs})
        err = gw.proc.stderr()
        self.assertRegex(err, r"events: delivery: .*; producing again in 100 ms")
        self.assertGreaterEqual(metric(self.metrics(gw), "ficus_events_producer_errors_total"), 1.0)
        wait_for(self, lambda: metric(self.metrics(gw), "ficus_events_spooled") == 0, 10, "nothing left undone")
