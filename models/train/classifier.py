"""Train the two-stream anomaly classifier with the papers' recipe (P §3.3, §4.2; G §5.4).

``train_classifier(cfg)``:

1. loads the dataset (``models.data.vad``), splits the test videos into validation and held-out
   halves stratified by class (P §4.2), and samples training frames adaptively
   (``models.data.sampling``: 3 fps in anomalous runs, 10 fps elsewhere; ``-ha`` drops SOFT frames);
2. computes each video's frames, flow and bags once (``models.data.features``, cached on disk;
   with ``autoencoder`` every frame is a reconstruction, as on the server);
3. trains in phases (paper: FC head only at 1e-5, then all layers at 1e-6) with Adam, class
   weights on a per-sample binary cross-entropy, and batch-wise hard mining: every step scores
   α·K candidates drawn without replacement and trains on the K with the highest loss, so an
   epoch trains on 1/α of the samples (P §3.3). Each phase stops after ``patience`` epochs
   without a lower validation loss and keeps its best weights;
4. writes a checkpoint whose card records the recipe, the data and the validation metrics.

After every epoch ``<stem>.last.pt`` holds what resuming needs. Under ``torchrun`` (``WORLD_SIZE``
> 1) it runs distributed data-parallel on gloo (CPU) or NCCL (CUDA): every rank mines its own
share of each candidate pool, gradients are averaged, rank 0 writes the files.

Training augments with horizontal flips (flow's x channel is mirrored with the frame).
"""

from __future__ import annotations

import json
import logging
import math
import os
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.nn.functional as F
from sklearn.metrics import roc_auc_score
from tqdm import tqdm

from models.checkpoint import atomic_torch_save, last_checkpoint_path, save_checkpoint
from models.data.features import FeatureCache
from models.data.sampling import (
    adaptive_indices,
    evaluation_targets,
    thin,
    training_targets,
    uniform_indices,
)
from models.data.vad import VadDataset, VideoItem, load_dataset
from models.nets.two_stream import TwoStreamClassifier, two_stream_card
from models.train.classifier_config import PhaseSection, TrainClassifierConfig
from models.train.samples import Batches, SampleSet, predict
from pvad.devices import resolve_device
from pvad.errors import ConfigError

log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- splits


def split_validation(test: list[VideoItem], fraction: float, seed: int) -> tuple[list[VideoItem], list[VideoItem]]:
    """(validation, held-out) from the test videos: ``fraction`` of each class to validation."""
    rng = np.random.default_rng(seed)
    by_class: dict[str, list[VideoItem]] = {}
    for v in sorted(test, key=lambda v: v.name):
        by_class.setdefault(v.category, []).append(v)
    val, held = [], []
    for cls in sorted(by_class):
        vids = by_class[cls]
        order = rng.permutation(len(vids))
        k = int(fraction * len(vids) + 0.5)  # half up: a class of one video validates
        k = min(max(k, 1), len(vids) - 1) if len(vids) >= 2 else 1
        val += [vids[i] for i in order[:k]]
        held += [vids[i] for i in order[k:]]
    return val, held


# --------------------------------------------------------------------------- tensors


