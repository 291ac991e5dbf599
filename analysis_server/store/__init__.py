"""The analysis server's durable store: camera state (fenced), the alarm log, normality models, cursors,
acknowledgements and audit. SQLite for one server (`event_log`), PostgreSQL for a cluster (`postgres`)."""

from __future__ import annotations

from analysis_server.store.base import (
    Ack,
    AlreadyAcked,
    AuditRow,
    EventNotice,
    EventStore,
    FenceLost,
    Lease,
    NotAckable,
    SavedCamera,
    StoreUnavailable,
    UnknownEvent,
)
from analysis_server.store.sqlite import EventLog
from pvad.config import ServerConfig


def open_store(cfg: ServerConfig) -> EventStore:
    """The store `cfg` names: ``postgres`` when set, else the SQLite file of ``event_log``. Blocks while it
    connects (PostgreSQL: up to ``postgres.connect_timeout_s``, then a `ConfigError` naming ``postgres.dsn``)."""
    if cfg.postgres is not None:
        from analysis_server.store.postgres import (
            PostgresStore,  # psycopg only for a cluster
        )

        return PostgresStore(cfg.postgres, server_id=cfg.server_id)
    return EventLog(cfg.event_log.path)


__all__ = [
    "Ack", "AlreadyAcked", "AuditRow", "EventLog", "EventNotice", "EventStore", "FenceLost", "Lease", "NotAckable",
    "SavedCamera", "StoreUnavailable", "UnknownEvent", "open_store",
]
