"""The dashboard's HTTP API and static pages (FastAPI), served by uvicorn as a task of the server's loop.

Routes (every ``/api`` route but login needs the session cookie):
``POST /api/login`` ``POST /api/logout`` ``GET /api/me`` ``GET /api/cameras`` ``GET /api/alarms``
``POST /api/alarms/{id}/ack`` (operator) ``GET /api/stream`` (SSE) ``GET /api/cameras/{id}/view.jpg``
(operator) ``GET /api/audit`` (admin) ``GET /healthz``; ``/`` and ``/static/`` are the front end.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import uvicorn
from fastapi import Depends, FastAPI, HTTPException, Request, Response
from fastapi.responses import FileResponse, JSONResponse, StreamingResponse
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from analysis_server.alarms import AlarmHub, AlreadyAcked, NotAckable, UnknownEvent
from analysis_server.metrics import ServerMetrics
from analysis_server.web.auth import (
    COOKIE,
    ROLES,
    Sessions,
    User,
    UserStore,
    load_secret,
)
from analysis_server.web.metrics import WebMetrics
from analysis_server.web.sse import (
    EventStreams,
    ack_json,
    alarm_json,
    parse_last_event_id,
)
from analysis_server.web.views import RawFrameRefused, ViewMaker
from pvad.aio import cancel_and_wait
from pvad.config import ServerConfig
from pvad.errors import PvadError

log = logging.getLogger(__name__)

STATIC = Path(__file__).resolve().parent / "static"
CSP = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' blob:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
_SECURITY_HEADERS = [(b"x-content-type-options", b"nosniff"), (b"referrer-policy", b"no-referrer"),
                     (b"x-frame-options", b"DENY")]


class Login(BaseModel):
    user: str = Field(max_length=64)
    password: str = Field(max_length=1024)


class AckBody(BaseModel):
    note: str = Field("", max_length=500)


@dataclass
class WebContext:
    cfg: ServerConfig
    hub: AlarmHub
    live: object  # analysis_server.web.live.LiveCameras
    views: ViewMaker
    streams: EventStreams
    users: UserStore
    sessions: Sessions
    metrics: WebMetrics
    viewed: dict[tuple[str, str], float] = field(default_factory=dict)  # (user, camera) -> last audited view

    def cameras_for(self, user: User) -> frozenset[str] | None:
        """The cameras `user` may see; None: every camera."""
        return None if user.role == "admin" else self.cfg.access.cameras_for_user(user.name)

    def may_see(self, user: User, camera_id: str) -> bool:
        allowed = self.cameras_for(user)
        return allowed is None or camera_id in allowed


class _Observe:
    """Pure ASGI middleware: request counts and times by route, and security headers on every response."""

    def __init__(self, app, metrics: WebMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        t0 = time.perf_counter()
        status = {"code": 500}

        async def sending(msg):
            if msg["type"] == "http.response.start":
                status["code"] = msg["status"]
                msg["headers"] = list(msg.get("headers", [])) + _SECURITY_HEADERS
            await send(msg)

        try:
            await self.app(scope, receive, sending)
        finally:
            route = getattr(scope.get("route"), "path", "other")
            self.metrics.requests.labels(route, str(status["code"])).inc()
            if route != "/api/stream":
                self.metrics.request_seconds.labels(route).observe(time.perf_counter() - t0)


def build_app(ctx: WebContext) -> FastAPI:
    app = FastAPI(title="pvad dashboard", docs_url=None, redoc_url=None, openapi_url=None)
    web = ctx.cfg.web

    def current_user(request: Request) -> User:
        user = ctx.sessions.check(request.cookies.get(COOKIE), ctx.users)
        if user is None:
            raise HTTPException(401, "log in first")
        return user

    def same_origin(request: Request) -> None:
        """A POST must come from the dashboard's own pages (SameSite=Strict already keeps the cookie away)."""
        origin = request.headers.get("origin")
        if origin and urlsplit(origin).netloc != request.headers.get("host"):
            raise HTTPException(403, "cross-origin request refused")

    def operator(user: User = Depends(current_user)) -> User:
        if not user.may("operator"):
            raise HTTPException(403, f"{user.name} is a {user.role}; this needs an operator")
        return user

    async def audit(user: str, action: str, **kw) -> None:
        await asyncio.to_thread(ctx.hub.log.audit, user, action, **kw)

    @app.get("/healthz")
    async def healthz() -> dict:
        return {"ok": True}

    @app.get("/favicon.ico")
    async def favicon() -> Response:
        return Response(status_code=204)

    @app.get("/")
    async def index() -> FileResponse:
        return FileResponse(STATIC / "index.html", headers={"Content-Security-Policy": CSP, "Cache-Control": "no-store"})

    @app.post("/api/login", dependencies=[Depends(same_origin)])
    async def login(body: Login, response: Response) -> dict:
        user = await asyncio.to_thread(ctx.users.verify, body.user, body.password)
        if user is None:
            ctx.metrics.logins.labels("refused").inc()
            await audit(body.user[:64], "login-failed")
            raise HTTPException(401, "unknown user or wrong password")
        ctx.metrics.logins.labels("ok").inc()
        await audit(user.name, "login", detail=user.role)
        response.set_cookie(COOKIE, ctx.sessions.issue(user), max_age=ctx.sessions.seconds, httponly=True,
                            samesite="strict", secure=web.tls is not None, path="/")
        return {"user": user.name, "role": user.role}

    @app.post("/api/logout", dependencies=[Depends(same_origin)])
    async def logout(response: Response, user: User = Depends(current_user)) -> dict:
        await audit(user.name, "logout")
        response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict", secure=web.tls is not None)
        return {"ok": True}

    @app.get("/api/me")
    async def me(user: User = Depends(current_user)) -> dict:
        allowed = ctx.cameras_for(user)
        return {"user": user.name, "role": user.role, "roles": list(ROLES),
                "cameras": sorted(allowed) if allowed is not None else None,
                "may_view": user.may("operator"), "may_ack": user.may("operator"),
                "view_interval_ms": web.view_interval_ms, "tau": ctx.cfg.scoring.tau}

    @app.get("/api/cameras")
    async def cameras(user: User = Depends(current_user)) -> dict:
        return {"cameras": ctx.live.describe(ctx.cameras_for(user))}

    @app.get("/api/alarms")
    async def alarms(limit: int = 100, user: User = Depends(current_user)) -> dict:
        allowed = ctx.cameras_for(user)

        def read():  # off the loop, in one thread hop
            last_id = ctx.hub.log.last_id()  # before reading: what comes after is on the stream (the page drops repeats)
            events = ctx.hub.log.recent(max(1, min(limit, 1000)), allowed)
            return last_id, events, ctx.hub.log.acks_for([e.event_id for e in events])

        last_id, events, acks = await asyncio.to_thread(read)
        return {"last_id": last_id, "alarms": [alarm_json(e, acks.get(e.event_id)) for e in events]}

    @app.post("/api/alarms/{event_id}/ack", dependencies=[Depends(same_origin)])
    async def ack(event_id: int, body: AckBody, user: User = Depends(operator)) -> dict:
        ev = await asyncio.to_thread(ctx.hub.log.event, event_id)
        if ev is None or not ctx.may_see(user, ev.camera_id):
            raise HTTPException(404, f"no alarm {event_id}")
        try:
            done, ev = await asyncio.to_thread(ctx.hub.log.ack, event_id, user=user.name, note=body.note)
        except UnknownEvent as err:
            raise HTTPException(404, str(err)) from None
        except NotAckable as err:
            raise HTTPException(400, str(err)) from None
        except AlreadyAcked as err:
            return JSONResponse({"detail": str(err), "ack": ack_json(err.ack)}, status_code=409)
        ctx.metrics.acks.inc()
        ctx.streams.broadcast_ack(done, ev.camera_id)
        return {"ack": ack_json(done), "camera": ev.camera_id}

    @app.get("/api/stream")
    async def stream(request: Request, after: int | None = None, user: User = Depends(current_user)):
        if ctx.streams.open >= web.max_streams:
            raise HTTPException(503, f"the dashboard has {web.max_streams} open streams already")
        start = parse_last_event_id(request.headers.get("last-event-id"))
        if start is None:
            start = after if after is not None else await asyncio.to_thread(ctx.hub.log.last_id)
        return StreamingResponse(ctx.streams.stream(cameras=ctx.cameras_for(user), after=start),
                                 media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store", "X-Accel-Buffering": "no"})

    @app.get("/api/cameras/{camera_id}/view.jpg")
    async def view(camera_id: str, user: User = Depends(current_user)) -> Response:
        if not user.may("operator"):
            ctx.metrics.views.labels("forbidden").inc()
            raise HTTPException(403, f"{user.name} is a {user.role}; live views are for operators")
        if not ctx.may_see(user, camera_id):
            ctx.metrics.views.labels("forbidden").inc()
            raise HTTPException(403, f"{user.name} may not see camera {camera_id}")
        cam = ctx.live.cameras.get(camera_id)
        payload = cam.payload if cam is not None else None
        try:
            if cam is not None and cam.anonymizer == "none":
                raise RawFrameRefused(f"camera {camera_id} sends raw frames (anonymizer none): no live view")
            if payload is None:
                ctx.metrics.views.labels("no-frame").inc()
                raise HTTPException(404, f"no frame of camera {camera_id} in memory")
            data = await ctx.views.jpeg(payload)
        except RawFrameRefused as err:
            ctx.metrics.views.labels("none-anonymizer").inc()
            raise HTTPException(403, str(err)) from None
        ctx.metrics.views.labels("served").inc()
        now = time.monotonic()
        key = (user.name, camera_id)
        if now - ctx.viewed.get(key, -1e18) >= web.audit_view_window_s:
            ctx.viewed[key] = now
            await audit(user.name, "view", camera_id=camera_id, detail=f"seq {payload.seq}")
        return Response(data, media_type="image/jpeg",
                        headers={"Cache-Control": "no-store", "Content-Disposition": "inline"})

    @app.get("/api/audit")
    async def audit_rows(after: int = 0, user: User = Depends(current_user)) -> dict:
        if not user.may("admin"):
            raise HTTPException(403, "the audit trail is for admins")
        rows = await asyncio.to_thread(ctx.hub.log.audit_rows, after)
        return {"rows": [r.__dict__ for r in rows]}

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    return app


class _Uvicorn(uvicorn.Server):
    @contextlib.contextmanager
    def capture_signals(self):
        yield  # the analysis server owns SIGINT/SIGTERM and stops this server itself


def _bind(listen: str) -> socket.socket:
    host, _, port = listen.rpartition(":")
    host = host.strip("[]") or "127.0.0.1"
    if host == "localhost":
        host = "127.0.0.1"
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, int(port)))
    except OSError as err:
        sock.close()
        raise PvadError(f"web.listen: could not bind {listen}: {err}") from None
    sock.set_inheritable(True)
    return sock


