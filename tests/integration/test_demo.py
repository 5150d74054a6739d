"""The live migration demo of script/server, end to end (issue 9), on ports chosen at run time.

config/ficus.yaml itself is loaded and only what ties it to one machine is replaced: the listen,
admin and upstream addresses (free ports), the issuer's key (a fresh one, minted here with PyJWT),
the spool directory and the policy glob (the repository's policies/, absolute). Its routes, split,
sticky, shadow, fallback, events, auth.forward and policies are the demo's own. Then:

  gateway (embedded broker) → monolith → documents-service, as script/server starts them;
  writes through the gateway → events → the service's view converges, each document enriched with
  its author's profile; reads through the gateway land on both sides of the sticky split, and the
  shadow finds no difference but author_profile; a profile update re-enriches; a delete removes;
  a restart resumes from the stored offsets (nothing applied twice, no duplicates); a deleted
  store is rebuilt from the topics.

The documents-service binary is BUILD/examples/documents-service/documents-service beside
$FICUS_BIN's build (or $DOCUMENTS_SERVICE_BIN).

ScriptServerTest runs script/server itself, as a new user does, on free ports (FICUS_DEMO_PORTS)
with that build (FICUS_BUILD, FICUS_SKIP_BUILD=1): it runs the banner's curl and kcat commands as
printed, loads the printed dashboard URL in headless Chromium (test_dashboard's helpers; screenshot
demo-dashboard.png in the test artifacts), and checks that Ctrl-C stops every process, and that a
process dying on its own stops the others (SIGKILL for one that cannot act on SIGTERM).
"""

import glob
import json
import os
import re
import shutil
import signal
import subprocess
import time

import jwt
import yaml

import fxtest
import test_dashboard  # the module, not its classes: unittest would run those here too
from fxtest import fetch, free_port
from reloadkit import AdminMixin, parse_metrics, wait_until

ISS = "https://id.example.com"
AUD = "just-social"
CONVERGE_S = 30.0  # librdkafka's group join and the ASan build are slow; the view is usually there in ~2 s


def documents_service_bin():
    build = os.path.dirname(os.path.dirname(fxtest.ficus_bin()))
    return os.environ.get("DOCUMENTS_SERVICE_BIN",
                          os.path.join(build, "examples", "documents-service", "documents-service"))


class DocumentsService:
    """`documents-service --listen … --brokers … --store …`, stopped by the test's cleanup."""

    def __init__(self, test, port, brokers, store, name):
        self.test = test
        self.port = port
        self.address = f"127.0.0.1:{self.port}"
        self.proc = fxtest.Proc([documents_service_bin(), "--listen", self.address, "--brokers", brokers,
                                 "--store", store, "--policies", os.path.join(fxtest.REPO, "policies")],
                                test.tmp, name, env=fxtest.SANITIZER_ENV)
        test.addCleanup(self.stop)
        self.proc.wait_ready(self.port, 15)

    def stop(self):
        rc = self.proc.stop(grace=10.0)
        report = fxtest.sanitizer_report(self.proc.stderr())
        if report:
            self.test.fail(f"sanitizer report in {self.proc.name} stderr:\n{report}")
        if rc is not None and rc not in (0, -15) and not self.proc.killed:
            self.test.fail(f"{self.proc.name} exited with {rc}\n{self.proc.describe()}")
        self.test.assertFalse(self.proc.killed, f"{self.proc.name} ignored SIGTERM\n{self.proc.describe()}")
        return rc

    def get(self, target, user="7", roles="editor"):
        """Straight to the service, with the identity headers the gateway would forward."""
        return fetch(self.port, "GET", target, headers=[("X-User-Id", user), ("X-User-Roles", roles)])

    def metrics(self):
        return parse_metrics(fetch(self.port, "GET", "/metrics").body.decode())

    def applied(self, topic):
        return self.metrics().get(f'documents_service_events_applied_total{{topic="{topic}"}}', 0)


