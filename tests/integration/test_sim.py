"""
ehrgate-sim against a real gateway and broker (issue 6): a fleet registered
through the signed admin API keeps publishing while Mosquitto is stopped for
5 s and started again, and while the gateway is restarted; in the end every
seq of every device is stored exactly once. Also: hospitals (FHIR + HL7 with
ACKs), the patient app, the authority's proof checks, the fault modes and a
simulator restart that resends its persisted buffer unchanged.
"""
import json
import os
import signal
import sqlite3
import subprocess
import time
import unittest

from harness import BIN, EHRCTL, Env, wait_for

SIM = os.path.join(BIN, "firmware-sim", "ehrgate-sim")


def load(path):
    with open(path) as f:
        return json.load(f)


def read(path):
    with open(path) as f:
        return f.read()


def db_rows(env, sql):
    db = sqlite3.connect("file:%s?mode=ro" % os.path.join(env.dir, "gw.db"), uri=True)
    try:
        return db.execute(sql).fetchall()
    finally:
        db.close()


class Sim(unittest.TestCase):
    def setUp(self):
        self.procs = []
        self.env = Env("sim")
        self.addCleanup(self.cleanup)  # also when setUp fails half-way
        subprocess.run([EHRCTL, "keygen", os.path.join(self.env.dir, "admin")], check=True,
                       capture_output=True)
        self.env.gw.extra = ["--grantee", "authority:public-health",
                             "--admin-pubkey", os.path.join(self.env.dir, "admin.pub"),
                             "--block-interval-ms", "200", "--stats-interval-s", "1"]
        self.env.gw.start()

    def cleanup(self):
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait()
        self.env.close()

    def sim(self, *args, check=True, timeout=120):
        p = subprocess.run([SIM] + list(args) + ["--broker", self.env.broker.url,
                                                 "--state", os.path.join(self.env.dir, "st")],
                           capture_output=True, cwd=self.env.dir, timeout=timeout)
        if check and p.returncode != 0:
            raise AssertionError("ehrgate-sim %s: %d\n%s\n%s" % (
                " ".join(args), p.returncode, p.stdout.decode()[-2000:],
                p.stderr.decode()[-3000:]))
        return p

    def sim_bg(self, *args):
        with open(os.path.join(self.env.dir, "sim-%d.log" % len(self.procs)), "w") as log:
            p = subprocess.Popen([SIM] + list(args) + ["--broker", self.env.broker.url,
                                                       "--state",
                                                       os.path.join(self.env.dir, "st")],
                                 stdout=log, stderr=log, cwd=self.env.dir)
        self.procs.append(p)
        return p

    def register(self, patients, devices, hospitals=0):
        self.sim("register", "--admin-key", "admin.key", "--patients", str(patients),
                 "--devices", str(devices), "--hospitals", str(hospitals), "--keys", "keys",
                 "--quiet")

    def exactly_once(self, summary):
        """Every seq 1..next_seq-1 of every device is stored exactly once."""
        s = load(os.path.join(self.env.dir, summary))
        msgs = db_rows(self.env, "SELECT source_id, msg_id, count FROM msgs"
                                 " WHERE source_type = 'device'")
        stored = {}
        for dev, mid, _ in msgs:
            stored.setdefault(dev, set()).add(int(mid))
        for dev, nxt in s["next_seq"].items():
            self.assertEqual(stored.get(dev, set()), set(range(1, nxt)), dev)
        per_msg = dict(((d, m), c) for d, m, c in msgs)
        entries = db_rows(self.env, "SELECT source_id, msg_id, count(*) FROM entries"
                                    " WHERE source_type = 'device' GROUP BY source_id, msg_id")
        self.assertEqual(len(entries), len(per_msg))
        for d, m, c in entries:
            self.assertEqual(c, per_msg[(d, m)], (d, m))
        return s

    def test_broker_and_gateway_restarts_lose_nothing(self):
        self.register(patients=6, devices=30)
        fleet = self.sim_bg("devices", "--count", "30", "--rate", "4", "--per-conn", "10",
                            "--receipt-timeout", "2000", "--duration", "14", "--drain", "60",
                            "--summary", "fleet.json", "--quiet")
        time.sleep(3)
        self.env.broker.stop()          # 5 s without a broker: devices buffer
        time.sleep(5)
        self.env.broker.start()
        time.sleep(3)
        self.env.gw.stop()              # the gateway restarts while they publish
        time.sleep(1)
        self.env.gw.start()
        self.assertEqual(fleet.wait(timeout=120), 0, read(os.path.join(self.env.dir,
                                                                         "sim-0.log")))
        s = self.exactly_once("fleet.json")
        self.assertGreater(s["accepted"], 30 * 4 * 5)
        self.assertEqual(s["waiting"], 0)
        self.assertEqual(s["rejected"], 0, s)
        self.assertGreater(s["resent"], 0, "nothing had to be resent?")
        v = self.env.ctl("verify", check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)

    def test_sim_restart_resends_its_buffer_unchanged(self):
        self.register(patients=2, devices=4)
        self.env.gw.stop()              # nothing gets receipted: all stays buffered
        self.sim("devices", "--count", "4", "--rate", "5", "--duration", "2", "--drain", "0",
                 "--summary", "a.json", "--quiet", check=False)
        a = load(os.path.join(self.env.dir, "a.json"))
        self.assertGreater(a["waiting"], 20)
        self.env.gw.start()
        self.sim("devices", "--count", "4", "--rate", "5", "--duration", "1", "--drain", "30",
                 "--summary", "b.json", "--quiet")
        b = self.exactly_once("b.json")
        self.assertEqual(b["waiting"], 0)
        for dev in a["next_seq"]:
            self.assertGreater(b["next_seq"][dev], a["next_seq"][dev])  # seq persisted

    def test_hospitals_patients_authority_and_faults(self):
        self.register(patients=4, devices=8, hospitals=2)
        g = self.sim("patient", "--id", "P00001", "--key", "keys/P00001.key", "grant",
                     "--consent-id", "c1", "--grantee", "authority",
                     "--categories", "vital-signs,laboratory")
        self.assertEqual(json.loads(g.stdout)["status"], "ok")
        gw_pub = os.path.join(self.env.dir, "gateway.pub")
        auth = self.sim_bg("authority", "--pubkey", gw_pub, "--expect", "P00001",
                           "--drain", "30", "--summary", "auth.json", "--quiet")
        time.sleep(1)
        self.sim("hospitals", "--count", "2", "--patients", "4", "--rate", "3", "--duration",
                 "4", "--summary", "hosp.json", "--quiet")
        self.sim("devices", "--count", "8", "--rate", "4", "--duration", "4",
                 "--fault", "malformed:0.08,range:0.08,unit:0.08,duplicate:0.08,"
                 "conflict:0.08,oversized:0.08,disconnect:0.05,skew:0.08", "--seed", "42",
                 "--summary", "dev.json", "--quiet")
        time.sleep(1)
        auth.send_signal(signal.SIGINT)  # like Ctrl-C: catch up, check the last proofs, stop
        self.assertEqual(auth.wait(timeout=120), 0,
                         read(os.path.join(self.env.dir, "sim-0.log")))
        h = load(os.path.join(self.env.dir, "hosp.json"))
        self.assertEqual((h["waiting"], h["rejected"]), (0, 0), h)
        self.assertEqual(h["hl7"]["AA"] + h["hl7"]["AE"] + h["hl7"]["AR"] > 0, True, h)
        self.assertEqual((h["hl7"]["AE"], h["hl7"]["AR"]), (0, 0), h)
        d = load(os.path.join(self.env.dir, "dev.json"))
        self.assertEqual(d["waiting"], 0, d)
        for code in ("parse", "range", "unit", "too_large", "conflict"):
            self.assertGreater(d["rejected_by"].get(code, 0), 0, (code, d))
        self.assertGreater(d["duplicate"], 0, d)
        self.assertGreater(d["reconnects"], 0, d)
        a = load(os.path.join(self.env.dir, "auth.json"))
        self.assertGreater(a["records"], 0, a)
        self.assertEqual((a["failed"], a["unexpected"]), (0, 0), a)
        self.assertEqual(a["proofs_ok"], a["records"], a)
        fed = db_rows(self.env, "SELECT count(*) FROM feed WHERE grantee = 'authority'")[0][0]
        self.assertEqual(a["records"], fed)
        # the patient app reads the audit trail of exactly those forwards
        p = self.sim("patient", "--id", "P00001", "--key", "keys/P00001.key", "audit",
                     "--limit", "1000")
        ev = json.loads(p.stdout)["events"]
        self.assertEqual(len([e for e in ev if e["event"] == "forward"]), fed)


if __name__ == "__main__":
    unittest.main(verbosity=2)
