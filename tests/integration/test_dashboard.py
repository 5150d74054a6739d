"""GET /admin/ — the strangler-fig dashboard (gateway/dashboard.html, embedded at build time and
served by admin.c) — through a real gateway process.

DashboardHttpTest reads the page over plain HTTP: the bytes of gateway/dashboard.html, its security
headers (the Content-Security-Policy must allow exactly the page's inline script and style, by
hash), the /admin redirect.

DashboardBrowserTest loads the page in a headless Chromium (python3-selenium, chromium-driver),
started and stopped per test, against a gateway with a split + fallback + shadow route, change
events on the embedded broker, some traffic, and two consumer URLs in ?consumers= (one serving
documents_service_consumer_lag with a label that looks like markup, one refusing connections). It
waits until the routes table shows the live figures, checks them against /admin/routes, and fails
on any JavaScript error: SEVERE browser-log entries (uncaught exceptions, CSP violations, failed
loads) and errors caught by window.onerror / unhandledrejection. The one expected SEVERE entry is
the refused connection to the unreachable consumer. A screenshot of each page is saved as a test
artifact in $FICUS_TEST_ARTIFACTS (default: BUILD/test-artifacts/)."""

import base64
import hashlib
import json
import os
import re
import shutil
import tempfile
import time

import fxtest
from fxtest import fetch, free_port
from reloadkit import wait_until

HERE = os.path.dirname(os.path.abspath(__file__))
PAGE = os.path.join(HERE, "..", "..", "gateway", "dashboard.html")
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
# A consumer's label value that would become an element if the page inserted it as markup.
EVIL_TOPIC = "<img src=x id=fxinjected onerror=alert(1)>"


def artifacts_dir():
    """$FICUS_TEST_ARTIFACTS, or test-artifacts/ in the build directory (run.py sets FICUS_BIN to
    BUILD/gateway/ficus)."""
    d = os.environ.get("FICUS_TEST_ARTIFACTS")
    if not d:
        d = os.path.join(os.path.dirname(os.path.dirname(fxtest.ficus_bin())), "test-artifacts")
    os.makedirs(d, exist_ok=True)
    return d


def csp_hash(text):
    return "'sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode() + "'"


class ConsumerMetrics(fxtest.AnsweringUpstream):
    """A documents-service stand-in: GET /metrics answers Prometheus text with consumer lag, and
    Access-Control-Allow-Origin: * (the dashboard reads it cross-origin)."""

    BODY = ("# HELP documents_service_consumer_lag Messages behind.\n"
            "# TYPE documents_service_consumer_lag gauge\n"
            'documents_service_consumer_lag{topic="documents",partition="0"} 7\n'
            'documents_service_consumer_lag{topic="profiles",partition="0"} 0\n'
            'documents_service_consumer_lag{topic="' + EVIL_TOPIC + '",partition="1"} 2\n'
            "# TYPE documents_service_ready gauge\n"
            "documents_service_ready 0\n").encode()

    def __init__(self, test):
        self.hits = 0
        super().__init__(test)

    def answer(self, req):
        with self.lock:
            self.hits += 1
        ok = req["target"] == "/metrics"
        return (200 if ok else 404, [("Content-Type", "text/plain; version=0.0.4"),
                                     ("Access-Control-Allow-Origin", "*")], self.BODY if ok else b"not found\n")


class DashboardBase(fxtest.FxTestCase):
    def full_config(self, admin_port):
        """docs: split documents 30 / monolith 70, fallback monolith, every request shadowed; writes:
        monolith only, with change events (embedded broker)."""
        self.documents = self.recording(name="documents")
        self.mono = self.recording(name="monolith")
        self.shadow = self.recording(name="documents-v2")
        return {"workers": 2, "admin": {"address": f"127.0.0.1:{admin_port}"},
                "upstreams": {"documents": {"targets": [self.documents.address]},
                              "monolith": {"targets": [self.mono.address]},
                              "docs-shadow": {"targets": [self.shadow.address]}},
                "routes": [{"name": "docs", "match": {"prefix": "/api/documents/"}, "auth": "none",
                            "split": [{"upstream": "documents", "weight": 30}, {"upstream": "monolith", "weight": 70}],
                            "fallback": "monolith", "shadow": {"upstream": "docs-shadow", "percent": 100}},
                           {"name": "writes", "match": {"path": "/api/w/{id}"}, "upstream": "monolith", "auth": "none",
                            "events": {"topic": "documents", "type": "document.updated", "key": "{id}"}}],
                "events": {"brokers": "embedded", "spool_dir": os.path.join(self.tmp, "spool")},
                "log": {"access": "off"}}

    def plain_config(self, admin_port):
        """One route, one upstream: no split, fallback, shadow or events."""
        self.only = self.recording(name="only")
        return {"workers": 1, "admin": {"address": f"127.0.0.1:{admin_port}"},
                "upstreams": {"only": {"targets": [self.only.address]}},
                "routes": [{"name": "all", "match": {"prefix": "/"}, "upstream": "only", "auth": "none"}],
                "log": {"access": "off"}}


