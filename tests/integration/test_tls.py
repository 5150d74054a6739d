"""TLS (issue 8): HTTPS listeners in front of the proxy (keep-alive, chunked
streaming, uploads, WebSocket), SNI certificates, protocol versions, bad
handshakes, TLS to upstreams (verification, SNI, mutual TLS; nginx as the
upstream), certificate reload under load, positioned config errors and
session resumption.

Every certificate is made at test time by tlskit.CertFactory in the test's
temp dir (a private CA), nothing is committed."""

import base64
import hashlib
import json
import re
import os
import socket
import ssl
import threading
import time

import fxtest
from fxtest import build_request, free_port, hall, ws_accept, ws_frame
from reloadkit import AdminMixin, check_errors, position, wait_until
import tlskit

MiB = 1 << 20


class TlsBase(AdminMixin, fxtest.FxTestCase):
    """A CA per test, and gateways whose first listener speaks TLS."""

    def setUp(self):
        super().setUp()
        self.pki = tlskit.CertFactory(os.path.join(self.tmp, "pki"))
        self.ctx = tlskit.client_context(ca=self.pki.ca)

    def tls_config(self, targets, tls=None, cert=None, limits=None, admin=True, upstream=None, **top):
        """config() with listen[0] on TLS: `cert` (a tlskit.Cert, default a fresh P-256
        localhost/127.0.0.1 one) as the default certificate, `tls` merged over it."""
        if cert is None:
            cert = self.pki.server("server")
        section = {"cert": cert.cert, "key": cert.key}
        section.update(tls or {})
        cfg = self.config(targets, limits=limits, upstream=upstream, **top)
        cfg["listen"] = [{"address": f"127.0.0.1:{free_port()}", "tls": section}]
        if admin:
            cfg["admin"] = {"address": f"127.0.0.1:{free_port()}"}
        return cfg

    def tls_gateway(self, targets, **kw):
        return self.gateway(self.tls_config(targets, **kw))

    def https(self, gw, method="GET", target="/", ctx=None, **kw):
        return tlskit.https_fetch(gw.port, ctx or self.ctx, method, target, **kw)

    def tls_client(self, gw, ctx=None, **kw):
        c = tlskit.TlsClient(gw.port, ctx or self.ctx, **kw)
        self.addCleanup(c.close)
        return c

    def assert_serves(self, gw, up, what):
        """The gateway still answers HTTPS (after a bad case)."""
        self.assertTrue(gw.proc.alive(), f"{what}: the gateway died\n{gw.proc.describe()}")
        r = self.https(gw, "GET", "/still-serving")
        self.assertEqual(r.status, 200, f"{what}: {r!r}")
        self.assertEqual(up.requests[-1]["target"], "/still-serving", what)

    def wait_log(self, path, n, timeout=3.0):
        """The access log's entries once it has at least n."""
        def entries():
            lines = [l for l in fxtest.read_text(path).splitlines() if l.strip()]
            return [json.loads(l) for l in lines] if len(lines) >= n else None

        got = wait_until(entries, timeout)
        self.assertTrue(got, f"access log {path} has fewer than {n} lines: {fxtest.read_text(path)!r}")
        return got


# --------------------------------------------------------------------------
# 1. HTTPS proxying


class HttpsProxyTest(TlsBase):
    def test_proxy_forwarded_proto_and_access_log(self):
        up = self.recording(name="up")
        log_path = os.path.join(self.tmp, "access.log")
        cert = self.pki.server("server", dns=("localhost", "api.test"))
        gw = self.tls_gateway([up.address], cert=cert, log={"access": log_path})
        c = self.tls_client(gw)
        self.assertEqual(c.peer_der, cert.der)
        c.send(build_request("GET", "/api/one?q=1", headers=[("X-Forwarded-Proto", "http")]))
        r = c.read_response()
        self.assertEqual((r.status, r.body), (200, b"up"), repr(r))
        req = up.requests[-1]
        self.assertEqual(req["target"], "/api/one?q=1")
        self.assertEqual(hall(req["headers"], "X-Forwarded-Proto"), ["https"],
                         "the client's X-Forwarded-Proto must be replaced by the gateway's")

        c.send(build_request("POST", "/api/two", body=b"b" * 5000))
        r2 = c.read_response()
        self.assertEqual(r2.status, 200, repr(r2))
        self.assertEqual(up.requests[-1]["body"], b"b" * 5000)
        self.assertEqual(hall(up.requests[-1]["headers"], "X-Forwarded-Proto"), ["https"])

        entries = self.wait_log(log_path, 2)
        by_id = {e["request_id"]: e for e in entries}
        for resp in (r, r2):
            e = by_id[resp.header("x-request-id")]
            self.assertEqual(e.get("tls_version"), c.version, e)
            self.assertEqual(e.get("tls_cipher"), c.cipher, e)
        self.assertEqual(c.version, "TLSv1.3")

    def test_rsa_and_ecdsa_certificates(self):
        up = self.recording(name="up")
        for kind, key_word in (("rsa", "RSA"), ("ec", "ECDSA")):
            cert = self.pki.server(f"server-{kind}", kind=kind)
            gw = self.tls_gateway([up.address], cert=cert, admin=False)
            for maxv in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                ctx = tlskit.client_context(ca=self.pki.ca, max_version=maxv)
                c = self.tls_client(gw, ctx=ctx)
                self.assertEqual(c.peer_der, cert.der, kind)
                if maxv == ssl.TLSVersion.TLSv1_2:
                    self.assertEqual(c.version, "TLSv1.2")
                    self.assertIn(f"-{key_word}-", c.cipher, f"{kind}: TLS 1.2 suite {c.cipher}")
                c.send(build_request("GET", f"/{kind}"))
                self.assertEqual(c.read_response().status, 200)
            gw.stop()


# --------------------------------------------------------------------------
# 2. keep-alive, streaming, uploads


