"""Nearest-neighbour density of a camera's normal grid features (kNN scoring, as in Reiss & Hoshen 2022).

Features are divided by one scale per feature (their standard deviation over the learning frames)
and rounded to 1e-3, duplicates dropped, so a static scene's thousands of identical empty cells cost
one point. Two banks:

* ``PositionKnn`` (``bank: per_position``): each grid position gets its own scikit-learn KD-tree of
  what that cell showed; a cell is scored against its own past only.
* ``SharedKnn`` (``bank: shared``): one KD-tree of the *active* cells of every position (moving or
  foreground: ``active_flow``/``active_fg``), each with its row as one more feature (``row_weight``:
  perspective makes far rows move less). A crowd somewhere new is then compared with crowds seen
  anywhere on that row; inactive cells score 0.
"""

from __future__ import annotations

import numpy as np
from sklearn.neighbors import KDTree

ROUND = 3  # decimals kept of the scaled features


def feature_scale(feats: np.ndarray) -> np.ndarray:
    """One scale per feature: its standard deviation over all frames and positions (1 where constant)."""
    s = feats.reshape(-1, feats.shape[-1]).std(axis=0)
    return np.where(s > 1e-6, s, 1.0).astype(np.float32)


class PositionKnn:
    kind = "per_position"

    def __init__(self, k: int, scale: np.ndarray, banks: list[np.ndarray]) -> None:
        self.k = k
        self.scale = scale.astype(np.float32)
        self.banks = banks
        self._trees = [KDTree(b) for b in banks]

    @classmethod
    def fit(cls, feats: np.ndarray, *, k: int, scale: np.ndarray | None = None, **_: object) -> PositionKnn:
        """``feats``: N frames x P positions x D features of normal frames."""
        scale = feature_scale(feats) if scale is None else scale
        z = np.round(feats / scale, ROUND)
        return cls(k, scale, [np.unique(z[:, p, :], axis=0) for p in range(feats.shape[1])])

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
            d, _ = tree.query(z[:, p, :], k=min(self.k, len(self.banks[p])))
            out[:, p] = d.mean(axis=1)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"bank": np.concatenate(self.banks).astype(np.float32),
                "sizes": np.array([len(b) for b in self.banks], np.int64)}

    @classmethod
    def from_arrays(cls, k: int, scale: np.ndarray, a: dict, **_: object) -> PositionKnn:
        sizes = a["sizes"]
        if sizes.sum() != len(a["bank"]):
            raise ValueError("the memory bank does not match its sizes (truncated?)")
        return cls(k, scale, np.split(a["bank"], np.cumsum(sizes)[:-1]))


