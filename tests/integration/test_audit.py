"""The audit log (issue 4): one record per refusal and two per forwarded lookup, for every
status a client can receive; no citizen ID or token in the log; search --citizen; tampering
detected and located by lookupgate-audit verify; kill -9 under load; a failing disk refuses
lookups and recovers; checkpoints kept from an earlier visit; several instances merged."""

import csv
import datetime
import glob
import hashlib
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import unittest

import lgtest
from lgtest import (Gateway, Stub, audit_tool, credential, exchange, free_port, get,
                    read_audit)

CITIZENS = ["0791234567%02d" % i for i in range(12)]
TOKENS = {"a.xuly": "lg_audit-xuly-token", "a.tiep": "lg_audit-tiep-token",
          "a.off": "lg_audit-disabled-token", "a.bulk": "lg_audit-bulk-token"}


def policy():
    return {
        "version": "audit-test-1",
        "operations": {
            "citizen.lookup": {"method": "GET", "path": "/api/v1/citizens/{id}",
                               "subject": {"path": "id"}, "purpose": {"dossier": True}},
            "citizen.verify": {"method": "POST", "path": "/api/v1/citizens/verify",
                               "subject": {"json": "/so_dinh_danh"}, "purpose": {"dossier": True}},
        },
        "roles": {
            "xu_ly": {"operations": ["citizen.lookup", "citizen.verify"],
                      "quota": {"per_minute": 3, "per_day": 1000}},
            "tiep_nhan": {"operations": ["citizen.verify"],
                          "quota": {"per_minute": 100, "per_day": 1000}},
            "bulk": {"operations": ["citizen.lookup", "citizen.verify"],
                     "quota": {"per_minute": 100000, "per_day": 1000000}},
        },
        "units": {"mot-cua": {}},
        "accounts": [
            {"id": "a.xuly", "unit": "mot-cua", "roles": ["xu_ly"],
             "credentials": [credential(TOKENS["a.xuly"])]},
            {"id": "a.tiep", "unit": "mot-cua", "roles": ["tiep_nhan"],
             "credentials": [credential(TOKENS["a.tiep"])]},
            {"id": "a.off", "unit": "mot-cua", "roles": ["xu_ly"], "disabled": True,
             "credentials": [credential(TOKENS["a.off"])]},
            {"id": "a.bulk", "unit": "mot-cua", "roles": ["bulk"],
             "credentials": [credential(TOKENS["a.bulk"])]},
        ],
    }


def verify_body(citizen):
    return json.dumps({"so_dinh_danh": citizen, "ho_ten": "Phạm Văn An",
                       "ngay_sinh": "1987-06-22"}, ensure_ascii=False).encode()


def bearer(account):
    return "Bearer " + TOKENS[account]


def lookup(port, account, citizen, dossier="HS-2026-0001", timeout=5.0):
    h = {"X-Dossier-Id": dossier} if dossier else {}
    h["Authorization"] = bearer(account)
    payload = ("GET /api/v1/citizens/%s HTTP/1.1\r\nHost: a\r\nConnection: close\r\n%s\r\n" % (
        citizen, "".join("%s: %s\r\n" % kv for kv in h.items()))).encode()
    finals, _, _ = exchange(port, payload, timeout=timeout)
    return finals[0] if finals else None


