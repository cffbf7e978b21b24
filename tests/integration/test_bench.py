"""ehrgate-bench keeps working (issue 8).

A benchmark is not a test: nothing here looks at a rate or a latency. This
runs `ehrgate-bench --quick` (its own broker and gateways, every path) and
checks what must hold whatever the speed: every message sent in every phase
was answered and accepted, every accepted telemetry record reached the
feed, the chain verifies, the figures are written as JSON, and no
sanitizer reported anything in the gateways' logs.
"""
import glob
import json
import os
import shutil
import subprocess
import tempfile
import unittest

from harness import BIN

BENCH = os.path.join(BIN, "bench", "ehrgate-bench")


class BenchTest(unittest.TestCase):
    def setUp(self):
        self.work = tempfile.mkdtemp(prefix="ehrgate-bench-test-")
        os.chmod(self.work, 0o755)
        self.addCleanup(shutil.rmtree, self.work, True)

    def test_help(self):
        out = subprocess.run([BENCH, "--help"], capture_output=True, text=True, timeout=30)
        self.assertEqual(out.returncode, 0)
        self.assertIn("--fill", out.stdout)
        bad = subprocess.run([BENCH, "--no-such-option", "1"], capture_output=True, text=True,
                             timeout=30)
        self.assertEqual(bad.returncode, 2)
        self.assertIn("--no-such-option", bad.stderr)

    def test_quick_run_loses_nothing(self):
        work = os.path.join(self.work, "run")
        figures = os.path.join(self.work, "bench.json")
        out = subprocess.run([BENCH, "--quick", "--work", work, "--keep", "--json", figures],
                             capture_output=True, text=True, timeout=850)
        self.assertEqual(out.returncode, 0, out.stderr[-3000:])
        self.assertIn("x raw", out.stdout)
        with open(figures) as f:
            res = json.load(f)
        kinds = [p["kind"] for p in res["phases"]]
        for k in ("raw relay", "telemetry", "signed telemetry", "FHIR Bundle", "HL7 v2 ORU",
                  "proof requests"):
            self.assertIn(k, kinds)
        for p in res["phases"]:
            with self.subTest(phase=p["phase"]):
                self.assertGreater(p["sent"], 0)
                self.assertEqual(p["unanswered"], 0)
                self.assertEqual(p["rejected"], 0)
                self.assertEqual(p["accepted"], p["sent"])
                if p["kind"] in ("telemetry", "signed telemetry"):
                    # every patient consents: one feed message per record
                    # (at least once: a resend after a reconnect may repeat)
                    self.assertGreaterEqual(p["feed_msgs"], p["accepted"])
        self.assertTrue(res["verify"])
        for v in res["verify"]:
            self.assertGreater(v["entries"], 0)
            self.assertGreater(v["full_entries_per_s"], 0)
        self.assertNotIn("FAILED", out.stderr)
        for log in glob.glob(os.path.join(work, "*", "ehrgate.log")):
            with open(log, errors="replace") as f:
                text = f.read()
            self.assertNotIn("ERROR: AddressSanitizer", text, log)
            self.assertNotIn("runtime error:", text, log)
            self.assertNotIn("ERROR: LeakSanitizer", text, log)


if __name__ == "__main__":
    unittest.main()
