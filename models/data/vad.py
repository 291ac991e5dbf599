"""UCF-Crime style anomaly-detection datasets with per-frame labels (P §4.1).

Layout (the official UCF-Crime one; video files are found **anywhere under root, by file name**)::

    root/Anomaly_Train.txt                                   training list, `Class/Name_x264.mp4` per line
    root/Temporal_Anomaly_Annotation_for_Testing_Videos.txt  test list + temporal segments
    root/**/<Name>_x264.mp4                                   e.g. Anomaly-Videos/Abuse/, Training_Normal_Videos_Anomaly/
    root/**/vatic/<Name>_x264.txt                             Vatic tracks (this project's layout), or
    root/**/Txt annotations/<Name>_x264.txt                   the UCFCrime2Local archive's layout
    root/Train_annotation.json, root/Test_annotation.json     Liu & Ma 2019 sparse actor boxes

The two list/annotation files and the Liu JSONs are looked for in ``root``, ``root/annotations`` and the
``annotation_dirs`` given to ``load_dataset`` (``--annotation-dir``), in that order.

Label codes and how each annotation format becomes labels per frame: ``models.data.annotations``.

Split: names in ``Anomaly_Train.txt`` are "train", names in the temporal file "test" (a name in both is
reported and kept as "test"). A video file under root that is in neither list is reported and left out.

Everything odd (missing video, bad annotation line with ``file:line``, annotation outside the video, class
with no sample in a split, empty split...) is appended to ``VadDataset.problems`` (the first 20 also
logged at WARNING, then a count); nothing is skipped silently. ``load_dataset`` raises ``ConfigError`` naming root when no video is usable.
"""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from models.data.annotations import (
    ANNOTATION_MODES,
    HARD,
    LIU_FILES,
    LIU_INDEX_BASE,
    NORMAL,
    SOFT,
    TEMPORAL_ALIASES,
    TEMPORAL_FILE,
    TEMPORAL_INDEX_BASE,
    TRAIN_LIST,
    VATIC_DIRS,
    VIDEO_EXTS,
    TemporalEntry,
    liu2019_hard_mask,
    load_liu2019,
    parse_temporal,
    parse_train_list,
    parse_vatic,
    vatic_hard_mask,
)
from pvad.errors import ConfigError

logger = logging.getLogger(__name__)

_SPLITS = ("train", "test")
_LOGGED_PROBLEMS = 20


@dataclass
class VideoItem:
    """One video of the dataset, with one label code per frame."""

    name: str
    category: str
    path: Path
    n_frames: int
    fps: float
    labels: np.ndarray
    split: str
    #: which annotation sources set the labels, e.g. ("temporal", "vatic"); empty when none did
    sources: tuple[str, ...] = ()

    @property
    def anomalous(self) -> bool:
        return self.category != "Normal"

    @property
    def n_hard(self) -> int:
        return int(np.count_nonzero(self.labels == HARD))

    @property
    def n_soft(self) -> int:
        return int(np.count_nonzero(self.labels == SOFT))


@dataclass
class VadDataset:
    root: Path
    videos: list[VideoItem]
    problems: list[str] = field(default_factory=list)

    def split(self, name: str) -> list[VideoItem]:
        if name not in _SPLITS:
            raise ConfigError(f"unknown split {name!r}: expected one of {', '.join(_SPLITS)}")
        return [v for v in self.videos if v.split == name]

    @property
    def classes(self) -> list[str]:
        return sorted({v.category for v in self.videos})

    def summary(self) -> dict:
        """Per split and per class: videos, frames, hard/soft/normal frames; plus the problem count."""
        out: dict = {"root": str(self.root), "splits": {}, "problems": len(self.problems)}
        for split in _SPLITS:
            items = self.split(split)
            per_class: dict[str, dict] = {}
            for v in sorted(items, key=lambda v: v.category):
                c = per_class.setdefault(v.category, {"videos": 0, "frames": 0, "hard": 0, "soft": 0, "normal": 0})
                _add_counts(c, v)
            total = {"videos": 0, "frames": 0, "hard": 0, "soft": 0, "normal": 0}
            for v in items:
                _add_counts(total, v)
            out["splits"][split] = {**total, "classes": per_class}
        return out


