"""`pvad learn`: teach the server a camera's normal activity from recorded footage of that camera.

The footage goes through exactly the live path: the camera's capture settings and anonymizer, the
wire, the server's decoding, flow and features. The stream carries ``pvad-learn: <session>``
metadata, so the server learns from its frames instead of scoring them (no alarm, no SAS change)
and fits the camera's model when the stream ends cleanly; a reconnect in between keeps what was
already sent. The server answers with the fitted model's summary in the ``pvad-normality`` trailer.
``reset`` sends ``pvad-relearn``: the server drops the camera's model, and the camera learns again
from its next live frames.
"""

from __future__ import annotations

import json
import logging
import uuid
from pathlib import Path

import grpc

from camera_client.client import run_camera
from pvad.channel import secure_channel
from pvad.config import CameraConfig
from pvad.errors import LearningRefused, SourceError
from pvad.frame_folders import IMAGE_EXTS
from pvad.v1 import pvad_pb2_grpc

log = logging.getLogger(__name__)

VIDEO_EXTS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".mpg", ".mpeg", ".m4v", ".gif"})


def expand_sources(paths: list[str]) -> list[str]:
    """Each path as capture sources: a video file or a folder of frame images stays one source; a
    folder of videos or of frame folders (a dataset's training/frames/) becomes one source each."""
    out: list[str] = []
    for raw in paths:
        path = Path(raw)
        if path.is_file():
            out.append(raw)
            continue
        if not path.is_dir():
            raise SourceError(f"--source {raw}: no such file or folder")
        if any(p.suffix.lower() in IMAGE_EXTS for p in path.iterdir()):
            out.append(raw)
            continue
        inner = sorted(p for p in path.iterdir()
                       if p.suffix.lower() in VIDEO_EXTS or (p.is_dir() and any(q.suffix.lower() in IMAGE_EXTS for q in p.iterdir())))
        if not inner:
            raise SourceError(f"--source {raw}: no video files, frame images or frame folders in it")
        out += [str(p) for p in inner]
    return out


def learning_config(cfg: CameraConfig) -> CameraConfig:
    """The camera's config for recorded footage: every frame at the camera's rate, nothing dropped."""
    capture = cfg.capture.model_copy(update={"realtime": False, "loop": False, "max_frames": None})
    return cfg.model_copy(update={"capture": capture, "buffer": cfg.buffer.model_copy(update={"policy": "block"})})


async def learn(cfg: CameraConfig, sources: list[str]) -> dict:
    """Stream ``sources`` as the camera's normal footage; the server's summary of the fitted model."""
    sources = expand_sources(sources)
    session = uuid.uuid4().hex
    log.info("camera %s: learning from %d source(s) (session %s)", cfg.camera_id, len(sources), session)
    try:
        report = await run_camera(learning_config(cfg), sources=sources, metadata=(("pvad-learn", session),))
    except grpc.aio.AioRpcError as err:
        raise LearningRefused(f"server {cfg.server} refused: {err.code().name}: {err.details()}") from None
    summary = json.loads(report.trailers.get("pvad-normality", "{}") or "{}")
    return {"camera_id": cfg.camera_id, "sources": len(sources), "frames_sent": report.captured,
            "frames_acked": report.stream.acked, "model": summary}


async def reset(cfg: CameraConfig) -> None:
    """Ask the server to drop the camera's normality model; it learns again from the live stream."""

    async def nothing():
        return
        yield  # an async generator that sends no frame

    async with secure_channel(cfg.server, cfg.tls) as channel:
        call = pvad_pb2_grpc.IngestStub(channel).Stream(nothing(), metadata=(("pvad-relearn", "1"),))
        try:
            async for _ in call:
                pass
        except grpc.aio.AioRpcError as err:
            raise LearningRefused(f"server {cfg.server} refused the reset: {err.code().name}: {err.details()}") from None
