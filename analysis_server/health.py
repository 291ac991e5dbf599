"""Plain-HTTP readiness and liveness for load balancers (``health.listen``).

``GET /ready``: 200 ``ready`` while the server takes camera streams; 503 while it starts (networks
loading, warm-up) or drains (SIGTERM), so HAProxy (``option httpchk GET /ready``) sends no new
stream to it. ``GET /live``: 200 while the event loop answers (a SIGSTOPped or wedged process does
not, and a health check with a timeout marks it down). No TLS and no data: bind it to an address
only the load balancer reaches.

A small asyncio server of its own (HTTP/1.0 semantics, one request per connection) so the check
costs nothing when the dashboard (FastAPI) is off.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

log = logging.getLogger(__name__)

_MAX_REQUEST = 8192
_READ_TIMEOUT_S = 5.0
_REASONS = {200: "OK", 404: "Not Found", 405: "Method Not Allowed", 400: "Bad Request", 503: "Service Unavailable"}


class HealthEndpoint:
    """Answers ``/ready`` from ``ready()`` (a callable returning (ready, reason)) and ``/live``."""

    def __init__(self, ready: Callable[[], tuple[bool, str]]) -> None:
        self.ready = ready
        self._server: asyncio.base_events.Server | None = None
        self.port: int | None = None

    async def start(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        try:
            self._server = await asyncio.start_server(self._handle, host or "0.0.0.0", int(port))
        except (OSError, ValueError) as err:
            from pvad.errors import ConfigError

            raise ConfigError(f"health.listen: cannot serve on {listen!r}: {err}") from None
        self.port = self._server.sockets[0].getsockname()[1]
        log.info("readiness on http://%s:%d/ready (and /live)", host or "0.0.0.0", self.port)
        return self.port

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
            self._server = None

    def answer(self, method: str, path: str) -> tuple[int, str]:
        if method not in ("GET", "HEAD"):
            return 405, "GET or HEAD only"
        path = path.split("?", 1)[0]
        if path == "/live":
            return 200, "alive"
        if path == "/ready":
            ok, reason = self.ready()
            return (200, "ready") if ok else (503, reason)
        return 404, "try /ready or /live"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), _READ_TIMEOUT_S)
            parts = head[:_MAX_REQUEST].split(b"\r\n", 1)[0].decode("latin-1").split()
            status, body = self.answer(parts[0], parts[1]) if len(parts) >= 2 else (400, "bad request line")
            method = parts[0] if parts else ""
        except (asyncio.TimeoutError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError):
            writer.close()
            return
        data = body.encode() + b"\n"
        head_out = (f"HTTP/1.1 {status} {_REASONS.get(status, '')}\r\nContent-Type: text/plain\r\n"
                    f"Content-Length: {len(data)}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n").encode()
        try:
            writer.write(head_out if method == "HEAD" else head_out + data)
            await writer.drain()
        except ConnectionError:
            pass
        finally:
            writer.close()
