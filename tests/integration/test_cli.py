"""The command line: -t accepts the example config and rejects bad ones naming file, line,
column and key; --help and --version."""

import os
import subprocess
import tempfile
import unittest

from lgtest import BUILD, SOURCE

LG = os.path.join(BUILD, "lookupgate")


def run(*args):
    return subprocess.run([LG, *args], capture_output=True, text=True, timeout=10)


class Cli(unittest.TestCase):
    def test_example_config_is_valid(self):
        r = run("-t", "-c", os.path.join(SOURCE, "deploy", "lookupgate.example.json"))
        self.assertEqual(r.returncode, 0, r.stderr)
        self.assertIn("are valid", r.stdout)

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
