"""
Device telemetry over a real broker (SPEC §4, §6, §7, §12): receipts,
entries, duplicates, conflicts, every rejection code a device can cause,
quarantine list/show/replay, signatures, registry changes while running,
restarts, keys and clean shutdown.
"""
import base64
import json
import os
import stat
import subprocess
import time
import unittest

from harness import Env, leaf_hash, telemetry, wait_for, EHRGATE

TOPIC = "ehr/device/%s/telemetry"


class Telemetry(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.env = Env("telemetry")
        e = cls.env
        e.ctl("register", "patient", "P001")
        e.ctl("register", "patient", "P002")
        e.ctl("register", "device", "D001", "--patient", "P001", "--type", "monitor")
        e.ctl("register", "device", "OX1", "--patient", "P002", "--type", "pulse_oximeter")
        e.ctl("keygen", os.path.join(e.dir, "dev"))
        e.ctl("register", "device", "SIG1", "--patient", "P001", "--type", "thermometer",
              "--pubkey", os.path.join(e.dir, "dev.pub"))
        e.gw.start()
        cls.dev = e.client("device-sim")

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def send(self, device, payload, sig=None):
        return self.dev.publish(TOPIC % device, payload, sig=sig)

    def sent(self, device, payload, sig=None):
        """Publishes and returns the receipt that answers this very publish."""
        sha = self.send(device, payload, sig=sig)
        return self.dev.receipt_for(sha, start=self.dev.mark)

    def expect_reject(self, device, payload, code, detail_part=None, msg_id="?", sig=None):
        r = self.sent(device, payload, sig=sig)
        self.assertEqual(r["status"], "rejected", r)
        self.assertEqual(r["error"]["code"], code, r)
        self.assertTrue(r["error"]["detail"], r)
        if detail_part:
            self.assertIn(detail_part, r["error"]["detail"])
        if msg_id != "?":
            self.assertEqual(r["msg_id"], msg_id)
        return r

    def entries_by_id(self):
        return {json.loads(x["entry"])["entry_id"]: x for x in self.env.export(entries=True)
                if x["type"] == "entry" and x.get("entry")}

    # ---- accepted path -------------------------------------------------------

    def test_accept_entries_and_leaf_hashes(self):
        payload = telemetry(100, readings=[
            {"type": "heart_rate", "value": 72},
            {"type": "blood_pressure", "systolic": 121, "diastolic": 79},
            {"type": "body_temp", "value": 98.6, "unit": "[degF]"}], patient="P001")
        r = self.sent("D001", payload)
        self.assertEqual(r["status"], "accepted")
        self.assertEqual(r["msg_id"], "100")
        self.assertEqual(len(r["entries"]), 3)
        stored = self.entries_by_id()
        for ref in r["entries"]:
            row = stored[ref["entry_id"]]
            raw = row["entry"].encode()
            self.assertEqual(leaf_hash(raw), ref["leaf_hash"])
            self.assertEqual(row["leaf_hash"], ref["leaf_hash"])
            entry = json.loads(raw)
            self.assertEqual(list(entry.keys()),
                             ["v", "seq", "entry_id", "kind", "patient", "category", "source",
                              "received_at", "salt", "resource"])
            self.assertEqual(entry["entry_id"], "gw1-%d" % entry["seq"])
            self.assertEqual(entry["patient"], "P001")
            self.assertEqual(entry["source"], {"type": "device", "id": "D001", "msg_id": "100"})
            self.assertRegex(entry["salt"], "^[0-9a-f]{32}$")
            self.assertRegex(entry["received_at"], r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
            # compact, keys in order: re-serializing compactly gives the same bytes
            self.assertEqual(json.dumps(entry, separators=(",", ":"), ensure_ascii=False).encode(),
                             raw)
        temps = [json.loads(stored[x["entry_id"]]["entry"])["resource"] for x in r["entries"]]
        bt = [t for t in temps if t["code"]["coding"][0]["code"] == "8310-5"][0]
        self.assertEqual(bt["valueQuantity"]["value"], 37)
        self.assertEqual(bt["valueQuantity"]["code"], "Cel")

    def test_seq_has_no_gaps(self):
        for i in range(5):
            self.sent("D001", telemetry(200 + i))
        seqs = [x["seq"] for x in self.env.export() if x["type"] == "entry"]
        self.assertEqual(seqs, list(range(len(seqs))))
        self.assertNotIn("entry", [k for x in self.env.export() for k in x if x["type"] == "entry"])

    def test_duplicate_and_conflict(self):
        p = telemetry(300)
        first = self.sent("D001", p)
        self.assertEqual(first["status"], "accepted")
        n = len(self.dev.receipts())
        self.send("D001", p)
        dup = wait_for(lambda: [r for r in self.dev.receipts()[n:] if r["msg_id"] == "300"],
                       what="duplicate receipt")[0]
        self.assertEqual(dup["status"], "duplicate")
        self.assertEqual(dup["entries"], first["entries"])
        self.expect_reject("D001", telemetry(300, readings=[{"type": "heart_rate", "value": 73}]),
                           "conflict", "300", msg_id="300")

    def test_rejected_msg_id_is_not_used_up(self):
        self.expect_reject("D001", telemetry(400, readings=[{"type": "spo2", "value": 150}]),
                           "range", "spo2", msg_id="400")
        r = self.sent("D001", telemetry(400))
        self.assertEqual(r["status"], "accepted")

    # ---- each rejection code --------------------------------------------------

    def test_parse(self):
        self.expect_reject("D001", '{"seq":1,', "parse", msg_id=None)
        self.expect_reject("D001", b'{"seq":1,"seq":2}', "parse", "duplicate key")
        self.expect_reject("D001", b'{"seq":1,"x":"\xff"}', "parse", "UTF-8")
        self.expect_reject("D001", b'{"seq":1,"x":"a\\u0000"}', "parse")

    def test_schema(self):
        self.expect_reject("D001", '{"ts":"2026-11-24T06:30:00Z","readings":[]}', "schema", "seq",
                           msg_id=None)
        self.expect_reject("D001", '{"seq":1.0,"ts":"2026-11-24T06:30:00Z","readings":[]}',
                           "schema", "seq", msg_id=None)
        self.expect_reject("D001", '{"seq":9007199254740992,"ts":"2026-11-24T06:30:00Z",'
                           '"readings":[{"type":"heart_rate","value":1}]}', "schema", "seq")
        self.expect_reject("D001", telemetry(500, ts="2026-11-24T06:30:00"), "schema", "ts",
                           msg_id="500")
        self.expect_reject("D001", telemetry(501, readings=[]), "schema", "readings")
        self.expect_reject("D001", telemetry(502, readings=[{"type": "heart_rate"}] * 65),
                           "schema", "readings")
        self.expect_reject("D001", telemetry(503, readings=[{"type": "heart_rate",
                                                             "value": "72"}]), "schema")
        self.expect_reject("D001", "[1,2]", "schema")

    def test_unsupported(self):
        self.expect_reject("OX1", telemetry(1, readings=[{"type": "glucose", "value": 90}]),
                           "unsupported", "glucose")

    def test_too_large(self):
        big = json.dumps({"seq": 1, "pad": "x" * 300000})
        self.expect_reject("D001", big, "too_large", msg_id=None)

    def test_unknown_device(self):
        self.expect_reject("NOPE", telemetry(1), "unknown_device", "NOPE", msg_id="1")

    def test_binding(self):
        self.expect_reject("D001", telemetry(600, patient="P002"), "binding", "P002")

    def test_range(self):
        self.expect_reject("D001", telemetry(700, readings=[{"type": "heart_rate", "value": 301}]),
                           "range", "heart_rate")
        self.expect_reject("D001", telemetry(701, readings=[
            {"type": "blood_pressure", "systolic": 80, "diastolic": 90}]), "range")
        future = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() + 3600))
        self.expect_reject("D001", telemetry(702, ts=future), "range", "ts")

    def test_unit(self):
        self.expect_reject("D001", telemetry(800, readings=[
            {"type": "body_temp", "value": 37, "unit": "K"}]), "unit", "K")

    def test_signature(self):
        key = os.path.join(self.env.dir, "dev.key")
        p = telemetry(1, readings=[{"type": "body_temp", "value": 37.2}]).encode()
        self.expect_reject("SIG1", p, "signature", "missing")
        other = self.env.ctl("sign", key, "--topic", TOPIC % "D001", input=p).stdout.decode()
        self.expect_reject("SIG1", p, "signature", "verify", sig=other.strip())
        self.expect_reject("SIG1", p, "signature", sig="bm90IGEgc2lnbmF0dXJl")
        good = self.env.ctl("sign", key, "--topic", TOPIC % "SIG1", input=p).stdout.decode()
        r = self.sent("SIG1", p, sig=good.strip())
        self.assertEqual(r["status"], "accepted", r)

    # ---- quarantine, registry, restart ------------------------------------------

    def test_quarantine_list_show_replay(self):
        p = telemetry(1, readings=[{"type": "glucose", "value": 95}])
        self.expect_reject("LATE1", p, "unknown_device")
        rows = [json.loads(l) for l in self.env.ctl("quarantine", "list").stdout.decode()
                .splitlines()]
        row = [r for r in rows if r["topic"] == TOPIC % "LATE1"][-1]
        self.assertEqual(list(row.keys()), ["id", "topic", "received_at", "code", "detail",
                                            "size"])
        self.assertEqual(row["code"], "unknown_device")
        self.assertEqual(row["size"], len(p))
        shown = self.env.ctl("quarantine", "show", str(row["id"]),
                             "--master-key", os.path.join(self.env.dir, "master.key"))
        self.assertEqual(shown.stdout.decode(), p)
        # registering the device while the gateway runs, then replaying
        self.env.ctl("register", "device", "LATE1", "--patient", "P001", "--type", "glucometer")
        n = len(self.dev.receipts())
        self.env.ctl("quarantine", "replay", str(row["id"]))
        r = wait_for(lambda: [x for x in self.dev.receipts()[n:] if x["msg_id"] == "1"
                              and x["status"] == "accepted"], timeout=5, what="replay receipt")
        self.assertEqual(len(r[0]["entries"]), 1)
        self.assertEqual(self.env.ctl("quarantine", "show", "999999", check=False).returncode, 1)

    def test_registry_change_takes_effect_while_running(self):
        self.expect_reject("NEW1", telemetry(1), "unknown_device")
        self.env.ctl("register", "device", "NEW1", "--patient", "P002", "--type", "monitor")
        t0 = time.monotonic()
        r = self.sent("NEW1", telemetry(2))
        self.assertEqual(r["status"], "accepted")
        self.assertLess(time.monotonic() - t0, 5)
        dup = self.env.ctl("register", "device", "NEW1", "--patient", "P002", "--type",
                           "monitor", check=False)
        self.assertEqual(dup.returncode, 2)
        self.assertIn("already registered", dup.stderr.decode())

    def test_zz_idempotence_survives_restart(self):
        p = telemetry(900)
        first = self.sent("D001", p)
        self.assertEqual(self.env.gw.stop(), 0)
        status = [json.loads(m[1]) for m in self.dev.take("ehr/gateway/gw1/status")]
        self.assertEqual(status[-1]["status"], "offline")
        self.env.gw.restart()
        wait_for(lambda: json.loads(self.dev.take("ehr/gateway/gw1/status")[-1][1])["status"]
                 == "online", what="online status")
        n = len(self.dev.receipts())
        self.send("D001", p)
        dup = wait_for(lambda: [r for r in self.dev.receipts()[n:] if r["msg_id"] == "900"],
                       what="duplicate after restart")[0]
        self.assertEqual(dup["status"], "duplicate")
        self.assertEqual(dup["entries"], first["entries"])


