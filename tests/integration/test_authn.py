"""Authentication at the edge: tokens verified by the gateway, identity
forwarded to the upstream, client-sent identity headers never trusted.

Keys are made per test run (python3-cryptography); tokens are minted both
with PyJWT and with `ficus token`, so the two implementations check each
other."""

import base64
import json
import os
import subprocess
import time

import jwt  # python3-jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

import fxtest

ISS = "https://id.test"
AUD = "ficus-tests"
HS_SECRET = "s3cr3t-for-tests-only-0123456789abcdef"  # 38 bytes: enough for HS256


def b64url(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class AuthnBase(fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.rsa = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        self.ec = ec.generate_private_key(ec.SECP256R1())
        self.rsa_pub = self.write_pem("rsa.pub.pem", self.rsa.public_key())
        self.ec_pub = self.write_pem("ec.pub.pem", self.ec.public_key())
        self.ec_priv = os.path.join(self.tmp, "ec.pem")
        with open(self.ec_priv, "wb") as f:
            f.write(self.ec.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
        os.environ["FICUS_TEST_HS_SECRET"] = HS_SECRET
        self.addCleanup(os.environ.pop, "FICUS_TEST_HS_SECRET", None)
        self.up = self.recording(name="monolith")
        self.admin = fxtest.free_port()
        self.gw = self.gateway(self.cfg())

    def write_pem(self, name, pub):
        path = os.path.join(self.tmp, name)
        with open(path, "wb") as f:
            f.write(pub.public_bytes(serialization.Encoding.PEM,
                                     serialization.PublicFormat.SubjectPublicKeyInfo))
        return path

    def cfg(self, **auth_extra):
        auth = {
            "issuers": [{
                "issuer": ISS, "audiences": [AUD],
                "keys": [
                    {"kid": "rsa-1", "alg": "RS256", "pem_file": self.rsa_pub},
                    {"kid": "ec-1", "alg": "ES256", "pem_file": self.ec_pub},
                    {"kid": "hs-1", "alg": "HS256", "secret_env": "FICUS_TEST_HS_SECRET"},
                ],
            }],
            "clock_skew": "5s",
            "token_from": ["header:Authorization", "cookie:session"],
            "forward": {"X-User-Id": "sub", "X-User-Roles": "roles"},
        }
        auth.update(auth_extra)
        routes = [
            {"name": "public", "match": {"prefix": "/public/"}, "upstream": "up", "auth": "none"},
            {"name": "maybe", "match": {"prefix": "/maybe/"}, "upstream": "up", "auth": "optional"},
            {"name": "api", "match": {"prefix": "/"}, "upstream": "up"},
        ]
        return self.config([self.up.address], routes=routes, auth=auth, policies=self.permit_all(),
                           admin={"address": f"127.0.0.1:{self.admin}"})

    def claims(self, **kw):
        now = int(time.time())
        c = {"iss": ISS, "aud": AUD, "sub": "42", "roles": ["editor", "admin"], "iat": now, "exp": now + 600}
        c.update(kw)
        return {k: v for k, v in c.items() if v is not None}

    def token(self, alg="RS256", kid="rsa-1", key=None, headers=None, **claims):
        if key is None:
            key = {"RS256": self.rsa, "ES256": self.ec, "HS256": HS_SECRET}[alg]
        h = {"kid": kid} if kid else {}
        h.update(headers or {})
        return jwt.encode(self.claims(**claims), key, algorithm=alg, headers=h)

    def get(self, path="/api/x", token=None, headers=None):
        h = list(headers or [])
        if token is not None:
            h.append(("Authorization", f"Bearer {token}"))
        return fxtest.fetch(self.gw.port, "GET", path, headers=h)

    def assert401(self, resp, reason_words=None):
        self.assertProblem(resp, 401)
        challenge = resp.header("www-authenticate") or ""
        self.assertTrue(challenge.startswith('Bearer error="invalid_token"'), challenge)
        self.assertIn("error_description=", challenge)
        if reason_words:
            self.assertIn(reason_words, resp.json()["detail"])

    def rejections(self):
        text = fxtest.fetch(self.admin, "GET", "/metrics").body.decode()
        counts = {}
        for line in text.splitlines():
            if line.startswith("ficus_jwt_rejections_total{"):
                reason = line.split('reason="')[1].split('"')[0]
                counts[reason] = int(line.rsplit(" ", 1)[1])
        return counts


class AuthnTest(AuthnBase):
    # -- accepted ------------------------------------------------------------------

    def test_valid_tokens_of_each_alg_pass_with_identity_forwarded(self):
        for alg, kid in (("RS256", "rsa-1"), ("ES256", "ec-1"), ("HS256", "hs-1")):
            before = len(self.up.requests)
            r = self.get(token=self.token(alg, kid, sub=f"user-{alg}"))
            self.assertEqual(r.status, 200, f"{alg}: {r!r}")
            req = self.up.requests[before]
            self.assertEqual(fxtest.hget(req["headers"], "x-user-id"), f"user-{alg}")
            self.assertEqual(fxtest.hget(req["headers"], "x-user-roles"), "editor,admin")
            # the token itself goes upstream unchanged (forward_token defaults to true)
            self.assertTrue((fxtest.hget(req["headers"], "authorization") or "").startswith("Bearer "))

    def test_spoofed_identity_headers_are_stripped_on_every_route(self):
        spoof = [("X-User-Id", "root"), ("x-user-roles", "admin"), ("X-USER-ID", "0")]
        for path, tok in (("/api/x", self.token(sub="7")), ("/public/x", None), ("/maybe/x", None)):
            before = len(self.up.requests)
            r = self.get(path, token=tok, headers=spoof)
            self.assertEqual(r.status, 200, f"{path}: {r!r}")
            hdrs = self.up.requests[before]["headers"]
            ids = fxtest.hall(hdrs, "x-user-id")
            roles = fxtest.hall(hdrs, "x-user-roles")
            if tok:
                self.assertEqual(ids, ["7"], f"{path}: {hdrs}")
                self.assertEqual(roles, ["editor,admin"])
            else:
                self.assertEqual(ids, [], f"{path}: client identity reached the upstream: {hdrs}")
                self.assertEqual(roles, [])

    def test_cookie_token_and_case_insensitive_scheme(self):
        tok = self.token()
        r = fxtest.fetch(self.gw.port, "GET", "/api/c", headers=[("Cookie", f"a=b; session={tok}; c=d")])
        self.assertEqual(r.status, 200, repr(r))
        r = fxtest.fetch(self.gw.port, "GET", "/api/c", headers=[("Authorization", f"bearer {tok}")])
        self.assertEqual(r.status, 200, repr(r))

    def test_ficus_token_minted_tokens_are_accepted(self):
        claims = json.dumps({"iss": ISS, "aud": AUD, "sub": "minted", "roles": ["r"]})
        out = subprocess.run([fxtest.ficus_bin(), "token", "--key", self.ec_priv, "--alg", "ES256",
                              "--kid", "ec-1", "--claims", claims, "--ttl", "5m"],
                             capture_output=True, text=True, timeout=10)
        self.assertEqual(out.returncode, 0, out.stderr)
        tok = out.stdout.strip()
        # PyJWT agrees it is a valid ES256 token
        decoded = jwt.decode(tok, self.ec.public_key(), algorithms=["ES256"], audience=AUD, issuer=ISS)
        self.assertEqual(decoded["sub"], "minted")
        self.assertGreater(decoded["exp"], time.time() + 200)
        before = len(self.up.requests)
        self.assertEqual(self.get(token=tok).status, 200)
        self.assertEqual(fxtest.hget(self.up.requests[before]["headers"], "x-user-id"), "minted")

    def test_optional_and_none_routes(self):
        self.assertEqual(self.get("/public/p").status, 200)
        self.assertEqual(self.get("/maybe/p").status, 200)
        self.assert401(self.get("/maybe/p", token=self.token(exp=int(time.time()) - 60)))
        # auth: none does not even look at a bad token
        self.assertEqual(self.get("/public/p", token="garbage").status, 200)

    # -- refused -------------------------------------------------------------------------

    def test_refusals_each_with_its_reason(self):
        now = int(time.time())
        other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        hdr_none = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
        body = b64url(json.dumps(self.claims()).encode())
        good = self.token()
        h, p, s = good.split(".")
        tampered = ".".join([h, b64url(json.dumps(self.claims(sub="admin")).encode()), s])
        cases = [
            ("missing", None, "missing"),
            ("expired", self.token(exp=now - 60), "expired"),
            ("not yet valid", self.token(nbf=now + 600), "not_yet_valid"),
            ("wrong audience", self.token(aud="someone-else"), "bad_audience"),
            ("wrong issuer", self.token(iss="https://evil.test"), "bad_issuer"),
            ("unknown kid", self.token(kid="nope"), "unknown_kid"),
            ("signed by another key", self.token(key=other), "bad_signature"),
            ("alg none", f"{hdr_none}.{body}.", "alg_mismatch"),
            ("ES256 token claiming the RSA key", self.token("ES256", kid="rsa-1"), "alg_mismatch"),
            ("tampered payload", tampered, "bad_signature"),
            ("signature stripped", f"{h}.{p}.", "bad_signature"),
            ("junk", "not.a.token", "malformed"),
            ("two segments", f"{h}.{p}", "malformed"),
        ]
        for name, tok, reason in cases:
            before = self.rejections()
            r = self.get(token=tok)
            self.assert401(r)
            after = self.rejections()
            grew = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
            self.assertEqual(grew, {reason: 1}, f"{name}: counters moved {grew}")
        self.assertEqual(self.up.requests, [], "a refused request reached the upstream")

    def test_hs256_with_rsa_public_key_pem_is_refused(self):
        # the classic RS/HS confusion: the public key used as an HMAC secret
        pem = open(self.rsa_pub, "rb").read()
        hdr = b64url(json.dumps({"alg": "HS256", "typ": "JWT", "kid": "rsa-1"}).encode())
        payload = b64url(json.dumps(self.claims()).encode())
        import hmac, hashlib
        sig = b64url(hmac.new(pem, f"{hdr}.{payload}".encode(), hashlib.sha256).digest())
        r = self.get(token=f"{hdr}.{payload}.{sig}")
        self.assert401(r)
        self.assertEqual(self.up.requests, [])

    def test_huge_token_is_refused_without_crash(self):
        tok = "a" * 9000 + "." + "b" * 10 + "." + "c" * 10
        r = self.get(token=tok)
        self.assertIn(r.status, (401, 431))
        self.assertEqual(self.up.requests, [])
        self.assertEqual(self.get(token=self.token()).status, 200)


class KeyRotationOnReloadTest(AuthnBase):
    """jwks_file keys rotate with a config reload: a new kid is accepted right
    after the reload, and a removed one is refused at once — including tokens
    the worker had already verified and cached."""

    def jwk(self, kid, key):
        n = key.public_key().public_numbers()
        return {"kty": "RSA", "kid": kid, "alg": "RS256", "use": "sig",
                "n": b64url(n.n.to_bytes((n.n.bit_length() + 7) // 8, "big")),
                "e": b64url(n.e.to_bytes(3, "big"))}

    def write_jwks(self, *keys):
        path = os.path.join(self.tmp, "jwks.json")
        with open(path + ".new", "w") as f:
            json.dump({"keys": [self.jwk(kid, k) for kid, k in keys]}, f)
        os.rename(path + ".new", path)
        return path

    def test_rotation_by_reload(self):
        a = self.rsa
        b = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwks = self.write_jwks(("a", a))
        self.admin = fxtest.free_port()  # setUp's gateway keeps its own
        cfg = self.cfg(issuers=[{"issuer": ISS, "audiences": [AUD], "jwks_file": jwks}])
        gw = self.gateway(cfg)
        tok_a = self.token("RS256", "a", key=a)
        tok_b = self.token("RS256", "b", key=b)

        def status(tok):
            return fxtest.fetch(gw.port, "GET", "/api/r", headers=[("Authorization", f"Bearer {tok}")]).status

        self.assertEqual(status(tok_a), 200)  # verified and now cached by the worker
        self.assertEqual(status(tok_b), 401)

        def reload():
            r = fxtest.fetch(gw.admin_port, "POST", "/admin/reload")
            self.assertEqual(r.status, 200, repr(r))

        self.write_jwks(("a", a), ("b", b))
        reload()
        self.assertEqual(status(tok_b), 200)
        self.assertEqual(status(tok_a), 200)
        self.write_jwks(("b", b))
        reload()
        self.assertEqual(status(tok_b), 200)
        self.assertEqual(status(tok_a), 401, "a token of a removed key still passed (stale cache?)")
