"""`pvad eval anonymizers`: cost, utility and privacy of every camera anonymizer on real frames.

For each registered anonymizer (its default config; plus `blur:person` and `pixelate:person`, the
LA3D baselines G⁰/P⁰ on person boxes, against which the adaptive modes' overhead is stated), on
frames of the given images and videos (240×320, as the camera sends them):

- camera cost: median ms/frame of the whole anonymizer call (detector + transform + JPEG or
  encoder + latent packing), the detector's share for person-region modes, bytes of the
  `pvad.v1.Frame` message on the wire; memory, two ways, both labelled: `traced_peak_mb` =
  tracemalloc peak during anonymizer calls (Python and numpy allocations; OpenCV's and PyTorch's
  native buffers are not traced) and `rss_delta_mb` = process RSS after creating and running the
  anonymizer minus before creating it (includes loaded weights; memory freed by earlier modes can
  be reused, so it is a lower bound);
- what the server sees: the decoded JPEG, or for a latent the decoder of the shipped autoencoder
  pair whose encoder id it carries (`models/weights`);
- utility (De Coninck et al. §3.1): person AP at IoU 0.5 of a detector on what the server sees,
  against the same detector's person boxes on the original frame as pseudo ground truth; plus the
  mean absolute error of the person count;
- privacy: faces found before/after (``models.eval.faces``, union of the available detectors), the
  share of original faces still found (IoU ≥ 0.3), re-identification from face embeddings
  (``models.eval.privacy.reidentification``), MSE/PSNR/SSIM (``models.eval.privacy.quality``)
  and normalised mutual information (``skimage.metrics.normalized_mutual_information``, 1 = no
  shared information, 2 = identical) against the original.

Writes ``anonymizers.json`` and ``tradeoff.png`` (utility vs privacy, one labelled point per mode,
like TeD-SPAD Fig. 3) to ``out_dir``.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import time
import tracemalloc
import typing
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from models.eval.faces import (
    FaceEmbedder,
    available_face_detectors,
    box_iou,
    optional_face_embedder,
)
from models.eval.plots import save_figure
from models.eval.privacy import (
    Frames,
    detect_faces,
    quality,
    reidentification,
)
from pvad.errors import ModelLoadError

logger = logging.getLogger(__name__)

LA3D_BASELINES = {"blur:person": "blur", "pixelate:person": "pixelate"}
HARDENED = "dp-encoder:hardened"  # the dp-encoder with the hardened DP pair (configs/train-autoencoder-hardened.yaml)
# adaptive mode -> the plain mode on person boxes its overhead is stated against
ADAPTIVE_PLAIN = {
    "adaptive-blur": "blur:person", "adaptive-full-blur": "blur:person", "adaptive-max-blur": "blur:person",
    "adaptive-pixelate": "pixelate:person", "adaptive-max-pixelate": "pixelate:person",
}
FACE_IOU = 0.3


# --------------------------------------------------------------------------- which modes


def config_classes() -> dict[str, type]:
    """Anonymizer name -> its config section, from the `AnonymizerConfig` union of pvad.config."""
    from pvad.config import AnonymizerConfig

    union = typing.get_args(AnonymizerConfig)[0]
    return {cls.model_fields["name"].default: cls for cls in typing.get_args(union)}


def default_mode_configs(modes: Sequence[str] | None = None) -> dict[str, Any]:
    """Key -> config of each mode to evaluate: every registered anonymizer with its defaults, plus
    the LA3D baselines `blur:person` (kernel 13, sigma 10) and `pixelate:person` (block 4), and
    `dp-encoder:hardened` (the hardened DP pair, when its checkpoint is there). A mode whose config
    cannot be built maps to the error text."""
    from camera_client.anonymize import list_anonymizers
    from pvad.config import (
        SHIPPED_HARDENED_AUTOENCODER,
        BlurAnonymizer,
        DpEncoderAnonymizer,
        PixelateAnonymizer,
    )

    classes = config_classes()
    registered = list_anonymizers()
    extra = [*LA3D_BASELINES, HARDENED]
    default_extra = [*LA3D_BASELINES, *([HARDENED] if SHIPPED_HARDENED_AUTOENCODER.is_file() else [])]
    wanted = list(modes) if modes else [*registered, *default_extra]
    unknown = [m for m in wanted if m not in registered and m not in extra]
    if unknown:
        raise ValueError(f"unknown anonymizer(s) {unknown}; known: {', '.join([*registered, *extra])}")
    out: dict[str, Any] = {}
    for name in wanted:
        if name == HARDENED:
            out[name] = (DpEncoderAnonymizer(checkpoint=SHIPPED_HARDENED_AUTOENCODER)
                         if SHIPPED_HARDENED_AUTOENCODER.is_file() else
                         f"no hardened pair at {SHIPPED_HARDENED_AUTOENCODER}: make it with `pvad train autoencoder "
                         "--config configs/train-autoencoder-hardened.yaml`")
        elif name == "blur:person":
            out[name] = BlurAnonymizer(region="person", kernel=13, sigma=10.0)
        elif name == "pixelate:person":
            out[name] = PixelateAnonymizer(region="person", block=4)
        elif name not in classes:
            out[name] = f"no config section for {name!r} in pvad.config.AnonymizerConfig"
        else:
            try:
                out[name] = classes[name]()
            except Exception as exc:  # noqa: BLE001 - a section with required fields: reported, not fatal
                out[name] = f"default config of {name!r} is invalid: {exc}"
    return out


# --------------------------------------------------------------------------- utility: person AP


def average_precision(gt: Sequence[np.ndarray], pred_boxes: Sequence[np.ndarray], pred_scores: Sequence[np.ndarray],
                      *, iou: float = 0.5) -> float | None:
    """All-point interpolated AP (PASCAL VOC 2010+) of detections against ground-truth boxes over
    a set of images; a detection matches the unmatched ground truth it overlaps most (IoU ≥ iou).
    None when there is no ground-truth box at all."""
    n_gt = sum(len(g) for g in gt)
    if n_gt == 0:
        return None
    records = [(float(s), i, b) for i, (bs, ss) in enumerate(zip(pred_boxes, pred_scores)) for b, s in zip(bs, ss)]
    records.sort(key=lambda r: -r[0])
    matched = [np.zeros(len(g), bool) for g in gt]
    tp = np.zeros(len(records))
    for k, (_, i, box) in enumerate(records):
        if not len(gt[i]):
            continue
        overlaps = box_iou(np.asarray(box)[None], gt[i])[0]
        j = int(np.argmax(overlaps))
        if overlaps[j] >= iou and not matched[i][j]:
            matched[i][j] = True
            tp[k] = 1
    if not len(records):
        return 0.0
    ctp = np.cumsum(tp)
    recall = ctp / n_gt
    precision = ctp / np.arange(1, len(records) + 1)
    mrec = np.concatenate([[0.0], recall, [1.0]])
    mpre = np.concatenate([[0.0], precision, [0.0]])
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]
    steps = np.nonzero(mrec[1:] != mrec[:-1])[0]
    return float(np.sum((mrec[steps + 1] - mrec[steps]) * mpre[steps + 1]))


def _person(dets, min_score: float | None) -> tuple[np.ndarray, np.ndarray]:
    keep = np.asarray(dets.class_ids) == 0
    if min_score is not None:
        keep &= np.asarray(dets.scores) >= min_score
    return np.asarray(dets.boxes, np.float64)[keep], np.asarray(dets.scores, np.float64)[keep]


# --------------------------------------------------------------------------- helpers


class TimedDetector:
    """A detector proxy that adds up the time spent in `detect` (the region modes' detector share)."""

    def __init__(self, detector) -> None:
        self.inner, self.name, self.seconds = detector, detector.name, 0.0

    def detect(self, frame_bgr: np.ndarray):
        t0 = time.perf_counter()
        try:
            return self.inner.detect(frame_bgr)
        finally:
            self.seconds += time.perf_counter() - t0


def _rss_mb() -> float | None:
    try:
        import psutil
    except ImportError:
        return None
    return psutil.Process(os.getpid()).memory_info().rss / 2**20


def nmi(a: np.ndarray, b: np.ndarray) -> float:
    """Normalised mutual information (Studholme; skimage, 100 bins) of two images: 1 = independent, 2 = identical."""
    from skimage.metrics import normalized_mutual_information

    return float(normalized_mutual_information(a, b, bins=100))


class ServerView:
    """Turns a payload into the RGB frame the server analyses: the decoded JPEG, or a latent
    decoded by the shipped autoencoder pair whose encoder made it."""

    def __init__(self) -> None:
        self._decoders: dict[str, Any] | None = None

    def _load_decoders(self) -> dict[str, Any]:
        if self._decoders is None:
            from models.nets.autoencoder import encoder_id, load_autoencoder
            from pvad.config import shipped_autoencoders

            self._decoders = {}
            for path in shipped_autoencoders():
                ae, _ = load_autoencoder(path)
                self._decoders[encoder_id(ae.encoder)] = ae.decoder.eval()
        return self._decoders

    def __call__(self, payload) -> np.ndarray | None:
        from pvad.v1 import pvad_pb2

        if isinstance(payload, pvad_pb2.Image):
            bgr = cv2.imdecode(np.frombuffer(payload.jpeg, np.uint8), cv2.IMREAD_COLOR)
            if bgr.shape[:2] != (240, 320):
                bgr = cv2.resize(bgr, (320, 240), interpolation=cv2.INTER_AREA)
            return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        decoder = self._load_decoders().get(payload.encoder_id)
        if decoder is None:
            return None
        import torch

        from pvad.codec import decode_latent

        z = decode_latent(payload, expected_shape=tuple(payload.shape))
        with torch.inference_mode():
            x = decoder(torch.from_numpy(np.ascontiguousarray(z))[None].float())[0]
        return x.clamp(0, 1).mul(255).round().to(torch.uint8).permute(1, 2, 0).numpy().copy()


# --------------------------------------------------------------------------- one mode


def _load_frames(files: Sequence[Path], *, every_n: int, max_frames_per_video: int
                 ) -> tuple[Frames, list[str], list[str]]:
    """RGB 240×320 frames of images and videos (``models.data.frames``, as ``eval privacy`` reads them),
    a name per frame and the source (file label) of each frame."""
    from models.data.frames import collect_sources, read_frames

    loaded = read_frames(collect_sources([Path(f) for f in files]), every_n=every_n,
                         max_frames_per_source=max_frames_per_video)
    names = [f"{label}#{k}" if n > 1 else label for label, n in loaded.kept.items() for k in range(n)]
    sources = [label for label, n in loaded.kept.items() for _ in range(n)]
    return loaded.frames, names, sources


def _evaluate_mode(key: str, cfg: Any, frames_rgb: Frames, *, camera_detector, server_view: ServerView,
                   memory_frames: int, repeats: int = 3,
                   source_starts: frozenset[int] = frozenset()) -> tuple[dict[str, Any], np.ndarray | None]:
    """Camera-side numbers of one mode and the frames the server sees (None for an unknown latent)."""
    from camera_client.anonymize import create_anonymizer
    from camera_client.anonymize.regions import RegionImageAnonymizer
    from camera_client.client import make_frame
    from pvad.config import RegionAnonymizer
    from pvad.v1 import pvad_pb2

    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames_rgb]
    rss0 = _rss_mb()
    timed = None
    if (isinstance(cfg, RegionAnonymizer) and cfg.region == "person" and cfg.detector is None
            and camera_detector is not None):
        timed = TimedDetector(camera_detector)
        anon = RegionImageAnonymizer(cfg, detector=timed)
    else:
        anon = create_anonymizer(cfg)
    anon(bgr[0])  # warm-up (lazy initialisation, caches)
    if timed is not None:
        timed.seconds = 0.0
    if callable(getattr(anon, "reset", None)):
        anon.reset()
    n = len(bgr)
    total, det = np.full(n, np.inf), np.full(n, np.inf)
    xform = np.full(n, np.inf)
    sizes, payloads, stats = [], [], None
    resettable = callable(getattr(anon, "reset", None))
    for rnd in range(max(1, repeats)):  # per frame the fastest of `repeats` calls: the machine may be shared
        for i, frame in enumerate(bgr):
            if resettable and i in source_starts:  # a new source is a new stream: no boxes held across
                anon.reset(keep_counters=True)
            d0 = timed.seconds if timed is not None else 0.0
            t0 = time.perf_counter()
            payload = anon(frame)
            dt = time.perf_counter() - t0
            dd = (timed.seconds - d0) if timed is not None else 0.0
            total[i], det[i], xform[i] = min(total[i], dt), min(det[i], dd), min(xform[i], dt - dd)
            if rnd == 0:
                sizes.append(make_frame("eval", i, 0, payload).ByteSize())
                payloads.append(payload)
        if rnd == 0:  # the policy counters of one pass over the frames
            stats = anon.stats() if callable(getattr(anon, "stats", None)) else None
    tracemalloc.start()
    for frame in bgr[:memory_frames]:
        anon(frame)
    traced_peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    rss1 = _rss_mb()
    views = [server_view(p) for p in payloads]
    row: dict[str, Any] = {
        "payload": "latent" if isinstance(payloads[0], pvad_pb2.Latent) else "image",
        "region": getattr(cfg, "region", None),
        "config": cfg.model_dump(mode="json", exclude={"detector"}),
        "untrained": bool(getattr(anon, "untrained", False)),
        "ms_per_frame": round(1000 * float(np.median(total)), 3),
        "ms_per_frame_mean": round(1000 * float(np.mean(total)), 3),
        "detector_ms_per_frame": round(1000 * float(np.median(det)), 3) if timed is not None else None,
        "transform_ms_per_frame": round(1000 * float(np.median(xform)), 3) if timed is not None else None,
        "timing": f"median over frames of the fastest of {max(1, repeats)} call(s) per frame",
        "bytes_per_frame": round(statistics.fmean(sizes)),
        "traced_peak_mb": round(traced_peak, 2),
        "rss_delta_mb": round(rss1 - rss0, 1) if rss0 is not None and rss1 is not None else None,
        "policy": stats,
    }
    if any(v is None for v in views):
        row["note"] = "latent from an encoder with no shipped decoder: no server view, no utility/privacy"
        return row, None
    return row, np.stack(views)


