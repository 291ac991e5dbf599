"""The camera's bounded buffer of frames captured but not yet acknowledged.

Frames stay here until the server acknowledges them (accepted, duplicate or refused), so a lost
connection resends exactly what was not acknowledged. When the buffer is full the policy decides:
`block` (capture waits: right for files), `drop-oldest` / `drop-newest` (right for live cameras;
every dropped frame is counted and reported).
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict

from pvad.v1 import pvad_pb2


class FrameBuffer:
    def __init__(self, capacity: int, policy: str) -> None:
        if policy not in ("block", "drop-oldest", "drop-newest"):
            raise ValueError(f"unknown buffer policy {policy!r}")
        self.capacity = capacity
        self.policy = policy
        self._frames: OrderedDict[int, pvad_pb2.Frame] = OrderedDict()
        self._changed = asyncio.Condition()
        self.closed = False  # no more frames will be put
        self.dropped = 0
        self.peak = 0

    def __len__(self) -> int:
        return len(self._frames)

    async def put(self, frame: pvad_pb2.Frame) -> None:
        async with self._changed:
            if len(self._frames) >= self.capacity:
                if self.policy == "block":
                    await self._changed.wait_for(lambda: len(self._frames) < self.capacity)
                elif self.policy == "drop-oldest":
                    self._frames.popitem(last=False)
                    self.dropped += 1
                else:
                    self.dropped += 1
                    return
            self._frames[frame.seq] = frame
            self.peak = max(self.peak, len(self._frames))
            self._changed.notify_all()

    async def close(self) -> None:
        async with self._changed:
            self.closed = True
            self._changed.notify_all()

    async def ack(self, seq: int) -> bool:
        """Forget an acknowledged frame; False if it was not (or no longer) here."""
        async with self._changed:
            found = self._frames.pop(seq, None) is not None
            self._changed.notify_all()
            return found

    async def next_after(self, seq: int) -> pvad_pb2.Frame | None:
        """The first buffered frame with a sequence number above `seq`; waits for one.
        None when the buffer is closed and holds nothing above `seq`."""
        async with self._changed:
            while True:
                for s, frame in self._frames.items():
                    if s > seq:
                        return frame
                if self.closed:
                    return None
                await self._changed.wait()

    @property
    def drained(self) -> bool:
        return self.closed and not self._frames
