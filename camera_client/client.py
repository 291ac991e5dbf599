"""Run one camera: capture -> anonymize on the device -> buffer -> stream to the server over mTLS.

Capture goes on while the server is unreachable: frames wait in the bounded buffer and are sent
(or resent) once a connection is back.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from camera_client.anonymize import Anonymizer, create_anonymizer
from camera_client.buffer import FrameBuffer
from camera_client.capture import is_live, iter_frames
from camera_client.transport import AckCallback, StreamStats, Uplink
from pvad.channel import secure_channel
from pvad.config import CameraConfig
from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)


@dataclass
class CameraReport:
    stream: StreamStats
    anonymizer: str
    untrained: bool
    captured: int
    dropped: int  # frames the full buffer dropped (never sent)
    buffer_peak: int
    anonymize_ms: float  # mean per frame, capture excluded
    wire_bytes: float  # mean payload bytes per frame
    anonymizer_stats: dict = field(default_factory=dict)  # e.g. a region anonymizer's fallback/error counters
    trailers: dict = field(default_factory=dict)  # the server's trailing metadata of the last stream

    @property
    def lost(self) -> int:
        """Frames captured that the server never acknowledged (dropped ones included)."""
        return self.captured - self.stream.acked


def first_seq() -> int:
    """Sequence numbers start at the wall clock in microseconds, so a restarted camera never reuses
    numbers the server has seen (the server treats seq <= last seen as a duplicate)."""
    return time.time_ns() // 1000


def make_frame(camera_id: str, seq: int, capture_time_ns: int, payload, *, discontinuity: bool = False) -> pvad_pb2.Frame:
    frame = pvad_pb2.Frame(camera_id=camera_id, seq=seq, discontinuity=discontinuity)
    frame.capture_time.FromNanoseconds(capture_time_ns)
    if isinstance(payload, pvad_pb2.Latent):
        frame.latent.CopyFrom(payload)
    else:
        frame.image.CopyFrom(payload)
    return frame


def _captured(cfg: CameraConfig, sources: list[str] | None):
    """(capture, first of its source) for the configured source, or for each of ``sources`` in turn."""
    for src in sources or [cfg.capture.source]:
        capture = cfg.capture if sources is None else cfg.capture.model_copy(update={"source": src})
        for captured in iter_frames(capture):
            yield captured, captured.index == 0


async def capture_into(cfg: CameraConfig, anonymizer: Anonymizer, buffer: FrameBuffer, totals: dict,
                       sources: list[str] | None = None) -> None:
    """Capture and anonymize in a worker thread, one frame at a time, into the buffer. The first
    frame of each source is marked as a discontinuity (the server restarts the camera's flow)."""
    source = _captured(cfg, sources)
    base = first_seq()
    sentinel = object()
    index = 0

    def produce():
        nonlocal index
        item = next(source, sentinel)
        if item is sentinel:
            return None
        captured, first = item
        t0 = time.perf_counter()
        payload = anonymizer(captured.bgr)
        totals["anonymize_s"] += time.perf_counter() - t0
        frame = make_frame(cfg.camera_id, base + index, captured.capture_time_ns, payload, discontinuity=first)
        index += 1
        totals["bytes"] += frame.ByteSize()
        totals["frames"] += 1
        return frame

    try:
        while (frame := await asyncio.to_thread(produce)) is not None:
            await buffer.put(frame)
    finally:
        await buffer.close()


def buffer_policy(cfg: CameraConfig) -> str:
    if cfg.buffer.policy != "auto":
        return cfg.buffer.policy
    return "drop-oldest" if is_live(cfg.capture.source) else "block"


async def run_camera(cfg: CameraConfig, *, on_ack: AckCallback | None = None, anonymizer: Anonymizer | None = None,
                     sources: list[str] | None = None, metadata: tuple[tuple[str, str], ...] = ()) -> CameraReport:
    """Stream ``cfg.capture.source`` (or each of ``sources`` in turn) to the server; ``metadata`` goes with
    every stream (``pvad learn`` marks its streams as learning footage this way)."""
    anonymizer = anonymizer or await asyncio.to_thread(create_anonymizer, cfg.anonymizer)
    totals = {"anonymize_s": 0.0, "bytes": 0, "frames": 0}
    buffer = FrameBuffer(cfg.buffer.capacity, buffer_policy(cfg))
    log.info("camera %s: streaming %s through %s to %s (buffer %d, %s)", cfg.camera_id, cfg.capture.source,
             anonymizer.name, cfg.server, buffer.capacity, buffer.policy)
    uplink = Uplink(lambda: secure_channel(cfg.server, cfg.tls), buffer, max_in_flight=cfg.max_in_flight,
                    reconnect=cfg.reconnect, on_ack=on_ack, metadata=metadata)
    capture = asyncio.create_task(capture_into(cfg, anonymizer, buffer, totals, sources))
    try:
        stats = await uplink.run()
        await capture  # re-raises a capture error
    finally:
        capture.cancel()
    n = max(totals["frames"], 1)
    report = CameraReport(
        stats, anonymizer.name, anonymizer.untrained, totals["frames"], buffer.dropped, buffer.peak,
        1000.0 * totals["anonymize_s"] / n, totals["bytes"] / n,
        anonymizer.stats() if callable(getattr(anonymizer, "stats", None)) else {}, uplink.trailers,
    )
    if report.anonymizer_stats:
        log.info("camera %s: anonymizer %s: %s", cfg.camera_id, anonymizer.name, report.anonymizer_stats)
    log.info("camera %s: captured %d, sent %d (%d resent), acked %d, refused %d, dropped %d, reconnects %d",
             cfg.camera_id, report.captured, stats.sent, stats.resent, stats.acked, stats.rejected_total,
             report.dropped, stats.reconnects)
    return report
