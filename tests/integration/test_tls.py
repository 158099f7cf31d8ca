"""TLS on client listeners (versions, suites, required client certificates) and towards the
upstream (certificate and hostname verification), with certificates made by the openssl CLI.
The upstream-TLS tests put a TLS front (a byte pipe in this process, with the test CA's server
certificate) before the real stub: gateway → (TLS) → front → stub."""

import hashlib
import os
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

from lgtest import Gateway, Stub, get, parse_responses, read_to_eof

CITIZEN = b"/api/v1/citizens/079123456789"


def sh(*args, cwd):
    subprocess.run(args, cwd=cwd, check=True, capture_output=True)


def make_ca(d, name):
    sh("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
       "-nodes", "-keyout", name + ".key", "-out", name + ".crt", "-days", "2",
       "-subj", "/CN=" + name, cwd=d)


def make_cert(d, ca, name, cn, ext):
    with open(os.path.join(d, name + ".ext"), "w") as f:
        f.write(ext)
    sh("openssl", "req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
       "-keyout", name + ".key", "-out", name + ".csr", "-subj", "/CN=" + cn, cwd=d)
    sh("openssl", "x509", "-req", "-in", name + ".csr", "-CA", ca + ".crt", "-CAkey", ca + ".key",
       "-CAcreateserial", "-out", name + ".crt", "-days", "2", "-extfile", name + ".ext", cwd=d)


def revoke(d, ca, names, crl):
    """Revokes the certificates names (issued by ca) and writes ca's CRL to crl."""
    with open(os.path.join(d, ca + ".cnf"), "w") as f:
        f.write("[ca]\ndefault_ca=d\n[d]\ndatabase=%s.index\ncrlnumber=%s.crlnumber\n"
                "default_md=sha256\ndefault_crl_days=2\n" % (ca, ca))
    open(os.path.join(d, ca + ".index"), "w").close()
    with open(os.path.join(d, ca + ".crlnumber"), "w") as f:
        f.write("01\n")
    base = ["openssl", "ca", "-config", ca + ".cnf", "-keyfile", ca + ".key", "-cert", ca + ".crt"]
    for n in names:
        sh(*base, "-revoke", n + ".crt", cwd=d)
    sh(*base, "-gencrl", "-out", crl, cwd=d)


def install_pair(d, name, rot):
    """Puts d/name.crt and d/name.key in place as rot/cur.crt and rot/cur.key, each by rename
    (as an operator's rotation would)."""
    for ext in ("crt", "key"):
        shutil.copy(os.path.join(d, name + "." + ext), os.path.join(rot, "tmp"))
        os.replace(os.path.join(rot, "tmp"), os.path.join(rot, "cur." + ext))


def der_of(pem_path):
    with open(pem_path) as f:
        return ssl.PEM_cert_to_DER_cert(f.read())


def logged(g, what, n, timeout=5):
    """Whether g's log holds what at least n times within timeout seconds."""
    deadline = time.time() + timeout
    while g.log_text().count(what) < n and time.time() < deadline:
        time.sleep(0.05)
    return g.log_text().count(what) >= n


def read_one(s):
    """One response from the keep-alive connection s."""
    data = b""
    while True:
        resps, _ = parse_responses(data)
        if resps:
            return resps[0]
        chunk = s.recv(65536)
        if not chunk:
            raise AssertionError("connection closed before a response: %r" % data)
        data += chunk


