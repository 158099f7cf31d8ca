"""The status page (issue 5), rendered by headless Chromium (Debian's chromium) against a
running instance, and read the way a person would: is every dependency
healthy, how much traffic and how many refusals in the last minutes, which accounts are at
their limits, which are suspended (and why), and recent alerts. Operator-supplied text is
shown as text, never as markup."""

import html.parser
import os
import shutil
import subprocess
import tempfile
import time
import unittest

from lgtest import Gateway, Redis, Stub, credential, exchange

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
REASON = 'leaked <script>alert("x")</script> & more'

POLICY = {
    "version": "status-1",
    "operations": {"citizen.lookup": {"method": "GET", "path": "/api/v1/citizens/{id}",
                                      "subject": {"path": "id"}}},
    "roles": {"clerk": {"operations": ["citizen.lookup"], "quota": {"per_minute": 3, "per_day": 100}}},
    "units": {"u1": {}, "u2": {}},
    "accounts": [
        {"id": "clerk.a", "unit": "u1", "roles": ["clerk"], "credentials": [credential("lg_s-clerk.a")]},
        {"id": "clerk.b", "unit": "u1", "roles": ["clerk"], "credentials": [credential("lg_s-clerk.b")]},
        {"id": "clerk.c", "unit": "u2", "roles": ["clerk"], "credentials": [credential("lg_s-clerk.c")]},
    ],
}


def lookup(port, account):
    payload = ("GET /api/v1/citizens/079123456789 HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
               "Authorization: Bearer lg_s-%s\r\n\r\n" % account).encode()
    finals, _, _ = exchange(port, payload, timeout=10)
    return finals[0].status


class Page(html.parser.HTMLParser):
    """The rendered DOM: tables by id as rows of (text, class) cells, every element name, the
    meta refresh and the title."""

    def __init__(self, text):
        super().__init__()
        self.tables, self.tags, self.refresh, self.title = {}, [], None, ""
        self._table = self._row = self._cell = None
        self._in_title = False
        self.feed(text)

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        self.tags.append(tag)
        if tag == "meta" and a.get("http-equiv") == "refresh":
            self.refresh = a.get("content")
        elif tag == "title":
            self._in_title = True
        elif tag == "table":
            self._table = self.tables.setdefault(a.get("id"), [])
        elif tag == "tr" and self._table is not None:
            self._row = []
            self._table.append(self._row)
        elif tag in ("td", "th") and self._row is not None:
            self._cell = ["", a.get("class") or ""]
            self._row.append(self._cell)

    def handle_endtag(self, tag):
        if tag == "title":
            self._in_title = False
        elif tag in ("td", "th"):
            self._cell = None
        elif tag == "table":
            self._table = None

    def handle_data(self, data):
        if self._in_title:
            self.title += data
        if self._cell is not None:
            self._cell[0] += data

    def rows(self, table):
        """Data rows of a table: lists of cell texts (the header row left out)."""
        return [[c[0] for c in r] for r in self.tables[table][1:]]


@unittest.skipIf(CHROMIUM is None and not os.environ.get("CI"),
                 "chromium is not installed (./deploy/test.sh installs it)")
