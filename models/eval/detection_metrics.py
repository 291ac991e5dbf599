"""Detection metrics (P §4.1–4.2): per-video scores, the SAS over them, FL-AUC and video-level F1/TPR/FPR.

Shared by the evaluation (``models.eval.detection``) and the classifier's SAS calibration
(``models.train.calibration``), so both score a video exactly the same way.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sklearn.metrics import roc_auc_score

from analysis_server.scoring import SigmoidalAnomalyScore
from pvad.config import ScoringConfig


@dataclass
class VideoScores:
    name: str
    category: str
    index: np.ndarray  # scored frame indices
    truth: np.ndarray  # 0/1 per scored frame
    sigma: np.ndarray  # classifier confidence per scored frame
    sas: np.ndarray  # sigmoidal anomaly score per scored frame
    fps: float = 25.0  # the video's frame rate (index / fps = seconds into the video)

    @property
    def anomalous(self) -> bool:
        return self.category != "Normal"

    @property
    def predicted(self) -> bool:
        return bool((self.sas >= SigmoidalAnomalyScore.ALARM_LEVEL).any())


@dataclass
class DetectionReport:
    videos: list[VideoScores]
    metrics: dict[str, Any] = field(default_factory=dict)


def sas_series(sigma: np.ndarray, scoring: ScoringConfig) -> np.ndarray:
    """The SAS s_t over a video's confidences, from x_0 = LB."""
    acc = SigmoidalAnomalyScore(scoring)
    return np.array([acc.update(float(s)).score for s in sigma], np.float64)


def video_level(videos: list[VideoScores]) -> dict[str, float]:
    """VL-F1, VL-TPR, VL-FPR, VL-precision from the videos' truth and SAS predictions."""
    tp = sum(v.anomalous and v.predicted for v in videos)
    fp = sum((not v.anomalous) and v.predicted for v in videos)
    fn = sum(v.anomalous and not v.predicted for v in videos)
    tn = sum((not v.anomalous) and not v.predicted for v in videos)
    precision = tp / (tp + fp) if tp + fp else 0.0
    tpr = tp / (tp + fn) if tp + fn else math.nan
    fpr = fp / (fp + tn) if fp + tn else math.nan
    f1 = 2 * tp / (2 * tp + fp + fn) if tp + fp + fn else math.nan
    return {"vl_f1": f1, "vl_tpr": tpr, "vl_fpr": fpr, "vl_precision": precision,
            "vl_tp": tp, "vl_fp": fp, "vl_fn": fn, "vl_tn": tn}


def frame_level_auc(videos: list[VideoScores]) -> float:
    truth = np.concatenate([v.truth for v in videos])
    sigma = np.concatenate([v.sigma for v in videos])
    if truth.min() == truth.max():
        return math.nan  # AUC is undefined with one class
    return float(roc_auc_score(truth, sigma))


def frame_level_auc_per_class(videos: list[VideoScores]) -> dict[str, float]:
    """FL-AUC of each anomaly class: its videos' frames against every normal video's frames."""
    normal = [v for v in videos if not v.anomalous]
    classes = sorted({v.category for v in videos if v.anomalous})
    return {c: frame_level_auc([v for v in videos if v.category == c] + normal) for c in classes}
