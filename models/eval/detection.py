"""Detection evaluation of a classifier checkpoint (P §4.1–4.2, G §5): ``pvad eval detection``.

Every evaluated video is scored at the camera's rate (``eval_fps`` frames per second of video),
with the same inputs the server computes (``models.data.features``: optional autoencoder pass,
flow against the previous camera frame, bag-of-objects), then:

* **FL-AUC**: ROC AUC of the per-frame confidence σ_t over every scored frame of every video
  (scikit-learn), against the annotated anomalous frames (HARD; SOFT frames count as normal);
* **VL-F1 / VL-TPR / VL-FPR** with the SAS (τ = 0.5, ν = 2, UB = 7, LB = −7 by default, one
  accumulator per video from x_0 = LB): a video is called anomalous when s_t ≥ 0.5 at any frame;
  the truth is the video's category (anything but Normal is anomalous).

Plots: ROC curve and per-video timelines like P Fig. 3 (σ_t, SAS, the 0.5 line, annotated
anomalous frames shaded). ``gradcam`` adds Grad-CAM overlays on both streams for the most
confident frames of anomalous videos.

By default the features (autoencoder, flow, detector, camera rate) are those recorded in the
checkpoint's card, so a model is evaluated on what it was trained to see.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from pydantic import TypeAdapter
from sklearn.metrics import roc_curve
from tqdm import tqdm

from models.data.features import FeatureCache
from models.data.sampling import evaluation_targets, uniform_indices
from models.data.vad import VideoItem, load_dataset
from models.eval.detection_metrics import (
    DetectionReport,
    VideoScores,
    frame_level_auc,
    frame_level_auc_per_class,
    sas_series,
    video_level,
)
from models.eval.plots import save_figure
from models.nets.two_stream import TwoStreamClassifier, card_background, load_classifier
from models.train.samples import Batches, SampleSet, predict
from pvad.config import DetectorConfig, FlowConfig, ScoringConfig
from pvad.devices import resolve_device
from pvad.errors import ConfigError

log = logging.getLogger(__name__)


def card_feature_cache(model: TwoStreamClassifier, card, cache_dir: Path, *, autoencoder: Path | None = None,
                       detector=None, flow: FlowConfig | None = None, camera_fps: float | None = None,
                       device: str = "cpu") -> FeatureCache:
    """The features ``model`` was trained on, as its card records them (autoencoder, detector, flow,
    camera rate, background); an argument given here replaces the card's value."""
    feats = (card.extra or {}).get("features", {})
    ae = autoencoder if autoencoder is not None else (Path(feats["autoencoder"]) if feats.get("autoencoder") else None)
    if detector is None and feats.get("detector"):
        detector = TypeAdapter(DetectorConfig).validate_python(feats["detector"])
    flow = flow or (FlowConfig(**feats["flow"]) if feats.get("flow") else FlowConfig())
    camera_fps = camera_fps or float(feats.get("camera_fps", 10.0))
    return FeatureCache(cache_dir, flow=flow, camera_fps=camera_fps, detector=detector if model.use_bag else None,
                        autoencoder=ae, background=card_background(card), device=device)


