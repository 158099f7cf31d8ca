"""SECURITY-CASES category C (upstream faults) and the upstream pool: keep-alive reuse,
no reuse of broken or EOF-delimited connections, timeouts, no retry of a POST, bounded queue."""

import socket
import threading
import time
import unittest

from lgtest import Gateway, GatewayTestCase, Stub, exchange, free_port, get

CITIZEN = "/api/v1/citizens/079123456789"


class UpstreamFaults(GatewayTestCase):
    GATEWAY_CONFIG = {"upstream": {"response_timeout_ms": 800}}

    def test_c1_cl_and_te_is_502(self):
        r = get(self.gw.port, CITIZEN, {"X-Stub-Mode": "cl-and-te"})
        self.assertEqual(r.status, 502)
        self.assertEqual(r.header("content-type"), "application/problem+json")

    def test_c2_duplicate_content_length_is_502(self):
        self.assertEqual(get(self.gw.port, CITIZEN, {"X-Stub-Mode": "dup-cl"}).status, 502)

    def test_c4_reset_mid_body_is_502_not_a_truncated_200(self):
        r = get(self.gw.port, CITIZEN, {"X-Stub-Mode": "close-mid-body"})
        self.assertEqual(r.status, 502)
        self.assertNotIn(b"so_dinh_danh", r.body)

    def test_c5_eof_delimited_is_relayed_with_our_framing_and_not_reused(self):
        before = self.stub.received()
        r = get(self.gw.port, CITIZEN, {"X-Stub-Mode": "no-length"})
        self.assertEqual(r.status, 200)
        self.assertEqual(int(r.header("content-length")), len(r.body))
        self.assertIn(b"079123456789", r.body)
        r2 = get(self.gw.port, CITIZEN)
        self.assertEqual(r2.status, 200)
        got = self.stub.received()[len(before):]
        self.assertNotEqual(got[0]["conn"], got[1]["conn"])

    def test_c7_interim_100_absorbed_and_101_refused(self):
        finals, interim, _ = exchange(self.gw.port, b"GET " + CITIZEN.encode() +
                                      b" HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer lg_test-core-token\r\nX-Stub-Mode: interim-100\r\n\r\n")
        self.assertEqual([r.status for r in finals], [200])
        self.assertEqual(interim, [])
        self.assertEqual(get(self.gw.port, CITIZEN, {"X-Stub-Mode": "status-101"}).status, 502)

    def test_c9_huge_response_head_is_502(self):
        self.assertEqual(get(self.gw.port, CITIZEN, {"X-Stub-Mode": "huge-head"}).status, 502)

    def test_c10_upstream_never_answers_is_504_at_the_response_timeout(self):
        t = time.time()
        r = get(self.gw.port, CITIZEN, {"X-Stub-Mode": "never"})
        took = time.time() - t
        self.assertEqual(r.status, 504)
        self.assertGreater(took, 0.7)
        self.assertLess(took, 2.5)

    def test_c12_post_is_not_retried(self):
        before = self.stub.count()
        r = get(self.gw.port, "/api/v1/citizens/verify", {"X-Stub-Mode": "close"}, method="POST",
                body=b'{"so_dinh_danh":"079123456789","ho_ten":"a","ngay_sinh":"b"}')
        self.assertEqual(r.status, 502)
        self.assertEqual(self.stub.count() - before, 1)

    def test_keepalive_reuses_one_upstream_connection(self):
        before = len(self.stub.received())
        for _ in range(5):
            self.assertEqual(get(self.gw.port, CITIZEN).status, 200)
        conns = {g["conn"] for g in self.stub.received()[before:]}
        self.assertEqual(len(conns), 1)

    def test_client_keepalive_serves_many_requests_on_one_connection(self):
        s = socket.create_connection(("127.0.0.1", self.gw.port), timeout=3)
        for i in range(10):
            finals, _, closed = exchange(self.gw.port, b"GET " + CITIZEN.encode() + b" HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer lg_test-core-token\r\n\r\n", sock=s)
            self.assertEqual(finals[0].status, 200)
            self.assertEqual(finals[0].header("connection"), "keep-alive")
            self.assertFalse(closed)
        s.close()

    def test_response_hop_by_hop_headers_not_relayed(self):
        r = get(self.gw.port, CITIZEN)
        self.assertEqual(r.header("x-upstream"), "stub")
        self.assertIsNone(r.header("transfer-encoding"))
        r = get(self.gw.port, CITIZEN, {"X-Stub-Mode": "chunked"})
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("transfer-encoding"))
        self.assertEqual(int(r.header("content-length")), len(r.body))

    def test_response_fields_named_by_connection_dropped_and_large_ones_kept_in_order(self):
        r = get(self.gw.port, CITIZEN, {"X-Stub-Mode": "hop-and-big"})
        self.assertEqual(r.status, 200)
        self.assertIsNone(r.header("x-hop-one"))
        self.assertEqual(r.header("x-big"), "b" * 3000)
        names = [k.lower() for k, _ in r.headers]
        for n in ("x-upstream", "x-before", "x-big", "x-after"):
            self.assertIn(n, names)
        order = [names.index(n) for n in ("x-upstream", "x-before", "x-big", "x-after")]
        self.assertEqual(order, sorted(order))
        self.assertNotIn(b"secret", r.raw_head)


