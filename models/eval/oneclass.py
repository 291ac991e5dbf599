"""Detection on a one-class benchmark (UCSD Ped2, Avenue, ShanghaiTech) through the private stream.

The standard protocol: fit each camera's normality model on the training videos only (normal),
score every test frame, frame-level ROC AUC pooled over all test frames with no per-video
normalisation. Every frame takes the live path: the camera's anonymizer on the frame, the wire
message, the server's validation, decoding, flow and normality model (``analysis_server``'s own
``Analyzer``), so the figure is what a deployed camera would get. Each video starts with a
discontinuity (flow, foreground model and smoothing restart), as a camera's new source does.

Modes: ``normality`` ranks frames by the normality model's distance score, ``classifier`` by the
two-stream classifier's confidence, ``fused`` by σ_t after ``analysis.normality.fusion``.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from analysis_server.normality import Phase, fuse
from analysis_server.scoring import SigmoidalAnomalyScore
from analysis_server.validate import parse_frame
from camera_client.client import make_frame
from models.data.oneclass import FrameVideo, load_oneclass_dataset
from models.eval.plots import save_figure
from pvad.config import (
    AnalysisConfig,
    ScoringConfig,
    ServerConfig,
    ServerTLS,
    decoders_for,
)
from pvad.errors import ConfigError

log = logging.getLogger(__name__)

MODES = ("normality", "classifier", "fused")
# Published frame AUCs on Ped2, raw frames (PROVENANCE.md of ../shared/data/ucsd_ped2).
PUBLISHED_PED2 = {
    "MPPCA (Mahadevan 2010)": 0.693, "MDT (Mahadevan 2010)": 0.829, "Conv-AE (Hasan 2016)": 0.900,
    "Future-frame prediction (Liu 2018)": 0.954, "MNAD (Park 2020)": 0.970,
    "Accurate-Interpretable VAD (Reiss & Hoshen 2022)": 0.991, "HF2-VAD (Liu 2021)": 0.993,
}


@dataclass
class VideoResult:
    name: str
    truth: np.ndarray  # 0/1 per frame (test videos)
    normality: np.ndarray  # smoothed normality score per frame (nan while learning)
    classifier: np.ndarray  # classifier σ per frame (nan when it did not run)
    sigma: np.ndarray  # σ_t after fusion
    normality_sigma: np.ndarray  # the normality model's σ per frame (its first-frame gap filled like the score)
    threshold: float = math.nan

    def alarms(self, scoring: ScoringConfig) -> int:
        """Alarms the SAS raises over this video, from x_0 = LB."""
        acc = SigmoidalAnomalyScore(scoring)
        return sum(acc.update(float(s)).raised for s in self.sigma)


@dataclass
class Stream:
    """One camera as the evaluation drives it: anonymizer, the server's validation and analyzer."""

    anonymizer: Any
    analyzer: Any
    server_cfg: ServerConfig
    camera_id: str = "eval"
    state: Any = None
    seq: int = 0
    times: dict = field(default_factory=lambda: {"camera_s": 0.0, "frames": 0})

    def __post_init__(self) -> None:
        self.state = self.analyzer.new_camera_flow(self.camera_id)

    def frames(self, video: FrameVideo, *, learn: bool, progress: tqdm | None = None) -> list:
        """The analyzer's `FrameResult` for each frame of ``video``."""
        if learn and not self.state.normality.learn_only:
            self.state.normality.relearn(learn_only=True, reason="evaluation: learning from the training videos")
        out = []
        for i, rgb in enumerate(video.rgb_frames()):
            t0 = time.perf_counter()
            msg = self.anonymizer(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
            self.times["camera_s"] += time.perf_counter() - t0
            self.times["frames"] += 1
            self.seq += 1
            frame = make_frame(self.camera_id, self.seq, 0, msg, discontinuity=i == 0)
            payload = parse_frame(frame, cfg=self.server_cfg, peer_camera_id=self.camera_id,
                                  encoders=self.analyzer.decoders.shapes)
            # one frame at a time, as a live camera's are scored (its flow depends on the previous frame)
            out.append(self.analyzer.analyze_frames([(self.state, payload)])[0])
            if progress is not None:
                progress.update(1)
        return out


def _server_cfg(accept: list[str]) -> ServerConfig:
    dummy = Path("/nonexistent")  # the evaluation never opens a socket; validation reads limits and accept
    return ServerConfig(tls=ServerTLS(ca=dummy, cert=dummy, key=dummy), accept=accept)


def reference_analysis(**update: Any) -> AnalysisConfig:
    """The analysis settings an evaluation uses without a server config: the CPU at fp32 and no int8
    classifier, the reference arithmetic the README's figures use; ``update`` sets other fields."""
    return AnalysisConfig(device="cpu", precision="fp32", quantization={"classifier": "none"}, **update)


def build_stream(anonymizer_key: str, analysis: AnalysisConfig, *, camera_id: str = "eval") -> Stream:
    """The camera (anonymizer by key, e.g. ``none``, ``dp-encoder``, ``blur:person``) and the server
    (analysis settings; the decoder of a ``dp-encoder`` camera's checkpoint)."""
    from analysis_server.pipeline import Analyzer
    from camera_client.anonymize import create_anonymizer
    from models.eval.anonymizers import default_mode_configs

    cfg = default_mode_configs([anonymizer_key])[anonymizer_key]
    if isinstance(cfg, str):
        raise ConfigError(cfg)
    anonymizer = create_anonymizer(cfg)
    analyzer = Analyzer(analysis, decoders_for(cfg))
    return Stream(anonymizer, analyzer, _server_cfg([cfg.name]), camera_id)


def _backfill(x: np.ndarray) -> np.ndarray:
    """A frame with no score (the first of a video has no motion yet) takes its successor's (offline only)."""
    x = x.copy()
    for i in range(len(x) - 2, -1, -1):
        if math.isnan(x[i]):
            x[i] = x[i + 1]
    return x


def _result(video: FrameVideo, results: list, threshold: float) -> VideoResult:
    norm = _backfill(np.array([r.normality_score if r.normality_score is not None else math.nan for r in results]))
    clf = np.array([r.classifier if r.classifier is not None else math.nan for r in results])
    sigma = np.array([r.sigma for r in results])
    n_sigma = _backfill(np.array([r.normality_sigma if r.normality_sigma is not None else math.nan for r in results]))
    labels = getattr(video, "labels", None)
    truth = labels if labels is not None else np.zeros(len(results), np.uint8)
    return VideoResult(video.name, truth.astype(np.uint8), norm, clf, sigma, n_sigma, threshold)


def pooled_auc(videos: Sequence[VideoResult], mode: str, fusion: str = "max") -> float:
    """Frame-level AUC over the frames of ``videos`` pooled; NaN when there are none or one class only."""
    if not videos:
        return math.nan
    truth = np.concatenate([v.truth for v in videos])
    if truth.min() == truth.max():
        return math.nan
    score = np.concatenate([mode_scores(v, mode, fusion) for v in videos])
    if np.isnan(score).any():
        return math.nan
    return float(roc_auc_score(truth, score))


def mode_scores(v: VideoResult, mode: str, fusion: str) -> np.ndarray:
    if mode == "normality":
        return v.normality
    if mode == "classifier":
        return v.classifier
    # fused: the normality model's σ with the classifier's, by the configured rule
    return np.array([fuse(fusion, None if math.isnan(c) else float(c), None if math.isnan(n) else float(n))
                     for c, n in zip(v.classifier, v.normality_sigma)])


def learn_videos(stream: Stream, videos: Sequence[FrameVideo], *, progress: bool = True) -> dict:
    """Fit the stream's camera model on ``videos`` (normal footage) the way `pvad learn` does."""
    t0 = time.perf_counter()
    with tqdm(total=sum(len(v) for v in videos), desc="learning", unit="frame", disable=not progress) as bar:
        for v in videos:
            stream.frames(v, learn=True, progress=bar)
    t1 = time.perf_counter()
    model = stream.state.normality.finish()
    return {"learn_frames": sum(len(v) for v in videos), "learn_seconds": round(time.perf_counter() - t0, 2),
            "fit_seconds": round(time.perf_counter() - t1, 3), "model": model.describe()}


def score_videos(stream: Stream, videos: Sequence[FrameVideo], *, progress: bool = True, desc: str = "scoring") -> list[VideoResult]:
    model = stream.state.normality.model
    out = []
    with tqdm(total=sum(len(v) for v in videos), desc=desc, unit="frame", disable=not progress) as bar:
        for v in videos:
            res = stream.frames(v, learn=False, progress=bar)
            if any(r.phase is not Phase.SCORING for r in res):
                raise RuntimeError(f"video {v.name}: the camera left the scoring phase (its model was dropped)")
            out.append(_result(v, res, model.threshold))
    return out


def evaluate_oneclass(data: Path, *, anonymizer: str = "none", analysis: AnalysisConfig | None = None,
                      tune: Sequence[str] = ("01", "02", "03", "04"), out_dir: Path | None = None,
                      progress: bool = True, scoring: ScoringConfig | None = None) -> dict[str, Any]:
    """Fit on ``data``'s training videos through ``anonymizer``, score its test videos; FL-AUC per mode,
    on all test videos, on the tuning videos ``tune`` and on the rest."""
    ds = load_oneclass_dataset(Path(data))
    analysis = analysis or reference_analysis(normality={"fusion": "normality"})
    if not analysis.normality.enabled:
        raise ConfigError("analysis.normality.enabled is false: a one-class evaluation needs the normality model")
    stream = build_stream(anonymizer, analysis)
    t0 = time.perf_counter()
    fit = learn_videos(stream, ds.train, progress=progress)
    stream.analyzer.times = type(stream.analyzer.times)()  # stage times of scoring only
    videos = score_videos(stream, ds.test, progress=progress)
    fusion = analysis.normality.fusion
    modes = ["normality"] + (["classifier", "fused"] if fusion != "normality" else [])
    tune_set = [v for v in videos if v.name in set(tune)]
    rest = [v for v in videos if v.name not in set(tune)]
    scoring = scoring or ScoringConfig()
    report: dict[str, Any] = {
        "dataset": ds.name, "data": str(ds.root), "anonymizer": anonymizer, "mode": modes[0] if len(modes) == 1 else "fused",
        "fusion": fusion, "frames": int(sum(len(v.truth) for v in videos)), "videos": len(videos),
        "fl_auc": pooled_auc(videos, "normality" if fusion == "normality" else "fused", fusion),
        "fl_auc_by_mode": {m: {"all": pooled_auc(videos, m, fusion), "tune": pooled_auc(tune_set, m, fusion),
                               "rest": pooled_auc(rest, m, fusion)} for m in modes},
        "tune_videos": list(tune), "per_video": {}, **fit,
        "server_ms_per_frame": stream.analyzer.times.ms_per_frame(),
        "camera_ms_per_frame": round(1000 * stream.times["camera_s"] / max(1, stream.times["frames"]), 2),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    for v in videos:
        report["per_video"][v.name] = {"frames": len(v.truth), "anomalous": int(v.truth.sum()),
                                       "alarms": v.alarms(scoring),
                                       "flagged_normal_frames": int(((v.sigma >= 0.5) & (v.truth == 0)).sum()),
                                       "flagged_anomalous_frames": int(((v.sigma >= 0.5) & (v.truth == 1)).sum())}
    if ds.name == "ped2":
        report["published_raw_frame_auc"] = PUBLISHED_PED2
    if out_dir is not None:
        report["timelines"] = str(plot_timelines(videos, Path(out_dir) / f"timelines-{ds.name}-{anonymizer.replace(':', '-')}.png",
                                                 title=f"{ds.name} through {anonymizer}: FL-AUC {report['fl_auc']:.3f}"))
    return report


def false_alarms(stream: Stream, learn: Sequence[FrameVideo], score: Sequence[FrameVideo], *, fps: float,
                 scoring: ScoringConfig | None = None, progress: bool = True) -> dict[str, Any]:
    """Fit on ``learn`` (normal), then count the alarms the SAS raises on ``score`` (normal too)."""
    fit = learn_videos(stream, learn, progress=progress)
    videos = score_videos(stream, score, progress=progress, desc="normal footage")
    scoring = scoring or ScoringConfig()
    frames = sum(len(v.sigma) for v in videos)
    alarms = sum(v.alarms(scoring) for v in videos)
    hours = frames / fps / 3600.0
    return {"learn_frames": fit["learn_frames"], "scored_frames": frames, "hours": round(hours, 4), "alarms": alarms,
            "alarms_per_hour": round(alarms / hours, 2) if hours else math.nan,
            "frames_over_threshold": int(sum((v.sigma >= 0.5).sum() for v in videos)),
            "max_score_over_threshold": round(float(max(np.nanmax(v.normality) for v in videos) / videos[0].threshold), 3)}


def evaluate_streamed(data: Path, *, anonymizer: str = "none", analysis: AnalysisConfig | None = None,
                      workdir: Path | None = None) -> dict[str, Any]:
    """The same protocol over the real path: an analysis server on loopback with mTLS, a camera client
    that streams each video's frame folder through its anonymizer; `pvad learn` on the training
    videos, then every test video streamed as the camera would. FL-AUC from the acks' normality scores."""
    import asyncio
    import tempfile

    from analysis_server.service import start_server
    from camera_client.client import run_camera
    from camera_client.learn import learn
    from models.eval.anonymizers import default_mode_configs
    from pvad.certs import make_dev_pki
    from pvad.config import CameraConfig, CaptureConfig, ClientTLS, EventLogConfig

    ds = load_oneclass_dataset(Path(data))
    analysis = analysis or reference_analysis()
    anon = default_mode_configs([anonymizer])[anonymizer]
    tmp = None if workdir else tempfile.TemporaryDirectory(prefix="pvad-streamed-")  # certificates, event log
    work = Path(workdir or tmp.name)
    pki = make_dev_pki(work / "certs", cameras=["eval"], subscribers=[])
    s, c = pki["server"], pki["camera/eval"]
    server = ServerConfig(listen="127.0.0.1:0", tls=ServerTLS(ca=s.ca, cert=s.cert, key=s.key), accept=[anon.name],
                          decoders=decoders_for(anon), analysis=analysis, event_log=EventLogConfig(path=work / "events.sqlite"))

    async def run() -> tuple[dict, list[np.ndarray]]:
        srv = await start_server(server)
        try:
            cam = CameraConfig(camera_id="eval", server=f"127.0.0.1:{srv.port}",
                               tls=ClientTLS(ca=c.ca, cert=c.cert, key=c.key), anonymizer=anon,
                               capture=CaptureConfig(source=str(ds.train[0].frames[0].parent), target_fps=ds.fps))
            fitted = await learn(cam, [str(v.frames[0].parent) for v in ds.train])
            scores = []
            for v in ds.test:
                acks: list[float] = []
                video = cam.model_copy(update={"capture": CaptureConfig(source=str(v.frames[0].parent), target_fps=ds.fps)})
                await run_camera(video, on_ack=lambda ack, _ms, acks=acks: acks.append(ack.normality_score))
                first_unscored = np.array([math.nan, *acks[1:]], np.float64)  # a source's first frame has no motion yet
                scores.append(_backfill(first_unscored))
            return fitted, scores
        finally:
            await srv.stop(1.0)

    try:
        fitted, scores = asyncio.run(run())
    finally:
        if tmp is not None:
            tmp.cleanup()
    truth = np.concatenate([v.labels for v in ds.test])
    return {"streamed_fl_auc": float(roc_auc_score(truth, np.concatenate(scores))), "streamed_frames": int(len(truth)),
            "streamed_learn_frames": fitted["frames_acked"], "transport": "mtls"}


def evaluate_false_alarms(videos: Sequence[Path], *, anonymizer: str = "none", analysis: AnalysisConfig | None = None,
                          learn_fraction: float = 0.5, oneclass: Path | None = None, holdout: int = 4, fps: float = 10.0,
                          progress: bool = True) -> dict[str, Any]:
    """Alarms on normal footage a camera never learnt from: for each video file, learn its first
    ``learn_fraction`` and score the rest; for a one-class dataset, learn all training videos but the
    last ``holdout`` and score those. Each source is its own camera."""
    from models.data.oneclass import FileVideo

    analysis = analysis or reference_analysis()
    rows: dict[str, Any] = {}
    for path in videos:
        n = len(FileVideo(Path(path), fps))
        cut = int(n * learn_fraction)
        stream = build_stream(anonymizer, analysis, camera_id=Path(path).stem)
        rows[Path(path).name] = false_alarms(stream, [FileVideo(Path(path), fps, 0, cut)],
                                             [FileVideo(Path(path), fps, cut, None)], fps=fps, progress=progress)
    if oneclass is not None:
        ds = load_oneclass_dataset(oneclass)
        stream = build_stream(anonymizer, analysis, camera_id=ds.name)
        rows[f"{ds.name} training {ds.train[-holdout].name}-{ds.train[-1].name} (held out)"] = false_alarms(
            stream, ds.train[:-holdout], ds.train[-holdout:], fps=ds.fps, progress=progress)
    hours = sum(r["hours"] for r in rows.values())
    alarms = sum(r["alarms"] for r in rows.values())
    return {"anonymizer": anonymizer, "sources": rows, "hours": round(hours, 4), "alarms": alarms,
            "alarms_per_hour": round(alarms / hours, 2) if hours else math.nan}


def plot_timelines(videos: Sequence[VideoResult], path: Path, *, title: str = "") -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(videos)
    cols = 3
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4.2 * cols, 2.2 * rows), squeeze=False)
    for ax, v in zip(axes.flat, videos):
        t = np.arange(len(v.truth))
        ax.fill_between(t, 0, 1, where=v.truth > 0, color="tab:red", alpha=0.15, transform=ax.get_xaxis_transform(),
                        label="anomalous (ground truth)")
        ax.plot(t, v.normality / v.threshold, color="tab:blue", lw=1.2, label="normality score / threshold")
        ax.axhline(1.0, color="k", ls="--", lw=0.8, label="threshold")
        ax.set_title(f"video {v.name}", fontsize=9)
        ax.set_ylim(0, max(2.0, float(np.nanmax(v.normality / v.threshold)) * 1.05))
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=6, loc="upper left")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, plt)
