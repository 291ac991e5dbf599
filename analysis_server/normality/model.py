"""A fitted normality model: the density of a camera's normal features, its threshold and σ_t.

Scoring a frame: each grid position's kNN distance (``density.PositionKnn``), the mean of the
``top`` largest, then a trailing mean over ``smoothing`` frames of the camera (causal, so the live
server and the offline evaluation compute the same number). That score ``s`` becomes

    σ_t = 1 / (1 + exp(-(s - threshold) / (threshold / 4)))

so σ_t ≥ 0.5 exactly when ``s`` is over the threshold, and the SAS (DESIGN §5) accumulates it as it
does a classifier's confidence. The threshold is set without any anomaly: the learning frames are
cut into ``folds`` consecutive blocks, each block is scored by a model of the other blocks, and the
threshold is ``threshold_margin`` times the highest of those held-out scores.

A model records what it was fitted on (``source``: the encoder id of a latent camera, or the
anonymizer of an image camera, and the frame size); scoring other input with it is refused.
"""

from __future__ import annotations

import io
import json
import math
import time
from dataclasses import dataclass, field

import numpy as np

from analysis_server.normality.density import (
    BANKS,
    PositionKnn,
    SharedKnn,
    feature_scale,
)
from analysis_server.normality.objects import RAW, ObjectKnn
from pvad.config.normality import NormalityConfig
from pvad.errors import ModelLoadError

FORMAT = "pvad-normality-v1"


def _bank(cfg: NormalityConfig, feats: np.ndarray, scale: np.ndarray, rows: np.ndarray) -> PositionKnn | SharedKnn:
    return BANKS[cfg.bank].fit(feats, k=cfg.k, scale=scale, rows=rows, row_weight=cfg.row_weight,
                               active_flow=cfg.active_flow, active_fg=cfg.active_fg, bank_size=cfg.bank_size,
                               columns=_active_columns(cfg))


def _active_columns(cfg: NormalityConfig) -> tuple[int, int]:
    """Where max |flow| and the foreground fraction are among the features (shared bank; the config
    validator makes sure they are there)."""
    f = cfg.motion.features
    return (f.index("max"), f.index("fg")) if {"max", "fg"} <= set(f) else (1, 2)


def grid_rows(frame_shape: tuple[int, int], cell: int) -> np.ndarray:
    """Each grid position's row, 0 (top) to 1 (bottom), row-major like the features."""
    rows, cols = frame_shape[0] // cell, frame_shape[1] // cell
    return np.repeat(np.arange(rows, dtype=np.float32) / max(rows - 1, 1), cols)


def smooth(scores: np.ndarray, window: int) -> np.ndarray:
    """Trailing mean over ``window`` values (fewer at the start), as the live server computes it."""
    c = np.cumsum(np.concatenate([[0.0], scores]))
    i = np.arange(1, len(scores) + 1)
    lo = np.maximum(0, i - window)
    return (c[i] - c[lo]) / (i - lo)


def top_mean(distances: np.ndarray, top: int) -> np.ndarray:
    """M x P distances -> M frame scores: the mean of each frame's ``top`` largest."""
    top = min(top, distances.shape[1])
    return np.partition(distances, -top, axis=1)[:, -top:].mean(axis=1)


