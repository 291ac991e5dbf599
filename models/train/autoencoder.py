"""Train the frame autoencoder with Adam or an Opacus DP optimizer (G §4.2): one facade.

``train_autoencoder(cfg)`` picks the optimizer (``adam``, ``dp-sgd``, ``dp-adam``, ``dp-adagrad``)
and the accountant (``rdp``, ``prv``, ``gdp``) by name, trains on pixel-wise MSE with early
stopping on the validation split, and writes a checkpoint whose card records ε at δ, the noise,
clipping, sample rate, steps, data and held-out MSE/PSNR/SSIM (``recompute_epsilon(card)`` gets
ε back from the card alone). After every epoch ``<stem>.last.pt`` holds what resuming needs
(weights, optimizer, accountant history, RNG, early-stopping state): a crash loses one epoch.

Randomness: the run seeds its own RNG stream (``torch.random.fork_rng``), so weights, Poisson
sampling and DP noise are reproducible for a seed and the caller's RNG is untouched. Opacus'
``secure_mode`` is therefore off (fine for research; deployments needing cryptographically strong
noise should use ``secure_mode=True`` and give up reproducibility). The card says so.
"""

from __future__ import annotations

import json
import logging
import math
import resource
import statistics
import subprocess
import sys
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from opacus import PrivacyEngine
from opacus.accountants import IAccountant
from opacus.accountants import create_accountant as _opacus_accountant
from opacus.optimizers import DPOptimizer
from opacus.validators import ModuleValidator
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from models.checkpoint import (
    ModelCard,
    atomic_torch_save,
    last_checkpoint_path,
    load_resume_state,
    save_checkpoint,
)
from models.data.frames import (
    FrameDataset,
    LoadedFrames,
    Source,
    collect_sources,
    describe,
    read_frames,
    split_sources,
)
from models.eval.image_metrics import batch_metrics
from models.nets.autoencoder import (
    Autoencoder,
    autoencoder_card,
    encoder_id,
    untrained_autoencoder,
)
from models.train.autoencoder_config import (
    ACCOUNTANTS,
    OPTIMIZERS,
    TrainAutoencoderConfig,
)
from pvad.config import FRAME_HEIGHT, FRAME_WIDTH
from pvad.devices import resolve_device
from pvad.errors import ConfigError

logger = logging.getLogger(__name__)

STATE_FORMAT = "pvad-train-state-v1"
_OPTIMIZER_CLASSES: dict[str, type[torch.optim.Optimizer]] = {
    "adam": torch.optim.Adam, "dp-sgd": torch.optim.SGD, "dp-adam": torch.optim.Adam, "dp-adagrad": torch.optim.Adagrad,
}
# Fields that must not change between a run and its resumption.
_RESUME_KEYS = ("data", "split_by", "every_n", "max_frames_per_source", "optimizer", "lr", "batch_size",
                "noise_multiplier", "target_epsilon", "delta", "max_grad_norm", "accountant", "seed", "prefilter")


# --------------------------------------------------------------------------- DP building blocks


def create_accountant(name: str) -> IAccountant:
    """A fresh Opacus accountant by name; ConfigError listing the known names otherwise."""
    if name not in ACCOUNTANTS:
        raise ConfigError(f"accountant: unknown accountant {name!r}; known: {', '.join(ACCOUNTANTS)}")
    return _opacus_accountant(name)


def create_optimizer(name: str, model: nn.Module, lr: float) -> torch.optim.Optimizer:
    """The torch optimizer under ``name`` (a dp-* name gives the plain one that Opacus then wraps)."""
    if name not in _OPTIMIZER_CLASSES:
        raise ConfigError(f"optimizer: unknown optimizer {name!r}; known: {', '.join(OPTIMIZERS)}")
    return _OPTIMIZER_CLASSES[name](model.parameters(), lr=lr)


