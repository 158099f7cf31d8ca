#!/usr/bin/env python3
"""lookupgate against nginx and HAProxy, side by side in one run (bench/run.sh is the entry).

One redis-server, one stub upstream, and on the same machine:
  lookupgate   the full path: token → account (1,000 accounts), grant, an exact minute and day
               quota in Redis (one script call), two durable audit records (log on the disk the
               checkout is on, fsync'd);
  nginx        a plain keep-alive reverse proxy; for the refused path, limit_req keyed by the
               Authorization header (bench/peers/nginx.conf.in);
  haproxy      per-account stick-table limits, minute rate and 24 h count
               (bench/peers/haproxy.cfg.in);
  stub         the stub itself, no proxy: the ceiling of this machine.
wrk (bench/accounts.lua) spreads lookups over the 1,000 accounts with random citizen IDs; the
targets are interleaved over several rounds (the order rotates each round).

Modes:
  allowed   every request admitted (quotas far above the load);
  refused   one account far over its quota: every request answered 429;
  idle      N keep-alive connections each make one request and stay open: memory per
            connection, from the proxy's resident memory before and after;
  flat      lookupgate alone under load for --flat-seconds (600 by default; not in the
            default modes), in 30 s slices (every fourth one on the refused path): RSS and
            open descriptors after each slice, and whether RSS stayed flat after the first
            minute (max - min within 2 MiB or 5 %).

For each target: requests/s, p50 and p99 (median over rounds), CPU µs per request of the proxy
process(es) and of redis-server, peak RSS, and the ratio of its requests/s to nginx's. Then the
machine while each target ran: the share of its cores in use, that use per request (the proxy,
Redis, the stub, wrk), and its ratio to nginx split into those two: requests/s is the busy share
times the cores over the machine's CPU per request. With --profile-all, perf records the whole
machine while each target runs, and each process's kernel and user time per request follows
(perf starts with wrk, so the first tenth of a second or so of each run is not in it)."""
import argparse
import datetime
import copy
import hashlib
import json
import os
import re
import resource
import selectors
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TICK = os.sysconf("SC_CLK_TCK")
OVER_TOKEN = "lg_bench-over"
ADMIN_TOKEN = "lg_bench-admin"  # for lookupgate's /metrics (what its answers were)


# One free_port for the benchmarks and the integration tests.
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests",
                                "integration"))
from lgtest import free_port  # noqa: E402


def wait_port(port, proc, timeout=60.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise SystemExit("a process exited before listening on %d" % port)
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise SystemExit("port %d did not open" % port)


def token(i):
    return "lg_bench-%04d" % i


def write_policy(path, naccounts):
    today = datetime.date.today()

    def cred(tok):
        return {"sha256": hashlib.sha256(tok.encode()).hexdigest(),
                "issued": (today - datetime.timedelta(days=1)).isoformat(),
                "expires": (today + datetime.timedelta(days=80)).isoformat()}

    accounts = [{"id": "bench-%04d" % i, "unit": "unit-%02d" % (i % 20), "roles": ["officer"],
                 "credentials": [cred(token(i))]} for i in range(1, naccounts + 1)]
    accounts.append({"id": "bench-over", "unit": "unit-00", "roles": ["tight"],
                     "credentials": [cred(OVER_TOKEN)]})
    with open(path, "w") as f:
        json.dump({
            "operations": {"citizen.lookup": {"method": "GET", "path": "/api/v1/citizens/{id}",
                                              "subject": {"path": "id"},
                                              "purpose": {"dossier": True}}},
            "roles": {"officer": {"operations": ["citizen.lookup"],
                                  "quota": {"per_minute": 1000000, "per_day": 1000000000}},
                      "tight": {"operations": ["citizen.lookup"],
                                "quota": {"per_minute": 1, "per_day": 1000000000}}},
            "units": {"unit-%02d" % u: {} for u in range(20)},
            "accounts": accounts,
        }, f)


def fill(template, out, values):
    with open(template) as f:
        text = f.read()
    for k, v in values.items():
        text = text.replace("@%s@" % k, str(v))
    with open(out, "w") as f:
        f.write(text)


def nofile():
    return resource.getrlimit(resource.RLIMIT_NOFILE)[1]


def raise_nofile():
    """The soft descriptor limit up to the hard one (20,000 on the project's machines)."""
    hard = nofile()
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def pid_tree(pid):
    """pid and its descendants (nginx's master and workers)."""
    kids = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open("/proc/%s/stat" % d) as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                kids.setdefault(ppid, []).append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, pending = [], [pid]
    while pending:
        p = pending.pop()
        out.append(p)
        pending.extend(kids.get(p, []))
    return out


def cpu_s(pids):
    total = 0.0
    for p in pids:
        try:
            with open("/proc/%d/stat" % p) as f:
                fields = f.read().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / TICK
        except OSError:
            pass
    return total


def machine_ticks():
    """(busy, all, steal) clock ticks of the whole machine so far, from /proc/stat: busy is
    user, nice, system, irq and softirq time; steal the time the hypervisor gave the machine's
    cores to something else; all adds idle, iowait and steal."""
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:9]]
    busy = v[0] + v[1] + v[2] + v[5] + v[6]
    return busy, busy + v[3] + v[4] + v[7], v[7]


def children_cpu_s():
    """CPU seconds of this process's children that have been waited for (wrk's runs)."""
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def thread_cpu_s(pid):
    """CPU seconds (user + system) of each thread of pid, summed by thread name (lookupgate
    names its threads: lg-w0, lg-w1... for the workers, lg-audit for the audit writer)."""
    out = {}
    try:
        tids = os.listdir("/proc/%d/task" % pid)
    except OSError:
        return out
    for tid in tids:
        try:
            with open("/proc/%d/task/%s/stat" % (pid, tid)) as f:
                head, rest = f.read().rsplit(")", 1)
            name = head.split("(", 1)[1]
            fields = rest.split()
            out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / TICK
        except (OSError, IndexError, ValueError):
            pass
    return out


