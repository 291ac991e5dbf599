"""Frame datasets for autoencoder training (G §4.1.2, §4.2): sources, splits, frames.

* A **source** is one video file (.mp4 .avi .mov .mkv .gif) or one image file (.jpg .jpeg .png
  .bmp), optionally restricted to a contiguous range of the video's frames (``start``/``end``,
  fractions of its length).
* ``split_sources`` splits **by source** (no frame of a validation or test video is seen in
  training) or, with ``split_by="time"``, cuts every video into contiguous 70/15/15 time ranges.
* ``load_frames`` decodes with OpenCV and returns ``N×240×320×3`` uint8 **RGB**, each frame
  resized with ``INTER_AREA`` (aspect ratio not kept, like the camera client does).
* ``FrameDataset`` yields float tensors ``3×240×320`` in [0, 1], the autoencoder's input.
"""

from __future__ import annotations

import hashlib
import logging
import math
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from pvad.config import FRAME_HEIGHT, FRAME_WIDTH
from pvad.errors import ConfigError

logger = logging.getLogger(__name__)

VIDEO_EXTS = frozenset({".mp4", ".avi", ".mov", ".mkv", ".gif"})
IMAGE_EXTS = frozenset({".jpg", ".jpeg", ".png", ".bmp"})
DEFAULT_FRACTIONS: tuple[float, float, float] = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class Source:
    """One video or image file; for a video, the frames in ``[start, end)`` of its length."""

    path: Path
    kind: Literal["video", "image"]
    start: float = 0.0
    end: float = 1.0

    @property
    def label(self) -> str:
        """File name, plus the time range when it is not the whole video."""
        if (self.start, self.end) == (0.0, 1.0):
            return self.path.name
        return f"{self.path.name}[{self.start:.2f}:{self.end:.2f}]"


@dataclass
class LoadedFrames:
    """What ``read_frames`` returns: the frames and, per source label, how many were kept/skipped."""

    frames: np.ndarray
    kept: dict[str, int] = field(default_factory=dict)
    skipped: dict[str, int] = field(default_factory=dict)


def _kind(path: Path) -> Literal["video", "image"] | None:
    ext = path.suffix.lower()
    return "video" if ext in VIDEO_EXTS else "image" if ext in IMAGE_EXTS else None


def collect_sources(paths: list[Path]) -> list[Source]:
    """Videos and images under each path (folders recursively, in sorted order), without duplicates.

    Raises ConfigError naming the path when it does not exist, cannot be listed, is a file of an
    unknown type, or is a folder holding no video or image.
    """
    known = ", ".join(sorted(VIDEO_EXTS | IMAGE_EXTS))
    found: dict[Path, Source] = {}
    for raw in paths:
        path = Path(raw)
        if path.is_dir():
            try:
                files = sorted(p for p in path.rglob("*") if p.is_file() and _kind(p))
            except OSError as exc:
                raise ConfigError(f"data: cannot read folder {path}: {exc}") from exc
            if not files:
                raise ConfigError(f"data: folder {path} holds no video or image (looked for {known})")
        elif path.is_file():
            if _kind(path) is None:
                raise ConfigError(f"data: {path} is not a video or image file (known: {known})")
            files = [path]
        else:
            raise ConfigError(f"data: {path} does not exist")
        for f in files:
            found.setdefault(f.resolve(), Source(path=f, kind=_kind(f) or "image"))
    return list(found.values())


def _counts(n: int, fractions: tuple[float, float, float]) -> tuple[int, int, int]:
    n_val = max(1, round(n * fractions[1])) if fractions[1] > 0 else 0
    n_test = max(1, round(n * fractions[2])) if fractions[2] > 0 else 0
    return n - n_val - n_test, n_val, n_test


