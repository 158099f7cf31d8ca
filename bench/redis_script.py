#!/usr/bin/env python3
"""Redis CPU per call of the quota script, for one or more versions side by side.

    python3 bench/redis_script.py policy/store.c [OTHER_store.c ...] [-n CALLS] [-r ROUNDS]
    e.g. python3 bench/redis_script.py policy/store.c <(git show HEAD~1:policy/store.c)

Each version's script is taken from the quota_script literal in the given store.c. For each
version and round a fresh redis-server (free port, no persistence) gets the calls the allowed
path of bench/run.sh makes: EVALSHA with an account minute and day counter, spread over
--accounts accounts, with the test clock advancing so that each account's rolling window holds
about (calls / 2) / accounts entries (500 by default: the skiplist encoding, as under load).
The first half of the calls fills the windows; Redis's user + system CPU is measured over the
second half, pipelined 100 at a time so that the network cost is small. Versions are
interleaved round by round; the table shows the median and the minimum per version.

A version can also be a .lua file (bench/alternatives/): a script that declares
"-- layout: string-windows" gets that layout's keys and arguments. Every version must give
the same replies to the same calls (counts, resets, refusals), which is checked and shown.
--batch K sends K admissions in one EVALSHA (the script wrapped in a loop over them); the
CPU is still per admission. --parts adds, for each version of the sorted-set layout, a script
that returns at once (the cost of an EVALSHA with these keys and arguments) and the script with
every redis.call answered in Lua by a canned reply (its own logic, without the calls).
--plain adds the sorted-set layout's work without Lua: each admission as its eight commands
(MGET, ZREMRANGEBYSCORE, ZCARD, ZRANGE, HMGET, ZADD, PEXPIRE, HINCRBY) pipelined, and one
EXISTS of its four keys alone: what native code (a Redis module command) would at most cost,
and what one command costs by itself. Their replies are not compared.
--module SO adds the lookupgate Redis module (build/lookupgate-redis.so) as one more version:
the same admissions as LOOKUPGATE.ADMIT on a Redis that loads it, replies compared with the
scripts'.
--redis-set 'NAME VALUE' adds each version once more on a Redis started with that setting
(e.g. 'zset-max-listpack-entries 0'), side by side.
"""
import argparse
import hashlib
import os
import random
import re
import socket
import statistics
import subprocess
import sys
import time


def script_of(path):
    if path.endswith(".lua"):
        return open(path).read()
    src = open(path).read()
    m = re.search(r'static const char quota_script\[\] =\n(.*?);\n', src, re.S)
    if not m:
        sys.exit("%s: no quota_script literal" % path)
    lits = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    return "".join(bytes(s, "utf-8").decode("unicode_escape") for s in lits)


CANNED = """local function canned(c)
  if c == 'MGET' then return {false, false}
  elseif c == 'ZCARD' then return 500
  elseif c == 'ZRANGE' then return {ARGV[1] .. ':x'}
  elseif c == 'HMGET' then return {ARGV[8], '123'}
  elseif c == 'TIME' then return {'1', '2'}
  else return 1 end
end
"""


def parts_of(path, script):
    """(name, script) of --parts for script."""
    if "-- layout: string-windows" in script or not script.startswith("#!lua\n"):
        return []  # the canned replies are the sorted-set layout's
    return [("%s: returns at once" % path, "#!lua\nreturn {0}\n"),
            ("%s: its logic alone (canned replies)" % path,
             "#!lua\n" + CANNED + script[6:].replace("redis.call(", "canned("))]


def enc(*a):
    out = [b"*%d\r\n" % len(a)]
    for x in a:
        x = x if isinstance(x, bytes) else str(x).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(x), x))
    return b"".join(out)


# One free_port for the benchmarks and the integration tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from lgtest import free_port  # noqa: E402


def batched(script):
    """script as a function called once per admission: ARGV[1] the number of admissions, then
    per admission its number of keys, its number of arguments and the arguments; KEYS are all
    the admissions' keys in order. Returns the list of the admissions' replies."""
    assert script.startswith("#!lua\n")
    return ("#!lua\nlocal function one(KEYS, ARGV)\n" + script[6:] + "\nend\n"
            "local res, ki, ai = {}, 0, 1\n"
            "for p = 1, tonumber(ARGV[1]) do\n"
            "  local nk, na, k, a = tonumber(ARGV[ai + 1]), tonumber(ARGV[ai + 2]), {}, {}\n"
            "  for j = 1, nk do k[j] = KEYS[ki + j] end\n"
            "  for j = 1, na do a[j] = ARGV[ai + 2 + j] end\n"
            "  res[p] = one(k, a)\n"
            "  ki = ki + nk; ai = ai + 2 + na\n"
            "end\n"
            "return res\n")


