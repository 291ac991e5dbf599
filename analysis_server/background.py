"""Per-camera background estimate for classifiers with ``frame_input: foreground`` (DESIGN.md §4).

A fixed camera's frame is its background plus what happens in front of it. A frame stream trained
from scratch on a few hundred scenes learns the backgrounds it saw (each training video's texture
ends up in its score); given ``frame − background`` it sees only the people and objects, the
thing an anomaly is made of. The background is OpenCV's MOG2 (Zivkovic 2004/2006), fed every frame
a camera sends, in order, as the flow is: causal, so the server and the training features compute
the same image. A person who stops (a fall, someone lying down) fades into it only after a
sizeable share of ``history`` frames.
"""

from __future__ import annotations

import cv2
import numpy as np

from pvad.config import BackgroundConfig


class CameraBackground:
    """One camera's background model; ``next`` feeds a frame and returns the background after it."""

    def __init__(self, cfg: BackgroundConfig) -> None:
        self.cfg = cfg
        self.reset()

    def reset(self) -> None:
        self._mog = cv2.createBackgroundSubtractorMOG2(
            history=self.cfg.history, varThreshold=self.cfg.var_threshold, detectShadows=False)
        self._shape: tuple[int, ...] | None = None

    def next(self, frame_rgb_u8: np.ndarray) -> np.ndarray:
        """Background (H x W x 3 uint8, RGB like the frame) once ``frame_rgb_u8`` is learnt."""
        if self._shape is not None and frame_rgb_u8.shape != self._shape:
            self.reset()  # a camera that changed resolution starts a new scene
        self._shape = frame_rgb_u8.shape
        self._mog.apply(frame_rgb_u8)
        return self._mog.getBackgroundImage()

    def foreground(self, frame_rgb_u8: np.ndarray) -> np.ndarray:
        """Feed a frame; its foreground mask (H x W uint8, 0 or 255)."""
        if self._shape is not None and frame_rgb_u8.shape != self._shape:
            self.reset()
        self._shape = frame_rgb_u8.shape
        return self._mog.apply(frame_rgb_u8)
