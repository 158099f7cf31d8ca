"""Misuse signals (issue 5): repeated quota refusals, lookups outside permitted hours, many
distinct citizens per account, and a burst of 401s from one address each raise one alert — an
ALERT log line, the alert metric, the status page's list and an "alert" audit record — and,
where the policy says so, suspend the account in Redis so that it is refused at once. Bad
signal settings are policy errors."""

import datetime
import json
import re
import tempfile
import time
import unittest
import zoneinfo

from lgtest import Gateway, Redis, Stub, credential, exchange

HCM = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")


def policy(signals):
    return {
        "version": "signals-1",
        "operations": {"citizen.lookup": {"method": "GET", "path": "/api/v1/citizens/{id}",
                                          "subject": {"path": "id"}}},
        "roles": {
            "tight": {"operations": ["citizen.lookup"], "quota": {"per_minute": 1, "per_day": 100}},
            "wide": {"operations": ["citizen.lookup"], "quota": {"per_minute": 100, "per_day": 1000}},
            "office": {"operations": ["citizen.lookup"], "quota": {"per_minute": 100, "per_day": 1000},
                       "hours": [{"days": "Mon-Fri", "from": "07:00", "to": "17:00"}]},
        },
        "units": {"u1": {}},
        "accounts": [
            {"id": "greedy", "unit": "u1", "roles": ["tight"], "credentials": [credential("lg_g-greedy")]},
            {"id": "curious", "unit": "u1", "roles": ["wide"], "credentials": [credential("lg_g-curious")]},
            {"id": "nightowl", "unit": "u1", "roles": ["office"], "credentials": [credential("lg_g-nightowl")]},
        ],
        "signals": signals,
    }


def lookup(port, account, citizen="079123456789", when_ms=None):
    extra = "X-Lookup-Test-Time: %d\r\n" % when_ms if when_ms else ""
    payload = ("GET /api/v1/citizens/%s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n"
               "Authorization: Bearer lg_g-%s\r\n%s\r\n" % (citizen, account, extra)).encode()
    finals, _, _ = exchange(port, payload, timeout=10)
    return finals[0]


def metric(g, name, **labels):
    st, _, body = g.admin("/metrics")
    want = name + "{" + ",".join('%s="%s"' % kv for kv in labels.items()) + "}" if labels else name
    for line in body.decode().splitlines():
        if line.startswith(want + " "):
            return float(line.split()[-1])
    raise AssertionError("no sample " + want)


