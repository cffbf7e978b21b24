"""
TLS and per-client ACLs (issue 7): a development CA and certificates from
config/gen-certs.sh, a Mosquitto TLS listener that requires client
certificates and takes their CN as the username, the ACL written by
`ehrctl acl` from the registry, the gateway and ehrgate-sim on mqtts://.
Proves the allowed paths work and the denials hold: a device cannot publish
on another device's topic, a grantee cannot read another grantee's feed, a
patient cannot read another patient's replies, and a client without a
certificate from the CA cannot connect at all.
"""
import json
import os
import shutil
import sqlite3
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from harness import BIN, EHRCTL, Broker, Gateway, telemetry, wait_for

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
SIM = os.path.join(BIN, "firmware-sim", "ehrgate-sim")
IDS = ["gateway", "admin", "authority", "research", "D00001", "D00002", "P00001", "P00002",
       "intruder"]


class TlsClient:
    count = 0

    def __init__(self, port, certs, name, subs=()):
        TlsClient.count += 1
        self.msgs = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        self.connected = threading.Event()
        self.c = mqtt.Client(client_id="t-%s-%d" % (name, TlsClient.count),
                             protocol=mqtt.MQTTv5)
        self.c.tls_set(ca_certs=os.path.join(certs, "ca.crt"),
                       certfile=os.path.join(certs, name + ".crt"),
                       keyfile=os.path.join(certs, name + ".key"),
                       cert_reqs=ssl.CERT_REQUIRED)
        self.subs = list(subs)
        self.c.on_connect = self._on_connect
        self.c.on_subscribe = lambda c, u, mid, rc, p=None: self.subscribed.set()
        self.c.on_message = self._on_message
        self.c.connect("localhost", port, keepalive=30)
        self.c.loop_start()
        wait_for(self.connected.is_set, what="TLS connect of %s" % name)
        if self.subs:
            wait_for(self.subscribed.is_set, what="subscription of %s" % name)

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        if self.subs:
            client.subscribe([(s, 1) for s in self.subs])
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.msgs.append((msg.topic, bytes(msg.payload)))

    def take(self, prefix=""):
        with self.lock:
            return [m for m in self.msgs if m[0].startswith(prefix)]

    def publish(self, topic, payload):
        self.c.publish(topic, payload, qos=1).wait_for_publish(10)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class Tls(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.mkdtemp(prefix="ehrgate-tls-")
        os.chmod(self.dir, 0o755)  # mosquitto started as root runs as user mosquitto
        self.gw = self.broker = None
        self.clients = []
        self.addCleanup(self.cleanup)  # also when setUp fails half-way
        self.certs = os.path.join(self.dir, "certs")
        subprocess.run(["bash", os.path.join(ROOT, "config", "gen-certs.sh"), self.certs] + IDS,
                       check=True, capture_output=True)
        ctl = lambda *a: subprocess.run([EHRCTL, "--db", os.path.join(self.dir, "gw.db")] +
                                        list(a), check=True, capture_output=True, cwd=self.dir)
        for p in ("P00001", "P00002"):
            subprocess.run([EHRCTL, "keygen", os.path.join(self.dir, p)], check=True,
                           capture_output=True)
            ctl("register", "patient", p, "--pubkey", os.path.join(self.dir, p + ".pub"))
        ctl("register", "device", "D00001", "--patient", "P00001", "--type", "monitor")
        ctl("register", "device", "D00002", "--patient", "P00002", "--type", "monitor")
        self.grantees = ["--grantee", "authority:public-health", "--grantee", "research:research"]
        acl = os.path.join(self.dir, "acl")
        ctl("acl", "-o", acl, "--admin-user", "admin", *self.grantees)
        c = self.certs
        # the shipped config/mosquitto-tls.conf, with this test's port and paths
        with open(os.path.join(ROOT, "config", "mosquitto-tls.conf")) as f:
            tpl = [l for l in f.read().splitlines()
                   if l and not l.startswith("#") and
                   not l.startswith(("listener", "persistence", "max_queued"))]
        conf = "\n".join(l.replace("certs/", c + "/").replace("acl_file acl", "acl_file " + acl)
                         for l in tpl) + "\n"
        self.assertIn("require_certificate true", conf)
        self.broker = Broker(self.dir, extra_conf=conf, scheme="mqtts", host="localhost").start()
        self.gw = Gateway(self.dir, self.broker)
        self.gw.extra = self.grantees + ["--cafile", c + "/ca.crt", "--cert", c + "/gateway.crt",
                                         "--keyfile", c + "/gateway.key",
                                         "--block-interval-ms", "200"]
        self.gw.start()

    def cleanup(self):
        for cl in self.clients:
            try:
                cl.close()
            except Exception:
                pass
        if self.gw:
            self.gw.stop()
        if self.broker:
            self.broker.stop()
        if os.environ.get("EHRGATE_KEEP_TMP") is None:
            shutil.rmtree(self.dir, ignore_errors=True)

    def client(self, name, subs=()):
        cl = TlsClient(self.broker.port, self.certs, name, subs)
        self.clients.append(cl)
        return cl

    def sim(self, *args):
        c = self.certs
        p = subprocess.run([SIM] + list(args) + [
            "--broker", self.broker.url, "--cafile", c + "/ca.crt",
            "--state", os.path.join(self.dir, "st")], capture_output=True, cwd=self.dir,
            timeout=120)
        self.assertEqual(p.returncode, 0, p.stdout.decode() + p.stderr.decode())
        return p

    def rows(self, sql):
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.dir, "gw.db"), uri=True)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()

    def test_allowed_paths_and_denials(self):
        c = self.certs
        d1 = self.client("D00001", ["ehr/device/D00001/receipts"])
        d2 = self.client("D00002", ["ehr/device/D00002/receipts"])
        # allowed: a device on its own topic, answered on its receipts topic
        d1.publish("ehr/device/D00001/telemetry", telemetry(1, ts="2026-11-24T06:30:00Z"))
        r = wait_for(lambda: d1.take("ehr/device/D00001/receipts"), what="D00001 receipt")
        self.assertEqual(json.loads(r[0][1])["receipts"][0]["status"], "accepted")
        # denied: a device on another device's topic never reaches the gateway
        d1.publish("ehr/device/D00002/telemetry", telemetry(77, ts="2026-11-24T06:30:00Z"))
        time.sleep(1.5)
        self.assertEqual(self.rows("SELECT count(*) FROM msgs WHERE source_id = 'D00002'"),
                         [(0,)])
        self.assertEqual(d2.take(), [])
        # a device cannot read another device's receipts either
        spy = self.client("D00002", ["ehr/device/D00001/receipts"])
        # nor forge receipts for itself, nor publish on a feed
        d1.publish("ehr/device/D00001/receipts", b'{"gateway":"gw1","receipts":[]}')
        # the patient app over mqtts: P00001 grants the authority
        self.sim("patient", "--id", "P00001", "--key", "P00001.key", "--cert",
                 c + "/P00001.crt", "--keyfile", c + "/P00001.key", "grant", "--consent-id",
                 "c1", "--grantee", "authority", "--categories", "vital-signs")
        auth = self.client("authority", ["ehr/feed/authority"])
        nosy = self.client("research", ["ehr/feed/authority", "ehr/feed/#"])
        peek = self.client("P00002", ["ehr/patient/P00001/replies/#", "ehr/patient/#"])
        d1.publish("ehr/device/D00001/telemetry", telemetry(2, ts="2026-11-24T06:31:00Z"))
        wait_for(lambda: auth.take("ehr/feed/authority"), what="authority feed")
        out = self.sim("patient", "--id", "P00001", "--key", "P00001.key", "--cert",
                       c + "/P00001.crt", "--keyfile", c + "/P00001.key", "consents")
        self.assertEqual(json.loads(out.stdout)["status"], "ok")
        d1.publish("ehr/feed/authority", b'{"forged":true}')
        time.sleep(1)
        self.assertFalse([m for m in d1.take("ehr/device/D00001/receipts")
                          if b'"receipts":[]' in m[1]], "a device forged its own receipt")
        self.assertFalse([m for m in auth.take("ehr/feed/authority") if b"forged" in m[1]],
                         "a device published on a feed")
        self.assertEqual(nosy.take(), [], "a grantee read another grantee's feed")
        self.assertEqual(peek.take(), [], "a patient read another patient's replies")
        self.assertEqual(spy.take(), [], "a device read another device's receipts")
        # every client may read the anchor head (no patient data)
        anyone = self.client("D00002", ["ehr/anchor/gw1/head"])
        wait_for(lambda: anyone.take("ehr/anchor/gw1/head"), what="retained head")

    def test_fleet_over_mqtts_and_no_certificate_no_connection(self):
        self.sim("devices", "--count", "2", "--cert-dir", self.certs, "--rate", "5",
                 "--duration", "2", "--quiet")
        self.assertEqual(self.rows("SELECT count(DISTINCT source_id) FROM msgs"), [(2,)])
        # a client with a certificate from another CA cannot connect at all
        other = os.path.join(self.dir, "other")
        subprocess.run(["bash", os.path.join(ROOT, "config", "gen-certs.sh"), other, "D00001"],
                       check=True, capture_output=True)
        cl = mqtt.Client(client_id="t-rogue", protocol=mqtt.MQTTv5)
        cl.tls_set(ca_certs=os.path.join(self.certs, "ca.crt"),
                   certfile=os.path.join(other, "D00001.crt"),
                   keyfile=os.path.join(other, "D00001.key"))
        connected = False
        try:
            cl.connect("localhost", self.broker.port, keepalive=5)
            cl.loop_start()
            time.sleep(1.5)
            connected = cl.is_connected()
            cl.loop_stop()
        except (ssl.SSLError, OSError):
            connected = False
        self.assertFalse(connected, "a certificate from another CA was let in")


if __name__ == "__main__":
    unittest.main(verbosity=2)