# --------------------------------------------------------------------------- the evaluation


def evaluate_anonymizers(files: Sequence[Path], *, modes: Sequence[str] | None = None, out_dir: Path | None = None,
                         every_n: int = 10, max_frames_per_video: int = 8, threads: int = 1,
                         utility_detector=None, camera_detector=None, gt_min_score: float | None = 0.25,
                         repeats: int = 3, progress: bool = True) -> dict[str, Any]:
    """Evaluate `modes` (default: every registered anonymizer + the LA3D person baselines) on
    frames of `files`. Returns ``{"meta": {...}, "modes": {mode: {...}}}`` (see module doc).

    `utility_detector` / `camera_detector`: detector configs (defaults: YOLO-Fastest-1.1-xl,
    ``pvad.samples.offline_detector()``, for utility, scored down to 0.2; the region modes' own
    default, YOLO-Fastest-1.1, on the camera), so the utility detector is not the model that placed
    the boxes. Pseudo ground truth = utility detections on the original with score ≥
    `gt_min_score` (None: all; HOG's scores are SVM margins, so None is used for it).
    """
    from tqdm import tqdm

    from analysis_server.detectors import create_detector
    from camera_client.anonymize.regions import default_person_detector
    from pvad import samples

    try:
        import torch

        torch.set_num_threads(threads)
    except ImportError:
        pass
    cv2_threads = cv2.getNumThreads()
    cv2.setNumThreads(threads)
    try:
        configs = default_mode_configs(modes)
        frames, names, sources = _load_frames(files, every_n=every_n, max_frames_per_video=max_frames_per_video)
        ucfg = utility_detector or samples.offline_detector()
        if hasattr(ucfg, "conf"):
            ucfg = ucfg.model_copy(update={"conf": min(ucfg.conf, 0.2)})
        if ucfg.backend == "hog":
            gt_min_score = None
        udet = create_detector(ucfg)
        ccfg = camera_detector or default_person_detector()
        cdet = create_detector(ccfg)
        originals_bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in frames]
        gt = [_person(udet.detect(f), gt_min_score)[0] for f in originals_bgr]
        face_detectors = available_face_detectors()
        embedder = optional_face_embedder()
        faces_before = detect_faces(face_detectors, frames)["total"]
        n_faces = int(sum(len(b) for b in faces_before))
        starts = frozenset(i for i, s in enumerate(sources) if i == 0 or s != sources[i - 1])
        server_view = ServerView()
        results: dict[str, Any] = {}
        views_by_mode: dict[str, np.ndarray] = {}
        bar = tqdm(list(configs.items()), desc="anonymizers", unit="mode", disable=not progress)
        for key, cfg in bar:
            bar.set_postfix_str(key)
            if isinstance(cfg, str):
                results[key] = {"error": cfg}
                continue
            try:
                row, views = _evaluate_mode(key, cfg, frames, camera_detector=cdet, server_view=server_view,
                                            memory_frames=min(4, len(frames)), repeats=repeats,
                                            source_starts=starts)
            except ModelLoadError as exc:  # e.g. weights not trained/shipped yet
                logger.warning("anonymizer %s not evaluated: %s", key, exc)
                results[key] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            except Exception as exc:
                logger.exception("anonymizer %s failed", key)
                results[key] = {"error": f"{type(exc).__name__}: {exc}"}
                continue
            if views is not None:
                row.update(_utility(udet, views, gt, gt_min_score))
                row.update(_privacy(frames, views, faces_before, face_detectors, embedder))
                views_by_mode[key] = views
            results[key] = row
        _adaptive_overhead(results)
        meta = {
            "frames": len(frames), "sources": sorted(set(sources)), "frame_names": names, "threads": threads,
            "utility_detector": _describe(ucfg), "camera_detector": _describe(ccfg),
            "gt_min_score": gt_min_score, "gt_person_boxes": int(sum(len(g) for g in gt)),
            "faces_before": n_faces, "face_detectors": sorted(face_detectors),
            "reidentification": embedder is not None,
            "memory": "traced_peak_mb: tracemalloc peak over anonymizer calls (Python + numpy, not OpenCV/PyTorch "
                      "native buffers); rss_delta_mb: RSS after create+run minus before create (lower bound)",
            "ap": "person AP@0.5, all-point interpolation, pseudo ground truth = utility detector on the original",
        }
        result = {"meta": meta, "modes": results}
        if out_dir is not None:
            out_dir = Path(out_dir)
            out_dir.mkdir(parents=True, exist_ok=True)
            (out_dir / "anonymizers.json").write_text(json.dumps(result, indent=2, default=str))
            plot_tradeoff(results, out_dir / "tradeoff.png")
            plot_examples(frames, sources, views_by_mode, out_dir / "examples.png")
        return result
    finally:
        cv2.setNumThreads(cv2_threads)


