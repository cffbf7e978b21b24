"""
Crash test (SPEC §1, §7): publishers resend every message until it is
receipted while the gateway is killed with SIGKILL at random moments and
restarted. In the end every message is stored exactly once, seq has no gap,
and every receipted entry is in the database with the receipted leaf hash.
"""
import json
import os
import random
import threading
import time
import unittest

from harness import Env, leaf_hash, telemetry, wait_for

DEVICES = ["CR%d" % i for i in range(4)]
PER_DEVICE = int(os.environ.get("EHRGATE_CRASH_MSGS", "150"))
KILLS = int(os.environ.get("EHRGATE_CRASH_KILLS", "12"))
RESEND_AFTER = 0.4  # seconds without a receipt: short, to force resends


class Publisher(threading.Thread):
    """One device: a window of unreceipted messages, resent unchanged."""

    def __init__(self, client, device, rnd):
        super().__init__(daemon=True)
        self.client, self.device, self.rnd = client, device, rnd
        self.payloads = {}
        for seq in range(PER_DEVICE):
            n = 1 + seq % 3
            readings = [{"type": "heart_rate", "value": 60 + (seq + i) % 40} for i in range(n)]
            self.payloads[seq] = telemetry(seq, readings=readings).encode()
        self.receipted = {}  # seq -> receipt
        self.resends = 0

    def run(self):
        pending = {}  # seq -> last send time
        nxt = 0
        # pace new messages so that publishing spans all the kills
        interval = KILLS * 0.6 / PER_DEVICE
        next_new = 0.0
        topic = "ehr/device/%s/telemetry" % self.device
        while len(self.receipted) < PER_DEVICE:
            for r in self.client.receipts_for(self.device):
                if r["status"] in ("accepted", "duplicate"):
                    seq = int(r["msg_id"])
                    if seq not in self.receipted:
                        self.receipted[seq] = r
                    pending.pop(seq, None)
            now = time.monotonic()
            while nxt < PER_DEVICE and len(pending) < 8 and now >= next_new:
                pending[nxt] = 0
                nxt += 1
                next_new = now + interval
            for seq, last in list(pending.items()):
                if now - last > RESEND_AFTER:
                    if last:
                        self.resends += 1
                    self.client.publish_nowait(topic, self.payloads[seq])
                    pending[seq] = now
            time.sleep(0.01 + self.rnd.random() * 0.02)


class CrashClient:
    def __init__(self, env):
        self.c = env.client("crash-devices", subscribe=("ehr/device/+/receipts",))
        self.seen = {d: 0 for d in DEVICES}

    def receipts_for(self, device):
        out = []
        for topic, payload, _ in self.c.take("ehr/device/%s/receipts" % device):
            out.extend(json.loads(payload)["receipts"])
        return out

    def publish_nowait(self, topic, payload):
        self.c.c.publish(topic, payload, qos=1)