class Signals(unittest.TestCase):
    def setUp(self):
        self.tmpdir = tempfile.TemporaryDirectory(prefix="lg-signals-")
        self.tmp = self.tmpdir.name
        self.redis = Redis(self.tmp)
        self.stub = Stub(self.tmp)
        self.g = None

    def tearDown(self):
        try:
            if self.g:
                self.g.stop()
        finally:
            self.stub.stop()
            self.redis.stop()
            self.tmpdir.cleanup()

    def gateway(self, signals, clock="proxy"):
        self.g = Gateway(self.tmp, self.stub.port, policy=policy(signals), overrides={
            "store": {"backend": "redis", "address": "127.0.0.1:%d" % self.redis.port,
                      "clock": clock}})
        return self.g

    def alerts(self):
        return [r for r in self.g.audit() if r["type"] == "alert"]

    def test_repeated_quota_refusals_alert_and_suspend(self):
        g = self.gateway({"quota_refusals": {"count": 3, "window_s": 600, "suspend": True}})
        self.assertEqual([lookup(g.port, "greedy").status for _ in range(4)], [200, 429, 429, 429])
        recs = g.wait_audit(lambda rs: any(r["type"] == "account.suspend" for r in rs))
        al = [r for r in recs if r["type"] == "alert"]
        self.assertEqual(len(al), 1)
        self.assertEqual((al[0]["signal"], al[0]["account"], al[0]["count"], al[0]["action"]),
                         ("quota_refusals", "greedy", 3, "suspend"))
        sus = [r for r in recs if r["type"] == "account.suspend"]
        self.assertEqual((sus[0]["by"], sus[0]["account"], sus[0]["result"], sus[0]["admin"]),
                         ("signal:quota_refusals", "greedy", "ok", None))
        self.assertTrue(self.redis.cmd("GET", "lg:{a:greedy}:suspended").startswith("automatic: quota_refusals"))
        r = lookup(g.port, "greedy")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["type"], "urn:lookupgate:problem:account-suspended")
        self.assertEqual(lookup(g.port, "curious").status, 200)  # nobody else
        self.assertRegex(g.log_text().decode(), r"ALERT quota_refusals: account greedy: 3 quota refusals in 600 s")
        self.assertEqual(metric(g, "lookupgate_alerts_total", signal="quota-refusals"), 1)
        self.assertEqual(metric(g, "lookupgate_auto_suspensions_total"), 1)
        st, _, page = g.admin("/status")
        self.assertIn(b"<td>quota-refusals</td><td>greedy</td>", page)
        # an operator resumes it; the alert does not fire again within its window
        g.admin_json("/admin/v1/accounts/greedy/resume", "POST", {"reason": "talked to the office"})
        self.assertEqual(lookup(g.port, "greedy").status, 429)
        self.assertEqual(len(self.alerts()), 1)

    def test_a_burst_of_401s_from_one_address(self):
        g = self.gateway({"auth_failures": {"count": 5, "window_s": 60}})
        for _ in range(7):
            self.assertEqual(lookup(g.port, "nobody").status, 401)
        al = g.wait_audit(lambda rs: any(r["type"] == "alert" for r in rs))
        al = [r for r in al if r["type"] == "alert"]
        self.assertEqual(len(al), 1)  # once per window
        self.assertEqual((al[0]["signal"], al[0]["client"], al[0]["count"], al[0]["action"]),
                         ("auth_failures", "127.0.0.1", 5, "none"))
        self.assertEqual(metric(g, "lookupgate_alerts_total", signal="auth-failures"), 1)
        self.assertEqual(metric(g, "lookupgate_auto_suspensions_total"), 0)

    def test_many_distinct_citizens(self):
        g = self.gateway({"distinct_citizens": {"count": 3, "window_s": 3600}})
        for cit in ["079000000001", "079000000001", "079000000002", "079000000001"]:
            self.assertEqual(lookup(g.port, "curious", cit).status, 200)
        time.sleep(0.3)
        self.assertEqual(self.alerts(), [])  # two distinct so far
        self.assertEqual(lookup(g.port, "curious", "079000000003").status, 200)
        self.assertEqual(lookup(g.port, "curious", "079000000004").status, 200)
        al = g.wait_audit(lambda rs: any(r["type"] == "alert" for r in rs))
        al = [r for r in al if r["type"] == "alert"]
        self.assertEqual(len(al), 1)
        self.assertEqual((al[0]["signal"], al[0]["account"], al[0]["count"]),
                         ("distinct_citizens", "curious", 3))
        self.assertNotIn("07900000000", json.dumps(al))  # no citizen ID in the alert
        self.assertIsNone(self.redis.cmd("GET", "lg:{a:curious}:suspended"))  # no suspend asked

    def test_lookups_outside_permitted_hours(self):
        g = self.gateway({"outside_hours": {"count": 2, "window_s": 3600, "suspend": True}},
                         clock="test")
        sunday = int(datetime.datetime(2026, 11, 22, 22, 0, tzinfo=HCM).timestamp() * 1000)
        monday = int(datetime.datetime(2026, 11, 23, 9, 0, tzinfo=HCM).timestamp() * 1000)
        self.assertEqual(lookup(g.port, "nightowl", when_ms=monday).status, 200)
        r = lookup(g.port, "nightowl", when_ms=sunday)
        self.assertEqual(r.json()["type"], "urn:lookupgate:problem:outside-permitted-hours")
        self.assertEqual(lookup(g.port, "nightowl", when_ms=sunday + 60000).status, 403)
        g.wait_audit(lambda rs: any(r["type"] == "account.suspend" for r in rs))
        self.assertEqual([(r["signal"], r["account"]) for r in self.alerts()],
                         [("outside_hours", "nightowl")])
        r = lookup(g.port, "nightowl", when_ms=monday + 60000)  # in hours, but suspended now
        self.assertEqual(r.json()["type"], "urn:lookupgate:problem:account-suspended")

    def test_bad_signal_settings_are_policy_errors(self):
        g = self.gateway({})
        for bad, msg in [({"nosuch": {"count": 1}}, "unknown signal"),
                         ({"auth_failures": {"count": 3, "suspend": True}}, "cannot suspend"),
                         ({"quota_refusals": {"window_s": 60}}, '"count" is required'),
                         ({"quota_refusals": {"count": 0}}, "quota_refusals.count"),
                         ({"quota_refusals": {"count": 2, "extra": 1}}, "extra")]:
            g.write_policy(policy(bad))
            out = g.admin_json("/admin/v1/reload", "POST", expect=422)
            self.assertTrue(any(msg in e and re.search(r":\d+:\d+:", e) for e in out["errors"]),
                            (bad, out["errors"]))


if __name__ == "__main__":
    unittest.main()
