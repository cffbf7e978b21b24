"""
Full disk (issue 7): the database is capped with db_max_bytes (SQLite's
max_page_count, which fails writes with SQLITE_FULL exactly as a full disk
does). The gateway stops receipting, keeps everything it committed (the
chain verifies while it waits), says so on its retained status topic, and
when there is room again (the cap raised in its config file, SIGHUP) it
takes every message the devices kept resending: each stored exactly once.
"""
import json
import os
import signal
import sqlite3
import time
import unittest

from harness import Env, telemetry, wait_for


class Disk(unittest.TestCase):
    def setUp(self):
        self.env = Env("disk")

    def tearDown(self):
        self.env.close()

    def stored(self):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.env.dir, "gw.db"), uri=True)
        try:
            return {int(m) for (m,) in db.execute("SELECT msg_id FROM msgs")}
        finally:
            db.close()

    def test_full_database_pauses_and_recovers(self):
        env = self.env
        env.ctl("register", "patient", "P1")
        env.ctl("register", "device", "D1", "--patient", "P1", "--type", "monitor")
        conf = os.path.join(env.dir, "gw.conf")
        size = os.path.getsize(os.path.join(env.dir, "gw.db"))
        with open(conf, "w") as f:
            f.write("db_max_bytes = %d\n" % (size + 400 * 1024))
        env.gw.extra = ["-c", conf, "--block-interval-ms", "100"]
        env.gw.start()
        status = env.client("ops", subscribe=("ehr/gateway/gw1/status",))
        dev = env.client("d1", subscribe=("ehr/device/D1/receipts",))
        readings = [{"type": "heart_rate", "value": 60 + i % 40} for i in range(64)]
        payloads = {s: telemetry(s, ts="2026-11-24T06:30:00.123Z", readings=readings)
                    for s in range(1, 201)}
        for s, p in payloads.items():
            dev.publish("ehr/device/D1/telemetry", p)

        def degraded():
            for t, p, _ in status.take("ehr/gateway/gw1/status"):
                if b"database full" in p:
                    return json.loads(p)
            return None
        st = wait_for(degraded, timeout=60, what="degraded status")
        self.assertEqual(st["status"], "online")
        self.assertIsNone(env.gw.proc.poll(), "the gateway must keep running")
        # what was receipted is committed, and the chain verifies meanwhile
        receipted = {int(r["msg_id"]) for r in dev.receipts() if r["status"] == "accepted"}
        self.assertTrue(receipted, "nothing was taken before the database filled up")
        self.assertLess(len(receipted), len(payloads), "the cap was never reached")
        self.assertTrue(receipted <= self.stored())
        v = env.ctl("verify", check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        # room again: the devices keep resending what was not receipted
        with open(conf, "w") as f:
            f.write("db_max_bytes = 0\n")
        env.gw.proc.send_signal(signal.SIGHUP)
        deadline = time.time() + 120
        while self.stored() != set(payloads) and time.time() < deadline:
            got = {int(r["msg_id"]) for r in dev.receipts() if r["status"] == "accepted"}
            for s in sorted(set(payloads) - got)[:50]:
                dev.publish("ehr/device/D1/telemetry", payloads[s])
            time.sleep(1)
        self.assertEqual(self.stored(), set(payloads))

        def back_online():
            msgs = status.take("ehr/gateway/gw1/status")
            return msgs and b"degraded" not in msgs[-1][1] and b'"online"' in msgs[-1][1]
        wait_for(back_online, timeout=30, what="online status without degraded")
        self.assertIn("database full", env.gw.log())
        v = env.ctl("verify", check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)


if __name__ == "__main__":
    unittest.main(verbosity=2)
