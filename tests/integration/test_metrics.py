"""/metrics (issue 5): the exposition parses as Prometheus text — checked by promtool when
Debian's prometheus package provides it, and always by the strict parser below — and its
counters match the traffic the test sent: decisions by operation, refusals by kind, responses,
latency histogram counts, Redis decisions and degraded ones, near-limit events, reloads. No
account or citizen appears in it."""

import math
import re
import shutil
import subprocess
import tempfile
import time
import unittest

from lgtest import Gateway, Redis, Stub, credential, exchange

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\\n]|\\["\\n])*)"'
SAMPLE_RE = re.compile(r"^(%s)(?:\{((?:%s)(?:,%s)*)?\})? (\S+)$" % (NAME, LABEL, LABEL))


def parse(text):
    """A strict parser of the text format: every sample belongs to a family declared by HELP
    and TYPE before it, names and labels are well formed, values are numbers, families are not
    split, histograms have cumulative buckets ending in +Inf equal to _count. Returns
    {(name, frozenset(labels)): value} and {family: type}."""
    samples, types, helps, seen_done = {}, {}, set(), set()
    current = None
    assert text.endswith("\n"), "the exposition must end with a newline"
    for line in text.split("\n")[:-1]:
        assert line, "no empty lines"
        if line.startswith("# HELP "):
            name = line.split(" ")[2]
            assert re.fullmatch(NAME, name), line
            assert name not in helps, "HELP twice for " + name
            helps.add(name)
            continue
        if line.startswith("# TYPE "):
            _, _, name, typ = line.split(" ")
            assert typ in ("counter", "gauge", "histogram", "summary", "untyped"), line
            assert name not in types, "TYPE twice for " + name
            assert name in helps, "TYPE before HELP for " + name
            if current:
                seen_done.add(current)
            types[name] = typ
            current = name
            continue
        assert not line.startswith("#"), line
        m = SAMPLE_RE.match(line)
        assert m, "bad sample line: %r" % line
        name, value = m.group(1), m.group(m.lastindex)
        fam = name
        if types.get(current) == "histogram":
            fam = re.sub(r"_(bucket|sum|count)$", "", name)
        assert fam == current, "sample %s outside its family %s" % (name, current)
        labels = frozenset(re.findall(LABEL, m.group(2) or ""))
        v = float(value)  # raises on garbage
        assert not math.isnan(v)
        key = (name, labels)
        assert key not in samples, "duplicate sample " + line
        samples[key] = v
    for fam, typ in types.items():
        if typ == "counter":
            assert fam.endswith("_total"), fam
        if typ != "histogram":
            continue
        buckets = sorted(((float(dict(k[1])["le"]), v) for k, v in samples.items()
                          if k[0] == fam + "_bucket"), key=lambda b: b[0])
        assert buckets and buckets[-1][0] == math.inf, fam
        for (_, a), (_, b) in zip(buckets, buckets[1:]):
            assert a <= b, "buckets of %s are not cumulative" % fam
        assert buckets[-1][1] == samples[(fam + "_count", frozenset())], fam
        assert (fam + "_sum", frozenset()) in samples, fam
    return samples, types


def val(samples, name, **labels):
    return samples.get((name, frozenset(labels.items())), 0.0)


POLICY = {
    "version": "metrics-1",
    "operations": {
        "citizen.lookup": {"method": "GET", "path": "/api/v1/citizens/{id}", "subject": {"path": "id"}},
        "citizen.photo": {"method": "GET", "path": "/api/v1/photos/{id}", "subject": {"path": "id"}},
    },
    "roles": {"clerk": {"operations": ["citizen.lookup"], "quota": {"per_minute": 3, "per_day": 1000}}},
    "units": {"u1": {}},
    "accounts": [{"id": "clerk.a", "unit": "u1", "roles": ["clerk"],
                  "credentials": [credential("lg_m-clerk.a")]}],
}


def req(port, path, token="lg_m-clerk.a", raw=None):
    payload = raw or ("GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAuthorization: Bearer %s\r\n\r\n"
                      % (path, token)).encode()
    finals, _, _ = exchange(port, payload, timeout=10)
    return finals[0].status


class Metrics(unittest.TestCase):
    def setUp(self):
        self.tmpdir = tempfile.TemporaryDirectory(prefix="lg-metrics-")
        self.tmp = self.tmpdir.name
        self.redis = Redis(self.tmp)
        self.stub = Stub(self.tmp)
        self.g = Gateway(self.tmp, self.stub.port, policy=POLICY, overrides={
            "workers": 2,
            "store": {"backend": "redis", "address": "127.0.0.1:%d" % self.redis.port,
                      "clock": "proxy", "on_store_failure": "local"}})

    def tearDown(self):
        try:
            self.g.stop()
        finally:
            self.stub.stop()
            self.redis.stop()
            self.tmpdir.cleanup()

    def scrape(self):
        st, h, body = self.g.admin("/metrics")
        self.assertEqual(st, 200)
        self.assertEqual(h["content-type"], "text/plain; version=0.0.4; charset=utf-8")
        text = body.decode()
        promtool = shutil.which("promtool")
        if promtool:
            p = subprocess.run([promtool, "check", "metrics"], input=body, capture_output=True,
                               timeout=30)
            self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        return text, parse(text)[0]

    def test_counters_match_the_traffic(self):
        statuses = [req(self.g.port, "/api/v1/citizens/079123456789") for _ in range(4)]
        self.assertEqual(statuses, [200, 200, 200, 429])
        self.assertEqual(req(self.g.port, "/api/v1/photos/079123456789"), 403)
        self.assertEqual(req(self.g.port, "/api/v1/photos/079123456789"), 403)
        self.assertEqual(req(self.g.port, "/api/v1/citizens/079123456789", token="lg_m-nobody"), 401)
        self.assertEqual(req(self.g.port, "/unknown/route"), 404)
        self.assertEqual(req(self.g.port, None, raw=b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"), 400)
        time.sleep(1.2)  # pool gauges are sampled every second
        text, s = self.scrape()

        rq = "lookupgate_requests_total"
        self.assertEqual(val(s, rq, operation="citizen.lookup", decision="allowed"), 3)
        self.assertEqual(val(s, rq, operation="citizen.lookup", decision="quota-exceeded"), 1)
        self.assertEqual(val(s, rq, operation="citizen.photo", decision="operation-not-granted"), 2)
        self.assertEqual(val(s, rq, operation="citizen.photo", decision="allowed"), 0)
        self.assertIn((rq, frozenset({("operation", "citizen.photo"), ("decision", "allowed")})), s)
        self.assertEqual(val(s, rq, operation="none", decision="invalid-credential"), 1)
        self.assertEqual(val(s, rq, operation="none", decision="unknown-operation"), 1)
        self.assertEqual(sum(v for k, v in s.items() if k[0] == rq), 8)

        rf = "lookupgate_refusals_total"
        self.assertEqual({dict(k[1])["kind"]: v for k, v in s.items() if k[0] == rf and v},
                         {"quota-exceeded": 1, "operation-not-granted": 2,
                          "invalid-credential": 1, "unknown-operation": 1, "bad-request": 1})
        self.assertEqual(val(s, "lookupgate_responses_total", code="2xx"), 3)
        self.assertEqual(val(s, "lookupgate_responses_total", code="4xx"), 6)
        self.assertEqual(val(s, "lookupgate_request_duration_seconds_count"), 9)
        self.assertEqual(val(s, "lookupgate_upstream_duration_seconds_count"), 3)
        self.assertEqual(val(s, "lookupgate_store_duration_seconds_count"), 4)
        # every response waited for its record: intent + result per lookup, one per refusal
        self.assertEqual(val(s, "lookupgate_audit_durability_seconds_count"), 3 * 2 + 6)
        self.assertEqual(val(s, "lookupgate_store_commands_total"), 4)
        self.assertEqual(val(s, "lookupgate_store_degraded_decisions_total"), 0)
        self.assertEqual(val(s, "lookupgate_store_connections_ready"), 2)
        self.assertEqual(val(s, "lookupgate_workers"), 2)
        # the third lookup brought the account's minute counter (limit 3) to 80 %
        self.assertEqual(val(s, "lookupgate_quota_near_limit_total", level="account", window="minute"), 1)
        self.assertEqual(val(s, "lookupgate_quota_near_limit_total", level="account", window="day"), 0)
        self.assertEqual(val(s, "lookupgate_policy_info", version="metrics-1",
                             digest=[dict(k[1]) for k in s if k[0] == "lookupgate_policy_info"][0]["digest"]), 1)
        self.assertEqual(val(s, "lookupgate_audit_state", state="ok"), 1)
        self.assertEqual(val(s, "lookupgate_audit_state", state="failed"), 0)
        self.assertGreaterEqual(val(s, "lookupgate_audit_records_total"), 12)
        self.assertGreater(val(s, "lookupgate_audit_fsync_seconds_count"), 0)
        self.assertGreaterEqual(val(s, "lookupgate_upstream_connections", state="idle"), 1)
        self.assertEqual(val(s, "lookupgate_connections_open"), 0)
        # nothing per account or per citizen
        self.assertNotIn("clerk.a", text)
        self.assertNotIn("079123456789", text)

        # a reload, a refused one, and a degraded decision while Redis is down
        self.assertTrue(self.g.reload())
        self.assertFalse(self.g.reload("{not json"))
        self.redis.stop()
        self.g.write_policy(POLICY)
        self.assertEqual(req(self.g.port, "/api/v1/citizens/079123456789"), 200)  # local budget
        _, s = self.scrape()
        self.assertEqual(val(s, "lookupgate_policy_reloads_total", result="ok"), 1)
        self.assertEqual(val(s, "lookupgate_policy_reloads_total", result="refused"), 1)
        self.assertEqual(val(s, "lookupgate_store_degraded_decisions_total"), 1)
        self.assertLess(val(s, "lookupgate_store_connections_ready"), 2)

    def test_parser_rejects_bad_expositions(self):
        good = "# HELP a_total x\n# TYPE a_total counter\na_total 1\n"
        parse(good)
        for bad in [good.rstrip("\n"), good + "\n", "a_total 1\n",
                    good + "a_total 2\n", "# HELP a x\n# TYPE a counter\na 1\n",
                    good.replace(" 1\n", " one\n"), good.replace("a_total 1", 'a_total{b="c} 1'),
                    "# HELP h x\n# TYPE h histogram\nh_bucket{le=\"1\"} 2\nh_bucket{le=\"+Inf\"} 1\n"
                    "h_sum 0\nh_count 1\n"]:
            with self.assertRaises((AssertionError, ValueError), msg=bad):
                parse(bad)


if __name__ == "__main__":
    unittest.main()
