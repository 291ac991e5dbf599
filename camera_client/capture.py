"""Frame capture with OpenCV: a video file, a folder of frame images, a device index or a network URL (RTSP/HTTP).

Frames are sampled to `target_fps` by their timestamps (a file's own frame rate, a folder's
`source_fps`, or the wall clock for live sources) and resized to the pipeline's 320x240 (INTER_AREA).
A folder's images are read in the order of the number in their names (``000.jpg``, ``001.jpg``, ...,
as benchmark datasets ship them); a gap in the numbering is refused.
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
from pvad.errors import ConfigError, SourceError
from pvad.frame_folders import frame_files

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class CapturedFrame:
    index: int  # position among the frames this capture yielded, from 0
    capture_time_ns: int  # wall clock when the frame was read
    bgr: np.ndarray  # FRAME_HEIGHT x FRAME_WIDTH x 3 uint8, BGR (OpenCV's order)


def is_live(source: str) -> bool:
    return source.isdigit() or "://" in source


class FolderCapture:
    """A folder of frame images behind the part of `cv2.VideoCapture` that `iter_frames` uses."""

    def __init__(self, folder: Path, fps: float) -> None:
        try:
            self.files = frame_files(folder)
        except ConfigError as err:
            raise SourceError(f"capture.source: {err}") from None
        self.fps, self.pos = fps, 0

    def isOpened(self) -> bool:  # noqa: N802 (OpenCV's name)
        return True

    def get(self, prop: int) -> float:
        return self.fps if prop == cv2.CAP_PROP_FPS else 0.0

    def set(self, prop: int, value: float) -> bool:
        if prop == cv2.CAP_PROP_POS_FRAMES:
            self.pos = int(value)
        return True

    def read(self) -> tuple[bool, np.ndarray | None]:
        while self.pos < len(self.files):
            path = self.files[self.pos]
            self.pos += 1
            frame = cv2.imread(str(path), cv2.IMREAD_COLOR)
            if frame is not None:
                return True, frame
            log.warning("capture: %s is not a readable image; skipped", path)
        return False, None

    def release(self) -> None:
        pass


def open_source(source: str, *, folder_fps: float = 30.0) -> cv2.VideoCapture | FolderCapture:
    """Open a capture; raises SourceError with what was tried when it cannot be opened."""
    if Path(source).is_dir():
        return FolderCapture(Path(source), folder_fps)
    if source.isdigit():
        cap = cv2.VideoCapture(int(source))
    elif "://" in source:
        cap = cv2.VideoCapture(source, cv2.CAP_FFMPEG)
    else:
        path = Path(source)
        if not path.is_file():
            raise SourceError(f"capture.source: no such video file or frame folder {source!r}")
        cap = cv2.VideoCapture(str(path))
    if not cap.isOpened():
        raise SourceError(f"capture.source: OpenCV could not open {source!r}")
    return cap


def iter_frames(cfg: CaptureConfig) -> Iterator[CapturedFrame]:
    """Yield sampled, resized frames until the source ends or `max_frames` is reached."""
    live = is_live(cfg.source)
    cap = open_source(cfg.source, folder_fps=cfg.source_fps or cfg.target_fps)
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
