"""The admin listener (issue 5): two lookupgate instances sharing one real redis-server —
suspend through one instance's admin API and the next request through the other is refused,
resume restores it; account usage; the idle and credential reports over a prepared policy and
history; reload through the API; health and readiness; authentication; bad admin input. Every
act is checked in the audit log too."""

import datetime
import http.client
import json
import os
import socket
import subprocess
import time
import unittest
import zoneinfo

from lgtest import (ADMIN_NAME, Gateway, RedisCase, Stub, credential, exchange, read_responses)

CITIZEN = "/api/v1/citizens/079123456789"
DAY = 86400


def day(offset):
    """A date offset days from today in the gateway's zone (policy dates are its local days)."""
    today = datetime.datetime.now(zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh")).date()
    return (today + datetime.timedelta(days=offset)).isoformat()


def policy(extra_accounts=(), version="admin-1"):
    accounts = [
        {"id": "clerk.a", "unit": "u1", "roles": ["clerk"], "credentials": [credential("lg_a-clerk.a")]},
        {"id": "clerk.b", "unit": "u1", "roles": ["clerk"], "credentials": [credential("lg_a-clerk.b")]},
    ] + list(extra_accounts)
    return {
        "version": version,
        "operations": {"citizen.lookup": {"method": "GET", "path": "/api/v1/citizens/{id}",
                                          "subject": {"path": "id"}}},
        "roles": {"clerk": {"operations": ["citizen.lookup"],
                            "quota": {"per_minute": 50, "per_day": 500}}},
        "units": {"u1": {"quota": {"per_minute": 400, "per_day": 4000}}},
        "accounts": accounts,
    }


def lookup(port, account):
    payload = ("GET %s HTTP/1.1\r\nHost: a\r\nConnection: close\r\nAuthorization: Bearer lg_a-%s\r\n\r\n"
               % (CITIZEN, account)).encode()
    finals, _, _ = exchange(port, payload, timeout=10)
    return finals[0] if finals else None


class AdminCase(RedisCase):
    PREFIX = "lg-admin-"

    def gateway(self, pol=None, **over):
        cfg = {"store": {"backend": "redis", "address": "127.0.0.1:%d" % self.redis.port,
                         "clock": "proxy"}}
        cfg.update(over)
        g = Gateway(self.tmp, self.stub.port, overrides=cfg, policy=pol or policy())
        self.gws.append(g)
        return g


class Suspension(AdminCase):
    def test_suspend_on_one_instance_refuses_on_the_other_and_resume_restores(self):
        a, b = self.gateway(), self.gateway()
        self.assertEqual(lookup(b.port, "clerk.a").status, 200)
        out = a.admin_json("/admin/v1/accounts/clerk.a/suspend", "POST",
                           {"reason": "credential leaked (ticket 4711)"})
        self.assertEqual(out["account"], "clerk.a")
        self.assertTrue(out["suspended"])
        self.assertEqual(out["by"], ADMIN_NAME)
        self.assertFalse(out["was_suspended"])
        self.assertEqual(self.redis.cmd("GET", "lg:{a:clerk.a}:suspended"),
                         "credential leaked (ticket 4711)")
        before = self.stub.count()
        r = lookup(b.port, "clerk.a")  # the very next request, through the other instance
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["type"], "urn:lookupgate:problem:account-suspended")
        self.assertEqual(self.stub.count(), before)  # nothing went upstream
        self.assertEqual(lookup(b.port, "clerk.b").status, 200)  # only that account
        # B shows it too.
        acct = b.admin_json("/admin/v1/accounts/clerk.a")
        self.assertTrue(acct["suspended"])
        self.assertEqual(acct["suspension_reason"], "credential leaked (ticket 4711)")

        out = b.admin_json("/admin/v1/accounts/clerk.a/resume", "POST",
                           {"reason": "new credential issued"})
        self.assertFalse(out["suspended"])
        self.assertTrue(out["was_suspended"])
        self.assertIsNone(self.redis.cmd("GET", "lg:{a:clerk.a}:suspended"))
        self.assertEqual(lookup(a.port, "clerk.a").status, 200)

        # Each act is an audit record naming the admin and the reason, in the log of the
        # instance that did it.
        sus = a.wait_audit(lambda rs: any(r["type"] == "account.suspend" for r in rs))
        s = [r for r in sus if r["type"] == "account.suspend"]
        self.assertEqual(len(s), 1)
        self.assertEqual(s[0]["admin"], ADMIN_NAME)
        self.assertEqual(s[0]["account"], "clerk.a")
        self.assertEqual(s[0]["reason"], "credential leaked (ticket 4711)")
        self.assertEqual(s[0]["result"], "ok")
        self.assertEqual(s[0]["client"], "127.0.0.1")
        res = [r for r in b.audit() if r["type"] == "account.resume"]
        self.assertEqual(len(res), 1)
        self.assertEqual(res[0]["admin"], ADMIN_NAME)
        self.assertEqual(res[0]["reason"], "new credential issued")
        # The refused lookup is recorded on B as a suspension refusal.
        refused = [r for r in b.audit() if r["type"] == "request.refused"]
        self.assertTrue(any(r.get("rule") == "account-suspended" for r in refused))

    def test_a_suspension_needs_a_reason_and_a_known_account(self):
        a = self.gateway()
        st, h, body = a.admin("/admin/v1/accounts/clerk.a/suspend", "POST")
        self.assertEqual(st, 400)
        self.assertEqual(json.loads(body)["type"], "urn:lookupgate:problem:reason-required")
        st, _, body = a.admin("/admin/v1/accounts/clerk.a/suspend", "POST", {"reason": ""})
        self.assertEqual(st, 400)
        st, _, body = a.admin("/admin/v1/accounts/clerk.a/suspend", "POST", b"{not json")
        self.assertEqual(st, 400)
        st, _, body = a.admin("/admin/v1/accounts/clerk.a/suspend", "POST",
                              {"reason": "x", "other": 1})
        self.assertEqual(st, 400)
        st, _, body = a.admin("/admin/v1/accounts/clerk.a/suspend", "POST", {"reason": "x" * 201})
        self.assertEqual(st, 400)
        st, _, body = a.admin("/admin/v1/accounts/nobody/suspend", "POST", {"reason": "x"})
        self.assertEqual(st, 404)
        self.assertEqual(json.loads(body)["type"], "urn:lookupgate:problem:unknown-account")
        self.assertIsNone(self.redis.cmd("GET", "lg:{a:clerk.a}:suspended"))
        self.assertEqual(lookup(a.port, "clerk.a").status, 200)
        st, h, _ = a.admin("/admin/v1/accounts/clerk.a/suspend", "GET")
        self.assertEqual(st, 405)
        self.assertEqual(h["allow"], "POST")
        # Refused admin requests are audited too.
        recs = a.wait_audit(lambda rs: sum(r["type"] == "admin" for r in rs) >= 8)
        adm = [r for r in recs if r["type"] == "admin"]
        self.assertEqual([r["status"] for r in adm], [400, 400, 400, 400, 400, 404, 405])
        self.assertTrue(all(r["admin"] == ADMIN_NAME for r in adm))

    def test_suspension_holds_when_redis_fails_and_the_fallback_decides(self):
        a = self.gateway(store={"backend": "redis", "address": "127.0.0.1:%d" % self.redis.port,
                                "on_store_failure": "local", "clock": "proxy"})
        a.admin_json("/admin/v1/accounts/clerk.a/suspend", "POST", {"reason": "leak"})
        self.redis.stop()
        r = lookup(a.port, "clerk.a")
        self.assertEqual(r.status, 403)
        self.assertEqual(r.json()["type"], "urn:lookupgate:problem:account-suspended")
        self.assertEqual(lookup(a.port, "clerk.b").status, 200)  # degraded, admitted


