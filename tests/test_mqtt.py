"""MQTT bridge against a real mosquitto on loopback: delivery, order, retained state, replay after
a broker restart, and credentials from a file."""

from __future__ import annotations

import asyncio
import json
import shutil
import subprocess
import threading
import time
from pathlib import Path

import pytest

from analysis_server.service import start_server
from pvad.cluster.processes import free_port, wait_tcp
from pvad.config import MqttConfig

from conftest import client_tls, run, server_config
from test_server import _FixedAnalyzer, exchange, latent_frame

pytestmark = pytest.mark.skipif(shutil.which("mosquitto") is None,
                                reason="needs mosquitto (Debian package `mosquitto`)")
mqtt = pytest.importorskip("paho.mqtt.client")


class Broker:
    def __init__(self, tmp: Path, *, password_file: Path | None = None) -> None:
        self.port = free_port()
        self.dir = tmp
        import getpass

        # run as ourselves: as root, mosquitto would switch to its own user and not read our tmp files
        lines = [f"user {getpass.getuser()}", f"listener {self.port} 127.0.0.1", "persistence true",
                 f"persistence_location {tmp}/",
                 f"allow_anonymous {'false' if password_file else 'true'}"]
        if password_file:
            lines.append(f"password_file {password_file}")
        self.conf = tmp / "mosquitto.conf"
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen | None = None

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_tcp("127.0.0.1", self.port, 10)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


class Listener:
    """A real MQTT client with a persistent session (QoS 1), collecting messages."""

    def __init__(self, port: int, **auth) -> None:
        self.messages: list[tuple[str, dict, bool]] = []
        self.lock = threading.Lock()
        c = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="test-listener", clean_session=False)
        if auth:
            c.username_pw_set(auth["username"], auth["password"])
        c.on_connect = lambda cl, u, f, rc, p: cl.subscribe("pvad/#", qos=1)
        c.on_message = self._on_message
        c.reconnect_delay_set(min_delay=0.2, max_delay=1)
        c.connect("127.0.0.1", port)
        c.loop_start()
        self.client = c

    def _on_message(self, client, userdata, msg) -> None:
        with self.lock:
            self.messages.append((msg.topic, json.loads(msg.payload), bool(msg.retain)))

    def wait_for(self, topic: str, n: int, timeout: float = 20.0) -> list[dict]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                got = [m for t, m, _ in self.messages if t == topic]
            if len(got) >= n:
                return got
            time.sleep(0.05)
        return got

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


def _password_broker(tmp: Path, *, client_password: str) -> tuple[Broker, Path]:
    """A started broker that knows user `pvad` with password `s3cret`, and a password file for the
    server's bridge holding `client_password`."""
    pw = tmp / "passwd"
    subprocess.run(["mosquitto_passwd", "-b", "-c", str(pw), "pvad", "s3cret"], check=True, capture_output=True)
    secret = tmp / "mqtt-password"
    secret.write_text(client_password + "\n")
    broker = Broker(tmp, password_file=pw)
    broker.start()
    return broker, secret