def evaluate_detection(
    data: Path,
    checkpoint: Path,
    *,
    split: str = "test",
    annotations: str = "auto",
    scoring: ScoringConfig | None = None,
    eval_fps: float = 10.0,
    autoencoder: Path | None = None,
    detector=None,
    flow: FlowConfig | None = None,
    camera_fps: float | None = None,
    cache_dir: Path = Path(".pvad/cache/classifier"),
    device: str = "cpu",
    progress: bool = True,
) -> DetectionReport:
    """Score every video of ``split`` (test, train or all) and compute FL-AUC and VL metrics."""
    scoring = scoring or ScoringConfig()
    dataset = load_dataset(data, annotations=annotations)  # logs each problem it finds
    videos: list[VideoItem] = dataset.videos if split == "all" else dataset.split(split)
    if not videos:
        raise ConfigError(f"{data}: the {split!r} split has no videos (see `pvad data index {data}`)")
    model, card = load_classifier(checkpoint, backbone=None, streams=None, bag=None, hidden=None, pretrained=False, seed=0)
    if not card.trained:
        log.warning("evaluating an UNTRAINED classifier: %s", card.provenance)
    dev = resolve_device(device)
    model = model.to(dev).eval()
    cache = card_feature_cache(model, card, cache_dir, autoencoder=autoencoder, detector=detector, flow=flow,
                               camera_fps=camera_fps, device=str(dev))
    batches = Batches(model, card.mean, card.std, dev)
    scores: list[VideoScores] = []
    for v in tqdm(videos, desc="scoring videos", unit="video", disable=not progress):
        f = cache.get(v, uniform_indices(v.n_frames, v.fps, eval_fps))
        if not len(f):
            log.warning("%s: no readable frame; left out of the metrics", v.path)
            continue
        truth = evaluation_targets(f.labels)
        s = SampleSet.stack([(v.name, f, truth)], (1.0, 1.0))
        sigma = predict(model, batches, s, np.arange(len(s)))
        scores.append(VideoScores(v.name, v.category, f.index, truth, sigma, sas_series(sigma, scoring), v.fps))
    report = DetectionReport(scores)
    report.metrics = {
        "fl_auc": frame_level_auc(scores),
        "fl_auc_per_class": frame_level_auc_per_class(scores),
        **video_level(scores),
        "videos": len(scores),
        "frames": int(sum(len(v.index) for v in scores)),
        "anomalous_videos": int(sum(v.anomalous for v in scores)),
        "split": split,
        "checkpoint": str(checkpoint),
        "variant": (card.extra or {}).get("variant"),
        "scoring": scoring.model_dump(),
        "eval_fps": eval_fps,
        "problems": len(dataset.problems),
    }
    return report


# --------------------------------------------------------------------------- plots


def plot_roc(reports: dict[str, DetectionReport], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 5))
    for name, r in reports.items():
        truth = np.concatenate([v.truth for v in r.videos])
        sigma = np.concatenate([v.sigma for v in r.videos])
        if truth.min() == truth.max():
            continue
        fpr, tpr, _ = roc_curve(truth, sigma)
        ax.plot(fpr, tpr, label=f"{name} (FL-AUC {r.metrics['fl_auc']:.3f})")
    ax.plot([0, 1], [0, 1], ls=":", c="grey")
    ax.set(xlabel="false positive rate", ylabel="true positive rate", title="frame-level ROC")
    ax.legend(loc="lower right", fontsize=8)
    return save_figure(fig, path, plt, dpi=120)


