"""SECURITY-CASES category A (request framing and smuggling) and B (hop-by-hop, Host, target)
against the real gateway and stub. Every vector runs whole and byte by byte; the stub's log
shows whether anything reached the upstream, and what exactly."""

import random
import unittest

from lgtest import GatewayTestCase, exchange, upstream_head

H = b"Host: client.example\r\nAuthorization: Bearer lg_test-core-token"


def req(first, *fields, body=b""):
    return first + b"\r\n" + b"".join(f + b"\r\n" for f in fields) + b"\r\n" + body


# (case id, request bytes, expected status, reaches upstream)
REFUSED = [
    ("A1", req(b"POST /x HTTP/1.1", H, b"Content-Length: 4", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    ("A2", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", b"Content-Length: 4", body=b"0\r\n\r\n"), 400),
    ("A3", req(b"POST /x HTTP/1.1", H, b"Content-Length: 1", b"Content-Length: 1", body=b"a"), 400),
    ("A4", req(b"POST /x HTTP/1.1", H, b"Content-Length: 1", b"Content-Length: 0", body=b"a"), 400),
    ("A5", req(b"POST /x HTTP/1.1", H, b"Content-Length: 1, 1", body=b"a"), 400),
    ("A6+", req(b"POST /x HTTP/1.1", H, b"Content-Length: +1", body=b"a"), 400),
    ("A6-", req(b"POST /x HTTP/1.1", H, b"Content-Length: -1", body=b"a"), 400),
    ("A6hex", req(b"POST /x HTTP/1.1", H, b"Content-Length: 0x1", body=b"a"), 400),
    ("A6us", req(b"POST /x HTTP/1.1", H, b"Content-Length: 1_0", body=b"a"), 400),
    ("A6sp", req(b"POST /x HTTP/1.1", H, b"Content-Length: 1 3", body=b"a"), 400),
    ("A6z", req(b"POST /x HTTP/1.1", H, b"Content-Length: 1Z", body=b"a"), 400),
    ("A6empty", req(b"POST /x HTTP/1.1", H, b"Content-Length: ", body=b"a"), 400),
    ("A6long", req(b"POST /x HTTP/1.1", H, b"Content-Length: 12345678901234567890", body=b"a"), 400),
    ("A8", req(b"POST /x HTTP/1.1", H, b"Content-Length: 10000000"), 413),
    ("A9a", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked, identity", body=b"0\r\n\r\n"), 400),
    ("A9b", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: identity", body=b"0\r\n\r\n"), 400),
    ("A9c", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: gzip", body=b"0\r\n\r\n"), 400),
    ("A9d", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: xchunked", body=b"0\r\n\r\n"), 400),
    ("A9e", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunk", body=b"0\r\n\r\n"), 400),
    ("A10a", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: gzip, chunked", body=b"0\r\n\r\n"), 400),
    ("A10b", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: identity, chunked", body=b"0\r\n\r\n"), 400),
    ("A11", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked, chunked", body=b"0\r\n\r\n"), 400),
    ("A12a", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", b"Transfer-Encoding: identity", body=b"0\r\n\r\n"), 400),
    ("A12b", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: identity", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    ("A12c", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    ("A15", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding:", b" chunked", body=b"0\r\n\r\n"), 400),
    ("A16", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding : chunked", body=b"0\r\n\r\n"), 400),
    ("A16cl", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding : chunked", b"Content-Length: 5", body=b"0\r\n\r\n"), 400),
    ("A17", req(b"POST /x HTTP/1.1", H, b"Content-Length : 5", body=b"hello"), 400),
    ("A20", b"GET / HTTP/1.1\r\n Host: a\r\n\r\n", 400),
    ("A21a", req(b"GET / HTTP/1.1", H, b"X: a", b"\tb"), 400),
    ("A21b", req(b"GET / HTTP/1.1", H, b"Foo: bar", b" Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    ("A22line", b"GET / HTTP/1.1\nHost: a\r\n\r\n", 400),
    ("A22field", b"GET / HTTP/1.1\r\nHost: a\n\r\n", 400),
    ("A22end", b"GET / HTTP/1.1\r\nHost: a\r\n\n", 400),
    ("A22all", b"GET / HTTP/1.1\nHost: a\n\n", 400),
    ("A24", req(b"GET / HTTP/1.1", H, b"Visible: :/\rSmuggled: :)"), 400),
    ("A25nul", req(b"GET / HTTP/1.1", b"Host: a\x00.evil"), 400),
    ("A25del", req(b"GET / HTTP/1.1", H, b"X: a\x7fb"), 400),
    ("A25ctl", req(b"GET / HTTP/1.1", H, b"X: a\x01b"), 400),
    ("A26name", req(b"GET / HTTP/1.1", H, b"X\xe9: a"), 400),
    ("A26auth", req(b"GET / HTTP/1.1", H, b"Authorization: Bearer \xc3\xa9"), 400),
    ("A27empty", req(b"GET / HTTP/1.1", H, b": v"), 400),
    ("A27colon", req(b"GET / HTTP/1.1", H, b":"), 400),
    ("A27nocolon", req(b"GET / HTTP/1.1", H, b"Content-Length 10"), 400),
    ("A28", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", body=b"1\r\nAXX0\r\n\r\n"), 400),
    ("A30lf", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", body=b"2;a\nXX\r\n0\r\n\r\n"), 400),
    ("A30cr", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", body=b"2;a\rXX\r\n0\r\n\r\n"), 400),
    ("A32", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", body=b"FFFFFFFFFFFFFFFFF1\r\nA\r\n0\r\n\r\n"), (400, 413)),
    ("A35", req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", body=b"0" * 20 + b"1\r\nA\r\n0\r\n\r\n"), 400),
    ("A39", req(b"POST /x HTTP/1.0", b"Transfer-Encoding: chunked", body=b"0\r\n\r\n"), 400),
    ("A40h2", req(b"GET / HTTP/2.0", H), 505),
    ("A40h9", req(b"GET / HTTP/9.9", H), 505),
    ("A41", b"GET /\r\n\r\n", 400),
    ("A42a", req(b"GET / HTTP/1.10", H), 400),
    ("A42b", req(b"GET / HTTP/4294967295.255", H), 400),
    ("A42c", req(b"GET / HTTP/1.1 ", H), 400),
    ("A46lower", req(b"get / HTTP/1.1", H), 400),
    ("A46junk", req(b'G=":<>(e) / HTTP/1.1', H), 400),
    ("A46trace", req(b"TRACE / HTTP/1.1", H), 405),
    ("A46connect", req(b"CONNECT internal:22 HTTP/1.1", H), 405),
    ("A46purge", req(b"PURGE / HTTP/1.1", H), 405),
    ("A46propfind", req(b"PROPFIND / HTTP/1.1", H), 405),
    ("A55", req(b"POST /x HTTP/1.1", H, b"Expect: x-foo", b"Content-Length: 1", body=b"a"), 417),
    ("A55obf", req(b"POST /x HTTP/1.1", H, b"Expect: 100-continueX", b"Content-Length: 1", body=b"a"), 417),
    ("B5", req(b"GET / HTTP/1.1", H, b"Upgrade: websocket", b"Connection: Upgrade"), 400),
    ("B6", req(b"CONNECT internal:22 HTTP/1.1", b"Host: internal:22"), 405),
    ("B7", b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", 400),
    ("B8none", b"GET / HTTP/1.1\r\n\r\n", 400),
    ("B8two", req(b"GET / HTTP/1.1", H, b"Host: other"), 400),
    ("B8space", req(b"GET / HTTP/1.1", b"Host : x"), 400),
    ("F3", req(b"GET / HTTP/1.1", H, b"Authorization: Bearer a", b"Authorization: Bearer a"), 400),
    ("F8us", req(b"GET / HTTP/1.1", H, b"X_Account_Id: 42"), 400),
    ("F8sp", req(b"GET / HTTP/1.1", H, b"X-Account-Id : 42"), 400),
    ("F13dots", req(b"GET /persons/../admin HTTP/1.1", H), 400),
    ("F13pct", req(b"GET /persons/%2e%2e/admin HTTP/1.1", H), 400),
    ("F13PCT", req(b"GET /persons/%2E%2E/admin HTTP/1.1", H), 400),
    ("F13mixed", req(b"GET /persons/.%2e/admin HTTP/1.1", H), 400),
    ("F13double", req(b"GET /persons/%252e%252e/admin HTTP/1.1", H), 400),
    ("F13slash", req(b"GET /persons/..%2fadmin HTTP/1.1", H), 400),
    ("F13bs", req(b"GET /persons/%5cadmin HTTP/1.1", H), 400),
    ("F13rawbs", req(b"GET /persons\\..\\admin HTTP/1.1", H), 400),
    ("F13dslash", req(b"GET //admin HTTP/1.1", H), 400),
    ("F13dot", req(b"GET /./admin HTTP/1.1", H), 400),
    ("F13semi", req(b"GET /admin;/ HTTP/1.1", H), 400),
    ("F13tomcat", req(b"GET /persons/..;/admin HTTP/1.1", H), 400),
    ("F13nul", req(b"GET /admin%00 HTTP/1.1", H), 400),
    ("F13utf8", req(b"GET /%c0%ae%c0%ae/admin HTTP/1.1", H), 400),
    ("T-abs", req(b"GET http://evil.example/ HTTP/1.1", H), 400),
    ("T-star", req(b"OPTIONS * HTTP/1.1", H), 400),
    ("T-tab", req(b"GET /a\tb HTTP/1.1", H), 400),
    ("T-frag", req(b"GET /a#b HTTP/1.1", H), 400),
    ("T-2sp", req(b"GET  / HTTP/1.1", H), 400),
]


class FramingRefusals(GatewayTestCase):
    GATEWAY_CONFIG = {"limits": {"body_bytes": 65536}}

    def check_refused(self, case, payload, expect, split, cuts=None):
        before = self.stub.count()
        finals, _, closed = exchange(self.gw.port, payload, split=split, timeout=5, cuts=cuts)
        expect = expect if isinstance(expect, tuple) else (expect,)
        self.assertEqual(len(finals), 1, "%s: expected one response" % case)
        r = finals[0]
        self.assertIn(r.status, expect, case)
        self.assertEqual(r.header("content-type"), "application/problem+json", case)
        self.assertTrue(r.header("x-request-id"), case)
        self.assertEqual(r.header("connection"), "close", case)
        body = r.json()
        self.assertEqual(body["status"], r.status)
        self.assertTrue(body["type"].startswith("urn:lookupgate:problem:"))
        self.assertTrue(closed, "%s: connection must close after a refusal" % case)
        self.assertEqual(self.stub.count(), before, "%s: nothing may reach the upstream" % case)

    def test_refused_whole(self):
        for case, payload, expect in REFUSED:
            with self.subTest(case=case):
                self.check_refused(case, payload, expect, split=False)

    def test_refused_random_splits(self):
        rng = random.Random(2026)
        for case, payload, expect in REFUSED:
            for _ in range(2):
                cuts = rng.sample(range(1, len(payload)), min(3, len(payload) - 1))
                with self.subTest(case=case, cuts=cuts):
                    self.check_refused(case, payload, expect, split=False, cuts=cuts)

    def test_refused_byte_by_byte(self):
        for case, payload, expect in REFUSED:
            with self.subTest(case=case):
                self.check_refused(case, payload, expect, split=True)


class FramingAccepted(GatewayTestCase):
    GATEWAY_CONFIG = {"upstream": {"host_header": "national.example"}, "limits": {"body_bytes": 1000}}

    def forward(self, payload, split=False, n=1):
        before = self.stub.count()
        finals, interim, closed = exchange(self.gw.port, payload, split=split, n=n)
        got = self.stub.received()[before:]
        return finals, interim, closed, got

    def both(self, payload, n=1):
        """Whole and split delivery must give identical statuses and upstream bytes."""
        a = self.forward(payload, False, n)
        b = self.forward(payload, True, n)
        self.assertEqual([r.status for r in a[0]], [r.status for r in b[0]])
        strip = lambda recs: [upstream_head(r["raw"].replace(rid(r), b""))[1:] for r in recs]
        self.assertEqual(strip(a[3]), strip(b[3]))
        return a

    def test_a7_leading_zeros_forwarded_as_canonical_length(self):
        finals, _, _, got = self.both(req(b"POST /api/v1/citizens/verify HTTP/1.1", H, b"Content-Length: 00001", body=b"x"))
        self.assertEqual(len(got), 1)
        line, fields, body = upstream_head(got[0]["raw"])
        self.assertIn(("Content-Length", "1"), fields)
        self.assertEqual(body, b"x")

    def test_a14_chunked_uppercase_is_reframed(self):
        finals, _, _, got = self.both(req(b"POST /api/v1/citizens/verify HTTP/1.1", H, b"Transfer-Encoding: CHUNKED",
                                          body=b"5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"))
        self.assertEqual(len(got), 1)
        line, fields, body = upstream_head(got[0]["raw"])
        names = [n.lower() for n, _ in fields]
        self.assertNotIn("transfer-encoding", names)
        self.assertIn(("Content-Length", "11"), fields)
        self.assertEqual(body, b"hello world")

    def test_a36_chunked_over_limit_is_413_and_not_forwarded(self):
        before = self.stub.count()
        body = b"".join(b"C8\r\n" + b"x" * 200 + b"\r\n" for _ in range(6)) + b"0\r\n\r\n"
        finals, _, closed = exchange(self.gw.port, req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", body=body))
        self.assertEqual(finals[0].status, 413)
        self.assertTrue(closed)
        self.assertEqual(self.stub.count(), before)

    def test_a31_long_chunk_extensions_refused_quickly(self):
        import time
        before = self.stub.count()
        body = b"1" + b";eeee" * 30000 + b"\r\nA\r\n0\r\n\r\n"  # ~150 KiB of extensions
        t = time.time()
        finals, _, closed = exchange(self.gw.port, req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", body=body))
        self.assertEqual(finals[0].status, 400)
        self.assertIn("extension", finals[0].json()["detail"])
        self.assertTrue(closed)
        self.assertLess(time.time() - t, 2.0)
        self.assertEqual(self.stub.count(), before)

    def test_a37_trailers_are_dropped(self):
        body = b"3\r\nabc\r\n0\r\nContent-Length: 7\r\nTransfer-Encoding: chunked\r\nHost: evil\r\nAuthorization: Bearer x\r\nX-Account-Id: 1\r\n\r\n"
        finals, _, _, got = self.both(req(b"POST /api/v1/citizens/verify HTTP/1.1", H, b"Transfer-Encoding: chunked", body=body))
        line, fields, fbody = upstream_head(got[0]["raw"])
        names = [n.lower() for n, _ in fields]
        self.assertNotIn("authorization", names)
        self.assertNotIn("x-account-id", names)
        self.assertEqual(names.count("host"), 1)
        self.assertIn(("Content-Length", "3"), fields)
        self.assertEqual(fbody, b"abc")

    def test_a38_unterminated_trailer_times_out_or_is_refused(self):
        before = self.stub.count()
        body = b"0\r\nX: " + b"a" * 5000
        finals, _, closed = exchange(self.gw.port, req(b"POST /x HTTP/1.1", H, b"Transfer-Encoding: chunked", body=body))
        self.assertEqual(finals[0].status, 400)
        self.assertTrue(closed)
        self.assertEqual(self.stub.count(), before)

    def test_a40_http_1_2_is_served_as_1_1(self):
        finals, _, _, got = self.both(req(b"GET /api/v1/citizens/079123456789 HTTP/1.2", H))
        self.assertEqual(finals[0].status, 200)
        self.assertTrue(got[0]["raw"].startswith(b"GET /api/v1/citizens/079123456789 HTTP/1.1\r\n"))

    def test_a45_long_target_is_414(self):
        before = self.stub.count()
        finals, _, closed = exchange(self.gw.port, req(b"GET /" + b"a" * 8200 + b" HTTP/1.1", H))
        self.assertEqual(finals[0].status, 414)
        self.assertTrue(closed)
        self.assertEqual(self.stub.count(), before)

    def test_a48_garbage_after_request(self):
        payload = req(b"GET /api/v1/citizens/079123456789 HTTP/1.1", H) + b"XYZ\r\n\r\n"
        for split in (False, True):
            before = self.stub.count()
            finals, _, closed = exchange(self.gw.port, payload, n=2, split=split)
            self.assertEqual([r.status for r in finals], [200, 400])
            self.assertTrue(closed)
            got = self.stub.received()[before:]
            self.assertEqual(len(got), 1)
            self.assertNotIn(b"XYZ", got[0]["raw"])

    def test_a50_pipelined_requests_answered_in_order(self):
        payload = (req(b"GET /api/v1/citizens/079123456789 HTTP/1.1", H) +
                   req(b"GET /api/v1/citizens/000000000001 HTTP/1.1", H) +
                   req(b"POST /api/v1/citizens/verify HTTP/1.1", H, b"Content-Length: 2", body=b"{}"))
        finals, _, _, got = self.both(payload, n=3)
        self.assertEqual([r.status for r in finals], [200, 404, 400])
        self.assertEqual([g["url"] for g in got], ["/api/v1/citizens/079123456789",
                                                   "/api/v1/citizens/000000000001",
                                                   "/api/v1/citizens/verify"])
        ids = [r.header("x-request-id") for r in finals]
        self.assertEqual(len(set(ids)), 3)

    def test_a51_pipelined_beyond_the_read_limit(self):
        # 40 pipelined requests of about 560 bytes, 22 KB at once: more than the 9 KB
        # (limits.head_bytes + 1 KiB) a connection lets wait unparsed while a request is
        # upstream. Reading pauses there and resumes as the answered requests make room;
        # every request is answered, in order, and nothing is lost or reordered upstream.
        pad = b"X-Pad: " + b"p" * 480
        paths = [b"/api/v1/citizens/079123456789" if i % 3 else b"/api/v1/citizens/000000000001"
                 for i in range(40)]
        payload = b"".join(req(b"GET " + p + b"?n=%d HTTP/1.1" % i, H, pad) for i, p in enumerate(paths))
        self.assertGreater(len(payload), 2 * (8192 + 1024))
        before = self.stub.count()
        finals, _, closed = exchange(self.gw.port, payload, n=40, timeout=20)
        self.assertFalse(closed)
        self.assertEqual([r.status for r in finals], [200 if i % 3 else 404 for i in range(40)])
        got = self.stub.received()[before:]
        self.assertEqual([g["url"] for g in got],
                         [(p + b"?n=%d" % i).decode() for i, p in enumerate(paths)])

    def test_a52_get_with_body_is_forwarded_with_framing(self):
        finals, _, _, got = self.both(req(b"GET /api/v1/citizens/079123456789 HTTP/1.1", H, b"Content-Length: 10", body=b"0123456789"))
        line, fields, body = upstream_head(got[0]["raw"])
        self.assertIn(("Content-Length", "10"), fields)
        self.assertEqual(body, b"0123456789")

    def test_a54_expect_continue(self):
        body = b'{"so_dinh_danh":"079123456789","ho_ten":"x","ngay_sinh":"1990-01-01"}'
        head = req(b"POST /api/v1/citizens/verify HTTP/1.1", H, b"Expect: 100-continue",
                   b"Content-Type: application/json", b"Content-Length: %d" % len(body))
        import socket
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=3)
        s.sendall(head)
        first = s.recv(4096)
        self.assertEqual(first, b"HTTP/1.1 100 Continue\r\n\r\n")
        finals, interim, _ = exchange(self.gw.port, body, sock=s)
        s.close()
        self.assertEqual(interim, [])
        self.assertEqual(len(finals), 1)
        self.assertEqual(finals[0].status, 200)
        self.assertEqual(finals[0].json(), {"match": False})

    def test_b_hop_by_hop_identity_and_host(self):
        payload = req(b"GET /api/v1/citizens/079123456789 HTTP/1.1", b"Host: client.example",
                      b"Connection: keep-alive, X-Account-Id, X-Custom-Hop",
                      b"X-Account-Id: 42", b"x-account-id: 43", b"X-Custom-Hop: 1",
                      b"Keep-Alive: timeout=5", b"TE: trailers", b"Trailer: X",
                      b"Proxy-Connection: keep-alive", b"Proxy-Authorization: Basic eA==",
                      b"X-Forwarded-For: 1.2.3.4", b"X-Forwarded-Host: evil",
                      b"Forwarded: for=1.2.3.4", b"X-Real-IP: 1.2.3.4",
                      b"X-Lookup-Account: admin", b"X-Lookup-Unit: root",
                      b"X-Request-Id: client-chosen", b"Authorization: Bearer lg_test-core-token",
                      b"Accept: application/json", b"X-Dossier-Id: HS-2026-001")
        finals, _, _, got = self.both(payload)
        self.assertEqual(finals[0].status, 200)
        line, fields, _ = upstream_head(got[0]["raw"])
        lower = [(n.lower(), v) for n, v in fields]
        names = [n for n, _ in lower]
        for dropped in ("x-account-id", "x-custom-hop", "keep-alive", "te", "trailer",
                        "proxy-connection", "proxy-authorization", "forwarded", "x-real-ip",
                        "x-forwarded-host", "authorization", "connection"):
            self.assertNotIn(dropped, names, dropped)
        # only the gateway's verified identity reaches the upstream (F8)
        self.assertEqual([v for n, v in lower if n == "x-lookup-account"], ["test.core"])
        self.assertEqual([v for n, v in lower if n == "x-lookup-unit"], ["test"])
        self.assertEqual(dict(lower)["host"], "national.example")
        self.assertEqual(names.count("host"), 1)
        self.assertEqual(dict(lower)["x-forwarded-for"], "127.0.0.1")
        self.assertEqual(names.count("x-forwarded-for"), 1)
        self.assertEqual(dict(lower)["x-request-id"], finals[0].header("x-request-id"))
        self.assertEqual(names.count("x-request-id"), 1)
        self.assertIn(("accept", "application/json"), lower)
        self.assertIn(("x-dossier-id", "HS-2026-001"), lower)

    def test_head_and_options_are_forwarded_explicitly(self):
        finals, _, _ = exchange(self.gw.port, req(b"HEAD /api/v1/citizens/079123456789 HTTP/1.1", H), head_request=True)
        self.assertEqual(finals[0].status, 404)  # the stub serves citizens to GET only
        self.assertEqual(finals[0].body, b"")


def rid(rec):
    """The X-Request-Id line the gateway added (differs per request)."""
    raw = rec["raw"]
    i = raw.find(b"X-Request-Id: ")
    return raw[i:raw.find(b"\r\n", i)] if i >= 0 else b""


if __name__ == "__main__":
    unittest.main()
