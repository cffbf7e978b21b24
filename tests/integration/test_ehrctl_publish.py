"""
`ehrctl publish` over a real broker (SPEC §3 Signatures and Replies, §12):
a private mosquitto and a tiny MQTT v5 responder written here with
python3-paho-mqtt, which answers requests by publishing to their Response
Topic with their Correlation Data (after a decoy reply with other
Correlation Data, which ehrctl must ignore). No gateway is involved.

Checked: the reply is printed (and nothing else), the Response Topic lies
under the family's replies topic, the `sig` user property verifies with
openssl over topic || 0x00 || payload and equals `ehrctl sign` (ECDSA is
deterministic, RFC 6979), plain publishing without --reply, a missing reply
times out with exit 1, an unreachable or unusable broker and bad usage exit
2, and no output ever contains key material.
"""
import base64
import json
import os
import shutil
import subprocess
import tempfile
import threading
import time
import unittest

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from harness import EHRCTL, Broker, free_port, wait_for

SILENT = "ehr/silent/request"  # the responder never answers here


class Responder:
    """Answers every request that names a Response Topic, except on SILENT."""

    def __init__(self, broker):
        self.lock = threading.Lock()
        self.received = []  # (topic, payload, response_topic, corr, user_properties)
        self.ready = threading.Event()
        self.c = mqtt.Client(client_id="responder", protocol=mqtt.MQTTv5)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = self._on_subscribe
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", broker.port, keepalive=30)
        self.c.loop_start()
        wait_for(self.ready.is_set, what="responder subscribed")

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        client.subscribe([("ehr/+/request", 1), ("ehr/+/+/request", 1), ("ehr/+/+/consent", 1),
                          ("ehr/+/plain", 1)])

    def _on_subscribe(self, client, userdata, mid, granted, properties=None):
        self.ready.set()

    def _on_message(self, client, userdata, msg):
        p = msg.properties
        rt = getattr(p, "ResponseTopic", None) if p else None
        corr = getattr(p, "CorrelationData", None) if p else None
        user = list(getattr(p, "UserProperty", []) or []) if p else []
        with self.lock:
            self.received.append((msg.topic, bytes(msg.payload), rt, corr, user))
        if not rt or msg.topic == SILENT:
            return
        sig = dict(user).get("sig")
        # a decoy for someone else first: same topic, other Correlation Data
        decoy = Properties(PacketTypes.PUBLISH)
        decoy.CorrelationData = bytes(reversed(corr or b"x")) + b"!"
        client.publish(rt, json.dumps({"decoy": True}), qos=1, properties=decoy)
        reply = {"op": "echo", "status": "ok", "topic": msg.topic,
                 "payload": bytes(msg.payload).decode("utf-8", "replace"),
                 "response_topic": rt, "sig": sig}
        props = Properties(PacketTypes.PUBLISH)
        if corr is not None:
            props.CorrelationData = corr
        client.publish(rt, json.dumps(reply, separators=(",", ":")), qos=1, properties=props)

    def on(self, topic):
        with self.lock:
            return [r for r in self.received if r[0] == topic]

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class Publish(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.dir = tempfile.mkdtemp(prefix="ehrgate-publish-")
        cls.broker = Broker(cls.dir).start()
        cls.responder = Responder(cls.broker)
        cls.outputs = []
        subprocess.run([EHRCTL, "keygen", os.path.join(cls.dir, "admin")], check=True,
                       capture_output=True)
        cls.key = os.path.join(cls.dir, "admin.key")
        cls.pub = os.path.join(cls.dir, "admin.pub")

    @classmethod
    def tearDownClass(cls):
        cls.responder.close()
        cls.broker.stop()
        if os.environ.get("EHRGATE_KEEP_TMP") is None:
            shutil.rmtree(cls.dir, ignore_errors=True)

    def write(self, name, data):
        path = os.path.join(self.dir, name)
        with open(path, "wb") as f:
            f.write(data if isinstance(data, bytes) else data.encode())
        return path

    def publish(self, *args, broker=True, input=None, timeout=60):
        cmd = [EHRCTL, "publish"] + (["--broker", self.broker.url] if broker else []) + list(args)
        p = subprocess.run(cmd, capture_output=True, input=input, cwd=self.dir, timeout=timeout)
        self.outputs.append(p.stdout + p.stderr)
        self.assertNotIn(b"PRIVATE KEY", p.stdout + p.stderr)
        return p

    def request(self, nonce, extra=None):
        d = {"op": "register_hospital", "nonce": nonce, "issued": "2026-11-24T06:30:00Z",
             "hospital_id": "H%d" % nonce}
        d.update(extra or {})
        return json.dumps(d, separators=(",", ":"))

    # ---- tests ---------------------------------------------------------------

    def test_reply_printed(self):
        body = self.request(1)
        f = self.write("req1.json", body)
        p = self.publish("--sign", self.key, "--topic", "ehr/admin/request", "--reply", f)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stderr, b"")
        out = p.stdout.decode()
        self.assertTrue(out.endswith("\n"))
        self.assertEqual(out.count("\n"), 1, out)  # the reply alone, not the decoy
        reply = json.loads(out)
        self.assertNotIn("decoy", reply)
        self.assertEqual(reply["status"], "ok")
        self.assertEqual(reply["payload"], body)
        self.assertEqual(reply["topic"], "ehr/admin/request")
        # a private topic under the family's replies topic
        self.assertTrue(reply["response_topic"].startswith("ehr/admin/replies/ehrctl-"),
                        reply["response_topic"])
        self.assertNotIn("+", reply["response_topic"])
        self.assertNotIn("#", reply["response_topic"])
        # every run gets its own reply topic and Correlation Data
        p2 = self.publish("--sign", self.key, "--topic", "ehr/admin/request", "--reply", f)
        self.assertEqual(p2.returncode, 0, p2.stderr.decode())
        self.assertNotEqual(json.loads(p2.stdout)["response_topic"], reply["response_topic"])
        corrs = [r[3] for r in self.responder.on("ehr/admin/request") if r[3] is not None]
        self.assertGreaterEqual(len(corrs), 2)
        self.assertEqual(len(set(corrs)), len(corrs))
        self.assertTrue(all(len(c) >= 8 for c in corrs))

    def test_sig_verifies(self):
        body = self.request(2)
        f = self.write("req2.json", body)
        topic = "ehr/admin/request"
        p = self.publish("--sign", self.key, "--topic", topic, "--reply", f)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        sig = json.loads(p.stdout)["sig"]
        self.assertIsNotNone(sig)
        # the broker delivered exactly these bytes with exactly this sig
        got = [r for r in self.responder.on(topic) if r[1] == body.encode()]
        self.assertEqual(len(got), 1)
        self.assertEqual(dict(got[0][4]).get("sig"), sig)
        # deterministic ECDSA: the same value `ehrctl sign` prints
        s = subprocess.run([EHRCTL, "sign", self.key, "--topic", topic, f], capture_output=True,
                           check=True)
        self.assertEqual(s.stdout.decode().strip(), sig)
        # and independently with openssl over topic || 0x00 || payload
        der = self.write("sig2.der", base64.b64decode(sig, validate=True))
        data = self.write("signed2.bin", topic.encode() + b"\x00" + body.encode())
        v = subprocess.run(["openssl", "dgst", "-sha256", "-verify", self.pub, "-signature", der,
                            data], capture_output=True)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        self.assertIn(b"Verified OK", v.stdout)
        # ... which fails for another topic (the check is real)
        other = self.write("signed2x.bin", b"ehr/patient/P1/request\x00" + body.encode())
        v = subprocess.run(["openssl", "dgst", "-sha256", "-verify", self.pub, "-signature", der,
                            other], capture_output=True)
        self.assertNotEqual(v.returncode, 0)

    def test_publish_without_reply(self):
        body = b'{"hello":"plain"}'
        f = self.write("plain.json", body)
        p = self.publish("--topic", "ehr/x/plain", f)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        self.assertEqual(p.stdout, b"")
        got = wait_for(lambda: self.responder.on("ehr/x/plain"), what="plain message")
        topic, payload, rt, corr, user = got[0]
        self.assertEqual(payload, body)
        self.assertIsNone(rt)
        self.assertIsNone(corr)
        self.assertNotIn("sig", dict(user))
        # signed, from stdin
        p = self.publish("--topic", "ehr/y/plain", "--sign", self.key, input=body)
        self.assertEqual(p.returncode, 0, p.stderr.decode())
        got = wait_for(lambda: self.responder.on("ehr/y/plain"), what="signed plain message")
        s = subprocess.run([EHRCTL, "sign", self.key, "--topic", "ehr/y/plain"], input=body,
                           capture_output=True, check=True)
        self.assertEqual(dict(got[0][4]).get("sig"), s.stdout.decode().strip())

    def test_family_replies_topics(self):
        for topic, family in (("ehr/patient/P1/request", "ehr/patient/P1/replies/"),
                              ("ehr/patient/P1/consent", "ehr/patient/P1/replies/"),
                              ("ehr/feed/authority/request", "ehr/feed/authority/replies/"),
                              ("ehr/anchor/gw1/request", "ehr/anchor/gw1/replies/")):
            p = self.publish("--topic", topic, "--reply", "--timeout", "10",
                             input=self.request(3).encode())
            self.assertEqual(p.returncode, 0, p.stderr.decode())
            reply = json.loads(p.stdout)
            self.assertEqual(reply["topic"], topic)
            self.assertTrue(reply["response_topic"].startswith(family + "ehrctl-"),
                            reply["response_topic"])
            self.assertIsNone(reply["sig"])

    def test_timeout(self):
        f = self.write("silent.json", self.request(4))
        t0 = time.monotonic()
        p = self.publish("--sign", self.key, "--topic", SILENT, "--reply", "--timeout", "1.5", f)
        elapsed = time.monotonic() - t0
        self.assertEqual(p.returncode, 1, p.stderr.decode())
        self.assertEqual(p.stdout, b"")
        self.assertIn(b"no reply", p.stderr)
        self.assertGreaterEqual(elapsed, 1.4)
        self.assertLess(elapsed, 8)
        # the request did go out, with its Response Topic
        got = wait_for(lambda: self.responder.on(SILENT), what="silent request")
        self.assertTrue(got[0][2].startswith("ehr/silent/replies/ehrctl-"))

    def test_bad_broker(self):
        f = self.write("bad.json", self.request(5))
        port = free_port()  # nothing listens there
        for url in ("mqtt://127.0.0.1:%d" % port, "foo://127.0.0.1:1883", "mqtt://"):
            t0 = time.monotonic()
            p = self.publish("--broker", url, "--sign", self.key, "--topic", "ehr/admin/request",
                             "--reply", f, broker=False)
            self.assertEqual(p.returncode, 2, (url, p.stderr))
            self.assertEqual(p.stdout, b"")
            self.assertTrue(p.stderr.startswith(b"ehrctl: "), p.stderr)
            self.assertLess(time.monotonic() - t0, 20)
        # without --reply too
        p = self.publish("--broker", "mqtt://127.0.0.1:%d" % port, "--topic", "ehr/x/plain", f,
                         broker=False)
        self.assertEqual(p.returncode, 2, p.stderr)
        self.assertIn(b"cannot connect", p.stderr)

    def test_usage(self):
        f = self.write("u.json", self.request(6))
        cases = [
            ([f], b"usage"),                                          # no --topic
            (["--topic", "ehr/admin/x", "--reply", f], b"replies"),   # no family
            (["--topic", "ehr/+/request", f], b"wildcards"),
            (["--topic", "", f], b"wildcards"),
            (["--topic", "ehr/admin/request", "--reply", "--timeout", "0", f], b"--timeout"),
            (["--topic", "ehr/admin/request", "--reply", "--timeout", "soon", f], b"--timeout"),
            (["--topic", "ehr/admin/request", "--sign", os.path.join(self.dir, "none.key"), f],
             b"none.key"),
            (["--topic", "ehr/admin/request", os.path.join(self.dir, "none.json")], b"none.json"),
            (["--topic", "ehr/admin/request", "--frobnicate", f], b"--frobnicate"),
            (["--topic", "ehr/admin/request", f, f], b"unexpected"),
        ]
        for args, needle in cases:
            p = self.publish(*args)
            self.assertEqual(p.returncode, 2, (args, p.stderr))
            self.assertIn(needle, p.stderr, args)
            self.assertEqual(p.stdout, b"")
        h = subprocess.run([EHRCTL, "--help"], capture_output=True)
        self.assertIn(b"publish --topic TOPIC", h.stdout)

    def test_zz_no_key_material(self):
        """Runs last (name order): nothing printed by any run contains the key."""
        with open(self.key, "rb") as fh:
            pem = fh.read()
        body_lines = [l for l in pem.splitlines() if l and not l.startswith(b"-----")]
        der = base64.b64decode(b"".join(body_lines))
        # the private scalar is in the DER; look for the PEM lines and for the
        # base64/hex of any 16-byte window of the DER
        windows = [der[i:i + 16] for i in range(0, len(der) - 16, 8)]
        self.assertTrue(self.outputs)
        for out in self.outputs:
            for l in body_lines:
                self.assertNotIn(l, out)
            for w in windows:
                self.assertNotIn(w.hex().encode(), out)
                self.assertNotIn(w, out)


if __name__ == "__main__":
    unittest.main()
