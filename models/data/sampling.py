"""Which frames of a video become samples (P §3.3 adaptive sampling frame rates).

Training samples come from runs of equal class: frames of an anomalous run are taken every
``fps / anomalous_fps`` source frames, the others every ``fps / normal_fps`` (P: 3 and 10 fps;
adjacent frames are near duplicates, so a lower rate buys variety for the same cost). In
hard-anomalies-only mode (``-ha``) the anomalous runs are the HARD frames and SOFT frames are not
sampled at all (or sampled as normal, ``soft="normal"``); otherwise SOFT and HARD frames are both anomalous. Evaluation scores videos at one
uniform rate, the camera's.
"""

from __future__ import annotations

import numpy as np

from models.data.vad import HARD, NORMAL, SOFT


def training_targets(labels: np.ndarray, *, hard_only: bool, soft: str = "exclude") -> np.ndarray:
    """Per-frame training target: 1 anomalous, 0 normal, -1 excluded.

    In -ha mode SOFT frames are excluded (``soft="exclude"``) or trained as normal
    (``soft="normal"``, P §4.2: "segments without hard anomalies were considered normal"). The
    latter gives negatives from the very scenes the anomalies happen in, so a model cannot tell
    anomalies apart by their scene alone.
    """
    labels = np.asarray(labels)
    if hard_only:
        soft_target = -1 if soft == "exclude" else 0
        return np.where(labels == HARD, 1, np.where(labels == SOFT, soft_target, 0)).astype(np.int8)
    return (labels != NORMAL).astype(np.int8)


def evaluation_targets(labels: np.ndarray) -> np.ndarray:
    """Per-frame ground truth for detection metrics: HARD frames are anomalous, SOFT count as normal.

    Every variant (with or without ``-ha``) is scored against the same truth, the annotated
    anomalous segments, as in P Table 1 (UCF-Crime's temporal test annotations).
    """
    return (np.asarray(labels) == HARD).astype(np.int8)


def _stride(fps: float, rate: float) -> int:
    return max(1, round(fps / rate))


def adaptive_indices(
    labels: np.ndarray, fps: float, *, anomalous_fps: float, normal_fps: float, hard_only: bool, soft: str = "exclude"
) -> np.ndarray:
    """Sorted frame indices to train on: each run of equal target sampled at its class's rate.

    Sampling restarts at the first frame of every run, so short anomalous runs always give at
    least one sample. Excluded frames (``-1`` targets) are never returned.
    """
    targets = training_targets(labels, hard_only=hard_only, soft=soft)
    n = len(targets)
    if n == 0:
        return np.zeros(0, np.int64)
    edges = np.flatnonzero(np.diff(targets)) + 1
    starts = np.concatenate([[0], edges])
    ends = np.concatenate([edges, [n]])
    picked: list[np.ndarray] = []
    for s, e in zip(starts, ends):
        t = targets[s]
        if t < 0:
            continue
        stride = _stride(fps, anomalous_fps if t == 1 else normal_fps)
        picked.append(np.arange(s, e, stride))
    return np.concatenate(picked).astype(np.int64) if picked else np.zeros(0, np.int64)


def uniform_indices(n_frames: int, fps: float, rate: float) -> np.ndarray:
    """Every ``fps / rate``-th frame from 0: what a camera streaming at ``rate`` sends."""
    return np.arange(0, max(n_frames, 0), _stride(fps, rate), dtype=np.int64)


def thin(indices: np.ndarray, at_most: int | None) -> np.ndarray:
    """At most ``at_most`` of ``indices``, evenly spread (all of them when ``at_most`` is None)."""
    if at_most is None or len(indices) <= at_most:
        return indices
    keep = np.unique(np.linspace(0, len(indices) - 1, at_most).round().astype(np.int64))
    return indices[keep]