def status_kib(pids, key):
    total = 0
    for p in pids:
        try:
            with open("/proc/%d/status" % p) as f:
                for line in f:
                    if line.startswith(key + ":"):
                        total += int(line.split()[1])
        except OSError:
            pass
    return total


def redis_info(port, section):
    out = subprocess.run(["redis-cli", "-p", str(port), "info", section], capture_output=True,
                         text=True, check=True).stdout
    return out


def script_calls(port):
    """Quota decisions Redis ran: the script's EVALSHA/EVAL and the module's LOOKUPGATE.ADMIT."""
    calls = 0
    for line in redis_info(port, "commandstats").splitlines():
        m = re.match(r"cmdstat_(evalsha|eval|lookupgate\.admit):calls=(\d+)", line)
        if m:
            calls += int(m.group(2))
    return calls


def parse_ms(v):
    for suffix, scale in (("us", 0.001), ("ms", 1.0), ("s", 1000.0), ("m", 60000.0)):
        if v.endswith(suffix):
            return float(v[:-len(suffix)]) * scale
    return float(v)


def run_wrk(port, args, env_extra):
    env = dict(os.environ)
    env.update(env_extra)
    cmd = ["wrk", "-t%d" % args.threads, "-c%d" % args.conns, "-d%ds" % args.duration,
           "--latency", "-s", os.path.join(ROOT, "bench", "accounts.lua"),
           "http://127.0.0.1:%d" % port]
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, check=True,
                         preexec_fn=raise_nofile).stdout
    r = {"requests": 0, "non2xx": 0, "errors": 0}
    m = re.search(r"(\d+) requests in ([\d.]+)(\w+)", out)
    r["requests"] = int(m.group(1))
    r["seconds"] = parse_ms(m.group(2) + m.group(3)) / 1000.0
    m = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    r["non2xx"] = int(m.group(1)) if m else 0
    m = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    r["errors"] = sum(int(x) for x in m.groups()) if m else 0
    for pct in ("50", "99"):
        m = re.search(r"^\s+%s%%\s+(\S+)" % pct, out, re.M)
        r["p" + pct] = parse_ms(m.group(1))
    return r


def one_status(port, tok):
    s = socket.create_connection(("127.0.0.1", port), timeout=5)
    s.sendall(("GET /api/v1/citizens/079123456789 HTTP/1.1\r\nHost: bench\r\n"
               "Authorization: Bearer %s\r\nX-Dossier-Id: HS-PROBE\r\nConnection: close\r\n\r\n"
               % tok).encode())
    data = b""
    while b"\r\n" not in data:
        chunk = s.recv(4096)
        if not chunk:
            break
        data += chunk
    s.close()
    return int(data.split(b" ", 2)[1]) if data.startswith(b"HTTP/1.1 ") else 0


def idle_connections(port, n):
    """Opens n keep-alive connections, makes one lookup on each and keeps them open. Returns
    (sockets, number answered 200)."""
    sel = selectors.DefaultSelector()
    socks, ok = [], 0
    pending = {}
    for i in range(n):
        s = socket.socket()
        s.setblocking(False)
        try:
            s.connect(("127.0.0.1", port))
        except BlockingIOError:
            pass
        req = ("GET /api/v1/citizens/0790%08d HTTP/1.1\r\nHost: bench\r\n"
               "Authorization: Bearer %s\r\nX-Dossier-Id: HS-IDLE\r\n\r\n"
               % (i, token(1 + i % 1000))).encode()
        pending[s] = [req, b""]
        sel.register(s, selectors.EVENT_WRITE)
        socks.append(s)
        if len(pending) >= 500:  # do not flood the accept queue
            ok += pump(sel, pending, until=250)
    ok += pump(sel, pending, until=0)
    return socks, ok


def partial_connections(port, n):
    """Opens n connections, each of which sends a request head without its end (a slow client)
    and waits. Returns the sockets."""
    socks = []
    for i in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(("GET /api/v1/citizens/0790%08d HTTP/1.1\r\nHost: bench\r\n"
                   "Authorization: Bearer %s\r\nX-Dossier-Id: HS-SLOW\r\n"
                   % (i, token(1 + i % 1000))).encode())
        socks.append(s)
    return socks


def pump(sel, pending, until):
    ok = 0
    deadline = time.time() + 60
    while len(pending) > until and time.time() < deadline:
        for key, ev in sel.select(timeout=1.0):
            s = key.fileobj
            st = pending[s]
            try:
                if ev & selectors.EVENT_WRITE:
                    st[0] = st[0][s.send(st[0]):]
                    if not st[0]:
                        sel.modify(s, selectors.EVENT_READ)
                    continue
                chunk = s.recv(65536)
            except (BlockingIOError, InterruptedError):
                continue
            except OSError:
                chunk = b""
            st[1] += chunk
            head_end = st[1].find(b"\r\n\r\n")
            if chunk and head_end < 0:
                continue
            if chunk:
                m = re.search(rb"\r\ncontent-length: *(\d+)", st[1][:head_end], re.I)
                if m and len(st[1]) < head_end + 4 + int(m.group(1)):
                    continue
                if st[1].startswith(b"HTTP/1.1 200 "):
                    ok += 1
            sel.unregister(s)
            del pending[s]
    return ok


