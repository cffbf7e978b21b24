"""
Back-pressure and reconnects (issue 2 item 4): a burst far larger than a
tiny intake queue is all receipted (the MQTT reader waits instead of
dropping or buffering without bound), and after the broker restarts the
gateway reconnects, resubscribes, says `online` again and keeps working.
"""
import json
import time
import unittest

from harness import Env, telemetry, wait_for


class Resilience(unittest.TestCase):
    def setUp(self):
        self.env = Env("resilience")
        self.env.ctl("register", "patient", "PR")
        self.env.ctl("register", "device", "B1", "--patient", "PR", "--type", "monitor")

    def tearDown(self):
        self.env.close()

    def test_burst_with_tiny_queue_is_all_receipted(self):
        e = self.env
        e.gw.extra += ["--queue-max-msgs", "16", "--batch-max", "8", "--outbox-inflight", "4"]
        e.gw.start()
        dev = e.client("burst", subscribe=("ehr/device/B1/receipts",))
        n = 2000
        for i in range(n):
            dev.c.publish("ehr/device/B1/telemetry", telemetry(i), qos=1)
        wait_for(lambda: len({r["msg_id"] for r in dev.receipts()}) >= n, timeout=120,
                 what="%d receipts" % n)
        statuses = {r["status"] for r in dev.receipts()}
        self.assertEqual(statuses, {"accepted"})
        seqs = [x["seq"] for x in e.export() if x["type"] == "entry"]
        self.assertEqual(seqs, list(range(n)))
        self.assertEqual(e.gw.stop(), 0)

    def test_broker_restart_reconnects_and_resubscribes(self):
        e = self.env
        e.gw.start()
        dev = e.client("before", subscribe=("ehr/#",))
        r = dev.receipt_for(dev.publish("ehr/device/B1/telemetry", telemetry(1)))
        self.assertEqual(r["status"], "accepted")
        dev.close()
        e.clients.remove(dev)
        e.broker.stop()
        time.sleep(1.0)
        e.broker.start()  # same port, empty broker (no persistence)
        wait_for(lambda: e.gw.log().count("ready") >= 2, timeout=40, what="gateway reconnect")
        dev2 = e.client("after", subscribe=("ehr/#",))
        st = wait_for(lambda: [json.loads(m[1]) for m in dev2.take("ehr/gateway/gw1/status")],
                      what="retained status")
        self.assertEqual(st[-1]["status"], "online")
        r = dev2.receipt_for(dev2.publish("ehr/device/B1/telemetry", telemetry(2)))
        self.assertEqual(r["status"], "accepted")
        self.assertEqual(e.gw.stop(), 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
