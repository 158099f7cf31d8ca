"""Integration-test harness: starts the real lookupgate binary and the stub upstream on free
loopback ports, talks to them over real sockets, and reads what the stub received.

Every process started here is stopped by the test; a gateway stopped with SIGTERM must exit 0
and its log must hold no sanitizer report."""

import datetime
import hashlib
import http.client
import json
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
import unittest

BUILD = os.environ.get("LG_BUILD_DIR", os.path.join(os.path.dirname(__file__), "..", "..", "build"))
SOURCE = os.environ.get("LG_SOURCE_DIR", os.path.join(os.path.dirname(__file__), "..", ".."))
SANITIZER_RE = re.compile(rb"ERROR: AddressSanitizer|ERROR: LeakSanitizer|runtime error:")

# The lookupgate Redis module (LOOKUPGATE.ADMIT), built without sanitizers in every build.
REDIS_MODULE = os.path.abspath(os.path.join(BUILD, "lookupgate-redis.so"))

# The credential of the catch-all test account used by the proxy-core suites.
TEST_TOKEN = "lg_test-core-token"
AUTH = "Bearer " + TEST_TOKEN

# The admin token every test gateway accepts, and the admin's name in audit records.
ADMIN_TOKEN = "lg_test-admin-token"
ADMIN_NAME = "ops.tester"


