"""P Table 1-style ablation (`pvad eval ablation`): train each variant's config, score it on held-out data.

For every ``train-classifier`` config given (``configs/ablation/*.yaml``: 2S/1S × bag/no-bag, -ha,
-no-hm), the checkpoint its ``out`` names is trained unless it already exists (``--retrain``
trains anyway; a half-finished run resumes from ``<stem>.last.pt`` when the config says
``resume: true``), then evaluated with ``models.eval.detection`` on the held-out dataset. The
result is one row per variant (FL-AUC, FL-AUC per anomaly class, VL-F1/TPR/FPR, epoch time,
training samples), a Markdown table of them and one ROC plot with every variant.
"""

from __future__ import annotations

import logging
import math
from pathlib import Path
from typing import Any

from models.checkpoint import load_checkpoint
from models.eval.detection import DetectionReport, evaluate_detection
from models.train.classifier import train_classifier
from pvad.config import load_config

log = logging.getLogger(__name__)


def run_ablation(
    configs: list[Path],
    data: Path,
    *,
    split: str = "all",
    retrain: bool = False,
    eval_fps: float = 10.0,
    progress: bool = True,
) -> tuple[list[dict[str, Any]], dict[str, DetectionReport]]:
    """(one row per config, the detection reports by variant)."""
    rows: list[dict[str, Any]] = []
    reports: dict[str, DetectionReport] = {}
    for path in configs:
        cfg = load_config(path, "train-classifier")
        if retrain or not cfg.out.is_file():
            log.info("ablation: training %s (%s)", cfg.variant, path)
            train_classifier(cfg, progress=progress)
        else:
            log.info("ablation: %s exists; evaluating it (--retrain trains it again)", cfg.out)
        _, card = load_checkpoint(cfg.out)
        extra = card.extra or {}
        report = evaluate_detection(data, cfg.out, split=split, eval_fps=eval_fps, cache_dir=cfg.cache_dir,
                                    device=cfg.device, progress=progress)
        m = report.metrics
        rows.append({
            "variant": extra.get("variant", cfg.variant), "config": str(path), "checkpoint": str(cfg.out),
            "fl_auc": m["fl_auc"], "fl_auc_per_class": m["fl_auc_per_class"], "vl_f1": m["vl_f1"],
            "vl_tpr": m["vl_tpr"], "vl_fpr": m["vl_fpr"], "videos": m["videos"], "frames": m["frames"],
            "epoch_seconds": extra.get("epoch_seconds_median"),
            "train_samples": (extra.get("samples") or {}).get("train_samples"),
        })
        reports[rows[-1]["variant"]] = report
    return rows, reports


def markdown_table(rows: list[dict[str, Any]]) -> str:
    """The rows as a Markdown table (P Table 1 layout), per-class FL-AUC in the last column."""
    head = ["variant", "FL-AUC", "VL-F1", "VL-TPR", "VL-FPR", "epoch (s)", "train samples", "FL-AUC per class"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        per = ", ".join(f"{k} {_fmt(v)}" for k, v in (r.get("fl_auc_per_class") or {}).items())
        cells = [r["variant"], _fmt(r["fl_auc"]), _fmt(r["vl_f1"]), _fmt(r["vl_tpr"]), _fmt(r["vl_fpr"]),
                 _fmt(r["epoch_seconds"], 1), str(r["train_samples"]), per]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _fmt(v: Any, digits: int = 3) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return f"{v:.{digits}f}"
