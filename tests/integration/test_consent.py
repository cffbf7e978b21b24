"""
Consent, feeds, access entries, patient requests, erasure and admin requests
(SPEC §3, §8-10, §13) over a real broker, like a patient app, a device, the
health authority (a grantee) and an operator would use them.

Signatures are made with `ehrctl sign` (the tool a patient-app developer is
pointed to); requests carry a Response Topic below the family's replies
topic and Correlation Data, and the replies are matched by it.
"""
import base64
import datetime
import json
import os
import subprocess
import threading
import time
import unittest
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from harness import EHRCTL, Env, leaf_hash, telemetry, wait_for

HERE = os.path.dirname(os.path.abspath(__file__))
FHIR_RUN = os.path.join(HERE, "..", "fhir", "run.sh")

GRANTEES = ["--grantee", "authority:public-health", "--grantee", "research:research"]


def iso(dt):
    return dt.astimezone(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def now_iso(offset_s=0):
    return iso(datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=offset_s))


class Party:
    """A signer (patient app or operator) with its own key and nonce counter."""

    def __init__(self, env, name):
        self.env = env
        self.prefix = os.path.join(env.dir, name)
        env_ctl_keygen(env, self.prefix)
        self.key = self.prefix + ".key"
        self.pub = self.prefix + ".pub"
        self.nonce = 0

    def sign(self, topic, payload, key=None):
        p = subprocess.run([EHRCTL, "sign", key or self.key, "--topic", topic],
                           input=payload, capture_output=True, check=True)
        return p.stdout.decode().strip()

    def body(self, fields, nonce=None, issued=None):
        if nonce is None:
            self.nonce += 1
            nonce = self.nonce
        d = dict(fields)
        d["nonce"] = nonce
        d["issued"] = issued or now_iso()
        return json.dumps(d, separators=(",", ":")).encode()


def env_ctl_keygen(env, prefix):
    subprocess.run([EHRCTL, "keygen", prefix], check=True, capture_output=True)


