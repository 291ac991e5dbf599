"""Photometric and geometric augmentation of uint8 RGB frames (``N×240×320×3``), for the white-box
attacker (``models.eval.whitebox``) and the hardened encoder's adversarial phase
(``models.train.adversarial``): both train on few public frames and must not memorise them."""

from __future__ import annotations

import cv2
import numpy as np


def augment(frames: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Random 4:3 crops (50-100 % of the side), horizontal flips, brightness ×[0.7, 1.3] and
    contrast ×[0.7, 1.3], each frame drawn on its own."""
    out = np.empty_like(frames)
    for k, img in enumerate(frames):
        s = rng.uniform(0.5, 1.0)
        ch, cw = int(240 * s), int(320 * s)
        y, x = int(rng.integers(0, 240 - ch + 1)), int(rng.integers(0, 320 - cw + 1))
        crop = cv2.resize(img[y:y + ch, x:x + cw], (320, 240), interpolation=cv2.INTER_AREA)
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        f = crop.astype(np.float32)
        mean = f.mean()
        f = (f - mean) * rng.uniform(0.7, 1.3) + mean * rng.uniform(0.7, 1.3)
        out[k] = np.clip(f, 0, 255).astype(np.uint8)
    return out