def _add_counts(c: dict, v: VideoItem) -> None:
    c["videos"] += 1
    c["frames"] += v.n_frames
    c["hard"] += v.n_hard
    c["soft"] += v.n_soft
    c["normal"] += int(np.count_nonzero(v.labels == NORMAL))


# ---------------------------------------------------------------------------------------------- files


def _find_file(root: Path, names: tuple[str, ...], extra: tuple[Path, ...] = ()) -> Path | None:
    for folder in (root, root / "annotations", *extra):
        for n in names:
            if (folder / n).is_file():
                return folder / n
    return None


def find_videos(root: Path) -> tuple[dict[str, Path], list[str]]:
    """Every video file under root -> ({stem: path}, problems for duplicate names)."""
    found: dict[str, Path] = {}
    problems: list[str] = []
    for p in sorted(root.rglob("*")):
        if p.suffix.lower() in VIDEO_EXTS and p.is_file():
            stem = p.stem
            if stem in found:
                problems.append(f"{p}: same name as {found[stem]}; the first is used")
                continue
            found[stem] = p
    return found, problems


def find_vatic_files(root: Path) -> tuple[dict[str, Path], list[str]]:
    """``**/vatic/<stem>.txt`` and ``**/Txt annotations/<stem>.txt`` (UCFCrime2Local) -> {stem: path}."""
    found: dict[str, Path] = {}
    problems: list[str] = []
    for p in sorted(root.rglob("*.txt")):
        if p.parent.name in VATIC_DIRS and p.is_file():
            if p.stem in found:
                problems.append(f"{p}: second Vatic file for {p.stem} (first {found[p.stem]}); ignored")
                continue
            found[p.stem] = p
    return found, problems


def probe_video(path: Path) -> tuple[int, float, list[str]]:
    """(frame count as OpenCV reads it, fps, problems). The header count is checked by reading its last frame;
    when that fails (or the header has no count) the frames are counted by decoding."""
    problems: list[str] = []
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            return 0, 0.0, [f"{path}: OpenCV cannot open it"]
        n = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        ok = False
        if n > 0:
            cap.set(cv2.CAP_PROP_POS_FRAMES, n - 1)
            ok = cap.grab()
        if not ok:
            cap.release()
            cap = cv2.VideoCapture(str(path))
            counted = 0
            while cap.grab():
                counted += 1
            problems.append(f"{path}: header says {n} frames, {counted} decoded; using {counted}")
            n = counted
    finally:
        cap.release()
    if not (0 < fps < 1000):
        problems.append(f"{path}: fps {fps} unusable; assuming 30")
        fps = 30.0
    return n, fps, problems


# ---------------------------------------------------------------------------------------------- dataset


