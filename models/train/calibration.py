"""Calibrate a classifier's logit offset for the sigmoidal anomaly score (SAS).

The SAS threshold τ is fixed (0.5, P §3.5), so what decides whether a normal video raises an
alarm is where the classifier's confidences sit, not only how they rank. Hard mining and the 1:2
class weights train confidences upwards (P's own -no-hm rows have the lower VL-FPR). After
training, ``fit_logit_bias`` picks the offset ``b`` added to every logit that maximises VL-F1 of
the validation videos, scored exactly as ``pvad eval detection`` scores them (SAS at the camera
rate). Among the offsets that reach the best VL-F1 it takes the middle of the longest run of
them, so that the choice does not sit on the edge where one more video flips. Ranking, and so
FL-AUC, does not change.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from models.eval.detection_metrics import VideoScores, sas_series, video_level
from pvad.config import ScoringConfig

GRID = np.round(np.arange(-6.0, 6.0 + 1e-9, 0.05), 2)


@dataclass
class Calibration:
    bias: float
    before: dict[str, float]  # validation VL metrics at offset 0
    after: dict[str, float]  # at ``bias``

    def as_dict(self) -> dict:
        keep = ("vl_f1", "vl_tpr", "vl_fpr")
        return {"logit_bias": self.bias, "method": "max validation VL-F1 (middle of the longest best run)",
                "before": {k: self.before[k] for k in keep}, "after": {k: self.after[k] for k in keep}}


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def vl_metrics(videos: list[tuple[str, str, np.ndarray]], bias: float, scoring: ScoringConfig) -> dict[str, float]:
    """VL metrics of ``(name, category, logits in time order)`` with ``bias`` added to the logits."""
    scored = []
    for name, category, logits in videos:
        sigma = _sigmoid(np.asarray(logits, np.float64) + bias)
        idx = np.arange(len(sigma))
        scored.append(VideoScores(name, category, idx, np.zeros(len(sigma)), sigma, sas_series(sigma, scoring), 0.0))
    return video_level(scored)


def fit_logit_bias(videos: list[tuple[str, str, np.ndarray]], scoring: ScoringConfig | None = None,
                   grid: np.ndarray = GRID) -> Calibration:
    """The offset that maximises VL-F1 over ``videos`` (name, category, logits in time order)."""
    scoring = scoring or ScoringConfig()
    if not any(c != "Normal" for _, c, _ in videos) or not any(c == "Normal" for _, c, _ in videos):
        raise ValueError("calibration needs normal and anomalous validation videos")
    f1 = np.array([vl_metrics(videos, float(b), scoring)["vl_f1"] for b in grid])
    best = np.flatnonzero(f1 >= np.nanmax(f1) - 1e-12)
    runs = np.split(best, np.flatnonzero(np.diff(best) > 1) + 1)
    run = max(runs, key=len)
    bias = float(np.round(grid[run[len(run) // 2]], 2))
    return Calibration(bias, vl_metrics(videos, 0.0, scoring), vl_metrics(videos, bias, scoring))
