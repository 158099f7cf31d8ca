"""The command line: -t accepts the example config and rejects bad ones naming file, line,
column and key; --help and --version."""

import json
import os
import shutil
import subprocess
import tempfile
import unittest

from lgtest import BUILD, SOURCE, audit_keys

LG = os.path.join(BUILD, "lookupgate")


def run(*args):
    return subprocess.run([LG, *args], capture_output=True, text=True, timeout=10)


class Cli(unittest.TestCase):
    def example_in(self, tmp, keys=True):
        """The example config and policy copied into tmp, its audit paths moved there, and
        (when keys) keys made with lookupgate-audit keygen."""
        with open(os.path.join(SOURCE, "deploy", "lookupgate.example.json")) as f:
            cfg = json.load(f)
        shutil.copy(os.path.join(SOURCE, "deploy", "policy.example.json"), tmp)
        cfg["audit"].update({"dir": os.path.join(tmp, "audit"),
                             "signing_key": os.path.join(tmp, "keys", "signing.key"),
                             "cid_key": os.path.join(tmp, "keys", "cid.key")})
        if keys:
            audit_keys(tmp)
        path = os.path.join(tmp, "lookupgate.json")
        with open(path, "w") as f:
            json.dump(cfg, f)
        return path

    def test_example_config_is_valid(self):
        with tempfile.TemporaryDirectory() as tmp:
            r = run("-t", "-c", self.example_in(tmp))
            self.assertEqual(r.returncode, 0, r.stderr)
            self.assertIn("are valid", r.stdout)

    def test_audit_keys_are_checked(self):
        """-t refuses missing keys, keys others can read, and keys inside the audit directory."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self.example_in(tmp, keys=False)
            r = run("-t", "-c", path)
            self.assertEqual(r.returncode, 1)
            self.assertIn("audit.signing_key", r.stderr)
            self.assertIn("No such file", r.stderr)
            audit_keys(tmp)
            os.chmod(os.path.join(tmp, "keys", "cid.key"), 0o644)
            r = run("-t", "-c", path)
            self.assertEqual(r.returncode, 1)
            self.assertIn("audit.cid_key", r.stderr)
            self.assertIn("chmod 600", r.stderr)
            os.chmod(os.path.join(tmp, "keys", "cid.key"), 0o600)
            with open(path) as f:
                cfg = json.load(f)
            cfg["audit"]["dir"] = os.path.join(tmp, "keys")
            with open(path, "w") as f:
                json.dump(cfg, f)
            r = run("-t", "-c", path)
            self.assertEqual(r.returncode, 1)
            self.assertIn("outside the audit directory", r.stderr)

    def test_audit_is_required(self):
        """There is no way to run without the audit log: the section and its keys are required."""
        with tempfile.TemporaryDirectory() as tmp:
            path = self.example_in(tmp)
            with open(path) as f:
                cfg = json.load(f)
            del cfg["audit"]
            with open(path, "w") as f:
                json.dump(cfg, f)
            r = run("-t", "-c", path)
            self.assertEqual(r.returncode, 1)
            self.assertIn('key "audit": is required', r.stderr)
            cfg["audit"] = {"dir": os.path.join(tmp, "a"), "enabled": False}
            with open(path, "w") as f:
                json.dump(cfg, f)
            r = run("-t", "-c", path)
            self.assertEqual(r.returncode, 1)
            self.assertIn('"audit.enabled"', r.stderr)
            self.assertIn('"audit.signing_key"', r.stderr)

    def check_invalid(self, text, *expected):
        """-t on a config holding text exits 1 and prints each expected fragment ({f} = path)."""
        with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
            f.write(text)
        try:
            r = run("-t", "-c", f.name)
            self.assertEqual(r.returncode, 1)
            for e in expected:
                self.assertIn(e.format(f=f.name), r.stderr)
        finally:
            os.unlink(f.name)

    def test_unknown_key_is_rejected_with_position(self):
        self.check_invalid('{\n  "listeners": [{"address": "127.0.0.1:8080"}],\n'
                           '  "upstream": {"url": "http://127.0.0.1:9000"},\n'
                           '  "limits": {\n    "head_byte": 8192\n  }\n}\n',
                           '{f}:5:5: key "limits.head_byte": unknown key')

    def test_wrong_type_and_syntax_errors(self):
        self.check_invalid('{"listeners": [{"address": 8080}], "upstream": {"url": "http://a:1"}, "workers": "two"}',
                           'key "listeners[0].address": expected a non-empty string',
                           'key "workers": expected an integer')
        self.check_invalid('{"listeners": [\n  {"address": "x"},,\n]}', "{f}:2:")

    def test_admin_and_throttle_settings_are_checked(self):
        self.check_invalid('{"listeners": [{"address": "127.0.0.1:8080"}], "upstream": {"url": "http://a:1"},\n'
                           ' "limits": {"auth_throttle_exempt": ["10.0.0.1", "not-an-ip"]},\n'
                           ' "admin": {"address": "nowhere", "tokens": [{"name": "a b", "sha256": "xyz"},\n'
                           '   {"name": "ops"}], "bogus": 1}}',
                           'key "limits.auth_throttle_exempt[1]": expected a numeric IPv4 or IPv6 address',
                           'key "admin.address": expected "host:port"',
                           'key "admin.tokens[0].name": use 1 to 64 letters',
                           'key "admin.tokens[0].sha256": expected 64 hex digits',
                           'key "admin.tokens[1].sha256"',
                           'key "admin.bogus": unknown key')

    def test_tls_client_settings_need_a_ca(self):
        self.check_invalid('{"listeners": [{"address": "127.0.0.1:8080", "tls": {"cert": "c.pem",\n'
                           '   "key": "k.pem", "client_crl": "ca.crl"}}],\n'
                           ' "upstream": {"url": "http://a:1"},\n'
                           ' "admin": {"tls": {"cert": "c.pem", "key": "k.pem", "client_crl": "x",\n'
                           '   "require_client_cert": true}}}',
                           'client_crl needs client_ca',
                           'key "admin.tls": require_client_cert needs client_ca',
                           'key "admin.tls": client_crl needs client_ca')

    def test_missing_file(self):
        r = run("-t", "-c", "/nonexistent/lookupgate.json")
        self.assertEqual(r.returncode, 1)
        self.assertIn("/nonexistent/lookupgate.json", r.stderr)

    def test_help_and_version(self):
        r = run("--help")
        self.assertEqual(r.returncode, 0)
        self.assertIn("-t -c FILE", r.stdout)
        r = run("--version")
        self.assertEqual(r.returncode, 0)
        self.assertRegex(r.stdout, r"^lookupgate \d+\.\d+\.\d+")
        self.assertEqual(run().returncode, 2)


if __name__ == "__main__":
    unittest.main()
