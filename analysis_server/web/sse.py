"""Server-Sent Events: one stream per browser tab.

Alarm events carry ``id: <event_id>``, so the browser's automatic reconnect sends ``Last-Event-ID`` and
the stream resumes from the event log with no gap (`AlarmHub.subscribe`); score, acknowledgement and
camera-state events carry no id (the browser keeps the last alarm's). A tab sees only the cameras its
user may see. On shutdown every stream ends at once (the browser reconnects to whoever serves next).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from analysis_server.alarms import Ack, AlarmHub
from analysis_server.web.live import LiveCameras
from analysis_server.web.metrics import WebMetrics
from pvad.aio import cancel_and_wait
from pvad.config import WebConfig
from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)

_KINDS = {pvad_pb2.ALARM_RAISED: "raised", pvad_pb2.ALARM_CLEARED: "cleared"}
_PHASES = {pvad_pb2.LEARNING: "learning", pvad_pb2.SCORING: "scoring"}
_CLOSE = object()
_TICK = object()


def message(event: str, data: dict, event_id: int | None = None) -> bytes:
    head = f"id: {event_id}\n" if event_id is not None else ""
    return f"{head}event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def ack_json(ack: Ack | None) -> dict | None:
    if ack is None:
        return None
    return {"event_id": ack.event_id, "user": ack.user, "t": ack.time_ns // 1_000_000, "note": ack.note}


def alarm_json(ev: pvad_pb2.AlarmEvent, ack: Ack | None = None) -> dict:
    return {"id": ev.event_id, "camera": ev.camera_id, "kind": _KINDS.get(ev.kind, "other"), "seq": ev.seq,
            "score": round(ev.score, 4), "sigma": round(ev.confidence, 4), "t": ev.time.ToMilliseconds(),
            "ack": ack_json(ack)}


def parse_last_event_id(value: str | None) -> int | None:
    try:
        return max(0, int(value)) if value not in (None, "") else None
    except ValueError:
        return None


@dataclass(eq=False)
class _Tab:
    cameras: frozenset[str] | None  # None: every camera
    queue: asyncio.Queue

    def wants(self, camera_id: str) -> bool:
        return self.cameras is None or camera_id in self.cameras


class EventStreams:
    def __init__(self, cfg: WebConfig, hub: AlarmHub, live: LiveCameras, metrics: WebMetrics) -> None:
        self.cfg = cfg
        self.hub = hub
        self.live = live
        self.metrics = metrics
        self.tabs: set[_Tab] = set()
        self.closing = False

    @property
    def open(self) -> int:
        return len(self.tabs)

    def broadcast_ack(self, ack: Ack, camera_id: str) -> None:
        """An acknowledgement to every open tab that may see the camera."""
        item = ("ack", {**ack_json(ack), "camera": camera_id})
        for tab in list(self.tabs):
            if tab.wants(camera_id):
                try:
                    tab.queue.put_nowait(item)
                except asyncio.QueueFull:  # that tab is stuck; it refetches the alarm list when it reconnects
                    log.warning("a dashboard tab's queue is full: an ack did not reach it")

    def close(self) -> None:
        """End every open stream now."""
        self.closing = True
        for tab in list(self.tabs):
            while True:
                try:
                    tab.queue.put_nowait(_CLOSE)
                    break
                except asyncio.QueueFull:
                    tab.queue.get_nowait()

    async def _pump(self, tab: _Tab, after: int) -> None:
        """Alarm events (from the log after `after`, then live) and live scores of the tab's cameras."""
        async for ev in self.hub.subscribe(after_event_id=after, camera_ids=tab.cameras or (), include_scores=True):
            if ev.kind == pvad_pb2.SCORE:
                try:
                    tab.queue.put_nowait(ev)
                except asyncio.QueueFull:
                    self.metrics.events_dropped.inc()
            else:
                await tab.queue.put(ev)  # never dropped: the tab waits

    def _state(self, tab: _Tab) -> bytes:
        self.metrics.events_sent.labels("state").inc()
        return message("state", {"t": time.time_ns() // 1_000_000, "cameras": self.live.describe(tab.cameras)})

    async def _format(self, item) -> bytes:
        if isinstance(item, tuple):
            self.metrics.events_sent.labels(item[0]).inc()
            return message(item[0], item[1])
        ev: pvad_pb2.AlarmEvent = item
        if ev.kind == pvad_pb2.SCORE:
            self.metrics.events_sent.labels("score").inc()
            cam = self.live.cameras.get(ev.camera_id)
            # age_ms: since the camera's last frame reached the server (the page's offline clock starts there)
            age = self.live.clock() - cam.arrivals[-1] if cam is not None and cam.arrivals else None
            return message("score", {
                "camera": ev.camera_id, "seq": ev.seq, "score": round(ev.score, 4), "sigma": round(ev.confidence, 4),
                "normality": round(ev.normality_score, 4), "phase": _PHASES.get(ev.phase),
                "t": ev.time.ToMilliseconds(), "frames": cam.frames if cam is not None else None,
                "age_ms": round(1000 * age) if age is not None else None,
            })
        acks = await asyncio.to_thread(self.hub.log.acks_for, [ev.event_id])
        self.metrics.events_sent.labels("alarm").inc()
        return message("alarm", alarm_json(ev, acks.get(ev.event_id)), ev.event_id)

    async def stream(self, *, cameras: frozenset[str] | None, after: int) -> AsyncIterator[bytes]:
        """The tab's events: every alarm after event `after`, then live alarms, scores, acks, and the
        cameras' state every ``state_interval_s``. A user with no camera gets state events only."""
        tab = _Tab(cameras, asyncio.Queue(self.cfg.stream_queue))
        self.tabs.add(tab)
        self.metrics.streams.inc()
        loop = asyncio.get_running_loop()
        pump = loop.create_task(self._pump(tab, after), name="pvad-web-pump") if cameras is None or cameras else None
        interval = self.cfg.state_interval_s
        try:
            yield b"retry: 1000\n\n" + self._state(tab)
            next_state = loop.time() + interval
            while not self.closing:
                try:
                    item = await asyncio.wait_for(tab.queue.get(), max(0.0, next_state - loop.time()))
                except asyncio.TimeoutError:
                    item = _TICK
                if item is _CLOSE:
                    break
                out = b"" if item is _TICK else await self._format(item)
                if loop.time() >= next_state:
                    out += self._state(tab)
                    next_state = loop.time() + interval
                if out:
                    yield out
                if pump is not None and pump.done() and not pump.cancelled() and pump.exception() is not None:
                    raise pump.exception()
        finally:
            self.tabs.discard(tab)
            self.metrics.streams.dec()
            await cancel_and_wait(pump)