PLAIN = "-- plain: the commands without Lua"
PLAIN_ONE = "-- plain: one EXISTS"
MODULE = "-- module: LOOKUPGATE.ADMIT"


def run(script, calls, accounts, seed, batch_k=1, redis_args=()):
    """Over the second half of the calls, per admission: Redis's CPU µs, and the µs Redis
    accounts to the EVALSHA and to the commands it called; and a digest of every reply (the
    same calls give the same digest to scripts that count the same way)."""
    string_windows = "-- layout: string-windows" in script
    if batch_k > 1:
        script = batched(script)
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no"] + list(redis_args),
                         stdout=subprocess.DEVNULL)
    try:
        for _ in range(100):
            try:
                s = socket.create_connection(("127.0.0.1", port))
                break
            except OSError:
                time.sleep(0.05)
        f = s.makefile("rb")

        def read():
            line = f.readline()
            t = line[:1]
            if t == b"$":
                n = int(line[1:])
                return f.read(n + 2)[:-2] if n >= 0 else None
            if t == b"*":
                return [read() for _ in range(max(int(line[1:]), 0))]
            if t == b"-":
                sys.exit("redis: " + line.decode().strip())
            return line
        plain = script in (PLAIN, PLAIN_ONE)
        module = script == MODULE
        if not plain and not module:
            s.sendall(enc("SCRIPT", "LOAD", script))
            read()
        sha = hashlib.sha1(script.encode()).hexdigest()
        day0 = 1796230800000  # a local midnight (Asia/Ho_Chi_Minh)
        starts = [day0 - 86400000, day0, day0 + 86400000, day0 + 2 * 86400000]
        ids = [20261202, 20261203, 20261204]
        per_ms = (calls // 2) / 60000.0  # the first half spans one minute
        t0 = day0 + 9 * 3600000
        rnd = random.Random(seed)

        def admission(i):
            acc = "acct-%04d" % rnd.randrange(accounts)
            now = int(t0 + i / per_ms)
            if string_windows:
                keys = ["lg:{a:%s}:suspended" % acc, "lg:{a:%s}:last" % acc,
                        "lg:{a:%s}:w" % acc, "lg:{a:%s}:d:n:" % acc]
                args = [now] + starts + ids + [2, "m", 1000000, "d", 1000000000]
            else:
                keys = ["lg:{a:%s}:suspended" % acc, "lg:{a:%s}:last" % acc,
                        "lg:{a:%s}:m" % acc, "lg:{a:%s}:d" % acc]
                args = [now, "bench:%d" % i] + starts + ids + \
                    [2, "m", 1000000, "n", "d", 1000000000, "n"]
            return keys, args

        def plain_cmds(i):
            keys, args = admission(i)
            now = args[0]
            if script == PLAIN_ONE:
                return [enc("EXISTS", *keys)]
            return [enc("MGET", keys[0], keys[1]),
                    enc("ZREMRANGEBYSCORE", keys[2], "-inf", now - 60000),
                    enc("ZCARD", keys[2]),
                    enc("ZRANGE", keys[2], 0, 0),
                    enc("HMGET", keys[3], "id", "n"),
                    enc("ZADD", keys[2], now, "%d:%s" % (now, args[1])),
                    enc("PEXPIRE", keys[2], 61000),
                    enc("HINCRBY", keys[3], "n", 1)]

        def cmds(i, n):
            if plain:
                return [b"".join(plain_cmds(j)) for j in range(i, i + n)]
            if module:
                return [enc("LOOKUPGATE.ADMIT", len(k), *k, *a)
                        for k, a in map(admission, range(i, i + n))]
            if batch_k == 1:
                return [enc("EVALSHA", sha, len(k), *k, *a)
                        for k, a in map(admission, range(i, i + n))]
            out = []
            for b in range(i, i + n, batch_k):
                keys, args = [], [batch_k]
                for k, a in map(admission, range(b, b + batch_k)):
                    keys += k
                    args += [len(k), len(a)] + a
                out.append(enc("EVALSHA", sha, len(keys), *keys, *args))
            return out

        def cpu():
            v = open("/proc/%d/stat" % p.pid).read().rsplit(") ", 1)[1].split()
            return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
        i, batch, c0, digest = 0, 100, None, hashlib.sha256()
        if calls % (2 * batch * batch_k):
            sys.exit("--calls must be a multiple of 200 x --batch")
        while i < calls:
            if c0 is None and i >= calls // 2:
                c0 = cpu()
                s.sendall(enc("CONFIG", "RESETSTAT"))
                read()
            sent = cmds(i, batch * batch_k)
            s.sendall(b"".join(sent))
            if plain:
                for _ in range(batch * (1 if script == PLAIN_ONE else 8)):
                    read()
                i += batch
                continue
            for _ in sent:
                r = read()
                for one in (r if batch_k > 1 else [r]):
                    if not isinstance(one, list) or one[0] != b":0\r\n":
                        sys.exit("unexpected reply %r" % (one,))
                    digest.update(repr(one).encode())
            i += batch * batch_k
        c1 = cpu()
        s.sendall(enc("INFO", "commandstats"))
        stats = {m.group(1): int(m.group(2)) for m in
                 re.finditer(rb"cmdstat_([a-z|.]+):calls=\d+,usec=(\d+)", read())}
        n = calls - calls // 2
        if plain:  # all of it is "in its commands"
            return (c1 - c0) * 1e6 / n, 0.0, sum(
                v for k, v in stats.items() if not k.startswith(b"config")) / n, ""
        top = (b"evalsha", b"eval", b"lookupgate.admit")
        script_us = sum(v for k, v in stats.items() if k in top) / n
        inner_us = sum(v for k, v in stats.items()
                       if k not in top and not k.startswith(b"config")) / n
        return (c1 - c0) * 1e6 / n, script_us, inner_us, digest.hexdigest()[:12]
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("store_c", nargs="+")
    ap.add_argument("-n", "--calls", type=int, default=100000)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("--accounts", type=int, default=100)
    ap.add_argument("--parts", action="store_true",
                    help="also measure each version's EVALSHA alone and its logic alone")
    ap.add_argument("--batch", default="1", metavar="K[,K...]",
                    help="admissions per EVALSHA (default 1, as lookupgate sends them); "
                         "several values run side by side")
    ap.add_argument("--plain", action="store_true",
                    help="also measure the same work as plain pipelined commands, and one "
                         "command alone")
    ap.add_argument("--module", metavar="SO",
                    help="also measure the lookupgate Redis module's LOOKUPGATE.ADMIT "
                         "(e.g. build/lookupgate-redis.so)")
    ap.add_argument("--redis-set", action="append", default=[], metavar="'NAME VALUE'",
                    help="also run each version on a Redis with this setting (repeatable; "
                         "each is its own version), e.g. 'zset-max-listpack-entries 0'")
    a = ap.parse_args()
    ks = [int(k) for k in a.batch.split(",")]
    versions = []  # (name, script, batch, replies checked, redis-server arguments)
    for path in a.store_c:
        sc = script_of(path)
        versions += [(path if len(ks) == 1 else "%s, batch %d" % (path, k), sc, k, True, ())
                     for k in ks]
        for rs in a.redis_set:
            name, _, val = rs.partition(" ")
            versions.append(("%s, Redis with %s" % (path, rs), sc, ks[0], True,
                             ("--" + name, val)))
        if a.parts:
            versions += [(name, part, 1, False, ()) for name, part in parts_of(path, sc)]
    if a.plain:
        versions += [("the eight commands without Lua, pipelined", PLAIN, 1, False, ()),
                     ("one EXISTS of the four keys", PLAIN_ONE, 1, False, ())]
    if a.module:
        versions.append(("the lookupgate module's LOOKUPGATE.ADMIT", MODULE, 1, True,
                         ("--loadmodule", os.path.abspath(a.module))))
    res = {v[0]: [] for v in versions}
    split = {v[0]: [] for v in versions}
    digests = {v[0]: set() for v in versions}
    for rnd in range(a.rounds):
        for name, sc, k, _, rargs in versions:
            cpu, script_us, inner_us, dg = run(sc, a.calls, a.accounts, rnd, k, rargs)
            res[name].append(cpu)
            split[name].append((script_us, inner_us))
            digests[name].add((rnd, dg))
    print("Redis CPU per admission (process user + system), and Redis's own accounting of the")
    print("script's time (INFO commandstats): the whole EVALSHA, and the commands it called.\n")
    print("| script from | Redis CPU µs/call (median) | min | rounds | in the script | "
          "in its commands |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, *_ in versions:
        v = res[name]
        sp = split[name]
        print("| %s | %.1f | %.1f | %s | %.1f | %.1f |" % (
            name, statistics.median(v), min(v), " ".join("%.1f" % x for x in v),
            statistics.median(x[0] for x in sp), statistics.median(x[1] for x in sp)))
    same = len({frozenset(digests[name]) for name, _, _, checked, _ in versions if checked}) == 1
    print("\nreplies (counts, resets, refusals) %s" %
          ("the same for every version" if same else "DIFFER between versions"))
    if not same:
        sys.exit(1)

if __name__ == "__main__":
    main()
