"""Quota exactness against a real redis-server (issue 3 acceptance, E11, E12): concurrency,
two gateways sharing one Redis, the rolling 60 s window checked against a model, local days in
Asia/Ho_Chi_Minh and across DST in America/New_York, reload keeping counts, and the in-memory
backend. Decision times come from the test clock where a test needs a particular time."""

import copy
import datetime
import random
import threading
import unittest
import zoneinfo

from lgtest import REDIS_MODULE, Gateway, RedisCase, credential, exchange

CITIZEN = "/api/v1/citizens/079123456789"
NY = zoneinfo.ZoneInfo("America/New_York")
HCM = zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")


def policy(accounts):
    """accounts: {id: (per_minute, per_day)}; token of account x is lg_q-x."""
    return {
        "operations": {"citizen.lookup": {"method": "GET", "path": "/api/v1/citizens/{id}",
                                          "subject": {"path": "id"}}},
        "roles": {"r%d_%d" % q: {"operations": ["citizen.lookup"],
                                 "quota": {"per_minute": q[0], "per_day": q[1]}}
                  for q in set(accounts.values())},
        "units": {"u": {}},
        "accounts": [{"id": a, "unit": "u", "roles": ["r%d_%d" % q],
                      "credentials": [credential("lg_q-" + a, issued="2026-01-01", expires="2026-03-31")
                                      if a.startswith("dst") else credential("lg_q-" + a)]}
                     for a, q in accounts.items()],
    }


def lookup(port, account, when_ms=None):
    extra = "X-Lookup-Test-Time: %d\r\n" % when_ms if when_ms is not None else ""
    payload = ("GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAuthorization: Bearer lg_q-%s\r\n%s\r\n"
               % (CITIZEN, account, extra)).encode()
    finals, _, _ = exchange(port, payload, timeout=10)
    return finals[0] if finals else None


def ms(y, mo, d, h=0, mi=0, s=0, milli=0, zone=HCM, fold=0):
    dt = datetime.datetime(y, mo, d, h, mi, s, milli * 1000, tzinfo=zone, fold=fold)
    return int(dt.timestamp() * 1000)


def parallel(n, fn):
    out = [None] * n
    go = threading.Barrier(n)

    def run(i):
        go.wait()
        out[i] = fn(i)
    ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in ts:
        t.start()
    for t in ts:
        t.join(60)
    return out