class Crash(unittest.TestCase):
    def test_sigkill_loses_nothing_receipted(self):
        env = Env("crash")
        try:
            rnd = random.Random(int(os.environ.get("EHRGATE_CRASH_SEED", "0")) or None)
            env.ctl("register", "patient", "PC")
            for d in DEVICES:
                env.ctl("register", "device", d, "--patient", "PC", "--type", "monitor")
            # small blocks and a short interval: kills land during sealing too
            env.gw.extra += ["--batch-max", "2", "--block-max-entries", "7",
                             "--block-interval-ms", "50"]
            env.gw.start()
            cc = CrashClient(env)
            pubs = [Publisher(cc, d, random.Random(rnd.random())) for d in DEVICES]
            for p in pubs:
                p.start()
            kills = 0
            while kills < KILLS and any(p.is_alive() for p in pubs):
                # short, random lives: kills land while batches are being
                # taken, committed, sealed and receipted
                time.sleep(0.05 + rnd.random() * 0.45)
                env.gw.kill()
                kills += 1
                time.sleep(rnd.random() * 0.3)
                env.gw.start()
            for p in pubs:
                p.join(240)
                self.assertFalse(p.is_alive(), "publisher %s did not finish" % p.device)
            self.assertGreaterEqual(kills, 10, "the publishers finished before 10 kills; "
                                    "raise EHRGATE_CRASH_MSGS")
            self.assertEqual(env.gw.stop(), 0)

            rows = [x for x in env.export(entries=True) if x["type"] == "entry"]
            seqs = [x["seq"] for x in rows]
            self.assertEqual(seqs, list(range(len(seqs))), "seq has a gap")
            by_msg = {}
            for x in rows:
                e = json.loads(x["entry"])
                self.assertEqual(leaf_hash(x["entry"].encode()), x["leaf_hash"])
                key = (e["source"]["id"], e["source"]["msg_id"])
                by_msg.setdefault(key, []).append(e["entry_id"])
            leaves = {json.loads(x["entry"])["entry_id"]: x["leaf_hash"] for x in rows}
            total = 0
            for p in pubs:
                self.assertEqual(len(p.receipted), PER_DEVICE)
                for seq, r in p.receipted.items():
                    n = 1 + seq % 3
                    ids = by_msg.get((p.device, str(seq)), [])
                    self.assertEqual(len(ids), n, "%s/%d stored %d times/readings" %
                                     (p.device, seq, len(ids)))
                    for ref in r["entries"]:
                        self.assertEqual(leaves.get(ref["entry_id"]), ref["leaf_hash"],
                                         "receipted entry missing or changed")
                    total += n
            self.assertEqual(len(rows), total, "entries that no message accounts for")
            # the chain continued across every kill: no fork, no gap, no double seal
            blocks = [x for x in env.export() if x["type"] == "block"]
            self.assertEqual([b["height"] for b in blocks], list(range(len(blocks))))
            self.assertEqual(sum(b["count"] for b in blocks), len(rows))
            v = env.ctl("verify", "--master-key", os.path.join(env.dir, "master.key"))
            self.assertIn("ok:", v.stdout.decode())
            print("crash test: %d kills, %d messages, %d entries, %d blocks, %d resends" %
                  (kills, PER_DEVICE * len(DEVICES), total, len(blocks),
                   sum(p.resends for p in pubs)))
        finally:
            env.close()


    def test_kill_right_after_bursts_needs_resends(self):
        """Kills land milliseconds after bursts, while messages that the
        broker already handed over sit uncommitted in the gateway: those get
        no receipt and only the publishers' resends bring them in."""
        env = Env("burstkill")
        try:
            rnd = random.Random(int(os.environ.get("EHRGATE_CRASH_SEED", "0")) or None)
            env.ctl("register", "patient", "PB")
            for d in DEVICES:
                env.ctl("register", "device", d, "--patient", "PB", "--type", "monitor")
            env.gw.extra += ["--batch-max", "2"]
            env.gw.start()
            cc = CrashClient(env)
            payloads = {}  # (device, seq) -> bytes
            seq = 0
            for _ in range(10):
                for d in DEVICES:
                    for k in range(25):
                        p = telemetry(seq + k).encode()
                        payloads[(d, seq + k)] = p
                        cc.publish_nowait("ehr/device/%s/telemetry" % d, p)
                seq += 25
                time.sleep(0.002 + rnd.random() * 0.02)
                env.gw.kill()
                env.gw.start()
            resends = 0
            deadline = time.monotonic() + 120
            while True:
                done = {(d, int(r["msg_id"])) for d in DEVICES for r in cc.receipts_for(d)
                        if r["status"] in ("accepted", "duplicate")}
                missing = [k for k in payloads if k not in done]
                if not missing:
                    break
                self.assertLess(time.monotonic(), deadline, "%d never receipted" % len(missing))
                time.sleep(1.0)
                for d, sq in missing:
                    cc.publish_nowait("ehr/device/%s/telemetry" % d, payloads[(d, sq)])
                    resends += 1
            self.assertEqual(env.gw.stop(), 0)
            rows = [x for x in env.export(entries=True) if x["type"] == "entry"]
            self.assertEqual([x["seq"] for x in rows], list(range(len(rows))))
            stored = {}
            for x in rows:
                e = json.loads(x["entry"])
                key = (e["source"]["id"], int(e["source"]["msg_id"]))
                stored[key] = stored.get(key, 0) + 1
            self.assertEqual(stored, {k: 1 for k in payloads}, "not exactly once")
            self.assertGreater(resends, 0, "no kill hit an uncommitted message; the resend path "
                                           "was not exercised")
            print("burst kills: 10 kills, %d messages, %d resends needed" %
                  (len(payloads), resends))
        finally:
            env.close()



