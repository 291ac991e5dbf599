"""One camera's normality state: learning → scoring, the bounded learning buffer, causal smoothing.

Memory while learning is bounded by ``normality.max_frames`` frames of features (P positions x F
float32 each: 48 x 4 x 4 B = 768 B a frame at the default 40-px cells and four features, so 4.6 MB at
6,000 frames; with object features at most ``objects.MAX_OBJECTS`` = 64 boxes x 8 float32 = 2 KB a
frame more, so at most 17 MB in all).
When the buffer is full every other kept frame is dropped and from then on only every second frame
is kept (then every fourth, ...), so a long learning period is subsampled evenly instead of cut.
"""

from __future__ import annotations

import enum
import logging
import time
from collections import deque
from dataclasses import dataclass

import numpy as np

from analysis_server.background import CameraBackground
from analysis_server.normality.model import NormalityModel
from analysis_server.normality.objects import RAW
from pvad.config import BackgroundConfig
from pvad.config.normality import NormalityConfig

log = logging.getLogger(__name__)
RAW_SOURCE = "image:none"  # what a camera that sends its frames unanonymized is (Payload.source)


class Phase(enum.Enum):
    LEARNING = "learning"
    SCORING = "scoring"


@dataclass
class NormalityStep:
    phase: Phase
    score: float | None = None  # smoothed distance score (scoring; None for a frame with no motion to measure yet)
    sigma: float | None = None  # σ of the normality model (when score is set)
    fitted: NormalityModel | None = None  # set on the frame whose arrival completed learning