def _describe(cfg) -> str:
    if getattr(cfg, "weights", None) is not None:
        return f"{cfg.backend}:{Path(str(cfg.weights)).name}"
    return cfg.backend


def _utility(udet, views: np.ndarray, gt: list[np.ndarray], gt_min_score: float | None) -> dict[str, Any]:
    preds = [_person(udet.detect(cv2.cvtColor(v, cv2.COLOR_RGB2BGR)), None) for v in views]
    counts = [int((s >= gt_min_score).sum()) if gt_min_score is not None else len(s) for _, s in preds]
    return {
        "person_ap50": average_precision(gt, [b for b, _ in preds], [s for _, s in preds]),
        "person_count_mae": float(np.mean([abs(c - len(g)) for c, g in zip(counts, gt)])),
        "persons_found": int(sum(counts)),
    }


def _privacy(frames: Frames, views: np.ndarray, faces_before: list[np.ndarray], face_detectors,
             embedder: FaceEmbedder | None) -> dict[str, Any]:
    after = detect_faces(face_detectors, views)["total"]
    n_before = int(sum(len(b) for b in faces_before))
    kept = sum(int((box_iou(b, a).max(axis=1) >= FACE_IOU).sum()) for b, a in zip(faces_before, after)
               if len(b) and len(a))
    reid = (reidentification(embedder, frames, views, detectors=face_detectors, boxes=(faces_before, after))
            if embedder is not None and n_before else None)
    return {
        **quality(frames, views),
        "nmi": float(np.mean([nmi(a, b) for a, b in zip(frames, views)])),
        "faces_before": n_before,
        "faces_after": int(sum(len(a) for a in after)),
        "faces_kept": kept,
        "face_hiding": 1.0 - kept / n_before if n_before else None,
        "reid_top1": reid["reid_top1"] if reid else None,
        "reid_top1_known_boxes": reid["reid_top1_known_boxes"] if reid else None,
        "reid_known_boxes_mean_distance": reid["known_boxes_mean_distance"] if reid else None,
    }


