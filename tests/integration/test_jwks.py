"""Remote key sets (issue 4, `auth.issuers[].jwks_uri`): the gateway fetches
the JWK Set itself before it reports ready, refreshes it in the background,
refetches on an unknown kid at most once per jwks_min_refresh, keeps the last
good set when the provider is down or serves garbage, and rotates keys under
load without a failed request. HTTPS providers are verified against OpenSSL's
default trust store, which the tests point at a throw-away CA with
SSL_CERT_FILE.

The provider is JwksServer, a threaded HTTP(S) server in this process whose
answer the test controls and which counts its hits. Load comes from this file
run as a script (`test_jwks.py --load ...`, a separate process like
loadgen.py, whose response reader it reuses): it sends tokens read from a
file the test swaps atomically, so the load always uses the key the test
says is current.

Needs python3-jwt and python3-cryptography (Debian's /usr/bin/python3) and the
openssl command."""

import argparse
import json
import os
import re
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time
import uuid

import fxtest

ISS = "https://id.test"
AUD = "ficus-tests"


# --------------------------------------------------------------------------
# the provider


class JwksServer(fxtest.ThreadedServer):
    """GET -> the current answer: (status, body bytes), or "hang" (read, never answer).

    .hits counts requests; .requests keeps (path, headers) of each. With
    `tls` (an ssl.SSLContext) every connection is wrapped first."""

    def __init__(self, test, body=b"", status=200, tls=None):
        self.answer = (status, body)
        self.tls = tls
        self.hits = 0
        self.requests = []
        self.handshake_errors = 0
        super().__init__(test)

    def set(self, body, status=200):
        with self.lock:
            self.answer = (status, body)

    def set_keys(self, *jwks):
        self.set(json.dumps({"keys": list(jwks)}).encode())

    def hit_count(self):
        with self.lock:
            return self.hits

    def handle(self, sock, index):
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                with self.lock:
                    self.handshake_errors += 1
                return
        reader = fxtest._Reader(sock)
        req = fxtest.read_request(reader)
        if req is None:
            return
        with self.lock:
            self.hits += 1
            self.requests.append((req["target"], req["headers"]))
            status, body = self.answer
        if status == "hang":
            self.stopping.wait(30)
            return
        sock.sendall(b"HTTP/1.1 %d X\r\nContent-Type: application/json\r\nContent-Length: %d\r\n"
                     b"Connection: close\r\n\r\n" % (status, len(body)) + body)
        try:
            sock.close()
        except OSError:
            pass


# --------------------------------------------------------------------------
# keys and tokens (imported lazily: the --load mode needs neither)


def rsa_key():
    from cryptography.hazmat.primitives.asymmetric import rsa
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def ec_key():
    from cryptography.hazmat.primitives.asymmetric import ec
    return ec.generate_private_key(ec.SECP256R1())


def public_jwk(key, kid, alg):
    import jwt
    if alg.startswith("RS"):
        text = jwt.algorithms.RSAAlgorithm.to_jwk(key.public_key())
    else:
        text = jwt.algorithms.ECAlgorithm.to_jwk(key.public_key())
    jwk = json.loads(text) if isinstance(text, str) else dict(text)
    jwk.update(kid=kid, alg=alg, use="sig")
    return jwk


