"""The lookupgate Redis module (policy/redis_module.c, LOOKUPGATE.ADMIT) against the quota script
it replaces (store.c's quota_script, read from the source): the same replies and the same keys
over a long random sequence, on one real redis-server; replicas and the AOF hold plain commands
(a replica and a restarted Redis without the module read the same counts); and the gateway
uses the command when the server has it, the script when told to or when the module goes away
at run time, with no count lost across the switch. test_quota runs its whole suite through the
module as well (QuotaThroughModule)."""

import ast
import os
import random
import re
import shutil
import socket
import subprocess
import tempfile
import time
import unittest

from lgtest import (REDIS_MODULE, SOURCE, Gateway, Redis, RedisCase, RedisError, free_port,
                    resp_encode, resp_read, wait_port)
from test_store import lookup, policy

DAY = 86400000


# Quota plans as store.c sends them: (kind, limit, key suffix, field).
PLANS = [
    [("m", 3, "m", "n"), ("d", 8, "d", "n")],                      # account
    [("m", 3, "m", "n"), ("d", 8, "d", "n"), ("m", 5, "um", "n"),  # account and unit,
     ("d", 6, "ud", "n"), ("d", 4, "d", "op")],                    # two fields, one hash
    [("m", 0, "m", "n"), ("d", 8, "d", "n")],                      # a zero limit
    [("d", 2, "d2", "n")],                                          # day only
]


def quota_script():
    """The Lua script exactly as store.c sends it."""
    with open(os.path.join(SOURCE, "policy", "store.c")) as f:
        src = f.read()
    body = src.split("static const char quota_script[] =", 1)[1].split(";\n", 1)[0]
    return "".join(ast.literal_eval(x) for x in re.findall(r'"(?:[^"\\]|\\.)*"', body))


def admit_args(prefix, counters, now, member, day0, day_id):
    """Keys and arguments as store.c's send_script builds them. counters: (kind, limit, key
    suffix, field); day0 is the start of day day_id."""
    keys = ["%s:suspended" % prefix, "%s:last" % prefix]
    keys += ["%s:%s" % (prefix, c[2]) for c in counters]
    args = [str(now), member]
    args += [str(day0 + (i - 1) * DAY) for i in range(4)]
    args += [str(day_id + i - 1) for i in range(3)]
    args.append(str(len(counters)))
    for kind, limit, _, field in counters:
        args += [kind, str(limit), field]
    return [str(len(keys))] + keys + args


def key_state(redis, prefix):
    """The keys under prefix: values and TTLs (ms, -1 for none)."""
    out = {}
    for k in sorted(redis.cmd("KEYS", prefix + ":*")):
        t = redis.cmd("TYPE", k)
        name = k[len(prefix):]
        if t == "zset":
            v = redis.cmd("ZRANGE", k, "0", "-1", "WITHSCORES")
        elif t == "hash":
            h = redis.cmd("HGETALL", k)
            v = dict(zip(h[::2], h[1::2]))
        else:
            v = (t, redis.cmd("GET", k) if t == "string" else None)
        out[name] = (v, int(redis.cmd("PTTL", k)))
    return out


def same_keys(test, a, b, msg=None):
    """a and b hold the same keys and values, with TTLs within a second of each other."""
    test.assertEqual({k: v[0] for k, v in a.items()}, {k: v[0] for k, v in b.items()}, msg)
    for k in a:
        test.assertEqual(a[k][1] < 0, b[k][1] < 0, "%s: %s" % (k, msg))
        test.assertLess(abs(a[k][1] - b[k][1]), 1000, "%s: %s" % (k, msg))


