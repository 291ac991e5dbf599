"""JPEG encoding, whole-frame blur / pixelation helpers, and `none` (raw JPEG).

The registered `blur` and `pixelate` modes live in regions.py (whole frame or person regions)."""

from __future__ import annotations

import cv2
import numpy as np

from camera_client.anonymize import register_anonymizer
from pvad.config import NoAnonymizer
from pvad.v1 import pvad_pb2


def encode_jpeg(frame_bgr: np.ndarray, quality: int) -> bytes:
    ok, buf = cv2.imencode(".jpg", frame_bgr, [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise RuntimeError("OpenCV could not JPEG-encode the frame")
    return buf.tobytes()


def blur(frame_bgr: np.ndarray, kernel: int) -> np.ndarray:
    return cv2.GaussianBlur(frame_bgr, (kernel, kernel), 0)


def pixelate(frame_bgr: np.ndarray, block: int) -> np.ndarray:
    h, w = frame_bgr.shape[:2]
    small = cv2.resize(frame_bgr, (max(1, w // block), max(1, h // block)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


class _ImageAnonymizer:
    untrained = False

    def __init__(self, name: str, transform, quality: int) -> None:
        self.name = name
        self._transform = transform
        self._quality = quality

    def __call__(self, frame_bgr: np.ndarray) -> pvad_pb2.Image:
        return pvad_pb2.Image(anonymizer=self.name, jpeg=encode_jpeg(self._transform(frame_bgr), self._quality))


# `blur` and `pixelate` (whole frame or person regions) are registered in regions.py.


@register_anonymizer("none")
def _make_none(cfg: NoAnonymizer) -> _ImageAnonymizer:
    return _ImageAnonymizer("none", lambda f: f, cfg.jpeg_quality)