class Requester:
    """An MQTT v5 client that sends requests with a Response Topic and
    Correlation Data and collects the replies."""

    def __init__(self, env, client_id, subs):
        self.lock = threading.Lock()
        self.msgs = []
        self.ready = threading.Event()
        self.subs = subs
        self.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        self.c.on_connect = lambda c, u, f, rc, p=None: c.subscribe([(s, 1) for s in self.subs])
        self.c.on_subscribe = lambda c, u, mid, g, p=None: self.ready.set()
        self.c.on_message = self._on_message
        self.c.connect("127.0.0.1", env.broker.port, keepalive=30)
        self.c.loop_start()
        wait_for(self.ready.is_set, what="requester subscribed")
        env.clients.append(self)

    def _on_message(self, client, userdata, msg):
        p = msg.properties
        user = dict(getattr(p, "UserProperty", []) or []) if p else {}
        corr = getattr(p, "CorrelationData", None) if p else None
        with self.lock:
            self.msgs.append((msg.topic, bytes(msg.payload), user, corr))

    def take(self, prefix):
        with self.lock:
            return [m for m in self.msgs if m[0].startswith(prefix)]

    def publish(self, topic, payload, sig=None, response_topic=None, corr=None):
        props = Properties(PacketTypes.PUBLISH)
        if sig is not None:
            props.UserProperty = ("sig", sig)
        if response_topic:
            props.ResponseTopic = response_topic
        if corr:
            props.CorrelationData = corr
        self.c.publish(topic, payload, qos=1, properties=props).wait_for_publish(10)

    def request(self, topic, payload, sig, replies, response_topic=None, timeout=10):
        corr = uuid.uuid4().bytes
        rt = response_topic or replies + "/app"
        self.publish(topic, payload, sig=sig, response_topic=rt, corr=corr)

        def find():
            for t, p, _, c in self.take(replies):
                if c == corr:
                    return json.loads(p)
            return None
        return wait_for(find, timeout=timeout, what="reply on %s" % rt)

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class ConsentBase(unittest.TestCase):
    erase_mode = None

    def setUp(self):
        self.env = Env("consent")
        self.addCleanup(self.env.close)  # also when setUp fails half-way
        env = self.env
        self.admin = Party(env, "admin")
        self.pat = Party(env, "p1")
        self.other = Party(env, "p2")
        env.ctl("register", "patient", "P1", "--pubkey", self.pat.pub)
        env.ctl("register", "patient", "P2", "--pubkey", self.other.pub)
        env.ctl("register", "device", "D1", "--patient", "P1", "--type", "monitor")
        env.ctl("register", "device", "D2", "--patient", "P2", "--type", "monitor")
        env.gw.extra = GRANTEES + ["--admin-pubkey", self.admin.pub,
                                   "--block-interval-ms", "100"]
        if self.erase_mode:
            env.gw.extra += ["--erase-mode", self.erase_mode]
        env.gw.start()
        self.app = Requester(env, "app", ["ehr/patient/+/replies/#", "ehr/admin/replies/#",
                                          "ehr/feed/+/replies/#"])
        self.auth = Requester(env, "authority", ["ehr/feed/authority"])
        self.research = Requester(env, "research", ["ehr/feed/research"])
        self.dev = env.client("dev", subscribe=("ehr/device/+/receipts",))
        self.seq = 0

    # -- helpers ----------------------------------------------------------------

    def consent(self, fields, party=None, patient="P1", **kw):
        party = party or self.pat
        topic = "ehr/patient/%s/consent" % patient
        body = party.body(fields, kw.pop("nonce", None), kw.pop("issued", None))
        sig = kw.pop("sig", None) or party.sign(kw.pop("sign_topic", topic), body,
                                                kw.pop("key", None))
        return self.app.request(topic, body, sig, "ehr/patient/%s/replies" % patient, **kw)

    def grant(self, cid="c-1", grantee="authority", cats=("vital-signs",), **extra):
        f = {"consent_id": cid, "action": "grant", "grantee": grantee, "categories": list(cats)}
        f.update(extra)
        return self.consent(f)

    def patient_req(self, fields, party=None, patient="P1", **kw):
        party = party or self.pat
        topic = "ehr/patient/%s/request" % patient
        body = party.body(fields)
        return self.app.request(topic, body, party.sign(topic, body),
                                "ehr/patient/%s/replies" % patient, **kw)

    def admin_req(self, fields, key=None):
        topic = "ehr/admin/request"
        body = self.admin.body(fields)
        return self.app.request(topic, body, self.admin.sign(topic, body, key),
                                "ehr/admin/replies")

    def reading(self, device="D1", ts=None, readings=None):
        """Publishes one reading; returns the accepted entry ids."""
        self.seq += 1
        sha = self.dev.publish("ehr/device/%s/telemetry" % device,
                               telemetry(self.seq, ts=ts or now_iso(-5), readings=readings))
        r = self.dev.receipt_for(sha)
        self.assertEqual(r["status"], "accepted", r)
        return [e["entry_id"] for e in r["entries"]]

    def feed(self, who):
        """[(feed_seq, entry dict, raw bytes)] received so far on who's feed."""
        out = []
        for t, p, user, _ in who.take("ehr/feed/"):
            if t.count("/") == 2:
                out.append((int(user["feed_seq"]), json.loads(p), p))
        return out

    def feed_ids(self, who):
        return [e["entry_id"] for _, e, _ in self.feed(who)]

    def settle(self):
        """Waits until everything published so far has crossed the broker:
        a marker reading on P2 (never granted) gets its receipt, and the
        outbox is published in order."""
        self.reading(device="D2")
        time.sleep(0.3)

    def rows(self, sql):
        import sqlite3
        db = sqlite3.connect("file:%s?mode=ro" % os.path.join(self.env.dir, "gw.db"), uri=True)
        try:
            return db.execute(sql).fetchall()
        finally:
            db.close()