class Accounts(AdminCase):
    def test_account_shows_roles_credentials_usage_and_last_use(self):
        a = self.gateway()
        for _ in range(3):
            self.assertEqual(lookup(a.port, "clerk.a").status, 200)
        out = a.admin_json("/admin/v1/accounts/clerk.a")
        self.assertEqual(out["id"], "clerk.a")
        self.assertEqual(out["unit"], "u1")
        self.assertEqual(out["roles"], ["clerk"])
        self.assertFalse(out["disabled"])
        self.assertFalse(out["suspended"])
        usage = {u["counter"]: (u["used"], u["limit"]) for u in out["usage"]}
        self.assertEqual(usage["account-per-minute"], (3, 50))
        self.assertEqual(usage["account-per-day"], (3, 500))
        self.assertEqual(usage["unit-per-minute"], (3, 400))
        self.assertEqual(usage["unit-per-day"], (3, 4000))
        last = datetime.datetime.strptime(out["last_use"], "%Y-%m-%dT%H:%M:%SZ").replace(
            tzinfo=datetime.timezone.utc)
        self.assertLess(abs(time.time() - last.timestamp()), 60)
        self.assertEqual(len(out["credentials"]), 1)
        self.assertFalse(out["credentials"][0]["expired"])
        self.assertTrue(out["credentials"][0]["id"].startswith("sha256:"))
        other = a.admin_json("/admin/v1/accounts/clerk.b")
        self.assertIsNone(other["last_use"])
        self.assertEqual({u["counter"]: u["used"] for u in other["usage"]}["account-per-day"], 0)
        st, _, _ = a.admin("/admin/v1/accounts/nobody")
        self.assertEqual(st, 404)
        recs = a.wait_audit(lambda rs: sum(r["type"] == "admin" for r in rs) >= 3)
        gets = [r for r in recs if r["type"] == "admin"]
        self.assertEqual([(r["action"], r.get("account"), r["status"]) for r in gets],
                         [("accounts.get", "clerk.a", 200), ("accounts.get", "clerk.b", 200),
                          ("accounts.get", None, 404)])