async def _delivered(srv, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while srv.mqtt.delivered < n and time.monotonic() < deadline:
        await asyncio.sleep(0.05)


def _alarm_sigmas(cycles: int) -> list[float]:
    return ([1.0] * 4 + [0.0] * 4) * cycles  # raise on the 4th frame, clear on the 5th


def test_alarms_reach_mqtt_in_order_and_are_replayed_after_a_broker_restart(pki, tmp_path, analyzer, encoder):
    broker = Broker(tmp_path)
    broker.start()
    listener = Listener(broker.port)
    time.sleep(0.3)
    cfg = server_config(pki, tmp_path, mqtt=MqttConfig(port=broker.port, reconnect_max_s=1.0))
    try:
        async def scenario():
            srv = await start_server(cfg, analyzer=_FixedAnalyzer(analyzer, _alarm_sigmas(3)))
            address, tls = f"127.0.0.1:{srv.port}", client_tls(pki, "camera/cam-1")
            try:
                await exchange(address, tls, [latent_frame(encoder, s) for s in range(1, 9)])  # raise + clear
                first = await asyncio.to_thread(listener.wait_for, "pvad/events", 2)
                await _delivered(srv, 2)  # acknowledged by the broker: the cursor moved past them
                await asyncio.to_thread(broker.stop)  # broker down: the server goes on
                acks = await exchange(address, tls, [latent_frame(encoder, s) for s in range(9, 25)])
                await asyncio.to_thread(broker.start)
                allev = await asyncio.to_thread(listener.wait_for, "pvad/events", 6)
                per_cam = await asyncio.to_thread(listener.wait_for, "pvad/cam-1/alarm", 6)
                await _delivered(srv, 6)
                return first, acks, allev, per_cam, srv.hub.log.since(0), srv.mqtt.delivered
            finally:
                await srv.stop(0)

        first, acks, allev, per_cam, persisted, delivered = run(scenario(), timeout=90)
    finally:
        listener.close()
        broker.stop()
    assert [e["type"] for e in first] == ["raised", "cleared"]
    assert all(a.outcome == 1 for a in acks)  # ACCEPTED while the broker was down
    ids = [e["event_id"] for e in allev]
    assert ids == sorted(set(ids)) == [e.event_id for e in persisted]  # all, once, in order
    assert [e["type"] for e in allev] == ["raised", "cleared"] * 3
    assert [e["event_id"] for e in per_cam] == ids and delivered == 6
    assert all(e["camera"] == "cam-1" for e in allev)


def test_retained_state_and_credentials_from_a_file(pki, tmp_path, analyzer, encoder):
    broker, secret = _password_broker(tmp_path, client_password="s3cret")
    try:
        cfg = server_config(pki, tmp_path, mqtt=MqttConfig(port=broker.port, username="pvad", password_file=secret))

        async def scenario():
            srv = await start_server(cfg, analyzer=_FixedAnalyzer(analyzer, [1.0] * 4))
            try:
                await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, "camera/cam-1"),
                               [latent_frame(encoder, s) for s in range(1, 5)])
                await _delivered(srv, 1)
                return srv.mqtt.delivered
            finally:
                await srv.stop(0)

        delivered = run(scenario(), timeout=60)
        late = Listener(broker.port, username="pvad", password="s3cret")  # joins after the event
        state = late.wait_for("pvad/cam-1/state", 1)
        retained = [r for t, _, r in late.messages if t == "pvad/cam-1/state"]
        late.close()
    finally:
        broker.stop()
    assert delivered == 1
    assert state and state[0]["alarm"] is True and retained[0] is True


def test_refused_credentials_are_reported_and_the_server_keeps_running(pki, tmp_path, analyzer, encoder, caplog):
    broker, wrong = _password_broker(tmp_path, client_password="not-it")
    try:
        cfg = server_config(pki, tmp_path, mqtt=MqttConfig(port=broker.port, username="pvad", password_file=wrong))

        async def scenario():
            srv = await start_server(cfg, analyzer=_FixedAnalyzer(analyzer, [1.0] * 4))
            try:
                acks = await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, "camera/cam-1"),
                                      [latent_frame(encoder, s) for s in range(1, 5)])
                await asyncio.sleep(1.0)
                return acks, srv.mqtt.delivered, len(srv.hub.log.since(0))
            finally:
                await srv.stop(0)

        with caplog.at_level("ERROR", logger="analysis_server.mqtt_bridge"):
            acks, delivered, persisted = run(scenario(), timeout=60)
    finally:
        broker.stop()
    assert all(a.outcome == 1 for a in acks) and persisted == 1  # analysed and persisted all the same
    assert delivered == 0
    assert any("refused the connection" in r.getMessage() and "password_file" in r.getMessage() for r in caplog.records)