class CrashErasure(unittest.TestCase):
    """SIGKILL while erasures commit (issue 7): each erasure is all or
    nothing — the key shredded together with its erasure entry and the end
    of the grants, or none of it — and the chain verifies after every kill."""

    def test_sigkill_during_erasure_is_atomic(self):
        import sqlite3
        import subprocess
        from test_consent import GRANTEES, Party, Requester, now_iso
        env = Env("crash-erase")
        try:
            n = 6
            parties = []
            for i in range(n):
                p = Party(env, "p%d" % i)
                parties.append(p)
                env.ctl("register", "patient", "P%d" % i, "--pubkey", p.pub)
                env.ctl("register", "device", "D%d" % i, "--patient", "P%d" % i,
                        "--type", "monitor")
            env.gw.extra = GRANTEES + ["--block-interval-ms", "20", "--block-max-entries", "3"]
            env.gw.start()
            dev = env.client("dev", subscribe=("ehr/device/+/receipts",))
            for i in range(n):
                shas = [dev.publish("ehr/device/D%d/telemetry" % i,
                                    telemetry(s, ts=now_iso(-5))) for s in range(1, 6)]
                for sha in shas:
                    self.assertEqual(dev.receipt_for(sha)["status"], "accepted")
            app = Requester(env, "app", ["ehr/patient/+/replies/#"])
            rng = random.Random(7)

            def erased(i):
                db = sqlite3.connect("file:%s?mode=ro" % os.path.join(env.dir, "gw.db"),
                                     uri=True)
                try:
                    shredded = db.execute("SELECT count(*) FROM patient_keys WHERE"
                                          " patient_id = ? AND wrapped IS NULL",
                                          ("P%d" % i,)).fetchone()[0]
                    entry = db.execute("SELECT count(*) FROM entries WHERE kind = 'erasure'"
                                       " AND patient = ?", ("P%d" % i,)).fetchone()[0]
                    active = db.execute("SELECT count(*) FROM consents WHERE active = 1"
                                        " AND patient_id = ?", ("P%d" % i,)).fetchone()[0]
                finally:
                    db.close()
                self.assertEqual(shredded, entry, "erasure of P%d half done" % i)
                if shredded:
                    self.assertEqual(active, 0)
                return shredded == 1

            def erase(i, wait):
                topic = "ehr/patient/P%d/request" % i
                body = parties[i].body({"op": "erase"})
                sig = parties[i].sign(topic, body)
                if wait:  # committed for sure before the kill
                    r = app.request(topic, body, sig, "ehr/patient/P%d/replies" % i)
                    self.assertEqual(r["status"], "ok", r)
                else:
                    app.publish(topic, body, sig=sig,
                                response_topic="ehr/patient/P%d/replies/x" % i, corr=b"e")

            for i in range(n):
                erase(i, wait=(i % 2 == 0))
                # readings of the others in flight, blocks sealing, then SIGKILL
                for j in range(n):
                    if j != i:
                        dev.publish("ehr/device/D%d/telemetry" % j,
                                    telemetry(100 + i, ts=now_iso(-5)))
                time.sleep(rng.uniform(0, 0.01))
                env.gw.kill()
                done = erased(i)
                if i % 2 == 0:
                    self.assertTrue(done, "a receipted erasure of P%d was lost" % i)
                v = env.ctl("verify", "--master-key", os.path.join(env.dir, "master.key"),
                            check=False)
                self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
                env.gw.start()
            # a patient whose request was lost in a kill asks again
            for i in range(n):
                if not erased(i):
                    erase(i, wait=True)
            env.gw.stop()
            for i in range(n):
                self.assertTrue(erased(i), "P%d not erased" % i)
            v = env.ctl("verify", "--master-key", os.path.join(env.dir, "master.key"),
                        check=False)
            self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        finally:
            env.close()

if __name__ == "__main__":
    unittest.main(verbosity=2)
