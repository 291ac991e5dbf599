"""Alarm events: persisted in an SQLite event log (WAL) before they are published to subscribers.

A subscriber that passes the last event id it saw (`after_event_id`) first reads everything after
it from the log, then follows live events, so a reconnect misses nothing. Per-frame SCORE events
are live only (not persisted) and go through a bounded queue per subscriber: a subscriber too slow
to keep up loses score events (counted), never alarm events, which are re-read from the log.

The same file holds the dashboard's acknowledgements (`acks`, one per raised alarm) and its audit
trail (`audit`: logins, live views, acks). Both are append-only: SQLite triggers make an UPDATE or
DELETE on them fail.
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from pathlib import Path

from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    camera_id TEXT NOT NULL,
    kind INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    score REAL NOT NULL,
    confidence REAL NOT NULL,
    time_ns INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS events_camera ON events (camera_id, id);
CREATE TABLE IF NOT EXISTS cursors (
    name TEXT PRIMARY KEY,
    last_id INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS camera_state (
    camera_id TEXT PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    accumulator REAL NOT NULL,
    alarm INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS normality_models (
    camera_id TEXT PRIMARY KEY,
    model BLOB NOT NULL,
    fitted_ns INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS acks (
    event_id INTEGER PRIMARY KEY REFERENCES events (id),
    user TEXT NOT NULL,
    time_ns INTEGER NOT NULL,
    note TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS audit (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time_ns INTEGER NOT NULL,
    user TEXT NOT NULL,
    action TEXT NOT NULL,
    camera_id TEXT,
    event_id INTEGER,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE TRIGGER IF NOT EXISTS audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER IF NOT EXISTS audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'the audit table is append-only'); END;
CREATE TRIGGER IF NOT EXISTS acks_no_update BEFORE UPDATE ON acks
BEGIN SELECT RAISE(ABORT, 'acknowledgements are append-only'); END;
CREATE TRIGGER IF NOT EXISTS acks_no_delete BEFORE DELETE ON acks
BEGIN SELECT RAISE(ABORT, 'acknowledgements are append-only'); END;
"""

_EVENT_COLUMNS = "id, camera_id, kind, seq, score, confidence, time_ns"


@dataclass(frozen=True)
class SavedCamera:
    """What survives a server restart for one camera (the rule: sequence numbers, SAS accumulator
    and alarm state are restored; optical-flow state is not, so the first frame after a restart
    has zero flow)."""

    last_seq: int
    accumulator: float
    alarm: bool


@dataclass(frozen=True)
class Ack:
    """An operator's acknowledgement of a raised alarm."""

    event_id: int
    user: str
    time_ns: int
    note: str


@dataclass(frozen=True)
class AuditRow:
    id: int
    time_ns: int
    user: str
    action: str  # login, login-failed, logout, view, ack
    camera_id: str | None
    event_id: int | None
    detail: str


class UnknownEvent(LookupError):
    """No alarm event has this id."""


class NotAckable(ValueError):
    """Only a raised alarm can be acknowledged."""


class AlreadyAcked(ValueError):
    def __init__(self, ack: Ack) -> None:
        super().__init__(f"event {ack.event_id} was acknowledged by {ack.user} already")
        self.ack = ack


def _to_message(row: tuple) -> pvad_pb2.AlarmEvent:
    event_id, camera_id, kind, seq, score, confidence, time_ns = row
    ev = pvad_pb2.AlarmEvent(
        event_id=event_id, camera_id=camera_id, kind=kind, seq=seq, score=score, confidence=confidence
    )
    ev.time.FromNanoseconds(time_ns)
    return ev