class HttpsStreamingTest(TlsBase):
    def test_keepalive_many_requests_on_one_connection(self):
        up = self.recording(name="up")
        gw = self.tls_gateway([up.address])
        c = self.tls_client(gw)
        for i in range(20):
            c.send(build_request("GET", f"/ka/{i}"))
            r = c.read_response()
            self.assertEqual((r.status, r.body), (200, b"up"), f"request {i}: {r!r}")
        # pipelined: three requests in one write
        c.send(b"".join(build_request("GET", f"/pipe/{i}") for i in range(3)))
        for i in range(3):
            self.assertEqual(c.read_response().status, 200, f"pipelined {i}")
        self.assertEqual([q["target"] for q in up.requests[-3:]], ["/pipe/0", "/pipe/1", "/pipe/2"])
        # one client connection, one upstream connection (the gateway's pool keeps it)
        self.assertEqual(up.connections, 1)

    def test_chunked_8mib_download(self):
        mono = self.monolith()
        gw = self.tls_gateway([mono.address])
        target = f"/_test/chunked/{8 * MiB}"
        direct = fxtest.fetch(mono.port, "GET", target, timeout=30)
        self.assertEqual(direct.status, 200)
        c = self.tls_client(gw, timeout=30)
        for i in range(2):  # twice on the same connection: the chunked framing ended cleanly
            c.send(build_request("GET", target))
            r = c.read_response(timeout=30)
            self.assertEqual(r.status, 200, repr(r))
            self.assertIn("chunked", (r.header("transfer-encoding") or "").lower())
            self.assertEqual(len(r.body), 8 * MiB)
            self.assertEqual(hashlib.sha256(r.body).hexdigest(), hashlib.sha256(direct.body).hexdigest())
        # and with curl (--cacert, --resolve)
        out = os.path.join(self.tmp, "curl.bin")
        rc, so, se = tlskit.curl(f"https://localhost:{gw.port}{target}", ca=self.pki.ca,
                                 resolve=[f"localhost:{gw.port}:127.0.0.1"], extra=["-o", out])
        self.assertEqual(rc, 0, se)
        self.assertEqual(so.split(), ["200", "0"])
        with open(out, "rb") as f:
            self.assertEqual(hashlib.sha256(f.read()).hexdigest(), hashlib.sha256(direct.body).hexdigest())

    def test_32mib_upload(self):
        sink = self.sink()
        gw = self.tls_gateway([sink.address], limits={"max_body_bytes": "64MiB"})
        total = 32 * MiB
        c = self.tls_client(gw, timeout=60)
        c.send(b"POST /upload HTTP/1.1\r\nHost: a.test\r\nContent-Type: application/octet-stream\r\n"
               b"Content-Length: %d\r\n\r\n" % total)
        h = hashlib.sha256()
        block = os.urandom(MiB)
        for i in range(32):
            piece = block[i:] + block[:i]
            h.update(piece)
            c.send(piece)
        r = c.read_response(timeout=60)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json(), {"bytes": total, "sha256": h.hexdigest()})
        # the connection is still good for a chunked upload
        body = b"chunky" * 1000
        c.send(build_request("POST", "/chunked", headers=[("Transfer-Encoding", "chunked")],
                             body=fxtest.chunked(body, [1, 100, 4096])))
        r = c.read_response(timeout=10)
        self.assertEqual(r.json(), {"bytes": len(body), "sha256": hashlib.sha256(body).hexdigest()})


# --------------------------------------------------------------------------
# 3. WebSocket over TLS


class WssTest(TlsBase):
    def test_websocket_through_tls(self):
        up = self.ws_echo()
        gw = self.tls_gateway([up.address])
        c = self.tls_client(gw, timeout=10)
        key = base64.b64encode(os.urandom(16)).decode()
        c.send(("GET /ws/chat HTTP/1.1\r\nHost: collab.test\r\nUpgrade: websocket\r\n"
                "Connection: Upgrade\r\nSec-WebSocket-Version: 13\r\n"
                f"Sec-WebSocket-Key: {key}\r\n\r\n").encode())
        r = c.read_response()
        self.assertEqual(r.status, 101, repr(r))
        self.assertEqual(r.header("sec-websocket-accept"), ws_accept(key))
        self.assertEqual(hall(up.handshakes[0]["headers"], "X-Forwarded-Proto"), ["https"])
        msgs = [b"hello over tls", os.urandom(300 * 1024), b"x" * 125]
        for i, m in enumerate(msgs):
            c.send(ws_frame(2 if i == 1 else 1, m))
        for i, m in enumerate(msgs):
            f = c.read_ws_frame()
            self.assertIsNotNone(f, f"tunnel closed before frame {i}")
            self.assertEqual((f[1], f[2]), (2 if i == 1 else 1, m), f"frame {i}")
        c.send(ws_frame(8, b"\x03\xe8"))
        f = c.read_ws_frame()
        self.assertIsNotNone(f)
        self.assertEqual((f[1], f[2]), (8, b"\x03\xe8"))
        self.assertTrue(up.got_close_frame.wait(5))
        self.assertTrue(c.wait_closed(5), "the gateway kept the TLS connection after the close handshake")


# --------------------------------------------------------------------------
# 4. SNI


class SniTest(TlsBase):
    def test_certificate_by_sni(self):
        up = self.recording(name="up")
        default = self.pki.server("default", dns=("default.test", "localhost"))
        a = self.pki.server("a", dns=("a.test",), ips=())
        b = self.pki.server("b", dns=("*.b.test",), ips=(), kind="rsa")
        gw = self.tls_gateway([up.address], cert=default, tls={"certificates": [
            {"cert": a.cert, "key": a.key, "server_names": ["a.test"]},
            {"cert": b.cert, "key": b.key, "server_names": ["*.b.test"]}]})
        expect = {"a.test": a, "A.Test": a, "x.b.test": b, "unknown.test": default, "b.test": default,
                  "y.x.b.test": default, None: default}
        for name, cert in expect.items():
            res = tlskit.s_client(gw.port, servername=name, ca=self.pki.ca)
            self.assertEqual(res.leaf, (cert.cn, cert.serial), f"SNI {name!r}: {res!r}")
            self.assertEqual(res.leaf_pem, cert.pem, f"SNI {name!r}")
        # verified end to end by curl and python
        rc, out, err = tlskit.curl(f"https://a.test:{gw.port}/via-curl", ca=self.pki.ca,
                                   resolve=[f"a.test:{gw.port}:127.0.0.1"])
        self.assertEqual(rc, 0, err)
        self.assertEqual(out.splitlines(), ["up", "200 0"])
        self.assertEqual(up.requests[-1]["target"], "/via-curl")
        self.assertEqual(fxtest.hget(up.requests[-1]["headers"], "host"), f"a.test:{gw.port}")
        r = self.https(gw, "GET", "/wild", server_hostname="x.b.test", host="x.b.test")
        self.assertEqual(r.status, 200, repr(r))
        # a name that is not served: the default certificate, which curl rightly refuses
        rc, out, err = tlskit.curl(f"https://nope.test:{gw.port}/", ca=self.pki.ca,
                                   resolve=[f"nope.test:{gw.port}:127.0.0.1"])
        self.assertEqual(rc, 60, f"curl should refuse the default certificate for nope.test: {rc} {err}")
        self.assert_serves(gw, up, "after a wrong SNI")


# --------------------------------------------------------------------------
# 5. protocol versions


def _is_server_refusal(err):
    """A handshake error that came from the server, not our own client's settings."""
    text = str(err)
    return err is not None and "NO_PROTOCOLS_AVAILABLE" not in text and "no protocols available" not in text