def split_sources(
    sources: list[Source],
    fractions: tuple[float, float, float] = DEFAULT_FRACTIONS,
    *,
    seed: int = 0,
    split_by: Literal["source", "time"] = "source",
) -> tuple[list[Source], list[Source], list[Source]]:
    """Split into ``(train, val, test)``, deterministically for a given ``seed``.

    ``split_by="source"``: whole sources are shuffled (``random.Random(seed)``) and dealt out;
    validation and test get at least one source each, so at least 3 sources are needed
    (ConfigError otherwise).

    ``split_by="time"``: every video is cut into contiguous ranges of its frames in the
    proportions ``fractions`` (first 70% train, next 15% validation, last 15% test); frames of
    one scene then appear in several splits, but no frame in two. Images cannot be cut: they are
    dealt out by source when there are at least 3, else they all go to training.
    """
    if len(fractions) != 3 or any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0):
        raise ValueError(f"fractions must be three non-negative numbers summing to 1, got {fractions}")
    if split_by not in ("source", "time"):
        raise ValueError(f"split_by must be 'source' or 'time', got {split_by!r}")

    def by_source(items: list[Source]) -> tuple[list[Source], list[Source], list[Source]]:
        order = sorted(items, key=lambda s: str(s.path))
        random.Random(seed).shuffle(order)
        n_train, n_val, _ = _counts(len(order), fractions)
        return order[:n_train], order[n_train : n_train + n_val], order[n_train + n_val :]

    if split_by == "source":
        if len(sources) < 3:
            raise ConfigError(
                f"split_by: only {len(sources)} source(s) ({', '.join(s.label for s in sources)}); "
                "a split by source needs at least 3 (train, validation, test). Add videos or images, "
                "or set split_by: time to cut each video into contiguous 70/15/15 time ranges"
            )
        return by_source(sources)

    train: list[Source] = []
    val: list[Source] = []
    test: list[Source] = []
    cuts = (0.0, fractions[0], fractions[0] + fractions[1], 1.0)
    for s in (s for s in sources if s.kind == "video"):
        for bucket, lo, hi in zip((train, val, test), cuts[:-1], cuts[1:]):
            if hi > lo:
                bucket.append(replace(s, start=lo, end=hi))
    images = [s for s in sources if s.kind == "image"]
    if len(images) >= 3:
        parts = by_source(images)
        for bucket, part in zip((train, val, test), parts):
            bucket.extend(part)
    else:
        train.extend(images)
    if not train or not val or not test:
        raise ConfigError(
            "split_by: time needs at least one video (images alone cannot be cut in time); "
            f"got {len(sources)} source(s) of which {len(sources) - len(images)} video(s)"
        )
    return train, val, test


def _to_rgb(frame_bgr: np.ndarray) -> np.ndarray:
    if frame_bgr.ndim == 2:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_GRAY2BGR)
    elif frame_bgr.shape[2] == 4:
        frame_bgr = cv2.cvtColor(frame_bgr, cv2.COLOR_BGRA2BGR)
    if frame_bgr.shape[:2] != (FRAME_HEIGHT, FRAME_WIDTH):
        frame_bgr = cv2.resize(frame_bgr, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)


def frame_count(path: Path) -> int:
    """Frames in a video (container metadata, else counted by decoding); 1 for an image."""
    if _kind(path) == "image":
        return 1
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise ConfigError(f"data: cannot open video {path}")
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
        if n <= 0:
            n = 0
            while cap.grab():
                n += 1
        return n
    finally:
        cap.release()


