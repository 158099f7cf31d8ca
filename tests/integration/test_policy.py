"""The policy layer against the real gateway, a real redis-server and the stub: the decision
table in policy/decide.table (every refusal kind), credential handling (F1-F8), and what
clients see (problem types, WWW-Authenticate, RateLimit, Retry-After, credential expiry).
Decision times come from the test clock (store.clock "test", X-Lookup-Test-Time)."""

import datetime
import json
import os
import shutil
import tempfile
import unittest
import zoneinfo

from lgtest import Gateway, Redis, Stub, exchange, get, upstream_head

HERE = os.path.dirname(os.path.abspath(__file__))
HCM = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")
CITIZEN = "/api/v1/citizens/079123456789"
VERIFY = json.dumps({"so_dinh_danh": "079123456789", "ho_ten": "Nguyen Van A",
                     "ngay_sinh": "1990-01-01"})
MACROS = {"$L": CITIZEN, "$D": "X-Dossier-Id: HS-2026-0001", "$V": VERIFY,
          "$P": "X-Procedure-Code: 1.000123.000.00.00.H56"}


def local_ms(text, zone=HCM):
    """'2026-11-23 09:00[:ss[.fff]]' in zone → UTC milliseconds."""
    fmt = "%Y-%m-%d %H:%M:%S.%f" if "." in text else (
        "%Y-%m-%d %H:%M:%S" if text.count(":") == 2 else "%Y-%m-%d %H:%M")
    dt = datetime.datetime.strptime(text, fmt).replace(tzinfo=zone)
    return int(dt.timestamp() * 1000)


def expand(s):
    for k, v in MACROS.items():
        s = s.replace(k, v)
    return s


def load_table(path):
    rows = []
    with open(path) as f:
        for n, line in enumerate(f, 1):
            if not line.strip() or line.lstrip().startswith("#"):
                continue
            cols = [c.strip() for c in line.rstrip("\n").split("|")]
            if len(cols) != 8:
                raise ValueError("%s:%d: expected 8 columns, got %d" % (path, n, len(cols)))
            rows.append((n, cols))
    return rows


def request(port, who, method, target, when_ms, headers=(), body=b""):
    lines = ["%s %s HTTP/1.1" % (method, target), "Host: client.example", "Connection: close",
             "X-Lookup-Test-Time: %d" % when_ms]
    if who.startswith("raw:"):
        lines.append("Authorization: " + who[4:])
    elif who != "-":
        lines.append("Authorization: Bearer lg_t-" + who)
    lines += list(headers)
    if body or method in ("POST", "PUT", "PATCH", "DELETE"):
        lines.append("Content-Length: %d" % len(body))
    payload = ("\r\n".join(lines) + "\r\n\r\n").encode() + body
    finals, _, _ = exchange(port, payload, head_request=(method == "HEAD"))
    return finals[0] if finals else None


def problem_type(r):
    if r.header("content-type") != "application/problem+json":
        return None
    if not r.body:  # HEAD: no body; the status says enough
        return "head"
    return r.json()["type"].rsplit(":", 1)[1]


class PolicyGateway(unittest.TestCase):
    """A stub, a redis-server and a gateway on the decision-table policy with the test clock."""

    POLICY = os.path.join(HERE, "policy", "decide.policy.json")
    CONFIG = {}

    @classmethod
    def setUpClass(cls):
        cls.tmpdir = tempfile.TemporaryDirectory(prefix="lg-pol-")
        cls.tmp = cls.tmpdir.name
        cls.redis = Redis(cls.tmp)
        cls.stub = Stub(cls.tmp)
        with open(cls.POLICY) as f:
            cls.policy = json.load(f)
        cfg = {"workers": 2, "store": {"backend": "redis", "address": "127.0.0.1:%d" % cls.redis.port,
                                        "clock": "test", "command_timeout_ms": 3000,
                                        "connect_timeout_ms": 3000}}
        cls.gw = Gateway(cls.tmp, cls.stub.port, dict(cfg, **cls.CONFIG), policy=cls.policy)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.stop()
        finally:
            cls.stub.stop()
            cls.redis.stop()
            cls.tmpdir.cleanup()