@dataclass
class NormalityModel:
    source: str  # "latent:<encoder id>" or "image:<anonymizer>"
    frame_shape: tuple[int, int]  # H, W of the frames it was fitted on
    features: dict  # the feature settings (MotionGridConfig as a dict)
    k: int
    top: int
    smoothing: int
    threshold: float
    knn: PositionKnn | SharedKnn
    frames: int  # learning frames used
    heldout_max: float  # highest held-out score of the learning frames
    fitted_ns: int = field(default_factory=time.time_ns)
    objects: ObjectKnn | None = None  # the object bank (object features requested and enough objects learnt)
    scales: tuple[float, float] | None = None  # with objects: what the grid and the object scores are divided by

    # ------------------------------------------------------------------ fitting

    @classmethod
    def fit(cls, feats: np.ndarray, segments: np.ndarray, *, cfg: NormalityConfig, source: str,
            frame_shape: tuple[int, int], objects: list[np.ndarray] | None = None,
            object_features: list[str] | None = None) -> NormalityModel:
        """Fit on ``feats`` (N frames x P positions x D) of normal frames; ``segments`` (N) numbers the
        runs of consecutive frames (smoothing does not cross from one to the next). With
        ``object_features``, ``objects`` holds each frame's object rows (``objects.object_rows``)."""
        n = len(feats)
        if n < cfg.min_frames:
            raise ValueError(f"{n} learning frames; a fit needs at least {cfg.min_frames} (normality.min_frames)")
        scale = feature_scale(feats)
        rows = grid_rows(frame_shape, cfg.motion.cell)
        obj_bank = (ObjectKnn.fit(objects, k=cfg.objects.k, features=object_features, frame_height=frame_shape[0])
                    if object_features is not None and objects is not None else None)  # None: too few objects
        use_objects = obj_bank is not None
        folds = np.array_split(np.arange(n), cfg.folds)
        held_grid, held_obj = [], []
        for block in folds:
            rest = np.setdiff1d(np.arange(n), block, assume_unique=True)
            knn = _bank(cfg, feats[rest], scale, rows)
            held_grid.append(smooth_runs(top_mean(knn.distances(feats[block]), cfg.top), segments[block], cfg.smoothing))
            if use_objects:
                bank = ObjectKnn.fit([objects[i] for i in rest], k=cfg.objects.k, features=object_features,
                                     frame_height=frame_shape[0])
                raw = bank.frame_scores([objects[i] for i in block]) if bank is not None else np.zeros(len(block))
                held_obj.append(smooth_runs(raw, segments[block], cfg.smoothing))
        heldout, scales = np.concatenate(held_grid), None
        if use_objects:
            obj_held = np.concatenate(held_obj)
            scales = (_scale(heldout), _scale(obj_held))
            heldout = heldout / scales[0] + obj_held / scales[1]
        heldout_max = float(heldout.max())
        threshold = max(cfg.threshold_margin * heldout_max, 1e-3)
        settings = {**cfg.motion.model_dump(), "objects": list(object_features) if object_features else None}
        return cls(source=source, frame_shape=frame_shape, features=settings, k=cfg.k, top=cfg.top,
                   smoothing=cfg.smoothing, threshold=threshold, knn=_bank(cfg, feats, scale, rows),
                   frames=n, heldout_max=heldout_max, objects=obj_bank, scales=scales)

    # ------------------------------------------------------------------ scoring

    def raw_scores(self, feats: np.ndarray, objects: list[np.ndarray] | None = None) -> np.ndarray:
        """Unsmoothed frame scores of M frames (M x P x D grid features; with an object bank, ``objects``
        holds each frame's object rows, None counting as no object)."""
        if feats.shape[1] != self.knn.positions:
            raise ValueError(f"features have {feats.shape[1]} positions; the model has {self.knn.positions}")
        grid = top_mean(self.knn.distances(feats), self.top)
        if self.objects is None:
            return grid
        objects = objects if objects is not None else [None] * len(feats)
        empty = np.zeros((0, len(RAW)), np.float32)
        obj = self.objects.frame_scores([o if o is not None else empty for o in objects])
        return grid / self.scales[0] + obj / self.scales[1]

    def sigma(self, score: float | np.ndarray):
        """σ_t of a smoothed score (0.5 at the threshold)."""
        x = -(np.asarray(score, np.float64) - self.threshold) / (self.threshold / 4.0)
        out = 1.0 / (1.0 + np.exp(np.clip(x, -60.0, 60.0)))
        return float(out) if np.ndim(out) == 0 else out

    def check_input(self, source: str, frame_shape: tuple[int, int], features: dict | None = None) -> str | None:
        """Why this model must not score such frames (or with these feature settings), or None when it may."""
        if features is not None and _feature_key(features) != _feature_key(self.features):
            return f"fitted with features {_feature_key(self.features)}, but they are now {_feature_key(features)}"
        if source != self.source:
            return f"fitted on {self.source}, but the frames now come from {source}"
        if tuple(frame_shape) != tuple(self.frame_shape):
            return f"fitted on {self.frame_shape[1]}x{self.frame_shape[0]} frames, now {frame_shape[1]}x{frame_shape[0]}"
        return None

    def describe(self) -> dict:
        return {"source": self.source, "frames": self.frames, "positions": self.knn.positions,
                "points": self.knn.points, "threshold": round(self.threshold, 4),
                "heldout_max": round(self.heldout_max, 4), "bytes": len(self.to_bytes()),
                "objects": self.objects.points if self.objects is not None else 0}

    # ------------------------------------------------------------------ files

    def to_bytes(self) -> bytes:
        header = {"format": FORMAT, "source": self.source, "frame_shape": list(self.frame_shape),
                  "features": self.features, "k": self.k, "top": self.top, "smoothing": self.smoothing,
                  "threshold": self.threshold, "frames": self.frames, "heldout_max": self.heldout_max,
                  "fitted_ns": self.fitted_ns, "bank": self.knn.kind, "scales": self.scales}
        objects = {f"objects.{k}": v for k, v in self.objects.arrays().items()} if self.objects is not None else {}
        buf = io.BytesIO()
        np.savez_compressed(buf, header=np.frombuffer(json.dumps(header).encode(), np.uint8), scale=self.knn.scale,
                            **self.knn.arrays(), **objects)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes, *, what: str = "normality model") -> NormalityModel:
        """Raises ModelLoadError naming ``what`` for anything that is not a complete model."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            header = json.loads(arrays.pop("header").tobytes().decode())
            if header.get("format") != FORMAT:
                raise ValueError(f"format {header.get('format')!r}, expected {FORMAT!r}")
            scale = arrays.pop("scale")
            obj = {k.split(".", 1)[1]: arrays.pop(k) for k in list(arrays) if k.startswith("objects.")}
            scales = header.get("scales")
            if bool(obj) != (scales is not None):
                raise ValueError("the object bank and its scales do not match")
            objects = ObjectKnn.from_arrays(obj) if obj else None
            knn = BANKS[header["bank"]].from_arrays(int(header["k"]), scale, arrays)
            threshold = float(header["threshold"])
            if not math.isfinite(threshold) or threshold <= 0:
                raise ValueError(f"threshold {threshold}")
            return cls(source=header["source"], frame_shape=tuple(header["frame_shape"]), features=header["features"],
                       k=int(header["k"]), top=int(header["top"]), smoothing=int(header["smoothing"]),
                       threshold=threshold, knn=knn,
                       frames=int(header["frames"]), heldout_max=float(header["heldout_max"]),
                       fitted_ns=int(header["fitted_ns"]), objects=objects,
                       scales=(float(scales[0]), float(scales[1])) if scales is not None else None)
        except ModelLoadError:
            raise
        except Exception as err:  # zip, JSON, key or shape errors of a damaged file
            raise ModelLoadError(f"{what}: not a readable pvad normality model ({type(err).__name__}: {err})") from None


def _feature_key(features: dict) -> dict:
    """The settings that decide a model's feature layout (models before ``motion.features`` had the first three)."""
    return {"features": list(features.get("features", ["mean", "max", "fg"])), "cell": features.get("cell"),
            "latent_diff": bool(features.get("latent_diff", False)), "objects": features.get("objects")}


def _scale(heldout: np.ndarray) -> float:
    """What a member's scores are divided by: the 99th percentile of its held-out learning scores."""
    return max(float(np.percentile(heldout, 99)), 1e-6)


def smooth_runs(raw: np.ndarray, segments: np.ndarray, window: int) -> np.ndarray:
    """``smooth`` restarted at every change of ``segments`` (a new video, a camera discontinuity)."""
    out = np.empty(len(raw), np.float64)
    starts = np.flatnonzero(np.r_[True, segments[1:] != segments[:-1]])
    for a, b in zip(starts, [*starts[1:], len(raw)]):
        out[a:b] = smooth(raw[a:b], window)
    return out


def fuse(rule: str, classifier: float | None, normality: float | None) -> float:
    """σ_t from the classifier's confidence and the normality model's σ by ``rule`` (NormalityConfig.fusion).
    A missing side (no classifier run, or a camera still learning) leaves the other."""
    present = [s for s in (classifier, normality) if s is not None]
    if not present:
        return 0.0
    if rule == "classifier":
        return classifier if classifier is not None else 0.0
    if rule == "normality":
        return normality if normality is not None else 0.0
    if rule == "max":
        return max(present)
    return sum(present) / len(present)  # mean
