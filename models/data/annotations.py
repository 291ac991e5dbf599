"""The UCF-Crime annotation formats: the training list, temporal segments, Vatic tracks and Liu & Ma
2019 sparse boxes, each parsed into labels per frame (P §4.1). ``models.data.vad`` assembles a dataset
from them.

Label codes (np.uint8 per frame): ``NORMAL`` 0, ``SOFT`` 1, ``HARD`` 2.

* **Vatic** tracks, one line per box ``track_id xmin ymin xmax ymax frame lost occluded generated "label"``
  (``frame`` 0-based, as Vatic writes it): a frame covered by a box with ``lost == 0`` is HARD (the
  anomaly is visible); every other frame of an anomalous video is SOFT ("the anomaly is not clearly
  present", P §4.1). Occluded and interpolated (``generated``) boxes count like the others.
* **Temporal** annotations ``name class s1 e1 s2 e2`` (``-1`` = no segment, ends inclusive): the frame
  numbers are 1-based (the file comes from MATLAB code; ``Abuse028 165 240`` is frames 165..240, i.e.
  indices 164..239 here, see ``TEMPORAL_INDEX_BASE``). Frames inside a segment are HARD, the other frames
  of that video NORMAL (the test protocol of Sultani et al. and P §4.4: soft frames count as normal).
* **Liu & Ma 2019** sparse boxes ``[frame_idx, x1, y1, x2, y2]`` (see ``liu2019_hard_mask`` for the rule):
  the 16-frame clips ending on keyframes, joined across gaps of at most 48 frames, are HARD; the rest of
  the anomalous video SOFT. Frame numbers taken as 1-based (``LIU_INDEX_BASE``, likely but unverified).
* Several sources on one video: the union of their HARD frames is HARD; if any *sparse box* source (Vatic
  or Liu) covers the video, the other frames of an anomalous video are SOFT, otherwise (temporal only)
  NORMAL. Normal videos are all NORMAL whatever the files say (a box on a normal video is reported).
* An anomalous video with no frame-level annotation at all (e.g. a UCF-Crime training video when only the
  official files are present) is all SOFT and a problem says so: it still tells the model "somewhere in
  here", which is what weakly supervised training needs, and never counts as HARD.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

import numpy as np

NORMAL, SOFT, HARD = 0, 1, 2
LABEL_NAMES = {NORMAL: "normal", SOFT: "soft", HARD: "hard"}

TRAIN_LIST = "Anomaly_Train.txt"
TEMPORAL_FILE = "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"
#: Other names the temporal file is distributed under (the official repo's, the zip's ``Txt_formate``).
TEMPORAL_ALIASES = ("Temporal_Anomaly_Annotation.txt",)
LIU_FILES = ("Train_annotation.json", "Test_annotation.json")
VATIC_DIRS = ("vatic", "Txt annotations", "Txt_annotations")
VIDEO_EXTS = frozenset({".mp4", ".avi", ".mkv", ".mov", ".mpg", ".mpeg", ".m4v"})
ANNOTATION_MODES = ("auto", "temporal", "vatic", "liu2019")

#: Frame numbers in the temporal file are 1-based (MATLAB). Subtracted to get 0-based indices.
TEMPORAL_INDEX_BASE = 1
#: Liu 2019 frame numbers come from ``image_NNNN.jpg`` dumps: most likely 1-based (ffmpeg's ``%04d``
#: starts at 1) but unverified. Subtracted; being off by one frame is below the rule's padding anyway.
LIU_INDEX_BASE = 1
#: Liu 2019 keyframes are every 16 frames inside the temporal segments (checked on the 140 test videos:
#: all 3102 keyframes lie inside a temporal segment, the first one typically 15 frames after its start).
LIU_STRIDE = 16
LIU_MAX_GAP = 3 * LIU_STRIDE
LIU_PAD_BEFORE = LIU_STRIDE - 1
LIU_PAD_AFTER = 0




@dataclass
class TemporalEntry:
    name: str  # stem, no extension
    category: str
    segments: list[tuple[int, int]]  # as in the file (1-based, inclusive)
    where: str  # "file:line"


@dataclass
class VaticBox:
    track: int
    box: tuple[int, int, int, int]
    frame: int
    lost: bool
    occluded: bool
    generated: bool
    label: str


def _stem(name: str) -> str:
    base = name.replace("\\", "/").rsplit("/", 1)[-1]
    return base[: -len(Path(base).suffix)] if Path(base).suffix.lower() in VIDEO_EXTS else base


def _category_from_dir(folder: str) -> str:
    return "Normal" if "normal" in folder.lower() else folder


def parse_train_list(path: Path, where: dict[str, str] | None = None) -> tuple[dict[str, str], list[str]]:
    """``Anomaly_Train.txt`` -> ({stem: category}, problems). Category from the folder (``*Normal*`` -> Normal).

    ``where``, when given, receives ``{stem: "file:line"}``."""
    out: dict[str, str] = {}
    problems: list[str] = []
    for no, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.replace("\\", "/").split("/")
        if len(parts) < 2 or Path(parts[-1]).suffix.lower() not in VIDEO_EXTS:
            problems.append(f"{path}:{no}: not a `Class/Name.mp4` line: {line!r}")
            continue
        stem, cat = _stem(parts[-1]), _category_from_dir(parts[-2])
        if stem in out:
            problems.append(f"{path}:{no}: {stem} listed twice")
            continue
        out[stem] = cat
        if where is not None:
            where[stem] = f"{path}:{no}"
    return out, problems


def parse_temporal(path: Path) -> tuple[dict[str, TemporalEntry], list[str]]:
    """The temporal annotation file -> ({stem: entry}, problems). Segments kept as written (1-based)."""
    out: dict[str, TemporalEntry] = {}
    problems: list[str] = []
    for no, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split()
        where = f"{path}:{no}"
        if len(parts) != 6:
            problems.append(f"{where}: expected `name class s1 e1 s2 e2`, got {len(parts)} fields: {line!r}")
            continue
        try:
            nums = [int(x) for x in parts[2:]]
        except ValueError:
            problems.append(f"{where}: frame numbers are not integers: {line!r}")
            continue
        segments: list[tuple[int, int]] = []
        bad = False
        for s, e in ((nums[0], nums[1]), (nums[2], nums[3])):
            if s == -1 and e == -1:
                continue
            if s < 0 or e < s:
                problems.append(f"{where}: bad segment {s}..{e}: {line!r}")
                bad = True
                break
            segments.append((s, e))
        if bad:
            continue
        stem, cat = _stem(parts[0]), _category_from_dir(parts[1])
        if cat == "Normal" and segments:
            problems.append(f"{where}: Normal video {stem} has anomalous segments; ignored")
            segments = []
        if cat != "Normal" and not segments:
            problems.append(f"{where}: anomalous video {stem} ({cat}) has no segment")
        if stem in out:
            problems.append(f"{where}: {stem} listed twice (first at {out[stem].where}); first kept")
            continue
        out[stem] = TemporalEntry(stem, cat, segments, where)
    return out, problems


def parse_vatic(path: Path) -> tuple[list[VaticBox], list[str]]:
    """One Vatic text file -> (boxes, problems naming ``file:line``)."""
    boxes: list[VaticBox] = []
    problems: list[str] = []
    for no, raw in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        where = f"{path}:{no}"
        try:
            parts = shlex.split(line)
        except ValueError:
            parts = line.split()
        if len(parts) < 10:
            problems.append(f"{where}: expected `track xmin ymin xmax ymax frame lost occluded generated label`: {line!r}")
            continue
        try:
            tid, x1, y1, x2, y2, frame, lost, occl, gen = (int(float(x)) for x in parts[:9])
        except ValueError:
            problems.append(f"{where}: non-numeric field: {line!r}")
            continue
        if frame < 0 or any(f not in (0, 1) for f in (lost, occl, gen)):
            problems.append(f"{where}: frame < 0 or lost/occluded/generated not 0/1: {line!r}")
            continue
        boxes.append(VaticBox(tid, (x1, y1, x2, y2), frame, bool(lost), bool(occl), bool(gen), parts[9]))
    return boxes, problems


def vatic_hard_mask(boxes: list[VaticBox], n_frames: int) -> tuple[np.ndarray, int]:
    """Frames with at least one box with ``lost == 0`` -> (bool mask, number of such frames past the end)."""
    mask = np.zeros(n_frames, bool)
    frames = np.array(sorted({b.frame for b in boxes if not b.lost}), dtype=np.int64)
    mask[frames[frames < n_frames]] = True
    return mask, int(np.count_nonzero(frames >= n_frames))


def liu2019_hard_mask(keyframes: list[int], n_frames: int, *, max_gap: int = LIU_MAX_GAP,
                      pad_before: int = LIU_PAD_BEFORE, pad_after: int = LIU_PAD_AFTER,
                      index_base: int = LIU_INDEX_BASE) -> np.ndarray:
    """HARD frames from Liu & Ma's sparse actor keyframes (the rule of this project).

    Keyframes (converted to 0-based with ``index_base``) at most ``max_gap`` frames apart (default 3 × the
    16-frame sampling step) are joined into one run; a run covers ``[first - pad_before, last + pad_after]``
    (defaults 15 and 0: a keyframe marks the 16-frame clip that ends on it; on the 140 test videos the
    first keyframe is most often 15 frames after the official segment start). An isolated keyframe covers
    its own clip. Longer gaps are not HARD: the annotators stopped boxing there, so the actor was not
    clearly visible (the meaning of Vatic's ``lost``); those frames become SOFT.

    Checked against the official temporal segments of the 140 test videos: 99.8 % of the frames this rule
    calls HARD are inside a segment, and it covers 62 % of the segment frames (the rest is SOFT): a
    conservative, high-precision rule, as "hard anomaly" asks for.
    """
    mask = np.zeros(n_frames, bool)
    ks = sorted({int(k) - index_base for k in keyframes})
    if not ks or n_frames <= 0:
        return mask
    start = prev = ks[0]
    for k in [*ks[1:], None]:
        if k is not None and k - prev <= max_gap:
            prev = k
            continue
        lo, hi = max(0, start - pad_before), min(n_frames - 1, prev + pad_after)
        if lo <= hi:
            mask[lo: hi + 1] = True
        if k is not None:
            start = prev = k
    return mask


def load_liu2019(path: Path) -> tuple[dict[str, list[int]], list[str]]:
    """A Liu 2019 JSON (``{"videos": {name: [[frame, x1, y1, x2, y2], ...]}}``) -> ({stem: keyframes}, problems)."""
    problems: list[str] = []
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return {}, [f"{path}: not readable JSON: {err}"]
    videos = data.get("videos", data) if isinstance(data, dict) else None
    if not isinstance(videos, dict):
        return {}, [f"{path}: expected an object {{'videos': {{name: [[frame, x1, y1, x2, y2], ...]}}}}"]
    out: dict[str, list[int]] = {}
    for name, rows in videos.items():
        if name.startswith("_"):
            continue
        frames = []
        for i, row in enumerate(rows if isinstance(rows, list) else []):
            try:
                frames.append(int(row[0]) if not isinstance(row[0], str)
                              else int(re.findall(r"(\d+)\D*$", row[0])[0]))
            except (TypeError, ValueError, IndexError):
                problems.append(f"{path}: videos[{name!r}][{i}]: not [frame, x1, y1, x2, y2]: {row!r}")
        if not isinstance(rows, list) or not frames:
            problems.append(f"{path}: video {name!r} has no usable box")
            continue
        out[_stem(name)] = frames
    return out, problems
