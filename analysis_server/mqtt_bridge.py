"""MQTT bridge: alarm events from the persisted event log to an MQTT broker (paho-mqtt).

Topics (prefix `pvad` by default), JSON payloads:
- `pvad/events`: every alarm event (raised / cleared), in event-id order;
- `pvad/<camera>/alarm`: the same, per camera;
- `pvad/<camera>/state`: retained `{"alarm": true|false, ...}`, the camera's current state.

The bridge reads from the store, not from memory: its cursor (the last event id the broker
acknowledged, QoS 1) is stored there and moved only after the broker's PUBACK, so a broker restart,
a lost connection or a server restart replays exactly what was not delivered (at-least-once). The
server keeps running while the broker is down.

Exactly one bridge publishes among the servers that share a store: the one holding the store's
``mqtt`` lease (PostgreSQL: a session advisory lock on a connection of its own). The others stand by,
not even connected to the broker (they share its client id and session), and try again every
``LEAD_RETRY_S``; the publisher checks its lease every ``LEASE_CHECK_S`` and stops when it is lost.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading

from analysis_server.alarms import AlarmHub, StoreUnavailable
from pvad.aio import cancel_and_wait
from pvad.config import MqttConfig
from pvad.errors import ConfigError
from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)

CURSOR = "mqtt"
LEAD_RETRY_S = 1.0
LEASE_CHECK_S = 1.0
_KINDS = {pvad_pb2.ALARM_RAISED: "raised", pvad_pb2.ALARM_CLEARED: "cleared"}


def event_payload(ev: pvad_pb2.AlarmEvent) -> dict:
    return {
        "event_id": ev.event_id,
        "camera": ev.camera_id,
        "type": _KINDS.get(ev.kind, pvad_pb2.EventKind.Name(ev.kind).lower()),
        "seq": ev.seq,
        "score": round(ev.score, 4),
        "confidence": round(ev.confidence, 4),
        "time": ev.time.ToJsonString(),
    }


class MqttBridge:
    def __init__(self, cfg: MqttConfig, hub: AlarmHub) -> None:
        try:
            import paho.mqtt.client as mqtt
        except ImportError:
            raise ConfigError("mqtt: the bridge needs paho-mqtt: pip install 'pvad[mqtt]'") from None
        self.cfg = cfg
        self.hub = hub
        self.delivered = 0
        self._connected = threading.Event()
        client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=cfg.client_id, clean_session=False)
        if cfg.username:
            password = None
            if cfg.password_file:
                try:
                    password = cfg.password_file.read_text().strip()
                except OSError as err:
                    raise ConfigError(f"mqtt.password_file: cannot read {cfg.password_file}: {err}") from None
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            client.tls_set(ca_certs=str(cfg.tls.ca), certfile=str(cfg.tls.cert) if cfg.tls.cert else None,
                           keyfile=str(cfg.tls.key) if cfg.tls.key else None)
        client.reconnect_delay_set(min_delay=1, max_delay=int(max(1, cfg.reconnect_max_s)))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        self.client = client
        self.active = False  # this server is the publisher now
        self._task: asyncio.Task | None = None

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            log.error("MQTT broker %s:%d refused the connection: %s (check mqtt.username / password_file)",
                      self.cfg.host, self.cfg.port, reason_code)
            return
        log.info("MQTT connected to %s:%d", self.cfg.host, self.cfg.port)
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self._connected.clear()
        log.warning("MQTT disconnected (%s); events wait in the log and are replayed", reason_code)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name="pvad-mqtt")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)

    def _publish(self, ev: pvad_pb2.AlarmEvent) -> bool:
        """Publish one event on its topics and wait for the broker's acknowledgements."""
        prefix, qos = self.cfg.topic_prefix, self.cfg.qos
        body = json.dumps(event_payload(ev))
        state = json.dumps({"alarm": ev.kind == pvad_pb2.ALARM_RAISED, "event_id": ev.event_id,
                            "score": round(ev.score, 4), "time": ev.time.ToJsonString()})
        infos = [
            self.client.publish(f"{prefix}/events", body, qos=qos),
            self.client.publish(f"{prefix}/{ev.camera_id}/alarm", body, qos=qos),
            self.client.publish(f"{prefix}/{ev.camera_id}/state", state, qos=qos, retain=True),
        ]
        for info in infos:
            try:
                info.wait_for_publish(timeout=10)
            except (RuntimeError, ValueError):
                return False
            if not info.is_published():
                return False
        return True

    async def _run(self) -> None:
        while True:
            lease = await self._lead()
            self.active = True
            self.client.connect_async(self.cfg.host, self.cfg.port, keepalive=30)
            self.client.loop_start()
            try:
                deliver = asyncio.get_running_loop().create_task(self._deliver(), name="pvad-mqtt-deliver")
                try:
                    while not deliver.done():
                        await asyncio.wait([deliver], timeout=LEASE_CHECK_S)
                        if not deliver.done() and not await asyncio.to_thread(lease.alive):
                            log.warning("MQTT bridge: lost the publisher lease (store connection gone); standing by")
                            break
                finally:
                    await cancel_and_wait(deliver)
            finally:
                self.active = False
                self._connected.clear()
                self.client.disconnect()
                self.client.loop_stop()
                await asyncio.to_thread(lease.release)

    async def _lead(self):
        """Until this server holds the store's publisher lease."""
        waiting = False
        while True:
            try:
                lease = await asyncio.to_thread(self.hub.log.try_lead, CURSOR)
            except StoreUnavailable as err:
                log.warning("MQTT bridge: cannot reach the store for the publisher lease (%s)", err)
                lease = None
            if lease is not None:
                if waiting:
                    log.info("MQTT bridge: this server publishes now")
                return lease
            if not waiting:
                log.info("MQTT bridge: another server publishes; standing by")
                waiting = True
            await asyncio.sleep(LEAD_RETRY_S)

    async def _deliver(self) -> None:
        while True:
            try:
                last = await asyncio.to_thread(self.hub.log.cursor, CURSOR)
                log.info("MQTT bridge: replaying events after id %d", last)
                async for ev in self.hub.subscribe(after_event_id=last):
                    while True:
                        while not self._connected.is_set():
                            await asyncio.sleep(0.2)
                        if await asyncio.to_thread(self._publish, ev):
                            break
                        await asyncio.sleep(1.0)  # not acknowledged: the connection dropped; publish again
                    last = ev.event_id
                    self.delivered += 1
                    await asyncio.to_thread(self.hub.log.set_cursor, CURSOR, last)  # after the broker's PUBACK
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("MQTT bridge error; retrying in 1 s")
                await asyncio.sleep(1.0)