class WebServer:
    """The running dashboard: `start` returns once its port is bound and it serves; `stop` ends it."""

    def __init__(self, ctx: WebContext, server: _Uvicorn, task: asyncio.Task, port: int) -> None:
        self.ctx, self.server, self.task, self.port = ctx, server, task, port

    @property
    def url(self) -> str:
        host = self.ctx.cfg.web.listen.rpartition(":")[0].strip("[]") or "127.0.0.1"
        scheme = "https" if self.ctx.cfg.web.tls is not None else "http"
        return f"{scheme}://{host}:{self.port}/"

    @classmethod
    async def start(cls, cfg: ServerConfig, *, hub: AlarmHub, ingest, analyzer, metrics: ServerMetrics) -> WebServer:
        web = cfg.web
        users = UserStore(web.users_file)
        if not len(users):
            log.warning("web: %s holds no users; add one with `pvad users add NAME --role admin --file %s`",
                        web.users_file, web.users_file)
        wm = WebMetrics(metrics.registry)
        ctx = WebContext(cfg, hub, ingest.live, ViewMaker(analyzer), EventStreams(web, hub, ingest.live, wm), users,
                         Sessions(load_secret(web.session_secret_file), web.session_hours), wm)
        app = _Observe(build_app(ctx), wm)
        ssl = {"ssl_certfile": str(web.tls.cert), "ssl_keyfile": str(web.tls.key)} if web.tls is not None else {}
        config = uvicorn.Config(app, lifespan="off", log_config=None, access_log=False, server_header=False,
                                http="h11", ws="none", proxy_headers=False,
                                timeout_graceful_shutdown=web.shutdown_s, **ssl)
        server = _Uvicorn(config)
        sock = _bind(web.listen)
        port = sock.getsockname()[1]
        task = asyncio.get_running_loop().create_task(server.serve(sockets=[sock]), name="pvad-web")
        while not server.started:
            if task.done():
                sock.close()
                task.result()
                raise PvadError(f"web: the dashboard on {web.listen} did not start")
            await asyncio.sleep(0.01)
        self = cls(ctx, server, task, port)
        log.info("dashboard on %s", self.url)
        return self

    async def stop(self) -> None:
        """End every event stream, then the server (at most ``web.shutdown_s`` for requests in progress)."""
        self.ctx.streams.close()
        self.server.should_exit = True
        try:
            await asyncio.wait_for(asyncio.shield(self.task), self.ctx.cfg.web.shutdown_s + 2.0)
        except asyncio.TimeoutError:
            log.warning("web: the dashboard did not stop in time; cancelling it")
            self.server.force_exit = True
            await cancel_and_wait(self.task)
        except Exception:
            log.exception("web: the dashboard failed")
