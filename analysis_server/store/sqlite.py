"""The single-server store: one SQLite file (WAL). See `analysis_server.store.base` for the rules it keeps.

One process writes it (a second server on the same file is a restart, not a cluster): alarm ids are
serialised by SQLite's single writer, there are no other servers to follow, and leadership is granted
at once.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from analysis_server.store.base import (
    EVENT_COLUMNS,
    Ack,
    AlreadyAcked,
    AuditRow,
    EventNotice,
    FenceLost,
    NotAckable,
    SavedCamera,
    UnknownEvent,
    to_message,
)
from pvad.v1 import pvad_pb2

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

# The fence: the camera's row moves only forward (an insert when it has none).
_FENCED_STATE = (
    "INSERT INTO camera_state (camera_id, last_seq, accumulator, alarm) VALUES (?,?,?,?) "
    "ON CONFLICT(camera_id) DO UPDATE SET last_seq=excluded.last_seq, accumulator=excluded.accumulator, "
    "alarm=excluded.alarm WHERE camera_state.last_seq < excluded.last_seq"
)
_INSERT_EVENT = "INSERT INTO events (camera_id, kind, seq, score, confidence, time_ns) VALUES (?,?,?,?,?,?)"


class _ProcessLease:
    """Leadership in a store only this process writes: always held."""

    def alive(self) -> bool:
        return True

    def release(self) -> None:
        pass


class EventLog:
    """The SQLite store (`analysis_server.store.base.EventStore`). Safe to call from several threads."""

    shared = False

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.description = f"SQLite {path}"
        if str(path) != ":memory:":
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(str(path), check_same_thread=False, isolation_level=None)
        self._lock = threading.Lock()
        with self._lock:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)

    @contextmanager
    def _transaction(self) -> Iterator[None]:
        """One write transaction under the lock (BEGIN IMMEDIATE: the write lock from its start), committed
        when the block ends and rolled back when it raises."""
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def append(self, *, camera_id: str, kind: int, seq: int, score: float, confidence: float) -> pvad_pb2.AlarmEvent:
        row = (camera_id, int(kind), int(seq), float(score), float(confidence), time.time_ns())
        with self._lock:
            cur = self._db.execute(_INSERT_EVENT, row)
            return to_message((cur.lastrowid, *row))

    def commit_frame(
        self, *, camera_id: str, seq: int, accumulator: float, alarm: bool,
        event_kind: int | None = None, score: float = 0.0, confidence: float = 0.0, normality_model: bytes | None = None,
    ) -> pvad_pb2.AlarmEvent | None:
        """Record that `seq` was scored, the alarm event it caused if any, and the camera's normality model
        when this frame completed its learning, in one transaction. Called before the frame is
        acknowledged: an acknowledged frame is never scored again. Raises `FenceLost` (nothing written)
        when the stored state is at `seq` or later."""
        now = time.time_ns()
        with self._transaction():
            cur = self._db.execute(_FENCED_STATE, (camera_id, int(seq), float(accumulator), int(alarm)))
            if cur.rowcount == 0:
                (stored,) = self._db.execute(
                    "SELECT last_seq FROM camera_state WHERE camera_id = ?", (camera_id,)).fetchone()
                raise FenceLost(camera_id, int(seq), int(stored))
            if normality_model is not None:
                self._save_normality(camera_id, normality_model, now)
            if event_kind is None:
                return None
            row = (camera_id, int(event_kind), int(seq), float(score), float(confidence), now)
            cur = self._db.execute(_INSERT_EVENT, row)
            return to_message((cur.lastrowid, *row))

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
        sql = f"SELECT {EVENT_COLUMNS} FROM events WHERE id > ?"
        args: list = [int(after_id)]
        if cams:
            sql += f" AND camera_id IN ({','.join('?' * len(cams))})"
            args += cams
        sql += " ORDER BY id LIMIT ?"
        args.append(limit)
        with self._lock:
            return [to_message(r) for r in self._db.execute(sql, args).fetchall()]

    def event(self, event_id: int) -> pvad_pb2.AlarmEvent | None:
        with self._lock:
            row = self._db.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?", (int(event_id),)).fetchone()
        return to_message(row) if row else None

    def recent(self, limit: int, camera_ids: Iterable[str] | None = None) -> list[pvad_pb2.AlarmEvent]:
        """The last `limit` alarm events (of `camera_ids`, or of every camera when None), oldest first."""
        sql, args = f"SELECT {EVENT_COLUMNS} FROM events", []
        if camera_ids is not None:
            cams = list(camera_ids)
            sql += f" WHERE camera_id IN ({','.join('?' * len(cams))})"
            args += cams
        sql += " ORDER BY id DESC LIMIT ?"
        args.append(int(limit))
        with self._lock:
            rows = self._db.execute(sql, args).fetchall()
        return [to_message(r) for r in reversed(rows)]

    def cameras(self) -> list[str]:
        """Every camera this log has state for (seen since the log began)."""
        with self._lock:
            return [r[0] for r in self._db.execute("SELECT camera_id FROM camera_state ORDER BY camera_id")]

    def ack(self, event_id: int, *, user: str, note: str = "") -> tuple[Ack, pvad_pb2.AlarmEvent]:
        """Acknowledge raised alarm `event_id` and audit it, in one transaction. Raises `UnknownEvent`,
        `NotAckable` (not a raised alarm) or `AlreadyAcked`."""
        now = time.time_ns()
        with self._transaction():
            row = self._db.execute(f"SELECT {EVENT_COLUMNS} FROM events WHERE id = ?", (int(event_id),)).fetchone()
            if row is None:
                raise UnknownEvent(f"no alarm event {event_id}")
            ev = to_message(row)
            if ev.kind != pvad_pb2.ALARM_RAISED:
                raise NotAckable(f"event {event_id} is {pvad_pb2.EventKind.Name(ev.kind)}; only a raised alarm is acknowledged")
            done = self._db.execute("SELECT event_id, user, time_ns, note FROM acks WHERE event_id = ?",
                                    (int(event_id),)).fetchone()
            if done is not None:
                raise AlreadyAcked(Ack(*done))
            self._db.execute("INSERT INTO acks (event_id, user, time_ns, note) VALUES (?,?,?,?)",
                             (int(event_id), user, now, note))
            self._audit(user, "ack", ev.camera_id, int(event_id), note, now)
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
        """Moves forward only."""
        with self._lock:
            self._db.execute(
                "INSERT INTO cursors (name, last_id) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET last_id=excluded.last_id "
                "WHERE cursors.last_id < excluded.last_id",
                (name, int(last_id)),
            )

    def last_id(self) -> int:
        with self._lock:
            (value,) = self._db.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()
        return int(value)

    def try_lead(self, name: str) -> _ProcessLease:
        return _ProcessLease()

    async def notices(self) -> AsyncIterator[EventNotice | None]:
        """Nothing to follow: this process is the only writer (its own events are announced directly)."""
        return
        yield  # an async generator that ends at once

    def close(self) -> None:
        with self._lock:
            self._db.close()