class Reports(AdminCase):
    def prepared(self):
        """A policy whose accounts cover every case, and a history in Redis: last uses 1, 29
        and 40 days ago, one never used, one disabled."""
        accts = [
            {"id": "recent", "unit": "u1", "roles": ["clerk"], "credentials": [credential("lg_a-recent")]},
            {"id": "almost", "unit": "u1", "roles": ["clerk"], "credentials": [credential("lg_a-almost")]},
            {"id": "stale", "unit": "u1", "roles": ["clerk"], "credentials": [credential("lg_a-stale")]},
            {"id": "never", "unit": "u1", "roles": ["clerk"], "credentials": [credential("lg_a-never")]},
            {"id": "gone", "unit": "u1", "roles": ["clerk"], "disabled": True,
             "credentials": [credential("lg_a-gone")]},
            # credentials: expiring in 5 and 13 days, expired 3 days ago, and two fine ones
            {"id": "exp5", "unit": "u1", "roles": ["clerk"],
             "credentials": [credential("lg_a-exp5", issued=day(-80), expires=day(5))]},
            {"id": "exp13", "unit": "u1", "roles": ["clerk"],
             "credentials": [credential("lg_a-exp13", issued=day(-70), expires=day(13)),
                             credential("lg_a-exp13b", issued=day(-1), expires=day(80))]},
            {"id": "expired", "unit": "u1", "roles": ["clerk"],
             "credentials": [credential("lg_a-expired", issued=day(-90), expires=day(-3))]},
            {"id": "exp30", "unit": "u1", "roles": ["clerk"],
             "credentials": [credential("lg_a-exp30", issued=day(-50), expires=day(30))]},
        ]
        now = int(time.time() * 1000)
        for acct, days_ago in [("almost", 29), ("stale", 40), ("exp5", 2), ("exp13", 2),
                               ("expired", 5), ("exp30", 3), ("clerk.b", 31)]:
            self.redis.cmd("SET", "lg:{a:%s}:last" % acct, str(now - days_ago * DAY * 1000))
        return policy(accts)

    def test_idle_report_lists_exactly_the_unused_accounts(self):
        a = self.gateway(self.prepared())
        self.assertEqual(lookup(a.port, "recent").status, 200)  # last use kept by the quota script
        self.assertEqual(lookup(a.port, "clerk.a").status, 200)
        out = a.admin_json("/admin/v1/reports/idle?days=30")
        self.assertEqual(out["days"], 30)
        got = {e["id"]: e for e in out["accounts"]}
        self.assertEqual(sorted(got), ["clerk.b", "gone", "never", "stale"])
        self.assertEqual(out["count"], 4)
        self.assertIsNone(got["never"]["last_use"])
        self.assertIsNone(got["never"]["idle_days"])
        self.assertEqual(got["stale"]["idle_days"], 40)
        self.assertEqual(got["clerk.b"]["idle_days"], 31)
        self.assertTrue(got["gone"]["disabled"])
        self.assertFalse(got["stale"]["disabled"])
        out = a.admin_json("/admin/v1/reports/idle?days=3")
        self.assertEqual(sorted(e["id"] for e in out["accounts"]),
                         sorted(["almost", "clerk.b", "expired", "exp30", "gone", "never", "stale"]))
        out = a.admin_json("/admin/v1/reports/idle?days=0")
        self.assertEqual(len(out["accounts"]), 11)  # every account: nothing is newer than now
        for bad in ["", "?days=", "?days=-1", "?days=x", "?days=3651", "?day=3"]:
            st, _, _ = a.admin("/admin/v1/reports/idle" + bad)
            self.assertEqual(st, 400, bad)

    def test_credentials_report_lists_exactly_those_expiring_or_expired(self):
        a = self.gateway(self.prepared())
        out = a.admin_json("/admin/v1/reports/credentials?days=14")
        rows = [(e["account"], e["expired"]) for e in out["credentials"]]
        self.assertEqual(rows, [("expired", True), ("exp5", False), ("exp13", False)])
        self.assertEqual(out["credentials"][0]["days_left"], -3)  # whole days since expiry
        self.assertEqual(out["credentials"][1]["days_left"], 4)  # whole days, rounded down
        expires = datetime.datetime.strptime(out["credentials"][1]["expires"], "%Y-%m-%dT%H:%M:%SZ")
        local = expires.replace(tzinfo=datetime.timezone.utc).astimezone(zoneinfo.ZoneInfo("Asia/Ho_Chi_Minh"))
        self.assertEqual(local.isoformat()[:19], day(5) + "T00:00:00")  # local midnight, in UTC
        out = a.admin_json("/admin/v1/reports/credentials?days=0")
        self.assertEqual([e["account"] for e in out["credentials"]], ["expired"])
        out = a.admin_json("/admin/v1/reports/credentials?days=31")
        self.assertEqual([e["account"] for e in out["credentials"]],
                         ["expired", "exp5", "exp13", "exp30"])
        recs = a.wait_audit(lambda rs: sum(r["type"] == "admin" for r in rs) >= 3)
        self.assertEqual([r.get("days") for r in recs if r["type"] == "admin"], [14, 0, 31])


