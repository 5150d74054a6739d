"""Authorization: policies at the edge, the decision log, audit mode, the
decision API (POST /authz/v1/check), the library in-process
(examples/authz_embed), policy reload and `ficus policy test|eval`.

Every gateway here has `auth` with an ES256 key made per test (python3-
cryptography; tokens minted with PyJWT) and, unless a test says otherwise,
the policy files of POLICIES written into the test's temp dir. One shared
table of cases (PARITY) is decided by the edge, the decision API and the
library, which must all give the expected answer."""

import json
import os
import re
import subprocess
import time

import jwt  # python3-jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

import fxtest
from fxtest import fetch, free_port
from reloadkit import parse_metrics, position, wait_until

ISS = "https://id.authz.test"
AUD = "ficus-authz-tests"
KID = "ec-1"
ID_RE = re.compile(r"[0-9a-f]{32}")
DENIED_RE = re.compile(r"denied by policy \(decision ([0-9a-f]{32})\)")


def authz_embed_bin():
    return os.environ.get("AUTHZ_EMBED_BIN",
                          os.path.join(fxtest.REPO, "build", "examples", "authz_embed", "authz_embed"))


def sanitized_env():
    env = dict(os.environ)
    env.update(fxtest.SANITIZER_ENV)
    return env


# The routes of every gateway here (first match wins). No catch-all "/": a path outside
# these is "no route" (404 at the edge, no_route in the decision API).
ROUTES = [
    {"name": "public", "match": {"prefix": "/public/"}, "upstream": "up", "auth": "none"},
    {"name": "maybe", "match": {"prefix": "/maybe/"}, "upstream": "up", "auth": "optional"},
    {"name": "documents", "match": {"path": "/api/documents/{id}"}, "upstream": "up"},
    {"name": "tenants", "match": {"prefix": "/api/tenants/"}, "upstream": "up"},
    {"name": "search", "match": {"prefix": "/api/search"}, "upstream": "up"},
    {"name": "nopolicy", "match": {"prefix": "/api/nopolicy/"}, "upstream": "up"},
    {"name": "api", "match": {"prefix": "/api/"}, "upstream": "up"},
]
ROUTE_NAMES = [r["name"] for r in ROUTES]

# The policy set (file name → text). `nopolicy` has no policy that permits anything;
# `suspended` (no `routes`) applies everywhere.
POLICIES = {
    "00-global.yaml": """\
# applies to every route that is not auth: none
policies:
  - id: suspended
    effect: forbid
    when: "token.status == 'suspended'"
""",
    "10-documents.yaml": """\
policies:
  - id: doc-read
    effect: permit
    routes: [documents]
    methods: [GET, HEAD]
    when: "'editor' in token.roles || 'docs:read' in token.scope"
  - id: doc-owner
    effect: permit
    routes: [documents]
    methods: [PUT, DELETE]
    when: "token.sub == request.params.id"
  - id: doc-admin
    effect: permit
    routes: [documents]
    when: "'admin' in token.roles"
""",
    "20-tenants.yaml": """\
policies:
  - id: tenant-match
    effect: permit
    routes: [tenants]
    when: "request.headers['X-Tenant'] == token.tenant"
""",
    "30-search.yaml": """\
policies:
  - id: search-query
    effect: permit
    routes: [search]
    methods: [GET]
    when: "request.query.q == 'a b&c' && request.query.lang == 'en'"
""",
    "40-maybe.yaml": """\
policies:
  - id: anon-get
    effect: permit
    routes: [maybe]
    when: "!has(token.sub) && request.method == 'GET'"
""",
    "50-api.yaml": """\
policies:
  - id: api-scope
    effect: permit
    routes: [api]
    when: "'x' in token.scope"
""",
}

# The shared table: edge, decision API and library must all agree with `allow` and
# `policies`. token: claims (merged over iss/aud/iat/exp), None (no token) or the name of
# an invalid token ("bad_signature", "expired", "garbage"); invalid=True: claims that make
# a token every verifier refuses.
PARITY = [
    dict(name="editor reads a document", method="GET", path="/api/documents/7", route="documents",
         params={"id": "7"}, token={"sub": "1", "roles": ["editor"]}, allow=True, policies=["doc-read"]),
    dict(name="scope string contains docs:read", method="GET", path="/api/documents/7", route="documents",
         params={"id": "7"}, token={"sub": "2", "scope": "profile docs:read email"}, allow=True,
         policies=["doc-read"]),
    dict(name="scope word that only starts like docs:read", method="GET", path="/api/documents/7",
         route="documents", params={"id": "7"}, token={"sub": "2", "scope": "docs:readonly"}, allow=False,
         policies=[]),
    dict(name="owner edits own document (params)", method="PUT", path="/api/documents/42", route="documents",
         params={"id": "42"}, token={"sub": "42", "roles": []}, allow=True, policies=["doc-owner"]),
    dict(name="editor may not PUT (methods filter)", method="PUT", path="/api/documents/42", route="documents",
         params={"id": "42"}, token={"sub": "41", "roles": ["editor"]}, allow=False, policies=[]),
    dict(name="admin deletes anything", method="DELETE", path="/api/documents/42", route="documents",
         params={"id": "42"}, token={"sub": "9", "roles": ["admin"]}, allow=True, policies=["doc-admin"]),
    dict(name="owner who is admin: two permits", method="PUT", path="/api/documents/42", route="documents",
         params={"id": "42"}, token={"sub": "42", "roles": ["admin"]}, allow=True,
         policies=["doc-owner", "doc-admin"]),
    dict(name="suspended owner (forbid overrides permit)", method="PUT", path="/api/documents/42",
         route="documents", params={"id": "42"}, token={"sub": "42", "roles": ["admin"], "status": "suspended"},
         allow=False, policies=["suspended"]),
    # RFC 7519: sub is a string; a token with a numeric sub is refused (malformed) by all three
    dict(name="sub as a number: the token is refused", method="PUT", path="/api/documents/42",
         route="documents", params={"id": "42"}, token={"sub": 42}, invalid=True, allow=False, policies=[]),
    dict(name="tenant as a number never equals the header string", method="GET", path="/api/tenants/t1",
         route="tenants", params={}, headers={"X-Tenant": "42"}, token={"sub": "5", "tenant": 42},
         allow=False, policies=[]),
    dict(name="missing roles and scope", method="GET", path="/api/documents/7", route="documents",
         params={"id": "7"}, token={"sub": "3"}, allow=False, policies=[]),
    dict(name="tenant header matches (name in another case)", method="GET", path="/api/tenants/t1",
         route="tenants", params={}, headers={"x-TENANT": "acme"}, token={"sub": "5", "tenant": "acme"},
         allow=True, policies=["tenant-match"]),
    dict(name="tenant header of another tenant", method="GET", path="/api/tenants/t1", route="tenants",
         params={}, headers={"X-Tenant": "globex"}, token={"sub": "5", "tenant": "acme"}, allow=False,
         policies=[]),
    dict(name="no tenant header", method="GET", path="/api/tenants/t1", route="tenants", params={},
         token={"sub": "5", "tenant": "acme"}, allow=False, policies=[]),
    dict(name="scope 'a x b' has x", method="GET", path="/api/other", route="api", params={},
         token={"sub": "6", "scope": "a x b"}, allow=True, policies=["api-scope"]),
    dict(name="scope 'ax b' has no x", method="GET", path="/api/other", route="api", params={},
         token={"sub": "6", "scope": "ax b"}, allow=False, policies=[]),
    dict(name="editor on another route (routes filter)", method="GET", path="/api/other", route="api",
         params={}, token={"sub": "1", "roles": ["editor", "admin"]}, allow=False, policies=[]),
    dict(name="route without policies (default deny)", method="GET", path="/api/nopolicy/1",
         route="nopolicy", params={}, token={"sub": "9", "roles": ["admin"], "scope": "x"}, allow=False,
         policies=[]),
    dict(name="suspended on a route without permits", method="GET", path="/api/nopolicy/1",
         route="nopolicy", params={}, token={"sub": "9", "status": "suspended"}, allow=False,
         policies=["suspended"]),
    dict(name="anonymous GET on an optional route", method="GET", path="/maybe/x", route="maybe", params={},
         token=None, allow=True, policies=["anon-get"]),
    dict(name="anonymous POST on an optional route", method="POST", path="/maybe/x", route="maybe",
         params={}, token=None, allow=False, policies=[]),
    dict(name="a user on the anonymous-only route", method="GET", path="/maybe/x", route="maybe", params={},
         token={"sub": "1"}, allow=False, policies=[]),
    dict(name="no token on a required route", method="GET", path="/api/documents/7", route="documents",
         params={"id": "7"}, token=None, allow=False, policies=[]),
    dict(name="token signed by another key", method="GET", path="/api/documents/7", route="documents",
         params={"id": "7"}, token="bad_signature", allow=False, policies=[]),
    dict(name="expired token", method="GET", path="/api/documents/7", route="documents", params={"id": "7"},
         token="expired", allow=False, policies=[]),
    dict(name="garbage token", method="GET", path="/api/documents/7", route="documents", params={"id": "7"},
         token="garbage", allow=False, policies=[]),
]