class ModuleAgainstScript(unittest.TestCase):
    def setUp(self):
        self.tmpdir = tempfile.TemporaryDirectory(prefix="lg-rmod-")
        self.tmp = self.tmpdir.name
        self.servers = []

    def tearDown(self):
        for r in self.servers:
            r.stop()
        self.tmpdir.cleanup()

    def redis(self, *args):
        r = Redis(self.tmp, args=list(args))
        self.servers.append(r)
        return r

    def both(self, r, sha, counters, now, member, day0, day_id):
        s = r.cmd("EVALSHA", sha, *admit_args("S", counters, now, member, day0, day_id))
        m = r.cmd("LOOKUPGATE.ADMIT", *admit_args("M", counters, now, member, day0, day_id))
        return s, m

    def test_same_replies_and_keys_as_the_script_over_a_random_sequence(self):
        r = self.redis("--loadmodule", REDIS_MODULE)
        sha = r.cmd("SCRIPT", "LOAD", quota_script())
        self.assertRegex(sha, "^[0-9a-f]{40}$")
        rnd = random.Random(6)
        plans = PLANS
        day_id, day0 = 20000, 20000 * DAY - 7 * 3600000
        now = day0 + 9 * 3600000
        seen = {"admitted": 0, "refused": 0, "suspended": 0, "outside": 0, "error": 0}
        for step in range(1200):
            op = rnd.random()
            if op < 0.03:
                for p in "SM":
                    r.cmd("SET", "%s:suspended" % p, "leaked %d" % step)
            elif op < 0.06:
                for p in "SM":
                    r.cmd("DEL", "%s:suspended" % p)
            elif op < 0.07:  # a key of the wrong type: both refuse to decide
                for p in "SM":
                    r.cmd("SET", "%s:um" % p, "x")
            elif op < 0.08:
                for p in "SM":
                    r.cmd("DEL", "%s:um" % p)
            elif op < 0.09:  # the last use ahead of the clock, or not a time
                v = rnd.choice([str(now + DAY), "not a time"])
                for p in "SM":
                    r.cmd("SET", "%s:last" % p, v)
            now += rnd.choice([0, 1, 1, 500, 2000, 10000, 19999, 30000, 59999, 60000, 3600000])
            if now >= day0 + DAY:
                day0 += DAY
                day_id += 1
            if rnd.random() < 0.02:  # days given that do not hold now
                s, m = self.both(r, sha, plans[0], now, "gw-%d" % step, day0 + 2 * DAY,
                                 day_id + 2)
            else:
                s, m = self.both(r, sha, rnd.choice(plans), now, "gw-%d" % step, day0, day_id)
            if isinstance(s, RedisError):
                self.assertIsInstance(m, RedisError, "step %d: script %r, module %r" % (step, s, m))
                seen["error"] += 1
            else:
                self.assertEqual(m, s, "step %d" % step)
                seen[{0: "admitted", 2: "refused", 1: "suspended", 3: "outside"}[s[0]]] += 1
            same_keys(self, key_state(r, "M"), key_state(r, "S"), "step %d" % step)
        for k, v in seen.items():
            self.assertGreater(v, 5, seen)  # every kind of answer was compared

    def test_a_limit_lowered_under_a_full_window(self):
        # The reset of a refused window comes from the entry at rank used - limit; the module
        # walks to it from the nearer end, or asks ZRANGE when both are far (a global window
        # of many entries whose limit was lowered). All three agree with the script.
        r = self.redis("--loadmodule", REDIS_MODULE)
        sha = r.cmd("SCRIPT", "LOAD", quota_script())
        day_id, day0 = 20000, 20000 * DAY
        now = day0 + 9 * 3600000
        for i in range(300):
            s, m = self.both(r, sha, [("m", 1000, "g", "n")], now + i * 150, "gw-%d" % i,
                             day0, day_id)
            self.assertEqual((s[0], m), (0, s))
        now += 300 * 150
        for limit in (1, 40, 100, 150, 200, 250, 299, 300, 301):
            s, m = self.both(r, sha, [("m", limit, "g", "n")], now, "late", day0, day_id)
            self.assertEqual(m, s, "limit %d" % limit)
            self.assertEqual(s[0], 2 if limit <= 300 else 0)
            if limit <= 300:  # when the entry at rank 300 - limit leaves the window
                self.assertEqual(s[4], (300 - limit) * 150 + 60000 - 300 * 150)
            else:
                for p in "SM":  # undo the admission, so the next limit sees 300 entries
                    r.cmd("ZREM", "%s:g" % p, "%d:late" % now)
        same_keys(self, key_state(r, "M"), key_state(r, "S"))
        # a quiet minute, and a few of the entries or all of them leave at once: the module
        # removes up to 8 itself and the rest with ZREMRANGEBYSCORE
        for step, at in enumerate((now + 15000 + 5 * 150, now + 15000 + 150 * 150,
                                   now + 200000)):
            s, m = self.both(r, sha, [("m", 1000, "g", "n")], at, "after-%d" % step, day0,
                             day_id)
            self.assertEqual(m, s)
            same_keys(self, key_state(r, "M"), key_state(r, "S"))
        self.assertEqual(r.cmd("ZCARD", "M:g"), 1)

    def test_redis_clock(self):
        r = self.redis("--loadmodule", REDIS_MODULE)
        counters = [("m", 10, "m", "n"), ("d", 10, "d", "n")]
        t = int(time.time() * 1000)
        day0 = t - t % DAY
        args = admit_args("M", counters, 0, "gw-1", day0, 7)
        m = r.cmd("LOOKUPGATE.ADMIT", *args)
        self.assertEqual(m[0], 0)
        self.assertLess(abs(m[1] - t), 2000)
        self.assertEqual(m[2:], [7, 1, 60000, 0, 1, day0 + DAY - m[1], 0])

    def test_bad_calls_are_errors(self):
        r = self.redis("--loadmodule", REDIS_MODULE)
        counters = [("m", 10, "m", "n")]
        args = admit_args("M", counters, 1000 * DAY, "gw", 1000 * DAY, 7)
        self.assertIsInstance(r.cmd("LOOKUPGATE.ADMIT"), RedisError)
        self.assertIsInstance(r.cmd("LOOKUPGATE.ADMIT", *args[:-1]), RedisError)
        self.assertIsInstance(r.cmd("LOOKUPGATE.ADMIT", "x", *args[1:]), RedisError)
        bad = list(args)
        bad[bad.index(str(1000 * DAY))] = "soon"
        self.assertIsInstance(r.cmd("LOOKUPGATE.ADMIT", *bad), RedisError)
        self.assertEqual(r.cmd("KEYS", "*"), [])
        r.cmd("HSET", "M:d", "id", "7", "n", "many")
        e = r.cmd("LOOKUPGATE.ADMIT", *admit_args("M", [("d", 5, "d", "n")], 1000 * DAY, "gw",
                                                 1000 * DAY, 7))
        self.assertIsInstance(e, RedisError)
        self.assertEqual(r.cmd("HGET", "M:d", "n"), "many")
        self.assertEqual(r.cmd("KEYS", "*"), ["M:d"])  # nothing added

    def run_admissions(self, r, n=200):
        rnd = random.Random(3)
        now, day_id = 3000 * DAY + 3600000, 3000
        plan = [("m", 4, "m", "n"), ("d", 150, "d", "n"), ("m", 6, "um", "n")]
        results = []
        for i in range(n):
            now += rnd.choice([1, 1000, 15000, 61000])
            if now >= (day_id + 1) * DAY:
                day_id += 1
            results.append(r.cmd("LOOKUPGATE.ADMIT",
                                 *admit_args("M", plan, now, "gw-%d" % i, day_id * DAY, day_id)))
        self.assertGreater(sum(1 for x in results if x[0] == 0), 50)
        self.assertGreater(sum(1 for x in results if x[0] == 2), 10)

    def test_a_replica_without_the_module_gets_the_same_keys(self):
        primary = self.redis("--loadmodule", REDIS_MODULE)
        replica = self.redis("--replicaof", "127.0.0.1", str(primary.port))
        deadline = time.time() + 10
        while "master_link_status:up" not in replica.cmd("INFO", "replication"):
            self.assertLess(time.time(), deadline, "the replica did not sync")
            time.sleep(0.05)
        self.run_admissions(primary)
        self.assertEqual(primary.cmd("WAIT", "1", "5000"), 1)
        same_keys(self, key_state(replica, "M"), key_state(primary, "M"))
        self.assertNotEqual(key_state(primary, "M"), {})

    def test_the_aof_replays_without_the_module(self):
        r = self.redis("--loadmodule", REDIS_MODULE, "--appendonly", "yes",
                       "--appendfsync", "always")
        dirty = int(re.search(r"rdb_changes_since_last_save:(\d+)",
                              r.cmd("INFO", "persistence")).group(1))
        self.run_admissions(r)
        after = int(re.search(r"rdb_changes_since_last_save:(\d+)",
                              r.cmd("INFO", "persistence")).group(1))
        self.assertGreater(after - dirty, 200)  # RDB saves see the changes too
        before = key_state(r, "M")
        r.stop()
        r2 = Redis(self.tmp, port=r.port, args=["--appendonly", "yes",
                                                 "--enable-module-command", "yes"])
        self.servers.append(r2)
        self.assertEqual(r2.cmd("MODULE", "LIST"), [])
        same_keys(self, key_state(r2, "M"), before)


