"""Alarm events: persisted in the store (`analysis_server.store`) before they are published to subscribers.

A subscriber that passes the last event id it saw (`after_event_id`) first reads everything after
it from the store, then follows live events, so a reconnect misses nothing. Per-frame SCORE events
are live only (not persisted) and go through a bounded queue per subscriber: a subscriber too slow
to keep up loses score events (counted), never alarm events, which are re-read from the store.

With a store that other servers write too (PostgreSQL), the hub also follows their events (`start`):
each committed alarm event wakes the subscribers that want its camera, which read it from the store
by id, so every server's subscribers see every camera's events, each once and in id order.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass

from analysis_server.store import (  # noqa: F401  (re-exported: the hub's callers name them from here)
    Ack,
    AlreadyAcked,
    EventLog,
    EventStore,
    NotAckable,
    StoreUnavailable,
    UnknownEvent,
)
from pvad.aio import cancel_and_wait
from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)


@dataclass(eq=False)  # identity hashing: each subscription is its own
class _Subscriber:
    cameras: frozenset[str]
    include_scores: bool
    queue: asyncio.Queue
    dropped_scores: int = 0

    def wants(self, camera_id: str) -> bool:
        return not self.cameras or camera_id in self.cameras


class AlarmHub:
    """Persist-then-publish fan-out of alarm events, plus live score events."""

    def __init__(self, event_log: EventStore, *, queue_size: int = 256, dropped=None) -> None:
        self.log = event_log
        self.queue_size = queue_size
        self._dropped_counter = dropped  # a prometheus Counter, or None
        self._subs: set[_Subscriber] = set()
        self._last_id = event_log.last_id()
        self.published = 0
        self.followed = 0  # events of other servers that woke this hub
        self._follower: asyncio.Task | None = None

    def start(self) -> None:
        """With a shared store, follow the events other servers commit (call from the running loop)."""
        if self.log.shared and self._follower is None:
            self._follower = asyncio.get_running_loop().create_task(self._follow(), name="pvad-alarm-follower")

    async def stop(self) -> None:
        await cancel_and_wait(self._follower)
        self._follower = None

    async def _follow(self) -> None:
        async for notice in self.log.notices():
            if notice is not None:
                self._wake(notice.event_id, notice.camera_id)
                continue
            try:  # (re)connected: events committed while nobody listened are in the store
                newest = await asyncio.to_thread(self.log.last_id)
            except StoreUnavailable:
                continue
            self._wake(newest, None)

    def _wake(self, event_id: int, camera_id: str | None) -> None:
        """An event some server committed: wake the subscribers that want it (they read it by id). Nothing
        for ids this hub knows already (its own, announced at commit), so no subscriber sees one twice."""
        if event_id <= self._last_id:
            return
        self._last_id = event_id
        self.followed += 1
        self._wake_subscribers(camera_id)

    def _wake_subscribers(self, camera_id: str | None) -> None:
        """Wake the subscribers that want `camera_id` (every one when None); each re-reads the store."""
        for sub in list(self._subs):
            if (camera_id is None or sub.wants(camera_id)) and sub.queue.empty():
                sub.queue.put_nowait(None)

    @property
    def subscribers(self) -> int:
        return len(self._subs)

    async def publish_alarm(self, *, camera_id: str, kind: int, seq: int, score: float, confidence: float) -> pvad_pb2.AlarmEvent:
        """Persist an alarm event, then publish it."""
        ev = await asyncio.to_thread(
            self.log.append, camera_id=camera_id, kind=kind, seq=seq, score=score, confidence=confidence
        )
        self.announce(ev)
        return ev

    def announce(self, ev: pvad_pb2.AlarmEvent) -> None:
        """Publish an event that is already in the log: wake the subscribers that want it."""
        self._last_id = max(self._last_id, ev.event_id)
        self.published += 1
        log.info("%s camera=%s seq=%d score=%.3f (event %d)", pvad_pb2.EventKind.Name(ev.kind), ev.camera_id, ev.seq,
                 ev.score, ev.event_id)
        self._wake_subscribers(ev.camera_id)

    def publish_score(self, *, camera_id: str, seq: int, score: float, confidence: float,
                      capture_time_ns: int = 0, phase: int = 0, normality_score: float = 0.0) -> None:
        ev = pvad_pb2.AlarmEvent(camera_id=camera_id, kind=pvad_pb2.SCORE, seq=seq, score=score, confidence=confidence,
                                 phase=phase, normality_score=normality_score)
        ev.time.GetCurrentTime()
        if capture_time_ns:
            ev.capture_time.FromNanoseconds(capture_time_ns)
        for sub in list(self._subs):
            if sub.include_scores and sub.wants(camera_id):
                try:
                    sub.queue.put_nowait(ev)
                except asyncio.QueueFull:
                    sub.dropped_scores += 1
                    if self._dropped_counter is not None:
                        self._dropped_counter.inc()

    async def subscribe(
        self, *, after_event_id: int, camera_ids: Iterable[str] = (), include_scores: bool = False
    ) -> AsyncIterator[pvad_pb2.AlarmEvent]:
        sub = _Subscriber(frozenset(camera_ids), include_scores, asyncio.Queue(self.queue_size))
        self._subs.add(sub)  # before the first read, so no event falls between read and wait
        last = int(after_event_id)
        try:
            while True:
                if self._last_id > last:
                    newest = self._last_id  # every id up to this one is in the log already
                    try:
                        rows = await asyncio.to_thread(self.log.since, last, sub.cameras)
                    except StoreUnavailable as err:  # the subscriber waits, the events stay in the store
                        log.warning("subscriber: cannot read the store (%s); trying again in 1 s", err)
                        await asyncio.sleep(1.0)
                        continue
                    for ev in rows:
                        last = ev.event_id
                        yield ev
                    if rows:
                        continue
                    last = newest  # nothing for this subscriber's cameras up to `newest`
                item = await sub.queue.get()
                if item is not None:
                    yield item
        finally:
            self._subs.discard(sub)
            if sub.dropped_scores:
                log.warning("subscriber dropped %d score events (too slow)", sub.dropped_scores)