class Consent(ConsentBase):
    def test_grant_forwards_revoke_stops(self):
        before = self.reading()
        r = self.grant()
        self.assertEqual((r["op"], r["status"], r["consent_id"], r["action"]),
                         ("consent", "ok", "c-1", "grant"), r)
        granted = self.reading() + self.reading()
        wait_for(lambda: len(self.feed(self.auth)) >= 2, what="two feed messages")
        self.settle()
        feed = self.feed(self.auth)
        self.assertEqual([e for e in self.feed_ids(self.auth)], granted)
        self.assertEqual([fs for fs, _, _ in feed], [0, 1])
        self.assertNotIn(before[0], self.feed_ids(self.auth))
        self.assertEqual(self.feed(self.research), [], "other grantee's feed must stay empty")
        # the feed carries the entry bytes unchanged: same leaf hash as the receipt
        rows = {e: lh for e, lh in self.rows(
            "SELECT 'gw1-' || seq, hex(leaf_hash) FROM entries")}
        for _, e, raw in feed:
            self.assertEqual(leaf_hash(raw), rows[e["entry_id"]].lower())
            self.assertEqual(e["patient"], "P1")
        # each forward has its access entry, committed with it
        access = self.rows("SELECT seq FROM entries WHERE kind = 'access' AND patient = 'P1'")
        self.assertEqual(len(access), 2, access)

        r = self.consent({"consent_id": "c-1", "action": "revoke"})
        self.assertEqual((r["status"], r["action"]), ("ok", "revoke"), r)
        after = self.reading() + self.reading()
        self.settle()
        self.assertEqual(self.feed_ids(self.auth), granted)
        for e in after:
            self.assertNotIn(e, self.feed_ids(self.auth))
        # the consent entries hold the exact directive, topic and signature
        ex = [x for x in self.env.export(entries=True) if x["type"] == "entry"]
        cons = [json.loads(x["entry"]) for x in ex if x["entry"] and
                json.loads(x["entry"])["kind"] == "consent"]
        self.assertEqual(len(cons), 2)
        self.assertEqual(cons[0]["category"], "consent")
        self.assertEqual(cons[0]["source"]["type"], "patient")
        self.assertEqual(cons[0]["topic"], "ehr/patient/P1/consent")
        d = json.loads(cons[0]["directive"])
        self.assertEqual(d["consent_id"], "c-1")
        self.assertEqual(self.pat.sign(cons[0]["topic"], cons[0]["directive"].encode()),
                         cons[0]["sig"])
        self.assertEqual(cons[0]["resource"]["resourceType"], "Consent")
        self.assertEqual(cons[0]["resource"]["status"], "active")
        self.assertEqual(cons[1]["resource"]["status"], "inactive")
        self.assertEqual(self.env.ctl("verify").returncode, 0)

    def test_revocation_holds_with_messages_in_flight(self):
        self.grant()
        # a burst in flight while the revocation arrives: whatever was
        # committed after the revocation's entry must not be forwarded
        shas = []
        for i in range(60):
            self.seq += 1
            shas.append(self.dev.publish("ehr/device/D1/telemetry",
                                         telemetry(self.seq, ts=now_iso(-5))))
            if i == 30:
                r = self.consent({"consent_id": "c-1", "action": "revoke"})
                self.assertEqual(r["status"], "ok", r)
        for s in shas:
            self.assertEqual(self.dev.receipt_for(s)["status"], "accepted")
        self.settle()
        revoke_seq = self.rows("SELECT seq FROM consent_log WHERE action = 'revoke'")[0][0]
        fwd = [int(e.split("-")[1]) for e in self.feed_ids(self.auth)]
        self.assertTrue(fwd, "something was forwarded before the revocation")
        self.assertTrue(all(s < revoke_seq for s in fwd), (revoke_seq, fwd))
        db_fwd = [s for (s,) in self.rows("SELECT seq FROM feed WHERE grantee = 'authority'")]
        self.assertEqual(sorted(db_fwd), sorted(fwd))

    def test_period_data_period_category(self):
        # expired grant period: nothing
        self.grant("old", period={"start": "2020-01-01T00:00:00Z",
                                  "end": "2021-01-01T00:00:00+01:00"})
        # data_period: only observations effective in 2026-11-01 .. 2026-11-30
        self.grant("dp", grantee="research", data_period={"start": "2026-11-01T00:00:00Z",
                                                          "end": "2026-11-30T23:59:59Z"})
        inside = self.reading(ts="2026-11-20T10:00:00+02:00")
        outside = self.reading(ts="2026-10-20T10:00:00Z")
        # category: laboratory only; a heart rate is vital-signs
        self.grant("lab", grantee="authority", cats=("laboratory",))
        vital = self.reading(ts="2026-11-21T10:00:00Z")
        self.settle()
        self.assertEqual(self.feed(self.auth), [])
        self.assertEqual(self.feed_ids(self.research), inside + vital)
        self.assertNotIn(outside[0], self.feed_ids(self.research))

    def test_bad_directives_change_nothing(self):
        topic = "ehr/patient/P1/consent"
        grant = {"consent_id": "c-x", "action": "grant", "grantee": "authority",
                 "categories": ["vital-signs"]}
        cases = [
            ("forged", dict(sig=base64.b64encode(b"\x30\x06\x02\x01\x01\x02\x01\x01").decode()),
             "signature"),
            ("wrong key", dict(key=self.other.key), "signature"),
            ("other topic", dict(sign_topic="ehr/patient/P2/consent"), "signature"),
            ("stale", dict(issued=now_iso(-900)), "replay"),
            ("future", dict(issued=now_iso(+900)), "replay"),
        ]
        for name, kw, code in cases:
            r = self.consent(grant, **kw)
            self.assertEqual((r["status"], r["error"]["code"]), ("rejected", code), (name, r))
        # replayed nonce: a valid directive, then the same nonce again
        ok = self.consent(dict(grant, consent_id="c-ok"))
        self.assertEqual(ok["status"], "ok", ok)
        r = self.consent(dict(grant, consent_id="c-again"), nonce=self.pat.nonce)
        self.assertEqual((r["status"], r["error"]["code"]), ("rejected", "replay"), r)
        # an offset in issued is compared as an instant, not as a string
        minus9 = datetime.datetime.now(datetime.timezone(datetime.timedelta(hours=-9)))
        r = self.consent(dict(grant, consent_id="c-tz"),
                         issued=minus9.isoformat(timespec="milliseconds"))
        self.assertEqual(r["status"], "ok", r)
        # unknown grantee / category, revoking an unknown id
        r = self.consent(dict(grant, grantee="nobody"))
        self.assertEqual((r["status"], r["error"]["code"]), ("rejected", "schema"), r)
        r = self.consent(dict(grant, categories=["genomics"]))
        self.assertEqual((r["status"], r["error"]["code"]), ("rejected", "schema"), r)
        r = self.consent({"consent_id": "nope", "action": "revoke"})
        self.assertEqual(r["status"], "not_found", r)
        # a refused directive is not accepted: its nonce can still be used
        n = self.pat.nonce + 1
        r = self.consent(dict(grant, categories=["genomics"]), nonce=n)
        self.assertEqual(r["error"]["code"], "schema", r)
        r = self.consent(dict(grant, consent_id="c-n"), nonce=n)
        self.assertEqual(r["status"], "ok", r)
        self.pat.nonce = n
        # too large: not parsed
        big = dict(grant, consent_id="c-big", pad="x" * 300000)
        r = self.consent(big)
        self.assertEqual(r["error"]["code"], "too_large", r)
        # only c-ok and c-tz exist; everything else changed nothing
        rows = self.rows("SELECT consent_id FROM consents ORDER BY consent_id")
        self.assertEqual([c for (c,) in rows], ["c-n", "c-ok", "c-tz"])
        self.assertEqual(len(self.rows("SELECT 1 FROM entries WHERE kind = 'consent'")), 3)
        q = self.env.ctl("quarantine", "list").stdout.decode().splitlines()
        codes = [json.loads(l)["code"] for l in q]
        for code in ("signature", "replay", "schema"):
            self.assertIn(code, codes)

    def test_forbidden_response_topic(self):
        topic = "ehr/patient/P1/consent"
        body = self.pat.body({"consent_id": "c-rt", "action": "grant", "grantee": "authority",
                              "categories": ["vital-signs"]})
        corr = b"rt-1"
        self.app.publish(topic, body, sig=self.pat.sign(topic, body),
                         response_topic="ehr/patient/P2/replies/x", corr=corr)

        def find():
            for t, p, _, c in self.app.take("ehr/patient/P1/replies"):
                if c == corr:
                    return (t, json.loads(p))
            return None
        t, r = wait_for(find, what="forbidden reply")
        self.assertEqual(t, "ehr/patient/P1/replies")
        self.assertEqual((r["op"], r["status"], r["error"]["code"]),
                         ("consent", "rejected", "forbidden"))
        self.assertEqual(self.rows("SELECT count(*) FROM consents")[0][0], 0)
        self.assertEqual(self.app.take("ehr/patient/P2/"), [])

    def test_patient_requests_and_audit(self):
        self.grant("a", cats=("vital-signs", "laboratory"))
        self.grant("r", grantee="research")
        ids = self.reading() + self.reading(readings=[{"type": "heart_rate", "value": 70},
                                                     {"type": "spo2", "value": 97}])
        self.settle()
        r = self.patient_req({"op": "consents"})
        self.assertEqual((r["op"], r["status"]), ("consents", "ok"), r)
        self.assertEqual(sorted(c["consent_id"] for c in r["consents"]), ["a", "r"])
        r = self.patient_req({"op": "audit"})
        self.assertEqual(r["status"], "ok", r)
        fwd = [(e["grantee"], e["entry_id"]) for e in r["events"] if e["event"] == "forward"]
        expect = sorted([("authority", i) for i in ids] + [("research", i) for i in ids])
        self.assertEqual(sorted(fwd), expect)
        # exactly the forwards that happened (the feed table is the truth)
        db = sorted(self.rows("SELECT grantee, 'gw1-' || seq FROM feed"))
        self.assertEqual(sorted(fwd), db)
        self.assertEqual([e["event"] for e in r["events"]][:2], ["consent", "consent"])
        # records: the patient's observations and consents, with block heights
        r = self.patient_req({"op": "records", "limit": 1000})
        kinds = [json.loads(x["entry"])["kind"] for x in r["records"]]
        self.assertEqual(kinds.count("observation"), 3)
        self.assertEqual(kinds.count("consent"), 2)
        self.assertFalse(r["more"])
        r = self.patient_req({"op": "records", "limit": 2})
        self.assertEqual(len(r["records"]), 2)
        self.assertTrue(r["more"])
        # unknown op, unknown member
        r = self.patient_req({"op": "dance"})
        self.assertEqual(r["error"]["code"], "unsupported", r)
        r = self.patient_req({"op": "audit", "x": 1})
        self.assertEqual(r["error"]["code"], "schema", r)
        # the op is the verified request's, also when it is too big to peek
        body = self.pat.body({"op": "erase", "pad": " " * 70000})
        topic = "ehr/patient/P1/request"
        r = self.app.request(topic, body, self.pat.sign(topic, body), "ehr/patient/P1/replies")
        self.assertEqual((r["op"], r["status"], r["error"]["code"]),
                         ("erase", "rejected", "schema"), r)
        self.assertEqual(self.rows("SELECT count(*) FROM patient_keys WHERE wrapped IS NULL"),
                         [(0,)])
        # another patient's key cannot read P1
        topic = "ehr/patient/P1/request"
        body = self.other.body({"op": "records"})
        r = self.app.request(topic, body, self.other.sign(topic, body), "ehr/patient/P1/replies")
        self.assertEqual(r["error"]["code"], "signature", r)
        # the access entries and consent entries are valid FHIR R4
        if os.environ.get("EHRGATE_SKIP_FHIR") is None:
            out = os.path.join(self.env.dir, "audit.jsonl")
            n = 0
            with open(out, "w") as f:
                for x in self.env.export(entries=True):
                    if x["type"] == "entry" and x["entry"] and \
                            json.loads(x["entry"])["kind"] in ("access", "consent"):
                        f.write(x["entry"] + "\n")
                        n += 1
            p = subprocess.run(["bash", FHIR_RUN, "--profile", "none", out],
                               capture_output=True, text=True, timeout=600)
            self.assertEqual(p.returncode, 0, p.stdout[-3000:] + p.stderr[-2000:])
            self.assertIn("%d passed, 0 failed" % n, p.stdout)
            self.assertGreaterEqual(n, 4)  # 2 consents + at least one access per grantee

    def test_feed_since_fills_gaps(self):
        self.grant()
        ids = [self.reading()[0] for _ in range(5)]
        self.settle()
        topic = "ehr/feed/authority/request"
        body = json.dumps({"op": "since", "feed_seq": 2, "limit": 2}).encode()
        r = self.app.request(topic, body, None, "ehr/feed/authority/replies")
        self.assertEqual((r["op"], r["status"]), ("since", "ok"), r)
        self.assertEqual([i["feed_seq"] for i in r["items"]], [2, 3])
        self.assertEqual([json.loads(i["entry"])["entry_id"] for i in r["items"]], ids[2:4])
        self.assertEqual(r["next_feed_seq"], 5)
        # the bytes are those of the feed message
        feed = {fs: raw for fs, _, raw in self.feed(self.auth)}
        self.assertEqual(r["items"][0]["entry"].encode(), feed[2])
        self.assertTrue(r["more"])
        body = json.dumps({"op": "since", "feed_seq": "x"}).encode()
        r = self.app.request(topic, body, None, "ehr/feed/authority/replies")
        self.assertEqual(r["error"]["code"], "schema", r)
        body = json.dumps({"op": "since", "feed_seq": 0}).encode()
        r = self.app.request("ehr/feed/nobody/request", body, None, "ehr/feed/nobody/replies")
        self.assertEqual((r["op"], r["status"]), ("since", "not_found"), r)


