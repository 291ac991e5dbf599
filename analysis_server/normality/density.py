"""Nearest-neighbour density per grid position: how far a cell's features are from everything that
cell showed while it was normal (the kNN scoring of Reiss & Hoshen 2022, per position).

Features are divided by one scale per feature (their standard deviation over the learning frames)
and rounded to 1e-3, duplicates dropped, so a static scene's thousands of identical empty cells
cost one point. Each position gets its own scikit-learn KD-tree.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KDTree

ROUND = 3  # decimals kept of the scaled features


class PositionKnn:
    def __init__(self, k: int, scale: np.ndarray, banks: list[np.ndarray]) -> None:
        self.k = k
        self.scale = scale.astype(np.float32)
        self.banks = banks
        self._trees = [KDTree(b) for b in banks]

    @classmethod
    def fit(cls, feats: np.ndarray, *, k: int, scale: np.ndarray | None = None) -> PositionKnn:
        """``feats``: N frames x P positions x D features of normal frames."""
        if scale is None:
            scale = feature_scale(feats)
        z = np.round(feats / scale, ROUND)
        banks = [np.unique(z[:, p, :], axis=0) for p in range(feats.shape[1])]
        return cls(k, scale, banks)

    @property
    def positions(self) -> int:
        return len(self.banks)

    @property
    def points(self) -> int:
        return sum(len(b) for b in self.banks)

    def distances(self, feats: np.ndarray) -> np.ndarray:
        """M x P: mean distance of each position's features to its k nearest normal points."""
        z = feats / self.scale
        out = np.empty(feats.shape[:2], np.float64)
        for p, tree in enumerate(self._trees):
            k = min(self.k, len(self.banks[p]))
            d, _ = tree.query(z[:, p, :], k=k)
            out[:, p] = d.mean(axis=1)
        return out


def feature_scale(feats: np.ndarray) -> np.ndarray:
    """One scale per feature: its standard deviation over all frames and positions (1 where constant)."""
    s = feats.reshape(-1, feats.shape[-1]).std(axis=0)
    return np.where(s > 1e-6, s, 1.0).astype(np.float32)
