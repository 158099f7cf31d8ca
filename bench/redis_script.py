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
    src = open(path).read()
    m = re.search(r'static const char quota_script\[\] =\n(.*?);\n', src, re.S)
    if not m:
        sys.exit("%s: no quota_script literal" % path)
    lits = re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))
    return "".join(bytes(s, "utf-8").decode("unicode_escape") for s in lits)


def enc(*a):
    out = [b"*%d\r\n" % len(a)]
    for x in a:
        x = x if isinstance(x, bytes) else str(x).encode()
        out.append(b"$%d\r\n%s\r\n" % (len(x), x))
    return b"".join(out)


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(script, calls, accounts, seed):
    port = free_port()
    p = subprocess.Popen(["redis-server", "--port", str(port), "--bind", "127.0.0.1",
                          "--save", "", "--appendonly", "no"], stdout=subprocess.DEVNULL)
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
        s.sendall(enc("SCRIPT", "LOAD", script))
        read()
        sha = hashlib.sha1(script.encode()).hexdigest()
        day0 = 1796230800000  # a local midnight (Asia/Ho_Chi_Minh)
        starts = [day0 - 86400000, day0, day0 + 86400000, day0 + 2 * 86400000]
        ids = [20261202, 20261203, 20261204]
        per_ms = (calls // 2) / 60000.0  # the first half spans one minute
        t0 = day0 + 9 * 3600000
        rnd = random.Random(seed)

        def cmd(i):
            acc = "acct-%04d" % rnd.randrange(accounts)
            keys = ["lg:{a:%s}:suspended" % acc, "lg:{a:%s}:last" % acc,
                    "lg:{a:%s}:m" % acc, "lg:{a:%s}:d" % acc]
            args = [int(t0 + i / per_ms), "bench:%d" % i] + starts + ids + \
                [2, "m", 1000000, "n", "d", 1000000000, "n"]
            return enc("EVALSHA", sha, len(keys), *keys, *args)

        def cpu():
            v = open("/proc/%d/stat" % p.pid).read().rsplit(") ", 1)[1].split()
            return (int(v[11]) + int(v[12])) / os.sysconf("SC_CLK_TCK")
        i, batch, c0 = 0, 100, None
        while i < calls:
            if c0 is None and i >= calls // 2:
                c0 = cpu()
            s.sendall(b"".join(cmd(i + j) for j in range(batch)))
            for _ in range(batch):
                r = read()
                if not isinstance(r, list) or r[0] != b":0\r\n":
                    sys.exit("unexpected reply %r" % (r,))
            i += batch
        return (cpu() - c0) * 1e6 / (calls - calls // 2)
    finally:
        p.terminate()
        p.wait()


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("store_c", nargs="+")
    ap.add_argument("-n", "--calls", type=int, default=100000)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("--accounts", type=int, default=100)
    a = ap.parse_args()
    scripts = [(path, script_of(path)) for path in a.store_c]
    res = {path: [] for path, _ in scripts}
    for rnd in range(a.rounds):
        for path, sc in scripts:
            res[path].append(run(sc, a.calls, a.accounts, rnd))
    print("| script from | Redis CPU µs/call (median) | min | rounds |")
    print("|---|---:|---:|---:|")
    for path, _ in scripts:
        v = res[path]
        print("| %s | %.1f | %.1f | %s |" % (path, statistics.median(v), min(v),
                                             " ".join("%.1f" % x for x in v)))


if __name__ == "__main__":
    main()
