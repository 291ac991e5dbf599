"""An inference-time Gaussian mechanism on the latent: clip each frame's latent, add noise.

This goes beyond Giorgi et al. 2022, whose DP guarantee (DP-SGD) covers the *training* frames
only: a frame the camera encodes later is not protected by it. Here each transmitted latent
``z`` (one frame) is released as ``clip(z, C) + N(0, σ² I)``. Any two frames' clipped latents
differ by at most ``Δ = 2C`` in L2 (replace-one), so one release is (ε, δ)-DP with respect to the
frame's content, ε given exactly by the analytic Gaussian mechanism below.

Composition: T frames (e.g. a person seen in T frames) are T Gaussian mechanisms, which compose
exactly into one Gaussian mechanism with ``σ/Δ`` divided by ``√T`` (Gaussian DP, Dong, Roth & Su
2019, Cor. 3.3), hence ``gaussian_epsilon(..., frames=T)``.
"""

from __future__ import annotations

import logging
import math

import numpy as np

logger = logging.getLogger(__name__)

_SQRT2 = math.sqrt(2.0)


def _log_ndtr(x: float) -> float:
    """log Φ(x) of the standard normal CDF, accurate in the far left tail."""
    if x > -30.0:
        return math.log(0.5 * math.erfc(-x / _SQRT2))
    # asymptotic series: Φ(x) = φ(x)/(-x) · (1 - 1/x² + 3/x⁴ - 15/x⁶ ...), x → -∞
    x2 = x * x
    return -0.5 * x2 - math.log(-x) - 0.5 * math.log(2 * math.pi) + math.log1p(-1 / x2 + 3 / x2**2 - 15 / x2**3)


def gaussian_delta(epsilon: float, sigma_over_sensitivity: float) -> float:
    """Smallest δ for which ``N(0, σ²)`` noise on an L2-sensitivity-Δ query is (ε, δ)-DP.

    Balle & Wang 2018, "Improving the Gaussian Mechanism for Differential Privacy", Theorem 8,
    with ``s = σ/Δ``: ``δ(ε) = Φ(1/(2s) − ε s) − e^ε Φ(−1/(2s) − ε s)``.
    """
    if sigma_over_sensitivity <= 0:
        raise ValueError(f"sigma_over_sensitivity must be > 0, got {sigma_over_sensitivity}")
    if epsilon < 0:
        raise ValueError(f"epsilon must be >= 0, got {epsilon}")
    s = sigma_over_sensitivity
    a, b = 1.0 / (2.0 * s) - epsilon * s, -1.0 / (2.0 * s) - epsilon * s
    first = math.exp(_log_ndtr(a))
    second = math.exp(epsilon + _log_ndtr(b))
    return max(first - second, 0.0)


def gaussian_epsilon(sigma_over_sensitivity: float, delta: float, *, frames: int = 1) -> float:
    """Exact ε of the Gaussian mechanism with noise ``σ = s·Δ`` at a given δ (analytic GM).

    Solves ``gaussian_delta(ε, s) = δ`` for ε by bisection (δ(ε) decreases in ε), Balle & Wang
    2018, Thm 8; 0.0 when even ε = 0 meets δ. ``frames=T`` gives ε of T such releases composed
    (exact: a Gaussian mechanism with ``s/√T``). Examples at δ = 1e-5: s = 1 → ε ≈ 4.377; ε = 1
    needs s ≈ 3.73, where the classic bound ``s ≥ √(2 ln(1.25/δ))/ε`` (valid for ε < 1) asks 4.84.
    """
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    if frames < 1:
        raise ValueError(f"frames must be >= 1, got {frames}")
    s = sigma_over_sensitivity / math.sqrt(frames)
    if gaussian_delta(0.0, s) <= delta:
        return 0.0
    lo, hi = 0.0, 1.0
    while gaussian_delta(hi, s) > delta:
        lo, hi = hi, 2.0 * hi
        if hi > 1e6:
            raise ValueError(f"epsilon is unbounded for sigma/sensitivity={s} at delta={delta}")
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if gaussian_delta(mid, s) > delta:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * max(1.0, hi):
            break
    return hi


def sigma_for_epsilon(epsilon: float, delta: float, sensitivity: float, *, frames: int = 1) -> float:
    """Smallest noise σ making ``frames`` releases of an L2-sensitivity query (ε, δ)-DP (analytic GM).

    For the latent mechanism use ``sensitivity = 2 * clip_norm``.
    """
    if epsilon <= 0 or sensitivity <= 0:
        raise ValueError(f"epsilon and sensitivity must be > 0, got {epsilon}, {sensitivity}")
    if not 0.0 < delta < 1.0:
        raise ValueError(f"delta must be in (0, 1), got {delta}")
    lo, hi = 1e-6, 1.0  # bracket for s = σ/Δ per frame; δ(ε) decreases as s grows
    while gaussian_delta(epsilon, hi / math.sqrt(frames)) > delta:
        lo, hi = hi, 2.0 * hi
    for _ in range(200):
        mid = 0.5 * (lo + hi)
        if gaussian_delta(epsilon, mid / math.sqrt(frames)) > delta:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-12 * hi:
            break
    return hi * sensitivity


def clip_latent(z: np.ndarray, clip_norm: float) -> np.ndarray:
    """Scale each frame's latent to L2 norm ≤ ``clip_norm``.

    ``z`` is one frame (``C×H×W``) or a batch (``N×C×H×W``, each ``z[i]`` clipped on its own).
    Returns float32; latents already inside the ball are unchanged.
    """
    if clip_norm <= 0:
        raise ValueError(f"clip_norm must be > 0, got {clip_norm}")
    z = np.asarray(z, dtype=np.float32)
    if z.ndim not in (3, 4):
        raise ValueError(f"latent must be C×H×W or N×C×H×W, got shape {z.shape}")
    batch = z.reshape(1 if z.ndim == 3 else z.shape[0], -1)
    norms = np.linalg.norm(batch.astype(np.float64), axis=1, keepdims=True)
    scale = np.minimum(1.0, clip_norm / np.maximum(norms, 1e-12)).astype(np.float32)
    return (batch * scale).reshape(z.shape)


def add_gaussian_noise(z: np.ndarray, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """``z + N(0, sigma² I)`` as float32 (sigma = 0 returns a float32 copy)."""
    if sigma < 0:
        raise ValueError(f"sigma must be >= 0, got {sigma}")
    z = np.asarray(z, dtype=np.float32)
    return (z + rng.normal(0.0, sigma, size=z.shape)).astype(np.float32) if sigma > 0 else z.copy()


def privatize_latent(z: np.ndarray, *, clip_norm: float, sigma: float, rng: np.random.Generator) -> np.ndarray:
    """Per-frame Gaussian mechanism: ``clip_latent(z, clip_norm) + N(0, sigma² I)``.

    Each frame is (``gaussian_epsilon(sigma / (2 * clip_norm), delta)``, δ)-DP; pick sigma with
    ``sigma_for_epsilon(eps, delta, 2 * clip_norm)``.
    """
    return add_gaussian_noise(clip_latent(z, clip_norm), sigma, rng)
