"""Image-quality metrics of the privacy evaluation (G §5.1.1): MSE, PSNR and SSIM.

Layouts:

* ``mse``, ``psnr``, ``ssim`` take numpy images ``H×W×C`` (or ``H×W`` grayscale), either float
  with values in [0, 1] or ``uint8`` with values in [0, 255]. Both images must have the same shape
  and dtype. MSE is in the images' own units (so a uint8 MSE is ~65,025 times a float one).
* ``batch_metrics`` takes torch tensors ``N×3×H×W`` in [0, 1] (the autoencoder's layout) and
  returns the mean of each metric over the N images.

``data_range`` (the ``max(I)`` of G's PSNR formula) defaults to 1.0 for float images and 255 for
``uint8`` ones. Identical images give ``mse == 0``, ``psnr == math.inf`` and ``ssim == 1``.
"""

from __future__ import annotations

import logging
import math

import numpy as np
import torch
from skimage.metrics import structural_similarity

logger = logging.getLogger(__name__)


def _pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(a)
    b = np.asarray(b)
    if a.shape != b.shape:
        raise ValueError(f"images differ in shape: {a.shape} vs {b.shape}")
    if a.dtype != b.dtype:
        raise ValueError(f"images differ in dtype: {a.dtype} vs {b.dtype}")
    if a.ndim not in (2, 3):
        raise ValueError(f"expected an H×W×C or H×W image, got shape {a.shape}")
    return a, b


def _default_range(a: np.ndarray, data_range: float | None) -> float:
    if data_range is not None:
        if data_range <= 0:
            raise ValueError(f"data_range must be positive, got {data_range}")
        return float(data_range)
    return 255.0 if a.dtype == np.uint8 else 1.0


def mse(a: np.ndarray, b: np.ndarray) -> float:
    """Mean of the squared pixel differences, computed in float64, in the images' own units."""
    a, b = _pair(a, b)
    diff = a.astype(np.float64) - b.astype(np.float64)
    return float(np.mean(diff * diff))


def psnr(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Peak signal-to-noise ratio in dB: ``10·log10(data_range² / MSE)``; ``math.inf`` when MSE is 0.

    ``data_range`` defaults to 1.0 (float images) or 255 (uint8).
    """
    a, b = _pair(a, b)
    rng = _default_range(a, data_range)
    err = mse(a, b)
    if err == 0.0:
        return math.inf
    return float(10.0 * math.log10(rng * rng / err))


def ssim(a: np.ndarray, b: np.ndarray, data_range: float | None = None) -> float:
    """Structural similarity (scikit-image, 7×7 uniform window), averaged over channels.

    Both sides of the image must be at least 7 pixels. ``data_range`` as for ``psnr``.
    """
    a, b = _pair(a, b)
    if min(a.shape[:2]) < 7:
        raise ValueError(f"SSIM needs images of at least 7×7 pixels, got {a.shape[:2]}")
    rng = _default_range(a, data_range)
    channel_axis = -1 if a.ndim == 3 else None
    value = structural_similarity(
        a.astype(np.float64), b.astype(np.float64), channel_axis=channel_axis, data_range=rng
    )
    return float(value)


def batch_metrics(orig: torch.Tensor, recon: torch.Tensor) -> dict[str, float]:
    """Means over a batch of ``{"mse", "psnr", "ssim"}`` for ``N×3×H×W`` tensors in [0, 1].

    Each metric is computed per image (``H×W×3`` float, data_range 1) and then averaged; the
    PSNR mean is ``inf`` if any pair is identical.
    """
    if orig.shape != recon.shape or orig.ndim != 4:
        raise ValueError(f"expected two N×C×H×W tensors of one shape, got {tuple(orig.shape)} and {tuple(recon.shape)}")
    if orig.shape[0] == 0:
        raise ValueError("batch_metrics needs at least one image")
    a = orig.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    b = recon.detach().to("cpu", torch.float64).permute(0, 2, 3, 1).numpy()
    rows = [(mse(x, y), psnr(x, y, 1.0), ssim(x, y, 1.0)) for x, y in zip(a, b)]
    means = np.mean(np.array(rows, dtype=np.float64), axis=0)
    return {"mse": float(means[0]), "psnr": float(means[1]), "ssim": float(means[2])}
