"""Deployment (issue 5): the hardened systemd unit passes systemd-analyze verify (and its
offline security review), cpack -G DEB builds a package holding the binaries, the unit and the
examples, the Prometheus rules load in promtool and every metric the rules and the Grafana
dashboard use is one lookupgate exports, and the Sentinel example is a valid store section."""

import json
import os
import re
import shutil
import subprocess
import tempfile
import unittest

from lgtest import BUILD, SOURCE, Gateway, Redis, Stub, audit_keys

UNIT = os.path.join(SOURCE, "deploy", "systemd", "lookupgate.service")
ANALYZE = shutil.which("systemd-analyze")


def run(args, **kw):
    return subprocess.run(args, capture_output=True, timeout=300, **kw)


class Unit(unittest.TestCase):
    def setUp(self):
        self.tmpdir = tempfile.TemporaryDirectory(prefix="lg-deploy-")
        self.tmp = self.tmpdir.name

    def tearDown(self):
        self.tmpdir.cleanup()

    def settings(self):
        out = {}
        for line in open(UNIT):
            line = line.strip()
            if line and not line.startswith(("#", "[")):
                k, v = line.split("=", 1)
                out.setdefault(k, []).append(v)
        return out

    def test_hardening_settings(self):
        s = self.settings()
        self.assertEqual(s["User"], ["lookupgate"])
        self.assertEqual(s["NoNewPrivileges"], ["yes"])
        self.assertEqual(s["ProtectSystem"], ["strict"])
        self.assertEqual(s["ReadWritePaths"], ["/var/lib/lookupgate/audit"])  # and nothing else
        self.assertEqual(s["CapabilityBoundingSet"], [""])
        self.assertEqual(s["OOMScoreAdjust"], ["-900"])
        self.assertEqual(s["ExecReload"], ["/bin/kill -HUP $MAINPID"])
        self.assertIn("-t -c /etc/lookupgate/lookupgate.json", s["ExecStartPre"][0])

    @unittest.skipIf(ANALYZE is None and not os.environ.get("CI"), "systemd-analyze missing")
    def test_systemd_analyze_verify_accepts_the_unit(self):
        # The unit names the packaged binary; point it at the built one so verify can check it.
        unit = os.path.join(self.tmp, "lookupgate.service")
        with open(UNIT) as f:
            text = f.read().replace("/usr/bin/lookupgate", os.path.abspath(os.path.join(BUILD, "lookupgate")))
        with open(unit, "w") as f:
            f.write(text)
        p = run([ANALYZE, "verify", unit])
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        self.assertEqual(p.stderr.decode().strip(), "")
        p = run([ANALYZE, "security", "--offline=yes", unit])
        m = re.search(r"Overall exposure level for lookupgate.service: ([0-9.]+)", p.stdout.decode())
        self.assertIsNotNone(m, p.stdout.decode()[-2000:] + p.stderr.decode())
        self.assertLessEqual(float(m.group(1)), 2.0, p.stdout.decode())


class Package(unittest.TestCase):
    def test_cpack_deb_contents(self):
        cpack = shutil.which("cpack")
        self.assertIsNotNone(cpack)
        with tempfile.TemporaryDirectory(prefix="lg-cpack-") as tmp:
            p = run([cpack, "-G", "DEB", "--config", os.path.join(BUILD, "CPackConfig.cmake"), "-B", tmp])
            self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
            debs = [f for f in os.listdir(tmp) if f.endswith(".deb")]
            self.assertEqual(len(debs), 1, os.listdir(tmp))
            deb = os.path.join(tmp, debs[0])
            listing = run(["dpkg-deb", "-c", deb]).stdout.decode()
            files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
            for f in ["/usr/bin/lookupgate", "/usr/bin/lookupgate-audit",
                      "/usr/lib/lookupgate/lookupgate-redis.so",
                      "/usr/lib/systemd/system/lookupgate.service",
                      "/etc/lookupgate/lookupgate.json",
                      "/usr/share/doc/lookupgate/README.md",
                      "/usr/share/doc/lookupgate/examples/lookupgate.example.json",
                      "/usr/share/doc/lookupgate/examples/policy.example.json",
                      "/usr/share/doc/lookupgate/examples/prometheus/lookupgate-alerts.yml",
                      "/usr/share/doc/lookupgate/examples/grafana/lookupgate-dashboard.json",
                      "/usr/share/doc/lookupgate/examples/redis-sentinel/sentinel.conf"]:
                self.assertIn(f, files)
            self.assertRegex(listing, r"-rwxr-xr-x root/root +\d+ .* \./usr/bin/lookupgate\n")
            info = run(["dpkg-deb", "-I", deb]).stdout.decode()
            self.assertIn("Package: lookupgate", info)
            self.assertRegex(info, r"Depends: .*adduser.*libhiredis0\.14")
            for member in ["postinst", "postrm", "conffiles"]:
                self.assertIn(member, info)
            conff = run(["dpkg-deb", "--info", deb, "conffiles"]).stdout.decode()
            self.assertEqual(conff.split(), ["/etc/lookupgate/lookupgate.json"])
            # The packaged binary runs.
            root = os.path.join(tmp, "root")
            self.assertEqual(run(["dpkg-deb", "-x", deb, root]).returncode, 0)
            v = run([os.path.join(root, "usr/bin/lookupgate"), "--version"])
            self.assertEqual(v.returncode, 0)
            self.assertIn(b"lookupgate", v.stdout + v.stderr)
            # The packaged Redis module loads into Debian's redis-server (which wants it
            # executable).
            self.assertRegex(listing, r"-rwxr-xr-x root/root +\d+ .* "
                                      r"\./usr/lib/lookupgate/lookupgate-redis\.so\n")
            r = Redis(tmp, args=["--loadmodule",
                                 os.path.join(root, "usr/lib/lookupgate/lookupgate-redis.so")])
            try:
                self.assertEqual(r.cmd("COMMAND", "INFO", "lookupgate.admit")[0][0],
                                 "lookupgate.admit")
            finally:
                r.stop()


