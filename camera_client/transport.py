"""The camera's side of `Ingest.Stream`: send frames, match every ack to its sequence number.

At most `max_in_flight` frames are unacknowledged at a time (backpressure on capture).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from pvad.errors import status_name
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

log = logging.getLogger(__name__)


@dataclass
class StreamStats:
    sent: int = 0
    acked: int = 0
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    unmatched_acks: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


AckCallback = Callable[[pvad_pb2.FrameAck, float], None]


async def stream_frames(
    channel: grpc.aio.Channel,
    frames: AsyncIterator[pvad_pb2.Frame],
    *,
    max_in_flight: int,
    on_ack: AckCallback | None = None,
) -> StreamStats:
    """Stream `frames` and wait for all their acks. Returns what happened."""
    stub = pvad_pb2_grpc.IngestStub(channel)
    stats = StreamStats()
    pending: dict[int, float] = {}  # seq -> monotonic send time
    window = asyncio.Semaphore(max_in_flight)

    async def requests() -> AsyncIterator[pvad_pb2.Frame]:
        async for frame in frames:
            await window.acquire()
            pending[frame.seq] = time.monotonic()
            stats.sent += 1
            yield frame

    call = stub.Stream(requests())
    async for ack in call:
        sent_at = pending.pop(ack.seq, None)
        if sent_at is None:
            stats.unmatched_acks += 1
            log.warning("ack for unknown seq %d", ack.seq)
            continue
        window.release()
        latency = 1000.0 * (time.monotonic() - sent_at)
        stats.acked += 1
        if ack.outcome == pvad_pb2.ACCEPTED:
            stats.accepted += 1
            stats.latency_ms.append(latency)
            stats.scores.append(ack.score)
        elif ack.outcome == pvad_pb2.DUPLICATE:
            stats.duplicates += 1
        else:
            code = status_name(ack.status_code)
            stats.rejected[code] = stats.rejected.get(code, 0) + 1
            log.warning("frame %d refused: %s: %s", ack.seq, code, ack.message)
        if on_ack:
            on_ack(ack, latency)
    if pending:
        log.warning("%d frames were sent but never acknowledged", len(pending))
    return stats