class AuthzBase(fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.key = ec.generate_private_key(ec.SECP256R1())
        self.other_key = ec.generate_private_key(ec.SECP256R1())
        self.pub = os.path.join(self.tmp, "ec.pub.pem")
        with open(self.pub, "wb") as f:
            f.write(self.key.public_key().public_bytes(serialization.Encoding.PEM,
                                                       serialization.PublicFormat.SubjectPublicKeyInfo))
        self.up = self.recording(name="up")
        self.pol_dir = os.path.join(self.tmp, "policies")
        os.makedirs(self.pol_dir)
        self.decisions_log = os.path.join(self.tmp, "decisions.log")
        self.access_log = os.path.join(self.tmp, "access.log")

    # -- configuration ------------------------------------------------------------------

    def write_policy(self, name, text):
        path = os.path.join(self.pol_dir, name)
        with open(path + ".tmp", "w") as f:
            f.write(text)
        os.rename(path + ".tmp", path)
        return path

    def write_policies(self, files=None):
        for name, text in (files or POLICIES).items():
            self.write_policy(name, text)

    def auth_conf(self):
        return {"issuers": [{"issuer": ISS, "audiences": [AUD],
                             "keys": [{"kid": KID, "alg": "ES256", "pem_file": self.pub}]}],
                "clock_skew": "5s", "token_from": ["header:Authorization"]}

    def gw_config(self, policies=True, mode=None, routes=None):
        cfg = self.config([self.up.address], routes=routes or ROUTES, auth=self.auth_conf(),
                          admin={"address": f"127.0.0.1:{free_port()}"},
                          log={"access": self.access_log, "decisions": self.decisions_log})
        if policies:
            cfg["policies"] = {"files": [os.path.join(self.pol_dir, "*.yaml")]}
            if mode:
                cfg["policies"]["mode"] = mode
        return cfg

    def start(self, policies=True, mode=None, routes=None):
        if policies and not os.listdir(self.pol_dir):
            self.write_policies()
        return self.gateway(self.gw_config(policies, mode, routes))

    # -- tokens and requests --------------------------------------------------------------

    def token(self, claims=None, key=None, **kw):
        """An ES256 token; `claims` (or keywords) over iss/aud/iat/exp (a None value drops a claim).
        A string `claims` names an invalid token."""
        if isinstance(claims, str):
            now = int(time.time())
            if claims == "bad_signature":
                return self.token({"sub": "1", "roles": ["editor", "admin"]}, key=self.other_key)
            if claims == "expired":
                return self.token({"sub": "1", "roles": ["editor", "admin"], "iat": now - 1200,
                                   "exp": now - 600})
            if claims == "garbage":
                return "garbage"
            raise ValueError(claims)
        now = int(time.time())
        c = {"iss": ISS, "aud": AUD, "iat": now, "exp": now + 600}
        c.update(claims or {})
        c.update(kw)
        c = {k: v for k, v in c.items() if v is not None}
        return jwt.encode(c, key or self.key, algorithm="ES256", headers={"kid": KID})

    def req(self, gw, method, path, token=None, headers=None):
        h = [(k, v) for k, v in (headers or {}).items()] if isinstance(headers, dict) else list(headers or [])
        if token is not None:
            h.append(("Authorization", f"Bearer {token}"))
        body = b"" if method in ("POST", "PUT", "PATCH") else None
        return fetch(gw.port, method, path, headers=h, body=body)

    def assert403(self, r, msg=""):
        doc = self.assertProblem(r, 403, msg)
        m = DENIED_RE.search(doc["detail"])
        self.assertTrue(m, f"{msg}: detail {doc['detail']!r} names no decision id")
        return m.group(1)

    def check(self, gw, body, raw=None, method="POST", headers=None):
        data = raw if raw is not None else json.dumps(body).encode()
        return fetch(gw.admin_port, method, "/authz/v1/check", body=data if method == "POST" else None,
                     headers=headers or ([("Content-Type", "application/json")] if method == "POST" else []),
                     timeout=15)

    def check_ok(self, gw, body):
        r = self.check(gw, body)
        self.assertEqual(r.status, 200, f"{body}: {r!r}")
        self.assertEqual(r.header("content-type"), "application/json", repr(r))
        return r.json()

    # -- logs and metrics ----------------------------------------------------------------------

    def log_entries(self, path, n, timeout=3.0):
        """The JSON lines of a log file, once there are at least n (fails otherwise)."""
        got = []

        def enough():
            got[:] = [json.loads(l) for l in fxtest.read_text(path).splitlines() if l.strip()]
            return len(got) >= n

        if not wait_until(enough, timeout):
            self.fail(f"{path}: {len(got)} lines, expected at least {n}: {got}")
        return got

    def authz_counts(self, gw):
        r = fetch(gw.admin_port, "GET", "/metrics")
        self.assertEqual(r.status, 200, repr(r))
        m = parse_metrics(r.body.decode())
        out = {}
        for k, v in m.items():
            mm = re.fullmatch(r'ficus_authz_decisions_total\{route="([^"]*)",decision="([^"]*)"\}', k)
            if mm:
                out[(mm.group(1), mm.group(2))] = int(v)
        return out


# ------------------------------------------------------------------------------------------
# 1. enforcement at the edge


class EdgeEnforcementTest(AuthzBase):
    def setUp(self):
        super().setUp()
        self.gw = self.start()

    def test_permit_reaches_upstream_and_no_permit_is_403(self):
        r = self.req(self.gw, "GET", "/api/documents/7", self.token(sub="1", roles=["editor"]))
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.body, b"up")
        self.assertEqual([q["target"] for q in self.up.requests], ["/api/documents/7"])
        r = self.req(self.gw, "GET", "/api/documents/8", self.token(sub="1", roles=["viewer"]))
        self.assert403(r, "no policy permits")
        # the client learns the decision id, not the policies
        self.assertNotIn(b"doc-read", r.body)
        self.assertEqual(len(self.up.requests), 1, "a denied request reached the upstream")

    def test_forbid_overrides_permit(self):
        r = self.req(self.gw, "PUT", "/api/documents/42", self.token(sub="42", roles=["admin"]))
        self.assertEqual(r.status, 200, repr(r))
        r = self.req(self.gw, "PUT", "/api/documents/42",
                     self.token(sub="42", roles=["admin"], status="suspended"))
        self.assert403(r, "suspended owner and admin")
        self.assertEqual(len(self.up.requests), 1)

    def test_auth_none_route_needs_no_policy(self):
        # no policy names `public`; without a token, and with a garbage one, it is served
        for tok in (None, "garbage"):
            r = self.req(self.gw, "GET", "/public/page", tok)
            self.assertEqual(r.status, 200, f"token {tok}: {r!r}")
        self.assertEqual([q["target"] for q in self.up.requests], ["/public/page", "/public/page"])

    def test_route_without_policies_is_denied(self):
        tok = self.token(sub="9", roles=["admin", "editor"], scope="x docs:read")
        # the same token is permitted where policies say so ...
        self.assertEqual(self.req(self.gw, "GET", "/api/documents/1", tok).status, 200)
        self.assertEqual(self.req(self.gw, "GET", "/api/x", tok).status, 200)
        # ... and denied on the route no policy permits
        self.assert403(self.req(self.gw, "GET", "/api/nopolicy/1", tok), "default deny")
        self.assert403(self.req(self.gw, "POST", "/api/nopolicy/1", tok), "default deny")
        self.assertEqual([q["target"] for q in self.up.requests], ["/api/documents/1", "/api/x"])

    def test_methods_and_routes_filters(self):
        editor = self.token(sub="1", roles=["editor"])
        owner7 = self.token(sub="7")
        self.assertEqual(self.req(self.gw, "GET", "/api/documents/7", editor).status, 200)
        self.assert403(self.req(self.gw, "PUT", "/api/documents/7", editor), "doc-read is GET/HEAD only")
        self.assert403(self.req(self.gw, "DELETE", "/api/documents/7", editor), "doc-read is GET/HEAD only")
        self.assertEqual(self.req(self.gw, "PUT", "/api/documents/7", owner7).status, 200)
        self.assertEqual(self.req(self.gw, "DELETE", "/api/documents/7", owner7).status, 200)
        self.assert403(self.req(self.gw, "GET", "/api/documents/7", owner7), "doc-owner is PUT/DELETE only")
        # routes: doc-read applies to `documents` only, not to `api`
        self.assert403(self.req(self.gw, "GET", "/api/docs/7", editor), "doc-read on route api")
        self.assertEqual([(q["method"], q["target"]) for q in self.up.requests],
                         [("GET", "/api/documents/7"), ("PUT", "/api/documents/7"),
                          ("DELETE", "/api/documents/7")])

    def test_params_headers_and_query_reach_policies(self):
        # request.params.id from the template /api/documents/{id}
        self.assertEqual(self.req(self.gw, "PUT", "/api/documents/42", self.token(sub="42")).status, 200)
        self.assert403(self.req(self.gw, "PUT", "/api/documents/4", self.token(sub="42")), "params: 4 != 42")
        self.assert403(self.req(self.gw, "PUT", "/api/documents/420", self.token(sub="42")), "params: 420")
        # request.headers['X-Tenant'], whatever the case the client writes
        acme = self.token(sub="5", tenant="acme")
        for name in ("X-Tenant", "x-tenant", "X-TENANT"):
            r = self.req(self.gw, "GET", "/api/tenants/t1", acme, headers=[(name, "acme")])
            self.assertEqual(r.status, 200, f"header {name}: {r!r}")
        self.assert403(self.req(self.gw, "GET", "/api/tenants/t1", acme, headers=[("X-Tenant", "globex")]),
                       "another tenant")
        self.assert403(self.req(self.gw, "GET", "/api/tenants/t1", acme), "no tenant header")
        # request.query.*: decoded ('%20' and '+' are spaces, %26 is '&')
        tok = self.token(sub="5")
        for q in ("q=a%20b%26c&lang=en", "lang=en&q=a+b%26c", "q=a%20b%26c&lang=%65n"):
            r = self.req(self.gw, "GET", f"/api/search?{q}", tok)
            self.assertEqual(r.status, 200, f"?{q}: {r!r}")
        for q in ("q=a%20b&c&lang=en", "q=a%20b%26c", "q=a%2Bb%26c&lang=en", ""):
            self.assert403(self.req(self.gw, "GET", f"/api/search?{q}" if q else "/api/search", tok), f"?{q}")
        self.assertEqual(len(self.up.requests), 7)
        self.assertEqual(self.up.requests[-1]["target"], "/api/search?q=a%20b%26c&lang=%65n",
                         "the query goes upstream as the client sent it")

    def test_a_repeated_name_a_policy_reads_is_400(self):
        """Policies see the first copy of a header or query parameter; the upstream might read
        another. A request that repeats one a policy reads is refused, never decided."""
        acme = self.token(sub="5", tenant="acme")
        for hdrs in ([("X-Tenant", "acme"), ("X-Tenant", "globex")],
                     [("X-Tenant", "acme"), ("x-tenant", "acme")]):
            r = self.req(self.gw, "GET", "/api/tenants/t1", acme, headers=hdrs)
            doc = self.assertProblem(r, 400, repr(hdrs))
            self.assertIn("x-tenant", doc["detail"].lower(), doc)
            self.assertIn("more than once", doc["detail"], doc)
        tok = self.token(sub="5")
        r = self.req(self.gw, "GET", "/api/search?q=a+b%26c&lang=en&q=other", tok)
        doc = self.assertProblem(r, 400, "repeated q")
        self.assertIn("'q'", doc["detail"], doc)
        self.assertEqual(self.up.requests, [], "nothing ambiguous reaches the upstream")
        # names no policy reads may repeat
        r = self.req(self.gw, "GET", "/api/tenants/t1", acme,
                     headers=[("X-Tenant", "acme"), ("X-Other", "1"), ("X-Other", "2")])
        self.assertEqual(r.status, 200, repr(r))
        r = self.req(self.gw, "GET", "/api/search?q=a+b%26c&lang=en&page=1&page=2", tok)
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(len(self.up.requests), 2)

    def test_anonymous_request_on_optional_route(self):
        r = self.req(self.gw, "GET", "/maybe/x")
        self.assertEqual(r.status, 200, repr(r))
        self.assert403(self.req(self.gw, "POST", "/maybe/x"), "anonymous POST")
        # with a token, `!has(token.sub)` is false: denied
        self.assert403(self.req(self.gw, "GET", "/maybe/x", self.token(sub="1")), "user on anon-only")
        # a bad token is refused before policies
        r = self.req(self.gw, "GET", "/maybe/x", self.token("expired"))
        self.assertProblem(r, 401)
        self.assertEqual([(q["method"], q["target"]) for q in self.up.requests], [("GET", "/maybe/x")])

    def test_enforce_counters(self):
        before = self.authz_counts(self.gw)
        editor = self.token(sub="1", roles=["editor"])
        self.assertEqual(self.req(self.gw, "GET", "/api/documents/1", editor).status, 200)
        self.assertEqual(self.req(self.gw, "GET", "/api/documents/2", editor).status, 200)
        self.assert403(self.req(self.gw, "PUT", "/api/documents/2", editor))
        self.assert403(self.req(self.gw, "GET", "/api/nopolicy/1", editor))
        self.assertEqual(self.req(self.gw, "GET", "/public/x").status, 200)  # not decided
        self.assertProblem(self.req(self.gw, "GET", "/api/documents/1"), 401)  # not decided
        after = self.authz_counts(self.gw)
        moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        self.assertEqual(moved, {("documents", "allow"): 2, ("documents", "deny"): 1, ("nopolicy", "deny"): 1})
        for name in ROUTE_NAMES:
            for d in ("allow", "deny", "would_deny"):
                self.assertIn((name, d), after, "every route has its three counters")