class Target:
    def __init__(self, name, label, port, limit_port, procs, admin_port=None):
        self.name, self.label, self.port, self.limit_port = name, label, port, limit_port
        self.procs = procs  # the processes whose CPU and memory are the target's
        self.admin_port = admin_port  # lookupgate's admin listener

    def metrics(self):
        """From lookupgate's /metrics (counters since it started; {} for other targets or when
        it cannot be read): its responses by status class and refusals by kind, and the sums
        and counts of its duration histograms (the request, and its waits for Redis, the
        upstream, the audit log's durability and the log's fsyncs)."""
        if self.admin_port is None:
            return {}
        try:
            s = socket.create_connection(("127.0.0.1", self.admin_port), timeout=5)
            s.sendall(("GET /metrics HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer %s\r\n"
                       "Connection: close\r\n\r\n" % ADMIN_TOKEN).encode())
            data = b""
            while True:
                b = s.recv(65536)
                if not b:
                    break
                data += b
            s.close()
        except OSError:
            return {}
        out = {}
        for m in re.finditer(r'^lookupgate_(responses_total\{code="\w+"\}|'
                             r'refusals_total\{kind="[^"]+"\}|'
                             r'\w+_seconds_(?:sum|count)) ([\d.]+)$',
                             data.decode(errors="replace"), re.M):
            out[m.group(1)] = float(m.group(2))
        return out

    def pids(self):
        out = []
        for p in self.procs:
            out.extend(pid_tree(p.pid))
        return out


WAITS = (("Redis", "store_duration"), ("the upstream", "upstream_duration"),
         ("the audit log's durability", "audit_durability"))


def unexpected(t, a, refused):
    """How many answers of a mode were not the expected status (200 allowed, 429 refused).
    lookupgate's come from its own /metrics count of answers by status class (the differences
    over the wrk runs), which tells a 429 from a 503; wrk's count is of answers of 400 or more,
    all statuses together."""
    ans = a["answers"]
    if t.admin_port is not None and ans:
        total = sum(v for k, v in ans.items() if k.startswith("responses_total"))
        return int(total - ans.get('responses_total{code="%s"}' % ("4xx" if refused else "2xx"),
                                   0))
    return (a["requests"] - a["non2xx"]) if refused else a["non2xx"]


def waits_line(d):
    """lookupgate's mean waits, from the differences d of its /metrics over a run."""
    def mean(name):
        c = d.get("%s_seconds_count" % name, 0)
        return (1000.0 * d.get("%s_seconds_sum" % name, 0) / c if c else None), c
    total, n = mean("request_duration")
    if total is None:
        return None
    parts = []
    for label, name in WAITS:
        ms, c = mean(name)
        if ms is not None and c >= n / 100:
            parts.append("%s %.2f ms%s" % (label, ms,
                         " x %.2f" % (c / n) if abs(c / n - 1) > 0.05 else ""))
    fs, fc = mean("audit_fsync")
    fsync = " (each fsync of the log %.2f ms, for %.0f records)" % (
        fs, d.get("audit_durability_seconds_count", 0) / fc) if fs is not None else ""
    return "a request %.2f ms; waiting for %s%s" % (total, ", ".join(parts), fsync)


PERF_HZ = 1000

# A target whose runs lost this share of the machine (%) to the hypervisor (steal in
# /proc/stat) is named under its mode's table: on these shared VMs it was up to 62 %, and
# lookupgate's Redis calls then time out (runs E1 and E2, bench/results-2026-11-22-sixteenth-
# pass.txt).
STEAL_WARN = 10

# perf's names for the machine's processes and threads (comm, cut to 15 characters), grouped
PERF_GROUPS = (("lg-w", "lookupgate worker"), ("lg-audit", "lookupgate audit writer"),
               ("lookupgate", "lookupgate, other threads"), ("nginx", "nginx"),
               ("haproxy", "HAProxy"), ("redis-server", "Redis"), ("upstream-stub", "stub"),
               ("wrk", "wrk"), ("swapper", "idle"))


def perf_split(path):
    """Samples of a system-wide cpu-clock profile by process group and by kernel or user
    space: {(group, "kernel" | "user"): samples}."""
    out = subprocess.run(["perf", "report", "-i", path, "--no-children", "--sort", "comm,dso",
                          "-g", "none", "--stdio", "-n"], capture_output=True, text=True).stdout
    split = {}
    for line in out.splitlines():
        f = line.split()
        if len(f) < 4 or line.startswith("#") or not f[1].isdigit():
            continue
        comm, dso = f[2], " ".join(f[3:])
        group = next((g for prefix, g in PERF_GROUPS if comm.startswith(prefix)), "other")
        space = "kernel" if dso.startswith("[kernel") else "user"
        split[(group, space)] = split.get((group, space), 0) + int(f[1])
    return split