class Erasure(ConsentBase):
    def test_erase(self):
        self.grant()
        ids = self.reading() + self.reading()
        self.settle()
        r = self.patient_req({"op": "erase"})
        self.assertEqual((r["op"], r["status"], r["erased"]), ("erase", "ok", 3), r)
        # records unreadable; the audit trail stays
        r = self.patient_req({"op": "records"})
        self.assertEqual(r["records"], [])
        r = self.patient_req({"op": "audit"})
        ev = [e["event"] for e in r["events"]]
        self.assertEqual(ev.count("forward"), 2)
        self.assertIn("erasure", ev)
        # nothing more is accepted or forwarded for P1
        self.seq += 1
        sha = self.dev.publish("ehr/device/D1/telemetry", telemetry(self.seq, ts=now_iso(-5)))
        rr = self.dev.receipt_for(sha)
        self.assertEqual((rr["status"], rr["error"]["code"]), ("rejected", "unknown_patient"))
        # the feed's since answers null for erased entries
        body = json.dumps({"op": "since", "feed_seq": 0}).encode()
        s = self.app.request("ehr/feed/authority/request", body, None,
                             "ehr/feed/authority/replies")
        self.assertEqual([i["entry"] for i in s["items"]], [None, None])
        self.env.gw.stop()
        v = self.env.ctl("verify", "--master-key", os.path.join(self.env.dir, "master.key"),
                         check=False)
        self.assertEqual(v.returncode, 0, v.stdout + v.stderr)
        ex = [x for x in self.env.export(entries=True) if x["type"] == "entry"]
        nulls = [x["seq"] for x in ex if x["entry"] is None]
        self.assertEqual(len(nulls), 3)
        kinds = [json.loads(x["entry"])["kind"] for x in ex if x["entry"]]
        self.assertEqual(kinds.count("access"), 2)
        self.assertEqual(kinds.count("erasure"), 1)
        er = [json.loads(x["entry"]) for x in ex if x["entry"] and
              json.loads(x["entry"])["kind"] == "erasure"][0]
        self.assertEqual((er["resource"], er["erased"], er["patient"]), (None, 3, "P1"))
        # a rejected record of the erased patient is kept without its payload
        q = [json.loads(l) for l in self.env.ctl("quarantine", "list").stdout.decode().splitlines()]
        last = [x for x in q if x["code"] == "unknown_patient"][-1]
        self.assertEqual(last["size"], 0, last)
        # the wrapped key is gone from the file and the WAL is empty
        wal = os.path.join(self.env.dir, "gw.db-wal")
        self.assertTrue(not os.path.exists(wal) or os.path.getsize(wal) == 0)
        self.assertEqual(self.rows("SELECT wrapped FROM patient_keys WHERE patient_id = 'P1'"),
                         [(None,)])