def mint(key, kid, alg, **claims):
    import jwt
    now = int(time.time())
    c = {"iss": ISS, "aud": AUD, "sub": "42", "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}
    c.update(claims)
    return jwt.encode(c, key, algorithm=alg, headers={"kid": kid})


# --------------------------------------------------------------------------
# the load process: python3 test_jwks.py --load --port P --token-file F ...


def load_main(argv):
    """Keep-alive GETs with `Authorization: Bearer <token>`, tokens from a file
    (one per line, re-read when it changes). Prints loadgen.py's JSON summary."""
    from loadgen import Failure, read_response

    ap = argparse.ArgumentParser()
    ap.add_argument("--load", action="store_true")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--token-file", required=True)
    ap.add_argument("--threads", type=int, default=4)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    ap.add_argument("--timeout", type=float, default=10.0)
    args = ap.parse_args(argv)

    lock = threading.Lock()
    stop = threading.Event()
    state = {"sig": None, "tokens": [], "requests": 0, "ok": 0, "failures": 0, "samples": [],
             "by_token_kid": {}}

    def tokens():
        try:
            st = os.stat(args.token_file)
        except FileNotFoundError:
            return state["tokens"]
        sig = (st.st_ino, st.st_mtime_ns, st.st_size)
        with lock:
            if sig != state["sig"]:
                with open(args.token_file) as f:
                    state["tokens"] = [l.strip() for l in f if l.strip()]
                state["sig"] = sig
            return state["tokens"]

    def kid_of(tok):
        import base64
        head = tok.split(".")[0]
        return json.loads(base64.urlsafe_b64decode(head + "=" * (-len(head) % 4))).get("kid")

    def worker(tid):
        sock, buf, n = None, bytearray(), 0
        while not stop.is_set():
            toks = tokens()
            if not toks:
                time.sleep(0.01)
                continue
            tok = toks[n % len(toks)]
            n += 1
            with lock:
                state["requests"] += 1
            try:
                if sock is None:
                    sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
                    sock.settimeout(args.timeout)
                    buf = bytearray()
                sock.sendall((f"GET /load/{tid}/{n} HTTP/1.1\r\nHost: load.test\r\n"
                              f"Authorization: Bearer {tok}\r\n\r\n").encode())
                status, headers, body = read_response(sock, buf)
                if status != 200:
                    raise Failure(f"status {status}, body {body[:200]!r}")
                with lock:
                    state["ok"] += 1
                    k = kid_of(tok)
                    state["by_token_kid"][k] = state["by_token_kid"].get(k, 0) + 1
                if "close" in headers.get("connection", "").lower():
                    sock.close()
                    sock = None
            except (Failure, OSError, ValueError) as e:
                with lock:
                    state["failures"] += 1
                    if len(state["samples"]) < 20:
                        state["samples"].append({"thread": tid, "t": round(time.time(), 3),
                                                 "kid": kid_of(tok), "what": f"{type(e).__name__}: {e}"})
                if sock is not None:
                    sock.close()
                sock = None
                time.sleep(0.005)
        if sock is not None:
            sock.close()

    signal.signal(signal.SIGTERM, lambda *a: stop.set())
    t0 = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(args.threads)]
    for t in threads:
        t.start()
    while not stop.is_set() and time.monotonic() - t0 < args.max_seconds:
        stop.wait(0.05)
    stop.set()
    for t in threads:
        t.join(args.timeout + 5)
    out = {"requests": state["requests"], "ok": state["ok"], "failures": state["failures"],
           "failure_samples": state["samples"], "ok_by_kid": state["by_token_kid"],
           "duration_s": round(time.monotonic() - t0, 3)}
    sys.stdout.write(json.dumps(out) + "\n")
    sys.stdout.flush()
    return 0


# --------------------------------------------------------------------------
# the tests


def wait_until(pred, timeout, interval=0.05, what="condition"):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = pred()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


