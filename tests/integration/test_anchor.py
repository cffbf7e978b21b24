"""
Blocks and proofs over a real broker (SPEC §11, §12): sealing by size and
by interval and on shutdown, blocks on .../blocks and retained .../head,
the proof and block API with the Response Topic rule and Correlation Data,
proofs checked here independently (RFC 9162 §2.1.3.2) and by
`ehrctl verify-proof`, and `ehrctl verify` catching each kind of tampering.
"""
import hashlib
import json
import os
import shutil
import sqlite3
import struct
import subprocess
import time
import unittest

from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from harness import EHRCTL, Env, leaf_hash, telemetry, wait_for


def node(a, b):
    return hashlib.sha256(b"\x01" + a + b).digest()


def verify_inclusion(leaf, index, size, path, root):
    """RFC 9162 §2.1.3.2, written from the RFC, independent of the C code."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def header(b):
    return (struct.pack(">B", b["version"]) + bytes.fromhex(b["gateway_id"]) +
            struct.pack(">Q", b["height"]) + bytes.fromhex(b["prev_hash"]) +
            bytes.fromhex(b["merkle_root"]) + struct.pack(">QIQ", b["first_seq"], b["count"],
                                                          b["sealed_at"]))


class Anchor(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        e = cls.env = Env("anchor")
        e.ctl("register", "patient", "PA")
        e.ctl("register", "device", "A1", "--patient", "PA", "--type", "monitor")
        e.gw.extra += ["--block-max-entries", "5", "--block-interval-ms", "300"]
        e.gw.start()
        cls.c = e.client("auditor", subscribe=("ehr/#",))

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def request(self, payload, resp=None, corr=None):
        props = Properties(PacketTypes.PUBLISH)
        props.ResponseTopic = resp or "ehr/anchor/gw1/replies/t"
        if corr:
            props.CorrelationData = corr
        n = len(self.c.take(props.ResponseTopic))
        self.c.c.publish("ehr/anchor/gw1/request", json.dumps(payload), qos=1,
                         properties=props).wait_for_publish(5)
        return props.ResponseTopic, n

    def reply(self, payload, resp=None, corr=None):
        topic, n = self.request(payload, resp, corr)
        msgs = wait_for(lambda: self.c.take(topic)[n:] if len(self.c.take(topic)) > n else None,
                        what="reply on %s" % topic)
        return json.loads(msgs[0][1]), msgs[0][2]

    def blocks(self):
        return [json.loads(m[1]) for m in self.c.take("ehr/anchor/gw1/blocks")]

    def test_blocks_chain_and_proofs(self):
        sent = []
        for i in range(4):  # 3 readings each: 12 entries -> blocks of 5, 5, then 2 by interval
            sent.append(self.c.receipt_for(self.c.publish(
                "ehr/device/A1/telemetry", telemetry(i, readings=[
                    {"type": "heart_rate", "value": 70 + i}, {"type": "spo2", "value": 97},
                    {"type": "resp_rate", "value": 14}]))))
        entries = [r for s in sent for r in s["entries"]]
        wait_for(lambda: sum(b["count"] for b in self.blocks()) >= len(entries), timeout=10,
                 what="all entries sealed")
        blocks = self.blocks()
        prev = "00" * 32
        for h, b in enumerate(blocks):
            self.assertEqual(b["height"], h)
            self.assertEqual(b["prev_hash"], prev)
            self.assertLessEqual(b["count"], 5)
            self.assertEqual(hashlib.sha256(header(b)).hexdigest(), b["hash"])
            prev = b["hash"]
        self.assertEqual([b["count"] for b in blocks[:2]], [5, 5])
        head = json.loads(self.c.take("ehr/anchor/gw1/head")[-1][1])
        self.assertEqual(head, blocks[-1])
        # a late subscriber gets the head as a retained message
        late = self.env.client("late-auditor", subscribe=("ehr/anchor/gw1/head",))
        wait_for(lambda: late.take("ehr/anchor/gw1/head"), what="retained head")
        self.assertEqual(json.loads(late.take()[0][1])["hash"], blocks[-1]["hash"])

        stored = {json.loads(x["entry"])["entry_id"]: x["entry"]
                  for x in self.env.export(entries=True) if x["type"] == "entry"}
        for ref in entries:
            rep, props = self.reply({"op": "proof", "entry_id": ref["entry_id"]}, corr=b"c1")
            self.assertEqual(rep["status"], "ok", rep)
            self.assertEqual(props.CorrelationData, b"c1")
            self.assertEqual(rep["leaf_hash"], ref["leaf_hash"])
            self.assertEqual(leaf_hash(stored[ref["entry_id"]].encode()), ref["leaf_hash"])
            b = rep["block"]
            self.assertIn(b, blocks)
            self.assertTrue(verify_inclusion(bytes.fromhex(rep["leaf_hash"]), rep["leaf_index"],
                                             b["count"], [bytes.fromhex(p) for p in
                                                          rep["audit_path"]],
                                             bytes.fromhex(b["merkle_root"])))
        # the same proof by leaf hash, and checked by ehrctl verify-proof
        ref = entries[7]
        rep, _ = self.reply({"op": "proof", "leaf_hash": ref["leaf_hash"]})
        self.assertEqual(rep["entry_id"], ref["entry_id"])
        pf = os.path.join(self.env.dir, "proof.json")
        ef = os.path.join(self.env.dir, "entry.json")
        with open(pf, "w") as f:
            json.dump(rep, f)
        with open(ef, "wb") as f:
            f.write(stored[ref["entry_id"]].encode())
        pub = os.path.join(self.env.dir, "gateway.pub")
        ok = subprocess.run([EHRCTL, "verify-proof", pf, ef, "--pubkey", pub],
                            capture_output=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        with open(ef, "wb") as f:
            f.write(stored[ref["entry_id"]].replace("PA", "PB").encode())
        bad = subprocess.run([EHRCTL, "verify-proof", pf, ef, "--pubkey", pub],
                             capture_output=True)
        self.assertEqual(bad.returncode, 1)
        self.env.ctl("keygen", os.path.join(self.env.dir, "other"))
        with open(ef, "wb") as f:
            f.write(stored[ref["entry_id"]].encode())
        bad = subprocess.run([EHRCTL, "verify-proof", pf, ef, "--pubkey",
                              os.path.join(self.env.dir, "other.pub")], capture_output=True)
        self.assertEqual(bad.returncode, 1)

        # a proof whose entry_id was edited does not vouch for another entry
        doctored = dict(rep, entry_id="gw1-999")
        with open(pf, "w") as f:
            json.dump(doctored, f)
        bad = subprocess.run([EHRCTL, "verify-proof", pf, ef, "--pubkey", pub],
                             capture_output=True)
        self.assertEqual(bad.returncode, 1, bad.stdout)

        rep, _ = self.reply({"op": "block", "height": 1})
        self.assertEqual(rep, {"op": "block", "status": "ok", "block": blocks[1]})

    def test_not_found_and_bad_requests(self):
        self.assertEqual(self.reply({"op": "proof", "entry_id": "gw1-999999"})[0],
                         {"op": "proof", "status": "not_found"})
        self.assertEqual(self.reply({"op": "proof", "leaf_hash": "ab" * 32})[0]["status"],
                         "not_found")
        self.assertEqual(self.reply({"op": "block", "height": 999999})[0],
                         {"op": "block", "status": "not_found"})
        r = self.reply({"op": "proof"})[0]
        self.assertEqual((r["status"], r["error"]["code"]), ("rejected", "schema"))
        r = self.reply({"op": "block", "height": 1.5})[0]
        self.assertEqual(r["error"]["code"], "schema")
        r = self.reply({"op": "frobnicate"})[0]
        self.assertEqual((r["op"], r["error"]["code"]), ("frobnicate", "unsupported"))
        # a Response Topic outside the family -> forbidden, on the family's topic
        n = len(self.c.take("ehr/anchor/gw1/replies"))
        self.request({"op": "block", "height": 0}, resp="ehr/device/A1/receipts")
        msgs = wait_for(lambda: [m for m in self.c.take("ehr/anchor/gw1/replies")[n:]
                                 if m[0] == "ehr/anchor/gw1/replies"], what="forbidden reply")
        r = json.loads(msgs[0][1])
        self.assertEqual((r["op"], r["status"], r["error"]["code"]),
                         ("block", "rejected", "forbidden"))
        self.request({"op": "block", "height": 0}, resp="ehr/anchor/gw1/repliesX")
        wait_for(lambda: len([m for m in self.c.take("ehr/anchor/gw1/replies")[n:]
                              if m[0] == "ehr/anchor/gw1/replies"]) >= 2, what="second forbidden")


class Pending(unittest.TestCase):
    def test_pending_until_sealed_at_shutdown(self):
        e = Env("pending")
        try:
            e.ctl("register", "patient", "PP")
            e.ctl("register", "device", "P1", "--patient", "PP", "--type", "monitor")
            e.gw.extra += ["--block-interval-ms", "3600000"]
            e.gw.start()
            c = e.client("a", subscribe=("ehr/#",))
            r = c.receipt_for(c.publish("ehr/device/P1/telemetry", telemetry(1)))
            eid = r["entries"][0]["entry_id"]
            c.c.publish("ehr/anchor/gw1/request", json.dumps({"op": "proof", "entry_id": eid}),
                        qos=1)
            rep = wait_for(lambda: c.take("ehr/anchor/gw1/replies"), what="reply")
            self.assertEqual(json.loads(rep[0][1])["status"], "pending")
            self.assertEqual(e.gw.stop(), 0)  # shutdown seals the open block
            blocks = [x for x in e.export() if x["type"] == "block"]
            self.assertEqual(len(blocks), 1)
            self.assertEqual(blocks[0]["count"], 1)
            e.gw.start()
            n = len(c.take("ehr/anchor/gw1/replies"))
            c.c.publish("ehr/anchor/gw1/request", json.dumps({"op": "proof", "entry_id": eid}),
                        qos=1)
            rep = wait_for(lambda: c.take("ehr/anchor/gw1/replies")[n:], what="reply")
            self.assertEqual(json.loads(rep[0][1])["status"], "ok")
        finally:
            e.close()


class Tamper(unittest.TestCase):
    """ehrctl verify fails each kind of tampering with exit 1 and names where."""

    @classmethod
    def setUpClass(cls):
        e = cls.env = Env("tamper")
        e.ctl("register", "patient", "PT")
        e.ctl("register", "patient", "PU")
        e.ctl("register", "device", "T1", "--patient", "PT", "--type", "monitor")
        e.ctl("register", "device", "T2", "--patient", "PU", "--type", "monitor")
        e.gw.extra += ["--block-max-entries", "4", "--block-interval-ms", "100"]
        e.gw.start()
        c = e.client("t", subscribe=("ehr/device/+/receipts",))
        for i in range(6):
            for d in ("T1", "T2"):
                c.receipt_for(c.publish("ehr/device/%s/telemetry" % d, telemetry(i, readings=[
                    {"type": "heart_rate", "value": 60 + i}, {"type": "spo2", "value": 96}])))
        assert e.gw.stop() == 0
        cls.db = os.path.join(e.dir, "gw.db")
        cls.mk = os.path.join(e.dir, "master.key")

    @classmethod
    def tearDownClass(cls):
        cls.env.close()

    def verify(self, db, master=True):
        args = [EHRCTL, "--db", db, "verify"] + (["--master-key", self.mk] if master else [])
        return subprocess.run(args, capture_output=True, text=True)

    def tampered(self, sql, params=()):
        path = os.path.join(self.env.dir, "copy-%d.db" % time.monotonic_ns())
        shutil.copy(self.db, path)
        con = sqlite3.connect(path)
        con.execute(sql, params)
        con.commit()
        con.close()
        return path

    def expect_fail(self, path, where, master=True):
        p = self.verify(path, master)
        self.assertEqual(p.returncode, 1, p.stdout + p.stderr)
        self.assertIn(where, p.stderr)

    def test_intact(self):
        p = self.verify(self.db)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertIn("ok: 6 blocks", p.stdout)

    def test_ciphertext_byte(self):
        con = sqlite3.connect(self.db)
        ct = bytearray(con.execute("SELECT ct FROM entries WHERE seq = 5").fetchone()[0])
        con.close()
        ct[20] ^= 1
        self.expect_fail(self.tampered("UPDATE entries SET ct = ? WHERE seq = 5", (bytes(ct),)),
                         "seq 5")

    def test_leaf_hash_byte(self):
        con = sqlite3.connect(self.db)
        leaf = bytearray(con.execute("SELECT leaf_hash FROM entries WHERE seq = 9").fetchone()[0])
        con.close()
        leaf[0] ^= 0x80
        path = self.tampered("UPDATE entries SET leaf_hash = ? WHERE seq = 9", (bytes(leaf),))
        self.expect_fail(path, "height 2", master=False)

    def test_header_field(self):
        self.expect_fail(self.tampered("UPDATE blocks SET sealed_at = sealed_at + 1"
                                       " WHERE height = 3"), "height 3", master=False)

    def test_signature(self):
        con = sqlite3.connect(self.db)
        sig = con.execute("SELECT sig FROM blocks WHERE height = 4").fetchone()[0]
        con.close()
        other = sig[:10] + ("A" if sig[10] != "A" else "B") + sig[11:]
        self.expect_fail(self.tampered("UPDATE blocks SET sig = ? WHERE height = 4", (other,)),
                         "height 4", master=False)

    def test_deleted_block(self):
        self.expect_fail(self.tampered("DELETE FROM blocks WHERE height = 2"), "height 2",
                         master=False)

    def test_swapped_blocks(self):
        path = self.tampered("UPDATE blocks SET height = -1 WHERE height = 1")
        con = sqlite3.connect(path)
        con.execute("UPDATE blocks SET height = 1 WHERE height = 2")
        con.execute("UPDATE blocks SET height = 2 WHERE height = -1")
        con.commit()
        con.close()
        self.expect_fail(path, "height 1", master=False)

    def test_clear_category_column(self):
        path = self.tampered("UPDATE entries SET category = 'laboratory' WHERE seq = 3")
        self.expect_fail(path, "seq 3")
        self.assertIn("category", self.verify(path).stderr)

    def test_truncated_tail_needs_the_kept_head(self):
        head = [x for x in self.env.export() if x["type"] == "block"][-1]
        hp = os.path.join(self.env.dir, "head.json")
        with open(hp, "w") as f:
            json.dump({k: v for k, v in head.items() if k != "type"}, f)
        ok = subprocess.run([EHRCTL, "--db", self.db, "verify", "--head", hp],
                            capture_output=True, text=True)
        self.assertEqual(ok.returncode, 0, ok.stderr)
        path = self.tampered("DELETE FROM entries WHERE block = (SELECT max(height) FROM blocks)")
        con = sqlite3.connect(path)
        con.execute("DELETE FROM blocks WHERE height = (SELECT max(height) FROM blocks)")
        con.commit()
        con.close()
        self.assertEqual(self.verify(path, master=False).returncode, 0)  # consistent, shorter
        cut = subprocess.run([EHRCTL, "--db", path, "verify", "--head", hp],
                             capture_output=True, text=True)
        self.assertEqual(cut.returncode, 1, cut.stderr)
        self.assertIn("kept head", cut.stderr)

    def test_ciphertext_moved_to_another_row(self):
        con = sqlite3.connect(self.db)
        ct = con.execute("SELECT ct FROM entries WHERE seq = 2").fetchone()[0]
        con.close()
        self.expect_fail(self.tampered("UPDATE entries SET ct = ? WHERE seq = 6", (ct,)), "seq 6")


if __name__ == "__main__":
    unittest.main(verbosity=2)
