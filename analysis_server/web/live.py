"""What the dashboard shows of each camera, kept in memory by the gRPC service as frames come and go.

Per camera: arrival times (fps, age of the last frame, offline after twice the frame interval + 1 s),
frames scored, sequence numbers skipped (frames the camera's buffer dropped), frames refused, the
normality phase, the last score, and the payload of the last scored frame (a latent or an anonymized
image, never written anywhere) from which a live view is made on request.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from analysis_server.validate import Payload

MAX_GAP = 10_000  # a larger jump in seq is a camera restart (seq starts at the wall clock), not drops
_INTERVALS = 16


@dataclass
class LiveCamera:
    camera_id: str
    arrivals: deque = field(default_factory=lambda: deque(maxlen=_INTERVALS + 1))  # monotonic seconds
    last_seq: int | None = None
    frames: int = 0  # scored since this server started
    skipped: int = 0
    refused: int = 0
    phase: str | None = None  # learning, scoring (None: no normality model)
    score: float = 0.0
    sigma: float = 0.0
    alarm: bool = False
    anonymizer: str = ""
    payload: Payload | None = None  # the last scored frame's payload (never a raw one: anonymizer none)

    def interval(self) -> float | None:
        """Median time between the recent frames; None before two frames."""
        t = list(self.arrivals)
        if len(t) < 2:
            return None
        gaps = sorted(b - a for a, b in zip(t, t[1:]))
        return gaps[len(gaps) // 2]

    def offline_after(self) -> float:
        """Seconds without a frame after which the camera is offline: twice its frame interval + 1 s."""
        iv = self.interval()
        return 2.0 * (iv if iv is not None else 1.0) + 1.0

    def describe(self, now: float) -> dict:
        age = now - self.arrivals[-1] if self.arrivals else None
        limit = self.offline_after()
        offline = age is None or age > limit
        recent = [t for t in self.arrivals if now - t <= 3.0]
        fps = 0.0
        if not offline and len(recent) >= 2 and recent[-1] > recent[0]:
            fps = (len(recent) - 1) / (recent[-1] - recent[0])
        return {
            "camera": self.camera_id,
            "state": "offline" if offline else ("learning" if self.phase == "learning" else "scoring"),
            "fps": round(fps, 2),
            "frames": self.frames,
            "drops": self.skipped,
            "refused": self.refused,
            "age_s": round(age, 2) if age is not None else None,
            "offline_after_s": round(limit, 2),
            "anonymizer": self.anonymizer,
            "score": self.score,
            "sigma": self.sigma,
            "alarm": self.alarm,
        }


class LiveCameras:
    """Every camera the server heard from since it started (plus `known` ones, shown offline)."""

    def __init__(self, clock=time.monotonic) -> None:
        self.cameras: dict[str, LiveCamera] = {}
        self.clock = clock

    def _get(self, camera_id: str) -> LiveCamera:
        cam = self.cameras.get(camera_id)
        if cam is None:
            cam = self.cameras[camera_id] = LiveCamera(camera_id)
        return cam

    def know(self, camera_ids) -> None:
        for c in camera_ids:
            self._get(c)

    def received(self, payload: Payload) -> None:
        """A valid frame arrived (before analysis)."""
        cam = self._get(payload.camera_id)
        cam.arrivals.append(self.clock())
        if cam.last_seq is not None and not payload.discontinuity and 0 < payload.seq - cam.last_seq <= MAX_GAP:
            cam.skipped += payload.seq - cam.last_seq - 1
        cam.last_seq = max(payload.seq, cam.last_seq or payload.seq)
        cam.anonymizer = "dp-encoder" if payload.latent is not None else payload.anonymizer

    def refused(self, camera_id: str) -> None:
        self._get(camera_id).refused += 1

    def scored(self, payload: Payload, *, phase: str | None, score: float, sigma: float, alarm: bool) -> None:
        """A frame was scored and committed."""
        cam = self._get(payload.camera_id)
        cam.frames += 1
        cam.phase, cam.score, cam.sigma, cam.alarm = phase, float(score), float(sigma), bool(alarm)
        raw = payload.latent is None and payload.anonymizer == "none"
        cam.payload = None if raw else payload  # a raw frame is never kept for a live view

    def describe(self, camera_ids=None) -> list[dict]:
        """State of every camera (None), or of `camera_ids` (those never heard from: offline)."""
        now = self.clock()
        ids = sorted(self.cameras) if camera_ids is None else sorted(camera_ids)
        return [(self.cameras.get(c) or LiveCamera(c)).describe(now) for c in ids]
