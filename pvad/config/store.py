"""Where the analysis server keeps its durable state: the ``postgres`` section (the SQLite file is ``event_log``)."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import Field, field_validator

from pvad.config.base import Section

# a password written into the conninfo (key=value) or the URI (scheme://user:secret@host)
_PASSWORD_IN_DSN = re.compile(r"(^|\s)password\s*=|^postgres(ql)?://[^/@]*:[^/@]*@|[?&]password=", re.IGNORECASE)


class PostgresConfig(Section):
    """A PostgreSQL database shared by every analysis server of a cluster: camera state (fenced), the alarm
    log (ids in commit order), normality models, cursors, acknowledgements and audit. Instead of ``event_log``."""

    dsn: str = Field(
        min_length=1,
        description="libpq conninfo or URI without the password, e.g. 'host=127.0.0.1 port=5432 dbname=pvad user=pvad'",
    )
    password_file: Path | None = Field(None, description="file holding the password (never the password itself)")
    pool_size: int = Field(4, ge=1, le=256, description="connections per server")
    connect_timeout_s: float = Field(
        5.0, gt=0.0, le=600.0,
        description="at start, how long the server tries to reach the database before it gives up; later, how long "
                    "one attempt may take (frames wait and are retried while the database is away)",
    )

    @field_validator("dsn")
    @classmethod
    def _no_password(cls, dsn: str) -> str:
        if _PASSWORD_IN_DSN.search(dsn.strip()):
            raise ValueError("the dsn holds a password: put it in a file named by postgres.password_file")
        return dsn


def default_server_id(listen: str | None) -> str:
    """This server's name in the shared store and the logs when ``server_id`` is not set: host name and listen port."""
    import socket

    port = (listen or "").rpartition(":")[2] or "0"
    return f"{socket.gethostname()}:{port}"