def load_dataset(root: Path, *, annotations: str = "auto", verify_frames: bool = True,
                 annotation_dirs: tuple[Path, ...] | list[Path] = ()) -> VadDataset:
    """Index a UCF-Crime style folder: videos, split, per-frame labels, and every problem found.

    ``annotations``: ``"auto"`` uses every source present (temporal, Vatic, Liu 2019); ``"temporal"``,
    ``"vatic"`` or ``"liu2019"`` uses only that one for frame labels (the split still comes from the two
    list files). ``verify_frames=False`` trusts the header frame count (faster on slow disks).
    ``annotation_dirs``: more folders to look for the list, temporal and Liu files in, after root and
    root/annotations (e.g. the staged ``shared/data/ucf_crime`` and ``shared/data/ucf_crime_bbox_liu2019``).
    Raises ConfigError naming root when root is not a folder, a requested source is absent, or no video
    is usable.
    """
    root = Path(root)
    if annotations not in ANNOTATION_MODES:
        raise ConfigError(f"annotations={annotations!r}: expected one of {', '.join(ANNOTATION_MODES)}")
    if not root.is_dir():
        raise ConfigError(f"dataset root {root} is not a folder")
    problems: list[str] = []
    extra = tuple(Path(d) for d in annotation_dirs)
    for d in extra:
        if not d.is_dir():
            raise ConfigError(f"annotation folder {d} is not a folder")

    train_file = _find_file(root, (TRAIN_LIST,), extra)
    temporal_file = _find_file(root, (TEMPORAL_FILE, *TEMPORAL_ALIASES), extra)
    train, temporal, train_where = {}, {}, {}
    if train_file:
        train, p = parse_train_list(train_file, train_where)
        problems += p
    else:
        problems.append(f"{root}: no {TRAIN_LIST} (in root or root/annotations): no training split")
    if temporal_file:
        temporal, p = parse_temporal(temporal_file)
        problems += p
    else:
        problems.append(f"{root}: no {TEMPORAL_FILE} (in root or root/annotations): no test split")

    use_temporal = annotations in ("auto", "temporal")
    use_vatic = annotations in ("auto", "vatic")
    use_liu = annotations in ("auto", "liu2019")
    vatic_files: dict[str, Path] = {}
    if use_vatic:
        vatic_files, p = find_vatic_files(root)
        problems += p
        if annotations == "vatic" and not vatic_files:
            raise ConfigError(f"{root}: annotations='vatic' but no */vatic/*.txt or */Txt annotations/*.txt file")
    liu: dict[str, list[int]] = {}
    if use_liu:
        liu_paths = [f for f in (_find_file(root, (n,), extra) for n in LIU_FILES) if f]
        for f in liu_paths:
            d, p = load_liu2019(f)
            problems += p
            liu.update(d)
        if annotations == "liu2019" and not liu_paths:
            raise ConfigError(f"{root}: annotations='liu2019' but no {' or '.join(LIU_FILES)} in root or root/annotations")

    # which split and class each listed name has
    listed: dict[str, tuple[str, str, str]] = {}  # stem -> (split, category, where)
    for stem, cat in train.items():
        listed[stem] = ("train", cat, train_where[stem])
    for stem, e in temporal.items():
        if stem in listed:
            problems.append(f"{e.where}: {stem} is also in {TRAIN_LIST}; kept in the test split")
        listed[stem] = ("test", e.category, e.where)

    videos_on_disk, p = find_videos(root)
    problems += p
    for stem, path in videos_on_disk.items():
        if stem not in listed:
            problems.append(f"{path}: in neither {TRAIN_LIST} nor {TEMPORAL_FILE}; left out")
    for stem in sorted(set(vatic_files) - set(listed)):
        problems.append(f"{vatic_files[stem]}: Vatic file for {stem}, which no split lists; ignored")
    for stem in sorted(set(liu) - set(listed)):
        problems.append(f"Liu 2019 boxes for {stem}, which no split lists; ignored")

    missing: dict[tuple[str, str], int] = Counter()
    items: list[VideoItem] = []
    for stem in sorted(listed, key=lambda s: (listed[s][0], listed[s][1], s)):
        split, cat, where = listed[stem]
        path = videos_on_disk.get(stem)
        if path is None:
            problems.append(f"{where}: video {stem} not found under {root}")
            missing[(split, cat)] += 1
            continue
        if verify_frames:
            n, fps, p = probe_video(path)
        else:
            cap = cv2.VideoCapture(str(path))
            n, fps, p = int(cap.get(cv2.CAP_PROP_FRAME_COUNT) or 0), float(cap.get(cv2.CAP_PROP_FPS) or 30.0), []
            cap.release()
        problems += p
        if n <= 0:
            problems.append(f"{path}: no decodable frame; left out")
            missing[(split, cat)] += 1
            continue
        labels, sources, p = _labels(stem, cat, n, path,
                                     temporal.get(stem) if use_temporal else None,
                                     vatic_files.get(stem) if use_vatic else None,
                                     liu.get(stem) if use_liu else None)
        problems += p
        items.append(VideoItem(stem, cat, path, n, fps, labels, split, sources))

    # classes with no sample, empty splits
    classes = {c for (_, c, _) in listed.values()}
    have = {(v.split, v.category) for v in items}
    for split in _SPLITS:
        if not any(v.split == split for v in items):
            problems.append(f"{root}: split '{split}' has no usable video")
            continue
        for c in sorted(classes):
            if (split, c) not in have:
                why = f" ({missing[(split, c)]} listed but missing)" if missing[(split, c)] else ""
                problems.append(f"{root}: class '{c}' has no usable video in split '{split}'{why}")
        if not any(v.split == split and v.n_hard for v in items):
            problems.append(f"{root}: split '{split}' has no HARD (clearly anomalous) frame")
    n_missing = sum(missing.values())
    if n_missing:
        problems.append(f"{root}: {n_missing} of {len(listed)} listed videos missing or unreadable")

    for i, msg in enumerate(problems):  # all in ds.problems; the log shows the first ones
        if i < _LOGGED_PROBLEMS:
            logger.warning("%s", msg)
        else:
            logger.debug("%s", msg)
    if len(problems) > _LOGGED_PROBLEMS:
        logger.warning("%s: %d more problems (VadDataset.problems, `pvad data index`)", root,
                       len(problems) - _LOGGED_PROBLEMS)
    if not items:
        raise ConfigError(f"no usable video under {root}: {len(listed)} listed, {len(videos_on_disk)} video files "
                          f"found; first problems: {'; '.join(problems[:3])}")
    return VadDataset(root, items, problems)


