"""Image-quality metrics of G §5.1.1: known values, edge cases, layouts."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.eval.image_metrics import batch_metrics, mse, psnr, ssim


@pytest.fixture
def image() -> np.ndarray:
    rng = np.random.default_rng(0)
    return rng.uniform(0.2, 0.8, size=(48, 64, 3))


def test_identical_images(image):
    assert mse(image, image) == 0.0
    assert psnr(image, image) == math.inf
    assert ssim(image, image) == pytest.approx(1.0)


def test_identical_uint8_images():
    img = np.random.default_rng(1).integers(0, 256, size=(32, 32, 3), dtype=np.uint8)
    assert psnr(img, img) == math.inf
    assert ssim(img, img) == pytest.approx(1.0)


def test_constant_offset_gives_known_mse_and_psnr(image):
    shifted = image + 0.1
    assert mse(image, shifted) == pytest.approx(0.01, rel=1e-9)
    assert psnr(image, shifted) == pytest.approx(20.0, abs=1e-9)


def test_uint8_uses_data_range_255():
    a = np.full((16, 16, 3), 100, np.uint8)
    b = a + np.uint8(10)  # MSE 100 in uint8 units → PSNR = 10·log10(255²/100)
    assert mse(a, b) == pytest.approx(100.0)
    assert psnr(a, b) == pytest.approx(10 * math.log10(255**2 / 100))
    assert psnr(a.astype(np.float64) / 255, b.astype(np.float64) / 255) == pytest.approx(psnr(a, b))


def test_noise_lowers_ssim(image):
    noisy = np.clip(image + np.random.default_rng(2).normal(0, 0.1, image.shape), 0, 1)
    assert ssim(image, noisy) < 0.9
    assert 0 < psnr(image, noisy) < 25


def test_grayscale_and_shape_checks(image):
    gray = image[..., 0]
    assert ssim(gray, gray) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="shape"):
        mse(image, image[:-1])
    with pytest.raises(ValueError, match="7"):
        ssim(image[:5, :5], image[:5, :5])


def test_batch_metrics_means_per_image(image):
    a = torch.from_numpy(np.stack([image, image])).permute(0, 3, 1, 2).float()
    b = a.clone()
    b[1] += 0.1
    m = batch_metrics(a, b)
    assert m["mse"] == pytest.approx(0.005, rel=1e-5)
    assert m["psnr"] == math.inf  # one identical pair
    assert m["ssim"] < 1.0
    b[0] += 0.1
    assert batch_metrics(a, b)["psnr"] == pytest.approx(20.0, abs=1e-3)