class StatusPage(unittest.TestCase):
    def setUp(self):
        self.tmpdir = tempfile.TemporaryDirectory(prefix="lg-status-")
        self.tmp = self.tmpdir.name
        self.redis = Redis(self.tmp)
        self.stub = Stub(self.tmp)
        self.g = Gateway(self.tmp, self.stub.port, policy=POLICY, overrides={
            "store": {"backend": "redis", "address": "127.0.0.1:%d" % self.redis.port,
                      "clock": "proxy"}})

    def tearDown(self):
        try:
            self.g.stop()
        finally:
            self.stub.stop()
            self.redis.stop()
            self.tmpdir.cleanup()

    def render(self, screenshot=None):
        """The page as headless Chromium builds it, logging in the way a browser does: Basic
        authentication with the admin token as the password. (Headless Chromium needs script
        to dump a page, so JavaScript stays on here; the page has none, and its
        Content-Security-Policy forbids any.)"""
        self.assertIsNotNone(CHROMIUM, "chromium is required in CI")
        url = "http://ops:lg_test-admin-token@127.0.0.1:%d/status" % self.g.admin_port
        args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                "--user-data-dir=" + os.path.join(self.tmp, "chromium")]
        if screenshot:
            args += ["--screenshot=" + screenshot, "--window-size=1200,1000"]
        else:
            args += ["--dump-dom"]
        p = subprocess.run(args + [url], capture_output=True, timeout=120, cwd=self.tmp)
        self.assertEqual(p.returncode, 0, p.stderr.decode(errors="replace")[-2000:])
        return p.stdout.decode()

    def test_what_an_operator_looks_for(self):
        self.assertEqual([lookup(self.g.port, "clerk.a") for _ in range(4)], [200, 200, 200, 429])
        self.assertEqual(lookup(self.g.port, "clerk.c"), 200)
        self.assertEqual(lookup(self.g.port, "nobody"), 401)
        self.g.admin_json("/admin/v1/accounts/clerk.b/suspend", "POST", {"reason": REASON})
        time.sleep(1.3)  # the minute totals are sampled every second

        page = Page(self.render())
        self.assertEqual(page.title, "lookupgate status: " + self.g.config["instance"])
        self.assertEqual(page.refresh, "10")
        self.assertNotIn("script", page.tags)  # works without JavaScript; none is sent
        st, h, body = self.g.admin("/status")
        self.assertEqual(st, 200)
        self.assertIn("default-src 'none'", h["content-security-policy"])
        self.assertNotIn(b"<script", body)  # the reason is escaped, not markup

        health = {r[0]: (r[1], r[2]) for r in page.rows("health")}
        self.assertEqual(set(health), {"Quota store (Redis)", "Audit log",
                                       "Upstream (national database)"})
        self.assertTrue(all(state == "OK" for state, _ in health.values()), health)
        self.assertIn("1 of 1 workers connected", health["Quota store (Redis)"][1])

        traffic = page.rows("traffic")
        self.assertIn("(now)", traffic[0][0])
        cols = list(zip(*traffic))
        total = [sum(int(v) for v in col) for col in cols[1:]]
        # requests, allowed, quota, grant, credential, other
        self.assertEqual(total, [6, 4, 1, 0, 1, 0])

        limits = page.tables["limits"][1:]
        self.assertEqual([r[0][0] for r in limits], ["clerk.a", "clerk.c"])
        self.assertEqual(limits[0][2][0], "3 / 3 (100%)")
        self.assertEqual(limits[0][2][1], "bad")  # at its limit: marked
        self.assertEqual(limits[1][2][0], "1 / 3 (33%)")
        self.assertEqual(limits[0][3][0], "3 / 100 (3%)")

        self.assertEqual(page.rows("suspended"), [["clerk.b", "u1", REASON]])
        self.assertEqual(page.rows("alerts"), [["No alerts since start."]])

        shot = os.path.join(self.tmp, "status.png")
        self.render(screenshot=shot)
        with open(shot, "rb") as f:
            png = f.read()
        self.assertTrue(png.startswith(b"\x89PNG"))
        self.assertGreater(len(png), 20000)
        if os.environ.get("LG_KEEP_SCREENSHOT"):
            shutil.copy(shot, os.environ["LG_KEEP_SCREENSHOT"])

        # the status page view is an audit record naming the admin
        recs = self.g.wait_audit(lambda rs: sum(r.get("action") == "status" for r in rs) >= 3)
        views = [r for r in recs if r.get("action") == "status"]
        self.assertEqual([(r["admin"], r["status"]) for r in views], [("ops.tester", 200)] * 3)

    def test_a_failing_dependency_is_shown(self):
        self.redis.stop()
        self.stub.stop()
        page = Page(self.render())
        health = {r[0]: (r[1], r[2]) for r in page.rows("health")}
        self.assertEqual(health["Quota store (Redis)"][0], "FAILING")
        self.assertEqual(health["Upstream (national database)"][0], "FAILING")
        self.assertIn("cannot connect", health["Upstream (national database)"][1])
        self.assertEqual(health["Audit log"][0], "OK")
        self.assertIn("cannot be read", page.rows("limits")[0][0])
        self.assertIn("Unknown", page.rows("suspended")[0][0])
        self.stub = Stub(self.tmp)


if __name__ == "__main__":
    unittest.main()