def _labels(stem: str, cat: str, n: int, path: Path, tem: TemporalEntry | None, vatic: Path | None,
            liu: list[int] | None) -> tuple[np.ndarray, tuple[str, ...], list[str]]:
    problems: list[str] = []
    labels = np.zeros(n, np.uint8)
    if cat == "Normal":
        if vatic is not None:
            boxes, _ = parse_vatic(vatic)
            if any(not b.lost for b in boxes):
                problems.append(f"{vatic}: Normal video {stem} has visible Vatic boxes; labels kept NORMAL")
        if liu:
            problems.append(f"Liu 2019 boxes for Normal video {stem}; labels kept NORMAL")
        return labels, (), problems
    hard = np.zeros(n, bool)
    sources: list[str] = []
    sparse = False
    if tem is not None and tem.segments:
        sources.append("temporal")
        for s, e in tem.segments:
            lo, hi = s - TEMPORAL_INDEX_BASE, e - TEMPORAL_INDEX_BASE
            if hi >= n:
                problems.append(f"{tem.where}: segment {s}..{e} goes past the last frame of {path} ({n} frames); cut")
            lo, hi = max(lo, 0), min(hi, n - 1)
            if lo <= hi:
                hard[lo: hi + 1] = True
    if vatic is not None:
        boxes, p = parse_vatic(vatic)
        problems += p
        if boxes:
            sources.append("vatic")
            sparse = True
            m, past = vatic_hard_mask(boxes, n)
            if past:
                problems.append(f"{vatic}: {past} visible-box frames past the end of {path} ({n} frames); ignored")
            if not m.any():
                problems.append(f"{vatic}: every box of anomalous video {stem} is lost: no HARD frame from Vatic")
            hard |= m
        else:
            problems.append(f"{vatic}: no usable box")
    if liu:
        sources.append("liu2019")
        sparse = True
        ks = np.asarray(liu) - LIU_INDEX_BASE
        if (ks >= n).any():
            problems.append(f"Liu 2019 boxes for {stem}: {(ks >= n).sum()} keyframes past the end ({n} frames); ignored")
        hard |= liu2019_hard_mask(liu, n)
    if not sources:
        problems.append(f"{path}: anomalous video ({cat}) with no frame-level annotation: all frames SOFT")
        labels[:] = SOFT
    elif sparse:
        labels[:] = SOFT
    labels[hard] = HARD
    return labels, tuple(sources), problems


def format_summary(ds: VadDataset, *, max_problems: int = 50) -> str:
    """Human-readable table of ``ds.summary()`` and the problems (the first ``max_problems``; 0 = all)."""
    s = ds.summary()
    lines = [f"dataset {s['root']}"]
    for split, d in s["splits"].items():
        lines.append(f"{split}: {d['videos']} videos, {d['frames']} frames "
                     f"(hard {d['hard']}, soft {d['soft']}, normal {d['normal']})")
        for c, cd in d["classes"].items():
            lines.append(f"  {c:16s} {cd['videos']:5d} videos {cd['frames']:9d} frames  hard {cd['hard']:8d}  "
                         f"soft {cd['soft']:8d}")
    lines.append(f"problems: {len(ds.problems)}")
    shown = ds.problems if max_problems <= 0 else ds.problems[:max_problems]
    lines += [f"  - {p}" for p in shown]
    if len(shown) < len(ds.problems):
        lines.append(f"  ... {len(ds.problems) - len(shown)} more (--problems 0 shows all)")
    return "\n".join(lines)