class Reload(AdminCase):
    def test_reload_through_the_api(self):
        a = self.gateway()
        self.assertEqual(lookup(a.port, "clerk.c").status, 401)
        a.write_policy(policy([{"id": "clerk.c", "unit": "u1", "roles": ["clerk"],
                                "credentials": [credential("lg_a-clerk.c")]}], version="admin-2"))
        out = a.admin_json("/admin/v1/reload", "POST")
        self.assertEqual(out["result"], "ok")
        self.assertEqual(out["policy"], "admin-2")
        self.assertEqual(out["previous"], "admin-1")
        time.sleep(0.1)
        self.assertEqual(lookup(a.port, "clerk.c").status, 200)
        bad = policy(version="admin-3")
        bad["accounts"][0]["roles"] = ["no-such-role"]
        a.write_policy(bad)
        out = a.admin_json("/admin/v1/reload", "POST", expect=422)
        self.assertEqual(out["result"], "refused")
        self.assertEqual(out["policy"], "admin-2")
        self.assertTrue(any("no-such-role" in e and ":" in e for e in out["errors"]), out["errors"])
        self.assertEqual(lookup(a.port, "clerk.c").status, 200)  # the old policy stays
        recs = a.wait_audit(lambda rs: sum(r["type"] == "reload" for r in rs) >= 2)
        rel = [r for r in recs if r["type"] == "reload"]
        self.assertEqual([(r["result"], r["via"], r["admin"]) for r in rel],
                         [("ok", "admin", ADMIN_NAME), ("refused", "admin", ADMIN_NAME)])
        self.assertTrue(any("no-such-role" in e for e in rel[1]["errors"]))
        st, h, _ = a.admin("/admin/v1/reload")
        self.assertEqual(st, 405)


