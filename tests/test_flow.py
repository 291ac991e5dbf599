"""Optical flow between consecutive frames: a known shift is recovered by DIS and Farnebäck."""

import cv2
import numpy as np
import pytest

from analysis_server.flow import CameraFlow, FlowEstimator
from pvad.config import FlowConfig


def _textured(seed=0):
    img = (np.random.default_rng(seed).random((240, 320)) * 255).astype(np.uint8)
    img = cv2.GaussianBlur(img, (7, 7), 2)
    return np.repeat(img[..., None], 3, axis=2)


@pytest.mark.parametrize("method", ["dis", "farneback"])
def test_recovers_a_known_shift(method):
    est = FlowEstimator(FlowConfig(method=method))
    a = _textured()
    b = np.roll(a, shift=(2, 3), axis=(0, 1))  # content moves 3 px right, 2 px down
    flow = est.flow(cv2.cvtColor(a, cv2.COLOR_RGB2GRAY), cv2.cvtColor(b, cv2.COLOR_RGB2GRAY))
    inner = flow[20:-20, 20:-20]
    assert np.median(inner[..., 0]) == pytest.approx(3.0, abs=0.3)
    assert np.median(inner[..., 1]) == pytest.approx(2.0, abs=0.3)


def test_flow_image_layout_and_first_frame():
    cam = CameraFlow(FlowEstimator(FlowConfig(clip=10.0)))
    a = _textured()
    first = cam.next(a)
    assert first.shape == (240, 320, 3) and first.dtype == np.float32
    assert np.allclose(first[..., :2], 0.5) and np.allclose(first[..., 2], 0.0)  # no predecessor: zero motion
    moved = cam.next(np.roll(a, 5, axis=1))[20:-20, 20:-20]
    assert np.median(moved[..., 0]) == pytest.approx(0.5 + 5 / 20, abs=0.03)  # dx = +5 px of clip 10
    assert np.median(moved[..., 2]) == pytest.approx(0.5, abs=0.03)  # |flow| = 5 of 10
    assert moved.min() >= 0.0 and moved.max() <= 1.0