class TlsFront:
    """Terminates TLS with cert/key and pipes the plaintext bytes to 127.0.0.1:backend."""

    def __init__(self, cert, key, backend, legacy=False, client_ca=None):
        self.ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.ctx.load_cert_chain(cert, key)
        if client_ca:  # an upstream that requires a client certificate issued by client_ca
            self.ctx.load_verify_locations(client_ca)
            self.ctx.verify_mode = ssl.CERT_REQUIRED
        self.peers = []  # the client certificate (DER) of each handshake that succeeded
        self.conns = []  # the TLS sockets accepted, for drop_all
        self.lock = threading.Lock()
        if legacy:  # an upstream that speaks TLS 1.0/1.1 only
            self.ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
            self.ctx.minimum_version = ssl.TLSVersion.TLSv1
            self.ctx.maximum_version = ssl.TLSVersion.TLSv1_1
        self.backend = backend
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        threading.Thread(target=self.accept_loop, daemon=True).start()

    def accept_loop(self):
        while True:
            try:
                raw, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self.serve, args=(raw,), daemon=True).start()

    def serve(self, raw):
        try:
            tls = self.ctx.wrap_socket(raw, server_side=True)
        except (ssl.SSLError, OSError):
            raw.close()
            return
        with self.lock:
            self.peers.append(tls.getpeercert(binary_form=True))
            self.conns.append(tls)
        up = socket.create_connection(("127.0.0.1", self.backend))
        threading.Thread(target=self.pipe, args=(up, tls), daemon=True).start()
        self.pipe(tls, up)

    @staticmethod
    def pipe(a, b):
        try:
            while True:
                data = a.recv(65536)
                if not data:
                    break
                b.sendall(data)
        except OSError:
            pass
        for s in (a, b):
            try:
                s.close()
            except OSError:
                pass

    def handshakes(self):
        with self.lock:
            return list(self.peers)

    def drop_all(self):
        """Closes every connection accepted so far (the gateway's pool sees them end)."""
        with self.lock:
            conns, self.conns = self.conns, []
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def close(self):
        self.sock.close()