def main():
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-d", "--duration", type=int, default=10, help="seconds per wrk run")
    ap.add_argument("-c", "--conns", type=int, default=256,
                    help="wrk connections (lookupgate waits for two fsyncs per lookup, so it "
                         "needs more than nginx to saturate; at 64 it is latency-bound)")
    ap.add_argument("-t", "--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("-r", "--rounds", type=int, default=3)
    ap.add_argument("-w", "--workers", type=int, default=1,
                    help="worker threads / processes of every proxy")
    ap.add_argument("--accounts", type=int, default=1000)
    ap.add_argument("--idle", type=int, default=10000, help="connections in the idle mode")
    ap.add_argument("--modes", default="allowed,refused,idle",
                    help="any of allowed, refused, idle, flat (comma-separated)")
    ap.add_argument("--flat-seconds", type=int, default=600, help="length of the flat mode")
    ap.add_argument("--flat-conns", type=int, default=64, help="wrk connections in the flat mode")
    ap.add_argument("--targets", default="stub,lookupgate,nginx,haproxy",
                    help="which targets to run (stub is the ceiling)")
    ap.add_argument("--profile", metavar="FILE",
                    help="perf record lookupgate during its runs into FILE (perf report -i FILE)")
    ap.add_argument("--profile-all", metavar="PREFIX",
                    help="perf record the whole machine during every target's runs, into "
                         "PREFIX.TARGET.MODE.ROUND (perf report --sort comm,dso -i FILE), "
                         "and print each process's kernel and user time per request")
    ap.add_argument("--wrap", default="",
                    help="a command prefix for lookupgate, e.g. \"valgrind --tool=callgrind\"")
    ap.add_argument("--build", default=os.path.join(ROOT, "build"))
    ap.add_argument("--base-build", metavar="DIR",
                    help="also run the lookupgate of another build (e.g. a worktree of an "
                         "earlier commit) as the target lookupgate-base, interleaved with the "
                         "others: a change measured side by side")
    ap.add_argument("--base-set", action="append", default=[], metavar="KEY=JSON",
                    help="a setting of the base target's configuration (repeatable), e.g. "
                         "store.backend='\"memory\"' or audit.dir='\"/dev/shm/lg\"'; with "
                         "--base-build of the same build, what one part costs, side by side. "
                         "{TMP} in a value is the run's directory, where redis-server also "
                         "listens on the Unix socket redis.sock: "
                         "store.address='\"unix:{TMP}/redis.sock\"'")
    ap.add_argument("--allocs", action="store_true",
                    help="count lookupgate's heap allocations (LD_PRELOAD of the build's "
                         "liballoc-count.so) and print them per request under each table")
    ap.add_argument("--syscalls", action="store_true",
                    help="count each proxy's system calls while wrk runs (perf stat on the "
                         "syscall tracepoints of all its processes and threads) and print "
                         "them per request under each table")
    ap.add_argument("--audit-dir", default=None,
                    help="where lookupgate's audit log goes (default: under the build dir)")
    ap.add_argument("--redis-cpus", metavar="LIST",
                    help="pin redis-server to these CPUs (e.g. 1) and everything else (the "
                         "proxies, the upstream server, wrk, this harness) to the others: Redis off the "
                         "proxies' cores, as where it runs beside several gateways")
    ap.add_argument("--redis-module", action="store_true",
                    help="load the build's lookupgate-redis.so into redis-server: lookupgate "
                         "decides with LOOKUPGATE.ADMIT instead of the Lua script (with "
                         "--base-build of the same build and --base-set "
                         "store.quota_command='\"script\"', the two side by side)")
    args = ap.parse_args()
    args.build = os.path.abspath(args.build)
    raise_nofile()
    modes = args.modes.split(",")
    redis_cpus = None
    if args.redis_cpus:
        try:
            redis_cpus = {int(c) for c in args.redis_cpus.split(",")}
        except ValueError:
            raise SystemExit("--redis-cpus %s: a comma-separated list of CPU numbers"
                             % args.redis_cpus)
        rest = os.sched_getaffinity(0) - redis_cpus
        if not redis_cpus <= os.sched_getaffinity(0):
            raise SystemExit("--redis-cpus %s: this process may use only CPUs %s"
                             % (args.redis_cpus, sorted(os.sched_getaffinity(0))))
        if not rest:
            raise SystemExit("--redis-cpus %s: leaves no CPU for the proxies, the upstream server and wrk"
                             % args.redis_cpus)
        os.sched_setaffinity(0, rest)  # inherited by everything started below

    tmp = tempfile.mkdtemp(prefix="lg-bench-")
    args.alloc_dir = tmp
    audit_parent = tempfile.mkdtemp(prefix="bench-audit-", dir=os.path.abspath(args.audit_dir or args.build))
    procs = []

    def start(cmd, cpus=None, **kw):
        def pre():
            raise_nofile()
            if cpus:
                os.sched_setaffinity(0, cpus)  # before exec: every thread it makes inherits it
        p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, preexec_fn=pre, **kw)
        procs.append(p)
        return p

    try:
        ports = {k: free_port() for k in ("redis", "stub", "lg", "nginx", "nginx_limit",
                                           "haproxy", "haproxy_limit", "lg_admin", "base",
                                           "base_admin")}
        redis = start(["redis-server", "--port", str(ports["redis"]), "--bind", "127.0.0.1",
                       "--unixsocket", os.path.join(tmp, "redis.sock"), "--unixsocketperm", "700",
                       "--save", "", "--appendonly", "no", "--dir", tmp,
                       "--logfile", os.path.join(tmp, "redis.log")] +
                      (["--loadmodule", os.path.join(args.build, "lookupgate-redis.so")]
                       if args.redis_module else []), cpus=redis_cpus)
        stub = start([os.path.join(args.build, "upstream-stub"), "--port", str(ports["stub"])],
                     stderr=subprocess.DEVNULL)
        write_policy(os.path.join(tmp, "policy.json"), args.accounts)
        subprocess.run([os.path.join(args.build, "lookupgate-audit"), "keygen", "--out",
                        os.path.join(tmp, "keys")], check=True, stdout=subprocess.DEVNULL)
        def alloc_env(name):
            if not args.allocs:
                return None
            shim = os.path.join(args.build, "liballoc-count.so")
            if not os.path.exists(shim):
                raise SystemExit("--allocs needs %s (a build without sanitizers)" % shim)
            return dict(os.environ, LD_PRELOAD=shim,
                        LG_ALLOC_COUNT=os.path.join(tmp, "allocs." + name))

        lg_cfg = {
            "workers": args.workers, "log": {"level": "warn"}, "instance": "bench",
            "policy": os.path.join(tmp, "policy.json"),
            "listeners": [{"address": "127.0.0.1:%d" % ports["lg"]}],
            "upstream": {"url": "http://127.0.0.1:%d" % ports["stub"], "pool_size": 256,
                         "max_requests_per_connection": 100000000},
            "limits": {"max_connections": 60000, "max_connections_per_client": 60000,
                       "idle_timeout_ms": 300000, "requests_per_connection": 100000000},
            "store": {"address": "127.0.0.1:%d" % ports["redis"]},
            "audit": {"dir": os.path.join(audit_parent, "audit"),
                      "signing_key": os.path.join(tmp, "keys", "signing.key"),
                      "cid_key": os.path.join(tmp, "keys", "cid.key"), "min_free_mb": 1},
            "admin": {"address": "127.0.0.1:%d" % ports["lg_admin"],
                      "tokens": [{"name": "bench",
                                  "sha256": hashlib.sha256(ADMIN_TOKEN.encode()).hexdigest()}]},
        }
        with open(os.path.join(tmp, "lookupgate.json"), "w") as f:
            json.dump(lg_cfg, f)
        lg_err = open(os.path.join(tmp, "lookupgate.err"), "wb")
        lg = start(args.wrap.split() + [os.path.join(args.build, "lookupgate"), "-c",
                    os.path.join(tmp, "lookupgate.json")], stderr=lg_err,
                   env=alloc_env("lookupgate"))
        values = {"WORKERS": args.workers, "TMP": tmp, "NOFILE": nofile(),
                  "MAXCONN": nofile() // 2 - 100, "STUB_PORT": ports["stub"],
                  "PER_MINUTE": 1000000, "PER_DAY": 1000000000}
        targets = [Target("stub", "stub (no proxy)", ports["stub"], None, [stub]),
                   Target("lookupgate", "lookupgate (full policy)", ports["lg"], ports["lg"],
                          [lg], ports["lg_admin"])]
        if args.base_build:
            args.base_build = os.path.abspath(args.base_build)
            base_cfg = copy.deepcopy(dict(lg_cfg, instance="base",
                            listeners=[{"address": "127.0.0.1:%d" % ports["base"]}],
                            admin=dict(lg_cfg["admin"],
                                       address="127.0.0.1:%d" % ports["base_admin"]),
                            audit=dict(lg_cfg["audit"], dir=os.path.join(audit_parent, "base"))))
            for kv in args.base_set:
                key, _, val = kv.partition("=")
                *path, last = key.split(".")
                node = base_cfg
                for k in path:
                    node = node.setdefault(k, {})
                node[last] = json.loads(val.replace("{TMP}", tmp))
            if os.path.exists(base_cfg["audit"]["dir"]):  # made by this run, removed after it
                raise SystemExit("--base-set audit.dir: %s exists" % base_cfg["audit"]["dir"])
            args.base_audit = base_cfg["audit"]["dir"]
            with open(os.path.join(tmp, "base.json"), "w") as f:
                json.dump(base_cfg, f)
            base = start([os.path.join(args.base_build, "lookupgate"), "-c",
                          os.path.join(tmp, "base.json")],
                         stderr=open(os.path.join(tmp, "base.err"), "wb"),
                         env=alloc_env("lookupgate-base"))
            label = "lookupgate (base: %s)" % ", ".join(args.base_set) if args.base_set \
                else "lookupgate (base build)"
            targets.append(Target("lookupgate-base", label, ports["base"],
                                  ports["base"], [base], ports["base_admin"]))
        if shutil.which("nginx"):
            fill(os.path.join(ROOT, "bench", "peers", "nginx.conf.in"),
                 os.path.join(tmp, "nginx.conf"),
                 dict(values, PORT=ports["nginx"], LIMIT_PORT=ports["nginx_limit"]))
            ng = start(["nginx", "-p", tmp, "-e", os.path.join(tmp, "nginx-error.log"), "-c",
                        os.path.join(tmp, "nginx.conf")], stderr=subprocess.DEVNULL)
            targets.append(Target("nginx", "nginx (plain / limit_req)", ports["nginx"],
                                   ports["nginx_limit"], [ng]))
        else:
            print("nginx is not installed: no nginx column (apt-get install nginx-light)")
        if shutil.which("haproxy"):
            fill(os.path.join(ROOT, "bench", "peers", "haproxy.cfg.in"),
                 os.path.join(tmp, "haproxy.cfg"),
                 dict(values, PORT=ports["haproxy"], LIMIT_PORT=ports["haproxy_limit"]))
            hp = start(["haproxy", "-db", "-f", os.path.join(tmp, "haproxy.cfg")],
                       stderr=open(os.path.join(tmp, "haproxy.err"), "wb"))
            targets.append(Target("haproxy", "HAProxy (stick tables)", ports["haproxy"],
                                  ports["haproxy_limit"], [hp]))
        else:
            print("haproxy is not installed: no HAProxy column (apt-get install haproxy)")
        targets = [t for t in targets
                   if t.name in args.targets.split(",") or t.name == "lookupgate-base"]
        for t in targets:
            wait_port(t.port, t.procs[0])
            if t.limit_port:
                wait_port(t.limit_port, t.procs[0])
        for t in targets:
            st = one_status(t.port, token(1))
            if st != 200:
                raise SystemExit("%s answered %d to an allowed lookup" % (t.name, st))

        print("lookupgate %s; %s; %s; redis %s%s; wrk %d threads, %d connections, %d s x %d "
              "rounds; %d worker(s) per proxy; %d cores%s" % (
                  subprocess.run([os.path.join(args.build, "lookupgate"), "--version"],
                                 capture_output=True, text=True).stdout.strip(),
                  subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip()
                  if shutil.which("nginx") else "no nginx",
                  subprocess.run(["haproxy", "-v"], capture_output=True,
                                 text=True).stdout.split("\n")[0][:24]
                  if shutil.which("haproxy") else "no haproxy",
                  redis_info(ports["redis"], "server").split("redis_version:")[1].split()[0],
                  " with the lookupgate module" if args.redis_module else "",
                  args.threads, args.conns, args.duration, args.rounds, args.workers,
                  os.cpu_count(), "" if not redis_cpus else
                  " (redis-server on CPU %s, everything else on CPU %s)" % (
                      ",".join(map(str, sorted(redis_cpus))),
                      ",".join(map(str, sorted(os.sched_getaffinity(0)))))))
        failed = False
        for mode in modes:
            if mode == "idle":
                run_idle(targets, args)
            elif mode == "flat":
                if not run_flat(targets, args):
                    failed = True
            else:
                run_load(mode, targets, args, redis, ports["redis"], stub)
        if lg.poll() is not None:
            raise SystemExit("lookupgate exited during the run")
        if failed:
            raise SystemExit("lookupgate's RSS was not flat")
    finally:
        for p in reversed(procs):
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(15)
            except subprocess.TimeoutExpired:
                p.kill()
        base_audit = getattr(args, "base_audit", os.path.join(audit_parent, "base"))
        for audit, who in ((os.path.join(audit_parent, "audit"), "lookupgate's"),
                           (base_audit, "the base build's")):
            if os.path.isdir(audit):
                r = subprocess.run([os.path.join(args.build, "lookupgate-audit"), "verify",
                                    audit, "--pubkey", os.path.join(tmp, "keys", "signing.pub")],
                                   capture_output=True, text=True)
                print("\n%s audit log: %s" % (who, (r.stdout.strip().split("\n") or [""])[0]))
        if sys.exc_info()[0] is not None:  # keep the logs of a failed run
            print("logs kept in %s" % tmp, file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(audit_parent, ignore_errors=True)
        if not base_audit.startswith(audit_parent + os.sep):
            shutil.rmtree(base_audit, ignore_errors=True)  # a --base-set audit.dir of this run


def run_load(mode, targets, args, redis, redis_port, stub):
    refused = mode == "refused"
    if refused:
        targets = [t for t in targets if t.limit_port]
        env = {"LG_BENCH_TOKEN": OVER_TOKEN}
        for t in targets:  # use up the one request a minute, then every one is refused
            one_status(t.limit_port, OVER_TOKEN)
            st = one_status(t.limit_port, OVER_TOKEN)
            if st != 429:
                raise SystemExit("%s answered %d on the refused path, not 429" % (t.name, st))
    else:
        env = {"LG_BENCH_ACCOUNTS": str(args.accounts)}
    acc = {t.name: {"requests": 0, "seconds": 0.0, "non2xx": 0, "errors": 0, "p50": [],
                    "p99": [], "cpu": 0.0, "redis_cpu": 0.0, "scripts": 0, "allocs": 0,
                    "syscalls": {}, "threads": {}, "answers": {}, "waits": {}, "stub_cpu": 0.0,
                    "wrk_cpu": 0.0, "busy": 0, "ticks": 0, "steal": 0, "perf": {}}
           for t in targets}
    for rnd in range(args.rounds):
        order = targets[rnd % len(targets):] + targets[:rnd % len(targets)]
        for t in order:
            port = t.limit_port if refused else t.port
            pids = t.pids()
            perf = None
            if args.profile and t.name == "lookupgate":
                perf = subprocess.Popen(["perf", "record", "-q", "-g", "-F", "2000", "-o",
                                         "%s.%s.%d" % (args.profile, mode, rnd), "-p",
                                         str(t.procs[0].pid)], stdout=subprocess.DEVNULL,
                                        stderr=subprocess.DEVNULL)
            elif args.profile_all:
                perf = subprocess.Popen(["perf", "record", "-q", "-a", "-F", str(PERF_HZ), "-o",
                                         "%s.%s.%s.%d" % (args.profile_all, t.name, mode, rnd)],
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            c0, r0, s0 = cpu_s(pids), cpu_s([redis.pid]), script_calls(redis_port)
            lg = t.name.startswith("lookupgate")
            th0 = thread_cpu_s(t.procs[0].pid) if lg else {}
            ans0 = t.metrics()
            m0 = alloc_count(t, args)
            counter = SyscallCounter(pids) if args.syscalls else None
            st0, k0, (b0, all0, sl0) = cpu_s([stub.pid]), children_cpu_s(), machine_ticks()
            w = run_wrk(port, args, env)
            b1, all1, sl1 = machine_ticks()
            acc[t.name]["busy"] += b1 - b0
            acc[t.name]["ticks"] += all1 - all0
            acc[t.name]["steal"] += sl1 - sl0
            acc[t.name]["wrk_cpu"] += children_cpu_s() - k0
            if t.name != "stub":
                acc[t.name]["stub_cpu"] += cpu_s([stub.pid]) - st0
            acc[t.name]["allocs"] += alloc_count(t, args) - m0
            if counter:
                for k, v in counter.stop().items():
                    acc[t.name]["syscalls"][k] = acc[t.name]["syscalls"].get(k, 0) + v
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait()
                if args.profile_all:
                    for k, v in perf_split("%s.%s.%s.%d" % (args.profile_all, t.name, mode,
                                                             rnd)).items():
                        acc[t.name]["perf"][k] = acc[t.name]["perf"].get(k, 0) + v
            a = acc[t.name]
            for k, v in t.metrics().items():
                into = a["waits"] if k.endswith(("_sum", "_count")) else a["answers"]
                if v - ans0.get(k, 0):
                    into[k] = into.get(k, 0) + v - ans0.get(k, 0)
            for k, v in (thread_cpu_s(t.procs[0].pid) if lg else {}).items():
                a["threads"][k] = a["threads"].get(k, 0.0) + v - th0.get(k, 0.0)
            a["cpu"] += cpu_s(pids) - c0
            a["redis_cpu"] += cpu_s([redis.pid]) - r0
            a["scripts"] += script_calls(redis_port) - s0
            for k in ("requests", "seconds", "non2xx", "errors"):
                a[k] += w[k]
            a["p50"].append(w["p50"])
            a["p99"].append(w["p99"])
    base = acc.get("nginx")
    base_rps = base["requests"] / base["seconds"] if base else None
    print("\n## %s path%s\n" % (mode, " (every answer 429 but one a minute: the quota is 1 a "
                                 "minute)" if refused else " (every answer 200)"))
    print("| target | requests/s | p50 ms | p99 ms | proxy CPU µs/req | redis CPU µs/req "
          "| redis calls/req | peak RSS MiB | %s | ratio to nginx |" % (
              "answers not 429" if refused else "answers not 200"))
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for t in targets:
        a = acc[t.name]
        rps = a["requests"] / a["seconds"]
        wrong = unexpected(t, a, refused)
        print("| %s | %.0f | %.2f | %.2f | %.1f | %.1f | %.2f | %.1f | %d | %s |" % (
            t.label, rps, statistics.median(a["p50"]), statistics.median(a["p99"]),
            1e6 * a["cpu"] / max(a["requests"], 1), 1e6 * a["redis_cpu"] / max(a["requests"], 1),
            a["scripts"] / max(a["requests"], 1), status_kib(t.pids(), "VmHWM") / 1024.0,
            wrong + a["errors"], "%.2f" % (rps / base_rps) if base_rps else "-"))
    if any(t.name.startswith("lookupgate") for t in targets):
        print("\nlookupgate's CPU µs per request by thread (user + system; lg-w* the workers, "
              "lg-audit the audit writer): " + "; ".join(
                  "%s %s" % (t.name, ", ".join(
                      "%s %.1f" % (k, 1e6 * v / max(acc[t.name]["requests"], 1))
                      for k, v in sorted(acc[t.name]["threads"].items())
                      if 1e6 * v / max(acc[t.name]["requests"], 1) >= 0.05))
                  for t in targets if t.name.startswith("lookupgate")))
    print("\nthe machine while each target ran: the share of its %d cores in use, and what that "
          "use was per request, CPU µs (\"other\" is what no process listed took: the rest of "
          "the machine, and kernel work in no process's time):" % os.cpu_count())
    for t in targets:
        a = acc[t.name]
        n = max(a["requests"], 1)
        busy_s = a["busy"] / TICK
        parts = [("proxy", a["cpu"]), ("Redis", a["redis_cpu"]), ("stub", a["stub_cpu"]),
                 ("wrk", a["wrk_cpu"])]
        if t.name == "stub":
            parts = [("stub", a["cpu"]), ("Redis", a["redis_cpu"]), ("wrk", a["wrk_cpu"])]
        split = ""
        if base and t.name != "nginx" and base["busy"] and a["busy"]:
            # requests/s = busy share x cores / machine CPU per request, so the ratio to nginx
            # is the product of the two ratios below
            share = (a["busy"] / a["ticks"]) / (base["busy"] / base["ticks"])
            per_req = (base["busy"] / max(base["requests"], 1)) / (a["busy"] / n)
            split = "; its ratio to nginx, %.2f = %.2f (busy share) x %.2f (machine CPU per " \
                "request)" % (share * per_req, share, per_req)
        steal = 100.0 * a["steal"] / max(a["ticks"], 1)
        print("- %s: %.0f %% busy%s; %.1f µs a request = %s + other %.1f%s" % (
            t.name, 100.0 * a["busy"] / max(a["ticks"], 1),
            " (%.0f %% taken by the hypervisor)" % steal if steal >= 1 else "",
            1e6 * busy_s / n,
            " + ".join("%s %.1f" % (k, 1e6 * v / n) for k, v in parts),
            1e6 * (busy_s - sum(v for _, v in parts)) / n, split))
    disturbed = [t.name for t in targets
                 if acc[t.name]["steal"] >= STEAL_WARN / 100.0 * max(acc[t.name]["ticks"], 1)]
    if disturbed:
        print("\nDISTURBED: the hypervisor took %d %% or more of the machine while %s ran; "
              "this mode's ratios are not a measurement of the proxies. Run it again." % (
                  STEAL_WARN, " and ".join(disturbed)))
    if args.profile_all:
        print("\nthe machine's time by process, kernel + user space, µs per request (perf "
              "record -a, cpu-clock at %d Hz a core: a sample is %.0f µs of a core):" % (
                  PERF_HZ, 1e6 / PERF_HZ))
        for t in targets:
            a = acc[t.name]
            n = max(a["requests"], 1)
            groups = []
            for _, g in PERF_GROUPS + ((None, "other"),):
                k, u = a["perf"].get((g, "kernel"), 0), a["perf"].get((g, "user"), 0)
                if (k + u) * 1e6 / PERF_HZ / n >= 0.05:
                    groups.append("%s %.1f + %.1f" % (g, k * 1e6 / PERF_HZ / n,
                                                      u * 1e6 / PERF_HZ / n))
            print("- %s: %s" % (t.name, "; ".join(groups)))
    if refused and any(t.admin_port is None for t in targets):
        print("\n(answers not 429: lookupgate's from its own count of answers by status class, "
              "not 4xx; the others' from wrk's, which counts every status of 400 or more as "
              "one, so there it is the answers below 400.)")
    for t in targets:
        a = acc[t.name]
        wrong = unexpected(t, a, refused)
        if t.admin_port is not None and wrong + a["errors"]:
            print("\n%s's own count of its answers while wrk ran (/metrics), as %d were not %d: %s"
                  % (t.name, wrong + a["errors"], 429 if refused else 200,
                     ", ".join("%s %d" % (k, v) for k, v in sorted(a["answers"].items()))))
    for t in targets:
        line = waits_line(acc[t.name]["waits"])
        if line:
            print("\n%s, its own mean durations while wrk ran (/metrics): %s" % (t.name, line))
    if args.allocs:
        print("\nheap allocations per request (malloc, calloc, realloc, memalign calls of the "
              "whole process while wrk ran): " + "; ".join(
                  "%s %.2f" % (t.name, acc[t.name]["allocs"] / max(acc[t.name]["requests"], 1))
                  for t in targets if t.name.startswith("lookupgate")))
    if args.syscalls:
        print("\nsystem calls per request (every process and thread of the proxy while wrk "
              "ran; the named ones, then all):")
        for t in targets:
            a = acc[t.name]
            n = max(a["requests"], 1)
            named = ", ".join("%s %.2f" % (k, v / n) for k, v in
                              sorted(a["syscalls"].items(), key=lambda kv: -kv[1])
                              if k != "all" and v / n >= 0.01)
            print("- %s: %s; all %.2f" % (t.name, named, a["syscalls"].get("all", 0) / n))


# The calls a proxy makes per request, and what it waits and flushes with; all the others are
# counted together in "all".
SYSCALLS = ("read", "readv", "recvfrom", "recvmsg", "write", "writev", "sendto", "sendmsg",
            "ioctl", "epoll_wait", "epoll_ctl", "futex", "fdatasync", "pwrite64", "accept4",
            "close", "clock_nanosleep", "getsockopt", "setsockopt")


class SyscallCounter:
    """perf stat on the syscall tracepoints of a set of processes (all their threads)."""

    def __init__(self, pids):
        events = ["raw_syscalls:sys_enter"] + ["syscalls:sys_enter_" + c for c in SYSCALLS]
        self.proc = subprocess.Popen(
            ["perf", "stat", "-x", ",", "--no-big-num", "-e", ",".join(events), "-p",
             ",".join(str(p) for p in pids)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        time.sleep(0.2)  # perf attaches before wrk starts

    def stop(self):
        self.proc.send_signal(signal.SIGINT)
        _, err = self.proc.communicate()
        counts = {}
        for line in err.splitlines():
            f = line.split(",")
            if len(f) < 3 or not f[0].isdigit():
                continue
            name = f[2].split(":")[-1]
            counts["all" if name == "sys_enter" else name.replace("sys_enter_", "")] = int(f[0])
        if "all" not in counts:
            raise SystemExit("--syscalls: perf stat counted nothing: %s" % err.strip()[-300:])
        return counts


def alloc_count(t, args):
    """The allocation counter of a lookupgate target started with --allocs, else 0."""
    if not args.allocs or not t.name.startswith("lookupgate"):
        return 0
    with open(os.path.join(args.alloc_dir, "allocs." + t.name), "rb") as f:
        return int.from_bytes(f.read(8), "little")


def run_idle(targets, args):
    n_slow = min(args.idle, 2000)
    print("\n## idle keep-alive connections (%d per target, each after one lookup), then slow "
          "clients (%d more, each with a request head sent but for its end)\n"
          % (args.idle, n_slow))
    print("| target | RSS before MiB | RSS with the idle connections MiB | KiB per idle connection "
          "| answered 200 | RSS with the slow clients too MiB | KiB per slow client |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for t in targets:
        if t.name == "stub":
            continue
        pids = t.pids()
        before = status_kib(pids, "VmRSS")
        socks, ok = idle_connections(t.port, args.idle)
        time.sleep(2.0)
        idle = status_kib(pids, "VmRSS")
        # Opened while the idle ones stay open: nothing freed yet for them to reuse.
        slow = partial_connections(t.port, n_slow)
        time.sleep(2.0)
        after = status_kib(pids, "VmRSS")
        for s in socks + slow:
            s.close()
        print("| %s | %.1f | %.1f | %.2f | %d | %.1f | %.2f |" % (
            t.label, before / 1024.0, idle / 1024.0, (idle - before) / len(socks), ok,
            after / 1024.0, (after - idle) / n_slow))
        time.sleep(1.0)


def run_flat(targets, args):
    """lookupgate under load for args.flat_seconds in 30 s slices; True if RSS stayed flat."""
    t = next((t for t in targets if t.name == "lookupgate"), None)
    if t is None:
        raise SystemExit("the flat mode needs the lookupgate target")
    sl = argparse.Namespace(**dict(vars(args), duration=30, conns=args.flat_conns))
    n = max(3, args.flat_seconds // 30)
    print("\n## flat: lookupgate for %d s (%d slices of 30 s, %d connections; every fourth "
          "slice refused)\n" % (n * 30, n, args.flat_conns))
    print("| t (s) | path | requests/s | p99 ms | RSS MiB | open fds |")
    print("|---:|---|---:|---:|---:|---:|")
    pid = t.procs[0].pid
    rss = []
    total = 0
    for i in range(n):
        refused = i % 4 == 3
        env = {"LG_BENCH_TOKEN": OVER_TOKEN} if refused else \
            {"LG_BENCH_ACCOUNTS": str(args.accounts)}
        w = run_wrk(t.port, sl, env)
        total += w["requests"]
        kib = status_kib(t.pids(), "VmRSS")
        fds = len(os.listdir("/proc/%d/fd" % pid))
        rss.append(kib)
        print("| %d | %s | %.0f | %.2f | %.1f | %d |" % (
            (i + 1) * 30, "refused" if refused else "allowed", w["requests"] / w["seconds"],
            w["p99"], kib / 1024.0, fds))
    warm = rss[2:]  # after the first minute
    lo, hi = min(warm), max(warm)
    flat = hi - lo <= max(2048, lo * 0.05)
    print("\n%d requests; RSS after the first minute %.1f .. %.1f MiB (%+.1f MiB first to "
          "last): %s" % (total, lo / 1024.0, hi / 1024.0, (warm[-1] - warm[0]) / 1024.0,
                         "flat" if flat else "NOT FLAT"))
    return flat


if __name__ == "__main__":
    main()
