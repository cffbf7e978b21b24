"""
harness.py — integration test harness: a real Mosquitto broker on a port
proven free, the built ehrgate/ehrctl binaries on a fresh SQLite file, and
MQTT v5 clients (python3-paho-mqtt) acting as devices and auditors.

Environment: EHRGATE_BIN_DIR (build dir with gateway/ehrgate, tools/ehrctl).
"""
import hashlib
import json
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

BIN = os.environ.get("EHRGATE_BIN_DIR", os.path.join(os.path.dirname(__file__), "../../build"))
EHRGATE = os.path.join(BIN, "gateway", "ehrgate")
EHRCTL = os.path.join(BIN, "tools", "ehrctl")
MOSQUITTO = shutil.which("mosquitto") or "/usr/sbin/mosquitto"


def free_port():
    """A port the kernel just handed out (bind to port 0)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def wait_for(pred, timeout=10.0, step=0.02, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        v = pred()
        if v:
            return v
        time.sleep(step)
    raise AssertionError("timed out waiting for %s" % what)


class Broker:
    """A private mosquitto on 127.0.0.1; restartable on the same port."""

    def __init__(self, workdir, port=None, extra_conf="", scheme="mqtt", host="127.0.0.1"):
        self.workdir = workdir
        self.port = port
        self.proc = None
        self.extra_conf = extra_conf  # e.g. a TLS listener's settings
        self.scheme = scheme
        self.host = host

    def start(self):
        for _ in range(20):
            port = self.port or free_port()
            conf = os.path.join(self.workdir, "mosquitto.conf")
            with open(conf, "w") as f:
                f.write("listener %d 127.0.0.1\npersistence false\n"
                        "max_queued_messages 100000\nmax_inflight_messages 1000\n" % port)
                f.write(self.extra_conf or "allow_anonymous true\n")
            log = open(os.path.join(self.workdir, "mosquitto.log"), "a")
            self.proc = subprocess.Popen([MOSQUITTO, "-c", conf], stdout=log, stderr=log)
            try:
                wait_for(lambda: self._listening(port) or self.proc.poll() is not None,
                         timeout=5, what="mosquitto")
            except AssertionError:
                pass
            if self.proc.poll() is None and self._listening(port):
                self.port = port
                return self
            self.proc.kill()
            self.proc.wait()
            if self.port:  # fixed port busy: wait and retry the same port
                time.sleep(0.25)
        raise RuntimeError("could not start mosquitto")

    @staticmethod
    def _listening(port):
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
            return True
        except OSError:
            return False

    def stop(self):
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None

    @property
    def url(self):
        return "%s://%s:%d" % (self.scheme, self.host, self.port)


def ctl(workdir, *args, check=True, input=None):
    """Runs ehrctl on the test database; returns CompletedProcess."""
    cmd = [EHRCTL, "--db", os.path.join(workdir, "gw.db")] + list(args)
    p = subprocess.run(cmd, capture_output=True, input=input, cwd=workdir)
    if check and p.returncode != 0:
        raise AssertionError("ehrctl %s failed (%d): %s" % (" ".join(args), p.returncode,
                                                          p.stderr.decode()))
    return p


class Gateway:
    def __init__(self, workdir, broker, extra=()):
        self.workdir = workdir
        self.broker = broker
        self.extra = list(extra)
        self.proc = None
        self.log_path = os.path.join(workdir, "ehrgate.log")

    def argv(self):
        return [EHRGATE, "--db", os.path.join(self.workdir, "gw.db"),
                "--key", os.path.join(self.workdir, "gateway.key"),
                "--master-key", os.path.join(self.workdir, "master.key"),
                "--broker", self.broker.url, "--name", "gw1",
                "--stats-interval-s", "0"] + self.extra

    def start(self, wait_online=True):
        self.mark()
        log = open(self.log_path, "a")
        self.proc = subprocess.Popen(self.argv(), stdout=log, stderr=log, cwd=self.workdir)
        if wait_online:
            wait_for(lambda: self.ready() or self.proc.poll() is not None, timeout=15,
                     what="gateway ready")
            if self.proc.poll() is not None:
                raise AssertionError("gateway exited %d:\n%s" % (self.proc.returncode,
                                                                self.log()))
        return self

    def ready(self):
        with open(self.log_path) as f:
            return f.read().count("ready") > self._ready_seen

    _ready_seen = 0

    def mark(self):
        """Remember how many 'ready' lines exist, so start() waits for a new one."""
        with open(self.log_path, "a+") as f:
            f.seek(0)
            self._ready_seen = f.read().count("ready")

    def log(self):
        with open(self.log_path) as f:
            return f.read()

    def stop(self, sig=signal.SIGTERM, timeout=30):
        if not self.proc:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            rc = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            rc = self.proc.wait()
        self.proc = None
        self.check_sanitizers()
        return rc

    def check_sanitizers(self):
        """Under ASan/UBSan builds a report in the gateway's log fails the test
        (the gateway may have kept running after a UBSan report)."""
        log = self.log()
        for marker in ("ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:"):
            if marker in log:
                at = log.index(marker)
                raise AssertionError("sanitizer report in the gateway log:\n" +
                                     log[max(0, at - 200):at + 3000])

    def kill(self):
        return self.stop(signal.SIGKILL)

    def restart(self):
        return self.start()


class Client:
    """An MQTT v5 client that records every message on its subscriptions."""

    def __init__(self, broker, client_id, subscribe=()):
        self.c = mqtt.Client(client_id=client_id, protocol=mqtt.MQTTv5)
        self.lock = threading.Lock()
        self.messages = []  # (topic, payload bytes, properties)
        self.c.on_message = self._on_message
        self.subs = list(subscribe)
        self.mark = 0  # receipts seen before the last publish
        self.connected = threading.Event()
        self.c.on_connect = self._on_connect
        self.c.connect("127.0.0.1", broker.port, keepalive=30)
        self.c.loop_start()
        wait_for(self.connected.is_set, what="client connect")

    def _on_connect(self, client, userdata, flags, rc, properties=None):
        for s in self.subs:
            client.subscribe(s, qos=1)
        time.sleep(0.05)
        self.connected.set()

    def _on_message(self, client, userdata, msg):
        with self.lock:
            self.messages.append((msg.topic, bytes(msg.payload), msg.properties))

    def publish(self, topic, payload, sig=None, qos=1, retain=False):
        props = None
        if sig is not None:
            props = Properties(PacketTypes.PUBLISH)
            props.UserProperty = ("sig", sig)
        if isinstance(payload, str):
            payload = payload.encode()
        self.mark = len(self.receipts())
        info = self.c.publish(topic, payload, qos=qos, retain=retain, properties=props)
        info.wait_for_publish(10)
        return hashlib.sha256(payload).hexdigest()

    def take(self, topic_prefix=""):
        with self.lock:
            out = [m for m in self.messages if m[0].startswith(topic_prefix)]
        return out

    def receipts(self):
        """Every receipt object received so far, in order."""
        out = []
        for topic, payload, _ in self.take():
            if topic.endswith("/receipts"):
                out.extend(json.loads(payload)["receipts"])
        return out

    def receipt_for(self, sha, timeout=10, start=0):
        """The first receipt for payload hash sha among receipts[start:]."""
        def find():
            for r in self.receipts()[start:]:
                if r["payload_sha256"] == sha:
                    return r
            return None
        return wait_for(find, timeout=timeout, what="receipt for %s" % sha[:12])

    def close(self):
        self.c.loop_stop()
        self.c.disconnect()


class Env:
    """One test environment: a temp dir, a broker, a database, a gateway."""

    def __init__(self, name):
        self.dir = tempfile.mkdtemp(prefix="ehrgate-%s-" % name)
        self.broker = Broker(self.dir).start()
        self.gw = Gateway(self.dir, self.broker)
        self.clients = []

    def ctl(self, *args, **kw):
        return ctl(self.dir, *args, **kw)

    def client(self, client_id, subscribe=("ehr/#",)):
        c = Client(self.broker, client_id, subscribe)
        self.clients.append(c)
        return c

    def export(self, entries=False):
        args = ["export"] + (["--entries"] if entries else [])
        p = self.ctl(*args)
        return [json.loads(l) for l in p.stdout.decode().splitlines() if l.strip()]

    def close(self):
        for c in self.clients:
            try:
                c.close()
            except Exception:
                pass
        self.gw.stop()
        self.broker.stop()
        if os.environ.get("EHRGATE_KEEP_TMP") is None:
            shutil.rmtree(self.dir, ignore_errors=True)


def leaf_hash(entry_bytes):
    return hashlib.sha256(b"\x00" + entry_bytes).hexdigest()


def telemetry(seq, ts="2026-11-24T06:30:00.123Z", readings=None, patient=None):
    d = {"seq": seq, "ts": ts}
    if patient:
        d["patient"] = patient
    d["readings"] = readings if readings is not None else [{"type": "heart_rate", "value": 72}]
    return json.dumps(d, separators=(",", ":"))