class Decisions(PolicyGateway):
    def test_decision_table(self):
        self.redis.cmd("SET", "lg:{a:susp}:suspended", "leaked credential (ticket 42)")
        rows = load_table(os.path.join(HERE, "policy", "decide.table"))
        self.assertGreater(len(rows), 60)
        for n, (who, method, target, when, headers, body, status, problem) in rows:
            with self.subTest(line=n):
                now = local_ms(when)
                hdrs = [expand(h).strip() for h in headers.split(";") if h.strip()]
                hdrs = [h for part in hdrs for h in expand(part).split("\n")]
                before_redis = self.redis.state(now)
                before_stub = self.stub.count()
                r = request(self.gw.port, who, method, expand(target), now, hdrs,
                            expand(body).encode())
                self.assertIsNotNone(r, "no response")
                self.assertEqual(r.status, int(status), r.body)
                after_stub = self.stub.count()
                if problem == "-":
                    self.assertEqual(after_stub, before_stub + 1, "not forwarded")
                    continue
                slug, _, violated = problem.partition(":")
                got = problem_type(r)
                self.assertIn(got, (slug, "head"), r.body)
                self.assertEqual(after_stub, before_stub, "a refused request reached the upstream")
                self.assertEqual(self.redis.state(now), before_redis,
                                 "a refused request changed the counters")
                if violated and method != "HEAD":
                    self.assertEqual(r.json()["violated"], violated.split(","))

    def test_wrong_and_unknown_tokens_are_indistinguishable(self):
        now = local_ms("2026-11-30 09:00")
        a = request(self.gw.port, "raw:Bearer lg_t-xulz", "GET", CITIZEN, now)
        b = request(self.gw.port, "raw:Bearer lg_t-nobody-at-all-here", "GET", CITIZEN, now)
        strip = lambda r: ([(n, v) for n, v in r.headers if n != "x-request-id"],
                           dict(r.json(), request_id=None))
        self.assertEqual((a.status, strip(a)), (b.status, strip(b)))
        self.assertIn('error="invalid_token"', a.header("www-authenticate"))

    def test_f7_prefix_matching_tokens_take_no_longer(self):
        """Smoke test: a token sharing all but its last character with a real one is refused in
        the same time as an unrelated one (the lookup is by SHA-256 digest, compared whole)."""
        import statistics
        import time as _t
        now = local_ms("2026-11-30 09:05")
        near, far = [], []
        for i in range(150):
            for token, out in (("lg_t-xulz", near), ("lg_t-q" + "%03d" % i, far)):
                t = _t.perf_counter()
                r = request(self.gw.port, "raw:Bearer " + token, "GET", CITIZEN, now)
                out.append(_t.perf_counter() - t)
                self.assertEqual(r.status, 401)
        ratio = statistics.median(near) / statistics.median(far)
        self.assertGreater(ratio, 0.5)
        self.assertLess(ratio, 2.0)

    def test_f2_malformed_authorization(self):
        now = local_ms("2026-11-30 09:01")
        for value in ("Bearer lg_t-xuly ", "Bearer\tlg_t-xuly", "Bearer lg_t-\u00e9".encode("utf-8").decode("latin-1")):
            r = request(self.gw.port, "raw:" + value, "GET", CITIZEN, now, ["X-Dossier-Id: A"])
            self.assertIn(r.status, (400, 401), value)
        r = request(self.gw.port, "raw:Bearer " + "a" * 600, "GET", CITIZEN, now)
        self.assertEqual((r.status, problem_type(r)), (401, "invalid-credential"))
        r = request(self.gw.port, "raw:Bearer " + "a" * 1024 * 1024, "GET", CITIZEN, now)
        self.assertEqual(r.status, 431)

    def test_f3_two_authorization_fields(self):
        now = local_ms("2026-11-30 09:02")
        r = request(self.gw.port, "xuly", "GET", CITIZEN, now,
                    ["Authorization: Bearer lg_t-xuly", "X-Dossier-Id: A"])
        self.assertEqual(r.status, 400)

    def test_f4_credential_elsewhere_is_not_accepted(self):
        now = local_ms("2026-11-30 09:03")
        n = self.stub.count()
        r = request(self.gw.port, "-", "GET", CITIZEN + "?access_token=lg_t-xuly", now,
                    ["X-Dossier-Id: A"])
        self.assertEqual((r.status, problem_type(r)), (401, "credential-required"))
        r = request(self.gw.port, "-", "POST", "/api/v1/citizens/verify", now,
                    ["X-Dossier-Id: A", "Transfer-Encoding: chunked"][:1],
                    b'{"authorization":"Bearer lg_t-xuly"}')
        self.assertEqual(r.status, 401)
        payload = (b"POST /api/v1/citizens/verify HTTP/1.1\r\nHost: a\r\nX-Dossier-Id: A\r\n"
                   b"X-Lookup-Test-Time: %d\r\nTransfer-Encoding: chunked\r\n\r\n"
                   b"2\r\n{}\r\n0\r\nAuthorization: Bearer lg_t-xuly\r\n\r\n" % now)
        finals, _, _ = exchange(self.gw.port, payload)
        self.assertEqual(finals[0].status, 401)
        self.assertEqual(self.stub.count(), n)

    def test_allowed_response_headers_and_forwarded_identity(self):
        now = local_ms("2026-11-30 10:00")
        r = request(self.gw.port, "xuly", "GET", CITIZEN, now,
                    ["X-Dossier-Id: HS-9", "X-Lookup-Account: admin", "X-Account-Id: 1"])
        self.assertEqual(r.status, 200)
        self.assertIn('"account-per-minute";q=100;w=60', r.header("ratelimit-policy"))
        self.assertIn('"account-per-day";q=1000;w=86400', r.header("ratelimit-policy"))
        self.assertRegex(r.header("ratelimit"), r'"account-per-minute";r=\d+;t=\d+')
        self.assertIsNone(r.header("x-credential-expires"))  # 60 days left
        _, fields, _ = upstream_head(self.stub.received()[-1]["raw"])
        lower = [(k.lower(), v) for k, v in fields]
        self.assertEqual([v for k, v in lower if k == "x-lookup-account"], ["xuly"])
        self.assertEqual([v for k, v in lower if k == "x-lookup-unit"], ["mot-cua"])
        self.assertNotIn("authorization", [k for k, _ in lower])
        self.assertNotIn("x-lookup-test-time", [k for k, _ in lower])
        self.assertNotIn("x-account-id", [k for k, _ in lower])
        # Within 14 days of expiry (2027-01-29) the response says so.
        r = request(self.gw.port, "xuly", "GET", CITIZEN, local_ms("2027-01-20 10:00"),
                    ["X-Dossier-Id: HS-9"])
        self.assertEqual(r.status, 200)
        self.assertEqual(r.header("x-credential-expires"), "2027-01-28T17:00:00Z")

    def test_429_explains_itself(self):
        t0 = local_ms("2026-12-01 10:00")
        self.assertEqual(request(self.gw.port, "tight", "GET", CITIZEN, t0,
                                 ["X-Dossier-Id: A"]).status, 200)
        r = request(self.gw.port, "tight", "GET", CITIZEN, t0 + 15000, ["X-Dossier-Id: A"])
        self.assertEqual(r.status, 429)
        self.assertEqual(r.header("retry-after"), "45")  # the admitted one leaves the window
        body = r.json()
        self.assertEqual(body["violated"], ["account-per-minute"])
        self.assertEqual(body["retry_after"], 45)
        self.assertIn('"account-per-minute";r=0;t=45', r.header("ratelimit"))
        self.assertIn('"account-per-minute";q=1;w=60', r.header("ratelimit-policy"))

    def test_expect_continue_with_bad_credential_is_refused_before_the_body(self):
        now = local_ms("2026-11-30 11:00")
        payload = (b"POST /api/v1/citizens/verify HTTP/1.1\r\nHost: a\r\n"
                   b"Authorization: Bearer lg_t-wrong\r\nX-Lookup-Test-Time: %d\r\n"
                   b"Expect: 100-continue\r\nContent-Length: 100\r\n\r\n" % now)
        finals, interim, closed = exchange(self.gw.port, payload)
        self.assertEqual(finals[0].status, 401)
        self.assertEqual(interim, [])
        self.assertTrue(closed)

    def test_keys_carry_the_account_tag_and_expire(self):
        now = local_ms("2026-11-30 12:00")
        self.assertEqual(request(self.gw.port, "keys", "POST", "/api/v1/citizens/verify", now,
                                 ["X-Dossier-Id: A"], VERIFY.encode()).status, 200)
        keys = self.redis.cmd("KEYS", "lg:{a:keys}:*")
        self.assertIn("lg:{a:keys}:m", keys)
        self.assertIn("lg:{a:keys}:m:citizen.verify", keys)
        self.assertIn("lg:{a:keys}:d", keys)
        for k in self.redis.cmd("KEYS", "*"):
            if not k.endswith(":suspended"):
                self.assertGreater(self.redis.cmd("PTTL", k), 0, k)  # E9: no key without TTL
        day = self.redis.cmd("HGETALL", "lg:{a:keys}:d")
        self.assertEqual(dict(zip(day[::2], day[1::2]))["id"], "20261130")


if __name__ == "__main__":
    unittest.main()