class AdminErasure(ConsentBase):
    erase_mode = "admin"

    def test_erase_pending_until_approved(self):
        self.reading()
        r = self.patient_req({"op": "erase"})
        self.assertEqual((r["op"], r["status"]), ("erase", "pending"), r)
        self.assertEqual(len(self.patient_req({"op": "records"})["records"]), 1)
        r = self.admin_req({"op": "approve_erase", "patient_id": "P1"})
        self.assertEqual((r["op"], r["status"], r["erased"]), ("approve_erase", "ok", 1), r)
        self.assertEqual(self.patient_req({"op": "records"})["records"], [])
        r = self.admin_req({"op": "approve_erase", "patient_id": "P1"})
        self.assertEqual(r["status"], "not_found", r)


class Admin(ConsentBase):
    def test_admin_ops(self):
        newkey = Party(self.env, "p3")
        r = self.admin_req({"op": "register_patient", "patient_id": "P3",
                            "pubkey": open(newkey.pub).read(),
                            "identifiers": [{"hospital": "H1", "value": "MRN-3"}]})
        self.assertEqual((r["op"], r["status"]), ("register_patient", "ok"), r)
        r = self.admin_req({"op": "register_device", "device_id": "D3", "patient_id": "P3",
                            "type": "monitor"})
        self.assertEqual(r["status"], "ok", r)
        self.reading(device="D3")
        r = self.admin_req({"op": "register_hospital", "hospital_id": "H9",
                            "utc_offset": "+01:00"})
        self.assertEqual(r["status"], "ok", r)
        r = self.admin_req({"op": "rebind_device", "device_id": "D3", "patient_id": "P1",
                            "from": now_iso()})
        self.assertEqual(r["status"], "ok", r)
        r = self.admin_req({"op": "rebind_device", "device_id": "NOPE", "patient_id": "P1",
                            "from": now_iso()})
        self.assertEqual(r["status"], "not_found", r)
        r = self.admin_req({"op": "deregister_device", "device_id": "D3"})
        self.assertEqual(r["status"], "ok", r)
        self.seq += 1
        sha = self.dev.publish("ehr/device/D3/telemetry", telemetry(self.seq, ts=now_iso(-5)))
        self.assertEqual(self.dev.receipt_for(sha)["error"]["code"], "unknown_device")
        # set_patient_key: the old key no longer works, the new one does
        lost = Party(self.env, "p1-new")
        r = self.admin_req({"op": "set_patient_key", "patient_id": "P1",
                            "pubkey": open(lost.pub).read()})
        self.assertEqual(r["status"], "ok", r)
        r = self.patient_req({"op": "consents"})
        self.assertEqual((r["status"], r["error"]["code"]), ("rejected", "signature"), r)
        lost.nonce = self.pat.nonce  # one counter per patient, whatever the key
        r = self.patient_req({"op": "consents"}, party=lost)
        self.assertEqual(r["status"], "ok", r)

    def test_admin_rejections(self):
        stranger = Party(self.env, "stranger")
        r = self.admin_req({"op": "register_patient", "patient_id": "PX"}, key=stranger.key)
        self.assertEqual((r["status"], r["error"]["code"]), ("rejected", "signature"), r)
        r = self.admin_req({"op": "register_patient", "patient_id": "P1"})
        self.assertEqual(r["status"], "rejected", r)
        r = self.admin_req({"op": "fly"})
        self.assertEqual((r["status"], r["error"]["code"]), ("rejected", "unsupported"), r)
        self.assertEqual(self.rows("SELECT count(*) FROM patients WHERE patient_id = 'PX'"),
                         [(0,)])
        # ehrctl publish --sign reaches the admin API too; --stamp sets a
        # fresh nonce (ms since the epoch, above the test's small ones) and issued
        path = os.path.join(self.env.dir, "req.json")
        with open(path, "w") as f:
            f.write('{"op":"register_hospital","hospital_id":"H7"}')
        p = subprocess.run([EHRCTL, "publish", "--broker", self.env.broker.url, "--sign",
                            self.admin.key, "--stamp", "--topic", "ehr/admin/request", "--reply",
                            path], capture_output=True, timeout=30)
        self.assertEqual(p.returncode, 0, p.stderr)
        self.assertEqual(json.loads(p.stdout)["status"], "ok", p.stdout)
        # the stamped nonce is now the admin key's counter: small ones are replays
        r = self.admin_req({"op": "register_hospital", "hospital_id": "H8"})
        self.assertEqual((r["status"], r["error"]["code"]), ("rejected", "replay"), r)


if __name__ == "__main__":
    unittest.main(verbosity=2)
