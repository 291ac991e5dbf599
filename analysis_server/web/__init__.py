"""The operator dashboard: an HTTP server (FastAPI on uvicorn) in the analysis server's own asyncio loop.

`live` (per-camera state and the last frame the server analysed, in memory) is fed by the gRPC
service and imports nothing web-related; `app` (routes), `auth` (users, sessions, roles), `sse`
(one event stream per browser tab) and `views` (live images) need the ``server`` extra's
fastapi, uvicorn and argon2-cffi, and are imported only when ``web.enabled`` is true.
"""