def _read_source(source: Source, every_n: int, max_frames: int | None) -> tuple[list[np.ndarray], int]:
    """(RGB frames, frames that failed to decode) of one source."""
    if source.kind == "image":
        img = cv2.imread(str(source.path), cv2.IMREAD_COLOR)
        if img is None:
            raise ConfigError(f"data: cannot decode image {source.path}")
        return [_to_rgb(img)], 0
    total = frame_count(source.path)
    first, last = math.floor(source.start * total), math.floor(source.end * total)
    stride = every_n
    if max_frames is not None:
        # max_frames counts per whole video; a time range gets its share, and the stride widens
        # so the kept frames still span the whole range.
        cap_n = max(1, math.ceil(max_frames * (source.end - source.start)))
        stride = max(every_n, math.ceil((last - first) / cap_n))
    else:
        cap_n = None
    frames: list[np.ndarray] = []
    skipped = 0
    cap = cv2.VideoCapture(str(source.path))
    try:
        if not cap.isOpened():
            raise ConfigError(f"data: cannot open video {source.path}")
        for index in range(last):
            if not cap.grab():
                break
            if index < first or (index - first) % stride:
                continue
            ok, frame = cap.retrieve()
            if not ok or frame is None or frame.size == 0:
                skipped += 1
                continue
            frames.append(_to_rgb(frame))
            if cap_n is not None and len(frames) >= cap_n:
                break
    finally:
        cap.release()
    return frames, skipped


def read_frames(sources: list[Source], *, every_n: int = 1, max_frames_per_source: int | None = None) -> LoadedFrames:
    """Decode every ``every_n``-th frame of each source (at most ``max_frames_per_source``).

    Frames that fail to decode are skipped and counted in ``skipped``. Raises ConfigError naming
    the file when a video cannot be opened or an image cannot be decoded, and when no frame at
    all comes out.
    """
    if every_n < 1:
        raise ValueError(f"every_n must be >= 1, got {every_n}")
    if max_frames_per_source is not None and max_frames_per_source < 1:
        raise ValueError(f"max_frames_per_source must be >= 1 or None, got {max_frames_per_source}")
    out = LoadedFrames(frames=np.empty((0, FRAME_HEIGHT, FRAME_WIDTH, 3), np.uint8))
    chunks: list[np.ndarray] = []
    for s in sources:
        frames, skipped = _read_source(s, every_n, max_frames_per_source)
        out.kept[s.label] = len(frames)
        out.skipped[s.label] = skipped
        if skipped:
            logger.warning("%s: skipped %d frame(s) that could not be decoded", s.label, skipped)
        if frames:
            chunks.append(np.stack(frames))
    if not chunks:
        raise ConfigError(f"data: no frame could be read from {', '.join(s.label for s in sources) or 'no sources'}")
    out.frames = np.concatenate(chunks)
    logger.info("read %d frames from %d source(s)", len(out.frames), len(sources))
    return out


def load_frames(sources: list[Source], *, every_n: int = 1, max_frames_per_source: int | None = None) -> np.ndarray:
    """``N×240×320×3`` uint8 RGB frames of ``sources`` (see ``read_frames``)."""
    return read_frames(sources, every_n=every_n, max_frames_per_source=max_frames_per_source).frames


class FrameDataset(Dataset[torch.Tensor]):
    """Dataset over ``N×H×W×3`` uint8 RGB frames; item ``i`` is a float ``3×H×W`` tensor in [0, 1]."""

    def __init__(self, frames: np.ndarray) -> None:
        if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"expected N×H×W×3 uint8 frames, got {frames.shape} {frames.dtype}")
        self.frames = frames

    def __len__(self) -> int:
        return len(self.frames)

    def __getitem__(self, index: int) -> torch.Tensor:
        return torch.from_numpy(self.frames[index]).permute(2, 0, 1).float().div_(255.0)


def sha256_file(path: Path) -> str:
    """Hex sha256 of a file's bytes."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def describe(sources: list[Source]) -> dict[str, object]:
    """For a model card: per distinct file its name, kind, frame count and sha256."""
    files: dict[Path, dict[str, object]] = {}
    for s in sources:
        if s.path not in files:
            files[s.path] = {
                "name": s.path.name,
                "kind": s.kind,
                "frames": frame_count(s.path),
                "sha256": sha256_file(s.path),
            }
    return {"files": list(files.values()), "sources": [s.label for s in sources]}