class NoPoliciesTest(AuthzBase):
    def test_auth_without_policies_denies_every_authorized_route(self):
        gw = self.start(policies=False)
        admin = self.token(sub="1", roles=["admin", "editor"], scope="x")
        for method, path in (("GET", "/api/documents/1"), ("GET", "/api/x"), ("GET", "/maybe/x"),
                             ("POST", "/api/nopolicy/1")):
            self.assert403(self.req(gw, method, path, admin), f"{method} {path}")
        self.assert403(self.req(gw, "GET", "/maybe/x"), "anonymous on optional")
        self.assertEqual(self.req(gw, "GET", "/public/x").status, 200)
        self.assertEqual([q["target"] for q in self.up.requests], ["/public/x"])
        # said at start ...
        self.assertTrue(wait_until(lambda: "policies default to deny" in gw.proc.stderr(), 2),
                        gw.proc.describe())
        # ... and by `ficus check`: exit 0, the warning on stderr
        p = subprocess.run([fxtest.ficus_bin(), "check", "-c", gw.config_path], capture_output=True,
                           text=True, timeout=30, env=sanitized_env())
        self.assertEqual(p.returncode, 0, p.stderr)
        warn = [l for l in p.stderr.splitlines() if "policies default to deny" in l]
        self.assertEqual(len(warn), 1, p.stderr)
        self.assertTrue(warn[0].startswith(f"{gw.config_path}: warning: "), warn[0])
        self.assertIn("6 routes", warn[0])  # all but `public`
        self.assertNotIn("policies default to deny", p.stdout)

    def test_check_is_quiet_with_policies(self):
        self.write_policies()
        cfg = self.gw_config()
        path = os.path.join(self.tmp, "with-policies.yaml")
        with open(path, "w") as f:
            f.write(fxtest.to_yaml(dict(cfg, listen=[{"address": f"127.0.0.1:{free_port()}"}])))
        p = subprocess.run([fxtest.ficus_bin(), "check", "-c", path], capture_output=True, text=True,
                           timeout=30, env=sanitized_env())
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertNotIn("policies default to deny", p.stderr)
        self.assertIn("8 policies", p.stdout)


