"""The operator dashboard (``web:`` in the server's file): an HTTP server in the analysis server's own loop.

Secrets never live here: the users file holds argon2 hashes (written by ``pvad users add``), the
session key is read from ``session_secret_file``. Which cameras a user sees comes from ``access.users``.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path

from pydantic import Field, model_validator

from pvad.config.base import Section

ROLES = ("viewer", "operator", "admin")  # dashboard roles: each may do what the ones before it may


class WebTLS(Section):
    cert: Path = Field(description="certificate (PEM) the dashboard serves HTTPS with")
    key: Path = Field(description="its private key (PEM)")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class WebConfig(Section):
    enabled: bool = Field(False, description="serve the operator dashboard")
    listen: str = Field("127.0.0.1:8080", description="host:port of the dashboard; port 0 picks a free one")
    tls: WebTLS | None = Field(None, description="HTTPS; required unless the dashboard listens on loopback only")
    users_file: Path = Field(Path("pvad-users.json"), description="local users and their argon2 hashes (pvad users add)")
    session_secret_file: Path = Field(
        Path("pvad-web-secret"),
        description="key that signs session cookies; made (32 random bytes, mode 0600) when it does not exist",
    )
    session_hours: float = Field(12.0, gt=0.0, le=24 * 30, description="a login lasts this long")
    view_interval_ms: int = Field(500, ge=100, le=10_000, description="how often an open live view fetches its image")
    audit_view_window_s: float = Field(
        60.0, ge=0.0, description="one audit row per user and camera live view within this many seconds"
    )
    max_streams: int = Field(64, ge=1, le=10_000, description="open event streams (browser tabs) at most")
    stream_queue: int = Field(512, ge=16, le=100_000, description="events buffered per tab (score events drop first)")
    state_interval_s: float = Field(1.0, gt=0.0, le=60.0, description="camera state pushed to each tab this often")
    shutdown_s: float = Field(1.0, ge=0.0, le=30.0, description="on stop, time for open streams to end")

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> WebConfig:
        host, sep, port = self.listen.rpartition(":")
        if not sep or not port.isdigit():
            raise ValueError(f"web.listen: {self.listen!r} is not host:port")
        if self.enabled and self.tls is None and not is_loopback(host):
            raise ValueError(f"web.tls: the dashboard listens on {host!r}, not loopback; give it a certificate "
                             "(web.tls.cert, web.tls.key) or listen on 127.0.0.1")
        return self
