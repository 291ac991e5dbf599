"""Object-level normality: each detected object's size, place and velocity against the camera's normal objects.

Per object (a detector box on the frame the server sees) ``object_rows`` measures the box's centre x,
bottom y, width and height and the optical flow inside it (mean x and y velocity, mean and 90th
percentile speed, pixels per frame). ``ObjectKnn`` learns the camera's perspective from its learning
objects (box height as a linear function of the bottom edge: things further away are smaller and
move fewer pixels) and describes each object in units of the height an object has at its place:

* ``y`` bottom edge / frame height; ``w``, ``h`` box size ÷ that height;
* ``vx``, ``vy``, ``speed``, ``speed_p90`` flow ÷ that height (a perspective-free speed).

Each feature is divided by its standard deviation over the learning objects, and an object's distance
is the mean distance to its ``k`` nearest learning objects (scikit-learn KD-tree), as Reiss & Hoshen
(2022) score objects. A frame's object score is its most unusual object's, 0 with no object. The
default features were chosen on Ped2's tuning videos (README).
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KDTree

from analysis_server.detectors.base import Detections

RAW = ("cx", "bottom", "w", "h", "vx", "vy", "speed", "speed_p90")  # object_rows' columns, in pixels
FEATURES = ("y", "w", "h", "vx", "vy", "speed", "speed_p90")
MIN_OBJECTS = 20  # learning objects a fit needs; fewer (a detector that finds nothing here) fits no object bank
MAX_OBJECTS = 64  # boxes measured per frame at most (the most confident): bounds a learning frame to 2 KB


def object_rows(dets: Detections, flow: np.ndarray) -> np.ndarray:
    """K x 8 float32 (``RAW``) for the boxes of ``dets`` (the ``MAX_OBJECTS`` most confident) on a frame
    whose flow is ``flow`` (H x W x 2)."""
    h, w = flow.shape[:2]
    out = []
    keep = np.argsort(-np.asarray(dets.scores), kind="stable")[:MAX_OBJECTS]
    for x0, y0, x1, y1 in np.asarray(dets.boxes, np.float32)[keep]:
        a, b = int(np.clip(x0, 0, w - 1)), int(np.clip(x1, 0, w - 1))
        c, d = int(np.clip(y0, 0, h - 1)), int(np.clip(y1, 0, h - 1))
        if b <= a or d <= c:
            continue
        v = flow[c : d + 1, a : b + 1].reshape(-1, 2).astype(np.float32)
        speed = np.hypot(v[:, 0], v[:, 1])
        out.append([(a + b) / 2, d, b - a, d - c, v[:, 0].mean(), v[:, 1].mean(), speed.mean(),
                    np.percentile(speed, 90)])
    return np.asarray(out, np.float32).reshape(-1, len(RAW))


def describe(rows: np.ndarray, perspective: np.ndarray, features: list[str], frame_height: int) -> np.ndarray:
    """Unscaled feature vectors (``features``) of K objects (``RAW`` rows) under ``perspective`` (a, b:
    an object's height at bottom edge y is a + b y)."""
    at = np.maximum(perspective[0] + perspective[1] * rows[:, 1], 4.0)  # the height an object has there
    cols = {"y": rows[:, 1] / frame_height, "w": rows[:, 2] / at, "h": rows[:, 3] / at, "vx": rows[:, 4] / at,
            "vy": rows[:, 5] / at, "speed": rows[:, 6] / at, "speed_p90": rows[:, 7] / at}
    return np.stack([cols[f] for f in features], axis=1).astype(np.float32)


class ObjectKnn:
    def __init__(self, k: int, features: list[str], frame_height: int, perspective: np.ndarray, scale: np.ndarray,
                 bank: np.ndarray) -> None:
        self.k, self.features, self.frame_height = k, list(features), frame_height
        self.perspective, self.scale, self.bank = perspective.astype(np.float64), scale.astype(np.float32), bank
        self._tree = KDTree(bank)


    @classmethod
    def fit(cls, objects: list[np.ndarray], *, k: int, features: list[str], frame_height: int) -> ObjectKnn | None:
        """Fit on the objects of the learning frames (one ``RAW`` array per frame); None when there are
        fewer than ``MIN_OBJECTS``."""
        rows = np.concatenate(objects) if objects else np.zeros((0, len(RAW)), np.float32)
        if len(rows) < MIN_OBJECTS:
            return None
        if np.ptp(rows[:, 1]) > 1.0:  # box height ~ a + b * bottom edge
            a, b = np.linalg.lstsq(np.c_[np.ones(len(rows)), rows[:, 1]], rows[:, 3], rcond=None)[0]
        else:  # every object on one line: no perspective to learn
            a, b = float(np.median(rows[:, 3])), 0.0
        v = describe(rows, np.array([a, b]), features, frame_height)
        s = v.std(axis=0)
        scale = np.where(s > 1e-6, s, 1.0)
        return cls(k, features, frame_height, np.array([a, b]), scale, (v / scale).astype(np.float32))

    @property
    def points(self) -> int:
        return len(self.bank)

    def frame_scores(self, objects: list[np.ndarray]) -> np.ndarray:
        """Per frame the largest object distance (0 for a frame with no object)."""
        out = np.zeros(len(objects), np.float64)
        sizes = np.array([len(o) for o in objects])
        if sizes.sum() == 0:
            return out
        v = describe(np.concatenate(objects), self.perspective, self.features, self.frame_height) / self.scale
        d, _ = self._tree.query(v, k=min(self.k, len(self.bank)))
        d = d.mean(axis=1)
        ends = np.cumsum(sizes)
        for i, (n, end) in enumerate(zip(sizes, ends)):
            if n:
                out[i] = d[end - n : end].max()
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"bank": self.bank, "scale": self.scale, "perspective": self.perspective,
                "meta": np.array([self.k, self.frame_height], np.int64),
                "features": np.frombuffer(",".join(self.features).encode(), np.uint8)}

    @classmethod
    def from_arrays(cls, a: dict) -> ObjectKnn:
        features = a["features"].tobytes().decode().split(",")
        if any(f not in FEATURES for f in features) or a["bank"].ndim != 2 or a["bank"].shape[1] != len(features):
            raise ValueError("the object bank does not match its features")
        k, frame_height = (int(x) for x in a["meta"])
        return cls(k, features, frame_height, a["perspective"], a["scale"], a["bank"])