class EventLog:
    """Append-only SQLite event log. Safe to call from several threads."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    def append(self, *, camera_id: str, kind: int, seq: int, score: float, confidence: float) -> pvad_pb2.AlarmEvent:
        row = (camera_id, int(kind), int(seq), float(score), float(confidence), time.time_ns())
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO events (camera_id, kind, seq, score, confidence, time_ns) VALUES (?,?,?,?,?,?)", row
            )
            return _to_message((cur.lastrowid, *row))

    def commit_frame(
        self, *, camera_id: str, seq: int, accumulator: float, alarm: bool,
        event_kind: int | None = None, score: float = 0.0, confidence: float = 0.0, normality_model: bytes | None = None,
    ) -> pvad_pb2.AlarmEvent | None:
        """Record that `seq` was scored, the alarm event it caused if any, and the camera's normality model
        when this frame completed its learning, in one transaction. Called before the frame is
        acknowledged: an acknowledged frame is never scored again."""
        now = time.time_ns()
        with self._lock:
            self._db.execute("BEGIN")
            try:
                self._db.execute(
                    "INSERT INTO camera_state (camera_id, last_seq, accumulator, alarm) VALUES (?,?,?,?) "
                    "ON CONFLICT(camera_id) DO UPDATE SET last_seq=excluded.last_seq, "
                    "accumulator=excluded.accumulator, alarm=excluded.alarm",
                    (camera_id, int(seq), float(accumulator), int(alarm)),
                )
                if normality_model is not None:
                    self._save_normality(camera_id, normality_model, now)
                event = None
                if event_kind is not None:
                    row = (camera_id, int(event_kind), int(seq), float(score), float(confidence), now)
                    cur = self._db.execute(
                        "INSERT INTO events (camera_id, kind, seq, score, confidence, time_ns) VALUES (?,?,?,?,?,?)", row
                    )
                    event = _to_message((cur.lastrowid, *row))
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return event

    def _save_normality(self, camera_id: str, model: bytes, now: int) -> None:
        self._db.execute(
            "INSERT INTO normality_models (camera_id, model, fitted_ns) VALUES (?,?,?) "
            "ON CONFLICT(camera_id) DO UPDATE SET model=excluded.model, fitted_ns=excluded.fitted_ns",
            (camera_id, sqlite3.Binary(model), now),
        )

    def save_normality(self, camera_id: str, model: bytes) -> None:
        with self._lock:
            self._save_normality(camera_id, model, time.time_ns())

    def load_normality(self, camera_id: str) -> bytes | None:
        """The camera's stored normality model (serialised), or None."""
        with self._lock:
            row = self._db.execute("SELECT model FROM normality_models WHERE camera_id = ?", (camera_id,)).fetchone()
        return bytes(row[0]) if row else None

    def delete_normality(self, camera_id: str) -> bool:
        with self._lock:
            return self._db.execute("DELETE FROM normality_models WHERE camera_id = ?", (camera_id,)).rowcount > 0

    def load_camera(self, camera_id: str) -> SavedCamera | None:
        with self._lock:
            row = self._db.execute(
                "SELECT last_seq, accumulator, alarm FROM camera_state WHERE camera_id = ?", (camera_id,)
            ).fetchone()
        return SavedCamera(int(row[0]), float(row[1]), bool(row[2])) if row else None

    def since(self, after_id: int, camera_ids: Iterable[str] = (), limit: int = 1000) -> list[pvad_pb2.AlarmEvent]:
        cams = list(camera_ids)
        sql = "SELECT id, camera_id, kind, seq, score, confidence, time_ns FROM events WHERE id > ?"
        args: list = [int(after_id)]
        if cams:
            sql += f" AND camera_id IN ({','.join('?' * len(cams))})"
            args += cams
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._lock:
            return [_to_message(r) for r in self._db.execute(sql, args).fetchall()]

    def event(self, event_id: int) -> pvad_pb2.AlarmEvent | None:
        with self._lock:
            row = self._db.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (int(event_id),)).fetchone()
        return _to_message(row) if row else None

    def recent(self, limit: int, camera_ids: Iterable[str] | None = None) -> list[pvad_pb2.AlarmEvent]:
        """The last `limit` alarm events (of `camera_ids`, or of every camera when None), oldest first."""
        sql, args = f"SELECT {_EVENT_COLUMNS} FROM events", []
        if camera_ids is not None:
            cams = list(camera_ids)
            sql += f" WHERE camera_id IN ({','.join('?' * len(cams))})"
            args += cams
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [_to_message(r) for r in reversed(rows)]

    def cameras(self) -> list[str]:
        """Every camera this log has state for (seen since the log began)."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT camera_id FROM camera_state ORDER BY camera_id")]

    def ack(self, event_id: int, *, user: str, note: str = "") -> tuple[Ack, pvad_pb2.AlarmEvent]:
        """Acknowledge raised alarm `event_id` and audit it, in one transaction. Raises `UnknownEvent`,
        `NotAckable` (not a raised alarm) or `AlreadyAcked`."""
        now = time.time_ns()
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(f"SELECT {_EVENT_COLUMNS} FROM events WHERE id = ?", (int(event_id),)).fetchone()
                if row is None:
                    raise UnknownEvent(f"no alarm event {event_id}")
                ev = _to_message(row)
                if ev.kind != pvad_pb2.ALARM_RAISED:
                    raise NotAckable(f"event {event_id} is {pvad_pb2.EventKind.Name(ev.kind)}; only a raised alarm is acknowledged")
                done = self._db.execute("SELECT event_id, user, time_ns, note FROM acks WHERE event_id = ?",
                                        (int(event_id),)).fetchone()
                if done is not None:
                    raise AlreadyAcked(Ack(*done))
                self._db.execute("INSERT INTO acks (event_id, user, time_ns, note) VALUES (?,?,?,?)",
                                 (int(event_id), user, now, note))
                self._audit(user, "ack", ev.camera_id, int(event_id), note, now)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        return Ack(int(event_id), user, now, note), ev

    def acks_for(self, event_ids: Iterable[int]) -> dict[int, Ack]:
        ids = [int(i) for i in event_ids]
        if not ids:
            return {}
        with self._lock:
            rows = self._db.execute(
                f"SELECT event_id, user, time_ns, note FROM acks WHERE event_id IN ({','.join('?' * len(ids))})", ids
            ).fetchall()
        return {r[0]: Ack(*r) for r in rows}

    def _audit(self, user: str, action: str, camera_id: str | None, event_id: int | None, detail: str, now: int) -> int:
        cur = self._db.execute(
            "INSERT INTO audit (time_ns, user, action, camera_id, event_id, detail) VALUES (?,?,?,?,?,?)",
            (now, user, action, camera_id, event_id, detail),
        )
        return int(cur.lastrowid)

    def audit(self, user: str, action: str, *, camera_id: str | None = None, event_id: int | None = None,
              detail: str = "") -> int:
        """Append one audit row; returns its id."""
        with self._lock:
            return self._audit(user, action, camera_id, event_id, detail, time.time_ns())

    def audit_rows(self, after_id: int = 0, limit: int = 1000) -> list[AuditRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT id, time_ns, user, action, camera_id, event_id, detail FROM audit WHERE id > ? ORDER BY id LIMIT ?",
                (int(after_id), int(limit)),
            ).fetchall()
        return [AuditRow(*r) for r in rows]

    def cursor(self, name: str) -> int:
        """Last event id a named consumer (e.g. the MQTT bridge) has delivered; 0 if none."""
        with self._lock:
            row = self._db.execute("SELECT last_id FROM cursors WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def set_cursor(self, name: str, last_id: int) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO cursors (name, last_id) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET last_id=excluded.last_id",
                (name, int(last_id)),
            )

    def last_id(self) -> int:
        with self._lock:
            (value,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(value)

    def close(self) -> None:
        with self._lock:
            self._db.close()


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

    def __init__(self, event_log: EventLog, *, queue_size: int = 256, dropped=None) -> None:
        self.log = event_log
        self.queue_size = queue_size
        self._dropped_counter = dropped  # a prometheus Counter, or None
        self._subs: set[_Subscriber] = set()
        self._last_id = event_log.last_id()
        self.published = 0

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
        for sub in list(self._subs):
            if sub.wants(ev.camera_id) and sub.queue.empty():
                sub.queue.put_nowait(None)  # a wake-up; the subscriber re-reads the log

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
                    rows = await asyncio.to_thread(self.log.since, last, sub.cameras)
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