def free_port():
    """A port free now, and not one this process was handed before: the kernel may give the
    same ephemeral port to two bind(0)s in a row once the first socket is closed (a benchmark
    once started lookupgate and Redis on one port)."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _ports_given:
            _ports_given.add(port)
            return port


_ports_given = set()


def wait_port(port, proc=None, timeout=10.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError("process exited with %s before listening" % proc.returncode)
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.02)
    raise RuntimeError("port %d did not open" % port)


def resp_encode(args):
    out = b"*%d\r\n" % len(args)
    for a in args:
        a = a if isinstance(a, bytes) else str(a).encode()
        out += b"$%d\r\n%s\r\n" % (len(a), a)
    return out


def resp_read(f):
    line = f.readline()
    if not line:
        raise ConnectionError("redis closed the connection")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RedisError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if kind == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise ValueError("bad RESP line %r" % line)


class RedisError(str):
    """An error reply (returned, not raised, so tests can assert on it)."""


class Redis:
    """A real redis-server on a free loopback port, with a minimal RESP client."""

    def __init__(self, tmp, port=None, args=()):
        self.tmp = tmp
        self.port = port or free_port()
        self.args = list(args)
        self.start()

    def start(self):
        self.log = os.path.join(self.tmp, "redis-%d.log" % self.port)
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", self.tmp, "--logfile", self.log] + self.args,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_port(self.port, self.proc)
        # Redis accepts connections while it still loads an AOF or RDB ("-LOADING").
        deadline = time.time() + 30
        while str(self.cmd("PING")).startswith("LOADING") and time.time() < deadline:
            time.sleep(0.02)

    def cmd(self, *args, timeout=5.0):
        with socket.create_connection(("127.0.0.1", self.port), timeout=timeout) as s:
            s.sendall(resp_encode(args))
            return resp_read(s.makefile("rb"))

    def state(self, now_ms=None):
        """Every key with its value, for before/after comparisons. Sorted-set entries older
        than the 60 s window at now_ms are left out (trimming them changes no count)."""
        out = {}
        for k in sorted(self.cmd("KEYS", "*")):
            t = self.cmd("TYPE", k)
            if t == "zset":
                lo = "(%d" % (now_ms - 60000) if now_ms is not None else "-inf"
                live = self.cmd("ZRANGEBYSCORE", k, lo, "+inf", "WITHSCORES")
                if live:
                    out[k] = live
            elif t == "hash":
                v = self.cmd("HGETALL", k)
                out[k] = dict(zip(v[::2], v[1::2]))
            elif t == "string" and not k.endswith(":last"):
                out[k] = self.cmd("GET", k)
        return out

    def calls(self, command):
        """How many times command ran, from INFO commandstats (0 if never)."""
        m = re.search(r"^cmdstat_%s:calls=(\d+)" % re.escape(command.lower()),
                      self.cmd("INFO", "commandstats"), re.M)
        return int(m.group(1)) if m else 0

    def signal(self, sig):
        self.proc.send_signal(sig)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()

    def kill(self):
        self.proc.kill()
        self.proc.wait()


class Stub:
    """The upstream stub with its request log."""

    def __init__(self, tmp):
        self.port = free_port()
        self.log = os.path.join(tmp, "stub-%d.log" % self.port)
        open(self.log, "w").close()
        self.proc = subprocess.Popen(
            [os.path.join(BUILD, "upstream-stub"), "--port", str(self.port), "--log", self.log],
            stdout=subprocess.DEVNULL, stderr=open(self.log + ".err", "w"))
        wait_port(self.port, self.proc)

    def received(self):
        out = []
        with open(self.log) as f:
            for line in f:
                rec = json.loads(line)
                rec["raw"] = bytes.fromhex(rec["raw_hex"])
                out.append(rec)
        return out

    def count(self):
        return len(self.received())

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(5)


def sha256_hex(token):
    return hashlib.sha256(token.encode()).hexdigest()


def credential(token, issued=None, expires=None, days=80):
    """A credential entry for token. issued defaults to ten days ago, so the suites never run
    into an expiry; expires defaults to issued + days."""
    start = datetime.date.fromisoformat(issued) if issued else datetime.date.today() - datetime.timedelta(days=10)
    return {"sha256": sha256_hex(token), "issued": issued or start.isoformat(),
            "expires": expires or (start + datetime.timedelta(days=days)).isoformat()}


def core_policy():
    """A policy for the proxy-core suites: every method on every path is an operation, granted
    to one account (TEST_TOKEN) with quotas that never bind."""
    methods = ["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
    return {
        "operations": {"any.%s" % m.lower(): {"method": m, "path": "/{rest*}"} for m in methods},
        "roles": {"all": {"operations": ["any.%s" % m.lower() for m in methods],
                          "quota": {"per_minute": 1000000, "per_day": 1000000000}}},
        "units": {"test": {}},
        "accounts": [{"id": "test.core", "unit": "test", "roles": ["all"],
                      "credentials": [credential(TEST_TOKEN)]}],
    }


def audit_keys(tmp):
    """Audit keys (signing.key, signing.pub, cid.key) in tmp/keys, made once with the real
    lookupgate-audit keygen."""
    d = os.path.join(tmp, "keys")
    if not os.path.exists(os.path.join(d, "signing.key")):
        os.makedirs(d, mode=0o700, exist_ok=True)
        subprocess.run([os.path.join(BUILD, "lookupgate-audit"), "keygen", "--out", d],
                       check=True, stdout=subprocess.DEVNULL)
    return d


def audit_tool(*args, check=False, timeout=120):
    """Runs lookupgate-audit; returns (exit status, stdout + stderr as text)."""
    p = subprocess.run([os.path.join(BUILD, "lookupgate-audit")] + list(args),
                       stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=timeout)
    out = p.stdout.decode(errors="replace")
    if check and p.returncode != 0:
        raise AssertionError("lookupgate-audit %s failed:\n%s" % (" ".join(args), out))
    return p.returncode, out


def read_audit(audit_dir, checkpoints=False):
    """Every line of every segment in audit_dir, parsed, in segment and line order (the NUL
    bytes of the zero-filled space after the records of a segment being written left out)."""
    names = sorted((n for n in os.listdir(audit_dir) if n.endswith(".jsonl")),
                   key=lambda n: (n.rsplit("-", 2)[0], int(n.rsplit("-", 1)[1].split(".")[0])))
    out = []
    for n in names:
        with open(os.path.join(audit_dir, n), "rb") as f:
            for line in f.read().rstrip(b"\0").split(b"\n"):
                if not line:
                    continue
                rec = json.loads(line)
                if checkpoints or "seq" in rec:
                    out.append(rec)
    return out


def default_config(listen_port, upstream_port):
    return {
        "workers": 1,
        "log": {"level": "info"},
        "listeners": [{"address": "127.0.0.1:%d" % listen_port}],
        "upstream": {"url": "http://127.0.0.1:%d" % upstream_port,
                     "connect_timeout_ms": 1000, "response_timeout_ms": 3000},
        # The suites send many refused credentials from 127.0.0.1 on purpose; the D12 throttle
        # (tested on its own in test_resources) would otherwise answer them with 429.
        "limits": {"auth_failures_per_minute": 0},
        "store": {"backend": "memory"},
    }


def merge(base, over):
    for k, v in over.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            merge(base[k], v)
        else:
            base[k] = v
    return base


class Gateway:
    """A lookupgate process with a generated config."""

    def __init__(self, tmp, upstream_port, overrides=None, preexec_fn=None, wait=True, tls=None,
                 policy=None, prefix=(), env=None):
        self.port = free_port()
        self.tmp = tmp
        self.config = default_config(self.port, upstream_port)
        keys = audit_keys(tmp)
        self.config["audit"] = {"dir": os.path.join(tmp, "audit-%d" % self.port),
                                "signing_key": os.path.join(keys, "signing.key"),
                                "cid_key": os.path.join(keys, "cid.key"),
                                "checkpoint_ms": 200, "min_free_mb": 0}
        self.config["instance"] = "gw-%d" % self.port
        self.admin_port = free_port()
        self.config["admin"] = {"address": "127.0.0.1:%d" % self.admin_port,
                                "tokens": [{"name": ADMIN_NAME, "sha256": sha256_hex(ADMIN_TOKEN)}]}
        self.config = merge(self.config, overrides or {})
        self.audit_dir = self.config["audit"]["dir"]
        self.pubkey = os.path.join(keys, "signing.pub")
        if tls is not None:
            self.config["listeners"][0]["tls"] = tls
        self.policy_path = os.path.join(tmp, "policy-%d.json" % self.port)
        self.write_policy(policy if policy is not None else core_policy())
        self.config.setdefault("policy", self.policy_path)
        self.config_path = os.path.join(tmp, "lookupgate-%d.json" % self.port)
        with open(self.config_path, "w") as f:
            json.dump(self.config, f, indent=2)
        self.errlog = os.path.join(tmp, "lookupgate-%d.err" % self.port)
        penv = dict(os.environ)
        penv.setdefault("ASAN_OPTIONS", "detect_leaks=1:abort_on_error=0")
        penv.setdefault("UBSAN_OPTIONS", "print_stacktrace=1")
        penv.update(env or {})
        self.proc = subprocess.Popen(
            list(prefix) + [os.path.join(BUILD, "lookupgate"), "-c", self.config_path],
            stdout=subprocess.DEVNULL, stderr=open(self.errlog, "wb"), env=penv,
            preexec_fn=preexec_fn)
        if wait:
            wait_port(self.port, self.proc)
            if self.config.get("admin", {}).get("address"):
                wait_port(self.admin_port, self.proc)  # bound by the main thread, after the workers

    def write_policy(self, policy):
        """Writes the policy file (a dict, or raw text) the gateway reads at start and reload."""
        with open(self.policy_path, "w") as f:
            f.write(policy if isinstance(policy, str) else json.dumps(policy, indent=2))

    def reload(self, policy=None, timeout=5.0):
        """Optionally rewrites the policy, sends SIGHUP and waits for the outcome in the log.
        Returns True if the new policy was loaded, False if it was refused."""
        if policy is not None:
            self.write_policy(policy)
        log = self.log_text()
        ok0, bad0 = log.count(b"policy reload ok:"), log.count(b"policy reload refused;")
        self.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + timeout
        while time.time() < deadline:
            log = self.log_text()
            ok, bad = log.count(b"policy reload ok:"), log.count(b"policy reload refused;")
            if ok > ok0 or bad > bad0:
                time.sleep(0.1)  # the workers take the new snapshot through their pipes
                return ok > ok0
            time.sleep(0.02)
        raise AssertionError("no reload outcome in the log")

    def admin(self, path, method="GET", body=None, token=ADMIN_TOKEN, headers=None,
              timeout=5.0):
        """One request to the admin listener; returns (status, headers, body bytes)."""
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = "Bearer " + token
        data = None
        if body is not None:
            data = body if isinstance(body, bytes) else json.dumps(body).encode()
            hdrs.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection("127.0.0.1", self.admin_port, timeout=timeout)
        try:
            conn.request(method, path, body=data, headers=hdrs)
            r = conn.getresponse()
            h = {}
            for k, v in r.getheaders():  # repeated fields joined, as RFC 9110 allows
                h[k.lower()] = h[k.lower()] + ", " + v if k.lower() in h else v
            return r.status, h, r.read()
        finally:
            conn.close()

    def admin_json(self, path, method="GET", body=None, expect=200, **kw):
        """An admin request whose answer must have status expect; returns the parsed JSON."""
        st, h, b = self.admin(path, method=method, body=body, **kw)
        if st != expect:
            raise AssertionError("admin %s %s: %d (expected %d): %s" % (method, path, st, expect,
                                                                        b.decode(errors="replace")))
        return json.loads(b)

    def log_text(self):
        with open(self.errlog, "rb") as f:
            return f.read()

    def audit(self, types=None):
        """The audit records written so far (no checkpoints), optionally of some types."""
        recs = read_audit(self.audit_dir)
        return [r for r in recs if types is None or r["type"] in types]

    def requests(self, request_id):
        """The request records of one request id."""
        return [r for r in self.audit() if r.get("request_id") == request_id]

    def wait_audit(self, pred, timeout=5.0):
        """Waits until pred(records) holds; returns the records."""
        deadline = time.time() + timeout
        while True:
            recs = self.audit()
            if pred(recs) or time.time() > deadline:
                return recs
            time.sleep(0.05)

    def verify(self, *extra):
        return audit_tool("verify", self.audit_dir, "--pubkey", self.pubkey, *extra)

    def stop(self, expect_code=0, timeout=15, verify=True):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError("lookupgate did not stop on SIGTERM")
        log = self.log_text()
        if SANITIZER_RE.search(log):
            raise AssertionError("sanitizer report in lookupgate log:\n" + log.decode(errors="replace")[-4000:])
        if expect_code is not None and self.proc.returncode != expect_code:
            raise AssertionError("lookupgate exited %s:\n%s" % (self.proc.returncode, log.decode(errors="replace")[-2000:]))
        if verify and self.proc.returncode == 0 and os.path.isdir(self.audit_dir):
            # Every gateway a test ran left a log that verifies.
            rc, out = self.verify()
            if rc != 0:
                raise AssertionError("the audit log does not verify:\n" + out)


class Response:
    def __init__(self, status, headers, body, raw_head):
        self.status = status
        self.headers = headers  # list of (lower-case name, value)
        self.body = body
        self.raw_head = raw_head

    def header(self, name):
        for n, v in self.headers:
            if n == name.lower():
                return v
        return None

    def json(self):
        return json.loads(self.body)


def parse_responses(data, head_request=False):
    """Parses as many complete responses as data holds. Returns (responses, rest)."""
    out = []
    while True:
        end = data.find(b"\r\n\r\n")
        if end < 0:
            return out, data
        head = data[:end].decode("latin-1")
        lines = head.split("\r\n")
        parts = lines[0].split(" ", 2)
        status = int(parts[1])
        headers = []
        for line in lines[1:]:
            n, _, v = line.partition(":")
            headers.append((n.strip().lower(), v.strip()))
        cl = None
        for n, v in headers:
            if n == "content-length":
                cl = int(v)
        rest = data[end + 4:]
        if status < 200 or head_request or status in (204, 304):
            body = b""
        elif cl is None:
            return out, data
        else:
            if len(rest) < cl:
                return out, data
            body, rest = rest[:cl], rest[cl:]
        out.append(Response(status, headers, body, data[:end + 4]))
        data = rest


def exchange(port, payload, n=1, split=False, timeout=3.0, delay=0.001, head_request=False,
             sock=None, cuts=None):
    """Sends payload (whole, one byte at a time when split, or in pieces cut at the offsets in
    cuts) and reads until n final responses arrived, the peer closed, or timeout.
    Returns (final responses, interim responses, closed)."""
    s = sock or socket.create_connection(("127.0.0.1", port), timeout=timeout)
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        if cuts:
            bounds = [0] + sorted(cuts) + [len(payload)]
            for a, b in zip(bounds, bounds[1:]):
                s.sendall(payload[a:b])
                time.sleep(0.01)
        elif split:
            for i in range(len(payload)):
                s.sendall(payload[i:i + 1])
                time.sleep(delay)
        else:
            s.sendall(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
    return read_responses(s, n, timeout, head_request, close=sock is None)


def read_responses(s, n, timeout=3.0, head_request=False, close=True):
    data = b""
    closed = False
    deadline = time.time() + timeout
    finals, interim = [], []
    while time.time() < deadline:
        resps, _ = parse_responses(data, head_request)
        finals = [r for r in resps if r.status >= 200]
        interim = [r for r in resps if r.status < 200]
        if len(finals) >= n:
            break
        s.settimeout(max(0.01, deadline - time.time()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    resps, _ = parse_responses(data, head_request)
    finals = [r for r in resps if r.status >= 200]
    interim = [r for r in resps if r.status < 200]
    if len(finals) >= n and not closed:
        # Was the connection closed right after? Peek briefly.
        s.settimeout(0.3)
        try:
            more = s.recv(65536)
            closed = more == b""
        except socket.timeout:
            pass
        except ConnectionResetError:
            closed = True
    if close:
        s.close()
    return finals, interim, closed


def get(port, path, headers=None, method="GET", body=b"", version="HTTP/1.1", auth=AUTH,
        timeout=3.0):
    """One request on a new connection; auth is the Authorization value (None: none)."""
    h = "%s %s %s\r\nHost: client.example\r\n" % (method, path, version)
    headers = dict(headers or {})
    if auth is not None and not any(k.lower() == "authorization" for k in headers):
        headers["Authorization"] = auth
    for k, v in headers.items():
        h += "%s: %s\r\n" % (k, v)
    if body or method in ("POST", "PUT", "PATCH"):
        h += "Content-Length: %d\r\n" % len(body)
    payload = h.encode() + b"\r\n" + body
    finals, _, _ = exchange(port, payload, head_request=(method == "HEAD"), timeout=timeout)
    return finals[0] if finals else None


def read_to_eof(s):
    """Everything s receives until the peer closes."""
    data = b""
    while True:
        chunk = s.recv(65536)
        if not chunk:
            return data
        data += chunk


def upstream_head(raw):
    """Splits what the stub received into (request line, [(name, value)], body)."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    fields = []
    for line in lines[1:]:
        n, _, v = line.partition(":")
        fields.append((n, v.strip()))
    return lines[0], fields, body