class DashboardHttpTest(DashboardBase):
    def test_page_and_security_headers(self):
        gw = self.gateway(self.plain_config(free_port()))
        r = fetch(gw.admin_port, "GET", "/admin/")
        self.assertEqual(r.status, 200, r)
        with open(PAGE, "rb") as f:
            self.assertEqual(r.body, f.read(), "GET /admin/ is not gateway/dashboard.html as built")
        self.assertEqual(r.header("content-type"), "text/html; charset=utf-8")
        self.assertEqual(r.header("cache-control"), "no-store")
        self.assertEqual(r.header("x-content-type-options"), "nosniff")
        self.assertEqual(r.header("referrer-policy"), "no-referrer")
        csp = dict((d.strip().split(" ", 1) + [""])[:2] for d in r.header("content-security-policy").split(";"))
        self.assertEqual(csp["default-src"], "'none'")
        self.assertEqual(csp["connect-src"], "'self' http: https:")
        self.assertEqual(csp["frame-ancestors"], "'none'")
        self.assertEqual(csp["base-uri"], "'none'")
        # only the page's own inline blocks may run / style it: their hashes, no 'unsafe-inline'
        text = r.body.decode()
        script = re.search(r"<script>(.*?)</script>", text, re.S).group(1)
        style = re.search(r"<style>(.*?)</style>", text, re.S).group(1)
        self.assertEqual(csp["script-src"], csp_hash(script))
        self.assertEqual(csp["style-src"], csp_hash(style))
        self.assertNotIn("unsafe", r.header("content-security-policy"))
        # the page sets no markup from data
        self.assertNotIn("innerHTML", script)
        self.assertNotIn("insertAdjacentHTML", script)

    def test_redirect_and_methods(self):
        gw = self.gateway(self.plain_config(free_port()))
        r = fetch(gw.admin_port, "GET", "/admin?consumers=http://127.0.0.1:8101/metrics")
        self.assertEqual(r.status, 301, r)
        self.assertEqual(r.header("location"), "/admin/?consumers=http://127.0.0.1:8101/metrics")
        r = fetch(gw.admin_port, "GET", "/admin")
        self.assertEqual((r.status, r.header("location")), (301, "/admin/"))
        r = fetch(gw.admin_port, "POST", "/admin/", body=b"")
        self.assertEqual(r.status, 405, r)
        r = fetch(gw.admin_port, "GET", "/admin/?consumers=x")  # the query is the page's business
        self.assertEqual(r.status, 200, r)
        self.assertEqual(fetch(gw.admin_port, "GET", "/admin/nope").status, 404)


