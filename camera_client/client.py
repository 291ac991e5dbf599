"""Run one camera: capture -> anonymize on the device -> stream to the server over mutual TLS."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

from camera_client.anonymize import Anonymizer, create_anonymizer
from camera_client.capture import iter_frames
from camera_client.transport import AckCallback, StreamStats, stream_frames
from pvad.channel import secure_channel
from pvad.config import CameraConfig
from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)


@dataclass
class CameraReport:
    stream: StreamStats
    anonymizer: str
    untrained: bool
    anonymize_ms: float  # mean per frame, capture excluded
    wire_bytes: float  # mean payload bytes per frame


def first_seq() -> int:
    """Sequence numbers start at the wall clock in microseconds, so a restarted camera never reuses
    numbers the server has seen (the server treats seq <= last seen as a duplicate)."""
    return time.time_ns() // 1000


def make_frame(camera_id: str, seq: int, capture_time_ns: int, payload) -> pvad_pb2.Frame:
    frame = pvad_pb2.Frame(camera_id=camera_id, seq=seq)
    frame.capture_time.FromNanoseconds(capture_time_ns)
    if isinstance(payload, pvad_pb2.Latent):
        frame.latent.CopyFrom(payload)
    else:
        frame.image.CopyFrom(payload)
    return frame


async def anonymized_frames(cfg: CameraConfig, anonymizer: Anonymizer, totals: dict) -> AsyncIterator[pvad_pb2.Frame]:
    """Capture and anonymize in a worker thread, one frame at a time, while the stream sends."""
    source = iter_frames(cfg.capture)
    base = first_seq()
    sentinel = object()

    def produce():
        captured = next(source, sentinel)
        if captured is sentinel:
            return None
        t0 = time.perf_counter()
        payload = anonymizer(captured.bgr)
        totals["anonymize_s"] += time.perf_counter() - t0
        frame = make_frame(cfg.camera_id, base + captured.index, captured.capture_time_ns, payload)
        totals["bytes"] += frame.ByteSize()
        totals["frames"] += 1
        return frame

    while (frame := await asyncio.to_thread(produce)) is not None:
        yield frame


async def run_camera(cfg: CameraConfig, *, on_ack: AckCallback | None = None, anonymizer: Anonymizer | None = None) -> CameraReport:
    anonymizer = anonymizer or await asyncio.to_thread(create_anonymizer, cfg.anonymizer)
    totals = {"anonymize_s": 0.0, "bytes": 0, "frames": 0}
    log.info("camera %s: streaming %s through %s to %s", cfg.camera_id, cfg.capture.source, anonymizer.name, cfg.server)
    async with secure_channel(cfg.server, cfg.tls) as channel:
        stats = await stream_frames(
            channel, anonymized_frames(cfg, anonymizer, totals), max_in_flight=cfg.max_in_flight, on_ack=on_ack
        )
    n = max(totals["frames"], 1)
    log.info("camera %s: sent %d, acked %d, refused %d", cfg.camera_id, stats.sent, stats.acked, stats.rejected_total)
    return CameraReport(stats, anonymizer.name, anonymizer.untrained, 1000.0 * totals["anonymize_s"] / n, totals["bytes"] / n)