class SharedKnn:
    kind = "shared"

    def __init__(self, k: int, scale: np.ndarray, bank: np.ndarray, rows: np.ndarray, *, row_weight: float,
                 active_flow: float, active_fg: float, columns: tuple[int, int] = (1, 2)) -> None:
        self.k, self.scale, self.bank, self.rows = k, scale.astype(np.float32), bank, rows.astype(np.float32)
        self.row_weight, self.active_flow, self.active_fg = row_weight, active_flow, active_fg
        self.columns = columns  # which features are max |flow| and the foreground fraction
        self._tree = KDTree(bank) if len(bank) else None

    def active(self, feats: np.ndarray) -> np.ndarray:
        """N x P: cells with motion or foreground (max |flow| or foreground fraction over its threshold)."""
        flow, fg = self.columns
        return (feats[..., flow] > self.active_flow) | (feats[..., fg] > self.active_fg)

    def _vectors(self, feats: np.ndarray, mask: np.ndarray) -> np.ndarray:
        z = feats / self.scale
        row = np.broadcast_to(self.rows * self.row_weight, feats.shape[:2])
        return np.concatenate([z[mask], row[mask][:, None]], axis=1)

    @classmethod
    def fit(cls, feats: np.ndarray, *, k: int, scale: np.ndarray, rows: np.ndarray, row_weight: float,
            active_flow: float, active_fg: float, bank_size: int, columns: tuple[int, int] = (1, 2),
            **_: object) -> SharedKnn:
        probe = cls(k, scale, np.zeros((0, feats.shape[2] + 1), np.float32), rows, row_weight=row_weight,
                    active_flow=active_flow, active_fg=active_fg, columns=columns)
        v = np.unique(np.round(probe._vectors(feats, probe.active(feats)), ROUND), axis=0).astype(np.float32)
        if len(v) > bank_size:
            v = v[np.sort(np.random.default_rng(0).choice(len(v), bank_size, replace=False))]
        if not len(v):  # nothing ever moved: any activity is unusual
            v = np.zeros((1, feats.shape[2] + 1), np.float32)
        return cls(k, scale, v, rows, row_weight=row_weight, active_flow=active_flow, active_fg=active_fg,
                   columns=columns)

    @property
    def positions(self) -> int:
        return len(self.rows)

    @property
    def points(self) -> int:
        return len(self.bank)

    def distances(self, feats: np.ndarray) -> np.ndarray:
        mask = self.active(feats)
        out = np.zeros(feats.shape[:2], np.float64)
        if mask.any():
            d, _ = self._tree.query(self._vectors(feats, mask), k=min(self.k, len(self.bank)))
            out[mask] = d.mean(axis=1)
        return out

    def arrays(self) -> dict[str, np.ndarray]:
        return {"bank": self.bank, "rows": self.rows,
                "params": np.array([self.row_weight, self.active_flow, self.active_fg, *self.columns], np.float64)}

    @classmethod
    def from_arrays(cls, k: int, scale: np.ndarray, a: dict, **_: object) -> SharedKnn:
        rw, af, ag, *cols = (float(x) for x in a["params"])  # models before motion.features: columns 1, 2
        if a["bank"].ndim != 2 or a["bank"].shape[1] != len(scale) + 1:
            raise ValueError("the memory bank does not match its features")
        columns = (int(cols[0]), int(cols[1])) if cols else (1, 2)
        return cls(k, scale, a["bank"], a["rows"], row_weight=rw, active_flow=af, active_fg=ag, columns=columns)


class CombinedKnn:
    """``bank: both``: a cell's distance is the sum of its per-position and its shared-bank distance, each
    divided by its own scale (the 99th percentile of the non-zero distances of the second half of the
    learning frames to a bank of the first half), so neither dominates by its units."""

    kind = "both"

    def __init__(self, members: list, weights: np.ndarray) -> None:
        self.members, self.weights = members, np.asarray(weights, np.float64)
        self.k, self.scale = members[0].k, members[0].scale

    @classmethod
    def fit(cls, feats: np.ndarray, **kw) -> CombinedKnn:
        half = len(feats) // 2
        weights = []
        for member in (PositionKnn, SharedKnn):
            d = member.fit(feats[:half], **kw).distances(feats[half:])
            nonzero = d[d > 0]
            weights.append(1.0 / max(float(np.percentile(nonzero, 99)) if nonzero.size else 1.0, 1e-6))
        return cls([PositionKnn.fit(feats, **kw), SharedKnn.fit(feats, **kw)], np.array(weights))

    @property
    def positions(self) -> int:
        return self.members[0].positions

    @property
    def points(self) -> int:
        return sum(m.points for m in self.members)

    def distances(self, feats: np.ndarray) -> np.ndarray:
        return sum(w * m.distances(feats) for w, m in zip(self.weights, self.members))

    def arrays(self) -> dict[str, np.ndarray]:
        out = {"weights": self.weights}
        for m in self.members:
            out.update({f"{m.kind}.{k}": v for k, v in m.arrays().items()})
        return out

    @classmethod
    def from_arrays(cls, k: int, scale: np.ndarray, a: dict, **_: object) -> CombinedKnn:
        members = [b.from_arrays(k, scale, {n.split(".", 1)[1]: v for n, v in a.items() if n.startswith(b.kind + ".")})
                   for b in (PositionKnn, SharedKnn)]
        return cls(members, a["weights"])


BANKS = {"per_position": PositionKnn, "shared": SharedKnn, "both": CombinedKnn}
