"""
Hospital records over a real broker (SPEC §5, §7, §13): HL7 v2 ORU^R01
with ACKs in the receipt, FHIR R4 Observations and Bundles, hospital
identifier maps (two hospitals' identical MRNs never meet), categories,
signatures, dedup, every hospital rejection code, and the stored
Observations checked by the external FHIR validator.
"""
import json
import os
import subprocess
import time
import unittest

from harness import Env, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
R = "ehr/hospital/%s/records"


def er7(*segments, sep="\r"):
    return sep.join(segments) + sep


def now_dtm(offset_min=0):
    t = time.time() - 3600 + offset_min * 60
    return time.strftime("%Y%m%d%H%M%S", time.gmtime(t))


def oru(msg_id, mrn, obx, msh9="ORU^R01^ORU_R01", enc="|^~\\&"):
    f = enc[0]
    c = enc[1]
    return er7(
        f.join(["MSH", enc[1:], "LAB", "H1LAB", "EHRGATE", "NAT", "20261124063000", "",
                msh9.replace("^", c), msg_id, "P", "2.5.1"]),
        f.join(["PID", "1", "", mrn + c * 3 + "MR", "", "DOE" + c + "JANE"]),
        f.join(["OBR", "1", "", "", "LAB1" + c + "Panel" + c + "L", "", "", now_dtm()]),
        *obx)


def obx_nm(i, code, text, value, unit, enc="|^~\\&"):
    f, c = enc[0], enc[1]
    return f.join(["OBX", str(i), "NM", c.join([code, text, "LN"]), "", value, unit, "", "",
                   "", "", "F", "", "", now_dtm()])