class JwksTestBase(fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.key_a = rsa_key()
        self.key_b = ec_key()
        self.jwk_a = public_jwk(self.key_a, "key-a", "RS256")
        self.jwk_b = public_jwk(self.key_b, "key-b", "ES256")
        self.up = self.recording(name="up")

    def start(self, uri, refresh="1s", min_refresh="1s", workers=2, extra_issuers=(), **kw):
        self.admin_port = fxtest.free_port()
        issuer = {"issuer": ISS, "audiences": [AUD], "jwks_uri": uri,
                  "jwks_refresh": refresh, "jwks_min_refresh": min_refresh}
        cfg = self.config([self.up.address], auth={"issuers": [issuer] + list(extra_issuers),
                                                  "clock_skew": "5s"},
                          policies=self.permit_all(),
                          admin={"address": f"127.0.0.1:{self.admin_port}"})
        cfg["workers"] = workers
        self.gw = self.gateway(cfg, **kw)
        if not fxtest.wait_for_port(self.admin_port, 10, alive=self.gw.proc.alive):
            raise AssertionError(f"no admin listener\n{self.gw.proc.describe()}")
        return self.gw

    # admin
    def readyz(self):
        r = fxtest.fetch(self.admin_port, "GET", "/readyz")
        return r.status, r.json()

    def wait_ready(self, timeout=15):
        wait_until(lambda: self.readyz()[0] == 200, timeout, what="/readyz 200")

    def metrics(self):
        text = fxtest.fetch(self.admin_port, "GET", "/metrics").body.decode()
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, _, value = line.rpartition(" ")
                out[name] = float(value)
        return out

    def metric(self, name, issuer=ISS, **labels):
        lab = f'issuer="{issuer}"' + "".join(f',{k}="{v}"' for k, v in labels.items())
        return self.metrics().get(f"{name}{{{lab}}}")

    def fetches(self, result, issuer=ISS):
        return self.metric("ficus_jwks_fetches_total", issuer, result=result) or 0

    def rejections(self, reason):
        return self.metrics().get(f'ficus_jwt_rejections_total{{reason="{reason}"}}', 0)

    # client
    def get(self, token):
        return fxtest.fetch(self.gw.port, "GET", "/api/x", headers=[("Authorization", f"Bearer {token}")])

    def assert401(self, resp, detail_words):
        doc = self.assertProblem(resp, 401)
        self.assertTrue((resp.header("www-authenticate") or "").startswith('Bearer error="invalid_token"'),
                        repr(resp))
        self.assertIn(detail_words, doc["detail"], repr(resp))

    def token_a(self, **kw):
        return mint(self.key_a, "key-a", "RS256", **kw)

    def token_b(self, **kw):
        return mint(self.key_b, "key-b", "ES256", **kw)


class JwksHttpTest(JwksTestBase):
    def test_ready_only_after_first_fetch_then_tokens_verify(self):
        jw = JwksServer(self, b"not yet", status=503)
        self.start(f"http://127.0.0.1:{jw.port}/.well-known/jwks.json")
        wait_until(lambda: self.fetches("error") >= 1, 10, what="a failed first fetch")
        status, doc = self.readyz()
        self.assertEqual(status, 503, doc)
        self.assertEqual(doc["status"], "starting")
        self.assertIn(ISS, doc["detail"])
        self.assertEqual(self.metric("ficus_jwks_keys"), 0)
        # no key set yet: the token's key is unknown (and nothing reaches the upstream)
        self.assert401(self.get(self.token_a()), "kid")
        self.assertEqual(len(self.up.requests), 0)
        self.assertIn("HTTP 503", self.gw.proc.stderr())

        jw.set_keys(self.jwk_a)
        self.wait_ready()
        self.assertEqual(self.metric("ficus_jwks_keys"), 1)
        self.assertGreaterEqual(self.fetches("ok"), 1)
        r = self.get(self.token_a())
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.body, b"up")
        # the request the provider saw: the path of the URI, our Host, no redirect games
        path, headers = jw.requests[-1]
        self.assertEqual(path, "/.well-known/jwks.json")
        self.assertEqual(fxtest.hget(headers, "host"), f"127.0.0.1:{jw.port}")

        # forged: right kid, wrong key
        before = self.rejections("bad_signature")
        self.assert401(self.get(mint(rsa_key(), "key-a", "RS256")), "signature")
        self.assertEqual(self.rejections("bad_signature"), before + 1)
        # a kid the provider does not publish
        before = self.rejections("unknown_kid")
        self.assert401(self.get(mint(self.key_a, "key-zzz", "RS256")), "kid")
        self.assertEqual(self.rejections("unknown_kid"), before + 1)
        # the issuer must still match
        self.assert401(self.get(self.token_a(iss="https://other.test")), "issuer")

    def test_rotation_under_load_without_a_failed_request(self):
        jw = JwksServer(self)
        jw.set_keys(self.jwk_a)
        self.start(f"http://127.0.0.1:{jw.port}/jwks.json", refresh="1s", min_refresh="1s")
        self.wait_ready()

        token_file = os.path.join(self.tmp, "tokens.txt")

        def use_tokens(tokens):
            tmp = token_file + ".tmp"
            with open(tmp, "w") as f:
                f.write("\n".join(tokens) + "\n")
            os.rename(tmp, token_file)

        tokens_a = [self.token_a(sub=f"a{i}") for i in range(20)]
        use_tokens(tokens_a)
        load = fxtest.Proc([sys.executable, os.path.abspath(__file__), "--load", "--port", self.gw.port,
                            "--token-file", token_file, "--threads", 4, "--max-seconds", 60],
                           self.tmp, "load")
        self.addCleanup(load.stop)
        time.sleep(1.0)

        # 1. the provider publishes B beside A; the gateway picks it up in the background
        jw.set_keys(self.jwk_a, self.jwk_b)
        wait_until(lambda: self.metric("ficus_jwks_keys") == 2, 10, what="both keys in use")
        self.wait_ready(5)  # every worker took the new table
        r = self.get(self.token_b())
        self.assertEqual(r.status, 200, f"a B token right after B was published: {r!r}")
        # 2. the signer switches to B
        use_tokens([self.token_b(sub=f"b{i}") for i in range(20)])
        time.sleep(1.5)
        # 3. A disappears at the provider
        jw.set_keys(self.jwk_b)
        wait_until(lambda: self.metric("ficus_jwks_keys") == 1, 10, what="A removed")
        self.wait_ready(5)
        before = self.rejections("unknown_kid")
        # the very tokens of A the load used, verified and cached by every worker, are refused now:
        # the rotation invalidated the verification caches (one connection each, so both workers answer)
        for tok in tokens_a:
            self.assert401(self.get(tok), "kid")
        self.assertEqual(self.rejections("unknown_kid"), before + len(tokens_a))
        time.sleep(1.0)

        load.send_signal(signal.SIGTERM)
        self.assertEqual(load.wait(30), 0, load.describe())
        result = json.loads(load.stdout().strip().splitlines()[-1])
        fxtest.measure("rotation load", result)
        self.assertEqual(result["failures"], 0, json.dumps(result["failure_samples"], indent=1))
        self.assertGreater(result["ok_by_kid"].get("key-a", 0), 20, result)
        self.assertGreater(result["ok_by_kid"].get("key-b", 0), 20, result)
        self.assertEqual(self.fetches("invalid"), 0)
        self.assertEqual(self.fetches("error"), 0)

    def test_unknown_kid_refetch_is_rate_limited_and_finds_new_keys(self):
        jw = JwksServer(self)
        jw.set_keys(self.jwk_a)
        # no background refresh during the test: every hit is the initial fetch or an unknown kid's
        self.start(f"http://127.0.0.1:{jw.port}/jwks.json", refresh="1h", min_refresh="1s", workers=2)
        self.wait_ready()
        wait_until(lambda: jw.hit_count() == 1, 5, what="the initial fetch")

        before = self.rejections("unknown_kid")
        sent = [0]
        wrong = []
        lock = threading.Lock()
        stop = threading.Event()
        tokens = [mint(self.key_a, f"nope-{i}", "RS256") for i in range(50)]

        def hammer():
            n = 0
            while not stop.is_set():
                r = self.get(tokens[n % len(tokens)])
                n += 1
                with lock:
                    sent[0] += 1
                    if r.status != 401:
                        wrong.append(repr(r))

        threads = [threading.Thread(target=hammer, daemon=True) for _ in range(4)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        time.sleep(3.5)
        stop.set()
        for t in threads:
            t.join(10)
        elapsed = time.monotonic() - t0
        time.sleep(0.3)  # a fetch started at the end completes
        refetches = jw.hit_count() - 1
        fxtest.measure("unknown-kid requests / refetches",
                       f"{sent[0]} requests, {refetches} refetches in {elapsed:.1f}s (jwks_min_refresh 1s)")
        self.assertEqual(wrong, [])
        self.assertGreater(sent[0], 50)
        self.assertEqual(self.rejections("unknown_kid") - before, sent[0])
        self.assertGreaterEqual(refetches, 2, "an unknown kid triggers a refetch")
        self.assertLessEqual(refetches, int(elapsed / 1.0) + 2, "at most one refetch per jwks_min_refresh")

        # a key published now is found by the next unknown-kid refetch (no background refresh for 1h).
        # That refetch may have to wait for one already in flight, which the gateway lets answer
        # first and which may take up to its fetch timeout (JWKS_TIMEOUT_S, 10 s) against this
        # loaded test server: so the bound is that plus jwks_min_refresh, still far below 1 h.
        # Seen in CI twice (not reproduced by hand): key-c not usable within 5 s; the message
        # below says what the gateway answered and whether the key server was asked again.
        key_c = ec_key()
        hits_before = jw.hit_count()
        jw.set_keys(self.jwk_a, public_jwk(key_c, "key-c", "ES256"))
        tok_c = mint(key_c, "key-c", "ES256")
        t0 = time.monotonic()
        seen = []

        def key_c_works():
            r = self.get(tok_c)
            seen.append((round(time.monotonic() - t0, 1), r.status, jw.hit_count() - hits_before))
            return r.status == 200

        try:
            wait_until(key_c_works, 13, interval=0.1, what="key-c via refetch")
        except AssertionError as e:
            raise AssertionError(f"{e}; (seconds, status, key-server hits since) first {seen[:3]}, "
                                 f"last {seen[-3:]}\n{self.gw.proc.stderr()[-2000:]}") from None
        fxtest.measure("new kid usable after", f"{time.monotonic() - t0:.2f}s")
        self.assertEqual(self.metric("ficus_jwks_keys"), 2)

    def test_provider_down_or_garbage_keeps_the_last_good_keys(self):
        jw = JwksServer(self)
        jw.set_keys(self.jwk_a)
        self.start(f"http://127.0.0.1:{jw.port}/jwks.json", refresh="1s", min_refresh="1s")
        self.wait_ready()

        def fresh_token_passes():
            r = self.get(self.token_a())  # a new jti: never a cache hit, verified with the kept keys
            self.assertEqual(r.status, 200, repr(r))

        fresh_token_passes()
        cases = [("garbage", b"<html>oops</html>", 200, "invalid"),
                 ("not a JWK Set", b'{"keys": 42}', 200, "invalid"),
                 ("no keys", b'{"keys": []}', 200, "invalid"),
                 ("weak key", json.dumps({"keys": [dict(self.jwk_a, n="AQAB")]}).encode(), 200, "invalid"),
                 ("server error", b"down", 500, "error"),
                 ("redirect", b"", 302, "error")]
        for name, body, status, result in cases:
            with self.subTest(name):
                before = self.fetches(result)
                jw.set(body, status)
                wait_until(lambda: self.fetches(result) >= before + 1, 10, what=f"{name} counted")
                fresh_token_passes()
                self.assertEqual(self.readyz()[0], 200)
                self.assertEqual(self.metric("ficus_jwks_keys"), 1)
        # provider gone entirely
        before = self.fetches("error")
        jw.stop()
        wait_until(lambda: self.fetches("error") >= before + 2, 15, what="connection failures counted")
        fresh_token_passes()
        self.assertEqual(self.readyz()[0], 200)
        err = self.gw.proc.stderr()
        self.assertIn("keeping the last good key set", err)
        self.assertIn("not a usable JWK Set", err)
        self.assertIn("cannot connect to 127.0.0.1 port", err)

    def test_oversized_body_is_refused(self):
        jw = JwksServer(self)
        jw.set_keys(self.jwk_a)
        self.start(f"http://127.0.0.1:{jw.port}/jwks.json", refresh="1s", min_refresh="1s")
        self.wait_ready()
        jw.set(b'{"keys": [' + b" " * (1 << 20) + b"]}")
        wait_until(lambda: self.fetches("error") >= 1, 10, what="an oversized body refused")
        self.assertIn("larger than 1 MiB", self.gw.proc.stderr())
        self.assertEqual(self.get(self.token_a()).status, 200)

    def test_reload_keeps_unchanged_uris_and_fetches_new_ones(self):
        jw = JwksServer(self)
        jw.set_keys(self.jwk_a)
        other = JwksServer(self)
        other.set_keys(self.jwk_b)
        uri = f"http://127.0.0.1:{jw.port}/jwks.json"
        self.start(uri, refresh="1h", min_refresh="1s")
        self.wait_ready()
        self.assertEqual(jw.hit_count(), 1)

        def reload(issuers):
            cfg = self.gw.config
            cfg["auth"]["issuers"] = issuers
            self.gw.write_config(cfg)
            r = fxtest.fetch(self.admin_port, "POST", "/admin/reload")
            self.assertEqual(r.status, 200, repr(r))

        same = dict(self.gw.config["auth"]["issuers"][0])
        second = {"issuer": "https://other.test", "audiences": [AUD],
                  "jwks_uri": f"http://127.0.0.1:{other.port}/keys", "jwks_refresh": "1h"}
        # same URI plus a new issuer: only the new URI is fetched
        reload([same, second])
        wait_until(lambda: other.hit_count() == 1, 10, what="the new URI fetched")
        self.wait_ready()
        time.sleep(0.5)
        self.assertEqual(jw.hit_count(), 1, "an unchanged jwks_uri is not refetched on reload")
        self.assertEqual(self.get(self.token_a()).status, 200)
        r = self.get(mint(self.key_b, "key-b", "ES256", iss="https://other.test"))
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(self.metric("ficus_jwks_keys", issuer="https://other.test"), 1)

        # the second issuer removed: its keys go, its metrics go, the first stays as it was
        reload([same])
        self.wait_ready()
        self.assertIsNone(self.metric("ficus_jwks_keys", issuer="https://other.test"))
        self.assert401(self.get(mint(self.key_b, "key-b", "ES256", iss="https://other.test")), "issuer")
        self.assertEqual(self.get(self.token_a()).status, 200)
        self.assertEqual(jw.hit_count(), 1)
        self.assertEqual(other.hit_count(), 1)


# --------------------------------------------------------------------------
# HTTPS


def openssl(*args, cwd):
    p = subprocess.run(["openssl"] + [str(a) for a in args], cwd=cwd, capture_output=True, timeout=60)
    if p.returncode != 0:
        raise AssertionError(f"openssl {' '.join(map(str, args))}: {p.stderr.decode(errors='replace')}")


def make_ca(d, name):
    openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.pem", "-days", "2", "-subj", f"/CN=ficus test {name}",
            "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
            cwd=d)
    return os.path.join(d, f"{name}.pem")


