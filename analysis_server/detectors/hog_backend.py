"""OpenCV's HOG + linear SVM people detector: ships with OpenCV (< 5), needs no weights file.

It reports people only, so a bag-of-objects from it has a person count and 79 zeros. Its window is
64x128 pixels: in a 320x240 frame only people taller than about 128 px are found, so frames are
upscaled 2x before detection (boxes are mapped back); people under about 64 px stay unseen.
Scores are SVM margins (about 0-3), not probabilities. One person often fires windows at several
scales (the whole body and parts of it), so after NMS at IoU 0.45 a window lying mostly (> 70 %)
inside a larger kept window is dropped too; two people one in front of the other can thus count
as one.
"""

from __future__ import annotations

import logging

import cv2
import numpy as np

from analysis_server.detectors.base import (
    PERSON,
    Detections,
    Detector,
    register_detector,
)
from pvad.config import HogDetector
from pvad.errors import ModelLoadError

log = logging.getLogger(__name__)

UPSCALE_BELOW_HEIGHT = 480
NMS_IOU = 0.45
CONTAINED = 0.7  # a window with this share of its area inside a larger one is the same person


def _drop_contained(boxes: np.ndarray, share: float = CONTAINED) -> np.ndarray:
    """Indices (largest first) of the xyxy boxes kept after dropping those mostly inside a kept one."""
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    kept: list[int] = []
    for i in np.argsort(-area, kind="stable"):
        if kept:
            k = np.asarray(kept)
            iw = np.minimum(boxes[k, 2], boxes[i, 2]) - np.maximum(boxes[k, 0], boxes[i, 0])
            ih = np.minimum(boxes[k, 3], boxes[i, 3]) - np.maximum(boxes[k, 1], boxes[i, 1])
            inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
            if (inter / np.minimum(area[k], area[i]).clip(1e-6) > share).any():
                continue
        kept.append(int(i))
    return np.asarray(kept, np.int64)


class HogPeople(Detector):
    name = "hog"
    classes = ("person",)

    def __init__(self, cfg: HogDetector) -> None:
        if not hasattr(cv2, "HOGDescriptor_getDefaultPeopleDetector"):
            raise ModelLoadError("this OpenCV has no HOG people detector (removed in OpenCV 5): install opencv-python<5")
        self.hog = cv2.HOGDescriptor()
        self.hog.setSVMDetector(cv2.HOGDescriptor_getDefaultPeopleDetector())
        self.cfg = cfg
        log.info("detector: OpenCV HOG people detector (person count only)")

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        h = frame_bgr.shape[0]
        k = 2.0 if h < UPSCALE_BELOW_HEIGHT else 1.0
        img = cv2.resize(frame_bgr, None, fx=k, fy=k, interpolation=cv2.INTER_LINEAR) if k != 1.0 else frame_bgr
        s = self.cfg.win_stride
        rects, weights = self.hog.detectMultiScale(
            img, hitThreshold=self.cfg.hit_threshold, winStride=(s, s), scale=self.cfg.scale
        )
        if len(rects) == 0:
            return Detections.empty()
        rects = np.asarray(rects, np.float32) / k
        scores = np.asarray(weights, np.float32).reshape(-1)
        idx = np.asarray(cv2.dnn.NMSBoxes(rects.tolist(), scores.tolist(), float(self.cfg.hit_threshold), NMS_IOU))
        idx = idx.astype(np.int64).reshape(-1)
        rects, scores = rects[idx], scores[idx]
        boxes = np.concatenate([rects[:, :2], rects[:, :2] + rects[:, 2:]], 1)
        keep = _drop_contained(boxes)
        h, w = frame_bgr.shape[:2]
        boxes = np.clip(boxes[keep], 0, [w, h, w, h])
        return Detections.from_arrays(boxes, scores[keep], np.full(len(keep), PERSON))


@register_detector("hog")
def _make(cfg: HogDetector) -> Detector:
    return HogPeople(cfg)