class Hospital(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        e = cls.env = Env("hospital")
        e.ctl("register", "hospital", "H1", "--utc-offset", "+01:00")
        e.ctl("register", "hospital", "H2")
        e.ctl("register", "patient", "P1", "--mrn", "H1:MRN123")
        e.ctl("register", "patient", "P2", "--mrn", "H2:MRN123")
        e.ctl("keygen", os.path.join(e.dir, "hs"))
        e.ctl("register", "hospital", "HS", "--pubkey", os.path.join(e.dir, "hs.pub"))
        e.ctl("register", "patient", "P3", "--mrn", "HS:M3")
        e.gw.start()
        cls.c = e.client("his", subscribe=("ehr/hospital/+/receipts",))

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def sent(self, hosp, payload, sig=None):
        sha = self.c.publish(R % hosp, payload, sig=sig)
        return self.c.receipt_for(sha, start=self.c.mark)

    def entries(self):
        return {json.loads(x["entry"])["entry_id"]: json.loads(x["entry"])
                for x in self.env.export(entries=True) if x["type"] == "entry" and x.get("entry")}

    def test_hl7_oru_accepted_with_aa_ack(self):
        msg = oru("MSG0001", "MRN123", [obx_nm(1, "8867-4", "Heart rate", "72", "/min"),
                                        obx_nm(2, "2339-0", "Glucose", "95", "mg/dL")])
        r = self.sent("H1", msg)
        self.assertEqual(r["status"], "accepted", r)
        self.assertEqual(r["msg_id"], "MSG0001")
        self.assertEqual(len(r["entries"]), 2)
        ack = r["hl7_ack"]
        segs = [s for s in ack.split("\r") if s]
        self.assertTrue(segs[0].startswith("MSH|^~\\&|"), ack)
        self.assertIn("ACK^R01^ACK", segs[0])
        self.assertTrue(segs[1].startswith("MSA|AA|MSG0001"), ack)
        self.assertTrue(ack.endswith("\r"))
        stored = self.entries()
        e0, e1 = (stored[x["entry_id"]] for x in r["entries"])
        self.assertEqual((e0["patient"], e0["category"]), ("P1", "vital-signs"))
        self.assertEqual((e1["patient"], e1["category"]), ("P1", "laboratory"))
        self.assertEqual(e0["source"], {"type": "hospital", "id": "H1", "msg_id": "MSG0001"})
        self.assertEqual(e0["resource"]["subject"], {"reference": "Patient/P1"})
        self.assertNotIn("id", e0["resource"])

    def test_same_mrn_in_two_hospitals_never_meets(self):
        r1 = self.sent("H1", oru("SAME1", "MRN123", [obx_nm(1, "8867-4", "HR", "70", "/min")]))
        r2 = self.sent("H2", oru("SAME1", "MRN123", [obx_nm(1, "8867-4", "HR", "71", "/min")]))
        self.assertEqual((r1["status"], r2["status"]), ("accepted", "accepted"))
        stored = self.entries()
        self.assertEqual(stored[r1["entries"][0]["entry_id"]]["patient"], "P1")
        self.assertEqual(stored[r2["entries"][0]["entry_id"]]["patient"], "P2")

    def test_hl7_custom_separators_and_lf(self):
        enc = "#$*@!"
        msg = oru("CUST1", "MRN123", [obx_nm(1, "8867-4", "HR", "66", "/min", enc=enc)],
                  enc=enc).replace("\r", "\n")
        r = self.sent("H1", msg)
        self.assertEqual(r["status"], "accepted", r)
        self.assertTrue(r["hl7_ack"].startswith("MSH#$*@!#"), r["hl7_ack"])

    def test_hl7_rejections_and_ack_codes(self):
        cases = [
            (oru("T1", "MRN123", [obx_nm(1, "8867-4", "HR", "72", "/min")], msh9="ADT^A01"),
             "unsupported", "AR"),
            (oru("T2", "MRN123", [obx_nm(1, "8867-4", "HR", "abc", "/min")]), "schema", "AE"),
            (oru("T3", "NOSUCH", [obx_nm(1, "8867-4", "HR", "72", "/min")]), "unknown_patient",
             "AE"),
            (oru("T4", "MRN123", [obx_nm(1, "8867-4", "HR", "900", "/min")]), "range", "AE"),
            (oru("T5", "MRN123", [obx_nm(1, "8867-4", "HR", "72", "furlong")]), "unit", "AE"),
        ]
        for msg, code, ack in cases:
            r = self.sent("H1", msg)
            self.assertEqual((r["status"], r["error"]["code"]), ("rejected", code), r)
            self.assertIn("MSA|%s|" % ack, r["hl7_ack"])
            self.assertEqual(r["msg_id"], msg.split("\r")[0].split("|")[9])
        r = self.sent("HX", oru("T6", "MRN123", [obx_nm(1, "8867-4", "HR", "72", "/min")]))
        self.assertEqual(r["error"]["code"], "unknown_hospital")
        self.assertIn("MSA|AR|T6", r["hl7_ack"])
        r = self.sent("H1", "MSH|^~\\&|truncated")
        self.assertEqual(r["status"], "rejected")
        self.assertIn("MSA|AR|", r["hl7_ack"])

    def test_fhir_bundle_and_observation(self):
        obs = lambda oid, subject, code, value, unit: {
            "resourceType": "Observation", "id": oid, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
            "subject": subject, "effectiveDateTime": "2026-11-23T10:00:00+01:00",
            "valueQuantity": {"value": value, "unit": unit}}
        bundle = {"resourceType": "Bundle", "type": "collection",
                  "identifier": {"value": "B-1"},
                  "entry": [{"resource": obs("o1", {"identifier": {"value": "MRN123"}},
                                             "59408-5", 97, "%")},
                            {"resource": obs("o2", {"reference": "Patient/P1"}, "29463-7",
                                             150, "lb")}]}
        r = self.sent("H1", json.dumps(bundle))
        self.assertEqual(r["status"], "accepted", r)
        self.assertEqual(r["msg_id"], "B-1")
        self.assertNotIn("hl7_ack", r)
        stored = self.entries()
        spo2, weight = (stored[x["entry_id"]]["resource"] for x in r["entries"])
        self.assertEqual([c["code"] for c in spo2["code"]["coding"]], ["2708-6", "59408-5"])
        self.assertEqual(weight["valueQuantity"]["value"], 68.04)
        self.assertEqual(weight["valueQuantity"]["code"], "kg")
        self.assertNotIn("id", spo2)
        self.assertIn({"system": "urn:ehrgate:hospital:H1", "value": "o1"}, spo2["identifier"])
        self.assertEqual(spo2["effectiveDateTime"], "2026-11-23T09:00:00.000Z")
        # dedup by Bundle identifier, conflict on other bytes
        self.assertEqual(self.sent("H1", json.dumps(bundle))["status"], "duplicate")
        bundle["entry"][0]["resource"]["valueQuantity"]["value"] = 96
        self.assertEqual(self.sent("H1", json.dumps(bundle))["error"]["code"], "conflict")
        # a single Observation: its id is the message id
        r = self.sent("H1", json.dumps(obs("single-7", {"reference": "Patient/P1"}, "8867-4", 60,
                                           "/min")))
        self.assertEqual((r["status"], r["msg_id"]), ("accepted", "single-7"))

    def test_fhir_rejections(self):
        b = {"resourceType": "Bundle", "type": "collection", "identifier": {"value": "B-bad"},
             "entry": [{"resource": {"resourceType": "Patient", "id": "x"}}]}
        self.assertEqual(self.sent("H1", json.dumps(b))["error"]["code"], "unsupported")
        o = {"resourceType": "Observation", "id": "nostatus",
             "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
             "subject": {"reference": "Patient/P1"},
             "effectiveDateTime": "2026-11-23T10:00:00Z", "valueQuantity": {"value": 60}}
        r = self.sent("H1", json.dumps(o))
        self.assertEqual(r["error"]["code"], "schema")
        self.assertEqual(r["msg_id"], "nostatus")
        self.assertIn("status", r["error"]["detail"])
        self.assertEqual(self.sent("H1", '{"resourceType":"Observation",')["error"]["code"],
                         "parse")
        o.update(id="ghost", status="final", subject={"reference": "Patient/NOPE"})
        self.assertEqual(self.sent("H1", json.dumps(o))["error"]["code"], "unknown_patient")

    def test_signed_hospital(self):
        msg = oru("SIG1", "M3", [obx_nm(1, "8867-4", "HR", "72", "/min")]).encode()
        r = self.sent("HS", msg)
        self.assertEqual(r["error"]["code"], "signature")
        self.assertIn("MSA|AR|SIG1", r["hl7_ack"])
        sig = self.env.ctl("sign", os.path.join(self.env.dir, "hs.key"), "--topic", R % "HS",
                           input=msg).stdout.decode().strip()
        self.assertEqual(self.sent("HS", msg, sig=sig)["status"], "accepted")

    def qrows(self):
        out = self.env.ctl("quarantine", "list").stdout.decode().splitlines()
        return [json.loads(l) for l in out]

    def test_review_rejections_are_quarantined_and_leak_no_phi(self):
        secret = "JaneDoe-12-Main-St"
        cases = [
            # an identifier value that is too long
            oru("PHI1", secret * 10, [obx_nm(1, "8867-4", "HR", "72", "/min")]),
            # a line break inside a field splits a segment
            oru("PHI2", "MRN123", [obx_nm(1, "8867-4", "HR", "72", "/min")]).replace(
                "DOE^JANE", "DOE^" + secret + "\rlives here"),
            # a bad escape in a text value
            oru("PHI3", "MRN123", ["OBX|1|ST|8251-1^Comment^LN||" + secret + " \\Zbad\\|||||F|||" +
                                   now_dtm()]),
        ]
        for msg in cases:
            r = self.sent("H1", msg)
            self.assertEqual(r["status"], "rejected", r)
            self.assertNotIn(secret, r["error"]["detail"])
            self.assertNotIn(secret, r["hl7_ack"])
        fhir = {"resourceType": "Observation", "id": "phi4", "status": "final",
                "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                "subject": {"reference": "Patient/" + secret + " 1980-01-01"},
                "effectiveDateTime": "2026-11-23T10:00:00Z", "valueQuantity": {"value": 60}}
        r = self.sent("H1", json.dumps(fhir))
        self.assertNotIn(secret, r["error"]["detail"])
        rows = [q for q in self.qrows() if q["topic"] == R % "H1"]
        self.assertTrue(all(secret not in q["detail"] for q in rows))
        self.assertTrue(any(q["code"] == "schema" for q in rows))
        self.assertIn(self.env.gw.log().count(secret), (0,))

    def test_review_conflicting_subject_forms_are_refused(self):
        o = {"resourceType": "Observation", "id": "both-1", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
             "subject": {"reference": "Patient/P2", "identifier": {"value": "MRN123"}},
             "effectiveDateTime": "2026-11-23T10:00:00Z", "valueQuantity": {"value": 60}}
        r = self.sent("H1", json.dumps(o))  # MRN123 at H1 is P1, not P2
        self.assertEqual((r["status"], r["error"]["code"]), ("rejected", "unknown_patient"))
        o.update(id="both-2", subject={"reference": "Patient/P1",
                                       "identifier": {"value": "MRN123"}})
        self.assertEqual(self.sent("H1", json.dumps(o))["status"], "accepted")

    def test_review_nested_modifier_extensions_and_partial_dates(self):
        o = {"resourceType": "Observation", "id": "mod-1", "status": "final",
             "code": {"coding": [{"system": "http://loinc.org", "code": "2093-3"}],
                      "modifierExtension": [{"url": "urn:x", "valueBoolean": True}]},
             "subject": {"reference": "Patient/P1"},
             "effectiveDateTime": "2026-11-23T10:00:00Z",
             "valueQuantity": {"value": 182, "unit": "mg/dL"}}
        self.assertEqual(self.sent("H1", json.dumps(o))["error"]["code"], "unsupported")
        o["code"].pop("modifierExtension")
        o["code"]["coding"][0]["extension"] = [{"url": "urn:note", "valueString": "SSN 123"}]
        o["id"] = "mod-2"
        r = self.sent("H1", json.dumps(o))
        self.assertEqual(r["status"], "accepted", r)
        stored = self.entries()[r["entries"][0]["entry_id"]]
        self.assertNotIn("SSN 123", json.dumps(stored))
        msg = oru("PD1", "MRN123", [obx_nm(1, "8867-4", "HR", "72", "/min").rsplit("|", 1)[0] +
                                    "|202611"])
        r = self.sent("H1", msg)
        self.assertEqual(r["error"]["code"], "schema")
        self.assertIn("OBX[1]-14", r["error"]["detail"])

    def test_review_repeated_flags_do_not_inflate_entries(self):
        obx = obx_nm(1, "2093-3", "Chol", "182", "mg/dL").split("|")
        obx[8] = "~".join(["H"] * 16)
        r = self.sent("H1", oru("FLAGS1", "MRN123", ["|".join(obx)]))
        self.assertEqual(r["status"], "accepted", r)
        res = self.entries()[r["entries"][0]["entry_id"]]["resource"]
        self.assertEqual(len(res["interpretation"]), 1)
        obx[8] = "~".join(["H"] * 17)
        r = self.sent("H1", oru("FLAGS2", "MRN123", ["|".join(obx)]))
        self.assertEqual(r["error"]["code"], "schema")

    def test_cancelled_result_without_value(self):
        cancelled = "|".join(["OBX", "2", "", "8867-4^Heart rate^LN", "", "", "", "", "", "",
                              "", "X", "", "", now_dtm()])
        r = self.sent("H1", oru("CANC1", "MRN123", [obx_nm(1, "2093-3", "Chol", "182", "mg/dL"),
                                                    cancelled]))
        self.assertEqual(r["status"], "accepted", r)
        res = self.entries()[r["entries"][1]["entry_id"]]["resource"]
        self.assertEqual(res["status"], "cancelled")
        self.assertEqual(res["dataAbsentReason"]["coding"][0]["code"], "not-performed")
        self.assertNotIn("valueQuantity", res)
        # without X, an empty value is still an error
        r = self.sent("H1", oru("CANC2", "MRN123", [cancelled.replace("|X|", "|F|")]))
        self.assertEqual(r["error"]["code"], "schema")

    def test_zz_stored_observations_pass_the_fhir_validator(self):
        out = os.path.join(self.env.dir, "hospital.jsonl")
        with open(out, "w") as f:
            for x in self.env.export(entries=True):
                if x["type"] == "entry" and x.get("entry"):
                    f.write(x["entry"] + "\n")
        p = subprocess.run(["bash", os.path.join(HERE, "..", "fhir", "run.sh"), out],
                           capture_output=True, text=True, timeout=600)
        self.assertEqual(p.returncode, 0, p.stdout[-4000:] + p.stderr[-2000:])


if __name__ == "__main__":
    unittest.main(verbosity=2)