class UpstreamConnect(unittest.TestCase):
    def setUp(self):
        import tempfile
        self.tmpdir = tempfile.TemporaryDirectory(prefix="lg-it-")

    def tearDown(self):
        self.tmpdir.cleanup()

    def test_c11_connect_refused_is_502_fast(self):
        dead = free_port()
        gw = Gateway(self.tmpdir.name, dead)
        try:
            t = time.time()
            r = get(gw.port, CITIZEN)
            self.assertEqual(r.status, 502)
            self.assertLess(time.time() - t, 1.0)
            self.assertNotIn("127.0.0.1:%d" % dead, r.body.decode())
        finally:
            gw.stop()

    def test_c11_blackholed_connect_is_504_at_the_connect_timeout(self):
        # A listener whose accept queue is full drops further SYNs: a loopback black hole.
        hole = socket.socket()
        hole.bind(("127.0.0.1", 0))
        hole.listen(0)
        port = hole.getsockname()[1]
        fillers = []
        for _ in range(3):
            f = socket.socket()
            f.setblocking(False)
            try:
                f.connect(("127.0.0.1", port))
            except BlockingIOError:
                pass
            fillers.append(f)
        time.sleep(0.2)
        gw = Gateway(self.tmpdir.name, port, {"upstream": {"connect_timeout_ms": 500}})
        try:
            t = time.time()
            r = get(gw.port, CITIZEN)
            took = time.time() - t
            self.assertEqual(r.status, 504)
            self.assertGreater(took, 0.4)
            self.assertLess(took, 2.0)
        finally:
            gw.stop()
            for f in fillers:
                f.close()
            hole.close()

    def test_c13_pool_exhausted_queues_then_503(self):
        stub = Stub(self.tmpdir.name)
        gw = Gateway(self.tmpdir.name, stub.port,
                     {"upstream": {"pool_size": 1, "queue_size": 1, "queue_timeout_ms": 300}})
        try:
            results = {}

            def call(i):
                results[i] = get(gw.port, CITIZEN, {"X-Stub-Delay-Ms": "1000"})

            threads = [threading.Thread(target=call, args=(i,)) for i in range(3)]
            for t in threads:
                t.start()
                time.sleep(0.05)
            for t in threads:
                t.join(5)
            statuses = sorted(results[i].status for i in range(3))
            self.assertEqual(statuses, [200, 503, 503])
            self.assertEqual(stub.count(), 1)
            self.assertEqual(get(gw.port, CITIZEN).status, 200)
        finally:
            gw.stop()
            stub.stop()


if __name__ == "__main__":
    unittest.main()
