"""
The Observations ehrgate writes pass an external FHIR R4 validator (base
StructureDefinitions + the R4 vital-signs profiles; tests/fhir/): every
reading type, every unit alias, sent over a real broker and read back from
`ehrctl export --entries`.
"""
import os
import subprocess
import unittest

from harness import Env, telemetry

HERE = os.path.dirname(os.path.abspath(__file__))
RUN = os.path.join(HERE, "..", "fhir", "run.sh")

READINGS = [
    {"type": "heart_rate", "value": 72},
    {"type": "heart_rate", "value": 64, "unit": "bpm"},
    {"type": "spo2", "value": 97},
    {"type": "spo2", "value": 95.5, "unit": "%"},
    {"type": "resp_rate", "value": 16},
    {"type": "body_temp", "value": 36.8},
    {"type": "body_temp", "value": 98.6, "unit": "[degF]"},
    {"type": "body_temp", "value": 99.1, "unit": "°F"},
    {"type": "body_temp", "value": 37.1, "unit": "°C"},
    {"type": "blood_pressure", "systolic": 121, "diastolic": 79},
    {"type": "blood_pressure", "systolic": 135, "diastolic": 85, "unit": "mmHg"},
    {"type": "body_weight", "value": 70.5},
    {"type": "body_weight", "value": 150, "unit": "lbs"},
    {"type": "glucose", "value": 95},
    {"type": "glucose", "value": 5.4, "unit": "mmol/L"},
]


class Fhir(unittest.TestCase):
    def test_exported_observations_are_valid_r4_vital_signs(self):
        env = Env("fhir")
        try:
            env.ctl("register", "patient", "PF")
            env.ctl("register", "device", "MON1", "--patient", "PF", "--type", "monitor")
            env.gw.start()
            dev = env.client("fhir-dev", subscribe=("ehr/device/+/receipts",))
            sha = dev.publish("ehr/device/MON1/telemetry", telemetry(1, readings=READINGS))
            r = dev.receipt_for(sha)
            self.assertEqual(r["status"], "accepted", r)
            self.assertEqual(len(r["entries"]), len(READINGS))
            out = os.path.join(env.dir, "entries.jsonl")
            with open(out, "w") as f:
                for x in env.export(entries=True):
                    if x["type"] == "entry":
                        f.write(x["entry"] + "\n")
            p = subprocess.run(["bash", RUN, "--profile", "vitalsigns", out],
                               capture_output=True, text=True, timeout=600)
            print(p.stdout[-3000:], p.stderr[-2000:])
            self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
            self.assertIn("%d passed, 0 failed" % len(READINGS), p.stdout)
        finally:
            env.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