def weighted_bce(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Per-sample class-weighted binary cross-entropy (no reduction)."""
    return F.binary_cross_entropy_with_logits(logits.float(), target, reduction="none") * weight


def mine_hard(losses: torch.Tensor, k: int) -> torch.Tensor:
    """Positions of the ``k`` highest losses (P §3.3: hard positives and negatives alike)."""
    return torch.topk(losses, min(k, losses.numel())).indices


# --------------------------------------------------------------------------- distributed


@dataclass
class Dist:
    rank: int = 0
    world: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, *values: float) -> list[float]:
        if self.world == 1:
            return list(values)
        t = torch.tensor(values, dtype=torch.float64)
        dist.all_reduce(t)
        return t.tolist()

    def gather(self, arr: np.ndarray) -> np.ndarray:
        if self.world == 1:
            return arr
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, arr)
        return np.concatenate(out)


def _init_dist(device: torch.device) -> Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return Dist(dist.get_rank(), dist.get_world_size())


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    out: Path
    variant: str
    history: list[dict[str, Any]]
    metrics: dict[str, float]
    epoch_seconds: float
    samples: dict[str, int]


def _features(cache: FeatureCache, videos: list[VideoItem], indices: list[np.ndarray], d: Dist,
              what: str, progress: bool) -> None:
    """Compute (or find) every video's features; under DDP each rank computes its share."""
    mine = [i for i in range(len(videos)) if i % d.world == d.rank]
    for i in tqdm(mine, desc=f"features ({what})", unit="video", disable=not progress or not d.main):
        cache.get(videos[i], indices[i])
    d.barrier()


def _stacked(cache: FeatureCache, videos: list[VideoItem], indices: list[np.ndarray], targets, weights) -> SampleSet:
    """The cached features of ``videos`` as one SampleSet, read back one video at a time."""
    def parts():
        for v, ix in zip(videos, indices):
            f = cache.get(v, ix)
            yield v.name, f, targets(f.labels)
    return SampleSet.stack(parts(), weights, capacity=sum(len(ix) for ix in indices))


def _set_phase(model: TwoStreamClassifier, phase: PhaseSection) -> list[torch.nn.Parameter]:
    backbones = [model.frame_stream] + ([model.flow_stream] if model.flow_stream is not None else [])
    for b in backbones:
        for p in b.parameters():
            p.requires_grad_(phase.train == "all")
    return [p for p in model.parameters() if p.requires_grad]


def _train_mode(model: TwoStreamClassifier, phase: PhaseSection) -> None:
    model.train()
    if phase.train == "head":  # frozen backbones keep their BatchNorm statistics too
        model.frame_stream.eval()
        if model.flow_stream is not None:
            model.flow_stream.eval()


@torch.no_grad()
def precise_bn(model: TwoStreamClassifier, batches: Batches, train: SampleSet, n: int, rng: np.random.Generator,
               batch_size: int = 32) -> None:
    """Recompute BatchNorm running statistics as plain averages over ``n`` random training samples.

    Hard mining trains on the highest-loss samples only, so the running averages describe mined
    batches, not the data the model will see; evaluation in eval mode then drifts (Wu & Johnson
    2021, "Rethinking 'Batch' in BatchNorm", the PreciseBN remedy).
    """
    bns = [m for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    if not bns:
        return
    saved = [m.momentum for m in bns]
    for m in bns:
        m.reset_running_stats()
        m.momentum = None  # cumulative average over the batches below
    model.eval()
    for m in bns:
        m.train()
    idx = rng.choice(len(train), size=min(n, len(train)), replace=False)
    for i in range(0, len(idx), batch_size):
        model(*batches.inputs(train, idx[i:i + batch_size]))
    for m, mom in zip(bns, saved):
        m.momentum = mom
    model.eval()


def _validate(model, batches: Batches, val: SampleSet, d: Dist) -> dict[str, float]:
    idx = np.arange(d.rank, len(val), d.world)
    probs = predict(model, batches, val, idx)
    t, w = val.target[idx], val.weight[idx]
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    bce = -(t * np.log(p) + (1 - t) * np.log(1 - p)) * w
    total, count = d.sum(float(bce.sum()), float(len(idx)))
    all_p, all_t = d.gather(probs), d.gather(t)
    auc = float(roc_auc_score(all_t, all_p)) if 0 < all_t.sum() < len(all_t) else float("nan")
    return {"val_loss": total / max(count, 1.0), "val_fl_auc": auc}


def _epoch(model, ddp_model, optimizer, batches: Batches, train: SampleSet, cfg: TrainClassifierConfig,
           phase: PhaseSection, rng: np.random.Generator, d: Dist, progress: bool, desc: str) -> float:
    k = cfg.batch_size
    alpha = cfg.hard_mining.alpha if cfg.hard_mining.enabled else 1
    pool = alpha * k
    order = rng.permutation(len(train))
    flips = rng.random(len(train)) < 0.5
    steps = len(order) // (pool * d.world) or 1
    total, n = 0.0, 0
    bar = tqdm(range(steps), desc=desc, unit="step", leave=False, disable=not progress or not d.main)
    for step in bar:
        chunk = order[step * pool * d.world:(step + 1) * pool * d.world]
        cand = chunk[d.rank::d.world]
        if len(cand) == 0:
            cand = order[:pool][d.rank::d.world]
        _train_mode(model, phase)
        if alpha > 1:
            # Candidates are scored in training mode: BatchNorm normalises them with the statistics
            # of the whole random pool, and its running averages follow random draws instead of
            # only the mined (mostly one-class) batches. Scored in eval mode, with running averages
            # that lag the weights, the same 2S-ha run stayed at validation FL-AUC 0.50-0.57 for
            # three epochs (README).
            with torch.no_grad():
                logits = model(*batches.inputs(train, cand, flip=flips[cand]))
                losses = weighted_bce(logits, *batches.targets(train, cand))
            cand = cand[mine_hard(losses, k).cpu().numpy()]
        logits = ddp_model(*batches.inputs(train, cand, flip=flips[cand]))
        loss = weighted_bce(logits, *batches.targets(train, cand)).mean()
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total += loss.item() * len(cand)
        n += len(cand)
        bar.set_postfix(loss=f"{total / n:.4f}")
    s, c = d.sum(total, float(n))
    return s / max(c, 1.0)


def _better(value: float, best: float | None, cfg: TrainClassifierConfig) -> bool:
    """Whether ``value`` of ``cfg.monitor`` improves on ``best`` by more than ``min_delta`` (NaN never does)."""
    if math.isnan(value):
        return False
    if best is None:
        return True
    return value < best - cfg.min_delta if cfg.monitor == "val_loss" else value > best + cfg.min_delta


def prepare_samples(cfg: TrainClassifierConfig, dataset: VadDataset, cache: FeatureCache, d: Dist, progress: bool):
    """(train SampleSet, validation SampleSet, validation videos, counts)."""
    train_videos = dataset.split("train")
    if not train_videos:
        raise ConfigError(f"{cfg.data}: the train split is empty (see `pvad data index {cfg.data}`)")
    val_videos, _ = split_validation(dataset.split("test"), cfg.validation_fraction, cfg.seed)
    if not val_videos:
        raise ConfigError(f"{cfg.data}: no test videos to validate on (see `pvad data index {cfg.data}`)")
    s = cfg.sampling
    tr_idx = [
        thin(adaptive_indices(v.labels, v.fps, anomalous_fps=s.anomalous_fps, normal_fps=s.normal_fps,
                              hard_only=cfg.hard_anomalies_only, soft=cfg.soft_frames), s.max_per_video)
        for v in train_videos
    ]
    va_idx = [uniform_indices(v.n_frames, v.fps, s.validation_fps) for v in val_videos]
    _features(cache, train_videos, tr_idx, d, "train", progress)
    _features(cache, val_videos, va_idx, d, "validation", progress)
    train = _stacked(cache, train_videos, tr_idx,
                     lambda labels: training_targets(labels, hard_only=cfg.hard_anomalies_only, soft=cfg.soft_frames),
                     cfg.class_weights)
    val = _stacked(cache, val_videos, va_idx, evaluation_targets, cfg.class_weights)
    counts = {
        "train_videos": len(train_videos), "train_samples": len(train),
        "train_anomalous": int(train.target.sum()), "validation_videos": len(val_videos),
        "validation_samples": len(val), "validation_anomalous": int(val.target.sum()),
    }
    if train.target.sum() == 0 or train.target.sum() == len(train):
        raise ConfigError(f"{cfg.data}: the training samples hold only one class ({counts}); both are needed")
    return train, val, val_videos, counts


def train_classifier(cfg: TrainClassifierConfig, *, progress: bool = True) -> TrainResult | None:
    """Run the recipe; returns the result on rank 0 (None on other ranks)."""
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    d = _init_dist(device)
    try:
        return _train(cfg, device, d, progress)
    finally:
        if d.world > 1 and dist.is_initialized():
            dist.destroy_process_group()


def _train(cfg: TrainClassifierConfig, device: torch.device, d: Dist, progress: bool) -> TrainResult | None:
    dataset = load_dataset(cfg.data, annotations=cfg.annotations)  # logs each problem it finds
    m = cfg.model
    cache = FeatureCache(
        cfg.cache_dir, flow=cfg.flow, camera_fps=cfg.sampling.camera_fps,
        detector=cfg.detector if m.bag else None, autoencoder=cfg.autoencoder, background=cfg.feature_background,
        device=str(device),
    )
    train, val, val_videos, counts = prepare_samples(cfg, dataset, cache, d, progress)
    log.info("%s: %s (features: %d cached, %d computed here)", cfg.variant, counts, cache.hits, cache.misses)

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        model = TwoStreamClassifier(backbone=m.backbone, streams=m.streams, bag=m.bag, hidden=m.hidden,
                                    dropout=m.dropout, input_scale=m.input_scale, pool=m.pool,
                                    frame_input=m.frame_input, pretrained=m.pretrained == "auto")
    if cfg.bn_momentum is not None:
        for mod in model.modules():
            if isinstance(mod, torch.nn.modules.batchnorm._BatchNorm):
                mod.momentum = cfg.bn_momentum
    model = model.to(device).to(memory_format=torch.channels_last)
    card_proto = two_stream_card(trained=True, provenance="", **model.arch_kwargs)
    batches = Batches(model, card_proto.mean, card_proto.std, device)

    state: dict[str, Any] = {"phase": 0, "epoch": 0, "best": None, "best_state": None, "bad": 0,
                             "history": [], "optimizer": None, "epoch_seconds": []}
    last = last_checkpoint_path(cfg.out)
    if cfg.resume and last.is_file():
        saved = torch.load(last, map_location="cpu", weights_only=False)
        if saved.get("variant") != cfg.variant:
            raise ConfigError(f"{last} holds a {saved.get('variant')} run, not {cfg.variant}; delete it or set resume: false")
        model.load_state_dict(saved["model"])
        state = saved["state"]
        log.info("resuming from %s: phase %d, epoch %d", last, state["phase"] + 1, state["epoch"])

    while state["phase"] < len(cfg.phases):
        phase = cfg.phases[state["phase"]]
        params = _set_phase(model, phase)
        optimizer = torch.optim.Adam(params, lr=phase.lr)
        if state["optimizer"] is not None:
            optimizer.load_state_dict(state["optimizer"])
        ddp_model = model
        if d.world > 1:
            ddp_model = torch.nn.parallel.DistributedDataParallel(model, find_unused_parameters=False)
        while state["epoch"] < phase.max_epochs:
            t0 = time.perf_counter()
            rng = np.random.default_rng([cfg.seed, state["phase"], state["epoch"]])  # same draws after a resume
            desc = f"phase {state['phase'] + 1}/{len(cfg.phases)} ({phase.train}, lr {phase.lr:g}) epoch {state['epoch'] + 1}"
            train_loss = _epoch(model, ddp_model, optimizer, batches, train, cfg, phase, rng, d, progress, desc)
            if cfg.precise_bn and phase.train == "all":
                precise_bn(model, batches, train, cfg.precise_bn, rng)  # every rank draws the same samples
            row = {"phase": state["phase"] + 1, "epoch": state["epoch"] + 1, "train_loss": train_loss,
                   **_validate(model, batches, val, d), "seconds": time.perf_counter() - t0}
            state["epoch_seconds"].append(row["seconds"])
            state["history"].append(row)
            state["epoch"] += 1
            if _better(row[cfg.monitor], state["best"], cfg):
                state["best"], state["bad"] = row[cfg.monitor], 0
                state["best_state"] = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
                if _better(row[cfg.monitor], state.get("overall_best"), cfg):  # best of the whole run
                    state["overall_best"], state["overall_state"] = row[cfg.monitor], state["best_state"]
                    state["overall_at"] = (row["phase"], row["epoch"])
            else:
                state["bad"] += 1
            if d.main:
                log.info("%s  train %.4f  val %.4f  val FL-AUC %.3f  (%.0f s)", desc, train_loss,
                         row["val_loss"], row["val_fl_auc"], row["seconds"])
            stop = state["bad"] >= cfg.patience
            state["optimizer"] = None if stop else optimizer.state_dict()
            if d.main:
                atomic_torch_save({"variant": cfg.variant, "model": model.state_dict(), "state": state}, last)
            if stop:
                log.info("phase %d: no better %s in %d epochs; keeping the best", state["phase"] + 1, cfg.monitor, cfg.patience)
                break
        if state["best_state"] is not None:
            model.load_state_dict(state["best_state"])
        state.update(phase=state["phase"] + 1, epoch=0, bad=0, best=None, optimizer=None, last_phase_best=state["best"])
        if d.main:
            atomic_torch_save({"variant": cfg.variant, "model": model.state_dict(), "state": state}, last)
    if state.get("overall_state") is not None and _better(state["overall_best"], state.get("last_phase_best"), cfg):
        # a later phase never beat an earlier one: keep the run's best weights
        log.info("keeping the weights of phase %d epoch %d (best %s of the run)", *state["overall_at"], cfg.monitor)
        model.load_state_dict(state["overall_state"])
    for p in model.parameters():
        p.requires_grad_(True)
    if not d.main:
        return None
    calibration = None
    if cfg.calibration == "vl_f1":
        calibration = _calibrate(model, batches, val, val_videos)
    final = _validate(model, batches, val, Dist())
    return _finish(cfg, model, final, state, counts, val_videos, dataset, calibration)


def _calibrate(model: TwoStreamClassifier, batches: Batches, val: SampleSet, val_videos: list[VideoItem]):
    """Set ``model.logit_bias`` from the validation videos (``models.train.calibration``)."""
    from models.train.calibration import fit_logit_bias

    category = {v.name: v.category for v in val_videos}
    probs = np.clip(predict(model, batches, val, np.arange(len(val))).astype(np.float64), 1e-7, 1 - 1e-7)
    logits = np.log(probs) - np.log1p(-probs)
    videos = [(name, category[name], logits[val.video == i]) for i, name in enumerate(val.videos)]
    cal = fit_logit_bias(videos)
    model.logit_bias = cal.bias
    log.info("calibration: logit offset %+.2f; validation VL-F1 %.3f -> %.3f (TPR %.2f, FPR %.2f)", cal.bias,
             cal.before["vl_f1"], cal.after["vl_f1"], cal.after["vl_tpr"], cal.after["vl_fpr"])
    if cal.after["vl_fpr"] == 1.0 and cal.after["vl_tpr"] == 1.0:
        log.warning("calibration: no offset beats flagging every validation video; this model does not tell "
                    "anomalous videos from normal ones under the SAS")
    return cal


def _synth_manifest(root: Path) -> dict[str, Any] | None:
    """Generator, seed and parameters of a `pvad synth` dataset (None for other data)."""
    path = Path(root) / "manifest.json"
    if not path.is_file():
        return None
    try:
        m = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return {k: m.get(k) for k in ("generator", "seed", "params")}


def _finish(cfg, model, final, state, counts, val_videos, dataset, calibration=None) -> TrainResult:
    epoch_s = float(np.median(state["epoch_seconds"])) if state["epoch_seconds"] else math.nan
    epochs = Counter(r["phase"] for r in state["history"])
    provenance = (
        f"trained with `pvad train classifier` ({cfg.variant}) on {cfg.data} "
        f"({counts['train_videos']} train videos, {counts['train_samples']} frames; "
        f"frames {'reconstructed by ' + str(cfg.autoencoder) if cfg.autoencoder else 'raw'})"
    )
    card = two_stream_card(trained=True, provenance=provenance, **model.arch_kwargs)
    card.metrics = {"val_loss": final["val_loss"], "val_fl_auc": final["val_fl_auc"]}
    card.extra = {
        "variant": cfg.variant,
        "data": str(cfg.data),
        "data_generator": _synth_manifest(cfg.data),
        "annotations": cfg.annotations,
        "classes": sorted({v.category for v in dataset.videos}),
        "samples": counts,
        "validation_videos": [v.name for v in val_videos],
        "recipe": {
            "phases": [p.model_dump() for p in cfg.phases],
            "epochs_per_phase": dict(epochs),
            "batch_size": cfg.batch_size,
            "hard_mining": cfg.hard_mining.model_dump(),
            "class_weights": list(cfg.class_weights),
            "hard_anomalies_only": cfg.hard_anomalies_only,
            "soft_frames": cfg.soft_frames,
            "patience": cfg.patience,
            "monitor": cfg.monitor,
            "precise_bn": cfg.precise_bn,
            "sampling": cfg.sampling.model_dump(),
            "pretrained": cfg.model.pretrained,
            "seed": cfg.seed,
        },
        "features": {
            "autoencoder": str(cfg.autoencoder) if cfg.autoencoder else None,
            "flow": cfg.flow.model_dump(mode="json"),
            "detector": cfg.detector.model_dump(mode="json") if cfg.model.bag else None,
            "camera_fps": cfg.sampling.camera_fps,
            "background": bg.model_dump(mode="json") if (bg := cfg.feature_background) is not None else None,
        },
        "calibration": calibration.as_dict() if calibration is not None else None,
        "weights_dtype": cfg.weights_dtype,
        "epoch_seconds_median": round(epoch_s, 1),
        "history": state["history"],
    }
    save_checkpoint(cfg.out, model.cpu(), card, weights_dtype=getattr(torch, cfg.weights_dtype))
    log.info("wrote %s (%s): val loss %.4f, val FL-AUC %.3f", cfg.out, cfg.variant, final["val_loss"], final["val_fl_auc"])
    return TrainResult(cfg.out, cfg.variant, state["history"], card.metrics, epoch_s, counts)
