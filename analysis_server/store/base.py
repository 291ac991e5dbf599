"""What the server, the MQTT bridge and the dashboard ask of the durable store, whichever engine holds it.

Two implementations: `analysis_server.store.sqlite.EventLog` (one file, the single-server default) and
`analysis_server.store.postgres.PostgresStore` (shared by every server of a cluster). Both keep the
same rules:

- **The fence.** A frame's commit writes its camera's state only if the stored ``last_seq`` is lower
  than the frame's (``UPDATE camera_state ... WHERE camera_id = ? AND last_seq < ?``, an insert when the
  camera has no row). A frame that loses (a stale or hung server, a resend that another server
  committed first) raises `FenceLost`, and nothing of it is written: no state, no alarm event.
- **Alarm ids never become visible out of order.** A follower that reads ``id > last`` must never skip
  an id that commits later; inserts into the event table are serialised (one writer at a time holds
  the events lock until its transaction commits), so ids commit in id order.
- **Append-only** acknowledgements and audit rows (the engine refuses UPDATE and DELETE on them).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from pvad.v1 import pvad_pb2

EVENT_COLUMNS = "id, camera_id, kind, seq, score, confidence, time_ns"


@dataclass(frozen=True)
class SavedCamera:
    """What survives a server restart or a move to another server, for one camera (the rule: sequence
    numbers, SAS accumulator and alarm state are restored; optical-flow and background state are not,
    so the first frame after a restart or a move has zero flow)."""

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


@dataclass(frozen=True)
class EventNotice:
    """An alarm event committed by some server (a follower reads it from the store by id)."""

    event_id: int
    camera_id: str


class UnknownEvent(LookupError):
    """No alarm event has this id."""


class NotAckable(ValueError):
    """Only a raised alarm can be acknowledged."""


class AlreadyAcked(ValueError):
    def __init__(self, ack: Ack) -> None:
        super().__init__(f"event {ack.event_id} was acknowledged by {ack.user} already")
        self.ack = ack


class FenceLost(Exception):
    """A frame's commit lost the fence: the store holds this camera at ``stored_seq`` >= the frame's seq
    (another server committed it, or a later frame). Nothing of the frame was written."""

    def __init__(self, camera_id: str, seq: int, stored_seq: int) -> None:
        super().__init__(f"camera {camera_id} seq {seq}: the store is at seq {stored_seq} already")
        self.camera_id, self.seq, self.stored_seq = camera_id, seq, stored_seq


class StoreUnavailable(Exception):
    """The store cannot be reached now (a database that went away); the operation may be retried.
    Nothing of the failed operation is committed unless a retry says so (see `FenceLost`)."""


class Lease(Protocol):
    """Leadership of a named task among the servers sharing a store (e.g. the MQTT publisher)."""

    def alive(self) -> bool:
        """Still held (a lost database connection loses it)."""

    def release(self) -> None: ...


def to_message(row: tuple) -> pvad_pb2.AlarmEvent:
    event_id, camera_id, kind, seq, score, confidence, time_ns = row
    ev = pvad_pb2.AlarmEvent(
        event_id=event_id, camera_id=camera_id, kind=kind, seq=seq, score=score, confidence=confidence
    )
    ev.time.FromNanoseconds(time_ns)
    return ev


@runtime_checkable
class EventStore(Protocol):
    """The durable store. Methods block (call them from a thread, e.g. ``asyncio.to_thread``) and are
    safe to call from several threads. Errors of reach raise `StoreUnavailable`."""

    shared: bool  # other servers write the same store (followers need `notices`)
    description: str  # for logs: the file, or the database (never a password)

    def commit_frame(
        self, *, camera_id: str, seq: int, accumulator: float, alarm: bool,
        event_kind: int | None = None, score: float = 0.0, confidence: float = 0.0, normality_model: bytes | None = None,
    ) -> pvad_pb2.AlarmEvent | None:
        """In one transaction: the camera's state at ``seq`` (fenced: raises `FenceLost`), the alarm event it
        caused if any (returned, with its id), and its normality model when this frame completed learning."""

    def append(self, *, camera_id: str, kind: int, seq: int, score: float, confidence: float) -> pvad_pb2.AlarmEvent:
        """An alarm event outside a frame's commit (tests, tools)."""

    def since(self, after_id: int, camera_ids: Iterable[str] = (), limit: int = 1000) -> list[pvad_pb2.AlarmEvent]: ...

    def event(self, event_id: int) -> pvad_pb2.AlarmEvent | None: ...

    def recent(self, limit: int, camera_ids: Iterable[str] | None = None) -> list[pvad_pb2.AlarmEvent]: ...

    def last_id(self) -> int: ...

    def cameras(self) -> list[str]: ...

    def load_camera(self, camera_id: str) -> SavedCamera | None: ...

    def save_normality(self, camera_id: str, model: bytes) -> None: ...

    def load_normality(self, camera_id: str) -> bytes | None: ...

    def delete_normality(self, camera_id: str) -> bool: ...

    def ack(self, event_id: int, *, user: str, note: str = "") -> tuple[Ack, pvad_pb2.AlarmEvent]: ...

    def acks_for(self, event_ids: Iterable[int]) -> dict[int, Ack]: ...

    def audit(self, user: str, action: str, *, camera_id: str | None = None, event_id: int | None = None,
              detail: str = "") -> int: ...

    def audit_rows(self, after_id: int = 0, limit: int = 1000) -> list[AuditRow]: ...

    def cursor(self, name: str) -> int: ...

    def set_cursor(self, name: str, last_id: int) -> None: ...

    def try_lead(self, name: str) -> Lease | None:
        """Leadership of ``name`` if no other server holds it; None otherwise (try again later)."""

    def notices(self) -> AsyncIterator[EventNotice | None]:
        """For a shared store: every alarm event committed by any server, as it commits; None after each
        (re)connection (events may have been missed: read the store). Runs until cancelled."""

    def close(self) -> None: ...