class CameraNormality:
    def __init__(self, cfg: NormalityConfig, camera_id: str, model: NormalityModel | None = None, *,
                 object_features: list[str] | None = None) -> None:
        self.cfg = cfg
        self.camera_id = camera_id
        self.object_features = object_features  # None: grid features only (no detector, or objects off)
        self.model = model
        self.foreground = CameraBackground(BackgroundConfig(history=cfg.motion.history,
                                                            var_threshold=cfg.motion.var_threshold))
        self.learn_only = False  # a `pvad learn` stream: learn every frame, fit when the stream ends
        self.prev_latent: np.ndarray | None = None  # a latent camera's previous latent (latent_diff features)
        self._recent: deque[float] = deque(maxlen=cfg.smoothing)
        self._reset_buffer()

    def objects_for(self, source: str) -> list[str] | None:
        """The object features this camera's frames from ``source`` use: with ``objects.enabled: auto``
        only unanonymized frames (``image:none``), where Ped2's tuning videos chose them; on anonymized
        frames the detector finds few or no objects and they lowered the tuning AUC (README)."""
        if self.object_features is None or (self.cfg.objects.enabled is not True and source != RAW_SOURCE):
            return None
        return self.object_features

    def _settings(self, source: str) -> dict:
        objects = self.objects_for(source)
        return {**self.cfg.motion.model_dump(), "objects": list(objects) if objects else None}

    def _objects_note(self, model: NormalityModel) -> str:
        if self.objects_for(self._source) is None:
            return ""
        if model.objects is None:
            return (f"; only {sum(len(o) for o in self._objects)} objects detected while learning, so the model "
                    "scores grid features only")
        return f", {model.objects.points} learning objects"

    # ------------------------------------------------------------------ state

    @property
    def phase(self) -> Phase:
        return Phase.SCORING if self.model is not None and not self.learn_only else Phase.LEARNING

    def _reset_buffer(self) -> None:
        self._feats: list[np.ndarray] = []
        self._objects: list[np.ndarray] = []  # each kept frame's object rows (object features on)
        self._segments: list[int] = []
        self._segment = 0
        self._stride, self._seen = 1, 0
        self._source: str | None = None
        self._shape: tuple[int, int] | None = None

    @property
    def learned_frames(self) -> int:
        """Frames observed while learning (kept or subsampled away)."""
        return self._seen

    @property
    def buffered_bytes(self) -> int:
        return sum(f.nbytes for f in self._feats) + sum(o.nbytes for o in self._objects)

    def discontinuity(self) -> None:
        """The next frame does not follow the previous one (new stream, new video): restart the
        smoothing and the foreground model, and start a new run of learning frames."""
        self._recent.clear()
        self.foreground.reset()
        self.prev_latent = None
        self._segment += 1

    def relearn(self, *, learn_only: bool = False, reason: str = "") -> None:
        """Drop the model and the buffer; learn again (from a `pvad learn` stream if ``learn_only``)."""
        self.model = None
        self.learn_only = learn_only
        self._reset_buffer()
        self.discontinuity()
        log.info("camera %s: normality model reset%s; learning%s", self.camera_id, f" ({reason})" if reason else "",
                 " from a `pvad learn` stream" if learn_only else f" from the next {self.cfg.learning_frames} frames")

    # ------------------------------------------------------------------ per frame

    def latent_diff(self, latent: np.ndarray | None) -> np.ndarray | None:
        """|z_t - z_(t-1)| of a latent camera (zeros for its first latent), None for an image camera."""
        if latent is None:
            self.prev_latent = None
            return None
        prev = self.prev_latent if self.prev_latent is not None and self.prev_latent.shape == latent.shape else latent
        self.prev_latent = latent
        return np.abs(latent - prev)

    def step(self, feats: np.ndarray, *, source: str, frame_shape: tuple[int, int], has_flow: bool,
             objects: np.ndarray | None = None) -> NormalityStep:
        """Learn from or score one frame's features (P x D grid features; ``objects``: its object rows,
        K x 8, when object features are on)."""
        if self.model is not None and not self.learn_only:
            why = self.model.check_input(source, frame_shape, self._settings(source))
            if why is not None:
                log.warning("camera %s: its normality model was %s; the model is dropped and the camera learns again "
                            "(no alarms until then)", self.camera_id, why)
                self.relearn(reason=why)
        if self.phase is Phase.SCORING:
            if not has_flow:  # the first frame after a discontinuity has no motion and a blank foreground model
                return NormalityStep(Phase.SCORING)
            raw = float(self.model.raw_scores(feats[None], [objects])[0])
            self._recent.append(raw)
            score = float(np.mean(self._recent))
            return NormalityStep(Phase.SCORING, score, self.model.sigma(score))
        self._observe(feats, objects, source, frame_shape, has_flow)
        if (not self.learn_only and self.cfg.learning_frames and self._seen >= self.cfg.learning_frames
                and len(self._feats) >= self.cfg.min_frames):  # else: learn on until there are enough frames with motion
            return NormalityStep(Phase.LEARNING, fitted=self.finish())
        return NormalityStep(Phase.LEARNING)

    def _observe(self, feats: np.ndarray, objects: np.ndarray | None, source: str, frame_shape: tuple[int, int],
                 has_flow: bool) -> None:
        if self._source is not None and (source, frame_shape) != (self._source, self._shape):
            log.warning("camera %s: learning frames changed from %s %s to %s %s; learning restarts",
                        self.camera_id, self._source, self._shape, source, frame_shape)
            self._reset_buffer()
        self._source, self._shape = source, frame_shape
        self._seen += 1
        if not has_flow:  # a run's first frame has no motion yet: it would teach "nothing moves"
            return
        if (self._seen - 1) % self._stride:
            return
        self._feats.append(feats.astype(np.float32, copy=True))
        if self.objects_for(source) is not None:
            self._objects.append(np.zeros((0, len(RAW)), np.float32) if objects is None else objects.astype(np.float32))
        self._segments.append(self._segment)
        if len(self._feats) >= self.cfg.max_frames:
            self._feats, self._segments, self._objects = self._feats[::2], self._segments[::2], self._objects[::2]
            self._stride *= 2
            log.info("camera %s: learning buffer full (%d frames): keeping every %d-th frame from now on",
                     self.camera_id, self.cfg.max_frames, self._stride)

    def finish(self) -> NormalityModel:
        """Fit on the buffer; the camera scores from its next frame. Raises ValueError when too few frames."""
        if not self._feats:
            raise ValueError(f"camera {self.camera_id}: no learning frames with motion")
        t0 = time.perf_counter()
        model = NormalityModel.fit(np.stack(self._feats), np.asarray(self._segments), cfg=self.cfg,
                                   source=self._source, frame_shape=self._shape,
                                   objects=self._objects, object_features=self.objects_for(self._source))
        log.info("camera %s: normality model fitted on %d frames (%d observed) in %.2f s: threshold %.3f, %d points%s",
                 self.camera_id, model.frames, self._seen, time.perf_counter() - t0, model.threshold, model.knn.points,
                 self._objects_note(model))
        self.model, self.learn_only = model, False
        self._reset_buffer()
        self._recent.clear()
        return model
