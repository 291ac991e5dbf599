"""One-class video anomaly datasets: normal training videos, labelled test videos, as frame folders.

The protocol of UCSD Ped1/Ped2, CUHK Avenue and ShanghaiTech: fit on the training videos (normal
only), score every test frame, frame-level ROC AUC pooled over all test frames. Layouts read:

* **frames** (the MNAD / HF2-VAD conversion)::

      root/training/frames/<video>/<n>.jpg     normal only
      root/testing/frames/<video>/<n>.jpg
      root/<name>.mat                          `gt`: one [start; end] column per anomalous range, 1-based,
                                               inclusive, one cell per test video in sorted order
                                               (ped1.mat, ped2.mat, avenue.mat)
      root/testing/test_frame_mask/<video>.npy per-frame 0/1 labels instead of a .mat (ShanghaiTech)

* **ucsd** (the official archive)::

      root[/UCSDped2]/Train/Train001/001.tif ...
      root[/UCSDped2]/Test/Test001/001.tif ...
      root[/UCSDped2]/Test/UCSDped2.m          `TestVideoFile{end+1}.gt_frame = [61:180];`

Frame files are sorted by the integer in their name; a gap in that numbering is refused (a missing
frame would shift every label after it), and so is a labelled range that runs past its video.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pvad.config import FRAME_HEIGHT, FRAME_WIDTH
from pvad.errors import ConfigError
from pvad.frame_folders import frame_files

# Frame rates of the known datasets (UCSD: about 10 fps; Avenue and ShanghaiTech: 25 fps, 24 for STC).
KNOWN_FPS = {"ped1": 10.0, "ped2": 10.0, "avenue": 25.0, "shanghaitech": 24.0}


@dataclass(frozen=True)
class FrameVideo:
    """One video as an ordered list of frame files; ``labels`` (0/1 per frame) on test videos."""

    name: str
    frames: tuple[Path, ...]
    labels: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.frames)

    @property
    def anomalous_frames(self) -> int:
        return 0 if self.labels is None else int(self.labels.sum())

    def rgb_frames(self) -> Iterator[np.ndarray]:
        return read_frames(self)


@dataclass(frozen=True)
class FileVideo:
    """Frames ``start:stop`` of a video file as a camera samples it (``target_fps``, 320x240; normal footage)."""

    path: Path
    target_fps: float = 10.0
    start: int = 0
    stop: int | None = None
    labels = None

    @property
    def name(self) -> str:
        return f"{self.path.name}[{self.start}:{'' if self.stop is None else self.stop}]"

    def _all(self) -> Iterator[np.ndarray]:
        from camera_client.capture import iter_frames
        from pvad.config import CaptureConfig

        for f in iter_frames(CaptureConfig(source=str(self.path), target_fps=self.target_fps)):
            yield cv2.cvtColor(f.bgr, cv2.COLOR_BGR2RGB)

    @functools.cached_property
    def _sampled(self) -> int:
        return sum(1 for _ in self._all())

    def __len__(self) -> int:
        return len(range(self._sampled)[self.start:self.stop])

    def rgb_frames(self) -> Iterator[np.ndarray]:
        for i, f in enumerate(self._all()):
            if i >= self.start and (self.stop is None or i < self.stop):
                yield f


@dataclass(frozen=True)
class OneClassDataset:
    root: Path
    name: str  # ped2, avenue, ... (from the label file), else the folder's name
    layout: str  # "frames" or "ucsd"
    fps: float
    train: tuple[FrameVideo, ...]
    test: tuple[FrameVideo, ...]

    def summary(self) -> dict:
        n_test = sum(len(v) for v in self.test)
        anomalous = sum(v.anomalous_frames for v in self.test)
        return {
            "dataset": self.name, "layout": self.layout, "root": str(self.root), "fps": self.fps,
            "train_videos": len(self.train), "train_frames": sum(len(v) for v in self.train),
            "test_videos": len(self.test), "test_frames": n_test, "anomalous_test_frames": anomalous,
        }



# --------------------------------------------------------------------------- frame folders


def _video_folders(parent: Path) -> list[Path]:
    return sorted(p for p in parent.iterdir() if p.is_dir())


def read_frames(video: FrameVideo, *, start: int = 0, stop: int | None = None) -> Iterator[np.ndarray]:
    """RGB uint8 frames resized to the pipeline's 320x240 (INTER_AREA, as the camera resizes)."""
    for path in video.frames[start:stop]:
        bgr = cv2.imread(str(path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise ConfigError(f"{path}: not a readable image")
        if bgr.shape[:2] != (FRAME_HEIGHT, FRAME_WIDTH):
            bgr = cv2.resize(bgr, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_AREA)
        yield cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- labels


def ranges_to_labels(ranges: list[tuple[int, int]], n: int, *, where: str) -> np.ndarray:
    """0/1 per frame from 1-based inclusive ranges; a range outside 1..n is refused."""
    labels = np.zeros(n, np.uint8)
    for start, end in ranges:
        if not 1 <= start <= end <= n:
            raise ConfigError(f"{where}: anomalous range {start}-{end} is outside the video's frames 1-{n}")
        labels[start - 1:end] = 1
    return labels


def read_mat_ranges(path: Path) -> list[list[tuple[int, int]]]:
    """`gt` of a ped1/ped2/avenue .mat: per video, its [start; end] columns (1-based, inclusive)."""
    from scipy.io import loadmat
    from scipy.io.matlab import MatReadError

    try:
        gt = loadmat(str(path))["gt"]
    # NotImplementedError: scipy cannot read MATLAB v7.3 (HDF5) files; saved with -v7 they load
    except (KeyError, ValueError, OSError, NotImplementedError, MatReadError) as err:
        raise ConfigError(f"{path}: not a label file with a `gt` cell array ({err})") from None
    out = []
    for cell in np.asarray(gt).reshape(-1):
        a = np.asarray(cell, dtype=np.int64)
        if a.size == 0:
            out.append([])
            continue
        if a.ndim != 2 or a.shape[0] != 2:
            a = a.reshape(2, -1) if a.size % 2 == 0 else None
            if a is None:
                raise ConfigError(f"{path}: a `gt` cell is not [start; end] pairs")
        out.append([(int(s), int(e)) for s, e in a.T])
    return out


_UCSD_GT = re.compile(r"gt_frame\s*=\s*\[([^\]]*)\]")


def read_ucsd_m(path: Path) -> list[list[tuple[int, int]]]:
    """`TestVideoFile{end+1}.gt_frame = [61:180];` lines of the official UCSDped*.m, in order."""
    out = []
    for body in _UCSD_GT.findall(path.read_text(errors="replace")):
        ranges = []
        for part in re.split(r"[,\s]+", body.strip()):
            if not part:
                continue
            m = re.fullmatch(r"(\d+):(\d+)", part)
            if m is None:
                raise ConfigError(f"{path}: cannot read gt_frame range {part!r}")
            ranges.append((int(m.group(1)), int(m.group(2))))
        out.append(ranges)
    if not out:
        raise ConfigError(f"{path}: no `gt_frame = [a:b]` lines")
    return out


# --------------------------------------------------------------------------- layouts


def is_oneclass_dataset(root: Path) -> bool:
    root = Path(root)
    return (root / "training" / "frames").is_dir() or _ucsd_root(root) is not None


def _ucsd_root(root: Path) -> Path | None:
    for cand in (root, *sorted(root.glob("UCSDped*"))):
        if (cand / "Train").is_dir() and (cand / "Test").is_dir():
            return cand
    return None


def load_oneclass_dataset(root: Path) -> OneClassDataset:
    """Read a one-class dataset in either layout; every problem is a ConfigError that names its file."""
    root = Path(root)
    if not root.is_dir():
        raise ConfigError(f"{root}: no such dataset folder")
    if (root / "training" / "frames").is_dir():
        return _load_frames_layout(root)
    ucsd = _ucsd_root(root)
    if ucsd is not None:
        return _load_ucsd_layout(ucsd)
    raise ConfigError(f"{root}: neither training/frames/ + testing/frames/ nor UCSDped*/Train + Test")


def _attach(videos: list[tuple[str, tuple[Path, ...]]], ranges: list[list[tuple[int, int]]], where: Path) -> list[FrameVideo]:
    if len(ranges) != len(videos):
        raise ConfigError(f"{where}: labels for {len(ranges)} test videos, but {len(videos)} test video folders")
    return [FrameVideo(name, frames, ranges_to_labels(r, len(frames), where=f"{where} (test video {name})"))
            for (name, frames), r in zip(videos, ranges)]


def _load_frames_layout(root: Path) -> OneClassDataset:
    train = [FrameVideo(d.name, frame_files(d)) for d in _video_folders(root / "training" / "frames")]
    test_dir = root / "testing" / "frames"
    if not test_dir.is_dir():
        raise ConfigError(f"{root}: no testing/frames/ folder")
    raw = [(d.name, frame_files(d)) for d in _video_folders(test_dir)]
    mats = sorted(root.glob("*.mat"))
    masks = root / "testing" / "test_frame_mask"
    if mats:
        if len(mats) > 1:
            raise ConfigError(f"{root}: several label files ({', '.join(m.name for m in mats)}); keep one")
        test = _attach(raw, read_mat_ranges(mats[0]), mats[0])
        name = mats[0].stem.lower()
    elif masks.is_dir():
        test = []
        for vname, frames in raw:
            f = masks / f"{vname}.npy"
            if not f.is_file():
                raise ConfigError(f"{f}: no label mask for test video {vname}")
            labels = np.load(f).astype(np.uint8).reshape(-1)
            if len(labels) != len(frames):
                raise ConfigError(f"{f}: {len(labels)} labels for {len(frames)} frames of test video {vname}")
            test.append(FrameVideo(vname, frames, labels))
        name = "shanghaitech"
    else:
        raise ConfigError(f"{root}: no labels (a <name>.mat with `gt`, or testing/test_frame_mask/<video>.npy)")
    if not train:
        raise ConfigError(f"{root / 'training' / 'frames'}: no training videos")
    return OneClassDataset(root, name, "frames", KNOWN_FPS.get(name, 10.0), tuple(train), tuple(test))


def _load_ucsd_layout(root: Path) -> OneClassDataset:
    train = [FrameVideo(d.name, frame_files(d)) for d in _video_folders(root / "Train") if not d.name.endswith("_gt")]
    raw = [(d.name, frame_files(d)) for d in _video_folders(root / "Test") if not d.name.endswith("_gt")]
    ms = sorted((root / "Test").glob("UCSDped*.m"))
    if not ms:
        raise ConfigError(f"{root / 'Test'}: no UCSDped*.m label file")
    name = ms[0].stem.lower().replace("ucsd", "")
    test = _attach(raw, read_ucsd_m(ms[0]), ms[0])
    return OneClassDataset(root, name, "ucsd", KNOWN_FPS.get(name, 10.0), tuple(train), tuple(test))


def format_summary(ds: OneClassDataset) -> str:
    s = ds.summary()
    lines = [f"{ds.root}: one-class dataset {s['dataset']} ({s['layout']} layout, {s['fps']:g} fps)",
             f"  train: {s['train_videos']} normal videos, {s['train_frames']} frames",
             f"  test:  {s['test_videos']} videos, {s['test_frames']} frames, {s['anomalous_test_frames']} anomalous "
             f"({100 * s['anomalous_test_frames'] / max(1, s['test_frames']):.1f} %)"]
    for v in ds.test:
        lines.append(f"    {v.name}: {len(v)} frames, {v.anomalous_frames} anomalous")
    return "\n".join(lines)