def _adaptive_overhead(results: dict[str, Any]) -> None:
    """`ms_ratio_vs_plain` (whole call) and `transform_ms_ratio_vs_plain` (detector excluded) of each
    adaptive mode against its plain counterpart on person boxes."""
    for mode, plain in ADAPTIVE_PLAIN.items():
        a, p = results.get(mode), results.get(plain)
        if not a or not p or "error" in a or "error" in p:
            continue
        a["overhead_vs"] = plain
        a["ms_ratio_vs_plain"] = round(a["ms_per_frame"] / p["ms_per_frame"], 3)
        if a.get("transform_ms_per_frame") and p.get("transform_ms_per_frame"):
            a["transform_ms_ratio_vs_plain"] = round(a["transform_ms_per_frame"] / p["transform_ms_per_frame"], 3)


# --------------------------------------------------------------------------- plots


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_tradeoff(results: dict[str, Any], path: Path) -> Path:
    """Utility (person AP@0.5) against privacy, one labelled point per mode: left, privacy = share
    of original faces no longer found; right, privacy = 1 − SSIM."""
    rows = {k: r for k, r in results.items() if r.get("person_ap50") is not None and r.get("ssim") is not None}
    plt = _pyplot()
    panels: list[tuple[str, Callable[[dict], float | None]]] = [
        ("privacy: share of original faces hidden", lambda r: r.get("face_hiding")),
        ("privacy: 1 − SSIM vs original", lambda r: 1.0 - r["ssim"]),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    for ax, (xlabel, fx) in zip(axes, panels):
        for j, (k, r) in enumerate(rows.items()):
            x = fx(r)
            if x is None:
                continue
            marker = "s" if r["payload"] == "latent" else "^" if k.startswith("adaptive") else "o"
            ax.scatter(x, r["person_ap50"], marker=marker, s=40)
            ax.annotate(k, (x, r["person_ap50"]), textcoords="offset points", xytext=(4, 3 + 9 * (j % 5)),
                        fontsize=7, arrowprops={"arrowstyle": "-", "lw": 0.4, "alpha": 0.5})
        ax.set_xlabel(xlabel + "  →  more private")
        ax.set_ylabel("utility: person AP@0.5 (pseudo GT)")
        ax.grid(alpha=0.3)
        if not rows:
            ax.text(0.5, 0.5, "no person in the pseudo ground truth:\nno utility to plot", ha="center",
                    transform=ax.transAxes)
    fig.suptitle("camera anonymizers: utility vs privacy (o fixed, ^ LA3D adaptive, s latent)")
    return save_figure(fig, path, plt)


def plot_examples(frames: Frames, sources: Sequence[str], views_by_mode: dict[str, np.ndarray], path: Path,
                  *, limit: int = 3) -> Path | None:
    """Rows: up to `limit` frames (one per source); columns: original, then each mode's server view."""
    if not views_by_mode:
        return None
    plt = _pyplot()
    seen, pick = set(), []
    for i, src in enumerate(sources):
        if src not in seen:
            seen.add(src)
            pick.append(i)
    pick = pick[:limit]
    cols = 1 + len(views_by_mode)
    fig, axes = plt.subplots(len(pick), cols, figsize=(2.2 * cols, 1.8 * len(pick)), squeeze=False)
    for r, i in enumerate(pick):
        axes[r][0].imshow(frames[i])
        axes[r][0].set_title("original", fontsize=7)
        for c, (k, v) in enumerate(views_by_mode.items(), start=1):
            axes[r][c].imshow(v[i])
            axes[r][c].set_title(k, fontsize=7)
    for ax in axes.flat:
        ax.axis("off")
    return save_figure(fig, path, plt)


def format_table(result: dict[str, Any]) -> str:
    """A fixed-width text table, one row per mode: ms/fr = ms per anonymizer call (detector,
    transform, JPEG/latent), det / xform = its detector / non-detector part (person modes), trMB =
    tracemalloc peak, hid = share of original faces no longer found, x plain = adaptive xform ms /
    plain-on-person xform ms (the LA3D adaptive overhead)."""
    head = (f"{'mode':22s} {'ms/fr':>7s} {'det':>6s} {'xform':>6s} {'bytes':>7s} {'trMB':>6s} {'AP50':>6s} {'cntMAE':>6s} "
            f"{'SSIM':>6s} {'PSNR':>6s} {'NMI':>6s} {'faces':>7s} {'hid':>5s} {'reid':>5s} {'x plain':>7s}")
    lines = [head]

    def f(v, fmt):
        return format(v, fmt) if isinstance(v, (int, float)) else "-".rjust(len(format(0.0, fmt)))

    for k, r in result["modes"].items():
        if "error" in r:
            lines.append(f"{k:22s} error: {r['error']}")
            continue
        faces = f"{r.get('faces_before', '-')}>{r.get('faces_after', '-')}"
        lines.append(
            f"{k:22s} {f(r['ms_per_frame'], '7.2f')} {f(r.get('detector_ms_per_frame'), '6.2f')} "
            f"{f(r.get('transform_ms_per_frame'), '6.2f')} "
            f"{r['bytes_per_frame']:7d} {f(r['traced_peak_mb'], '6.2f')} {f(r.get('person_ap50'), '6.3f')} "
            f"{f(r.get('person_count_mae'), '6.2f')} {f(r.get('ssim'), '6.3f')} {f(r.get('psnr'), '6.2f')} "
            f"{f(r.get('nmi'), '6.3f')} {faces:>7s} {f(r.get('face_hiding'), '5.2f')} {f(r.get('reid_top1'), '5.2f')} "
            f"{f(r.get('transform_ms_ratio_vs_plain'), '7.2f')}")
    return "\n".join(lines)