# ------------------------------------------------------------------------------------------
# 2. decision log and access log; 3. audit mode


class DecisionLogTest(AuthzBase):
    FIELDS = ("time", "decision_id", "request_id", "source", "route", "method", "path", "decision", "mode",
              "reason", "policies", "eval_ns")

    def test_one_line_per_decision_joined_to_the_access_log(self):
        gw = self.start()
        t_allow = self.token(sub="u-1", roles=["editor"])
        t_deny = self.token(sub="u-2", roles=["viewer"])
        t_forbid = self.token(sub="42", roles=["admin"], status="suspended")
        r1 = self.req(gw, "GET", "/api/documents/7", t_allow)
        r2 = self.req(gw, "GET", "/api/documents/7", t_deny)
        r3 = self.req(gw, "PUT", "/api/documents/42", t_forbid)
        self.assertEqual(r1.status, 200, repr(r1))
        id2 = self.assert403(r2)
        id3 = self.assert403(r3)
        # not decided: auth none, no token on a required route, no route
        self.assertEqual(self.req(gw, "GET", "/public/x", t_allow).status, 200)
        self.assertProblem(self.req(gw, "GET", "/api/documents/7"), 401)
        self.assertProblem(self.req(gw, "GET", "/nowhere", t_allow), 404)
        access = self.log_entries(self.access_log, 6)
        decisions = self.log_entries(self.decisions_log, 3)
        time.sleep(0.2)
        decisions = self.log_entries(self.decisions_log, 3)
        self.assertEqual(len(decisions), 3, decisions)
        for d in decisions:
            for k in self.FIELDS:
                self.assertIn(k, d, d)
            self.assertRegex(d["decision_id"], ID_RE)
            self.assertEqual(d["source"], "edge", d)
            self.assertEqual(d["mode"], "enforce", d)
            self.assertIsInstance(d["eval_ns"], int, d)
            self.assertGreaterEqual(d["eval_ns"], 0)
            self.assertRegex(d["time"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z$")
            self.assertNotIn("would_deny", d)
        by_req = {d["request_id"]: d for d in decisions}
        want = [
            (r1, "u-1", "GET", "/api/documents/7", "allow", "permitted", ["doc-read"]),
            (r2, "u-2", "GET", "/api/documents/7", "deny", "no_policy", []),
            (r3, "42", "PUT", "/api/documents/42", "deny", "forbidden", ["suspended"]),
        ]
        access_by_req = {a["request_id"]: a for a in access}
        for r, sub, method, path, decision, reason, policies in want:
            rid = r.header("x-request-id")
            self.assertIn(rid, by_req, f"no decision line for request {rid}: {decisions}")
            d = by_req[rid]
            self.assertEqual((d["route"], d["subject"], d["method"], d["path"], d["decision"], d["reason"],
                              d["policies"]), ("documents", sub, method, path, decision, reason, policies), d)
            a = access_by_req[rid]
            self.assertEqual(a["decision_id"], d["decision_id"], (a, d))
            self.assertEqual(a["authz"], decision, a)
            self.assertEqual(a["status"], 200 if decision == "allow" else 403, a)
        self.assertEqual(by_req[r2.header("x-request-id")]["decision_id"], id2, "the 403 names its decision")
        self.assertEqual(by_req[r3.header("x-request-id")]["decision_id"], id3)
        self.assertEqual(len({d["decision_id"] for d in decisions}), 3, "decision ids are unique")
        undecided = [a for a in access if a["request_id"] not in by_req]
        self.assertEqual(len(undecided), 3, access)
        for a in undecided:
            self.assertNotIn("authz", a, a)
            self.assertNotIn("decision_id", a, a)
        # no secret in either log: neither a token nor its signature
        text = fxtest.read_text(self.access_log) + fxtest.read_text(self.decisions_log)
        for tok in (t_allow, t_deny, t_forbid):
            self.assertNotIn(tok, text)
            self.assertNotIn(tok.rsplit(".", 1)[1], text)
            self.assertNotIn(tok.split(".")[1], text)


    def test_non_ascii_subject_is_logged_as_itself(self):
        gw = self.start()
        r = self.req(gw, "GET", "/api/documents/7", self.token(sub="Zo\u00eb", roles=["editor"]))
        self.assertEqual(r.status, 200, repr(r))
        d = self.log_entries(self.decisions_log, 1)[0]
        a = self.log_entries(self.access_log, 1)[0]
        # JSON lines carry text: the UTF-8 of the claim, not its bytes as Latin-1 code points
        self.assertEqual(d["subject"], "Zo\u00eb", d)
        self.assertEqual(a["subject"], "Zo\u00eb", a)


class AuditModeTest(AuthzBase):
    def test_audit_forwards_would_deny_and_counts_it(self):
        gw = self.start(mode="audit")
        before = self.authz_counts(gw)
        tok = self.token(sub="u-3", roles=["viewer"])
        r = self.req(gw, "GET", "/api/documents/7", tok)
        self.assertEqual(r.status, 200, "audit mode forwards what the policies deny: %r" % r)
        self.assertEqual([q["target"] for q in self.up.requests], ["/api/documents/7"])
        r2 = self.req(gw, "GET", "/api/documents/8", self.token(sub="u-4", roles=["editor"]))
        self.assertEqual(r2.status, 200, repr(r2))
        decisions = self.log_entries(self.decisions_log, 2)
        by_req = {d["request_id"]: d for d in decisions}
        d = by_req[r.header("x-request-id")]
        self.assertEqual((d["decision"], d["mode"], d.get("would_deny"), d["reason"], d["policies"],
                          d["source"], d["route"]),
                         ("deny", "audit", True, "no_policy", [], "edge", "documents"), d)
        d2 = by_req[r2.header("x-request-id")]
        self.assertEqual((d2["decision"], d2["mode"], d2["policies"]), ("allow", "audit", ["doc-read"]), d2)
        self.assertNotIn("would_deny", d2)
        access = {a["request_id"]: a for a in self.log_entries(self.access_log, 2)}
        a = access[r.header("x-request-id")]
        self.assertEqual((a["authz"], a["decision_id"], a["status"]), ("would_deny", d["decision_id"], 200), a)
        self.assertEqual(access[r2.header("x-request-id")]["authz"], "allow")
        after = self.authz_counts(gw)
        moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        self.assertEqual(moved, {("documents", "would_deny"): 1, ("documents", "allow"): 1})
        # the decision API says the same in audit mode: allowed, but would_deny
        res = self.check_ok(gw, {"token": tok, "method": "GET", "path": "/api/documents/7"})
        self.assertEqual((res["allow"], res.get("would_deny"), res["reason"]), (True, True, "no_policy"), res)


# ------------------------------------------------------------------------------------------
# 4. the decision API


class DecisionApiTest(AuthzBase):
    def setUp(self):
        super().setUp()
        self.gw = self.start()

    def test_single_checks_allowed_and_denied_are_logged_as_api(self):
        tok = self.token(sub="u-7", roles=["editor"])
        res = self.check_ok(self.gw, {"token": tok, "method": "GET", "path": "/api/documents/7"})
        self.assertEqual((res["allow"], res["reason"], res["policies"], res["route"]),
                         (True, "permitted", ["doc-read"], "documents"), res)
        self.assertRegex(res["decision_id"], ID_RE)
        self.assertTrue(res["request_id"], res)
        self.assertNotIn("would_deny", res)
        res2 = self.check_ok(self.gw, {"token": tok, "method": "PUT", "path": "/api/documents/7"})
        self.assertEqual((res2["allow"], res2["reason"], res2["policies"], res2["route"]),
                         (False, "no_policy", [], "documents"), res2)
        res3 = self.check_ok(self.gw, {"token": self.token(sub="7", status="suspended"), "method": "PUT",
                                       "path": "/api/documents/7"})
        self.assertEqual((res3["allow"], res3["reason"], res3["policies"]), (False, "forbidden", ["suspended"]))
        # path params, headers (any case) and the query reach the policies
        res4 = self.check_ok(self.gw, {"token": self.token(sub="5", tenant="acme"), "method": "GET",
                                       "path": "/api/tenants/x", "headers": {"x-tenant": "acme"}})
        self.assertEqual((res4["allow"], res4["policies"]), (True, ["tenant-match"]), res4)
        res5 = self.check_ok(self.gw, {"token": tok, "method": "GET", "path": "/api/search?lang=en&q=a+b%26c"})
        self.assertEqual((res5["allow"], res5["policies"], res5["route"]), (True, ["search-query"], "search"))
        res6 = self.check_ok(self.gw, {"token": tok, "method": "GET", "path": "/api/search?lang=en&q=a+b"})
        self.assertEqual(res6["allow"], False, res6)
        decisions = self.log_entries(self.decisions_log, 6)
        by_id = {d["decision_id"]: d for d in decisions}
        for r, decision in ((res, "allow"), (res2, "deny"), (res3, "deny"), (res4, "allow"), (res5, "allow"),
                            (res6, "deny")):
            d = by_id.get(r["decision_id"])
            self.assertIsNotNone(d, f"decision {r['decision_id']} not in the decision log: {decisions}")
            self.assertEqual((d["source"], d["decision"], d["policies"], d["route"], d["request_id"]),
                             ("api", decision, r["policies"], r["route"], r["request_id"]), d)
        d = by_id[res["decision_id"]]
        self.assertEqual((d["subject"], d["method"], d["path"], d["reason"]),
                         ("u-7", "GET", "/api/documents/7", "permitted"), d)
        self.assertNotIn(tok, fxtest.read_text(self.decisions_log))
        self.assertEqual(self.up.requests, [], "the decision API forwards nothing")

    def test_reasons_without_a_decision(self):
        cases = [
            ({"token": self.token("bad_signature"), "method": "GET", "path": "/api/documents/7"}, False,
             "invalid_token", "documents"),
            ({"token": self.token("expired"), "method": "GET", "path": "/api/documents/7"}, False,
             "invalid_token", "documents"),
            ({"token": "garbage", "method": "GET", "path": "/api/documents/7"}, False, "invalid_token",
             "documents"),
            ({"method": "GET", "path": "/api/documents/7"}, False, "missing_token", "documents"),
            ({"token": self.token(sub="1", roles=["admin"]), "method": "GET", "path": "/nowhere"}, False,
             "no_route", None),
            ({"method": "GET", "path": "/public/x"}, True, "auth_none", "public"),
            ({"token": "garbage", "method": "GET", "path": "/public/x"}, True, "auth_none", "public"),
        ]
        for body, allow, reason, route in cases:
            res = self.check_ok(self.gw, body)
            self.assertEqual((res["allow"], res["reason"], res["policies"]), (allow, reason, []), f"{body}: {res}")
            self.assertEqual(res.get("route"), route, res)
            self.assertNotIn("decision_id", res, "nothing was decided by policies")
        # an anonymous check on an optional route is decided
        res = self.check_ok(self.gw, {"method": "GET", "path": "/maybe/y"})
        self.assertEqual((res["allow"], res["reason"], res["policies"]), (True, "permitted", ["anon-get"]), res)
        time.sleep(0.1)
        decisions = self.log_entries(self.decisions_log, 1)
        self.assertEqual([d["decision_id"] for d in decisions], [res["decision_id"]],
                         "only decided checks are in the decision log")

    def test_batch_results_in_order(self):
        editor = self.token(sub="1", roles=["editor"])
        checks = [
            {"token": editor, "method": "GET", "path": "/api/documents/1"},
            {"token": editor, "method": "DELETE", "path": "/api/documents/2"},
            {"method": "GET", "path": "/public/p"},
            {"token": "garbage", "method": "GET", "path": "/api/documents/1"},
            {"token": self.token(sub="9"), "method": "DELETE", "path": "/api/documents/9"},
            {"token": editor, "method": "GET", "path": "/nowhere"},
            {"method": "GET", "path": "/api/x"},
        ]
        out = self.check_ok(self.gw, {"checks": checks})
        self.assertEqual(list(out), ["results"], out)
        got = [(x["allow"], x["reason"], x["policies"], x.get("route")) for x in out["results"]]
        self.assertEqual(got, [
            (True, "permitted", ["doc-read"], "documents"),
            (False, "no_policy", [], "documents"),
            (True, "auth_none", [], "public"),
            (False, "invalid_token", [], "documents"),
            (True, "permitted", ["doc-owner"], "documents"),
            (False, "no_route", [], None),
            (False, "missing_token", [], "api"),
        ])
        rids = {x["request_id"] for x in out["results"]}
        self.assertEqual(len(rids), 1, "one request, one request id")
        ids = [x["decision_id"] for x in out["results"] if "decision_id" in x]
        self.assertEqual(len(ids), 3)
        self.assertEqual(len(set(ids)), 3, "each check has its own decision id")
        logged = [d["decision_id"] for d in self.log_entries(self.decisions_log, 3)]
        self.assertEqual(logged, ids, "logged in order")

    def test_bad_requests_are_400_naming_the_field(self):
        tok = self.token(sub="1")
        cases = [
            (b'{"method": "GET", "path": "/api/x"', "invalid JSON"),
            (b"not json", "invalid JSON"),
            (b'{"method": "GET", "method": "PUT", "path": "/api/x"}', "duplicate"),
            ({"method": 5, "path": "/api/x"}, "method"),
            ({"method": "get", "path": "/api/x"}, "method"),
            ({"method": "GET", "path": "x"}, "path"),
            ({"method": "GET", "path": 7}, "path"),
            ({"method": "GET", "path": "/api/x", "headers": "X-Tenant: a"}, "headers"),
            ({"method": "GET", "path": "/api/x", "headers": ["a"]}, "headers"),
            ({"method": "GET", "path": "/api/x", "headers": {"X-A": 1}}, "headers.X-A"),
            ({"path": "/api/x"}, "method"),
            ({"method": "GET"}, "path"),
            ({"method": "GET", "path": "/api/x", "contxt": {"a": 1}}, "contxt"),
            ({"method": "GET", "path": "/api/x", "token": {"sub": "1"}}, "token"),
            ({"method": "GET", "path": "/api/x", "token": 5}, "token"),
            ({"method": "GET", "path": "/api/x", "context": [1]}, "context"),
            ([{"method": "GET", "path": "/api/x"}], "object"),
            ({"checks": [{"method": "GET", "path": "/api/x"}, {"method": "GET", "path": "y"}]}, "checks[1].path"),
            ({"checks": []}, "checks"),
            ({"checks": [{"method": "GET", "path": "/"}] * 1001}, "checks"),
            ({"checks": [{"method": "GET", "path": "/"}], "token": tok}, "checks"),
            # context nested 65 containers deep (64 levels inside the body's own object)
            (b'{"method": "GET", "path": "/public/", "context": ' + b'{"a": ' * 64 + b'1' + b'}' * 64 + b'}',
             "deeper than 64"),
        ]
        for body, field in cases:
            raw = body if isinstance(body, bytes) else json.dumps(body).encode()
            r = self.check(self.gw, None, raw=raw)
            doc = self.assertProblemNoId(r, 400, raw[:80])
            self.assertIn(field, doc["detail"], f"{raw[:80]!r}: {doc}")
        # one level less is fine
        raw = b'{"method": "GET", "path": "/public/", "context": ' + b'{"a": ' * 63 + b'1' + b'}' * 63 + b'}'
        self.assertEqual(self.check(self.gw, None, raw=raw).status, 200)
        r = self.check(self.gw, None, raw=b"")
        doc = self.assertProblemNoId(r, 400, "empty body")
        self.assertIn("JSON body", doc["detail"])
        # a 1001-check batch is refused, a 1000-check batch is answered
        out = self.check_ok(self.gw, {"checks": [{"method": "GET", "path": "/public/"}] * 1000})
        self.assertEqual(len(out["results"]), 1000)
        self.assertTrue(all(x["reason"] == "auth_none" for x in out["results"]))
        self.assertEqual(fxtest.read_text(self.decisions_log), "", "nothing was decided")

    def test_unknown_method_is_bad_method_not_a_crash(self):
        tok = self.token(sub="1", roles=["editor"])
        for method in ("FOO", "QUERY", "GETX"):
            res = self.check_ok(self.gw, {"token": tok, "method": method, "path": "/api/documents/1"})
            self.assertEqual((res["allow"], res["reason"], res["policies"]), (False, "bad_method", []), res)
        out = self.check_ok(self.gw, {"checks": [{"token": tok, "method": "GET", "path": "/api/documents/1"},
                                                 {"token": tok, "method": "BREW", "path": "/api/documents/1"}]})
        self.assertEqual([(x["allow"], x["reason"]) for x in out["results"]],
                         [(True, "permitted"), (False, "bad_method")])
        self.assertEqual(self.req(self.gw, "GET", "/api/documents/1", tok).status, 200)

    def test_paths_the_edge_refuses_are_not_allowed(self):
        tok = self.token(sub="9", roles=["admin"])
        for path in ("/public/../api/nopolicy/1", "/public/%2e%2e/api/nopolicy/1", "/public/..%2fapi/nopolicy/1"):
            edge = self.req(self.gw, "GET", path, tok)
            self.assertProblem(edge, 400, path)
            r = self.check(self.gw, {"token": tok, "method": "GET", "path": path})
            if r.status == 400:
                self.assertIn("path", r.json()["detail"], repr(r))
            else:
                self.assertEqual(r.status, 200, repr(r))
                self.assertEqual(r.json()["allow"], False,
                                 f"{path}: the edge refuses this path (400), the decision API allows it: {r.body!r}")
        self.assertEqual(self.up.requests, [])

    def test_a_repeated_name_a_policy_reads_is_ambiguous(self):
        acme = self.token(sub="5", tenant="acme")
        res = self.check_ok(self.gw, {"token": acme, "method": "GET", "path": "/api/tenants/t1",
                                      "headers": {"X-Tenant": "acme", "x-tenant": "globex"}})
        self.assertEqual((res["allow"], res["reason"]), (False, "ambiguous"), res)
        self.assertNotIn("decision_id", res)
        res = self.check_ok(self.gw, {"token": self.token(sub="5"), "method": "GET",
                                      "path": "/api/search?q=a+b%26c&lang=en&lang=fr"})
        self.assertEqual((res["allow"], res["reason"]), (False, "ambiguous"), res)
        res = self.check_ok(self.gw, {"token": acme, "method": "GET", "path": "/api/tenants/t1",
                                      "headers": {"X-Tenant": "acme"}})
        self.assertEqual((res["allow"], res["reason"]), (True, "permitted"), res)

    def test_request_id_and_counters(self):
        before = self.authz_counts(self.gw)
        tok = self.token(sub="1", roles=["editor"])
        r = self.check(self.gw, {"token": tok, "method": "GET", "path": "/api/documents/1"},
                       headers=[("Content-Type", "application/json"), ("X-Request-Id", "svc-42.a")])
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json()["request_id"], "svc-42.a")
        res = self.check_ok(self.gw, {"token": tok, "method": "PUT", "path": "/api/documents/2"})
        self.assertEqual(res["allow"], False, res)
        self.check_ok(self.gw, {"method": "GET", "path": "/public/x"})  # not decided
        d = self.log_entries(self.decisions_log, 2)[0]
        self.assertEqual((d["request_id"], d["decision_id"]), ("svc-42.a", r.json()["decision_id"]), d)
        after = self.authz_counts(self.gw)
        moved = {k: after[k] - before.get(k, 0) for k in after if after[k] != before.get(k, 0)}
        self.assertEqual(moved, {("documents", "allow"): 1, ("documents", "deny"): 1})

    def assertProblemNoId(self, r, status, what):
        """An admin problem: status, problem+json with type/title/status/detail."""
        self.assertEqual(r.status, status, f"{what!r}: {r!r}")
        self.assertTrue((r.header("content-type") or "").startswith("application/problem+json"), repr(r))
        doc = r.json()
        for k in ("type", "title", "status", "detail"):
            self.assertIn(k, doc, doc)
        self.assertEqual(doc["status"], status)
        return doc

    def test_too_large_body_and_wrong_method(self):
        c = self.client(self.gw.admin_port, timeout=10)
        c.send(b"POST /authz/v1/check HTTP/1.1\r\nHost: a\r\nContent-Type: application/json\r\n"
               b"Content-Length: %d\r\n\r\n{\"checks\": [" % ((1 << 20) + 1))
        r = c.read_response(10)
        doc = self.assertProblemNoId(r, 413, "over 1 MiB")
        self.assertIn("1 MiB", doc["detail"])
        for method in ("GET", "PUT", "DELETE"):
            r = self.check(self.gw, None, raw=b"{}", method=method) if method != "PUT" else \
                fetch(self.gw.admin_port, "PUT", "/authz/v1/check", body=b"{}")
            self.assertProblemNoId(r, 405, method)
        # the listener still answers
        res = self.check_ok(self.gw, {"method": "GET", "path": "/public/x"})
        self.assertEqual(res["reason"], "auth_none")


# ------------------------------------------------------------------------------------------
# 5. one table, three deciders


class ParityTest(AuthzBase):
    def test_edge_api_and_library_agree(self):
        self.assertGreaterEqual(len(PARITY), 15)
        gw = self.start()
        tokens = [None if c["token"] is None else self.token(c["token"]) for c in PARITY]

        def invalid(c):
            return c.get("invalid") or c["token"] in ("bad_signature", "expired", "garbage")

        def want_reason(c):
            if invalid(c):
                return "invalid_token"
            if c["allow"]:
                return "permitted"
            return "forbidden" if c["policies"] else "no_policy"

        # the library, in-process: one run, every case on stdin
        args = [authz_embed_bin(), "--policies", self.pol_dir, "--issuer", ISS, "--audience", AUD,
                "--key", f"{KID}:ES256:{self.pub}"]
        for name in ROUTE_NAMES:
            args += ["--route", name]
        lines = []
        for c, tok in zip(PARITY, tokens):
            inp = {"route": c["route"], "params": c["params"], "method": c["method"], "path": c["path"],
                   "headers": c.get("headers", {})}
            if tok is not None:
                inp["token"] = tok
            lines.append(json.dumps(inp))
        p = subprocess.run(args, input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=60,
                           env=sanitized_env())
        self.assertIsNone(fxtest.sanitizer_report(p.stderr), p.stderr)
        self.assertEqual(p.returncode, 0, p.stderr)
        embed = [json.loads(l) for l in p.stdout.splitlines()]
        self.assertEqual(len(embed), len(PARITY), p.stdout)

        # the decision API: one batch
        batch = []
        for c, tok in zip(PARITY, tokens):
            ck = {"method": c["method"], "path": c["path"]}
            if tok is not None:
                ck["token"] = tok
            if c.get("headers"):
                ck["headers"] = c["headers"]
            batch.append(ck)
        api = self.check_ok(gw, {"checks": batch})["results"]
        self.assertEqual(len(api), len(PARITY))

        problems = []
        edge_ids = []
        for i, (c, tok) in enumerate(zip(PARITY, tokens)):
            name = c["name"]
            # the edge
            r = self.req(gw, c["method"], c["path"], tok, headers=c.get("headers"))
            if c["allow"]:
                want_status = 200
            elif invalid(c) or (c["token"] is None and c["route"] != "maybe"):
                want_status = 401
            else:
                want_status = 403
            if r.status != want_status:
                problems.append(f"edge: {name}: status {r.status}, expected {want_status}")
            edge_ids.append((r.header("x-request-id"), i) if r.status in (200, 403) else None)
            # the decision API
            a = api[i]
            api_reason = "missing_token" if (c["token"] is None and c["route"] != "maybe") else want_reason(c)
            if (a["allow"], a["policies"], a["reason"], a.get("route")) != (c["allow"], c["policies"], api_reason,
                                                                           c["route"]):
                problems.append(f"api: {name}: {a}, expected allow={c['allow']} policies={c['policies']} "
                                f"reason={api_reason} route={c['route']}")
            # the library (it does not know the routes' `auth`: no token is just anonymous)
            e = embed[i]
            lib_reason = want_reason(c)
            if (e["allow"], e.get("policies", []), e["reason"]) != (c["allow"], c["policies"], lib_reason):
                problems.append(f"library: {name}: {e}, expected allow={c['allow']} policies={c['policies']} "
                                f"reason={lib_reason}")
        # the edge's decisions name the same policies (decision log, joined by request id)
        decided = [x for x in edge_ids if x]
        api_decided = [x for x in api if "decision_id" in x]
        logged = {d["request_id"]: d for d in self.log_entries(self.decisions_log, len(decided) + len(api_decided))
                  if d["source"] == "edge"}
        for rid, i in decided:
            d = logged.get(rid)
            c = PARITY[i]
            if not d or (d["decision"] == "allow", d["policies"]) != (c["allow"], c["policies"]):
                problems.append(f"edge decision log: {c['name']}: {d}, expected policies {c['policies']}")
        self.assertEqual(problems, [], "\n".join(problems))
        allowed = [c["path"] for c in PARITY if c["allow"]]
        self.assertEqual([q["target"] for q in self.up.requests], allowed)


class PoliciesWithoutAuthTest(AuthzBase):
    """`policies` and no `auth`: the edge verifies no token, so policies decide every request
    anonymously; the decision API must decide a check as the edge decides the same request."""

    def test_edge_and_api_agree(self):
        self.write_policies()
        cfg = self.gw_config()
        del cfg["auth"]
        gw = self.gateway(cfg)
        tok = self.token(sub="9", roles=["admin"])
        for method, path, tk in (("GET", "/maybe/x", None), ("GET", "/maybe/x", tok), ("POST", "/maybe/x", None),
                                 ("GET", "/api/documents/1", None), ("GET", "/api/documents/1", tok)):
            edge = self.req(gw, method, path, tk)
            self.assertIn(edge.status, (200, 403), repr(edge))
            body = {"method": method, "path": path}
            if tk:
                body["token"] = tk
            api = self.check_ok(gw, body)
            self.assertEqual(api["allow"], edge.status == 200,
                             f"{method} {path} {'with' if tk else 'without'} a token: edge {edge.status}, "
                             f"decision API {api}")
        # anonymous GET on `maybe` is permitted, the rest denied (the edge has no token to verify)
        self.assertEqual(self.req(gw, "GET", "/maybe/x").status, 200)
        self.assertEqual(self.req(gw, "GET", "/api/documents/1").status, 403)


# ------------------------------------------------------------------------------------------
# 6. reload


class PolicyReloadTest(AuthzBase):
    V1 = """\
policies:
  - id: editors
    effect: permit
    routes: [documents]
    when: "'editor' in token.roles"
"""
    BROKEN = """\
policies:
  - id: viewers
    effect: permit
    routes: [documents]
    when: "token.sub =="
"""
    V2 = """\
policies:
  - id: viewers
    effect: permit
    routes: [documents]
    when: "'viewer' in token.roles"
"""

    def setUp(self):
        super().setUp()
        self.file = self.write_policy("docs.yaml", self.V1)
        self.gw = self.start()
        self.editor = self.token(sub="1", roles=["editor"])
        self.viewer = self.token(sub="2", roles=["viewer"])

    def statuses(self):
        return (self.req(self.gw, "GET", "/api/documents/1", self.editor).status,
                self.req(self.gw, "GET", "/api/documents/1", self.viewer).status)

    def reload(self):
        r = fetch(self.gw.admin_port, "POST", "/admin/reload", body=b"", timeout=15)
        return r, r.json()

    def test_broken_policy_keeps_the_old_set_then_fixed_file_reloads(self):
        self.assertEqual(self.statuses(), (200, 403))
        hash_v1 = fetch(self.gw.admin_port, "GET", "/admin/config").json()["hash"]
        self.write_policy("docs.yaml", self.BROKEN)
        r, doc = self.reload()
        self.assertEqual(r.status, 400, repr(r))
        self.assertEqual(doc["status"], "error", doc)
        # at the end of the expression: the closing quote
        line, col = position(self.BROKEN, '=="')
        pos = [re.match(r"^(.+):(\d+):(\d+): error: (.+)$", e) for e in doc["errors"]]
        self.assertTrue(pos and all(pos), doc)
        self.assertEqual(len(pos), 1, doc)
        self.assertEqual((pos[0].group(1), int(pos[0].group(2)), int(pos[0].group(3))),
                         (self.file, line, col + 2), doc)
        self.assertIn("policy 'viewers': when:", pos[0].group(4))
        self.assertIn(f"{self.file}:{line}:", self.gw.proc.stderr())
        # the old policies still decide
        self.assertEqual(self.statuses(), (200, 403))
        self.write_policy("docs.yaml", self.V2)
        r, doc = self.reload()
        self.assertEqual((r.status, doc["status"]), (200, "reloaded"), doc)
        self.assertNotEqual(doc["hash"], hash_v1, "only a policy file changed, and the hash says so")
        self.assertEqual(self.statuses(), (403, 200))
        d = self.log_entries(self.decisions_log, 6)[-1]
        self.assertEqual((d["decision"], d["policies"]), ("allow", ["viewers"]), d)

    def test_an_emptied_policy_file_is_refused(self):
        """A file truncated by a deploy must not silently drop its policies."""
        for text in ("", "# work in progress\n", "policies:\n", "{}\n"):
            self.write_policy("docs.yaml", text)
            r, doc = self.reload()
            self.assertEqual(r.status, 400, f"{text!r}: {r!r}")
            self.assertTrue(any(e.startswith(f"{self.file}:") and "policies: []" in e for e in doc["errors"]),
                            f"{text!r}: {doc}")
            self.assertEqual(self.statuses(), (200, 403), text)
        self.write_policy("docs.yaml", "policies: []\n")  # said on purpose: no policies
        r, doc = self.reload()
        self.assertEqual((r.status, doc["status"]), (200, "reloaded"), doc)
        self.assertEqual(self.statuses(), (403, 403))

    def test_unknown_route_is_refused_with_a_suggestion(self):
        self.write_policy("docs.yaml", self.V1.replace("[documents]", "[documets]"))
        r, doc = self.reload()
        self.assertEqual(r.status, 400, repr(r))
        errs = [e for e in doc["errors"] if e.startswith(f"{self.file}:")]
        self.assertTrue(errs, doc)
        line, col = position(self.V1, "documents]")
        self.assertTrue(errs[0].startswith(f"{self.file}:{line}:{col}: error: "), errs[0])
        self.assertIn("documets", errs[0])
        self.assertIn("did you mean 'documents'", errs[0])
        self.assertEqual(self.statuses(), (200, 403))


# ------------------------------------------------------------------------------------------
# 7. `ficus policy test` and `ficus policy eval`


class PolicyCliTest(AuthzBase):
    def ficus(self, *args, cwd=None):
        return subprocess.run([fxtest.ficus_bin()] + list(args), capture_output=True, text=True, timeout=60,
                              cwd=cwd or self.tmp, env=sanitized_env())

    def write_config(self):
        self.write_policies()
        path = os.path.join(self.tmp, "ficus.yaml")
        cfg = self.gw_config()
        cfg["listen"] = [{"address": f"127.0.0.1:{free_port()}"}]
        with open(path, "w") as f:
            f.write(fxtest.to_yaml(cfg))
        return path

    def test_repository_policy_tests_pass(self):
        key = os.path.join(fxtest.REPO, "var", "dev", "jwt-es256.pub.pem")
        if not os.path.exists(key):
            self.fail(f"{key} is missing: run script/bootstrap first (config/ficus.yaml needs it)")
        p = self.ficus("policy", "test", "policies/tests", "-c", "config/ficus.yaml", cwd=fxtest.REPO)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        last = p.stdout.strip().splitlines()[-1]
        m = re.fullmatch(r"(\d+) passed, 0 failed", last)
        self.assertTrue(m, last)
        self.assertGreaterEqual(int(m.group(1)), 15, last)
        self.assertNotIn("FAIL", p.stdout)

    def test_a_wrong_expectation_fails_with_its_position(self):
        cfg = self.write_config()
        tdir = os.path.join(self.tmp, "cases")
        os.makedirs(tdir)
        text = """\
tests:
  - name: editor reads
    request: { method: GET, path: /api/documents/7 }
    token: { sub: "1", roles: [editor] }
    expect: allow
    policies: [doc-read]
  - name: suspended owner may write
    request: { method: PUT, path: /api/documents/42 }
    token: { sub: "42", status: suspended }
    expect: allow
  - name: public needs nothing
    request: { method: GET, path: /public/x }
    expect: allow
"""
        tfile = os.path.join(tdir, "cases.yaml")
        with open(tfile, "w") as f:
            f.write(text)
        p = self.ficus("policy", "test", tdir, "-c", cfg)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        out = p.stdout.strip().splitlines()
        self.assertEqual(out[-1], "2 passed, 1 failed", p.stdout)
        fails = [l for l in out if ": FAIL: " in l]
        self.assertEqual(len(fails), 1, p.stdout)
        line, col = position(text, "name: suspended owner")
        m = re.fullmatch(rf"{re.escape(tfile)}:(\d+):(\d+): FAIL: suspended owner may write: "
                         r"expected allow, got deny \((.*)\)", fails[0])
        self.assertTrue(m, fails[0])
        self.assertEqual((int(m.group(1)), int(m.group(2))), (line, col), fails[0])
        self.assertEqual(m.group(3), "forbidden: suspended", fails[0])

    def test_a_yaml_error_is_positioned(self):
        cfg = self.write_config()
        tdir = os.path.join(self.tmp, "cases")
        os.makedirs(tdir)
        tfile = os.path.join(tdir, "broken.yaml")
        with open(tfile, "w") as f:
            f.write("tests:\n  - name: x\n    request: { method: GET, path: /api/documents/7\n    expect: allow\n")
        p = self.ficus("policy", "test", tdir, "-c", cfg)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        errs = [l for l in p.stderr.splitlines() if re.match(rf"^{re.escape(tfile)}:4:\d+: error: ", l)]
        self.assertEqual(len(errs), 1, p.stderr)
        self.assertIn("YAML", errs[0])
        self.assertTrue(p.stdout.strip().splitlines()[-1].endswith(" failed"), p.stdout)
        self.assertNotEqual(p.stdout.strip().splitlines()[-1].split(", ")[1], "0 failed", p.stdout)

    def test_unknown_method_is_an_answer_not_a_crash(self):
        cfg = self.write_config()
        inp = os.path.join(self.tmp, "input.json")
        with open(inp, "w") as f:
            json.dump({"token": {"sub": "1"}, "method": "FOO", "path": "/api/documents/1"}, f)
        p = self.ficus("policy", "eval", "-c", cfg, "--input", inp)
        self.assertEqual(p.returncode, 0, f"policy eval: exit {p.returncode}\n{p.stdout}{p.stderr[-2000:]}")
        doc = json.loads(p.stdout)
        self.assertEqual((doc["allow"], doc["reason"]), (False, "bad_method"), doc)
        tdir = os.path.join(self.tmp, "cases")
        os.makedirs(tdir)
        tfile = os.path.join(tdir, "foo.yaml")
        with open(tfile, "w") as f:
            f.write("tests:\n  - name: an unknown method\n    request: { method: FOO, path: /api/documents/1 }\n"
                    "    token: { sub: \"1\" }\n    expect: deny\n")
        p = self.ficus("policy", "test", tdir, "-c", cfg)
        self.assertIn(p.returncode, (0, 1), f"policy test: exit {p.returncode}\n{p.stdout}{p.stderr[-2000:]}")
        self.assertRegex(p.stdout.strip().splitlines()[-1], r"^\d+ passed, \d+ failed$", p.stdout)

    def test_eval_prints_the_decision_with_explain(self):
        cfg = self.write_config()
        inp = os.path.join(self.tmp, "input.json")
        with open(inp, "w") as f:
            json.dump({"token": {"sub": "42", "roles": ["admin"]}, "method": "PUT",
                       "path": "/api/documents/42"}, f)
        p = self.ficus("policy", "eval", "-c", cfg, "--input", inp)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual((doc["allow"], doc["reason"], doc["route"], doc["policies"]),
                         (True, "permitted", "documents", ["doc-owner", "doc-admin"]), doc)
        explain = {e["id"]: e for e in doc["explain"]}
        for e in doc["explain"]:
            for k in ("id", "effect", "outcome"):
                self.assertIn(k, e, e)
        self.assertEqual((explain["suspended"]["effect"], explain["suspended"]["outcome"]),
                         ("forbid", "when_false"))
        self.assertEqual((explain["doc-owner"]["effect"], explain["doc-owner"]["outcome"]), ("permit", "matched"))
        self.assertEqual(explain["doc-admin"]["outcome"], "matched")
        self.assertEqual(explain["doc-read"]["outcome"], "not_for_method")
        self.assertNotIn("api-scope", explain, "policies of other routes are counted, not listed")
        # a denied one says so too
        with open(inp, "w") as f:
            json.dump({"token": {"sub": "41"}, "method": "PUT", "path": "/api/documents/42"}, f)
        p = self.ficus("policy", "eval", "-c", cfg, "--input", inp)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        doc = json.loads(p.stdout)
        self.assertEqual((doc["allow"], doc["reason"], doc["policies"]), (False, "no_policy", []), doc)
        self.assertEqual({e["id"]: e["outcome"] for e in doc["explain"]}["doc-owner"], "when_false")
