"""Helpers of the dashboard tests (tests/test_web_*.py): users, a server with the dashboard on, SSE reading."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import httpx
from conftest import server_config

from pvad.config import AccessConfig, WebConfig

PASSWORD = "correct horse battery"
# name -> role; alice is an operator limited to cam-1 by access.users
USERS = {"root": "admin", "olga": "operator", "vic": "viewer", "alice": "operator"}


def make_users(path: Path) -> Path:
    from analysis_server.web.auth import add_user

    for name, role in USERS.items():
        add_user(path, name, PASSWORD, role)
    return path


def web_config(pki, tmp_path: Path, users_file: Path, **overrides):
    web = WebConfig(enabled=True, listen="127.0.0.1:0", users_file=users_file,
                    session_secret_file=tmp_path / "web-secret", state_interval_s=0.25)
    base = dict(web=web, access=AccessConfig(users={"alice": ["cam-1"]}))
    base.update(overrides)
    return server_config(pki, tmp_path, **base)


async def login(client: httpx.AsyncClient, user: str, password: str = PASSWORD) -> httpx.Response:
    return await client.post("/api/login", json={"user": user, "password": password})


async def logged_in(base: str, user: str) -> httpx.AsyncClient:
    client = httpx.AsyncClient(base_url=base, timeout=10)
    r = await login(client, user)
    r.raise_for_status()
    return client


class SseReader:
    """Events of one /api/stream response: (event, id or None, data dict), as they come."""

    def __init__(self, client: httpx.AsyncClient, *, last_event_id: int | None = None, after: int | None = None):
        self.client, self.headers = client, {}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = str(last_event_id)
        self.params = {"after": after} if after is not None else {}
        self.events: list[tuple[str, int | None, dict]] = []
        self.ended = asyncio.Event()
        self._task: asyncio.Task | None = None
        self.opened = asyncio.Event()

    async def _run(self) -> None:
        try:
            async with self.client.stream("GET", "/api/stream", headers=self.headers, params=self.params) as r:
                r.raise_for_status()
                self.opened.set()
                event, eid, data = "message", None, []
                async for line in r.aiter_lines():
                    if line == "":
                        if data:
                            self.events.append((event, eid, json.loads("\n".join(data))))
                        event, eid, data = "message", None, []
                    elif line.startswith("event: "):
                        event = line[7:]
                    elif line.startswith("id: "):
                        eid = int(line[4:])
                    elif line.startswith("data: "):
                        data.append(line[6:])
        except (httpx.HTTPError, asyncio.CancelledError):
            pass
        finally:
            self.opened.set()
            self.ended.set()

    async def __aenter__(self) -> SseReader:
        self._task = asyncio.create_task(self._run())
        await asyncio.wait_for(self.opened.wait(), 10)
        return self

    async def __aexit__(self, *exc) -> None:
        self._task.cancel()
        await asyncio.gather(self._task, return_exceptions=True)

    def of(self, kind: str) -> list[dict]:
        return [d for e, _, d in self.events if e == kind]

    def alarm_ids(self) -> list[int]:
        return [i for e, i, _ in self.events if e == "alarm"]

    async def wait_for(self, pred, timeout: float = 5.0) -> None:
        deadline = asyncio.get_running_loop().time() + timeout
        while not pred(self):
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"timed out; events so far: {[(e, i) for e, i, _ in self.events][-20:]}")
            await asyncio.sleep(0.02)


class PatternAnalyzer:
    """The real tiny analyzer's decoders with a chosen, repeating σ sequence (alarms on demand)."""

    def __init__(self, real, pattern):
        self.real, self.pattern, self.i = real, list(pattern), {}
        self.decoders, self.times, self.untrained, self.executor = real.decoders, real.times, [], real.executor

    normality_cfg = None

    def new_camera_flow(self, *args):
        return self.real.new_camera_flow()

    def reconstruct(self, payloads):
        return self.real.reconstruct(payloads)

    def analyze_frames(self, items):
        from analysis_server.pipeline import FrameResult

        out = []
        for _, payload in items:  # each camera walks the pattern on its own
            i = self.i.get(payload.camera_id, 0)
            out.append(FrameResult(self.pattern[i % len(self.pattern)]))
            self.i[payload.camera_id] = i + 1
        return out


# σ 1.0 four times raises an alarm (x: -5, -3, -1, 1), 0.0 clears it at once and four of them bring x back
# to -7: two alarm events (frames 4 and 5) every 8 frames
ALARM_PATTERN = [1.0] * 4 + [0.0] * 4

