"""
The README's run command (scripts/run.sh) end to end, shortened: its own
mosquitto, the gateway, a fleet registered through the admin API, patients
of whom half grant consent, devices and hospitals publishing, the
authority checking every proof and that no non-consenting patient's record
arrives, then the summary and `ehrctl verify`. It must exit 0.
"""
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import BIN

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")


class Demo(unittest.TestCase):
    def test_run_sh_demo(self):
        data = tempfile.mkdtemp(prefix="ehrgate-demo-")
        try:
            p = subprocess.run(["bash", os.path.join(ROOT, "scripts", "run.sh"), "--bin",
                                os.path.abspath(BIN), "--data", data, "--duration", "8",
                                "--devices", "20", "--patients", "6", "--hospitals", "1"],
                               capture_output=True, text=True, timeout=300)
            out = p.stdout + p.stderr
            self.assertEqual(p.returncode, 0, out[-4000:])
            with open(os.path.join(data, "authority.json")) as f:
                a = json.load(f)
            self.assertGreater(a["records"], 0, a)
            self.assertEqual((a["failed"], a["unexpected"]), (0, 0), a)
            self.assertEqual(a["proofs_ok"], a["records"], a)
            with open(os.path.join(data, "devices.json")) as f:
                d = json.load(f)
            self.assertEqual(d["waiting"], 0, d)
            self.assertIn("3 of 6 patients granted", out)
            self.assertIn("ok: ", out)          # ehrctl verify's verdict
            self.assertNotIn("verify FAILED", out)
        finally:
            if os.environ.get("EHRGATE_KEEP_TMP") is None:
                shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    unittest.main(verbosity=2)