class DemoTest(AdminMixin, fxtest.FxTestCase):
    def setUp(self):
        super().setUp()
        self.key, self.pub = self.es256_key()
        self.admin_port = free_port()
        self.mono = self.monolith()

    # --- the demo config, bound to this run ---------------------------------------------------------

    def demo_config(self, documents_port):
        with open(os.path.join(fxtest.REPO, "config", "ficus.yaml")) as f:
            cfg = yaml.safe_load(f)
        cfg["listen"] = [{"address": f"127.0.0.1:{free_port()}"}]  # the HTTPS listener is not under test
        cfg["admin"] = {"address": f"127.0.0.1:{self.admin_port}"}
        cfg["workers"] = 2
        cfg["limits"]["drain_timeout"] = "2s"
        ups = cfg["upstreams"]
        self.assertEqual(ups["monolith"]["targets"], ["127.0.0.1:8000"])
        self.assertEqual(ups["documents"]["targets"], ["127.0.0.1:8101"])
        ups["monolith"]["targets"] = [self.mono.address]
        ups["documents"]["targets"] = [f"127.0.0.1:{documents_port}"]
        (issuer,) = cfg["auth"]["issuers"]
        self.assertEqual((issuer["issuer"], issuer["audiences"]), (ISS, [AUD]))
        issuer["keys"] = [{"kid": "dev-es256", "alg": "ES256", "pem_file": self.pub}]
        self.assertEqual(cfg["policies"]["files"], ["../policies/*.yaml"])
        cfg["policies"]["files"] = [os.path.join(fxtest.REPO, "policies", "*.yaml")]
        self.assertEqual(cfg["events"]["brokers"], "embedded")
        cfg["events"]["spool_dir"] = os.path.join(self.tmp, "spool")
        cfg["log"] = {"access": os.path.join(self.tmp, "access.log"), "decisions": "off", "level": "info"}
        # what the test relies on, said once so a changed demo fails here and not somewhere obscure
        routes = {r["name"]: r for r in cfg["routes"]}
        read = routes["documents-read"]
        self.assertEqual({s["upstream"] for s in read["split"]}, {"documents", "monolith"})
        self.assertTrue(all(s["weight"] > 0 for s in read["split"]), read)
        self.assertEqual((read["sticky"], read["fallback"]), ("token.sub", "monolith"))
        self.assertEqual(routes["documents-list"]["upstream"], "documents")
        return cfg

    def token(self, sub, roles=("editor",)):
        now = int(time.time())
        return jwt.encode({"iss": ISS, "aud": AUD, "iat": now, "exp": now + 900, "sub": sub, "roles": list(roles)},
                          self.key, algorithm="ES256", headers={"kid": "dev-es256"})

    def call(self, method, target, sub="admin", roles=("admin",), body=None):
        headers = [("Authorization", f"Bearer {self.token(sub, roles)}")]
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers.append(("Content-Type", "application/json"))
        return fetch(self.gw.port, method, target, headers=headers, body=data)

    def put(self, kind, id_, obj):
        r = self.call("PUT", f"/api/{kind}/{id_}", body=obj)
        self.assertIn(r.status, (200, 201), repr(r))
        return r.json()

    # --- waiting for the view -----------------------------------------------------------------------

    def wait_ready(self, svc):
        deadline = time.monotonic() + CONVERGE_S
        last = None
        while time.monotonic() < deadline:
            last = fetch(svc.port, "GET", "/healthz")
            if last.status == 200 and last.json().get("status") == "ready":
                return
            time.sleep(0.1)
        self.fail(f"the service did not become ready within {CONVERGE_S}s: {last!r}\n{svc.proc.describe()}")

    def wait_view(self, svc, what, check):
        """Polls the service until check() returns a true value (an assertion failing meanwhile is
        retried); the last failure is reported when the bound passes."""
        deadline = time.monotonic() + CONVERGE_S
        err = None
        while time.monotonic() < deadline:
            try:
                out = check()
                if out:
                    return out
                err = None
            except AssertionError as e:
                err = e
            time.sleep(0.1)
        self.fail(f"the view did not converge within {CONVERGE_S}s: {what}\n{err or ''}\n{svc.proc.describe()}")

    def by_author(self, svc, author):
        r = svc.get(f"/api/documents?author={author}")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.header("x-served-by"), "documents-service")
        return r.json()["items"]

    # --- the test ---------------------------------------------------------------------------------------

    def test_the_migration_demo_end_to_end(self):
        svc_port = free_port()
        self.gw = self.gateway(self.demo_config(svc_port))
        info = self.admin(self.gw, "/admin/events").json()
        brokers = info["bootstrap"]
        self.assertRegex(brokers, r"^127\.0\.0\.1:\d+$")
        store = os.path.join(self.tmp, "view.db")

        svc = DocumentsService(self, svc_port, brokers, store, "documents-service")

        # writes through the gateway: a profile, then two documents by that author (an admin may write
        # anything; the owner rule is policies/documents.yaml's)
        ada = self.put("profiles", "7", {"name": "Ada", "team": "core"})
        self.assertEqual(ada, {"id": "7", "name": "Ada", "team": "core"})
        d70 = self.put("documents", "70", {"title": "Plan", "author": "7", "body": "Extract documents first."})
        d71 = self.put("documents", "71", {"title": "Runbook", "author": "7", "body": "..."})
        d72 = self.put("documents", "72", {"title": "Orphan", "author": "99", "body": "no such profile"})

        # the view converges: each document exactly as the monolith stores it, plus its author's profile
        def enriched(name):
            items = self.by_author(svc, "7")
            self.assertEqual([i["id"] for i in items], ["70", "71"])
            self.assertEqual(items, [dict(d70, author_profile=dict(ada, name=name)),
                                     dict(d71, author_profile=dict(ada, name=name))])
            return items
        self.wait_view(svc, "documents 70 and 71 enriched with profile 7", lambda: enriched("Ada"))
        r = svc.get("/api/documents/72")
        self.assertEqual(r.status, 200, repr(r))
        self.assertEqual(r.json(), dict(d72, author_profile=None))
        self.assertEqual(svc.get("/api/documents/404404").status, 404)
        self.wait_ready(svc)

        # reads through the gateway: the sticky split sends each user to one side, both sides serve
        sides = {}
        for u in range(40):
            seen = set()
            for _ in range(3):
                r = self.call("GET", "/api/documents/70", sub=f"user-{u}", roles=("editor",))
                self.assertEqual(r.status, 200, repr(r))
                body = r.json()
                if r.header("x-served-by") == "documents-service":
                    self.assertEqual(body, dict(d70, author_profile=ada))
                    seen.add("documents")
                else:
                    self.assertEqual(body, d70)
                    seen.add("monolith")
            self.assertEqual(len(seen), 1, f"user-{u} was served by both sides: not sticky")
            sides[u] = seen.pop()
        self.assertEqual(set(sides.values()), {"documents", "monolith"}, "a 50/50 split served from one side only")
        (route,) = [x for x in self.admin(self.gw, "/admin/routes").json()["routes"] if x["name"] == "documents-read"]
        served = {s["upstream"]: s["total"]["requests"] for s in route["sides"] if not s.get("fallback")}
        self.assertEqual(served, {"documents": 3 * list(sides.values()).count("documents"),
                                  "monolith": 3 * list(sides.values()).count("monolith")})
        # the shadow compares every read with the monolith: only author_profile differs, and it is ignored
        deadline = time.monotonic() + 10
        while (route.get("shadow") or {}).get("compared", 0) < 120 and time.monotonic() < deadline:
            time.sleep(0.05)
            (route,) = [x for x in self.admin(self.gw, "/admin/routes").json()["routes"]
                        if x["name"] == "documents-read"]
        self.assertEqual((route["shadow"]["compared"], route["shadow"]["mismatched"]), (120, 0), route["shadow"])
        # the list by author is the service's alone, through the gateway with the user's identity
        r = self.call("GET", "/api/documents?author=7", sub="user-1", roles=("editor",))
        self.assertEqual((r.status, r.header("x-served-by")), (200, "documents-service"), repr(r))
        self.assertEqual([i["id"] for i in r.json()["items"]], ["70", "71"])

        # a profile update re-enriches that author's documents (the stream-table join)
        self.put("profiles", "7", {"name": "Ada Lovelace", "team": "core"})
        self.wait_view(svc, "profile 7 renamed in documents 70 and 71", lambda: enriched("Ada Lovelace"))
        # a delete removes the document from the view
        r = self.call("DELETE", "/api/documents/71")
        self.assertEqual(r.status, 204, repr(r))
        self.wait_view(svc, "document 71 deleted", lambda: svc.get("/api/documents/71").status == 404)
        self.wait_ready(svc)
        view = self.by_author(svc, "7")
        self.assertEqual([i["id"] for i in view], ["70"])
        applied = {t: svc.applied(t) for t in ("profiles", "documents")}
        self.assertEqual(applied, {"profiles": 2, "documents": 4}, svc.metrics())

        # restart: the service resumes from the offsets in its store; nothing is applied again
        svc.stop()
        svc = DocumentsService(self, svc_port, brokers, store, "documents-service-2")
        self.wait_ready(svc)
        self.assertEqual({t: svc.applied(t) for t in ("profiles", "documents")}, {"profiles": 0, "documents": 0},
                         f"events applied again after a restart:\n{svc.metrics()}")
        self.assertEqual(self.by_author(svc, "7"), view)
        self.assertEqual(svc.metrics().get("documents_service_view_documents"), 2)  # 70 and 72
        d73 = self.put("documents", "73", {"title": "After the restart", "author": "7", "body": "new"})
        self.wait_view(svc, "document 73 after the restart",
                       lambda: [i["id"] for i in self.by_author(svc, "7")] == ["70", "73"])
        self.assertEqual(svc.applied("documents"), 1, svc.metrics())
        view = self.by_author(svc, "7")
        self.assertEqual(view[1], dict(d73, author_profile=dict(ada, name="Ada Lovelace")))

        # the store deleted: a full rebuild from the topics, to the same view (71 stays deleted)
        svc.stop()
        for path in glob.glob(store + "*"):
            os.unlink(path)
        svc = DocumentsService(self, svc_port, brokers, store, "documents-service-3")
        self.wait_view(svc, "the rebuilt view", lambda: self.by_author(svc, "7") == view)
        self.wait_ready(svc)
        self.assertEqual({t: svc.applied(t) for t in ("profiles", "documents")}, {"profiles": 2, "documents": 5},
                         svc.metrics())
        self.assertEqual(svc.get("/api/documents/71").status, 404)
        self.assertEqual(svc.metrics().get("documents_service_view_documents"), 3)  # 70, 72, 73
        svc.stop()