def dp_compatible(model: nn.Module) -> nn.Module:
    """NCHW-contiguous weights, ``ModuleValidator.fix`` (a copy), strict validation; same parameter names.

    Opacus 1.6's Conv2d per-sample gradient (``unfold2d``) builds its patches with ``as_strided``
    assuming NCHW-contiguous activations: with channels_last activations it runs but returns
    wrong per-sample gradients (found by tests/test_train_autoencoder.py). So DP trains in the
    contiguous format; the values, and the checkpoint, are the same.
    """
    model = model.to(memory_format=torch.contiguous_format)
    fixed = ModuleValidator.fix(model) if ModuleValidator.validate(model, strict=False) else model
    ModuleValidator.validate(fixed, strict=True)
    if list(fixed.state_dict()) != list(model.state_dict()):
        raise RuntimeError("Opacus' ModuleValidator.fix changed the module's layers; its checkpoint would not load")
    return fixed


@dataclass
class PrivateParts:
    """What ``make_private`` returns: the Opacus-wrapped module, optimizer and Poisson loader."""

    module: nn.Module  # GradSampleModule around ``unwrapped``
    unwrapped: nn.Module  # same parameters, no ``_module.`` prefixes: save and evaluate this one
    optimizer: torch.optim.Optimizer  # opacus DPOptimizer
    loader: DataLoader
    engine: PrivacyEngine
    noise_multiplier: float
    sample_rate: float


def make_private(model: nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader, *, noise_multiplier: float,
                 max_grad_norm: float, accountant: str, target_epsilon: float | None = None,
                 delta: float | None = None, epochs: int | None = None) -> PrivateParts:
    """Opacus ``make_private`` (or ``make_private_with_epsilon`` when ``target_epsilon`` is set).

    ``model`` must come from ``dp_compatible`` and ``optimizer`` must hold its parameters. Sampling
    is Poisson with rate ``1/len(loader)``; per-frame gradients are clipped to ``max_grad_norm``
    and Gaussian noise of std ``noise_multiplier·max_grad_norm`` is added to their sum.
    """
    if accountant not in ACCOUNTANTS:
        create_accountant(accountant)  # raises ConfigError listing the known names
    engine = PrivacyEngine(accountant=accountant)
    common = dict(module=model, optimizer=optimizer, data_loader=loader, max_grad_norm=max_grad_norm,
                  poisson_sampling=True)
    if target_epsilon is not None:
        if delta is None or epochs is None:
            raise ValueError("target_epsilon needs delta and epochs")
        module, dp_opt, dp_loader = engine.make_private_with_epsilon(
            **common, target_epsilon=target_epsilon, target_delta=delta, epochs=epochs)
    else:
        module, dp_opt, dp_loader = engine.make_private(**common, noise_multiplier=noise_multiplier)
    return PrivateParts(module=module, unwrapped=model, optimizer=dp_opt, loader=dp_loader, engine=engine,
                        noise_multiplier=float(dp_opt.noise_multiplier), sample_rate=1.0 / len(loader))


def accountant_epsilon(accountant: IAccountant, delta: float) -> float:
    """ε spent so far at ``delta`` (0 before the first step)."""
    return float(accountant.get_epsilon(delta)) if accountant.history else 0.0


def recompute_epsilon(card: ModelCard) -> float | None:
    """ε of a DP checkpoint from its card alone, with a fresh accountant; None when it is not DP.

    Uses the history ``[(noise_multiplier, sample_rate, steps)]`` that the card records.
    """
    e = card.extra
    if not e.get("dp"):
        return None
    acc = create_accountant(e["accountant"])
    acc.history = [(float(e["noise_multiplier"]), float(e["sample_rate"]), int(e["steps"]))]
    return accountant_epsilon(acc, float(e["delta"]))


# --------------------------------------------------------------------------- training


@dataclass
class TrainResult:
    """The final checkpoint, its card, and one dict per epoch (train/val loss, SSIM, PSNR, ε...)."""

    checkpoint: Path
    card: ModelCard
    history: list[dict[str, Any]]


@dataclass
class _Run:
    cfg: TrainAutoencoderConfig
    device: torch.device
    splits: tuple[list[Source], list[Source], list[Source]]
    loaded: list[LoadedFrames]
    delta: float | None
    parts: PrivateParts | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    early: dict[str, Any] = field(default_factory=lambda: {
        "best_loss": None, "best_ssim": None, "best_psnr": None, "bad_loss": 0, "bad_quality": 0,
        "best_epoch": 0, "stopped": None})
    epoch: int = 0
    steps: int = 0
    adversarial: dict[str, Any] | None = None