class ModuleUnderValgrind(unittest.TestCase):
    """The module runs inside the province's Redis: a fault or a leak there is Redis's. Under
    valgrind --leak-check=full, a few hundred decisions of every kind, bad calls and an unload
    leave no error and no definite or indirect leak."""

    def test_no_memory_error_or_leak_inside_redis(self):
        if not shutil.which("valgrind"):
            if os.environ.get("CI"):
                raise AssertionError("valgrind is required in CI (./deploy/test.sh installs it)")
            self.skipTest("no valgrind")
        with tempfile.TemporaryDirectory(prefix="lg-rmod-vg-") as tmp:
            port, log = free_port(), os.path.join(tmp, "valgrind.log")
            proc = subprocess.Popen(
                ["valgrind", "--leak-check=full", "--errors-for-leak-kinds=definite,indirect",
                 "--error-exitcode=99", "--log-file=" + log,
                 "redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                 "--appendonly", "no", "--dir", tmp, "--loadmodule", REDIS_MODULE,
                 "--enable-module-command", "yes"],
                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                wait_port(port, proc, timeout=60)
                with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
                    f = sock.makefile("rb")

                    def cmd(*args):
                        sock.sendall(resp_encode(args))
                        return resp_read(f)
                    self.drive(cmd)
                    self.assertEqual(cmd("MODULE", "UNLOAD", "lookupgate"), "OK")
                    sock.sendall(resp_encode(["SHUTDOWN", "NOSAVE"]))
                rc = proc.wait(120)
            finally:
                if proc.poll() is None:
                    proc.kill()
                    proc.wait()
            with open(log) as fh:
                report = fh.read()
            self.assertEqual(rc, 0, report[-4000:])
            self.assertIn("definitely lost: 0 bytes", report)
            self.assertIn("indirectly lost: 0 bytes", report)

    def drive(self, cmd):
        rnd = random.Random(1)
        day_id, day0 = 20000, 20000 * DAY
        now, kinds = day0 + 3600000, set()
        for step in range(400):
            x = rnd.random()
            if x < 0.03:
                cmd("SET", "M:suspended", "leaked")
            elif x < 0.06:
                cmd("DEL", "M:suspended")
            elif x < 0.08:
                cmd("SET", "M:um", "x")          # the wrong type
            elif x < 0.10:
                cmd("DEL", "M:um")
            elif x < 0.11:
                cmd("HSET", "M:d", "n", "many")  # not an integer (or a stale day's hash)
            elif x < 0.12:
                cmd("DEL", "M:d")
            now += rnd.choice([0, 1, 1000, 30000, 61000, 3600000])
            if now >= day0 + DAY:
                day0 += DAY
                day_id += 1
            at = now if rnd.random() < 0.9 else 0  # 0: the Redis clock
            if rnd.random() < 0.03:
                day0_given = day0 + 2 * DAY        # days that do not hold now
            else:
                day0_given = day0
            r = cmd("LOOKUPGATE.ADMIT", *admit_args("M", rnd.choice(PLANS), at, "gw-%d" % step,
                                                    day0_given, day_id))
            kinds.add("error" if isinstance(r, RedisError) else r[0])
        # a window of 200 and lower limits: the rank reached from either end, or by ZRANGE
        now += DAY
        day0, day_id = now - now % DAY, now // DAY
        for i in range(200):
            cmd("LOOKUPGATE.ADMIT", *admit_args("W", [("m", 1000, "g", "")], now + i,
                                                "gw-%d" % i, day0, day_id))
        for limit in (10, 100, 190):
            r = cmd("LOOKUPGATE.ADMIT", *admit_args("W", [("m", limit, "g", "")], now + 200,
                                                    "late", day0, day_id))
            self.assertEqual(r[0], 2)
        r = cmd("LOOKUPGATE.ADMIT", *admit_args("W", [("m", 10, "g", "")], now + 61000,
                                                "after", day0, day_id))
        self.assertEqual(r[:4], [0, now + 61000, day_id, 1])  # the 200 left in one call
        for bad in ([], ["x"], ["3", "k"], admit_args("M", PLANS[0], "soon", "gw", day0, 1)):
            self.assertIsInstance(cmd("LOOKUPGATE.ADMIT", *bad), RedisError)
        self.assertEqual(kinds, {0, 1, 2, 3, "error"})
        # garbage: random argument counts and values, well-formed calls with one value
        # replaced; every reply is an error or a decision, and Redis stays up
        words = ["0", "1", "-1", "2", "18", "19", "m", "d", "", "x", "9" * 19, "-" + "9" * 18,
                 "1e3", " 5", str(now), str(DAY), "\x00"]
        for i in range(300):
            if i % 2:
                args = [rnd.choice(words) for _ in range(rnd.randrange(0, 40))]
            else:
                args = admit_args("G", rnd.choice(PLANS), now, "gw", day0, day_id)
                args[rnd.randrange(len(args))] = rnd.choice(words)
            r = cmd("LOOKUPGATE.ADMIT", *args)
            self.assertTrue(isinstance(r, (RedisError, list)), repr(r))
        self.assertEqual(cmd("PING"), "PONG")


class GatewayWithModule(RedisCase):
    PREFIX = "lg-rmod-gw-"
    REDIS_ARGS = ("--loadmodule", REDIS_MODULE, "--enable-module-command", "yes")

    def gateway(self, pol, **store):
        s = dict({"backend": "redis", "address": "127.0.0.1:%d" % self.redis.port,
                  "command_timeout_ms": 3000, "connect_timeout_ms": 3000}, **store)
        g = Gateway(self.tmp, self.stub.port, {"workers": 2, "store": s}, policy=pol)
        self.gws.append(g)
        return g

    def module_gauge(self, gw):
        st, _, body = gw.admin("/metrics")
        self.assertEqual(st, 200)
        return int(re.search(rb"^lookupgate_store_module_connections (\d+)$", body, re.M).group(1))

    def wait_gauge(self, gw, want):
        deadline = time.time() + 5
        while self.module_gauge(gw) != want:
            self.assertLess(time.time(), deadline, "module connections never %d" % want)
            time.sleep(0.05)

    def test_lookups_are_decided_by_the_module(self):
        gw = self.gateway(policy(3, 100))
        self.wait_gauge(gw, 2)
        res = [lookup(gw.port) for _ in range(4)]
        self.assertEqual([x.status for x in res], [200, 200, 200, 429])
        self.assertIn('"account-per-minute";r=0;t=', res[2].header("ratelimit"))
        self.assertEqual(res[3].json()["type"], "urn:lookupgate:problem:quota-exceeded")
        self.assertEqual(self.redis.calls("lookupgate.admit"), 4)
        self.assertEqual(self.redis.calls("evalsha") + self.redis.calls("eval"), 0)
        self.assertEqual(self.redis.cmd("HGET", "lg:{a:a}:d", "n"), "3")
        self.assertEqual(self.redis.cmd("ZCARD", "lg:{a:a}:m"), 3)
        st, _, page = gw.admin("/status")
        self.assertEqual(st, 200)
        self.assertIn(b"2 deciding with the lookupgate module", page)

    def test_quota_command_script_keeps_the_script(self):
        gw = self.gateway(policy(3, 100), quota_command="script")
        self.assertEqual(lookup(gw.port).status, 200)
        self.assertEqual(self.module_gauge(gw), 0)
        self.assertEqual(self.redis.calls("lookupgate.admit"), 0)
        self.assertEqual(self.redis.calls("evalsha"), 1)

    def test_module_unloaded_at_run_time_the_script_takes_over_with_the_counts(self):
        gw = self.gateway(policy(5, 100))
        self.wait_gauge(gw, 2)
        for _ in range(3):
            self.assertEqual(lookup(gw.port).status, 200)
        self.assertEqual(self.redis.calls("lookupgate.admit"), 3)
        self.assertEqual(self.redis.cmd("MODULE", "UNLOAD", "lookupgate"), "OK")
        for _ in range(2):
            self.assertEqual(lookup(gw.port).status, 200)  # no error answered
        self.assertEqual(lookup(gw.port).status, 429)      # the module's three still count
        self.assertGreaterEqual(self.redis.calls("evalsha"), 3)
        self.assertEqual(self.redis.cmd("HGET", "lg:{a:a}:d", "n"), "5")
        self.assertIn("LOOKUPGATE.ADMIT is gone; using the script", gw.log_text().decode())
        self.assertLess(self.module_gauge(gw), 2)
        st, _, body = gw.admin("/metrics")
        self.assertIn(b"lookupgate_store_errors_total 0\n", body)
        # loaded again: the connections take it up when they reconnect
        self.assertEqual(self.redis.cmd("MODULE", "LOAD", REDIS_MODULE), "OK")
        self.assertGreaterEqual(self.redis.cmd("CLIENT", "KILL", "TYPE", "normal"), 1)
        self.wait_gauge(gw, 2)
        r = lookup(gw.port)
        self.assertEqual(r.status, 429)  # still the same counts
        self.assertEqual(self.redis.calls("lookupgate.admit"), 1)

    def test_an_acl_that_forbids_the_command_leaves_the_script(self):
        # Loaded, but the gateway's Redis user may not run it (an ACL written for the script):
        # NOPERM switches to the script instead of failing every lookup.
        self.assertEqual(self.redis.cmd("ACL", "SETUSER", "default", "-lookupgate.admit"), "OK")
        gw = self.gateway(policy(5, 100))
        for _ in range(3):
            self.assertEqual(lookup(gw.port).status, 200)
        self.assertEqual(self.redis.calls("lookupgate.admit"), 0)
        self.assertEqual(self.redis.calls("evalsha"), 3)
        self.assertIn("LOOKUPGATE.ADMIT is not permitted; using the script",
                      gw.log_text().decode())
        st, _, body = gw.admin("/metrics")
        self.assertIn(b"lookupgate_store_errors_total 0\n", body)


if __name__ == "__main__":
    unittest.main()