class DashboardBrowserTest(DashboardBase):
    def setUp(self):
        super().setUp()
        missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not os.path.exists(p)]
        try:
            import selenium  # noqa: F401  (python3-selenium)
        except ImportError:
            missing.append("python3-selenium")
        if missing:
            self.skipTest(f"browser test needs {', '.join(missing)} (script/bootstrap installs them)")

    def browser(self):
        """A headless Chromium for this test only, stopped by cleanup; its profile in a temp dir."""
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
        profile = tempfile.mkdtemp(prefix="fx-chromium-", dir=self.tmp)
        opts = webdriver.ChromeOptions()
        opts.binary_location = CHROMIUM
        for a in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                  "--no-first-run", "--disable-extensions", "--disable-background-networking",
                  f"--user-data-dir={profile}", "--window-size=1400,1400"):
            opts.add_argument(a)
        opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(CHROMEDRIVER, log_path=os.path.join(self.tmp, "chromedriver.log"))
        driver = webdriver.Chrome(service=service, options=opts)
        self.addCleanup(shutil.rmtree, profile, True)
        self.addCleanup(driver.quit)
        driver.set_page_load_timeout(10)
        # before any page script: keep what window.onerror, unhandled rejections and CSP report
        driver.execute_cdp_cmd("Page.addScriptToEvaluateOnNewDocument", {"source": """
            window.__fxErrors = [];
            window.addEventListener('error', function (e) { window.__fxErrors.push('error: ' + e.message); });
            window.addEventListener('unhandledrejection', function (e) {
                window.__fxErrors.push('unhandled rejection: ' + String(e.reason)); });
            document.addEventListener('securitypolicyviolation', function (e) {
                window.__fxErrors.push('CSP: ' + e.violatedDirective + ' ' + e.blockedURI); });
        """})
        return driver

    def js_errors(self, driver, expected=()):
        """Page errors and SEVERE log entries, except those mentioning one of `expected`."""
        errs = list(driver.execute_script("return window.__fxErrors || ['page hook missing'];"))
        for e in driver.get_log("browser"):
            if e.get("level") == "SEVERE" and not any(x in e.get("message", "") for x in expected):
                errs.append(f"{e.get('source')}: {e.get('message')}")
        return errs

    def screenshot(self, driver, name):
        path = os.path.join(artifacts_dir(), name)
        driver.save_screenshot(path)
        with open(path, "rb") as f:
            data = f.read()
        self.assertGreater(len(data), 1000, f"screenshot {path} is empty")
        self.assertEqual(data[:8], b"\x89PNG\r\n\x1a\n", path)
        return path

    def side_rows(self, driver, route):
        """{upstream: {column class: text}} of the route's side rows, read in one script."""
        return driver.execute_script("""
            const out = {};
            for (const tr of document.querySelectorAll('#routes tr.side')) {
                if (tr.dataset.route !== arguments[0]) continue;
                const row = {};
                for (const td of tr.cells)
                    for (const c of td.classList)
                        if (c.startsWith('c-')) row[c.slice(2)] = td.textContent.trim();
                out[tr.dataset.upstream] = row;
            }
            return out;""", route)

    def test_live_split_shadow_events_consumers(self):
        admin_port = free_port()
        gw = self.gateway(self.full_config(admin_port))
        consumer = ConsumerMetrics(self)
        dead = free_port()  # nothing listens there
        for i in range(60):
            self.assertEqual(fetch(gw.port, "GET", f"/api/documents/{i}", headers=[("X-Seq", str(i))]).status, 200)
        for i in range(3):
            self.assertEqual(fetch(gw.port, "PUT", f"/api/w/{i}", body=b"{}").status, 200)
        truth = json.loads(fetch(admin_port, "GET", "/admin/routes").body)
        docs = next(r for r in truth["routes"] if r["name"] == "docs")
        served = {s["upstream"]: s["last_minute"]["requests"] for s in docs["sides"] if not s.get("fallback")}
        self.assertEqual(sum(served.values()), 60, truth)

        driver = self.browser()
        url = (f"http://127.0.0.1:{admin_port}/admin?consumers=http://127.0.0.1:{consumer.port}/metrics,"
               f"http://127.0.0.1:{dead}/metrics")
        t0 = time.monotonic()
        driver.get(url)  # through the redirect
        self.assertTrue(driver.current_url.startswith(f"http://127.0.0.1:{admin_port}/admin/?consumers="),
                        driver.current_url)

        def filled():
            rows = self.side_rows(driver, "docs")
            ok = set(rows) == {"documents", "monolith"} and all(
                re.fullmatch(r"[0-9.]+", r.get("rate", "")) and float(r["rate"]) > 0 for r in rows.values())
            lags = driver.execute_script(
                "return document.querySelectorAll('#consumers tr.lag, #consumers tr.unknown').length;")
            return rows if ok and lags == 4 else None

        rows = wait_until(filled, timeout=10, interval=0.2)
        expected = [f"127.0.0.1:{dead}/"]  # the refused connection to the dead consumer
        self.assertEqual(self.js_errors(driver, expected), [])
        self.assertTrue(rows, f"routes table never filled: {self.side_rows(driver, 'docs')}")
        status = driver.find_element("id", "status").text
        self.assertTrue(status.startswith("live · updated"), status)
        self.assertEqual(rows["documents"]["role"], "split")
        self.assertEqual(rows["monolith"]["role"], "split + fallback")
        self.assertEqual(rows["documents"]["configured"], "30 % (w 30)")
        self.assertEqual(rows["monolith"]["configured"], "70 % (w 70)")
        for up, n in served.items():
            shown = float(rows[up]["share"].rstrip(" %"))
            self.assertAlmostEqual(shown, 100.0 * n / 60, delta=1.0, msg=f"{up}: {rows[up]} vs {n} of 60")
            self.assertEqual(rows[up]["total"], str(n))
        self.assertEqual(self.side_rows(driver, "writes")["monolith"]["total"], "3")

        text = driver.find_element("tag name", "body").text
        self.assertIn("shadow → docs-shadow (100 %)", text)
        self.assertIn("fallbacks: 0", text)
        # legacy = the fallback (monolith): the migrated share is documents' part of all 63 requests
        self.assertEqual(driver.find_element("id", "legacy-names").text, "monolith")
        migrated = float(driver.find_element("id", "migrated-total").text.rstrip(" %"))
        self.assertAlmostEqual(migrated, 100.0 * served["documents"] / 63, delta=1.0)
        # events: configured, the topic of the writes route with its published count (async: wait)
        wait_until(lambda: "documents" in driver.find_element("id", "events").text and
                   "published 3" in driver.find_element("id", "events-summary").text, timeout=8, interval=0.2)
        self.assertIn("published 3", driver.find_element("id", "events-summary").text)
        self.assertIn("brokers embedded", driver.find_element("id", "events-summary").text)
        # consumers: the lag, the markup-looking label as text, the dead URL as unknown
        lag = driver.execute_script("""
            return Array.from(document.querySelectorAll('#consumers tr')).map(
                tr => Array.from(tr.cells).map(td => td.textContent));""")
        good = f"http://127.0.0.1:{consumer.port}/metrics"
        self.assertIn([good, "documents", "0", "7", "catching up"], lag)
        self.assertIn([good, "profiles", "0", "0", "catching up"], lag)
        self.assertIn([good, EVIL_TOPIC, "1", "2", "catching up"], lag)
        self.assertEqual(driver.execute_script("return document.querySelectorAll('img, #fxinjected').length;"), 0)
        dead_row = [r for r in lag if r and r[0] == f"http://127.0.0.1:{dead}/metrics"]
        self.assertEqual(len(dead_row), 1, lag)
        self.assertEqual(dead_row[0][3], "unknown")
        self.assertTrue(dead_row[0][4].startswith("unknown: unreachable"), dead_row)
        # it keeps refreshing: the count of refreshes grows
        n = int(driver.find_element("tag name", "body").get_attribute("data-refreshes"))
        self.assertTrue(wait_until(lambda: int(driver.find_element("tag name", "body")
                                               .get_attribute("data-refreshes")) > n, timeout=5, interval=0.2))
        self.assertGreater(consumer.hits, 1)
        self.screenshot(driver, "dashboard-split-shadow-events.png")
        self.assertEqual(self.js_errors(driver, expected), [])  # since the first look
        self.assertLess(time.monotonic() - t0, 25)

    def test_plain_config_without_events_split_or_shadow(self):
        admin_port = free_port()
        gw = self.gateway(self.plain_config(admin_port))
        for i in range(5):
            self.assertEqual(fetch(gw.port, "GET", f"/x/{i}").status, 200)
        driver = self.browser()
        driver.get(f"http://127.0.0.1:{admin_port}/admin/")
        rows = wait_until(lambda: self.side_rows(driver, "all").get("only", {}).get("total") == "5" and
                          self.side_rows(driver, "all"), timeout=10, interval=0.2)
        # nothing failed, not even a 404 (the page asks for /admin/events only when /metrics shows events)
        self.assertEqual(self.js_errors(driver), [])
        self.assertTrue(rows, f"routes table never filled: {self.side_rows(driver, 'all')}")
        self.assertEqual((rows["only"]["role"], rows["only"]["configured"], rows["only"]["share"]),
                         ("primary", "100 %", "100 %"))
        self.assertGreater(float(rows["only"]["rate"]), 0)
        self.assertIn("not configured", driver.find_element("id", "events-summary").text)
        self.assertIn("none given", driver.find_element("id", "consumers-summary").text)
        # no fallback and no upstream named monolith: the share is unknown, not a made-up number
        self.assertEqual(driver.find_element("id", "migrated-minute").text, "—")
        self.assertIn("unknown", driver.find_element("id", "legacy-names").text)
        status = driver.find_element("id", "status").text
        self.assertTrue(status.startswith("live · updated"), status)
        self.screenshot(driver, "dashboard-plain.png")
        self.assertEqual(self.js_errors(driver), [])