class Monitoring(unittest.TestCase):
    def test_redis_module_lost_alert(self):
        # promtool's rule tests: an instance whose workers decided with the Redis module and
        # then lost it is alerted on after 10 minutes; one that never had it, or whose Redis is
        # down (another alert), is not.
        promtool = shutil.which("promtool")
        if promtool is None:
            if os.environ.get("CI"):
                raise AssertionError("promtool is required in CI (./deploy/test.sh installs it)")
            self.skipTest("no promtool")
        rules = os.path.join(SOURCE, "deploy", "prometheus", "lookupgate-alerts.yml")
        series = []
        for inst, module, ready in (("lost", "2x30 0x40", "2x70"), ("never", "0x70", "2x70"),
                                    ("down", "2x30 0x40", "2x30 0x40")):
            series += [
                "      - series: 'lookupgate_store_module_connections{instance=\"%s\"}'\n"
                "        values: '%s'\n" % (inst, module),
                "      - series: 'lookupgate_store_connections_ready{instance=\"%s\"}'\n"
                "        values: '%s'\n" % (inst, ready),
                "      - series: 'lookupgate_workers{instance=\"%s\"}'\n"
                "        values: '2x70'\n" % inst]
        test = ("rule_files: [%s]\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n"
                "    input_series:\n%s    alert_rule_test:\n"
                "      - eval_time: 35m\n        alertname: LookupgateRedisModuleLost\n"
                "        exp_alerts: []\n"
                "      - eval_time: 45m\n        alertname: LookupgateRedisModuleLost\n"
                "        exp_alerts:\n"
                "          - exp_labels: {severity: warning, instance: lost}\n"
                "            exp_annotations:\n"
                "              summary: \"lost no longer decides quotas with the lookupgate Redis "
                "module\"\n"
                "              description: \"Load lookupgate-redis.so on the current Redis "
                "primary (README, The Redis module).\"\n") % (json.dumps(rules), "".join(series))
        with tempfile.TemporaryDirectory(prefix="lg-rules-") as tmp:
            path = os.path.join(tmp, "test.yml")
            with open(path, "w") as f:
                f.write(test)
            p = run([promtool, "test", "rules", path])
            self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())

    def test_rules_and_dashboard_use_only_exported_metrics(self):
        rules = os.path.join(SOURCE, "deploy", "prometheus", "lookupgate-alerts.yml")
        dash = os.path.join(SOURCE, "deploy", "grafana", "lookupgate-dashboard.json")
        promtool = shutil.which("promtool")
        if promtool:
            p = run([promtool, "check", "rules", rules])
            self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        with open(dash) as f:
            board = json.load(f)
        exprs = [t["expr"] for p in board["panels"] for t in p["targets"]]
        self.assertGreaterEqual(len(board["panels"]), 8)
        with open(rules) as f:
            used = set(re.findall(r"lookupgate_[a-z_]+", f.read() + "\n".join(exprs)))
        with tempfile.TemporaryDirectory(prefix="lg-mon-") as tmp:
            stub = Stub(tmp)
            g = Gateway(tmp, stub.port)
            try:
                st, _, body = g.admin("/metrics")
            finally:
                g.stop()
                stub.stop()
        self.assertEqual(st, 200)
        exported = set(re.findall(r"^# TYPE (\S+)", body.decode(), re.M))
        names = {re.sub(r"_(bucket|sum|count)$", "", n) if re.sub(r"_(bucket|sum|count)$", "", n) in exported else n
                 for n in used}
        self.assertEqual(names - exported, set())


class SentinelExample(unittest.TestCase):
    def test_store_section_is_valid(self):
        with open(os.path.join(SOURCE, "deploy", "redis-sentinel", "lookupgate-store.json")) as f:
            store = json.load(f)["store"]
        with tempfile.TemporaryDirectory(prefix="lg-sent-") as tmp:
            pw = os.path.join(tmp, "redis.password")
            with open(pw, "w") as f:
                f.write("secret\n")
            store["password_file"] = pw
            keys = audit_keys(tmp)
            with open(os.path.join(SOURCE, "deploy", "lookupgate.example.json")) as f:
                cfg = json.load(f)
            cfg["store"] = store
            cfg["policy"] = os.path.abspath(os.path.join(SOURCE, "deploy", "policy.example.json"))
            cfg["audit"].update({"dir": os.path.join(tmp, "audit"),
                                 "signing_key": os.path.join(keys, "signing.key"),
                                 "cid_key": os.path.join(keys, "cid.key")})
            path = os.path.join(tmp, "lookupgate.json")
            with open(path, "w") as f:
                json.dump(cfg, f)
            p = run([os.path.join(BUILD, "lookupgate"), "-t", "-c", path])
            self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())


if __name__ == "__main__":
    unittest.main()