class VersionTest(TlsBase):
    def test_min_version_tls13_refuses_tls12(self):
        up = self.recording(name="up")
        gw = self.tls_gateway([up.address], tls={"min_version": "TLS1.3"})
        err = tlskit.handshake_error(gw.port, tlskit.client_context(ca=self.pki.ca,
                                                                    max_version=ssl.TLSVersion.TLSv1_2))
        self.assertTrue(_is_server_refusal(err), f"a TLS 1.2-only client was not refused: {err!r}")
        res = tlskit.s_client(gw.port, servername="localhost", ca=self.pki.ca, extra=["-tls1_2"])
        self.assertIsNone(res.leaf, f"openssl s_client -tls1_2 got a certificate: {res!r}")
        self.assertNotEqual(res.returncode, 0, repr(res))
        res = tlskit.s_client(gw.port, servername="localhost", ca=self.pki.ca, extra=["-tls1_3"])
        self.assertEqual(res.protocol, "TLSv1.3", repr(res))
        self.assertTrue(res.verify_ok, repr(res))
        c = self.tls_client(gw)
        self.assertEqual(c.version, "TLSv1.3")
        self.assert_serves(gw, up, "after a TLS 1.2 client")

    def test_tls10_and_tls11_refused(self):
        up = self.recording(name="up")
        gw = self.tls_gateway([up.address])  # min_version defaults to TLS1.2
        for v in (ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1):
            ctx = tlskit.client_context(ca=self.pki.ca, min_version=v, max_version=v, legacy=True)
            err = tlskit.handshake_error(gw.port, ctx)
            self.assertTrue(_is_server_refusal(err), f"{v.name}: {err!r}")
            self.assertIn("PROTOCOL_VERSION", str(err).upper(), f"{v.name}: {err!r}")
        res = tlskit.s_client(gw.port, servername="localhost", ca=self.pki.ca,
                              extra=["-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"])
        self.assertIsNone(res.leaf, f"openssl s_client -tls1_1 got a certificate: {res!r}")
        self.assertIn("alert protocol version", res.err, repr(res))
        ctx = tlskit.client_context(ca=self.pki.ca, max_version=ssl.TLSVersion.TLSv1_2)
        c = self.tls_client(gw, ctx=ctx)
        self.assertEqual(c.version, "TLSv1.2")
        self.assert_serves(gw, up, "after TLS 1.0/1.1 clients")

    def test_config_refuses_tls11(self):
        cert = self.pki.server("server")
        cfg = self.tls_config(["127.0.0.1:9"], cert=cert, tls={"min_version": "TLS1.1"}, admin=False)
        path = os.path.join(self.tmp, "tls11.yaml")
        text = fxtest.to_yaml(cfg)
        with open(path, "w") as f:
            f.write(text)
        rc, errors, _ = check_errors(path)
        self.assertNotEqual(rc, 0)
        line, col = position(text, "TLS1.1")
        self.assertTrue(any(e.startswith(f"{path}:{line}:{col}: error: listen[0].tls.min_version") for e in errors),
                        f"expected {path}:{line}:{col}: error: listen[0].tls.min_version ...; got {errors}")


# --------------------------------------------------------------------------
# 6. bad input on the TLS port