def plot_timelines(report: DetectionReport, path: Path, *, max_videos: int = 8) -> Path:
    """P Fig. 3: confidence, SAS, the 0.5 line, annotated anomalous frames shaded; one row per video."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    anomalous = [v for v in report.videos if v.anomalous]
    normal = [v for v in report.videos if not v.anomalous]
    chosen = (anomalous[: max(1, max_videos - max_videos // 4)] + normal)[:max_videos]
    fig, axes = plt.subplots(len(chosen), 1, figsize=(8, 1.6 * len(chosen)), sharex=False, squeeze=False)
    for ax, v in zip(axes[:, 0], chosen):
        t = v.index / v.fps
        ax.fill_between(t, 0, 1, where=v.truth > 0, color="tab:red", alpha=0.15, step="mid", label="annotated anomaly")
        ax.plot(t, v.sigma, lw=0.8, color="tab:blue", label="confidence σ")
        ax.plot(t, v.sas, lw=1.5, color="tab:orange", label="SAS")
        ax.axhline(0.5, ls="--", lw=0.8, color="grey")
        ax.set_ylim(-0.02, 1.02)
        ax.set_ylabel(v.name, fontsize=7, rotation=0, ha="right", va="center")
    axes[0, 0].legend(loc="upper left", fontsize=7, ncol=3)
    axes[-1, 0].set_xlabel("time in video (s)")
    return save_figure(fig, path, plt, dpi=110)


# --------------------------------------------------------------------------- Grad-CAM


def grad_cam(model: TwoStreamClassifier, inputs: tuple, stream: str) -> np.ndarray:
    """Grad-CAM (Selvaraju et al. 2017) of the anomaly logit on ``stream``'s last conv block, H×W in [0, 1].

    Written by hand (a dozen lines with hooks) to avoid a dependency for one plot.
    """
    backbone = model.frame_stream if stream == "frame" else model.flow_stream
    acts: dict[str, torch.Tensor] = {}

    def hook(_m, _i, out):
        out.retain_grad()
        acts["a"] = out

    handle = backbone.last_conv.register_forward_hook(hook)
    try:
        model.eval()
        model.zero_grad(set_to_none=True)
        with torch.enable_grad():
            logit = model(*inputs)
            logit.sum().backward()
    finally:
        handle.remove()
    a, g = acts["a"], acts["a"].grad
    cam = torch.relu((g.mean(dim=(2, 3), keepdim=True) * a).sum(1))[0]
    cam = torch.nn.functional.interpolate(cam[None, None], size=inputs[0].shape[-2:], mode="bilinear")[0, 0]
    cam = cam - cam.min()
    return (cam / cam.max().clamp_min(1e-8)).detach().cpu().numpy()


def plot_gradcam(data: Path, checkpoint: Path, report: DetectionReport, path: Path, *, frames: int = 4,
                 annotations: str = "auto", cache_dir: Path = Path(".pvad/cache/classifier"), eval_fps: float = 10.0) -> Path:
    """Grad-CAM overlays on the frame (and flow) stream for the most confident frames of anomalous videos."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    model, card = load_classifier(checkpoint, backbone=None, streams=None, bag=None, hidden=None, pretrained=False, seed=0)
    cache = card_feature_cache(model, card, cache_dir)
    dataset = {v.name: v for v in load_dataset(data, annotations=annotations).videos}
    batches = Batches(model, card.mean, card.std, torch.device("cpu"))
    picks = sorted(((float(s), v.name, j) for v in report.videos if v.anomalous for j, s in enumerate(v.sigma)), reverse=True)
    seen: set[str] = set()
    chosen = []
    for s, name, j in picks:  # one frame per video first
        if name not in seen:
            chosen.append((s, name, j))
            seen.add(name)
        if len(chosen) == frames:
            break
    cols = 1 + model.streams
    fig, axes = plt.subplots(len(chosen), cols, figsize=(3.2 * cols, 2.5 * max(len(chosen), 1)), squeeze=False)
    for row, (s, name, j) in zip(axes, chosen):
        v = dataset[name]
        f = cache.get(v, uniform_indices(v.n_frames, v.fps, eval_fps))
        one = SampleSet.stack([(name, f, np.zeros(len(f), np.int8))], (1.0, 1.0))
        inputs = batches.inputs(one, np.array([j]))
        row[0].imshow(f.frame[j])
        row[0].set_title(f"{name} t={f.index[j] / v.fps:.1f}s σ={s:.2f}", fontsize=7)
        row[1].imshow(f.frame[j])
        row[1].imshow(grad_cam(model, inputs, "frame"), cmap="jet", alpha=0.45)
        row[1].set_title("Grad-CAM frame stream", fontsize=7)
        if model.streams == 2:
            row[2].imshow(f.flow[j])
            row[2].imshow(grad_cam(model, inputs, "flow"), cmap="jet", alpha=0.45)
            row[2].set_title("Grad-CAM flow stream", fontsize=7)
        for ax in row:
            ax.axis("off")
    return save_figure(fig, path, plt, dpi=110)