class Tls(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.tmpdir = tempfile.TemporaryDirectory(prefix="lg-tls-")
        d = cls.d = cls.tmpdir.name
        make_ca(d, "ca")
        make_ca(d, "otherca")
        make_cert(d, "ca", "server", "localhost",
                  "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        make_cert(d, "ca", "client", "tiepnhan", "extendedKeyUsage=clientAuth\n")
        make_cert(d, "ca", "client2", "tiepnhan", "extendedKeyUsage=clientAuth\n")
        make_cert(d, "otherca", "rogue", "rogue", "extendedKeyUsage=clientAuth\n")
        make_cert(d, "ca", "serveronly", "serveronly", "extendedKeyUsage=serverAuth\n")
        make_cert(d, "ca", "revoked", "left-the-office", "extendedKeyUsage=clientAuth\n")
        make_cert(d, "ca", "server2", "localhost",
                  "subjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
        revoke(d, "ca", ["revoked"], "ca.crl")
        cls.stub = Stub(d)
        p = lambda n: os.path.join(d, n)
        cls.gw = Gateway(d, cls.stub.port, {"limits": {"idle_timeout_ms": 1000}},
                         tls={"cert": p("server.crt"), "key": p("server.key")})
        cls.mtls = Gateway(d, cls.stub.port, tls={"cert": p("server.crt"), "key": p("server.key"),
                                                  "client_ca": p("ca.crt"),
                                                  "require_client_cert": True})
        cls.crl = Gateway(d, cls.stub.port, tls={"cert": p("server.crt"), "key": p("server.key"),
                                                 "client_ca": p("ca.crt"),
                                                 "client_crl": p("ca.crl"),
                                                 "require_client_cert": True})
        cls.front = TlsFront(p("server.crt"), p("server.key"), cls.stub.port)

    @classmethod
    def tearDownClass(cls):
        try:
            cls.gw.stop()
            cls.mtls.stop()
            cls.crl.stop()
            cls.front.close()
        finally:
            cls.stub.stop()
            cls.tmpdir.cleanup()

    def ctx(self, **kw):
        c = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        c.load_verify_locations(os.path.join(self.d, "ca.crt"))
        c.check_hostname = True
        for k, v in kw.items():
            setattr(c, k, v)
        return c

    def request(self, port, ctx, hostname="localhost"):
        with socket.create_connection(("127.0.0.1", port), timeout=3) as raw:
            with ctx.wrap_socket(raw, server_hostname=hostname) as s:
                version = s.version()
                s.sendall(b"GET " + CITIZEN + b" HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer lg_test-core-token\r\nConnection: close\r\n\r\n")
                resps, _ = parse_responses(read_to_eof(s))
                return resps[0], version

    def test_h3_tls13_and_tls12_ecdhe_aead_succeed(self):
        r, v = self.request(self.gw.port, self.ctx())
        self.assertEqual((r.status, v), (200, "TLSv1.3"))
        c = self.ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
        c.set_ciphers("ECDHE-ECDSA-AES128-GCM-SHA256")
        r, v = self.request(self.gw.port, c)
        self.assertEqual((r.status, v), (200, "TLSv1.2"))

    def test_h1_old_versions_refused(self):
        c = self.ctx(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
        c.set_ciphers("DEFAULT:@SECLEVEL=0")
        with self.assertRaises((ssl.SSLError, ConnectionResetError)):
            self.request(self.gw.port, c)

    def test_h2_cbc_only_refused(self):
        c = self.ctx(maximum_version=ssl.TLSVersion.TLSv1_2)
        c.set_ciphers("ECDHE-ECDSA-AES128-SHA:ECDHE-ECDSA-AES256-SHA")
        with self.assertRaises((ssl.SSLError, ConnectionResetError)):
            self.request(self.gw.port, c)

    def test_h5_h6_client_certificates(self):
        before = self.stub.count()
        with self.assertRaises((ssl.SSLError, ConnectionResetError, IndexError)):
            self.request(self.mtls.port, self.ctx())
        rogue = self.ctx()
        rogue.load_cert_chain(os.path.join(self.d, "rogue.crt"), os.path.join(self.d, "rogue.key"))
        with self.assertRaises((ssl.SSLError, ConnectionResetError, IndexError)):
            self.request(self.mtls.port, rogue)
        wrong_eku = self.ctx()
        wrong_eku.load_cert_chain(os.path.join(self.d, "serveronly.crt"), os.path.join(self.d, "serveronly.key"))
        with self.assertRaises((ssl.SSLError, ConnectionResetError, IndexError)):
            self.request(self.mtls.port, wrong_eku)
        self.assertEqual(self.stub.count(), before)
        good = self.ctx()
        good.load_cert_chain(os.path.join(self.d, "client.crt"), os.path.join(self.d, "client.key"))
        r, _ = self.request(self.mtls.port, good)
        self.assertEqual(r.status, 200)
        # The audit records name the client certificate by its SHA-256 fingerprint.
        with open(os.path.join(self.d, "client.crt")) as f:
            der = ssl.PEM_cert_to_DER_cert(f.read())
        rid = r.header("x-request-id")
        recs = self.mtls.wait_audit(lambda rs: len([x for x in rs if x.get("request_id") == rid]) == 2)
        recs = [x for x in recs if x.get("request_id") == rid]
        self.assertEqual([x["type"] for x in recs], ["lookup.intent", "lookup.result"])
        for x in recs:
            self.assertEqual(x["tls_client"], "sha256:" + hashlib.sha256(der).hexdigest())

    def client_ctx(self, name):
        c = self.ctx()
        c.load_cert_chain(os.path.join(self.d, name + ".crt"), os.path.join(self.d, name + ".key"))
        return c

    def test_h7_revoked_client_certificate_fails(self):
        """With client_crl, a certificate the CA revoked fails the handshake and nothing goes
        upstream; one it did not revoke works. Without the CRL the revoked one is accepted
        (the mtls gateway), so the CRL is what refuses it."""
        before = self.stub.count()
        with self.assertRaises((ssl.SSLError, ConnectionResetError, IndexError)):
            self.request(self.crl.port, self.client_ctx("revoked"))
        self.assertEqual(self.stub.count(), before)
        r, _ = self.request(self.crl.port, self.client_ctx("client"))
        self.assertEqual(r.status, 200)
        r, _ = self.request(self.mtls.port, self.client_ctx("revoked"))
        self.assertEqual(r.status, 200)
        # a file without a CRL in it stops the start (fail closed), naming the setting's file
        p = lambda n: os.path.join(self.d, n)
        bad = Gateway(self.d, self.stub.port, wait=False,
                      tls={"cert": p("server.crt"), "key": p("server.key"),
                           "client_ca": p("ca.crt"), "client_crl": p("server.crt")})
        try:
            self.assertEqual(bad.proc.wait(10), 1)
            self.assertIn(b"cannot load client CRL", bad.log_text())
            self.assertIn(p("server.crt").encode(), bad.log_text())
        finally:
            bad.stop(expect_code=None, verify=False)

    def test_h16_certificate_rotation_on_sighup(self):
        """New certificate files and SIGHUP: new handshakes get the new certificate, a
        connection opened before keeps working with the old one, and a bad key file is refused
        whole (the log says so) while the current certificate stays."""
        p = lambda n: os.path.join(self.d, n)
        rot = tempfile.mkdtemp(dir=self.d)
        install = lambda name: install_pair(self.d, name, rot)
        der = lambda name: der_of(p(name + ".crt"))

        install("server")
        g = Gateway(self.d, self.stub.port, tls={"cert": os.path.join(rot, "cur.crt"),
                                                 "key": os.path.join(rot, "cur.key")})
        req = (b"GET " + CITIZEN + b" HTTP/1.1\r\nHost: a\r\n"
               b"Authorization: Bearer lg_test-core-token\r\n\r\n")
        try:
            old = self.ctx().wrap_socket(socket.create_connection(("127.0.0.1", g.port), timeout=3),
                                         server_hostname="localhost")
            self.assertEqual(old.getpeercert(binary_form=True), der("server"))
            old.sendall(req)
            self.assertEqual(read_one(old).status, 200)
            install("server2")
            g.proc.send_signal(signal.SIGHUP)
            self.assertTrue(logged(g, b"TLS reload ok", 1), g.log_text())
            with socket.create_connection(("127.0.0.1", g.port), timeout=3) as raw:
                with self.ctx().wrap_socket(raw, server_hostname="localhost") as s:
                    self.assertEqual(s.getpeercert(binary_form=True), der("server2"))
                    s.sendall(req)
                    self.assertEqual(read_one(s).status, 200)
            old.sendall(req)  # the connection from before the rotation is unaffected
            self.assertEqual(read_one(old).status, 200)
            self.assertEqual(old.getpeercert(binary_form=True), der("server"))
            old.close()
            with open(os.path.join(rot, "cur.key"), "w") as f:
                f.write("not a key\n")
            g.proc.send_signal(signal.SIGHUP)
            self.assertTrue(logged(g, b"TLS reload refused", 1), g.log_text())
            self.assertTrue(logged(g, b"policy reload ok", 2), g.log_text())
            r, _ = self.request(g.port, self.ctx())
            self.assertEqual(r.status, 200)
        finally:
            g.stop()

    def test_h13_plain_http_on_tls_port_closes_cleanly(self):
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=3) as s:
            s.sendall(b"GET / HTTP/1.1\r\nHost: a\r\nAuthorization: Bearer lg_test-core-token\r\n\r\n")
            try:
                data = s.recv(100)
            except ConnectionResetError:
                data = b""
            self.assertFalse(data.startswith(b"HTTP/1.1 200"))
        r, _ = self.request(self.gw.port, self.ctx())
        self.assertEqual(r.status, 200)

    def test_d2_h15_silent_or_trickling_handshake_is_closed(self):
        import time
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=5) as s:
            t = time.time()
            self.assertEqual(s.recv(10), b"")  # nothing sent: closed at the idle timeout
            self.assertLess(time.time() - t, 3)
        hello = bytes.fromhex("16030100f4010000f00303") + b"\x00" * 40
        with socket.create_connection(("127.0.0.1", self.gw.port), timeout=5) as s:
            t = time.time()
            closed = False
            for b in hello:
                try:
                    s.send(bytes([b]))
                except (BrokenPipeError, ConnectionResetError):
                    closed = True
                    break
                time.sleep(0.1)
            took = time.time() - t
            if not closed:
                try:
                    closed = s.recv(10) == b""
                except ConnectionResetError:
                    closed = True
            self.assertTrue(closed)
            self.assertLess(took, 3)

    def upstream_tls_gateway(self, upstream):
        cfg = {"upstream": dict({"url": "https://localhost:%d" % self.front.port}, **upstream)}
        return Gateway(self.d, self.stub.port, cfg)

    def test_upstream_tls_verified(self):
        b = self.upstream_tls_gateway({"ca_file": os.path.join(self.d, "ca.crt")})
        try:
            self.assertEqual(get(b.port, CITIZEN.decode()).status, 200)
        finally:
            b.stop()

    def test_h10_upstream_wrong_hostname_is_502(self):
        b = self.upstream_tls_gateway({"ca_file": os.path.join(self.d, "ca.crt"),
                                       "server_name": "national.example"})
        try:
            r = get(b.port, CITIZEN.decode())
            self.assertEqual(r.status, 502)
        finally:
            b.stop()

    def test_h11_upstream_untrusted_ca_is_502(self):
        b = self.upstream_tls_gateway({"ca_file": os.path.join(self.d, "otherca.crt")})
        try:
            self.assertEqual(get(b.port, CITIZEN.decode()).status, 502)
        finally:
            b.stop()

    def test_h16_upstream_client_certificate_and_its_rotation(self):
        """An upstream that requires a client certificate (as the national link does): without
        one the handshake fails (502, nothing forwarded); with upstream.client_cert it works
        and the upstream sees that certificate. New files and SIGHUP: a pooled connection from
        before keeps working on the old certificate, new handshakes present the new one, and a
        bad key file is refused whole (the log says so) with the current certificate kept."""
        p = lambda n: os.path.join(self.d, n)
        rot = tempfile.mkdtemp(dir=self.d)
        install = lambda name: install_pair(self.d, name, rot)
        der = lambda name: der_of(p(name + ".crt"))

        names = {der(n): n for n in ("client", "client2")}

        def seen():  # the client certificate of each upstream handshake, by file name
            return [names.get(c, "other") for c in front.handshakes()]

        def drop_pool(g):
            front.drop_all()  # the pool must notice before the next request needs a connection
            time.sleep(0.5)

        front = TlsFront(p("server.crt"), p("server.key"), self.stub.port, client_ca=p("ca.crt"))
        up = {"url": "https://localhost:%d" % front.port, "ca_file": p("ca.crt")}
        bare = Gateway(self.d, self.stub.port, {"upstream": up})
        install("client")
        g = Gateway(self.d, self.stub.port, {"upstream": dict(
            up, client_cert=os.path.join(rot, "cur.crt"), client_key=os.path.join(rot, "cur.key"))})
        try:
            n = self.stub.count()
            self.assertEqual(get(bare.port, CITIZEN.decode()).status, 502)
            self.assertEqual(self.stub.count(), n)
            self.assertEqual(seen(), [])

            self.assertEqual(get(g.port, CITIZEN.decode()).status, 200)
            self.assertEqual(seen(), ["client"])

            install("client2")
            g.proc.send_signal(signal.SIGHUP)
            self.assertTrue(logged(g, b"TLS reload ok", 1), g.log_text())
            # the pooled connection from before the rotation is unaffected: no new handshake
            self.assertEqual(get(g.port, CITIZEN.decode()).status, 200)
            self.assertEqual(seen(), ["client"])
            drop_pool(g)
            self.assertEqual(get(g.port, CITIZEN.decode()).status, 200)
            self.assertEqual(seen(), ["client", "client2"])

            with open(os.path.join(rot, "cur.key"), "w") as f:
                f.write("not a key\n")
            g.proc.send_signal(signal.SIGHUP)
            self.assertTrue(logged(g, b"TLS reload refused", 1), g.log_text())
            self.assertIn(b"cannot load client key", g.log_text())
            drop_pool(g)
            self.assertEqual(get(g.port, CITIZEN.decode()).status, 200)
            self.assertEqual(seen(), ["client", "client2", "client2"])
        finally:
            g.stop()
            bare.stop()
            front.close()

    def test_h12_upstream_offering_only_old_tls_is_502(self):
        old = TlsFront(os.path.join(self.d, "server.crt"), os.path.join(self.d, "server.key"),
                       self.stub.port, legacy=True)
        b = Gateway(self.d, self.stub.port, {"upstream": {
            "url": "https://localhost:%d" % old.port, "ca_file": os.path.join(self.d, "ca.crt")}})
        try:
            # the old upstream does work, for a client that still speaks TLS 1.1
            c = self.ctx(minimum_version=ssl.TLSVersion.TLSv1, maximum_version=ssl.TLSVersion.TLSv1_1)
            c.set_ciphers("DEFAULT:@SECLEVEL=0")
            with socket.create_connection(("127.0.0.1", old.port), timeout=3) as raw:
                with c.wrap_socket(raw, server_hostname="localhost") as t:
                    self.assertEqual(t.version(), "TLSv1.1")
            n = self.stub.count()
            self.assertEqual(get(b.port, CITIZEN.decode()).status, 502)
            self.assertEqual(self.stub.count(), n)
        finally:
            b.stop()
            old.close()

    def test_h4_client_renegotiation_is_refused(self):
        p = subprocess.run("(sleep 0.5; echo R; sleep 1) | openssl s_client -connect 127.0.0.1:%d "
                           "-tls1_2 -CAfile %s" % (self.gw.port, os.path.join(self.d, "ca.crt")),
                           shell=True, capture_output=True, timeout=30)
        out = (p.stdout + p.stderr).decode(errors="replace")
        self.assertIn("RENEGOTIATING", out)  # s_client asked ...
        self.assertIn("no renegotiation", out)  # ... and the gateway refused


if __name__ == "__main__":
    unittest.main()