# --- script/server itself ---------------------------------------------------------------------------------

SERVER_UP_S = 180.0  # bootstrap check, ficus check, three ASan processes, the backfill and its wait


class ScriptServerTest(fxtest.FxTestCase):
    """`script/server` as a new user runs it, on free ports (FICUS_DEMO_PORTS), with the binaries of
    the build under test (FICUS_BUILD, FICUS_SKIP_BUILD=1): the banner's commands run as printed,
    the printed dashboard URL in headless Chromium (test_dashboard's driver helpers), then Ctrl-C (SIGINT
    to the process group) stops every process it started. And when one of them dies, it says so and
    stops the others, with SIGKILL for one that does not stop on SIGTERM."""

    # the browser helpers of the dashboard test, borrowed as plain functions (importing the class itself
    # would make unittest run its tests a second time from this module)
    browser = test_dashboard.DashboardBrowserTest.browser
    js_errors = test_dashboard.DashboardBrowserTest.js_errors
    screenshot = test_dashboard.DashboardBrowserTest.screenshot
    side_rows = test_dashboard.DashboardBrowserTest.side_rows

    def start_server(self):
        self.ports = {k: free_port() for k in ("http", "https", "admin", "monolith", "service")}
        build = os.path.dirname(os.path.dirname(fxtest.ficus_bin()))
        env = dict(os.environ, **fxtest.SANITIZER_ENV)
        env.update(FICUS_BUILD=build, FICUS_SKIP_BUILD="1", TMPDIR=self.tmp,
                   FICUS_DEMO_PORTS=",".join(f"{k}={v}" for k, v in self.ports.items()))
        env.pop("FICUS_CONFIG", None)
        self.out_path = os.path.join(self.tmp, "server.stdout")
        self.err_path = os.path.join(self.tmp, "server.stderr")
        with open(self.out_path, "wb") as out, open(self.err_path, "wb") as err:
            self.server = subprocess.Popen([os.path.join(fxtest.REPO, "script", "server")], cwd=fxtest.REPO,
                                           env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=err,
                                           start_new_session=True)  # its own process group, as in a terminal
        self.pgid = self.server.pid
        self.addCleanup(self.kill_group)

    def kill_group(self):
        """Whatever the test left running of this one process group (a failed test): SIGKILL."""
        try:
            os.killpg(self.pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            self.server.wait(10)
        except subprocess.TimeoutExpired:
            pass

    def output(self):
        return fxtest.read_text(self.out_path), fxtest.read_text(self.err_path)

    def describe(self):
        out, err = self.output()
        return f"--- script/server stdout\n{fxtest.tail(out, 60)}\n--- stderr\n{fxtest.tail(err, 40)}"

    def wait_banner(self):
        deadline = time.monotonic() + SERVER_UP_S
        while time.monotonic() < deadline:
            out, _ = self.output()
            if "\nCtrl-C stops everything." in out:
                self.assertIn("ficus is running", out)
                return out[out.index("ficus is running"):]
            if self.server.poll() is not None:
                self.fail(f"script/server exited with {self.server.returncode} before its banner\n{self.describe()}")
            time.sleep(0.2)
        self.fail(f"no banner from script/server within {SERVER_UP_S}s\n{self.describe()}")

    def children(self):
        """{comm: pid} of script/server's child processes (from /proc)."""
        kids = {}
        for d in os.listdir("/proc"):
            if not d.isdigit():
                continue
            try:
                with open(f"/proc/{d}/stat") as f:
                    stat = f.read()
            except OSError:
                continue
            comm = stat[stat.index("(") + 1:stat.rindex(")")]
            ppid = int(stat[stat.rindex(")") + 2:].split()[1])
            if ppid == self.server.pid and comm != "sleep":
                kids[comm] = int(d)
        return kids

    def demo_children(self):
        kids = self.children()
        named = {"gateway": kids.get("ficus"), "monolith": kids.get("monolith"),
                 "service": kids.get("documents-servi")}  # comm is cut at 15 characters
        self.assertTrue(all(named.values()), f"not all three processes run under script/server: {kids}")
        return named

    def assert_gone(self, pids):
        for name, pid in pids.items():
            alive = os.path.exists(f"/proc/{pid}")
            if alive:
                with open(f"/proc/{pid}/stat") as f:
                    alive = f.read().split(") ")[1][0] != "Z"
            self.assertFalse(alive, f"the {name} (pid {pid}) still runs after script/server exited\n{self.describe()}")

    def sh(self, command, token):
        r = subprocess.run(["sh", "-c", command], env=dict(os.environ, TOKEN=token), capture_output=True, timeout=30)
        self.assertEqual(r.returncode, 0, f"{command}\n{r.stderr.decode(errors='replace')}")
        return r.stdout.decode()

    @staticmethod
    def http_response(text):
        head, _, body = text.replace("\r\n", "\n").partition("\n\n")
        lines = head.split("\n")
        status = int(lines[0].split()[1])
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in lines[1:])}
        return status, headers, body

    def test_script_server_banner_commands_dashboard_and_ctrl_c(self):
        for p in (test_dashboard.CHROMIUM, test_dashboard.CHROMEDRIVER):
            if not os.path.exists(p):
                self.skipTest(f"the dashboard check needs {p} (script/bootstrap installs it)")
        self.start_server()
        banner = self.wait_banner()
        kids = self.demo_children()
        _, err = self.output()
        self.assertIsNone(fxtest.sanitizer_report(err), err)
        p = self.ports

        token = re.search(r"^  TOKEN=(\S+)$", banner, re.M).group(1)
        commands = re.findall(r"^  (curl .*)$", banner, re.M)
        self.assertEqual(len(commands), 3, banner)
        dashboard = re.search(r"^  dashboard  (\S+)$", banner, re.M).group(1)
        self.assertEqual(dashboard, f"http://127.0.0.1:{p['admin']}/admin/?consumers=http://127.0.0.1:{p['service']}/metrics")
        kcat = re.search(r"^  (kcat .*)$", banner, re.M).group(1)
        config = re.search(r"^  config     (\S+)", banner, re.M).group(1)
        self.assertTrue(config.startswith(self.tmp), config)  # the rendered copy, in TMPDIR
        for c in commands:
            self.assertIn(f"http://127.0.0.1:{p['http']}/", c)

        # 1. a read, from the service's view, with the author's profile joined in
        status, headers, body = self.http_response(self.sh(commands[0], token))
        self.assertEqual((status, headers.get("x-served-by")), (200, "documents-service"), body)
        doc = json.loads(body)
        self.assertEqual(doc["id"], "2")
        self.assertEqual(doc["author_profile"], {"id": "2", "name": "Grace", "team": "compilers"})
        # 2. a write to the monolith (no X-Served-By), which publishes an event
        status, headers, body = self.http_response(self.sh(commands[1], token))
        self.assertEqual(status, 200, body)
        self.assertIsNone(headers.get("x-served-by"))
        self.assertEqual(json.loads(body), {"id": "2", "name": "Grace Hopper", "team": "compilers"})
        # 3. the view re-enriched by that event, within a bounded wait
        deadline = time.monotonic() + CONVERGE_S
        while True:
            items = json.loads(self.sh(commands[2], token))["items"]
            names = {i["author_profile"]["name"] for i in items}
            if names == {"Grace Hopper"} or time.monotonic() > deadline:
                break
            time.sleep(0.2)
        self.assertEqual(names, {"Grace Hopper"}, items)
        self.assertIn("2", [i["id"] for i in items])
        # the event itself, as the banner's kcat command prints it
        if shutil.which("kcat"):
            events = self.sh(kcat, token)
            renamed = [line for line in events.splitlines() if line.startswith("key=2 ") and "Grace Hopper" in line]
            self.assertEqual(len(renamed), 1, events)
            self.assertEqual(json.loads(renamed[0][len("key=2 "):])["type"], "profile.updated")

        # a few reads by user 1, who lands on the monolith's side: both sides have served
        tok1 = subprocess.run([fxtest.ficus_bin(), "token", "--key", "var/dev/jwt-es256.pem", "--alg", "ES256",
                               "--kid", "dev-es256", "--ttl", "10m", "--claims",
                               '{"iss":"https://id.example.com","aud":"just-social","sub":"1","roles":["editor"]}'],
                              cwd=fxtest.REPO, capture_output=True, check=True, text=True).stdout.strip()
        for _ in range(3):
            r = fetch(p["http"], "GET", "/api/documents/1", headers=[("Authorization", f"Bearer {tok1}")])
            self.assertEqual((r.status, r.header("x-served-by")), (200, None), repr(r))

        # the printed dashboard URL: both sides of documents-read with their shares, the service's lag
        driver = self.browser()
        driver.get(dashboard)
        url = f"http://127.0.0.1:{p['service']}/metrics"

        def filled():
            rows = self.side_rows(driver, "documents-read")
            lag = driver.execute_script("""
                return Array.from(document.querySelectorAll('#consumers tr.lag')).map(
                    tr => Array.from(tr.cells).map(td => td.textContent));""")
            ok = set(rows) == {"documents", "monolith"} and all(r.get("share", "").endswith("%")
                                                               for r in rows.values())
            return (rows, lag) if ok and {r[1] for r in lag if r[0] == url} >= {"documents", "profiles"} else None

        got = wait_until(filled, timeout=15, interval=0.2)
        self.assertTrue(got, f"dashboard never filled: {self.side_rows(driver, 'documents-read')}\n"
                             f"{driver.find_element('tag name', 'body').text}")
        rows, lag = got
        self.assertEqual(rows["documents"]["configured"], "50 % (w 50)")
        self.assertEqual(rows["monolith"]["configured"], "50 % (w 50)")
        # one read by Grace on the service, three by user 1 on the monolith
        self.assertEqual((rows["documents"]["total"], rows["monolith"]["total"]), ("1", "3"), rows)
        self.assertAlmostEqual(float(rows["documents"]["share"].rstrip(" %")), 25.0, delta=1.0)
        for row in (r for r in lag if r[0] == url):
            self.assertEqual(row[3:], ["0", "ready"], lag)
        self.screenshot(driver, "demo-dashboard.png")
        self.assertEqual(self.js_errors(driver), [])

        # Ctrl-C: SIGINT to the whole process group, as a terminal sends it
        rundir = os.path.dirname(config)
        self.assertTrue(os.path.isdir(rundir))
        os.killpg(self.pgid, signal.SIGINT)
        try:
            rc = self.server.wait(30)
        except subprocess.TimeoutExpired:
            self.fail(f"script/server still runs 30 s after SIGINT\n{self.describe()}")
        self.assertEqual(rc, 130, self.describe())
        self.assert_gone(kids)
        out, err = self.output()
        self.assertNotIn("SIGKILL", err)
        self.assertNotIn("exited with status", err)
        self.assertIsNone(fxtest.sanitizer_report(out + err), err)
        self.assertFalse(os.path.exists(rundir), "the rendered config and the store were left behind")

    def test_a_child_dying_stops_the_others(self):
        self.start_server()
        self.wait_banner()
        kids = self.demo_children()
        # the service stopped (SIGSTOP: it cannot act on SIGTERM), then the monolith killed
        os.kill(kids["service"], signal.SIGSTOP)
        os.kill(kids["monolith"], signal.SIGKILL)
        try:
            rc = self.server.wait(30)
        except subprocess.TimeoutExpired:
            self.fail(f"script/server still runs 30 s after the monolith died\n{self.describe()}")
        self.assertEqual(rc, 1, self.describe())
        _, err = self.output()
        self.assertIn(f"script/server: the monolith (pid {kids['monolith']}) exited with status 137; "
                      "stopping the others", err)
        self.assertIn(f"the documents-service (pid {kids['service']}) did not stop within 5 s of SIGTERM; "
                      "sending SIGKILL", err)
        self.assertNotIn("the gateway (pid", err)  # it stopped on SIGTERM
        self.assert_gone(kids)
