"""Frame capture with OpenCV: a video file, a device index or a network URL (RTSP/HTTP).

Frames are sampled to `target_fps` by their timestamps (a file's own frame rate, or the wall
clock for live sources) and resized to the pipeline's 320x240 (INTER_AREA).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pvad.config import FRAME_HEIGHT, FRAME_WIDTH, CaptureConfig
from pvad.errors import SourceError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CapturedFrame:
    index: int  # position among the frames this capture yielded, from 0
    capture_time_ns: int  # wall clock when the frame was read
    bgr: np.ndarray  # FRAME_HEIGHT x FRAME_WIDTH x 3 uint8, BGR (OpenCV's order)


def is_live(source: str) -> bool:
    return source.isdigit() or "://" in source


def open_source(source: str) -> cv2.VideoCapture:
    """Open a capture; raises SourceError with what was tried when it cannot be opened."""
    if source.isdigit():
        cap = cv2.VideoCapture(int(source))
    elif "://" in source:
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
    else:
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"capture.source: no such video file {source!r}")
        cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"capture.source: OpenCV could not open {source!r}")
    return cap


def iter_frames(cfg: CaptureConfig) -> Iterator[CapturedFrame]:
    """Yield sampled, resized frames until the source ends or `max_frames` is reached."""
    live = is_live(cfg.source)
    cap = open_source(cfg.source)
    src_fps = cap.get(cv2.CAP_PROP_FPS) or 0.0
    if not live and not 0 < src_fps < 1000:
        src_fps = 30.0
        log.warning("capture: %s reports no frame rate; assuming 30 fps", cfg.source)
    log.info("capture: %s (%s, %.1f fps) sampled to %.1f fps", cfg.source, "live" if live else "file", src_fps, cfg.target_fps)
    period = 1.0 / cfg.target_fps
    next_t, yielded, src_index = 0.0, 0, 0
    start = time.monotonic()
    try:
        while cfg.max_frames is None or yielded < cfg.max_frames:
            ok, frame = cap.read()
            if not ok:
                if not live and cfg.loop and src_index > 0:
                    cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
                    continue
                break
            t = (time.monotonic() - start) if live else src_index / src_fps
            src_index += 1
            if t + 1e-9 < next_t:
                continue
            next_t += period
            if next_t <= t:  # fell behind (slow source): resynchronise instead of bursting
                next_t = t + period
            if cfg.realtime and not live:
                delay = start + t - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
            if frame.shape[:2] != (FRAME_HEIGHT, FRAME_WIDTH):
                frame = cv2.resize(frame, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_AREA)
            yield CapturedFrame(yielded, time.time_ns(), frame)
            yielded += 1
    finally:
        cap.release()