class GatewayTestCase(unittest.TestCase):
    """Starts a stub and a gateway per test class; overrides come from GATEWAY_CONFIG."""

    GATEWAY_CONFIG = {}

    @classmethod
    def setUpClass(cls):
        cls.tmpdir = tempfile.TemporaryDirectory(prefix="lg-it-")
        cls.tmp = cls.tmpdir.name
        cls.stub = Stub(cls.tmp)
        try:
            cls.gw = Gateway(cls.tmp, cls.stub.port, json.loads(json.dumps(cls.GATEWAY_CONFIG)))
        except BaseException:  # tearDownClass does not run when setUpClass fails
            cls.stub.stop()
            cls.tmpdir.cleanup()
            raise

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.stop()
        finally:
            cls.stub.stop()
            cls.tmpdir.cleanup()


class RedisCase(unittest.TestCase):
    """A temporary directory, a redis-server and a stub per test; every gateway started into
    self.gws is stopped (exit 0, no sanitizer report, a log that verifies) after the test."""

    PREFIX = "lg-it-"
    REDIS_ARGS = ()  # extra redis-server arguments (--loadmodule REDIS_MODULE, say)

    def setUp(self):
        self.tmpdir = tempfile.TemporaryDirectory(prefix=self.PREFIX)
        self.tmp = self.tmpdir.name
        self.redis = Redis(self.tmp, args=self.REDIS_ARGS)
        self.stub = Stub(self.tmp)
        self.gws = []

    def tearDown(self):
        try:
            for g in self.gws:
                g.stop()
        finally:
            self.stub.stop()
            self.redis.stop()
            self.tmpdir.cleanup()


def rss_kib(pid):
    """Resident memory of a process, in KiB."""
    with open("/proc/%d/status" % pid) as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class StubTestCase(unittest.TestCase):
    """A temporary directory and a stub per test; the test starts its own gateways."""

    def setUp(self):
        self.tmpdir = tempfile.TemporaryDirectory(prefix="lg-it-")
        self.stub = Stub(self.tmpdir.name)

    def tearDown(self):
        self.stub.stop()
        self.tmpdir.cleanup()