def _loss(recon: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Pixel-wise MSE (mean over frames and pixels)."""
    return F.mse_loss(recon, x, reduction="sum") / max(x.numel(), 1)


def train_step(model: nn.Module, optimizer: torch.optim.Optimizer, x: torch.Tensor) -> float:
    """One optimizer step on batch ``x``; returns the batch loss (0.0 for an empty batch).

    Poisson sampling can draw an empty batch. Opacus' functorch path (ConvTranspose2d) fails
    on one, so a DP step then gets zero per-frame gradients by hand: the optimizer still adds
    the noise and the accountant still counts the step, as DP-SGD requires.
    """
    optimizer.zero_grad(set_to_none=True)
    if len(x) == 0:
        if isinstance(optimizer, DPOptimizer):
            for p in optimizer.params:
                p.grad_sample = p.new_zeros((0, *p.shape))
            optimizer.step()
        return 0.0
    loss = _loss(model(x), x)
    loss.backward()
    optimizer.step()
    return loss.item()


@torch.no_grad()
def evaluate(model: nn.Module, dataset: FrameDataset, *, batch_size: int, device: torch.device) -> dict[str, float]:
    """``{"loss", "mse", "psnr", "ssim"}`` of ``model`` over ``dataset`` (means over frames)."""
    was_training = model.training
    model.eval()
    sums = {"mse": 0.0, "psnr": 0.0, "ssim": 0.0}
    for x in DataLoader(dataset, batch_size=batch_size):
        x = x.to(device)
        for k, v in batch_metrics(x, model(x)).items():
            sums[k] += v * len(x)
    model.train(was_training)
    out = {k: v / len(dataset) for k, v in sums.items()}
    out["loss"] = out["mse"]
    return out


def _as_frames(batch: torch.Tensor | list[torch.Tensor]) -> torch.Tensor:
    """A loader batch as ``N×3×H×W`` (Opacus gives ``[]`` when its first Poisson batch is empty)."""
    if isinstance(batch, torch.Tensor):
        return batch
    return batch[0] if batch else torch.empty(0, 3, FRAME_HEIGHT, FRAME_WIDTH)


def _resolve_delta(cfg: TrainAutoencoderConfig, n_train: int) -> float | None:
    if not cfg.dp:
        return None
    if cfg.delta is None:
        return 1.0 / (10 * n_train)
    if cfg.delta >= 1.0 / n_train:
        raise ConfigError(
            f"delta: {cfg.delta:g} must be < 1/N = {1.0 / n_train:.3g} for N = {n_train} training frames "
            f"(a larger delta allows leaking a whole frame); leave it null for 1/(10N) = {1.0 / (10 * n_train):.3g}")
    return cfg.delta


def train_autoencoder(cfg: TrainAutoencoderConfig, *, progress: bool = True) -> TrainResult:
    """Train, early-stop, evaluate on the test split and save ``cfg.out`` with its card."""
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, strict=True)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []), warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Secure RNG turned off")
            warnings.filterwarnings("ignore", message="Full backward hook is firing")
            return _train(cfg, device, progress=progress)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: TrainAutoencoderConfig, device: torch.device, *, progress: bool) -> TrainResult:
    create_accountant(cfg.accountant)  # fail early on an unknown name
    splits = split_sources(collect_sources(cfg.data), seed=cfg.seed, split_by=cfg.split_by)
    loaded = [read_frames(s, every_n=cfg.every_n, max_frames_per_source=cfg.max_frames_per_source) for s in splits]
    run = _Run(cfg=cfg, device=device, splits=splits, loaded=loaded,
               delta=_resolve_delta(cfg, len(loaded[0].frames)))
    state = load_resume_state(last_checkpoint_path(cfg.out), resume=cfg.resume, fmt=STATE_FORMAT,
                              config=cfg.model_dump(mode="json"), keys=_RESUME_KEYS, what="training state")
    torch.manual_seed(cfg.seed)
    model: nn.Module = untrained_autoencoder(cfg.seed, prefilter=cfg.prefilter).to(run.device)
    if cfg.adversarial is not None:
        from models.train.adversarial import load_public

        public = load_public(cfg.adversarial, list(cfg.data))  # fails before training if it overlaps `data`
    train_ds, val_ds = FrameDataset(loaded[0].frames), FrameDataset(loaded[1].frames)
    loader = DataLoader(train_ds, batch_size=cfg.batch_size, shuffle=True)
    if cfg.dp:
        model = dp_compatible(model)
    optimizer = create_optimizer(cfg.optimizer, model, cfg.lr)
    train_model = model
    if cfg.dp:
        run.parts = make_private(
            model, optimizer, loader, noise_multiplier=state["noise_multiplier"] if state else cfg.noise_multiplier,
            max_grad_norm=cfg.max_grad_norm, accountant=cfg.accountant,
            target_epsilon=None if state else cfg.target_epsilon, delta=run.delta, epochs=cfg.epochs)
        train_model, optimizer, loader = run.parts.module, run.parts.optimizer, run.parts.loader
    best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
    if state:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        if run.parts:
            run.parts.engine.accountant.load_state_dict(state["accountant"])
        torch.set_rng_state(state["rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        run.history, run.early, best_state = list(state["history"]), dict(state["early"]), state["best_state"]
        run.epoch, run.steps = int(state["epoch"]), int(state["steps"])

    while run.epoch < cfg.epochs and not run.early["stopped"]:
        run.epoch += 1
        t0 = time.perf_counter()
        train_model.train()
        total, seen = 0.0, 0
        bar = tqdm(loader, desc=f"epoch {run.epoch}/{cfg.epochs}", unit="batch", disable=not progress)
        for batch in bar:
            x = _as_frames(batch).to(run.device)
            loss = train_step(train_model, optimizer, x)
            run.steps += 1
            total, seen = total + loss * len(x), seen + len(x)
            bar.set_postfix(loss=f"{loss:.4f}")
        val = evaluate(model, val_ds, batch_size=cfg.batch_size, device=run.device)
        eps = accountant_epsilon(run.parts.engine.accountant, run.delta) if run.parts and run.delta else None
        row = {"epoch": run.epoch, "train_loss": total / max(seen, 1), "val_loss": val["loss"],
               "val_ssim": val["ssim"], "val_psnr": val["psnr"], "epsilon": eps, "steps": run.steps,
               "seconds": time.perf_counter() - t0}
        run.history.append(row)
        bar.set_postfix(loss=f"{val['loss']:.4f}", ssim=f"{val['ssim']:.3f}", psnr=f"{val['psnr']:.2f}",
                        eps="-" if eps is None else f"{eps:.2f}")
        bar.close()
        logger.info("epoch %d: train %.5f val %.5f SSIM %.4f PSNR %.2f eps %s (%.0f s)", run.epoch, row["train_loss"],
                    val["loss"], val["ssim"], val["psnr"], "-" if eps is None else f"{eps:.3f}", row["seconds"])
        _update_early(run.early, row, cfg)
        if run.early["best_epoch"] == run.epoch:
            best_state = {k: v.detach().clone() for k, v in model.state_dict().items()}
        atomic_torch_save(_resumable_state(run, model, optimizer, best_state), last_checkpoint_path(cfg.out))
    model.load_state_dict(best_state)
    if cfg.adversarial is not None:
        from models.train.adversarial import harden

        # a fresh module: the DP one carries Opacus' per-sample-gradient hooks
        plain = untrained_autoencoder(cfg.seed, prefilter=cfg.prefilter).to(run.device)
        plain.load_state_dict(model.state_dict())
        run.adversarial = harden(plain, public, cfg.adversarial, device=run.device, seed=cfg.seed, progress=progress)
        model.load_state_dict(plain.state_dict())
    return _finish(run, model)


def _resumable_state(run: _Run, model: nn.Module, optimizer: torch.optim.Optimizer,
                     best_state: dict[str, torch.Tensor]) -> dict[str, Any]:
    """Everything ``resume`` needs, in types that ``torch.load(weights_only=True)`` accepts."""
    return {
        "format": STATE_FORMAT, "config": run.cfg.model_dump(mode="json"), "epoch": run.epoch, "steps": run.steps,
        "history": run.history, "early": run.early, "model": model.state_dict(), "best_state": best_state,
        "optimizer": optimizer.state_dict(), "rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None,
        "accountant": run.parts.engine.accountant.state_dict() if run.parts else None,
        "noise_multiplier": run.parts.noise_multiplier if run.parts else None,
    }


def _improved(new: float, best: float | None, min_delta: float, *, lower: bool) -> bool:
    return best is None or (new < best - min_delta if lower else new > best + min_delta)


def _update_early(early: dict[str, Any], row: dict[str, Any], cfg: TrainAutoencoderConfig) -> None:
    """Early stopping (G §4.2): on val loss, and on SSIM and PSNR that both stopped improving."""
    if _improved(row["val_loss"], early["best_loss"], cfg.min_delta, lower=True):
        early.update(best_loss=row["val_loss"], bad_loss=0, best_epoch=row["epoch"])
    else:
        early["bad_loss"] += 1
    better = {m: _improved(row[f"val_{m}"], early[f"best_{m}"], cfg.min_delta, lower=False) for m in ("ssim", "psnr")}
    early.update({f"best_{m}": row[f"val_{m}"] for m, b in better.items() if b})
    early["bad_quality"] = 0 if any(better.values()) else early["bad_quality"] + 1
    if early["bad_loss"] >= cfg.patience:
        early["stopped"] = f"validation loss did not improve for {cfg.patience} epochs"
    elif early["bad_quality"] >= cfg.patience:
        early["stopped"] = f"validation SSIM and PSNR did not improve for {cfg.patience} epochs"
    if early["stopped"]:
        logger.info("early stop after epoch %d: %s", row["epoch"], early["stopped"])


def _finish(run: _Run, model: nn.Module) -> TrainResult:
    """Test-split metrics, the card, and the final checkpoint."""
    cfg, parts = run.cfg, run.parts
    if not isinstance(model, Autoencoder):
        raise TypeError(f"expected the Autoencoder module, got {type(model).__name__}")
    test = evaluate(model, FrameDataset(run.loaded[2].frames), batch_size=cfg.batch_size, device=run.device)
    best = next((h for h in run.history if h["epoch"] == run.early["best_epoch"]), {})
    eps = accountant_epsilon(parts.engine.accountant, run.delta) if parts and run.delta else None
    n = [len(x.frames) for x in run.loaded]
    data = describe([s for split in run.splits for s in split])
    data.update(split_by=cfg.split_by, every_n=cfg.every_n, max_frames_per_source=cfg.max_frames_per_source,
                split_sizes=dict(zip(("train", "val", "test"), n)),
                split_sources={k: [s.label for s in v] for k, v in zip(("train", "val", "test"), run.splits)},
                skipped_frames=sum(sum(x.skipped.values()) for x in run.loaded))
    lr_note = "" if cfg.lr == 1e-5 else f"; lr {cfg.lr:g} instead of the paper's 1e-5 (too slow at this scale)"
    scale_note = (f"trained at CPU scale: {n[0]} training frames from {len(run.splits[0])} source(s), "
                  f"{run.epoch} epoch(s) of batch {cfg.batch_size}{lr_note}; the paper used UCF-Crime frames")
    extra: dict[str, Any] = dict(
        optimizer=cfg.optimizer, lr=cfg.lr, epochs_run=run.epoch, epochs_max=cfg.epochs, batch_size=cfg.batch_size,
        noise_multiplier=parts.noise_multiplier if parts else None, max_grad_norm=cfg.max_grad_norm if parts else None,
        sample_rate=parts.sample_rate if parts else None, steps=run.steps, epsilon=eps, delta=run.delta,
        accountant=cfg.accountant if parts else None, dp=cfg.dp, target_epsilon=cfg.target_epsilon,
        accountant_history=[list(h) for h in parts.engine.accountant.history] if parts else None,
        secure_rng=False, seed=cfg.seed, data=data, scale_note=scale_note, encoder_id=encoder_id(model.encoder),
        best_epoch=run.early["best_epoch"], stopped=run.early["stopped"] or "reached the maximum number of epochs",
        history=run.history, adversarial=run.adversarial)
    dp_txt = f", DP eps={eps:.3g} at delta={run.delta:.3g} ({cfg.accountant})" if eps is not None else ", no DP"
    hardened = (f", prefilter {cfg.prefilter}" if cfg.prefilter != 1 else "") + (
        f", adversarial phase of {run.adversarial['steps']} steps on public frames" if run.adversarial else "")
    card = autoencoder_card(trained=True, provenance=f"pvad train autoencoder: {cfg.optimizer}, "
                            f"{run.epoch} epoch(s){dp_txt}{hardened}", prefilter=cfg.prefilter, **extra)
    metrics = {f"test_{k}": v for k, v in test.items() if k != "loss"}
    metrics.update({k: best[k] for k in ("val_loss", "val_ssim", "val_psnr") if k in best})
    card.metrics.update({k: float(v) for k, v in metrics.items() if math.isfinite(v)})
    path = save_checkpoint(cfg.out, model, card)
    logger.info("test MSE %.5f PSNR %.2f SSIM %.4f; saved %s", test["mse"], test["psnr"], test["ssim"], path)
    return TrainResult(checkpoint=path, card=card, history=run.history)


# --------------------------------------------------------------------------- benchmark


def _bench_worker(dp: bool, batch_size: int, steps: int, height: int, width: int) -> dict[str, float]:
    """One mode, in a fresh process: median step seconds and peak extra RSS of the steps."""
    warnings.filterwarnings("ignore")
    torch.manual_seed(0)
    model: nn.Module = dp_compatible(Autoencoder()) if dp else Autoencoder()  # as train_autoencoder does
    optimizer = create_optimizer("dp-adam" if dp else "adam", model, 1e-3)
    data = torch.rand(batch_size * (steps + 1), 3, height, width)
    loader = DataLoader(data, batch_size=batch_size)
    if dp:
        engine = PrivacyEngine(accountant="rdp")
        model, optimizer, loader = engine.make_private(module=model, optimizer=optimizer, data_loader=loader,
                                                       noise_multiplier=1.0, max_grad_norm=1.0, poisson_sampling=False)
    with open("/proc/self/status") as fh:
        rss0 = next(int(line.split()[1]) for line in fh if line.startswith("VmRSS:"))  # kB
    times = []
    for x in loader:
        t0 = time.perf_counter()
        train_step(model, optimizer, x)
        times.append(time.perf_counter() - t0)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kB on Linux
    return {"step_s": statistics.median(times[1:]), "peak_mb": (peak - rss0) / 1024, "rss_mb": peak / 1024}


def bench_train_step(*, batch_size: int = 8, steps: int = 3, height: int = 240, width: int = 320,
                     threads: int | None = None) -> dict[str, float]:
    """Median seconds per training step and peak memory, non-DP Adam vs DP-Adam (Opacus, hooks mode).

    Each mode runs in a fresh Python process (one warm-up step, then ``steps`` timed steps on
    random frames), with the module as ``train_autoencoder`` trains it: channels_last without DP,
    NCHW-contiguous with DP (see ``dp_compatible``). DP batches are fixed-size here (no Poisson
    sampling) so both modes do the same work.

    Memory (``*_peak_mb``) is the peak resident set during the steps above the resident set just
    before them (``ru_maxrss`` at the end minus ``VmRSS`` before the first step): activations,
    gradients, per-sample gradients and optimizer state; the interpreter, libraries, weights and
    input frames are in the baseline. ``*_rss_mb`` is the whole process's peak. tracemalloc would
    miss torch's allocations, which do not go through Python's allocator.
    """
    out: dict[str, float] = {}
    for name, dp in (("non_dp", False), ("dp", True)):
        code = ("import json, torch, sys; from models.train.autoencoder import _bench_worker; "
                + (f"torch.set_num_threads({threads}); " if threads else "")
                + f"print(json.dumps(_bench_worker({dp}, {batch_size}, {steps}, {height}, {width})))")
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              cwd=Path(__file__).resolve().parents[2], check=False)
        if proc.returncode:
            raise RuntimeError(f"benchmark of {name} failed:\n{proc.stderr[-2000:]}")
        res = json.loads(proc.stdout.strip().splitlines()[-1])
        out[f"{name}_step_s"], out[f"{name}_peak_mb"], out[f"{name}_rss_mb"] = res["step_s"], res["peak_mb"], res["rss_mb"]
    out["time_ratio"] = out["dp_step_s"] / out["non_dp_step_s"]
    out["memory_ratio"] = out["dp_peak_mb"] / out["non_dp_peak_mb"]
    out.update(batch_size=batch_size, steps=steps, threads=threads or torch.get_num_threads())
    return out