def make_cert(d, name, ca, san):
    with open(os.path.join(d, f"{name}.ext"), "w") as f:
        f.write(f"subjectAltName={san}\nbasicConstraints=CA:FALSE\n"
                "keyUsage=critical,digitalSignature\nextendedKeyUsage=serverAuth\n")
    openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
            "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}", cwd=d)
    openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey", f"{ca}.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", f"{name}.ext", cwd=d)
    return os.path.join(d, f"{name}.pem"), os.path.join(d, f"{name}.key")


class JwksHttpsTest(JwksTestBase):
    def setUp(self):
        super().setUp()
        self.pki = os.path.join(self.tmp, "pki")
        os.makedirs(self.pki)
        self.ca = make_ca(self.pki, "ca")
        # the gateway trusts the test CA only: OpenSSL's default verify paths honour SSL_CERT_FILE
        old = os.environ.get("SSL_CERT_FILE")
        os.environ["SSL_CERT_FILE"] = self.ca
        self.addCleanup(lambda: os.environ.__setitem__("SSL_CERT_FILE", old) if old is not None
                        else os.environ.pop("SSL_CERT_FILE", None))

    def tls_server(self, cert, key):
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(cert, key)
        jw = JwksServer(self, tls=ctx)
        jw.set_keys(self.jwk_a)
        return jw

    def test_trusted_ca_by_name_and_by_ip(self):
        cert, key = make_cert(self.pki, "jwks", "ca", "DNS:localhost,IP:127.0.0.1")
        jw = self.tls_server(cert, key)
        for host in ("localhost", "127.0.0.1"):
            with self.subTest(host):
                self.start(f"https://{host}:{jw.port}/jwks.json")
                self.wait_ready(15)
                r = self.get(self.token_a())
                self.assertEqual(r.status, 200, repr(r))
                self.assertEqual(self.fetches("error"), 0, self.gw.proc.stderr())
                self.gw.stop()

    def assert_refused(self, uri, words):
        self.start(uri)
        wait_until(lambda: self.fetches("error") >= 1, 15, what="a failed TLS fetch")
        time.sleep(0.3)
        status, doc = self.readyz()
        self.assertEqual(status, 503, doc)
        err = self.gw.proc.stderr()
        self.assertRegex(err, r"jwks: issuer '[^']+': fetching https://\S+ failed: TLS certificate "
                              r"verification failed: ")
        self.assertIn(words, err)
        self.assertEqual(self.metric("ficus_jwks_keys"), 0)
        self.assert401(self.get(self.token_a()), "kid")

    def test_untrusted_certificate_is_a_failed_fetch(self):
        make_ca(self.pki, "rogue")
        cert, key = make_cert(self.pki, "jwks", "rogue", "DNS:localhost,IP:127.0.0.1")
        jw = self.tls_server(cert, key)
        self.assert_refused(f"https://127.0.0.1:{jw.port}/jwks.json", "unable to get local issuer certificate")
        self.assertEqual(jw.hit_count(), 0, "no request goes to an unverified peer")

    def test_wrong_host_name_is_a_failed_fetch(self):
        cert, key = make_cert(self.pki, "jwks", "ca", "DNS:jwks.other.test")
        jw = self.tls_server(cert, key)
        for uri in (f"https://127.0.0.1:{jw.port}/jwks.json", f"https://localhost:{jw.port}/jwks.json"):
            with self.subTest(uri):
                self.assert_refused(uri, "mismatch")
                self.gw.stop()
        self.assertEqual(jw.hit_count(), 0, "no request goes to an unverified peer")


if __name__ == "__main__":
    if "--load" in sys.argv[1:]:
        sys.exit(load_main(sys.argv[1:]))
    import unittest
    unittest.main()