class Health(AdminCase):
    def test_healthz_needs_no_token_and_readyz_names_what_is_not_ready(self):
        a = self.gateway()
        st, _, body = a.admin("/healthz", token=None)
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["status"], "ok")
        st, _, _ = a.admin("/readyz", token=None)
        self.assertEqual(st, 401)
        out = a.admin_json("/readyz")
        self.assertTrue(out["ready"])
        self.assertEqual({k: v["ok"] for k, v in out["checks"].items()},
                         {"audit": True, "store": True, "upstream": True})
        self.redis.stop()
        out = a.admin_json("/readyz", expect=503)
        self.assertFalse(out["ready"])
        self.assertFalse(out["checks"]["store"]["ok"])
        self.assertTrue(out["checks"]["store"]["error"])
        self.assertTrue(out["checks"]["upstream"]["ok"])
        self.redis.start()
        deadline = time.time() + 10
        while time.time() < deadline:
            st, _, body = a.admin("/readyz")
            if st == 200:
                break
            time.sleep(0.2)
        self.assertEqual(st, 200, body)
        self.stub.stop()
        out = a.admin_json("/readyz", expect=503)
        self.assertEqual({k: v["ok"] for k, v in out["checks"].items()},
                         {"audit": True, "store": True, "upstream": False})
        self.stub = Stub(self.tmp)  # for tearDown
        # probes and readiness checks are not audit records; nothing else happened
        self.assertEqual([r for r in a.audit() if r["type"] == "admin"],
                         [r for r in a.audit() if r["type"] == "admin" and r["status"] == 401])


class Authentication(AdminCase):
    def test_tokens(self):
        a = self.gateway()
        for token in [None, "wrong", "", "lg_test-admin-tokenx", "Lg_test-admin-token"]:
            st, h, body = a.admin("/admin/v1/accounts/clerk.a", token=token)
            self.assertEqual(st, 401, token)
            self.assertIn("Bearer", h["www-authenticate"])
            self.assertEqual(json.loads(body)["type"], "urn:lookupgate:problem:admin-token-required")
        # The status page takes the token as a Basic password (a browser asks for it).
        import base64
        basic = "Basic " + base64.b64encode(b"anyone:lg_test-admin-token").decode()
        st, h, body = a.admin("/status", token=None, headers={"Authorization": basic})
        self.assertEqual(st, 200)
        self.assertTrue(h["content-type"].startswith("text/html"))
        bad = "Basic " + base64.b64encode(b"anyone:nope").decode()
        st, _, _ = a.admin("/status", token=None, headers={"Authorization": bad})
        self.assertEqual(st, 401)
        # A data-path credential is not an admin token.
        st, _, _ = a.admin("/admin/v1/accounts/clerk.a", token="lg_a-clerk.a")
        self.assertEqual(st, 401)
        recs = a.wait_audit(lambda rs: sum(r["type"] == "admin" for r in rs) >= 8)
        adm = [r for r in recs if r["type"] == "admin"]
        self.assertEqual(sorted(r["status"] for r in adm), [200] + [401] * 7)
        self.assertTrue(all(r["admin"] is None for r in adm if r["status"] == 401))
        self.assertEqual([r["admin"] for r in adm if r["status"] == 200], [ADMIN_NAME])
        self.assertFalse(any("lg_test-admin-token" in json.dumps(r) for r in recs))

    def test_no_tokens_configured_only_healthz_answers(self):
        a = self.gateway(admin={"tokens": []})
        self.assertEqual(a.admin("/healthz", token=None)[0], 200)
        st, _, body = a.admin("/readyz")
        self.assertEqual(st, 401)
        self.assertIn("no admin tokens", json.loads(body)["detail"])


