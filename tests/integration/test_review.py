"""
Regression tests for review findings on the device path: a replayed row
that was accepted meanwhile is answered once; topics with invalid ids are
answered and quarantined; receipts are split for devices with a small MQTT
Maximum Packet Size; oversized payloads are quarantined truncated; an
unsigned payload cannot pose as a keyed device's conflicting resend; key
files readable by others stop the gateway; year 0000 is out of range.
"""
import json
import os
import sqlite3
import subprocess
import time
import unittest

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from harness import Env, telemetry, wait_for

T = "ehr/device/%s/telemetry"


class Review(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        e = cls.env = Env("review")
        e.ctl("register", "patient", "PR")
        e.ctl("register", "device", "R1", "--patient", "PR", "--type", "monitor")
        e.ctl("keygen", os.path.join(e.dir, "k"))
        e.ctl("register", "device", "S1", "--patient", "PR", "--type", "monitor", "--pubkey",
              os.path.join(e.dir, "k.pub"))
        e.gw.extra += ["--max-payload-bytes", "4096"]
        e.gw.start()
        cls.c = e.client("dev", subscribe=("ehr/device/#",))

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def sent(self, device, payload, sig=None):
        sha = self.c.publish(T % device, payload, sig=sig)
        return self.c.receipt_for(sha, start=self.c.mark)

    def qrows(self):
        out = self.env.ctl("quarantine", "list").stdout.decode().splitlines()
        return [json.loads(l) for l in out]

    def test_replay_of_a_message_accepted_meanwhile_is_answered_once(self):
        p = telemetry(5)
        self.assertEqual(self.sent("LATE9", p)["error"]["code"], "unknown_device")
        qid = [r for r in self.qrows() if r["topic"] == T % "LATE9"][-1]["id"]
        self.env.ctl("register", "device", "LATE9", "--patient", "PR", "--type", "monitor")
        self.assertEqual(self.sent("LATE9", p)["status"], "accepted")
        n = len(self.c.receipts())
        self.env.ctl("quarantine", "replay", str(qid))
        wait_for(lambda: len(self.c.receipts()) > n, what="replay receipt")
        time.sleep(3)  # the gateway polls replays every second: must not repeat
        rs = self.c.receipts()[n:]
        self.assertEqual([r["status"] for r in rs], ["duplicate"])
        row = [r for r in self.qrows() if r["id"] == qid][0]
        self.assertEqual(row["code"], "duplicate")

    def test_invalid_ids_are_answered_and_quarantined(self):
        for i, bad in enumerate(("a b", "a@b", "x" * 65)):
            sha = self.c.publish(T % bad, telemetry(100 + i))
            r = wait_for(lambda: [x for x in self.c.receipts() if x["payload_sha256"] == sha and
                                  x["error"]["detail"].startswith("topic:")],
                         what="receipt for %r" % bad)[0]
            self.assertEqual(r["error"]["code"], "schema")
            wait_for(lambda: any(m[0] == "ehr/device/%s/receipts" % bad for m in self.c.take()),
                     what="receipt on the invalid id's receipts topic")
            self.assertTrue(any(q["topic"] == T % bad for q in self.qrows()))

    def test_oversized_payload_is_quarantined_truncated(self):
        big = json.dumps({"seq": 1, "pad": "x" * 100000})
        self.assertEqual(self.sent("R1", big)["error"]["code"], "too_large")
        row = [r for r in self.qrows() if r["code"] == "too_large"][-1]
        self.assertEqual(row["size"], len(big))
        con = sqlite3.connect(os.path.join(self.env.dir, "gw.db"))
        ct, trunc = con.execute("SELECT length(ct), truncated FROM quarantine WHERE id = ?",
                                (row["id"],)).fetchone()
        con.close()
        self.assertEqual(trunc, 1)
        self.assertLessEqual(ct, 4096 + 28)

    def test_unsigned_conflict_is_a_signature_error(self):
        key = os.path.join(self.env.dir, "k.key")
        p = telemetry(9).encode()
        sig = self.env.ctl("sign", key, "--topic", T % "S1", input=p).stdout.decode().strip()
        self.assertEqual(self.sent("S1", p, sig=sig)["status"], "accepted")
        other = telemetry(9, readings=[{"type": "heart_rate", "value": 99}])
        self.assertEqual(self.sent("S1", other)["error"]["code"], "signature")
        q = [r for r in self.qrows() if r["topic"] == T % "S1"]
        self.assertEqual(q[-1]["code"], "signature")
        osig = self.env.ctl("sign", key, "--topic", T % "S1",
                            input=other.encode()).stdout.decode().strip()
        self.assertEqual(self.sent("S1", other, sig=osig)["error"]["code"], "conflict")

    def test_year_0000_is_out_of_range(self):
        r = self.sent("R1", telemetry(77, ts="0000-01-01T00:00:00Z"))
        self.assertEqual(r["error"]["code"], "range")

    def test_receipts_fit_a_small_maximum_packet_size(self):
        """A device that accepts at most 8 KiB packets still gets every receipt."""
        got = []
        props = Properties(PacketTypes.CONNECT)
        props.MaximumPacketSize = 8192
        small = mqtt.Client(client_id="small-dev", protocol=mqtt.MQTTv5)
        small.on_message = lambda c, u, m: got.append(json.loads(m.payload))
        small.connect("127.0.0.1", self.env.broker.port, properties=props)
        small.subscribe("ehr/device/R1/receipts", qos=1)
        small.loop_start()
        try:
            time.sleep(0.3)
            self.env.gw.stop()  # queue up many messages, so one transaction answers them all
            for i in range(300):
                readings = [{"type": "heart_rate", "value": 60 + j} for j in range(16)]
                small.publish(T % "R1", telemetry(1000 + i, readings=readings), qos=1)
            time.sleep(0.5)
            self.env.gw.start()
            wait_for(lambda: len({r["msg_id"] for m in got for r in m["receipts"]}) >= 300,
                     timeout=30, what="300 receipts in small packets")
        finally:
            small.loop_stop()
            small.disconnect()


class SingleInstance(unittest.TestCase):
    def test_second_gateway_on_the_same_database_is_refused(self):
        e = Env("single")
        try:
            e.gw.start()
            p = subprocess.run(e.gw.argv(), capture_output=True, timeout=20)
            self.assertEqual(p.returncode, 2)
            self.assertIn("another ehrgate is already running", p.stderr.decode())
            self.assertEqual(e.gw.stop(), 0)
        finally:
            e.close()


class KeyModes(unittest.TestCase):
    def test_group_readable_gateway_key_stops_the_gateway(self):
        e = Env("keymode")
        try:
            e.gw.start()
            self.assertEqual(e.gw.stop(), 0)
            gk = os.path.join(e.dir, "gateway.key")
            os.chmod(gk, 0o640)
            p = subprocess.run(e.gw.argv(), capture_output=True, timeout=20)
            self.assertEqual(p.returncode, 2)
            self.assertIn("gateway.key", p.stderr.decode())
            self.assertIn("chmod 600", p.stderr.decode())
        finally:
            e.close()


if __name__ == "__main__":
    unittest.main(verbosity=2)
