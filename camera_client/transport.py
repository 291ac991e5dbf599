"""The camera's side of `Ingest.Stream`: send buffered frames, match every ack to its sequence
number, and reconnect with exponential backoff and jitter when the connection is lost.

On each (re)connection the stream starts with every frame still unacknowledged, in order, then
follows new frames. At most `max_in_flight` frames are sent ahead of their acks.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import grpc

from camera_client.buffer import FrameBuffer
from pvad.config import ReconnectConfig
from pvad.errors import PvadError, status_name
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

log = logging.getLogger(__name__)

# Worth a reconnect: the server or the network went away. Anything else (PERMISSION_DENIED,
# UNAUTHENTICATED, ...) will not get better by retrying.
RETRYABLE = {
    grpc.StatusCode.UNAVAILABLE,
    grpc.StatusCode.DEADLINE_EXCEEDED,
    grpc.StatusCode.CANCELLED,
    grpc.StatusCode.UNKNOWN,
    grpc.StatusCode.INTERNAL,
    grpc.StatusCode.RESOURCE_EXHAUSTED,
}


@dataclass
class StreamStats:
    sent: int = 0  # frames put on the wire, resends included
    resent: int = 0
    acked: int = 0  # distinct frames acknowledged
    accepted: int = 0
    duplicates: int = 0
    rejected: dict[str, int] = field(default_factory=dict)
    latency_ms: list[float] = field(default_factory=list)
    scores: list[float] = field(default_factory=list)
    unmatched_acks: int = 0
    connections: int = 0
    reconnects: int = 0

    @property
    def rejected_total(self) -> int:
        return sum(self.rejected.values())


AckCallback = Callable[[pvad_pb2.FrameAck, float], None]


class GaveUp(PvadError):
    """No connection to the server for longer than `reconnect.give_up_after_s`."""

    code = grpc.StatusCode.UNAVAILABLE


class Uplink:
    """Streams the frames of a `FrameBuffer` to the server until the buffer is drained."""

    def __init__(
        self,
        connect: Callable[[], grpc.aio.Channel],
        buffer: FrameBuffer,
        *,
        max_in_flight: int,
        reconnect: ReconnectConfig,
        on_ack: AckCallback | None = None,
        metadata: tuple[tuple[str, str], ...] = (),
    ) -> None:
        self.connect = connect
        self.metadata = metadata
        self.trailers: dict[str, str] = {}  # the last stream's trailing metadata
        self.buffer = buffer
        self.max_in_flight = max_in_flight
        self.reconnect = reconnect
        self.on_ack = on_ack
        self.stats = StreamStats()
        self._ever_sent: set[int] = set()

    async def _requests(self, in_flight: dict[int, float], window: asyncio.Semaphore) -> AsyncIterator[pvad_pb2.Frame]:
        last = -1
        while True:
            await window.acquire()
            frame = await self.buffer.next_after(last)
            if frame is None:
                return  # capture ended and everything was acknowledged or is in flight
            last = frame.seq
            in_flight[frame.seq] = time.monotonic()
            self.stats.sent += 1
            if frame.seq in self._ever_sent:
                self.stats.resent += 1
            else:
                self._ever_sent.add(frame.seq)
            yield frame

    async def _handle_ack(self, ack: pvad_pb2.FrameAck, in_flight: dict[int, float], window: asyncio.Semaphore) -> None:
        sent_at = in_flight.pop(ack.seq, None)
        if sent_at is None:
            self.stats.unmatched_acks += 1
            log.warning("ack for a frame not in flight: seq %d", ack.seq)
            return
        window.release()
        if not await self.buffer.ack(ack.seq):
            return
        self._ever_sent.discard(ack.seq)
        latency = 1000.0 * (time.monotonic() - sent_at)
        self.stats.acked += 1
        if ack.outcome == pvad_pb2.ACCEPTED:
            self.stats.accepted += 1
            self.stats.latency_ms.append(latency)
            self.stats.scores.append(ack.score)
        elif ack.outcome == pvad_pb2.DUPLICATE:
            self.stats.duplicates += 1
        else:
            code = status_name(ack.status_code)
            self.stats.rejected[code] = self.stats.rejected.get(code, 0) + 1
            log.warning("frame %d refused: %s: %s", ack.seq, code, ack.message)
        if self.on_ack:
            self.on_ack(ack, latency)

    async def _one_connection(self) -> int:
        """Stream until the buffer is drained or the connection breaks; returns frames acknowledged."""
        in_flight: dict[int, float] = {}
        window = asyncio.Semaphore(self.max_in_flight)
        acked_before = self.stats.acked
        async with self.connect() as channel:
            self.stats.connections += 1
            call = pvad_pb2_grpc.IngestStub(channel).Stream(self._requests(in_flight, window),
                                                            metadata=self.metadata or None)
            async for ack in call:
                await self._handle_ack(ack, in_flight, window)
            self.trailers = {k: v for k, v in (await call.trailing_metadata() or ())}
        return self.stats.acked - acked_before

    async def run(self) -> StreamStats:
        backoff = self.reconnect.initial_backoff_s
        down_since: float | None = None
        while not self.buffer.drained:
            try:
                await self._one_connection()
                down_since = None
                continue  # the stream ended cleanly; loop ends when the buffer is drained
            except grpc.aio.AioRpcError as err:
                if err.code() not in RETRYABLE:
                    raise
                reason = f"{err.code().name}: {err.details()}"
            now = time.monotonic()
            if self.stats.acked and down_since is None:
                backoff = self.reconnect.initial_backoff_s  # it worked before: start over
            down_since = down_since or now
            if self.reconnect.give_up_after_s and now - down_since > self.reconnect.give_up_after_s:
                raise GaveUp(f"no connection to the server for {now - down_since:.0f} s ({reason})")
            delay = backoff * random.uniform(0.5, 1.5)
            log.warning("connection lost (%s); %d frames unacknowledged; reconnecting in %.2f s", reason, len(self.buffer), delay)
            await asyncio.sleep(delay)
            backoff = min(backoff * 2, self.reconnect.max_backoff_s)
            self.stats.reconnects += 1
        return self.stats