class AuditBase(unittest.TestCase):
    def setUp(self):
        self.tmpdir = tempfile.TemporaryDirectory(prefix="lg-audit-")
        self.tmp = self.tmpdir.name
        self.stub = Stub(self.tmp)
        self.gws = []

    def tearDown(self):
        try:
            for g in self.gws:
                g.stop(expect_code=None, verify=False)
        finally:
            self.stub.stop()
            self.tmpdir.cleanup()

    def gateway(self, overrides=None, upstream=None, **kw):
        g = Gateway(self.tmp, upstream or self.stub.port, overrides, policy=policy(), **kw)
        self.gws.append(g)
        return g

    def burst(self, g, n, timeout):
        """n lookups started together (a barrier); returns their responses."""
        out = [None] * n
        go = threading.Barrier(n)

        def run(i):
            go.wait()
            out[i] = lookup(g.port, "a.bulk", CITIZENS[i % len(CITIZENS)], timeout=timeout)
        ts = [threading.Thread(target=run, args=(i,)) for i in range(n)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(2 * timeout)
        return out

    def lookup_until_ok(self, g, citizen, timeout, pause):
        """Repeats a lookup until it is admitted (200) or timeout s pass; returns the last."""
        deadline = time.time() + timeout
        while True:
            r = lookup(g.port, "a.bulk", citizen)
            if r.status == 200 or time.time() > deadline:
                return r
            time.sleep(pause)

    def records_of(self, g, resp, n):
        """Waits for n records of the response's request id; returns them."""
        rid = resp.header("x-request-id")
        self.assertTrue(rid)
        recs = g.wait_audit(lambda rs: len([r for r in rs if r.get("request_id") == rid]) >= n)
        return [r for r in recs if r.get("request_id") == rid]


class EveryStatus(AuditBase):
    def test_every_status_has_exactly_its_records(self):
        """Each status a client can receive: one record for a refusal, intent + result for a
        forwarded lookup, with the decision, the rule and the status the client got."""
        g = self.gateway({"limits": {"head_timeout_ms": 400, "body_bytes": 256,
                                     "header_count": 20}})
        port = g.port
        cases = []  # (response, expected types, expected rule)

        r = lookup(port, "a.xuly", CITIZENS[0])
        self.assertEqual(r.status, 200)
        cases.append((r, ["lookup.intent", "lookup.result"], "granted"))
        body = verify_body(CITIZENS[1])
        r = get(port, "/api/v1/citizens/verify", {"X-Dossier-Id": "HS-1", "Content-Type":
                "application/json"}, method="POST", body=body, auth=bearer("a.tiep"))
        self.assertEqual(r.status, 200)
        cases.append((r, ["lookup.intent", "lookup.result"], "granted"))
        for resp, status, rule in [
            (get(port, "/api/v1/citizens/" + CITIZENS[2], auth=None), 401, "credential-required"),
            (get(port, "/api/v1/citizens/" + CITIZENS[2], auth="Bearer lg_wrong"), 401,
             "invalid-credential"),
            (lookup(port, "a.tiep", CITIZENS[2]), 403, "operation-not-granted"),
            (lookup(port, "a.off", CITIZENS[2]), 403, "account-disabled"),
            (get(port, "/api/v2/other/" + CITIZENS[2], auth=bearer("a.xuly")), 404,
             "unknown-operation"),
            (lookup(port, "a.xuly", CITIZENS[2], dossier=None), 403, "purpose-required"),
            (lookup(port, "a.xuly", "12345"), 400, "invalid-subject"),
        ]:
            self.assertEqual(resp.status, status, resp.body)
            cases.append((resp, ["request.refused"], rule))
        # Two more lookups reach the per-minute quota of 3; the next is 429.
        for c in CITIZENS[3:5]:
            self.assertEqual(lookup(port, "a.xuly", c).status, 200)
        r = lookup(port, "a.xuly", CITIZENS[5])
        self.assertEqual(r.status, 429)
        cases.append((r, ["request.refused"], "quota-exceeded"))
        # Refusals by the parser and the limits, with whatever is known.
        finals, _, _ = exchange(port, b"GET /a b HTTP/1.1\r\nHost: a\r\n\r\n")
        self.assertEqual(finals[0].status, 400)
        cases.append((finals[0], ["request.refused"], None))
        r = get(port, "/api/v1/citizens/verify", {"X-Dossier-Id": "HS-1"}, method="POST",
                body=b"x" * 1000, auth=bearer("a.tiep"))
        self.assertEqual(r.status, 413)
        cases.append((r, ["request.refused"], None))
        r = get(port, "/api/v1/citizens/" + CITIZENS[6],
                {"X-H%d" % i: "v" for i in range(30)}, auth=bearer("a.xuly"))
        self.assertEqual(r.status, 431)
        cases.append((r, ["request.refused"], None))
        for raw, status in [(b"GET /" + b"a" * 5000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
                            (b"GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
                            (b"CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n", 405)]:
            finals, _, _ = exchange(port, raw)
            self.assertEqual(finals[0].status, status)
            cases.append((finals[0], ["request.refused"], None))
        finals, _, _ = exchange(port, b"GET /api/v1/citizens/079123456706 HTTP/1.1\r\nHost: a\r\n",
                                timeout=5)
        self.assertEqual(finals[0].status, 408)
        cases.append((finals[0], ["request.refused"], None))

        for resp, types, rule in cases:
            recs = self.records_of(g, resp, len(types))
            self.assertEqual([x["type"] for x in recs], types, (resp.status, recs))
            final = recs[-1]
            self.assertEqual(final["status"], resp.status)
            if rule:
                self.assertEqual(final["rule"], rule)
            else:
                self.assertEqual(final["rule"], resp.json()["type"].rsplit(":", 1)[1])
            self.assertEqual(final["decision"], "allow" if rule == "granted" else "refuse")
            self.assertEqual(final["client"], "127.0.0.1")
            self.assertEqual(final["policy"], "audit-test-1")
            if len(types) == 2:
                intent, result = recs
                self.assertIsNone(intent["status"])
                self.assertEqual(intent["subject"], result["subject"])
                self.assertEqual(len(intent["subject"]), 64)
                self.assertEqual(result["upstream"]["status"], 200)
                self.assertEqual(result["upstream"]["bytes"], len(resp.body))
                self.assertEqual(result["upstream"]["sha256"],
                                 hashlib.sha256(resp.body).hexdigest())
                self.assertLess(intent["seq"], result["seq"])
                self.assertEqual(intent["counters"][0]["name"], "account-per-minute")
        quota = [c for c in cases if c[2] == "quota-exceeded"][0]
        rec = self.records_of(g, quota[0], 1)[0]
        self.assertEqual(rec["account"], "a.xuly")
        self.assertEqual(rec["roles"], ["xu_ly"])
        self.assertEqual(rec["unit"], "mot-cua")
        self.assertEqual(rec["dossier"], "HS-2026-0001")
        self.assertEqual({c["name"]: c["used"] for c in rec["counters"]}["account-per-minute"], 3)
        g.stop()

    def test_upstream_failure_is_the_result_record(self):
        """A lookup whose upstream is down: intent, then a result with 502 and no upstream."""
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            dead = s.getsockname()[1]
        g = self.gateway(upstream=dead)
        r = lookup(g.port, "a.xuly", CITIZENS[0])
        self.assertIn(r.status, (502, 504))
        recs = self.records_of(g, r, 2)
        self.assertEqual([x["type"] for x in recs], ["lookup.intent", "lookup.result"])
        self.assertEqual(recs[1]["status"], r.status)
        self.assertIsNone(recs[1]["upstream"])
        self.assertTrue(recs[1]["error"])
        g.stop()

    def test_admin_records_and_heartbeats(self):
        g = self.gateway({"audit": {"heartbeat_ms": 1000}})
        time.sleep(2.6)
        self.assertTrue(g.reload(policy()))
        self.assertFalse(g.reload("{not json"))
        g.stop()
        recs = g.audit()
        types = [r["type"] for r in recs]
        self.assertEqual(types[0], "segment")
        self.assertEqual(types[1], "start")
        self.assertEqual(types[-1], "stop")
        self.assertGreaterEqual(types.count("heartbeat"), 2)
        reloads = [r for r in recs if r["type"] == "reload"]
        self.assertEqual([r["result"] for r in reloads], ["ok", "refused"])
        self.assertTrue(reloads[1]["errors"])
        self.assertEqual([r["seq"] for r in recs], list(range(len(recs))))


class Privacy(AuditBase):
    def test_no_citizen_id_or_token_and_search_by_citizen(self):
        g = self.gateway()
        sent = {}  # citizen -> request ids of its allowed lookups
        for i in range(24):
            c = CITIZENS[i % 4]
            r = lookup(g.port, "a.bulk", c)
            self.assertEqual(r.status, 200)
            sent.setdefault(c, []).append(r.header("x-request-id"))
        body = verify_body(CITIZENS[0])
        r = get(g.port, "/api/v1/citizens/verify", {"X-Dossier-Id": "HS-9", "Content-Type":
                "application/json"}, method="POST", body=body, auth=bearer("a.tiep"))
        self.assertEqual(r.status, 200)
        sent[CITIZENS[0]].append(r.header("x-request-id"))
        # Refusals that carry citizen IDs in their paths and bodies, and tokens.
        lookup(g.port, "a.tiep", CITIZENS[5])
        get(g.port, "/api/v2/unknown/" + CITIZENS[6] + "?so_dinh_danh=" + CITIZENS[7],
            auth=bearer("a.xuly"))
        get(g.port, "/api/v1/citizens/%30%37%39123456708", auth=bearer("a.xuly"))
        g.stop()
        data = b""
        for n in os.listdir(g.audit_dir):
            with open(os.path.join(g.audit_dir, n), "rb") as f:
                data += f.read()
        self.assertIn(b"lookup.intent", data)
        for c in CITIZENS:
            self.assertNotIn(c.encode(), data)
        for t in TOKENS.values():
            self.assertNotIn(t.encode(), data)
        self.assertNotIn(b"Bearer", data)
        self.assertNotIn(b"so_dinh_danh", data)

        keys = os.path.join(self.tmp, "keys")
        for c in CITIZENS[:4]:
            rc, out = audit_tool("search", g.audit_dir, "--pubkey", g.pubkey, "--citizen", c,
                                 "--cid-key", os.path.join(keys, "cid.key"))
            self.assertEqual(rc, 0, out)
            recs = [json.loads(l) for l in out.splitlines()]
            self.assertEqual(sorted({r["request_id"] for r in recs}), sorted(sent[c]))
            self.assertEqual(len(recs), 2 * len(sent[c]))  # intent and result of each
        # The refused lookup of CITIZENS[5] is found too, as a refusal.
        rc, out = audit_tool("search", g.audit_dir, "--pubkey", g.pubkey, "--citizen",
                             CITIZENS[5], "--cid-key", os.path.join(keys, "cid.key"),
                             "--format", "csv")
        self.assertEqual(rc, 0, out)
        rows = list(csv.DictReader(io.StringIO(out)))
        self.assertEqual([(r["account"], r["rule"]) for r in rows],
                         [("a.tiep", "operation-not-granted")])
        # Other filters.
        rc, out = audit_tool("search", g.audit_dir, "--pubkey", g.pubkey, "--account", "a.tiep",
                             "--decision", "refuse")
        self.assertEqual(len(out.splitlines()), 1, out)
        rc, out = audit_tool("search", g.audit_dir, "--pubkey", g.pubkey, "--dossier", "HS-9")
        self.assertEqual(len(out.splitlines()), 2, out)
        rc, out = audit_tool("search", g.audit_dir, "--pubkey", g.pubkey, "--from", "2000-01-01",
                             "--to", "2000-01-02")
        self.assertEqual((rc, out), (0, ""))
        rc, out = audit_tool("stats", g.audit_dir, "--pubkey", g.pubkey, "--format", "csv",
                             "--hours", "00:00-24:00", "--days", "sun-sat")
        self.assertEqual(rc, 0, out)
        rows = {r["account"]: r for r in csv.DictReader(io.StringIO(out))}
        self.assertEqual(rows["a.bulk"]["lookups"], "24")
        self.assertEqual(rows["a.bulk"]["distinct_citizens"], "4")
        self.assertEqual(rows["a.bulk"]["outside_hours"], "0")
        self.assertEqual(rows["a.tiep"]["lookups"], "1")
        self.assertEqual(rows["a.tiep"]["refusals"], "operation-not-granted=1")


def segments(audit_dir):
    return [n for n in os.listdir(audit_dir) if n.endswith(".jsonl")]


def run_traffic(g, n, account="a.bulk"):
    for i in range(n):
        r = lookup(g.port, account, CITIZENS[i % len(CITIZENS)])
        assert r is not None and r.status == 200, r


class Tampering(AuditBase):
    def make_log(self):
        """A log of two runs (two segments) that verifies."""
        overrides = {"instance": "tamper-1", "audit": {"dir": os.path.join(self.tmp, "log")}}
        for _ in range(2):
            g = self.gateway(overrides)
            run_traffic(g, 6)
            g.stop()
        return g

    def copy(self, g, name):
        d = os.path.join(self.tmp, name)
        shutil.copytree(g.audit_dir, d)
        for n in os.listdir(d):
            os.chmod(os.path.join(d, n), 0o640)
        return d, sorted(n for n in os.listdir(d) if n.endswith(".jsonl"))

    def edit(self, path, fn):
        with open(path, "rb") as f:
            lines = f.read().split(b"\n")[:-1]
        lines = fn(lines)
        with open(path, "wb") as f:
            f.write(b"".join(l + b"\n" for l in lines))

    def verify(self, d, g):
        return audit_tool("verify", d, "--pubkey", g.pubkey)

    def test_untouched_passes_and_each_tampering_fails_at_its_place(self):
        g = self.make_log()
        rc, out = self.verify(g.audit_dir, g)
        self.assertEqual(rc, 0, out)
        self.assertIn("verify: PASS", out)

        # One byte of a record changed (an account name) → the next line names it.
        d, segs = self.copy(g, "byte")
        def flip(lines):
            i = next(k for k, l in enumerate(lines) if b'"a.bulk"' in l)
            lines[i] = lines[i].replace(b'"a.bulk"', b'"a.bulf"', 1)
            return lines
        self.edit(os.path.join(d, segs[0]), flip)
        rc, out = self.verify(d, g)
        self.assertEqual(rc, 1, out)
        self.assertRegex(out, re.escape(segs[0]) + r":\d+: seq \d+")

        # A line deleted → seq gap at that line.
        d, segs = self.copy(g, "delete")
        self.edit(os.path.join(d, segs[0]), lambda ls: ls[:4] + ls[5:])
        rc, out = self.verify(d, g)
        self.assertEqual(rc, 1, out)
        self.assertIn(segs[0] + ":5: seq 5 where 4 was expected", out)

        # Two lines swapped.
        d, segs = self.copy(g, "swap")
        self.edit(os.path.join(d, segs[1]), lambda ls: ls[:2] + [ls[3], ls[2]] + ls[4:])
        rc, out = self.verify(d, g)
        self.assertEqual(rc, 1, out)
        self.assertIn(segs[1] + ":3:", out)

        # The tail truncated: the last records and the closing checkpoint are gone.
        d, segs = self.copy(g, "truncate")
        self.edit(os.path.join(d, segs[-1]), lambda ls: ls[:-3])
        rc, out = self.verify(d, g)
        self.assertEqual(rc, 1, out)
        self.assertIn(segs[-1], out)
        self.assertIn("truncated", out)
        # Cut in the middle of a line, too.
        d, segs = self.copy(g, "torn")
        with open(os.path.join(d, segs[-1]), "r+b") as f:
            f.truncate(os.path.getsize(os.path.join(d, segs[-1])) - 40)
        rc, out = self.verify(d, g)
        self.assertEqual(rc, 1, out)
        self.assertIn("incomplete", out)

        # A checkpoint's signature altered.
        d, segs = self.copy(g, "sig")
        with open(os.path.join(d, segs[1]), "rb") as f:
            other_sig = [json.loads(l)["sig"] for l in f if b'"type":"checkpoint"' in l][0]

        def badsig(lines):
            # The signature of another checkpoint: valid, but not for this one's text.
            i = next(k for k, l in enumerate(lines) if b'"type":"checkpoint"' in l)
            a = json.loads(lines[i])
            self.assertNotEqual(a["sig"], other_sig)
            a["sig"] = other_sig
            lines[i] = json.dumps(a, separators=(",", ":")).encode()
            return lines
        self.edit(os.path.join(d, segs[0]), badsig)
        rc, out = self.verify(d, g)
        self.assertEqual(rc, 1, out)
        self.assertIn("signature", out)

        # A whole segment replaced by a validly signed one of another log of the same name.
        other = self.gateway({"instance": "tamper-1",
                              "audit": {"dir": os.path.join(self.tmp, "other")}})
        run_traffic(other, 3)
        other.stop()
        d, segs = self.copy(g, "replace")
        osegs = sorted(n for n in os.listdir(other.audit_dir) if n.endswith(".jsonl"))
        os.unlink(os.path.join(d, segs[0]))
        shutil.copy(os.path.join(other.audit_dir, osegs[0]), os.path.join(d, segs[0]))
        rc, out = self.verify(d, g)
        self.assertEqual(rc, 1, out)
        self.assertIn(segs[0], out)
        self.assertIn("replaced", out)
        # A missing segment (the first one deleted).
        d, segs = self.copy(g, "missing")
        os.unlink(os.path.join(d, segs[0]))
        rc, out = self.verify(d, g)
        self.assertEqual(rc, 1, out)
        self.assertIn("missing", out)

    @staticmethod
    def lines_digest(path, limit=None):
        """The lines digest of a segment (audit/segment.h), computed here independently: the
        SHA-256 of the RFC 6962 leaf hashes of its lines."""
        with open(path, "rb") as f:
            data = f.read()
        data = data[:limit] if limit is not None else data.rstrip(b"\0")
        h = hashlib.sha256()
        for line in data.split(b"\n")[:-1]:
            h.update(hashlib.sha256(b"\0" + line).digest())
        return h.hexdigest()

    def alter_checkpoint_time(self, path):
        """Changes a digit of the time of a segment's first checkpoint line. Neither a leaf of
        the tree nor under the checkpoint's signature: only the next header's digest of the
        segment covers it."""
        def touch(lines):
            i = next(k for k, l in enumerate(lines) if b'"type":"checkpoint"' in l)
            a = json.loads(lines[i])
            t = a["time"]
            a["time"] = t[:-2] + ("1" if t[-2] != "1" else "2") + t[-1]
            new = json.dumps(a, separators=(",", ":")).encode()
            self.assertEqual(len(new), len(lines[i]))
            self.assertNotEqual(new, lines[i])
            lines[i] = new
            return lines
        self.edit(path, touch)

    def test_segments_chain_by_lines_digest(self):
        g = self.make_log()
        d, segs = self.copy(g, "lines")
        self.assertEqual(len(segs), 2, segs)
        with open(os.path.join(d, segs[1]), "rb") as f:
            prev = json.loads(f.readline())["prev_segment"]
        self.assertEqual(prev["file"], segs[0])
        self.assertEqual(prev["bytes"], os.path.getsize(os.path.join(d, segs[0])))
        self.assertNotIn("sha256", prev)
        self.assertEqual(prev["lines_sha256"], self.lines_digest(os.path.join(d, segs[0])))
        # A checkpoint's time altered in the closed segment: the next header names it.
        self.alter_checkpoint_time(os.path.join(d, segs[0]))
        rc, out = self.verify(d, g)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:1: the previous segment %s is not the one this header chains to "
                      "(length or digest differ)" % (segs[1], segs[0]), out)

    def test_log_written_before_lines_digests(self):
        """A log whose headers hold the previous file's SHA-256 (fixtures/audit-v1, written
        before lines digests) verifies, its tampering is found, and the gateway continues it
        with a lines digest of the old segment."""
        fixture = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fixtures")
        old_pub = os.path.join(fixture, "audit-v1.pub")
        d = os.path.join(self.tmp, "v1")
        shutil.copytree(os.path.join(fixture, "audit-v1"), d)
        segs = sorted(n for n in os.listdir(d) if n.endswith(".jsonl"))
        with open(os.path.join(d, segs[1]), "rb") as f:
            prev = json.loads(f.readline())["prev_segment"]
        self.assertIn("sha256", prev)
        self.assertNotIn("lines_sha256", prev)
        rc, out = audit_tool("verify", d, "--pubkey", old_pub)
        self.assertEqual(rc, 0, out)
        self.assertIn("18 records in 2 segment(s)", out)

        bad = os.path.join(self.tmp, "v1-bad")
        shutil.copytree(d, bad)
        self.alter_checkpoint_time(os.path.join(bad, segs[0]))
        rc, out = audit_tool("verify", bad, "--pubkey", old_pub)
        self.assertEqual(rc, 1, out)
        self.assertIn("%s:1: the previous segment %s is not the one this header chains to "
                      "(length or digest differ)" % (segs[1], segs[0]), out)

        # The gateway continues the old log: its new segment chains to the old one by lines.
        g = self.gateway({"instance": "fixture-v1", "audit": {"dir": d}})
        run_traffic(g, 2)
        g.stop(verify=False)  # its checkpoints are under two keys: verified below with both
        now = sorted(n for n in os.listdir(d) if n.endswith(".jsonl"))
        self.assertEqual(now[:2], segs)
        self.assertEqual(len(now), 3, now)
        with open(os.path.join(d, now[2]), "rb") as f:
            prev = json.loads(f.readline())["prev_segment"]
        self.assertEqual(prev["file"], segs[1])
        self.assertNotIn("sha256", prev)
        self.assertEqual(prev["lines_sha256"], self.lines_digest(os.path.join(d, segs[1])))
        rc, out = audit_tool("verify", d, "--pubkey", old_pub, "--pubkey", g.pubkey)
        self.assertEqual(rc, 0, out)
        self.assertIn("verify: PASS", out)

    def test_kept_checkpoint_proves_growth(self):
        overrides = {"instance": "kept-1", "audit": {"dir": os.path.join(self.tmp, "log")}}
        g = self.gateway(overrides)
        run_traffic(g, 4)
        g.stop()
        kept = os.path.join(self.tmp, "kept-checkpoint.json")
        rc, out = g.verify("--save-checkpoint", kept)
        self.assertEqual(rc, 0, out)
        first_seg = sorted(os.listdir(g.audit_dir))
        g2 = self.gateway(overrides)
        run_traffic(g2, 4)
        g2.stop()
        rc, out = g2.verify("--checkpoint", kept)
        self.assertEqual(rc, 0, out)
        self.assertIn("extends the checkpoint", out)
        # Later: the inspector keeps the newer checkpoint; the second run is removed.
        rc, out = g2.verify("--save-checkpoint", kept)
        for n in os.listdir(g2.audit_dir):
            if n not in first_seg:
                os.unlink(os.path.join(g2.audit_dir, n))
        rc, out = g2.verify()
        self.assertEqual(rc, 0, out)  # on its own, the shorter log looks complete ...
        rc, out = g2.verify("--checkpoint", kept)
        self.assertEqual(rc, 1, out)  # ... but not against the kept checkpoint
        self.assertIn("records were removed", out)


class Crash(AuditBase):
    def test_kill9_under_load_every_forwarded_request_has_its_intent(self):
        overrides = {"instance": "crash-1", "audit": {"dir": os.path.join(self.tmp, "log")}}
        g = self.gateway(overrides)
        stop = threading.Event()

        def load():
            while not stop.is_set():
                try:
                    lookup(g.port, "a.bulk", CITIZENS[3], timeout=2)
                except OSError:
                    pass
        threads = [threading.Thread(target=load) for _ in range(4)]
        for t in threads:
            t.start()
        time.sleep(1.5)
        g.proc.send_signal(signal.SIGKILL)
        g.proc.wait(5)
        stop.set()
        for t in threads:
            t.join(10)
        forwarded = set()
        for rec in self.stub.received():
            m = re.search(rb"\r\nX-Request-Id: ([^\r]+)\r\n", rec["raw"], re.I)
            if m:
                forwarded.add(m.group(1).decode())
        self.assertGreater(len(forwarded), 10)
        intents = {r["request_id"] for r in read_audit(g.audit_dir) if r["type"] == "lookup.intent"}
        self.assertEqual(forwarded - intents, set())
        # The killed run left its zero-filled space after the records (audit.zero_ahead_kb).
        live = os.path.join(g.audit_dir, sorted(segments(g.audit_dir))[-1])
        with open(live, "rb") as f:
            data = f.read()
        self.assertTrue(data.endswith(b"\0" * 4096))
        self.assertNotIn(b"\0", data.rstrip(b"\0"))
        rc, out = g.verify()
        self.assertEqual(rc, 1)  # not closed: no stop record yet
        rc, out = g.verify("--live")
        self.assertEqual(rc, 0, out)

        g2 = self.gateway(overrides)
        run_traffic(g2, 2)
        g2.stop()  # verifies the whole log
        recs = g2.audit()
        rec = [r for r in recs if r["type"] == "recovery"]
        self.assertEqual(len(rec), 1)
        self.assertFalse(rec[0]["clean_stop"])
        self.assertEqual(rec[0]["last_seq"], rec[0]["seq"] - 2)  # then the new segment header
        self.assertEqual(rec[0]["torn_bytes"], 0)  # the zeros are not a torn end
        self.assertIsNone(rec[0]["torn_file"])
        self.assertEqual([r["seq"] for r in recs], list(range(len(recs))))
        # The restart cut the zeros off the killed run's segment; the stop, its own.
        with open(live, "rb") as f:
            self.assertEqual(f.read(), data.rstrip(b"\0"))
        for n in segments(g.audit_dir):
            with open(os.path.join(g.audit_dir, n), "rb") as f:
                self.assertNotIn(b"\0", f.read(), n)

    def killed(self, overrides):
        """A gateway that made 3 lookups and was killed; it and the path of its last segment."""
        g = self.gateway(overrides)
        run_traffic(g, 3)
        g.proc.send_signal(signal.SIGKILL)
        g.proc.wait(5)
        return g, os.path.join(g.audit_dir, sorted(segments(g.audit_dir))[-1])

    def test_torn_last_line_is_moved_aside_and_recorded(self):
        overrides = {"instance": "torn-1", "audit": {"dir": os.path.join(self.tmp, "log")}}
        g, seg = self.killed(overrides)
        with open(seg, "r+b") as f:
            # a write cut by the crash, in the zero-filled space after the records
            f.seek(len(f.read().rstrip(b"\0")))
            f.write(b'{"seq":99,"prev":"0000","time":"2026-')
        self.check_torn(overrides, g)

    def test_torn_last_line_without_zero_filled_space(self):
        overrides = {"instance": "torn-2", "audit": {"dir": os.path.join(self.tmp, "log"),
                                                     "zero_ahead_kb": 0}}
        g, seg = self.killed(overrides)
        with open(seg, "rb") as f:
            self.assertNotIn(b"\0", f.read())  # plain appends: no space ahead
        with open(seg, "ab") as f:
            f.write(b'{"seq":99,"prev":"0000","time":"2026-')  # a write cut by the crash
        self.check_torn(overrides, g)

    def check_torn(self, overrides, g):
        g2 = self.gateway(overrides)
        g2.stop()
        rec = [r for r in g2.audit() if r["type"] == "recovery"][0]
        self.assertEqual(rec["torn_bytes"], 37)
        aside = os.path.join(g.audit_dir, rec["torn_file"])
        with open(aside, "rb") as f:
            self.assertEqual(f.read(), b'{"seq":99,"prev":"0000","time":"2026-')
        self.assertIn(b"torn byte", g2.log_text())
        for n in segments(g.audit_dir):
            with open(os.path.join(g.audit_dir, n), "rb") as f:
                self.assertNotIn(b"\0", f.read(), n)

    def test_zero_filled_space_ahead_of_the_records(self):
        """audit.zero_ahead_kb: the segment being written is zero-filled ahead of its records
        (so that fdatasync writes the records only, not the file's size and allocation); a live
        copy verifies; the space is cut off at stop, and every reader skips it meanwhile."""
        g = self.gateway({"audit": {"zero_ahead_kb": 256}})
        run_traffic(g, 3)
        live = os.path.join(g.audit_dir, sorted(segments(g.audit_dir))[-1])
        with open(live, "rb") as f:
            data = f.read()
        records = data.rstrip(b"\0")
        self.assertGreaterEqual(len(data) - len(records), 200 * 1024)
        self.assertEqual(len(data) % 4096, 0)
        self.assertTrue(records.endswith(b"\n"))
        self.assertNotIn(b"\0", records)
        rc, out = g.verify("--live")
        self.assertEqual(rc, 0, out)
        rc, out = audit_tool("search", g.audit_dir, "--pubkey", g.pubkey, "--live", "--citizen",
                             CITIZENS[0], "--cid-key", os.path.join(self.tmp, "keys", "cid.key"))
        self.assertEqual(rc, 0, out)
        # (the notes of the live verification come first, on stderr)
        self.assertEqual([json.loads(l)["type"] for l in out.splitlines() if l.startswith("{")],
                         ["lookup.intent", "lookup.result"])
        g.stop()  # verifies
        with open(live, "rb") as f:
            closed = f.read()
        self.assertTrue(closed.startswith(records))  # then the stop record and a checkpoint
        self.assertNotIn(b"\0", closed)
        self.assertIn(b'"type":"stop"', closed[len(records):])



@unittest.skipUnless(os.geteuid() == 0 and shutil.which("mount"), "needs root to mount a tmpfs")
def fiu_env():
    """The environment that preloads libfiu's POSIX failure points (fiu-ctrl turns them on in
    the running process). With an ASan build, libasan must be loaded first."""
    pre = ["/usr/lib/fiu/fiu_run_preload.so", "/usr/lib/fiu/fiu_posix_preload.so"]
    if not all(os.path.exists(p) for p in pre) or not shutil.which("fiu-ctrl"):
        return None
    ldd = subprocess.run(["ldd", os.path.join(lgtest.BUILD, "lookupgate")], capture_output=True).stdout.decode()
    asan = [l.split("=>")[1].split()[0] for l in ldd.splitlines() if "libasan" in l and "=>" in l]
    fifo = os.path.join(tempfile.gettempdir(), "fiu-ctrl")
    return {"LD_PRELOAD": " ".join(asan + pre), "FIU_CTRL_FIFO": fifo, "FIU_ENABLE": ""}


class IoErrors(AuditBase):
    """G3: I/O errors injected into the running gateway with libfiu: fdatasync fails with EIO
    (twice, with a recovery between). Lookups are refused with 503 and nothing goes upstream;
    the failing segment is sealed at its durable end; the writer recovers on a new segment when
    the errors stop; the whole log still verifies, with no torn or interleaved record. (libfiu
    cannot fail write() for one file only: it would fail the process's eventfd and pipe writes
    too, which never fail with EIO; a failing write() is G2's full file system.)"""

    def fiu(self, g, command):
        r = subprocess.run(["fiu-ctrl", "-c", command, str(g.proc.pid)], capture_output=True,
                           env=dict(os.environ, TMPDIR=tempfile.gettempdir()))
        self.assertEqual(r.returncode, 0, r.stderr.decode())

    def test_g3_eio_on_fdatasync(self):
        env = fiu_env()
        if env is None:
            if os.environ.get("CI"):
                self.fail("fiu-utils is required in CI (./deploy/test.sh installs it)")
            self.skipTest("fiu-utils missing")
        g = self.gateway(env=env)
        self.assertEqual(lookup(g.port, "a.bulk", CITIZENS[0]).status, 200)
        for point in ["posix/io/sync/fdatasync", "posix/io/sync/fdatasync"]:
            before = self.stub.count()
            self.fiu(g, "enable name=%s,failinfo=5" % point)  # EIO
            time.sleep(0.1)
            for i in range(3):
                r = lookup(g.port, "a.bulk", CITIZENS[1])
                self.assertEqual(r.status, 503, point)
                self.assertEqual(r.json()["type"], "urn:lookupgate:problem:audit-unavailable")
                time.sleep(0.25)  # the writer retries a new segment every 200 ms
            self.assertEqual(self.stub.count(), before)  # nothing unaudited went upstream
            st, _, body = g.admin("/readyz")
            self.assertEqual(st, 503)
            self.assertIn("Input/output error", json.loads(body)["checks"]["audit"]["error"])
            self.fiu(g, "disable name=%s" % point)
            r = self.lookup_until_ok(g, CITIZENS[2], 5, 0.1)
            self.assertEqual(r.status, 200, point)
        g.stop(expect_code=0, verify=False)
        rc, out = g.verify()
        self.assertEqual(rc, 0, out)
        self.assertIn("sealed early", out)
        recs = read_audit(g.audit_dir)
        self.assertEqual([r["seq"] for r in recs], list(range(len(recs))))  # gapless, whole lines
        outages = [r for r in recs if r["type"] == "audit.outage"]
        self.assertEqual(len(outages), 2)
        self.assertTrue(all("Input/output error" in r["reason"] for r in outages))


class DiskFailure(AuditBase):
    def setUp(self):
        super().setUp()
        self.mnt = os.path.join(self.tmp, "mnt")
        os.mkdir(self.mnt)
        r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", self.mnt],
                           capture_output=True)
        if r.returncode != 0:
            self.skipTest("cannot mount a tmpfs: %s" % r.stderr.decode())

    def tearDown(self):
        try:
            for g in self.gws:
                g.stop(expect_code=None, verify=False)
            self.gws = []
        finally:
            subprocess.run(["umount", "-l", self.mnt])
            super().tearDown()

    def fill(self):
        path = os.path.join(self.mnt, "filler")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
        try:
            while True:
                os.write(fd, b"\0" * 4096)
        except OSError:
            pass
        finally:
            os.close(fd)
        return path

    def test_full_disk_refuses_lookups_and_recovers(self):
        g = self.gateway({"audit": {"dir": os.path.join(self.mnt, "audit")}})
        self.assertEqual(lookup(g.port, "a.bulk", CITIZENS[0]).status, 200)
        before = self.stub.count()
        filler = self.fill()
        # The segment's last page may still take a record or two; then writes fail.
        allowed = 0
        for _ in range(20):
            if lookup(g.port, "a.bulk", CITIZENS[1]).status != 200:
                break
            allowed += 1
        self.assertLess(allowed, 20)
        # (That last lookup may have reached the upstream with its intent durable and had its
        # response withheld because the result could not be recorded.)
        before = self.stub.count()
        statuses = [lookup(g.port, "a.bulk", CITIZENS[1]).status for _ in range(5)]
        self.assertEqual(statuses, [503] * 5)
        r = lookup(g.port, "a.bulk", CITIZENS[1])
        self.assertEqual(r.json()["type"], "urn:lookupgate:problem:audit-unavailable")
        self.assertEqual(r.header("retry-after"), "1")
        self.assertEqual(self.stub.count(), before)  # nothing went upstream
        self.assertIn(b"audit log: write", g.log_text())
        os.unlink(filler)
        r = self.lookup_until_ok(g, CITIZENS[2], 10, 0.2)
        self.assertEqual(r.status, 200)
        self.assertEqual(self.stub.count(), before + 1)
        self.assertIn(b"audit log writable again", g.log_text())
        g.stop()  # the log, with its sealed segment, verifies
        recs = g.audit()
        self.assertTrue([x for x in recs if x["type"] == "audit.outage"])
        seg = [x for x in recs if x["type"] == "segment" and x["prev_segment"]]
        self.assertTrue(seg[0]["prev_segment"]["sealed"])

    def test_free_space_floor_refuses_lookups(self):
        g = self.gateway({"audit": {"dir": os.path.join(self.mnt, "audit"), "min_free_mb": 1}})
        time.sleep(1)
        r = lookup(g.port, "a.bulk", CITIZENS[0])
        # 1 MiB tmpfs always has less than 1 MiB free once the log exists.
        self.assertEqual(r.status, 503)
        self.assertEqual(self.stub.count(), 0)
        self.assertIn(b"under the floor", g.log_text())
        # Refusals are still recorded while space is low.
        recs = self.records_of(g, r, 1)
        self.assertEqual(recs[0]["rule"], "audit-unavailable")
        g.stop()


def auditfault_env(ctl):
    """Preloads tests/faults/auditfault.c (after libasan in the ASan build), steered by ctl."""
    shim = os.path.join(lgtest.BUILD, "liblg_auditfault.so")
    if not os.path.exists(shim):
        raise AssertionError("%s is missing (built with the tests)" % shim)
    ldd = subprocess.run(["ldd", os.path.join(lgtest.BUILD, "lookupgate")],
                         capture_output=True).stdout.decode()
    asan = [l.split("=>")[1].split()[0] for l in ldd.splitlines() if "libasan" in l and "=>" in l]
    return {"LD_PRELOAD": " ".join(asan + [shim]), "LG_AUDITFAULT": ctl}


class WriteFaults(AuditBase):
    """G3 and G4 with faults injected into the audit segments only (tests/faults/auditfault.c):
    short and interrupted writes, EIO from write(), and a slow fdatasync."""

    def setUp(self):
        super().setUp()
        self.ctl = os.path.join(self.tmp, "auditfault.ctl")
        self.set_faults("")

    def set_faults(self, text):
        with open(self.ctl + ".new", "w") as f:
            f.write(text)
        os.replace(self.ctl + ".new", self.ctl)

    def segment_lines(self, g):
        lines = []
        for x in sorted(os.listdir(g.audit_dir)):
            if x.endswith(".jsonl"):
                with open(os.path.join(g.audit_dir, x), "rb") as f:
                    lines += f.read().rstrip(b"\0").split(b"\n")[:-1]
        return lines

    def test_g3_short_and_interrupted_writes_tear_nothing(self):
        g = self.gateway(env=auditfault_env(self.ctl))
        self.assertEqual(lookup(g.port, "a.bulk", CITIZENS[0]).status, 200)
        self.set_faults("short=7 eintr=3")  # 7 bytes a call, and every third call EINTR
        got = []

        def run(k):
            for i in range(6):
                r = lookup(g.port, "a.bulk", CITIZENS[(k + i) % len(CITIZENS)], timeout=20)
                got.append(r.status)
        ts = [threading.Thread(target=run, args=(k,)) for k in range(4)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(60)
        self.assertEqual(got, [200] * 24)
        self.set_faults("")
        g.stop()  # verifies
        for line in self.segment_lines(g):  # every line whole: none torn, none interleaved
            json.loads(line)
        recs = read_audit(g.audit_dir)
        self.assertEqual([r["seq"] for r in recs], list(range(len(recs))))
        self.assertEqual(sum(r["type"] == "lookup.result" for r in recs), 25)
        self.assertEqual(self.stub.count(), 25)

    def test_g3_eio_from_write_refuses_then_recovers(self):
        g = self.gateway(env=auditfault_env(self.ctl))
        self.assertEqual(lookup(g.port, "a.bulk", CITIZENS[0]).status, 200)
        self.set_faults("eio=1")
        for i in range(3):
            r = lookup(g.port, "a.bulk", CITIZENS[1])
            self.assertEqual(r.status, 503)
            self.assertEqual(r.json()["type"], "urn:lookupgate:problem:audit-unavailable")
            time.sleep(0.25)
        self.assertEqual(self.stub.count(), 1)  # nothing unaudited went upstream
        st, _, body = g.admin("/readyz")
        self.assertEqual(st, 503)
        self.assertIn("Input/output error", json.loads(body)["checks"]["audit"]["error"])
        self.set_faults("")
        r = self.lookup_until_ok(g, CITIZENS[2], 5, 0.1)
        self.assertEqual(r.status, 200)
        g.stop()  # the log verifies across the failed and the new segment
        for line in self.segment_lines(g):
            json.loads(line)
        recs = read_audit(g.audit_dir)
        self.assertEqual([r["seq"] for r in recs], list(range(len(recs))))
        refused = [r for r in recs if r["type"] == "request.refused"
                   and r.get("rule") == "audit-unavailable"]
        self.assertGreaterEqual(len(refused), 1)  # the refusals were recorded once it recovered

    def test_g4_slow_fsync_bounds_the_queue_with_503(self):
        """fdatasync takes 400 ms: with at most 16 records held, a burst of 30 lookups gets
        503 audit-unavailable for what does not fit, nothing of those upstream, the gateway's
        memory does not grow with the backlog, and every request is recorded in the end."""
        g = self.gateway({"audit": {"queue_records": 16}}, env=auditfault_env(self.ctl))
        self.assertEqual(lookup(g.port, "a.bulk", CITIZENS[0]).status, 200)
        rss0 = lgtest.rss_kib(g.proc.pid)
        self.set_faults("fsync_ms=400")
        out = self.burst(g, 30, timeout=30)
        statuses = [r.status for r in out]
        self.assertEqual(set(statuses), {200, 503}, statuses)
        self.assertGreaterEqual(statuses.count(503), 1)
        self.assertEqual(self.stub.count(), 1 + statuses.count(200))
        self.assertLess(lgtest.rss_kib(g.proc.pid) - rss0, 16 * 1024)
        self.set_faults("")
        ids = {r.header("x-request-id") for r in out}
        recs = g.wait_audit(lambda rs: ids <= {x.get("request_id") for x in rs}, timeout=20)
        self.assertTrue(ids <= {x.get("request_id") for x in recs})
        g.stop()


class Rotation(AuditBase):
    def test_g6_size_rotation_under_load_loses_and_duplicates_nothing(self):
        g = self.gateway({"audit": {"segment_mb": 1}, "workers": 2})
        n, threads = 960, 8
        got = []

        def run(k):
            for i in range(n // threads):
                r = lookup(g.port, "a.bulk", CITIZENS[(k + i) % len(CITIZENS)], timeout=10)
                got.append((r.status, r.header("x-request-id")))
        ts = [threading.Thread(target=run, args=(k,)) for k in range(threads)]
        for t in ts:
            t.start()
        for t in ts:
            t.join(120)
        g.stop()  # verifies the chain across the segments
        self.assertEqual(sorted(s for s, _ in got), [200] * n)
        segs = [x for x in os.listdir(g.audit_dir) if x.endswith(".jsonl")]
        self.assertGreaterEqual(len(segs), 2)
        recs = g.audit()
        self.assertEqual([r["seq"] for r in recs], list(range(len(recs))))
        ids = {}
        for r in recs:
            if r["type"].startswith("lookup."):
                ids.setdefault(r["request_id"], []).append(r["type"])
        self.assertEqual(set(ids), {rid for _, rid in got})
        self.assertTrue(all(v == ["lookup.intent", "lookup.result"] for v in ids.values()))
        self.assertEqual(self.stub.count(), n)


    def test_g6_rotation_at_local_midnight(self):
        """The gateway's clock (libfaketime) starts 3 s before local midnight in Asia/Ho_Chi_Minh:
        a lookup before midnight lands in that day's segment, one after it in a new segment
        named for the new day, the old one ends on its own checkpoint, and the chain verifies
        across the two."""
        libfaketime = next(iter(glob.glob("/usr/lib/*/faketime/libfaketime.so.1")), None)
        if libfaketime is None:
            if os.environ.get("CI"):
                self.fail("faketime is required in CI (./deploy/test.sh installs it)")
            self.skipTest("faketime missing")
        ict = datetime.timezone(datetime.timedelta(hours=7))  # Asia/Ho_Chi_Minh, no DST
        now = datetime.datetime.now(ict)
        midnight = datetime.datetime.combine(now.date() + datetime.timedelta(days=1),
                                             datetime.time(0), ict)
        offset = int((midnight - now).total_seconds()) - 3
        env = {"LD_PRELOAD": libfaketime, "FAKETIME": "+%ds" % offset,
               "FAKETIME_DONT_FAKE_MONOTONIC": "1",
               "ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:verify_asan_link_order=0"}
        g = self.gateway(env=env)
        before = lookup(g.port, "a.bulk", CITIZENS[0])
        self.assertEqual(before.status, 200)
        day0 = midnight.date() - datetime.timedelta(days=1)
        # the gateway's midnight is 3 s after `now` in real time
        time.sleep(max(0.0, now.timestamp() + 4.0 - time.time()))
        after = lookup(g.port, "a.bulk", CITIZENS[2])
        self.assertEqual(after.status, 200)
        g.stop()  # verifies the chain across both segments
        segs = sorted(x for x in os.listdir(g.audit_dir) if x.endswith(".jsonl"))
        names = ["%s-%s-" % (g.config["instance"], d.strftime("%Y%m%d"))
                 for d in (day0, midnight.date())]
        self.assertTrue(any(x.startswith(names[0]) for x in segs), segs)
        self.assertTrue(any(x.startswith(names[1]) for x in segs), segs)

        def segment_of(resp):
            rid = resp.header("x-request-id")
            found = set()
            for x in segs:
                with open(os.path.join(g.audit_dir, x)) as f:
                    if any(json.loads(l).get("request_id") == rid for l in f):
                        found.add(x)
            return found
        self.assertEqual(len(segment_of(before)), 1)
        self.assertTrue(segment_of(before).pop().startswith(names[0]))
        self.assertEqual(len(segment_of(after)), 1)
        self.assertTrue(segment_of(after).pop().startswith(names[1]))
        old = next(x for x in segs if x.startswith(names[0]))
        with open(os.path.join(g.audit_dir, old)) as f:
            self.assertEqual(json.loads(f.read().splitlines()[-1])["type"], "checkpoint")


class Backpressure(AuditBase):
    def test_full_queue_refuses_lookups_with_503_and_records_them(self):
        """G4's bound: with at most 16 records held and a long group-commit window, a burst of
        30 lookups gets 16 admitted and the rest 503 audit-unavailable, nothing of those
        upstream, and every request recorded."""
        g = self.gateway({"audit": {"queue_records": 16, "group_commit_us": 100000}})
        out = self.burst(g, 30, timeout=10)
        statuses = sorted(r.status for r in out)
        ok = statuses.count(200)
        self.assertGreater(ok, 0)
        self.assertLessEqual(ok, 16)
        self.assertEqual(statuses, [200] * ok + [503] * (30 - ok))
        self.assertEqual(self.stub.count(), ok)
        for r in out:
            if r.status == 503:
                self.assertEqual(r.json()["type"], "urn:lookupgate:problem:audit-unavailable")
        g.stop()
        recs = g.audit()
        for r in out:
            mine = [x for x in recs if x.get("request_id") == r.header("x-request-id")]
            want = ["lookup.intent", "lookup.result"] if r.status == 200 else ["request.refused"]
            self.assertEqual([x["type"] for x in mine], want)


class Instances(AuditBase):
    def test_search_merges_instances_by_time_and_verifies_each(self):
        a = self.gateway({"instance": "inst-a", "audit": {"dir": os.path.join(self.tmp, "a")}})
        b = self.gateway({"instance": "inst-b", "audit": {"dir": os.path.join(self.tmp, "b")}})
        order = []
        for i in range(6):
            g = a if i % 2 == 0 else b
            r = lookup(g.port, "a.bulk", CITIZENS[0])
            order.append(r.header("x-request-id"))
            time.sleep(0.01)
        a.stop()
        b.stop()
        rc, out = audit_tool("search", a.audit_dir, b.audit_dir, "--pubkey", a.pubkey,
                             "--type", "lookup.intent")
        self.assertEqual(rc, 0, out)
        recs = [json.loads(l) for l in out.splitlines()]
        self.assertEqual([r["request_id"] for r in recs], order)
        self.assertEqual({r["instance"] for r in recs}, {"inst-a", "inst-b"})
        rc, out = audit_tool("verify", a.audit_dir, b.audit_dir, "--pubkey", a.pubkey)
        self.assertEqual(rc, 0, out)
        self.assertIn("OK   inst-a", out)
        self.assertIn("OK   inst-b", out)
        # One instance damaged: search refuses to answer from an unverified log.
        seg = sorted(n for n in os.listdir(b.audit_dir) if n.endswith(".jsonl"))[0]
        p = os.path.join(b.audit_dir, seg)
        os.chmod(p, 0o640)
        with open(p, "rb") as f:
            data = f.read()
        with open(p, "wb") as f:
            f.write(data.replace(b'"a.bulk"', b'"a.bulx"', 1))
        rc, out = audit_tool("search", a.audit_dir, b.audit_dir, "--pubkey", a.pubkey)
        self.assertEqual(rc, 1)
        self.assertIn("FAIL inst-b", out)


if __name__ == "__main__":
    unittest.main()