class AdminTls(AdminCase):
    def test_tls_with_required_client_certificates(self):
        import ssl
        from test_tls import make_ca, make_cert
        d = self.tmp
        make_ca(d, "ca")
        make_ca(d, "otherca")
        make_cert(d, "ca", "server", "localhost",
                  "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        make_cert(d, "ca", "ops", "ops-laptop", "extendedKeyUsage=clientAuth\n")
        make_cert(d, "otherca", "rogue", "rogue", "extendedKeyUsage=clientAuth\n")
        p = lambda n: os.path.join(d, n)
        g = self.gateway(admin={"tls": {"cert": p("server.crt"), "key": p("server.key"),
                                        "client_ca": p("ca.crt"), "require_client_cert": True}})

        def call(cert, path="/admin/v1/accounts/clerk.a"):
            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            ctx.load_verify_locations(p("ca.crt"))
            if cert:
                ctx.load_cert_chain(p(cert + ".crt"), p(cert + ".key"))
            conn = http.client.HTTPSConnection("127.0.0.1", g.admin_port, context=ctx, timeout=5)
            try:
                conn.request("GET", path, headers={"Authorization": "Bearer lg_test-admin-token"})
                r = conn.getresponse()
                return r.status, r.read()
            finally:
                conn.close()
        st, body = call("ops")
        self.assertEqual(st, 200)
        self.assertEqual(json.loads(body)["id"], "clerk.a")
        for cert in [None, "rogue"]:
            with self.assertRaises((ssl.SSLError, ConnectionError, OSError, http.client.HTTPException)):
                call(cert)
        # plain HTTP on the TLS listener gets nothing useful
        with self.assertRaises((ConnectionError, OSError, http.client.HTTPException)):
            g.admin("/healthz", token=None)
        recs = g.wait_audit(lambda rs: any(r["type"] == "admin" for r in rs))
        rec = [r for r in recs if r["type"] == "admin"][0]
        fp = subprocess.run(["openssl", "x509", "-in", p("ops.crt"), "-noout", "-fingerprint",
                             "-sha256"], capture_output=True, check=True).stdout.decode()
        self.assertEqual(rec["tls_client"], "sha256:" + fp.split("=")[1].strip().replace(":", "").lower())
        self.assertEqual(rec["admin"], ADMIN_NAME)


class BadInput(AdminCase):
    def raw(self, g, payload, n=1):
        s = socket.create_connection(("127.0.0.1", g.admin_port), timeout=5)
        s.sendall(payload)
        return read_responses(s, n)[0]

    def test_malformed_requests_get_clear_errors(self):
        a = self.gateway()
        cases = [
            (b"GARBAGE\r\n\r\n", 400),
            (b"GET /healthz HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400),
            (b"GET /healthz HTTP/1.1\nHost: a\n\n", 400),
            (b"GET /healthz HTTP/9.9\r\nHost: a\r\n\r\n", 505),
            (b"POST /admin/v1/reload HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", 411),
            (b"POST /admin/v1/reload HTTP/1.1\r\nHost: a\r\nContent-Length: 999999\r\n\r\n", 413),
            (b"GET /" + b"a" * 9000 + b" HTTP/1.1\r\nHost: a\r\n\r\n", 414),
        ]
        for payload, status in cases:
            resps = self.raw(a, payload)
            self.assertEqual(resps[0].status, status, payload[:60])
            self.assertEqual(resps[0].header("content-type"), "application/problem+json")
        st, _, _ = a.admin("/nothing-here")
        self.assertEqual(st, 404)
        st, _, _ = a.admin("/admin/v1/accounts/clerk.a/delete", "POST")
        self.assertEqual(st, 404)
        # keep-alive: two requests on one connection
        resps = self.raw(a, b"GET /healthz HTTP/1.1\r\nHost: a\r\n\r\n"
                            b"GET /healthz HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", n=2)
        self.assertEqual([r.status for r in resps], [200, 200])


if __name__ == "__main__":
    unittest.main()
