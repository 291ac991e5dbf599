"""Dense optical flow between consecutive reconstructed frames of one camera (DESIGN.md §4).

The flow stream sees flow as a 3-channel image (H x W x 3, float32 in [0, 1]):
channel 0 = 0.5 + dx / (2 clip), channel 1 = 0.5 + dy / (2 clip), channel 2 = |(dx, dy)| / clip,
each clipped to [0, 1]; `clip` is the displacement in pixels that maps to full scale.
The first frame of a camera has no predecessor: its flow is zero motion.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

import cv2
import numpy as np

from analysis_server.background import CameraBackground

if TYPE_CHECKING:
    from analysis_server.normality.camera import CameraNormality
from pvad.config import FlowConfig

_DIS_PRESETS = {
    "ultrafast": cv2.DISOPTICAL_FLOW_PRESET_ULTRAFAST,
    "fast": cv2.DISOPTICAL_FLOW_PRESET_FAST,
    "medium": cv2.DISOPTICAL_FLOW_PRESET_MEDIUM,
}


class FlowEstimator:
    """Computes flow on 8-bit grayscale frames; safe to share between threads (DIS keeps buffers,
    so each thread gets its own DIS instance)."""

    def __init__(self, cfg: FlowConfig) -> None:
        self.cfg = cfg
        self._local = threading.local()

    def flow(self, prev_gray: np.ndarray, gray: np.ndarray) -> np.ndarray:
        """Raw flow (H x W x 2 float32, pixels) from `prev_gray` to `gray`."""
        if self.cfg.method == "dis":
            dis = getattr(self._local, "dis", None)
            if dis is None:
                dis = self._local.dis = cv2.DISOpticalFlow_create(_DIS_PRESETS[self.cfg.dis_preset])
            return dis.calc(prev_gray, gray, None)
        return cv2.calcOpticalFlowFarneback(prev_gray, gray, None, 0.5, 3, 15, 3, 5, 1.2, 0)

    def encode(self, flow: np.ndarray) -> np.ndarray:
        """Flow (H x W x 2) -> 3-channel image in [0, 1] (layout in the module docstring)."""
        clip = self.cfg.clip
        dx, dy = flow[..., 0], flow[..., 1]
        mag = np.sqrt(dx * dx + dy * dy)
        img = np.stack([0.5 + dx / (2 * clip), 0.5 + dy / (2 * clip), mag / clip], axis=-1)
        return np.clip(img, 0.0, 1.0, out=img).astype(np.float32, copy=False)


class CameraFlow:
    """Per-camera state of the analysis pipeline: the previous reconstructed frame and the last raw
    flow; for a classifier that sees the foreground, the camera's background model; for a server
    that learns each camera's normal activity, the camera's normality state."""

    def __init__(self, estimator: FlowEstimator, background: CameraBackground | None = None,
                 normality: "CameraNormality | None" = None) -> None:
        self.estimator = estimator
        self.background = background
        self.normality = normality
        self.prev_gray: np.ndarray | None = None
        self.raw: np.ndarray | None = None  # flow (H x W x 2, pixels) from the previous frame to the last one
        self.has_flow = False  # False for a camera's first frame (its flow is zero by definition)

    def reset(self) -> None:
        """The next frame does not follow the last one: flow, background and smoothing start again."""
        self.prev_gray = None
        if self.background is not None:
            self.background.reset()
        if self.normality is not None:
            self.normality.discontinuity()

    def advance(self, frame_rgb_u8: np.ndarray) -> np.ndarray:
        """Raw flow (``self.raw``) from the previous frame to this one; zero motion for the first frame."""
        gray = cv2.cvtColor(frame_rgb_u8, cv2.COLOR_RGB2GRAY)
        self.has_flow = self.prev_gray is not None and self.prev_gray.shape == gray.shape
        flow = self.estimator.flow(self.prev_gray, gray) if self.has_flow else np.zeros((*gray.shape, 2), np.float32)
        self.prev_gray, self.raw = gray, flow
        return flow

    def next(self, frame_rgb_u8: np.ndarray) -> np.ndarray:
        """Flow image (the classifier's input) from the previous frame to this one."""
        return self.estimator.encode(self.advance(frame_rgb_u8))