class Keys(unittest.TestCase):
    """Keys are made with a new database; a wrong or exposed key stops the gateway (exit 2)."""

    def setUp(self):
        self.env = Env("keys")

    def tearDown(self):
        self.env.close()

    def run_gw(self, *extra):
        argv = self.env.gw.argv() + list(extra)
        return subprocess.run(argv, capture_output=True, timeout=20)

    def test_keys_created_then_checked(self):
        e = self.env
        e.gw.start()
        self.assertEqual(e.gw.stop(), 0)
        mk = os.path.join(e.dir, "master.key")
        gk = os.path.join(e.dir, "gateway.key")
        self.assertEqual(stat.S_IMODE(os.stat(mk).st_mode), 0o600)
        self.assertEqual(stat.S_IMODE(os.stat(gk).st_mode), 0o600)
        text = open(mk).read()
        self.assertRegex(text, "^[0-9a-f]{64}\n$")
        # exposed master key
        os.chmod(mk, 0o644)
        p = self.run_gw()
        self.assertEqual(p.returncode, 2)
        self.assertIn(mk, p.stderr.decode())
        os.chmod(mk, 0o600)
        # another master key
        other = os.path.join(e.dir, "other.key")
        with open(other, "w") as f:
            f.write("ab" * 32 + "\n")
        os.chmod(other, 0o600)
        p = subprocess.run([x if x != mk else other for x in e.gw.argv()], capture_output=True,
                           timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertIn("other.key", p.stderr.decode())
        # another gateway key
        e.ctl("keygen", os.path.join(e.dir, "rogue"))
        p = subprocess.run([x if x != gk else os.path.join(e.dir, "rogue.key")
                            for x in e.gw.argv()], capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 2)
        self.assertIn("rogue.key", p.stderr.decode())
        # a missing key file
        os.rename(gk, gk + ".moved")
        p = self.run_gw()
        self.assertEqual(p.returncode, 2)
        self.assertIn("gateway.key", p.stderr.decode())

    def test_usage_errors_exit_2(self):
        for args in (["--block-max-entries", "0"], ["--nope"], ["--broker", "http://x"]):
            p = subprocess.run([EHRGATE] + args, capture_output=True, timeout=20)
            self.assertEqual(p.returncode, 2, args)
            self.assertTrue(p.stderr)
        p = subprocess.run([EHRGATE, "--help"], capture_output=True, timeout=20)
        self.assertEqual(p.returncode, 0)
        self.assertIn(b"--block-max-entries", p.stdout)


if __name__ == "__main__":
    unittest.main(verbosity=2)