class Quota(RedisCase):
    PREFIX = "lg-quota-"

    def gateway(self, pol, clock="redis", zone=None, store=None, **cfg):
        # generous timeouts: these tests are about counting, not about a slow store
        c = {"workers": 2, "store": dict({"backend": "redis", "command_timeout_ms": 3000,
                                         "connect_timeout_ms": 3000,
                                         "address": "127.0.0.1:%d" % self.redis.port,
                                         "clock": clock}, **(store or {}))}
        if zone:
            c["time_zone"] = zone
        c.update(cfg)
        g = Gateway(self.tmp, self.stub.port, c, policy=pol)
        self.gws.append(g)
        return g

    def test_e11_hundred_concurrent_with_ten_left(self):
        gw = self.gateway(policy({"busy": (1000, 15)}))
        for _ in range(5):
            self.assertEqual(lookup(gw.port, "busy").status, 200)
        before = self.stub.count()
        res = parallel(100, lambda i: lookup(gw.port, "busy").status)
        self.assertEqual(res.count(200), 10, res)
        self.assertEqual(res.count(429), 90, res)
        self.assertEqual(self.stub.count() - before, 10)
        day = self.redis.cmd("HGETALL", "lg:{a:busy}:d")
        self.assertEqual(dict(zip(day[::2], day[1::2]))["n"], "15")

    def test_two_gateways_share_one_redis(self):
        pol = policy({"shared": (1000, 20)})
        a, b = self.gateway(pol), self.gateway(pol)
        res = parallel(60, lambda i: lookup((a if i % 2 else b).port, "shared").status)
        self.assertEqual(res.count(200), 20, res)
        self.assertEqual(res.count(429), 40)
        self.assertEqual(self.stub.count(), 20)
        # and per minute, both together: never more than the limit
        pol = policy({"shared": (1000, 20), "minute": (7, 1000)})
        a.reload(pol)
        b.reload(pol)
        res = parallel(40, lambda i: lookup((a if i % 2 else b).port, "minute").status)
        self.assertEqual(res.count(200), 7, res)

    def rolling_window(self, gw, account, limit, t0):
        rnd = random.Random(7)
        t, admitted, model = t0, [], []
        for _ in range(150):
            t += rnd.choice([0, 1, 500, 2000, 5000, 9999, 10000, 15000, 30000])
            expect = sum(1 for a in model if a > t - 60000) < limit
            r = lookup(gw.port, account, t)
            self.assertEqual(r.status, 200 if expect else 429, "at +%d ms" % (t - t0))
            if r.status == 200:
                admitted.append(t)
                model.append(t)
            else:
                # Retry-After is when the window frees a place, rounded up
                oldest = sorted(a for a in model if a > t - 60000)[-limit]
                self.assertEqual(int(r.header("retry-after")), -(-(oldest + 60000 - t) // 1000))
        for i, a in enumerate(admitted):  # never more than limit in any 60 s
            self.assertLessEqual(sum(1 for b in admitted[i:] if b < a + 60000), limit)
        self.assertGreater(len(admitted), limit * 3)

    def test_rolling_minute_never_exceeds_the_limit(self):
        gw = self.gateway(policy({"roll": (5, 100000)}), clock="test")
        self.rolling_window(gw, "roll", 5, ms(2026, 12, 3, 9))

    def test_window_members_carry_their_time_and_older_members_still_count(self):
        # The script reads the oldest entry's time from its member name ("<ms>:<id>"); entries
        # an earlier release wrote (request ids, no such prefix) are read with ZSCORE and still
        # count, and so is a member whose leading digits are not a time in the window.
        t0 = ms(2026, 12, 3, 9)
        self.redis.cmd("ZADD", "lg:{a:old}:m", str(t0 - 50000), "gw1-0-17",
                       str(t0 - 40000), "7:gw-0-18")
        self.redis.cmd("PEXPIRE", "lg:{a:old}:m", "61000")
        gw = self.gateway(policy({"old": (3, 100000)}), clock="test")
        r = lookup(gw.port, "old", t0)
        self.assertEqual(r.status, 200)
        self.assertIn('"account-per-minute";r=0;t=10', r.header("ratelimit"))
        r = lookup(gw.port, "old", t0 + 1)
        self.assertEqual((r.status, r.header("retry-after")), (429, "10"))
        members = self.redis.cmd("ZRANGE", "lg:{a:old}:m", "0", "-1", "WITHSCORES")
        self.assertEqual(members[:4], ["gw1-0-17", str(t0 - 50000), "7:gw-0-18", str(t0 - 40000)])
        self.assertRegex(members[4], r"^%d:\S+$" % t0)
        self.assertEqual(members[5], str(t0))
        # the first old entry has left; the oldest is now "7:...", whose time is its score
        r = lookup(gw.port, "old", t0 + 10000)
        self.assertEqual(r.status, 200)
        self.assertIn('"account-per-minute";r=0;t=10', r.header("ratelimit"))
        # past the old entries, the prefixed one decides: it leaves at t0 + 60 s
        r = lookup(gw.port, "old", t0 + 45000)
        self.assertEqual(r.status, 200)
        self.assertIn('"account-per-minute";r=0;t=15', r.header("ratelimit"))

    def test_last_use_is_kept_to_the_minute(self):
        # The script rewrites an account's last use only when it is a minute old (or ahead of
        # now, or not a time): one write a minute per active account, not one per lookup.
        t0 = ms(2026, 12, 3, 9)
        gw = self.gateway(policy({"seen": (1000, 100000)}), clock="test")
        key = "lg:{a:seen}:last"
        self.assertEqual(lookup(gw.port, "seen", t0).status, 200)
        self.assertEqual(self.redis.cmd("GET", key), str(t0))
        self.assertGreater(int(self.redis.cmd("PTTL", key)), 399 * 86400 * 1000)
        self.assertEqual(lookup(gw.port, "seen", t0 + 59999).status, 200)
        self.assertEqual(self.redis.cmd("GET", key), str(t0))
        self.assertEqual(lookup(gw.port, "seen", t0 + 60000).status, 200)
        self.assertEqual(self.redis.cmd("GET", key), str(t0 + 60000))
        self.redis.cmd("SET", key, str(t0 + 10 * 86400 * 1000))  # ahead of the clock
        self.assertEqual(lookup(gw.port, "seen", t0 + 61000).status, 200)
        self.assertEqual(self.redis.cmd("GET", key), str(t0 + 61000))
        self.redis.cmd("SET", key, "not a time")
        self.assertEqual(lookup(gw.port, "seen", t0 + 62000).status, 200)
        self.assertEqual(self.redis.cmd("GET", key), str(t0 + 62000))

    def test_memory_backend_has_the_same_window(self):
        gw = self.gateway(policy({"roll": (4, 100000)}), clock="test",
                          store={"backend": "memory"})
        self.rolling_window(gw, "roll", 4, ms(2026, 12, 3, 9))
        self.assertEqual(self.redis.cmd("KEYS", "*"), [])

    def test_e12_local_midnight_in_ho_chi_minh(self):
        gw = self.gateway(policy({"daily": (100, 1)}), clock="test")
        self.assertEqual(lookup(gw.port, "daily", ms(2026, 12, 2, 10)).status, 200)
        r = lookup(gw.port, "daily", ms(2026, 12, 2, 23, 59, 59, 999))
        self.assertEqual(r.status, 429)
        self.assertEqual(r.header("retry-after"), "1")
        self.assertEqual(lookup(gw.port, "daily", ms(2026, 12, 3, 0, 0, 0, 0)).status, 200)
        r = lookup(gw.port, "daily", ms(2026, 12, 3, 6, 30))
        self.assertEqual(r.header("retry-after"), str(17 * 3600 + 1800))  # to local midnight
        # UTC midnight is 07:00 local: no reset there
        self.assertEqual(lookup(gw.port, "daily", ms(2026, 12, 3, 7, 0, 0, 1)).status, 429)

    def test_e12_dst_days_in_new_york(self):
        gw = self.gateway(policy({"dst": (100, 1)}), clock="test", zone="America/New_York")
        # 2026-03-08 has 23 hours
        self.assertEqual(lookup(gw.port, "dst", ms(2026, 3, 8, 0, 30, zone=NY)).status, 200)
        r = lookup(gw.port, "dst", ms(2026, 3, 8, 1, 0, zone=NY))
        self.assertEqual(r.header("retry-after"), str(22 * 3600))
        r = lookup(gw.port, "dst", ms(2026, 3, 8, 23, 59, 59, 999, zone=NY))
        self.assertEqual((r.status, r.header("retry-after")), (429, "1"))
        self.assertEqual(lookup(gw.port, "dst", ms(2026, 3, 9, 0, 0, zone=NY)).status, 200)
        # 2026-11-01 has 25 hours (credential valid then: see policy())
        gw2 = self.gateway(dict(policy({"dst2": (100, 1)}), accounts=[
            {"id": "dst2", "unit": "u", "roles": ["r100_1"],
             "credentials": [credential("lg_q-dst2", issued="2026-10-01", expires="2026-12-01")]}]),
            clock="test", zone="America/New_York")
        self.assertEqual(lookup(gw2.port, "dst2", ms(2026, 11, 1, 0, 30, zone=NY)).status, 200)
        r = lookup(gw2.port, "dst2", ms(2026, 11, 1, 1, 0, zone=NY, fold=0))
        self.assertEqual(r.header("retry-after"), str(24 * 3600))
        self.assertEqual(lookup(gw2.port, "dst2", ms(2026, 11, 2, 0, 0, zone=NY)).status, 200)

    def test_reload_keeps_counts(self):
        pol = policy({"r": (3, 1000)})
        gw = self.gateway(pol)
        for _ in range(3):
            self.assertEqual(lookup(gw.port, "r").status, 200)
        pol2 = copy.deepcopy(pol)
        pol2["accounts"].append({"id": "new", "unit": "u", "roles": ["r3_1000"],
                                 "credentials": [credential("lg_q-new")]})
        self.assertTrue(gw.reload(pol2))
        self.assertEqual(lookup(gw.port, "r").status, 429)   # counts survived the reload
        self.assertEqual(lookup(gw.port, "new").status, 200)
        pol3 = copy.deepcopy(pol2)
        pol3["roles"]["r3_1000"]["quota"]["per_minute"] = 4
        self.assertTrue(gw.reload(pol3))
        self.assertEqual(lookup(gw.port, "r").status, 200)   # a raised limit applies at once
        self.assertEqual(lookup(gw.port, "r").status, 429)

    def test_f5_revocation_takes_effect_at_the_next_request(self):
        pol = policy({"leaver": (100, 1000)})
        gw = self.gateway(pol)
        self.assertEqual(lookup(gw.port, "leaver").status, 200)
        off = copy.deepcopy(pol)
        off["accounts"][0]["disabled"] = True
        self.assertTrue(gw.reload(off))
        r = lookup(gw.port, "leaver")
        self.assertEqual((r.status, r.json()["type"]), (403, "urn:lookupgate:problem:account-disabled"))
        gone = copy.deepcopy(pol)
        gone["accounts"][0]["credentials"] = []
        self.assertTrue(gw.reload(gone))
        self.assertEqual(lookup(gw.port, "leaver").status, 401)
        # suspension through Redis: every instance, next request, no reload
        self.assertTrue(gw.reload(pol))
        self.redis.cmd("SET", "lg:{a:leaver}:suspended", "credential leaked")
        r = lookup(gw.port, "leaver")
        self.assertEqual((r.status, r.json()["type"]), (403, "urn:lookupgate:problem:account-suspended"))
        self.redis.cmd("DEL", "lg:{a:leaver}:suspended")
        self.assertEqual(lookup(gw.port, "leaver").status, 200)

    def test_f16_bad_reload_keeps_the_last_good_policy(self):
        pol = policy({"r": (100, 1000)})
        gw = self.gateway(pol)
        bad = copy.deepcopy(pol)
        bad["accounts"][0]["roles"] = ["xu_ly2"]
        bad["accounts"].append({"id": "intruder", "unit": "u", "roles": ["r100_1000"],
                                "credentials": [credential("lg_q-intruder")]})
        self.assertFalse(gw.reload(bad))
        log = gw.log_text().decode()
        self.assertRegex(log, r'policy-\d+\.json:\d+:\d+: account "r": unknown role "xu_ly2"')
        self.assertEqual(lookup(gw.port, "r").status, 200)
        self.assertEqual(lookup(gw.port, "intruder").status, 401)
        gw.write_policy("{ not json")
        self.assertFalse(gw.reload())
        self.assertEqual(lookup(gw.port, "r").status, 200)



class QuotaThroughModule(Quota):
    """The same suite with the lookupgate Redis module loaded: every decision is made by
    LOOKUPGATE.ADMIT instead of the script, and must come out the same."""
    PREFIX = "lg-quota-mod-"
    REDIS_ARGS = ("--loadmodule", REDIS_MODULE)

    def tearDown(self):
        try:
            self.assertEqual(self.redis.calls("evalsha"), 0, "an admission ran the script")
        finally:
            super().tearDown()

    def test_the_module_decided(self):
        gw = self.gateway(policy({"m": (2, 100)}))
        self.assertEqual([lookup(gw.port, "m").status for _ in range(3)], [200, 200, 429])
        self.assertEqual(self.redis.calls("lookupgate.admit"), 3)


if __name__ == "__main__":
    unittest.main()