class BadHandshakeTest(TlsBase):
    def setUp(self):
        super().setUp()
        self.up = self.recording(name="up")
        self.gw = self.tls_gateway([self.up.address], limits={"header_timeout": "1s"})

    def raw(self):
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=5)
        self.addCleanup(s.close)
        return s

    def test_plain_http_to_tls_port(self):
        s = self.raw()
        s.sendall(build_request("GET", "/plain"))
        closed, took, got = tlskit.wait_closed_raw(s, 3)
        self.assertTrue(closed, f"plain HTTP on the TLS port: still open after {took:.1f}s, got {got[:100]!r}")
        self.assertFalse(got.startswith(b"HTTP/1.1 2"), got[:200])
        self.assertEqual(self.up.requests, [], "plain HTTP on the TLS port reached the upstream")
        self.assert_serves(self.gw, self.up, "after plain HTTP")

    def test_truncated_client_hello_then_close(self):
        hello = tlskit.client_hello()
        for cut in (1, 5, len(hello) // 2, len(hello) - 1):
            s = self.raw()
            s.sendall(hello[:cut])
            s.close()
        # the same, but reading: the gateway must not answer a half ClientHello as if it were whole
        s = self.raw()
        s.sendall(hello[:len(hello) // 2])
        s.shutdown(socket.SHUT_WR)
        closed, took, got = tlskit.wait_closed_raw(s, 3)
        self.assertTrue(closed, f"half a ClientHello + FIN: still open after {took:.1f}s")
        self.assertFalse(got.startswith(b"\x16\x03"), f"a ServerHello for half a ClientHello: {got[:20]!r}")
        self.assert_serves(self.gw, self.up, "after truncated ClientHellos")

    def test_stalled_handshake_closed_after_header_timeout(self):
        hello = tlskit.client_hello()
        half = self.raw()
        half.sendall(hello[:len(hello) // 2])
        silent = self.raw()  # connects and sends nothing
        # while those stall, others are served
        self.assert_serves(self.gw, self.up, "while handshakes stall")
        for what, s in (("half a ClientHello", half), ("no ClientHello", silent)):
            closed, took, got = tlskit.wait_closed_raw(s, 4)
            self.assertTrue(closed, f"{what}: not closed within 4 s (header_timeout 1s)")
            self.assertLess(took, 3.5, f"{what}: closed after {took:.1f}s")
        self.assert_serves(self.gw, self.up, "after stalled handshakes")

    def test_stalled_handshake_timing(self):
        hello = tlskit.client_hello()
        s = self.raw()
        t0 = time.monotonic()
        s.sendall(hello[:len(hello) // 2])
        closed, _, _ = tlskit.wait_closed_raw(s, 4)
        took = time.monotonic() - t0
        self.assertTrue(closed)
        self.assertGreaterEqual(took, 0.8, f"closed after {took:.2f}s, before header_timeout (1s)")
        self.assertLess(took, 3.0, f"closed after {took:.2f}s")

    def test_handshake_results_counted(self):
        def counts():
            text = fxtest.fetch(self.gw.admin_port, "GET", "/metrics").body.decode()
            got = dict(re.findall(r'^ficus_tls_handshakes_total\{result="(\w+)"\} (\d+)$', text, re.M))
            return {k: int(v) for k, v in got.items()}

        # the harness's readiness probe (a TCP connect to this port, closed at once) is counted as
        # abandoned when its connection is freed, which may be after the gateway answered: wait for it
        base = wait_until(lambda: (lambda c: c if c.get("abandoned", 0) >= 1 else None)(counts()), 3.0)
        self.assertTrue(base, f"the readiness probe was never counted: {counts()}")
        self.assertEqual(set(base), {"ok", "failed", "abandoned"})
        self.assert_serves(self.gw, self.up, "a good handshake")          # ok
        s = self.raw()
        s.sendall(build_request("GET", "/plain"))                         # failed: not TLS at all
        tlskit.wait_closed_raw(s, 3)
        s = self.raw()
        s.sendall(tlskit.client_hello()[:20])                             # abandoned: closes mid-hello
        s.close()
        want = {k: base[k] + 1 for k in base}
        got = wait_until(lambda: counts() if counts() == want else None, 3.0)
        self.assertEqual(got, want, f"ficus_tls_handshakes_total: {counts()}")

    def test_random_bytes(self):
        import random
        rnd = random.Random(8)
        for i in range(6):
            data = bytes(rnd.getrandbits(8) for _ in range(rnd.choice((16, 700, 5000))))
            if i == 0:
                data = b"\x16\x03\x01\xff\xff" + data  # a handshake record header announcing 64 KiB
            s = self.raw()
            try:
                s.sendall(data)
            except (BrokenPipeError, ConnectionResetError):
                continue
            closed, took, got = tlskit.wait_closed_raw(s, 3.5)
            self.assertTrue(closed, f"random bytes #{i}: still open after {took:.1f}s")
        self.assertEqual(self.up.requests, [])
        self.assert_serves(self.gw, self.up, "after random bytes")


# --------------------------------------------------------------------------
# 7 and 8. TLS to upstreams (nginx)

ECHO = "sni=[$ssl_server_name] dn=[$ssl_client_s_dn] proto=[$ssl_protocol]"


class UpstreamTlsTest(TlsBase):
    def tls_nginx(self, cert, name, extra=""):
        """nginx with an HTTPS listener presenting `cert`; answers ECHO. Returns its TLS address."""
        tport = free_port()
        self.nginx(name=name, extra_server=f"""listen 127.0.0.1:{tport} ssl;
        ssl_certificate {cert.cert};
        ssl_certificate_key {cert.key};
        {extra}
        location / {{ default_type text/plain; return 200 "{ECHO}"; }}""")
        self.assertTrue(fxtest.wait_for_port(tport, 5), f"nginx {name}: no TLS listener")
        return f"127.0.0.1:{tport}"

    def gw_with(self, upstreams):
        """A plain-HTTP gateway with admin: upstream NAME at route /NAME/."""
        cfg = {"workers": 1, "log": {"access": "off"},
               "admin": {"address": f"127.0.0.1:{free_port()}"},
               "upstreams": {n: u for n, u in upstreams.items()},
               "routes": [{"name": n, "match": {"prefix": f"/{n}/"}, "upstream": n} for n in upstreams]}
        return self.gateway(cfg)

    def tls_errors(self, gw, name):
        return self.metrics(gw).get(f'ficus_upstream_errors_total{{upstream="{name}",kind="tls"}}', 0)

    def test_verification(self):
        good = self.tls_nginx(self.pki.server("good", dns=("svc.internal",), ips=("127.0.0.1",)), "ng-good")
        expired = self.tls_nginx(self.pki.expired("expired"), "ng-expired")
        wrong = self.tls_nginx(self.pki.server("wrong", dns=("other.test",), ips=()), "ng-wrong")
        ca = self.pki.ca
        gw = self.gw_with({
            "good": {"targets": [good], "tls": {"verify": True, "ca": ca}},
            "sni": {"targets": [good], "tls": {"ca": ca, "server_name": "svc.internal"}},
            "expired": {"targets": [expired], "tls": {"verify": True, "ca": ca}},
            "wrong": {"targets": [wrong], "tls": {"verify": True, "ca": ca}},
            "wrongsni": {"targets": [wrong], "tls": {"ca": ca, "server_name": "svc.internal"}},
            "noverify": {"targets": [wrong], "tls": {"verify": False}},
        })
        r = fxtest.fetch(gw.port, "GET", "/good/x")
        self.assertEqual(r.status, 200, repr(r))
        self.assertIn("proto=[TLSv1.", r.body.decode())

        r = fxtest.fetch(gw.port, "GET", "/sni/x")
        self.assertEqual(r.status, 200, repr(r))
        self.assertIn("sni=[svc.internal]", r.body.decode(), "server_name must be sent as SNI")

        r = fxtest.fetch(gw.port, "GET", "/expired/x")
        doc = self.assertProblem(r, 502, "expired upstream certificate")
        self.assertIn("expired", doc["detail"].lower(), doc)
        self.assertTrue(wait_until(lambda: self.tls_errors(gw, "expired") == 1, 3),
                        f"ficus_upstream_errors_total{{upstream=expired,kind=tls}} = {self.tls_errors(gw, 'expired')}")
        self.assertIn("expired", gw.proc.stderr().lower(), "the TLS failure is not logged")

        for name in ("wrong", "wrongsni"):
            r = fxtest.fetch(gw.port, "GET", f"/{name}/x")
            doc = self.assertProblem(r, 502, f"{name}: certificate for other.test")
            self.assertIn("mismatch", doc["detail"].lower(), doc)
            self.assertTrue(wait_until(lambda: self.tls_errors(gw, name) == 1, 3), name)

        r = fxtest.fetch(gw.port, "GET", "/noverify/x")
        self.assertEqual(r.status, 200, f"verify: false must accept the wrong name: {r!r}")

        # the good ones are unaffected and uncounted
        self.assertEqual(fxtest.fetch(gw.port, "GET", "/good/again").status, 200)
        self.assertEqual(self.tls_errors(gw, "good"), 0)
        self.assertIn('ficus_upstream_errors_total{upstream="good",kind="tls"}', self.metrics(gw))

    def test_mutual_tls(self):
        ngx = self.tls_nginx(self.pki.server("mtls", dns=("svc.internal",)), "ng-mtls",
                             extra=f"ssl_verify_client on; ssl_client_certificate {self.pki.ca};")
        client = self.pki.client("gw-client", "ficus-gateway")
        ca = self.pki.ca
        gw = self.gw_with({
            "without": {"targets": [ngx], "tls": {"ca": ca, "server_name": "svc.internal"}},
            "with": {"targets": [ngx], "tls": {"ca": ca, "server_name": "svc.internal",
                                               "client_cert": client.cert, "client_key": client.key}},
        })
        # nginx completes the handshake without a client certificate and refuses the request at the
        # HTTP level (400 "No required SSL certificate was sent"): the gateway passes that answer on
        r = fxtest.fetch(gw.port, "GET", "/without/x")
        self.assertEqual(r.status, 400, repr(r))
        self.assertIn(b"No required SSL certificate was sent", r.body)
        self.assertEqual(self.tls_errors(gw, "without"), 0)

        r = fxtest.fetch(gw.port, "GET", "/with/x")
        self.assertEqual(r.status, 200, repr(r))
        self.assertIn("CN=ficus-gateway", r.body.decode())
        self.assertIn("sni=[svc.internal]", r.body.decode())
        # keep-alive to the upstream over TLS: more requests, still the client certificate
        for i in range(5):
            r = fxtest.fetch(gw.port, "GET", f"/with/{i}")
            self.assertEqual(r.status, 200, repr(r))
            self.assertIn("CN=ficus-gateway", r.body.decode())


# --------------------------------------------------------------------------
# 9. certificate reload


class CertReloadTest(TlsBase):
    def serial_seen(self, port):
        c = tlskit.TlsClient(port, self.ctx)
        try:
            return tlskit.cert_info(c.peer_der)[1]
        finally:
            c.close()

    def test_reload_under_load_and_bad_key_refused(self):
        up = self.recording(name="up")
        old = self.pki.server("live", dns=("localhost",), cn="localhost-v1")
        gw = self.tls_gateway([up.address], cert=old, workers=2)
        self.assertEqual(self.serial_seen(gw.port), old.serial)

        stop = threading.Event()
        lock = threading.Lock()
        stats = {"ok": 0, "failures": [], "serials": set(), "connects": 0}

        def fresh():  # a new connection (and handshake) per request
            while not stop.is_set():
                try:
                    c = tlskit.TlsClient(gw.port, self.ctx, timeout=5)
                    try:
                        serial = tlskit.cert_info(c.peer_der)[1]
                        c.send(build_request("GET", "/fresh", headers=[("Connection", "close")]))
                        r = c.read_response()
                    finally:
                        c.close()
                    with lock:
                        if r.status == 200:
                            stats["ok"] += 1
                            stats["serials"].add(serial)
                        else:
                            stats["failures"].append(repr(r))
                except Exception as e:  # noqa: BLE001 - every failure counts
                    with lock:
                        stats["failures"].append(f"fresh: {e!r}")

        def keepalive():
            c = None
            while not stop.is_set():
                try:
                    if c is None:
                        c = tlskit.TlsClient(gw.port, self.ctx, timeout=5)
                        with lock:
                            stats["connects"] += 1
                    c.send(build_request("GET", "/keepalive"))
                    r = c.read_response()
                    with lock:
                        if r.status == 200:
                            stats["ok"] += 1
                        else:
                            stats["failures"].append(repr(r))
                except Exception as e:  # noqa: BLE001
                    with lock:
                        stats["failures"].append(f"keep-alive: {e!r}")
                    if c:
                        c.close()
                    c = None
            if c:
                c.close()

        threads = [threading.Thread(target=fn, daemon=True) for fn in (fresh, fresh, keepalive, keepalive)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.0)
            new = self.pki.server("next", dns=("localhost",), cn="localhost-v2")
            new.write_to(old.cert, old.key)
            gw.sighup()
            self.wait_counts(gw, 1, 0, what="certificate reload")
            self.assertTrue(wait_until(lambda: self.serial_seen(gw.port) == new.serial, 3),
                            "new connections do not see the new certificate after the reload")
            time.sleep(1.5)
        finally:
            stop.set()
            for t in threads:
                t.join(10)
        fxtest.measure("TLS reload under load", f"{stats['ok']} requests, {stats['connects']} keep-alive connects, "
                                                f"serials seen {len(stats['serials'])}")
        self.assertEqual(stats["failures"], [], "failed requests while the certificate was reloaded")
        self.assertEqual(stats["connects"], 2, "keep-alive connections were closed by the reload")
        self.assertGreater(stats["ok"], 50, "too little load to mean anything")
        self.assertEqual(stats["serials"], {old.serial, new.serial})

        # a key that does not match the certificate: refused, the running certificate stays
        stray = self.pki.server("stray", dns=("localhost",), cn="stray")
        with open(old.key, "wb") as f:
            f.write(stray.key_pem)
        gw.sighup()
        self.wait_counts(gw, 1, 1, what="reload with a mismatched key")
        line, col = position(fxtest.read_text(gw.config_path), old.key)
        self.assertIn(f"{gw.config_path}:{line}:{col}: error: listen[0].tls.key: ", gw.proc.stderr(),
                      fxtest.tail(gw.proc.stderr()))
        for _ in range(5):
            self.assertEqual(self.serial_seen(gw.port), new.serial, "a refused reload changed the certificate")
        # an unreadable key file (not PEM): the same
        with open(old.key, "wb") as f:
            f.write(b"-----BEGIN PRIVATE KEY-----\nbm90IGEga2V5\n-----END PRIVATE KEY-----\n")
        gw.sighup()
        self.wait_counts(gw, 1, 2, what="reload with a garbage key")
        self.assertEqual(self.serial_seen(gw.port), new.serial)
        self.assert_serves(gw, up, "after refused reloads")


# --------------------------------------------------------------------------
# 10. positioned config errors


class TlsConfigErrorTest(TlsBase):
    def check(self, name, cfg, needle, key_path):
        path = os.path.join(self.tmp, f"{name}.yaml")
        text = fxtest.to_yaml(cfg)
        with open(path, "w") as f:
            f.write(text)
        rc, errors, _ = check_errors(path)
        self.assertNotEqual(rc, 0, f"{name}: ficus check accepted it")
        line, col = position(text, needle)
        prefix = f"{path}:{line}:{col}: error: {key_path}: "
        self.assertEqual(len(errors), 1, f"{name}: {errors}")
        self.assertTrue(errors[0].startswith(prefix), f"{name}: expected {prefix}...; got {errors}")
        return errors[0]

    def test_positioned_errors(self):
        good = self.pki.server("good")
        other = self.pki.server("other")
        base = lambda tls: self.tls_config(["127.0.0.1:9"], cert=good, tls=tls, admin=False)  # noqa: E731

        missing = os.path.join(self.tmp, "missing.crt")
        cfg = base({"cert": missing})
        self.check("missing-cert", cfg, missing, "listen[0].tls.cert")

        garbage = os.path.join(self.tmp, "garbage.crt")
        with open(garbage, "w") as f:
            f.write("this is not a certificate\n")
        self.check("garbage-cert", base({"cert": garbage}), garbage, "listen[0].tls.cert")

        err = self.check("mismatched-key", base({"key": other.key}), other.key, "listen[0].tls.key")
        self.assertIn("mismatch", err)

        self.check("bad-ciphers", base({"ciphers": "NO-SUCH-CIPHER"}), "NO-SUCH-CIPHER", "listen[0].tls.ciphers")

        sni = self.pki.server("sni", dns=("a.test",))
        cfg = base({"certificates": [{"cert": sni.cert, "key": other.key, "server_names": ["a.test"]}]})
        text = fxtest.to_yaml(cfg)
        self.check("sni-mismatched-key", cfg, other.key, "listen[0].tls.certificates[0].key")
        self.assertEqual(text.count(other.key), 1)

        plain = [{"address": f"127.0.0.1:{free_port()}"}]
        cfg = self.config(["127.0.0.1:9"], upstream={"tls": {"ca": garbage}}, listen=plain)
        self.check("upstream-ca", cfg, garbage, "upstreams.up.tls.ca")

        client = self.pki.client("cl", "gw")
        cfg = self.config(["127.0.0.1:9"], upstream={"tls": {"client_cert": client.cert, "client_key": other.key}},
                          listen=plain)
        self.check("upstream-client-key", cfg, other.key, "upstreams.up.tls.client_key")

        # and the good certificate passes
        path = os.path.join(self.tmp, "good.yaml")
        with open(path, "w") as f:
            f.write(fxtest.to_yaml(base({})))
        rc, errors, _ = check_errors(path)
        self.assertEqual((rc, errors), (0, []))


# --------------------------------------------------------------------------
# 11. session resumption


class SessionResumptionTest(TlsBase):
    def resumed(self, port, maxv):
        ctx = tlskit.client_context(ca=self.pki.ca, max_version=maxv)
        first = tlskit.TlsClient(port, ctx)
        first.send(build_request("GET", "/first"))
        self.assertEqual(first.read_response().status, 200)  # TLS 1.3 tickets arrive after the handshake
        session = first.session
        first.close()
        self.assertFalse(first.session_reused)
        second = tlskit.TlsClient(port, ctx, session=session)
        try:
            second.send(build_request("GET", "/second"))
            self.assertEqual(second.read_response().status, 200)
            return second.session_reused
        finally:
            second.close()

    def test_resumption_with_tickets(self):
        up = self.recording(name="up")
        gw = self.tls_gateway([up.address], admin=False)
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            self.assertTrue(self.resumed(gw.port, v), f"{v.name}: the session was not resumed")

    def test_no_resumption_without_tickets(self):
        up = self.recording(name="up")
        gw = self.tls_gateway([up.address], admin=False, tls={"session_tickets": False})
        for v in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
            self.assertFalse(self.resumed(gw.port, v), f"{v.name}: resumed with session_tickets: false")


# --------------------------------------------------------------------------
# ALPN and OCSP stapling


class AlpnOcspTest(TlsBase):
    def test_alpn_and_stapled_ocsp(self):
        up = self.recording(name="up")
        default = self.pki.server("default", dns=("localhost",))
        a = self.pki.server("a", dns=("a.test",), ips=())
        ocsp_default = self.pki.ocsp_response(default, os.path.join(self.tmp, "default.ocsp"))
        ocsp_a = self.pki.ocsp_response(a, os.path.join(self.tmp, "a.ocsp"), status="revoked")
        gw = self.tls_gateway([up.address], cert=default, admin=False, tls={
            "alpn": ["http/1.1"], "ocsp_response": ocsp_default,
            "certificates": [{"cert": a.cert, "key": a.key, "server_names": ["a.test"], "ocsp_response": ocsp_a}]})

        c = self.tls_client(gw, ctx=tlskit.client_context(ca=self.pki.ca, alpn=["h2", "http/1.1"]))
        self.assertEqual(c.alpn, "http/1.1")
        c.send(build_request("GET", "/alpn"))
        self.assertEqual(c.read_response().status, 200)

        res = tlskit.s_client(gw.port, servername="localhost", ca=self.pki.ca, extra=["-status"])
        self.assertEqual(res.leaf, (default.cn, default.serial), repr(res))
        self.assertEqual((res.ocsp_status, res.ocsp_cert_status), ("successful", "good"), repr(res))
        # the SNI certificate staples its own response (this one says revoked: the gateway only relays it)
        res = tlskit.s_client(gw.port, servername="a.test", ca=self.pki.ca, extra=["-status"])
        self.assertEqual(res.leaf, (a.cn, a.serial), repr(res))
        self.assertEqual((res.ocsp_status, res.ocsp_cert_status), ("successful", "revoked"), repr(res))

    def test_no_staple_without_ocsp_response(self):
        up = self.recording(name="up")
        gw = self.tls_gateway([up.address], admin=False)
        res = tlskit.s_client(gw.port, servername="localhost", ca=self.pki.ca, extra=["-status"])
        self.assertIsNotNone(res.leaf, repr(res))
        self.assertEqual(res.ocsp_status, "none", repr(res))
        c = self.tls_client(gw, ctx=tlskit.client_context(ca=self.pki.ca, alpn=["h2", "http/1.1"]))
        self.assertIsNone(c.alpn, "no alpn configured: none selected")


# --------------------------------------------------------------------------
# 12. active health checks over TLS


class UpstreamTlsHealthTest(TlsBase):
    """health.c probes an upstream with `tls` over TLS, with the upstream's own context, name and
    verification: a target whose certificate does not verify is down (last_error says why), and a
    reload that fixes the upstream's ca or server_name brings it back."""

    CHECKS = {"path": "/healthz", "interval": "200ms", "timeout": "150ms", "healthy": 1, "unhealthy": 2}

    def health_nginx(self, cert, name):
        """nginx over TLS (UpstreamTlsTest's helper) answering /healthz, and naming itself in X-Served-By."""
        return UpstreamTlsTest.tls_nginx(self, cert, name, extra=f"""add_header X-Served-By {name} always;
        location = /healthz {{ default_type text/plain; return 200 "ok"; }}""")

    def health_config(self, targets, tls, workers=1):
        return {"workers": workers, "log": {"access": "off"},
                "admin": {"address": f"127.0.0.1:{free_port()}"},
                "upstreams": {"svc": {"targets": list(targets), "tls": tls, "health": dict(self.CHECKS)}},
                "routes": [{"name": "svc", "match": {"prefix": "/"}, "upstream": "svc"}]}

    def states(self, gw):
        """{address: the target's entry in /admin/upstreams} of upstream svc."""
        r = self.admin(gw, "/admin/upstreams")
        self.assertEqual(r.status, 200, repr(r))
        ups = [u for u in json.loads(r.body)["upstreams"] if u["name"] == "svc"]
        self.assertEqual(len(ups), 1, r.body)
        return {t["address"]: t for t in ups[0]["targets_state"]}

    def wait_state(self, gw, target, pred, what, timeout=3.0):
        """Waits until pred(the target's entry) holds; returns the entry."""
        seen = {}

        def check():
            seen["t"] = self.states(gw)[target]
            return pred(seen["t"])

        if not wait_until(check, timeout, interval=0.05):
            self.fail(f"{what}: not within {timeout}s; /admin/upstreams says {seen.get('t')}\n"
                      f"{fxtest.tail(gw.proc.stderr())}")
        return seen["t"]

    def assert_up(self, t, what):
        self.assertEqual((t["state"], t["active_check"], t["last_error"]), ("up", "passing", None), f"{what}: {t}")

    def tls_errors(self, gw):
        return self.metrics(gw).get('ficus_upstream_errors_total{upstream="svc",kind="tls"}', 0)

    def test_valid_certificate_is_up(self):
        good = self.health_nginx(self.pki.server("good"), "ng-good")  # localhost and 127.0.0.1
        gw = self.gateway(self.health_config([good], {"ca": self.pki.ca}))
        # checks_ok grows round after round: passes over TLS (a plain probe to nginx's TLS port gets 400)
        t = self.wait_state(gw, good, lambda t: t["checks_ok"] >= 3, "three passed health checks")
        self.assert_up(t, "a valid certificate")
        self.assertEqual(t["checks_failed"], 0, t)
        r = fxtest.fetch(gw.port, "GET", "/x")
        self.assertEqual((r.status, r.header("x-served-by")), (200, "ng-good"), repr(r))

    def test_bad_certificates_go_down_good_one_serves(self):
        good = self.health_nginx(self.pki.server("good"), "ng-good")
        expired = self.health_nginx(self.pki.expired("expired"), "ng-expired")
        wrong = self.health_nginx(self.pki.server("wrong", dns=("other.test",), ips=()), "ng-wrong")
        gw = self.gateway(self.health_config([good, expired, wrong], {"ca": self.pki.ca}, workers=2))
        for target, reason in ((expired, "certificate has expired"), (wrong, "IP address mismatch")):
            t = self.wait_state(gw, target, lambda t: t["state"] == "down", f"{target} ({reason}) down")
            self.assertEqual(t["active_check"], "failing", t)
            self.assertGreaterEqual(t["checks_failed"], 2, t)
            self.assertEqual(t["checks_ok"], 0, t)
            self.assertTrue((t["last_error"] or "").startswith("TLS: certificate verify failed"), t)
            self.assertIn(reason, t["last_error"], t)
        self.assertIn(f"target {expired} is down", gw.proc.stderr())

        # fresh connections spread over both workers: every request lands on the good target
        answers = []
        for i in range(20):
            r = fxtest.fetch(gw.port, "GET", f"/req/{i}", headers=[("Connection", "close")])
            answers.append((r.status, r.header("x-served-by")))
        self.assertEqual(answers, [(200, "ng-good")] * 20)
        self.assertEqual(self.tls_errors(gw), 0, "a request was sent to a target that is down")
        states = self.states(gw)
        self.assert_up(states[good], "the good target")
        self.assertGreater(states[good]["checks_ok"], 0, states[good])
        for target in (expired, wrong):
            self.assertEqual(states[target]["state"], "down", states[target])

    def test_reload_fixes_ca_then_name(self):
        other = tlskit.CertFactory(os.path.join(self.tmp, "pki-other"), name="other test CA")
        svc = self.health_nginx(other.server("svc", dns=("svc.internal",), ips=()), "ng-svc")
        cfg = self.health_config([svc], {"ca": self.pki.ca})  # the wrong CA, and no server_name
        gw = self.gateway(cfg)
        t = self.wait_state(gw, svc, lambda t: t["state"] == "down", "unknown issuer: down")
        self.assertEqual(t["last_error"], "TLS: certificate verify failed: unable to get local issuer certificate", t)
        r = fxtest.fetch(gw.port, "GET", "/x")  # panic mode: the only target is tried, and fails
        self.assertEqual(r.status, 502, repr(r))

        # the right CA: the checks (kept by the reload) now verify the chain, and fail on the name (the target
        # is an IP address, which the certificate does not list)
        cfg["upstreams"]["svc"]["tls"] = {"ca": other.ca}
        gw.write_config(cfg)
        gw.sighup()
        self.wait_counts(gw, 1, 0, what="reload with the right ca")
        t = self.wait_state(gw, svc, lambda t: "IP address mismatch" in (t["last_error"] or ""),
                            "the new ca in the health checks")
        self.assertEqual(t["last_error"], "TLS: certificate verify failed: IP address mismatch", t)
        self.assertEqual(t["state"], "down", t)

        # and the right name: up again after one pass (healthy: 1), and serving
        cfg["upstreams"]["svc"]["tls"] = {"ca": other.ca, "server_name": "svc.internal"}
        gw.write_config(cfg)
        gw.sighup()
        self.wait_counts(gw, 2, 0, what="reload with server_name")
        t = self.wait_state(gw, svc, lambda t: t["state"] == "up", "up after the reload")
        self.assert_up(t, "after the fix")
        self.assertIn(f"target {svc} is up again", gw.proc.stderr())
        r = fxtest.fetch(gw.port, "GET", "/x")
        self.assertEqual((r.status, r.header("x-served-by")), (200, "ng-svc"), repr(r))
        self.assertIn("sni=[svc.internal]", r.body.decode())


# --------------------------------------------------------------------------
# 13. regressions from the TLS review: pooled upstream connections across reloads, truncated responses


class PyTlsUpstream(fxtest.ThreadedServer):
    """A TLS upstream in python's ssl (so it can close with or without close_notify).

    `connections` counts TCP connections, `handshakes` completed handshakes, `targets` the
    (connection, target) of every request. Modes: "keepalive" answers 200 "tls-up" with a
    Content-Length and keeps the connection; "trunc" answers `200`, `Connection: close` and
    1000 bytes with no length, then closes TCP without close_notify (python's close() never
    sends one) ("/slow..." answers after 1 s); "clean" does the same but sends close_notify first
    (unwrap()). `linger`: seconds between the last byte and the close (0: the gateway reads the data
    and the close in one go)."""

    BODY = b"t" * 1000

    def __init__(self, test, cert, mode="keepalive", linger=0.0):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert.cert, cert.key)
        self.mode = mode
        self.linger = linger
        self.handshakes = 0
        self.targets = []
        self.tls_socks = []
        super().__init__(test)

    def handle(self, sock, index):
        try:
            s = self.ctx.wrap_socket(sock, server_side=True)
        except (ssl.SSLError, OSError):
            return  # the gateway refused our certificate
        with self.lock:
            self.handshakes += 1
            self.tls_socks.append(s)
        try:
            reader = fxtest._Reader(s)
            while True:
                req = fxtest.read_request(reader)
                if req is None:
                    return
                with self.lock:
                    self.targets.append((index, req["target"]))
                if self.mode == "keepalive":
                    if req["target"].startswith("/slow"):
                        time.sleep(1.0)
                    s.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 6\r\n\r\ntls-up")
                    continue
                s.sendall(b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n" + self.BODY)
                if self.linger:
                    time.sleep(self.linger)
                if self.mode == "clean":
                    s.settimeout(3)
                    try:
                        s.unwrap()  # close_notify (then waits for the gateway's)
                    except (ssl.SSLError, OSError):
                        pass
                return
        finally:
            s.close()

    def close_connections(self):
        super().close_connections()
        with self.lock:
            socks = list(self.tls_socks)
        for s in socks:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except (OSError, ValueError):
                pass


def _dechunk(data):
    """(body, complete) of a chunked body: complete only with the terminating 0-chunk."""
    body = bytearray()
    while True:
        i = data.find(b"\r\n")
        if i < 0:
            return bytes(body), False
        size = int(data[:i].split(b";")[0], 16)
        if size == 0:
            return bytes(body), data[i + 2:].startswith(b"\r\n")
        chunk = data[i + 2:i + 2 + size]
        body += chunk
        if len(chunk) < size:
            return bytes(body), False
        data = data[i + 2 + size + 2:]


class TlsReviewRegressionTest(TlsBase):
    def upstream_gateway(self, up, tls):
        cfg = self.config([up.address], upstream={"tls": tls}, admin={"address": f"127.0.0.1:{free_port()}"})
        return self.gateway(cfg), cfg

    def reload(self, gw, ok, cfg=None):
        if cfg is not None:
            gw.write_config(cfg)
        gw.sighup()
        self.wait_counts(gw, ok, 0, what=f"reload {ok}")
        # the counter moves when the main thread has swapped the config; the worker applies it (and
        # its pools) on its next loop turn
        time.sleep(0.3)

    def test_reload_with_other_upstream_tls_settings_drops_pooled_connections(self):
        up = PyTlsUpstream(self, self.pki.server("up"))  # localhost / 127.0.0.1, not wrong.example
        gw, cfg = self.upstream_gateway(up, {"verify": False, "server_name": "wrong.example"})
        for i in range(2):
            r = fxtest.fetch(gw.port, "GET", f"/before/{i}")
            self.assertEqual((r.status, r.body), (200, b"tls-up"), f"verify: false: {r!r}")
        self.assertEqual(up.handshakes, 1, "the upstream connection was not kept alive (the test needs it pooled)")

        # verification on: the pooled connection was never verified and must not serve any more
        cfg["upstreams"]["up"]["tls"] = {"ca": self.pki.ca, "server_name": "wrong.example"}
        self.reload(gw, 1, cfg)
        for i in range(2):
            r = fxtest.fetch(gw.port, "GET", f"/after/{i}")
            doc = self.assertProblem(r, 502, f"request {i} after turning verification on")
            self.assertIn("certificate verify failed", doc["detail"], doc)
        self.assertEqual([t for _, t in up.targets], ["/before/0", "/before/1"],
                         "a request after the reload went over the connection made with verify: false")
        self.assertEqual(up.handshakes, 1)

    def test_reload_with_other_upstream_tls_settings_while_connection_busy(self):
        """The same, with the connection busy during the reload: it must not go back into the new pool."""
        up = PyTlsUpstream(self, self.pki.server("up"))
        gw, cfg = self.upstream_gateway(up, {"verify": False, "server_name": "wrong.example"})
        r = fxtest.fetch(gw.port, "GET", "/before")
        self.assertEqual((r.status, r.body), (200, b"tls-up"), f"verify: false: {r!r}")
        slow = {}
        t = threading.Thread(target=lambda: slow.update(r=fxtest.fetch(gw.port, "GET", "/slow", timeout=10)))
        t.start()
        self.assertTrue(wait_until(lambda: len(up.targets) == 2, 3), f"/slow did not reach the upstream: {up.targets}")
        cfg["upstreams"]["up"]["tls"] = {"ca": self.pki.ca, "server_name": "wrong.example"}
        self.reload(gw, 1, cfg)
        t.join(10)
        self.assertEqual(slow["r"].status, 200, "the request in flight during the reload")
        self.assertEqual([c for c, _ in up.targets], [0, 0], "the slow request did not reuse the pooled connection")
        for i in range(2):
            r = fxtest.fetch(gw.port, "GET", f"/after/{i}")
            doc = self.assertProblem(r, 502, f"request {i} after turning verification on")
            self.assertIn("certificate verify failed", doc["detail"], doc)
        self.assertEqual([t for _, t in up.targets], ["/before", "/slow"],
                         "a request after the reload went over the connection made with verify: false")

    def test_reload_with_changed_ca_file_reconnects(self):
        up = PyTlsUpstream(self, self.pki.server("up"))
        ca_path = os.path.join(self.tmp, "upstream-ca.pem")
        with open(ca_path, "wb") as f:
            f.write(self.pki.ca_pem)
        gw, cfg = self.upstream_gateway(up, {"ca": ca_path})
        for i in range(2):
            r = fxtest.fetch(gw.port, "GET", f"/before/{i}")
            self.assertEqual((r.status, r.body), (200, b"tls-up"), repr(r))
        self.assertEqual((up.connections, up.handshakes), (1, 1), "the upstream connection was not pooled")

        # a CA rotation: the same config text, another CA file content (the new CA joins the bundle)
        rotated = tlskit.CertFactory(os.path.join(self.tmp, "pki-rotated"), name="rotated test CA")
        with open(ca_path + ".tmp", "wb") as f:
            f.write(rotated.ca_pem + self.pki.ca_pem)
        os.rename(ca_path + ".tmp", ca_path)
        self.reload(gw, 1)
        r = fxtest.fetch(gw.port, "GET", "/after-rotation")
        self.assertEqual((r.status, r.body), (200, b"tls-up"), repr(r))
        self.assertEqual((up.connections, up.handshakes), (2, 2),
                         "the connection verified with the old CA file was reused after the reload")
        self.assertEqual([c for c, _ in up.targets], [0, 0, 1])

        # the old CA leaves the bundle: the upstream's certificate is no longer trusted, nothing reaches it
        with open(ca_path + ".tmp", "wb") as f:
            f.write(rotated.ca_pem)
        os.rename(ca_path + ".tmp", ca_path)
        self.reload(gw, 2)
        r = fxtest.fetch(gw.port, "GET", "/after-removal")
        doc = self.assertProblem(r, 502, "the upstream's CA was removed from the CA file")
        self.assertIn("certificate verify failed", doc["detail"], doc)
        self.assertEqual(len(up.targets), 3, f"a request reached the upstream over an old connection: {up.targets}")

    def trunc_gateway(self, mode, linger=0.2):
        up = PyTlsUpstream(self, self.pki.server(f"up-{mode}"), mode, linger)
        log_path = os.path.join(self.tmp, f"access-{mode}.log")
        gw = self.tls_gateway([up.address], upstream={"tls": {"ca": self.pki.ca}}, log={"access": log_path},
                              admin=False)
        return up, gw, log_path

    def check_http11(self, mode, linger):
        """An HTTP/1.1 client over TLS: a truncated response is chunked without its last chunk."""
        up, gw, log_path = self.trunc_gateway(mode, linger)
        c = self.tls_client(gw)
        c.send(build_request("GET", f"/{mode}"))
        first, headers, _ = c.read_head()
        self.assertTrue(first.startswith("HTTP/1.1 200 "), f"{mode}: {first!r}")
        self.assertEqual((fxtest.hget(headers, "transfer-encoding") or "").lower(), "chunked", f"{mode}: {headers}")
        if mode == "trunc":
            self.assertTrue(c.wait_closed(5), "the gateway kept the client connection after a truncated response")
            body, complete = _dechunk(bytes(c.buf))
            self.assertFalse(complete, f"a truncated upstream response ended with the last chunk: {bytes(c.buf)!r}")
            self.assertEqual(body, PyTlsUpstream.BODY[:len(body)])
        else:
            r_body, complete = None, False
            deadline = time.monotonic() + 5
            while not complete and c._fill(deadline, "the chunked body"):
                r_body, complete = _dechunk(bytes(c.buf))
            self.assertTrue(complete, f"clean close: the chunked body did not end: {bytes(c.buf)[-200:]!r}")
            self.assertEqual(r_body, PyTlsUpstream.BODY)
        entry = self.wait_log(log_path, 1)[0]
        self.assertEqual(entry.get("upstream_error"), "reset" if mode == "trunc" else None, f"{mode}: {entry}")
        self.assertEqual(up.targets, [(0, f"/{mode}")])
        gw.stop()

    def read_http10(self, gw, target):
        """An HTTP/1.0 request over TLS, read to the end: (bytes, how it ended)."""
        ctx = tlskit.client_context(ca=self.pki.ca)
        ctx.options &= ~ssl.OP_IGNORE_UNEXPECTED_EOF  # python >= 3.10 sets it: an EOF must not pass for the end
        raw = socket.create_connection(("127.0.0.1", gw.port), timeout=5)
        s = ctx.wrap_socket(raw, server_hostname="localhost", suppress_ragged_eofs=False)
        self.addCleanup(s.close)
        s.sendall(f"GET {target} HTTP/1.0\r\nHost: test.local\r\n\r\n".encode())
        data = bytearray()
        while True:
            try:
                got = s.recv(65536)
            except ssl.SSLError as e:  # SSLEOFError, or (python 3.11) UNEXPECTED_EOF_WHILE_READING
                if isinstance(e, ssl.SSLEOFError) or "UNEXPECTED_EOF" in str(e):
                    return bytes(data), "EOF without close_notify"
                return bytes(data), f"TLS error {e}"
            except ConnectionResetError:
                return bytes(data), "reset"
            if not got:
                return bytes(data), "close_notify"
            data += got

    def check_http10(self, mode, linger):
        """An HTTP/1.0 client reads to the close: only a close without close_notify tells it the response is cut."""
        ending = {"trunc": "EOF without close_notify", "clean": "close_notify"}[mode]
        up, gw, log_path = self.trunc_gateway(mode, linger)
        data, how = self.read_http10(gw, f"/{mode}")
        self.assertEqual(how, ending, f"{mode}: the gateway's close; got {data[:300]!r}")
        head, _, body = data.partition(b"\r\n\r\n")
        self.assertTrue(head.startswith(b"HTTP/1.1 200 ") or head.startswith(b"HTTP/1.0 200 "), f"{mode}: {head!r}")
        self.assertNotIn(b"transfer-encoding", head.lower())
        if mode == "clean":
            self.assertEqual(body, PyTlsUpstream.BODY)
        else:
            self.assertEqual(body, PyTlsUpstream.BODY[:len(body)])
        entry = self.wait_log(log_path, 1)[0]
        self.assertEqual(entry.get("upstream_error"), "reset" if mode == "trunc" else None, f"{mode}: {entry}")
        gw.stop()

    def test_truncated_upstream_response_http11(self):
        """The upstream closes without close_notify: the client's chunked body gets no last chunk (and
        with close_notify, the same response is complete)."""
        for mode in ("trunc", "clean"):
            self.check_http11(mode, linger=0.2)

    def test_truncated_upstream_response_http10(self):
        """The gateway passes the truncation on as a close without close_notify (and a complete response
        with one)."""
        for mode in ("trunc", "clean"):
            self.check_http10(mode, linger=0.2)

    def test_truncated_upstream_response_data_and_close_in_one_read(self):
        """The same truncation, with the last bytes and the upstream's close arriving together (no linger):
        the gateway reads both in one turn, and the unexpected EOF must not be lost on the way."""
        self.check_http11("trunc", linger=0)
        self.check_http10("trunc", linger=0)
