"""White-box inversion attack on a camera encoder (``pvad eval privacy --attack whitebox``).

Threat model: the attacker holds the camera's encoder (the weights or the ONNX file ship in the
repository, and every camera carries one) and reads latents (the cloud operator, or anyone past
TLS). It builds ``(encoder(x), x)`` pairs from every public frame it can read and trains a
decoder of its own design (``models.nets.inversion.InversionDecoder``: residual trunk,
pixel-shuffle upsampling, ~4× our decoder's compute) with L1 loss and augmentation (random
crops, flips, brightness/contrast), for a budget of steps and seconds. DP-SGD protects the
encoder's *training* frames; what protects a frame the camera sends later is only how little its
latent keeps, and this attack measures that.

- ``load_target``: the encoder under attack, from a checkpoint or an exported ONNX/TorchScript file
  (its card is required), with our decoder for comparison;
- ``public_pool``: the attacker's frames; the evaluation's own files are always left out;
- ``train_attacker``: budgeted, resumable; the checkpoint is cached per encoder id and attack
  setting under ``cache_dir``, so later evaluations reuse (or extend) it;
- ``evaluate_whitebox``: SSIM/PSNR of ours and of the attacker, faces found (Haar, dlib HOG, dlib
  CNN, union), re-identification top-1 with dlib embeddings (``models.eval.privacy
  .reidentification``, a gallery with LFW distractors), and an image grid.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm import tqdm

from models.checkpoint import atomic_torch_save
from models.data.augment import augment
from models.data.public import (
    default_public_sources,
    skimage_photos,
    thin_frame_folders,
)
from models.eval.faces import FaceDetector, FaceEmbedder
from models.eval.privacy import (
    Frames,
    _to_tensor,
    _to_u8,
    count_faces,
    detect_faces,
    frames_to_plot,
    plot_reconstruction_grid,
    quality,
    reidentification,
)
from models.eval.whitebox_config import WhiteboxAttackConfig
from models.nets.autoencoder import LATENT_SHAPE, encoder_id, load_autoencoder
from models.nets.inversion import InversionDecoder
from pvad.devices import resolve_device
from pvad.errors import ConfigError, ModelLoadError

logger = logging.getLogger(__name__)

CACHE_FORMAT = "pvad-whitebox-attacker-v1"


# --------------------------------------------------------------------------- the encoder under attack


@dataclass
class TargetEncoder:
    """An encoder as the attacker holds it: ``encode`` maps ``N×3×240×320`` [0, 1] to latents."""

    encode: Callable[[torch.Tensor], torch.Tensor]
    encoder_id: str
    card: dict[str, Any]
    source: Path
    decoder: nn.Module | None = None  # ours, for the comparison (None when no checkpoint pairs with it)

    @property
    def extra(self) -> dict[str, Any]:
        return dict(self.card.get("extra") or {})


def _paired_decoder(eid: str, search: Sequence[Path]) -> nn.Module | None:
    for path in search:
        try:
            model, _ = load_autoencoder(path)
        except ModelLoadError:
            continue
        if encoder_id(model.encoder) == eid:
            return model.decoder.eval()
    return None


def target_of(model: nn.Module, card: Any, path: Path) -> TargetEncoder:
    """The encoder of an autoencoder already loaded (``load_autoencoder``), with its decoder as ours."""
    encoder = model.encoder.eval()

    def encode_torch(x: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return encoder(x).float()

    return TargetEncoder(encode_torch, encoder_id(encoder), card.model_dump(mode="json"), Path(path), model.decoder.eval())


def load_target(path: Path, *, decoder_search: Sequence[Path] | None = None) -> TargetEncoder:
    """The encoder of an autoencoder checkpoint (``.pt``) or of a file made by ``pvad export``
    (``.onnx``/``.ts``). ModelLoadError naming the file when it does not load, carries no card, or
    its latent is not the decoder's ``C×30×40``."""
    from pvad.config import shipped_autoencoders

    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"encoder under attack: no such file {path}")
    if path.suffix in (".onnx", ".ts"):
        from camera_client.anonymize.exported import ExportedEncoder

        exported = ExportedEncoder(path)
        if not exported.card:
            raise ModelLoadError(f"{path}: no pvad card inside (ε, δ and the architecture are unknown); "
                                 "export the checkpoint with `pvad export`, which embeds its card")

        def encode_exported(x: torch.Tensor) -> torch.Tensor:
            return torch.from_numpy(exported(x.contiguous().numpy()))

        search = list(decoder_search) if decoder_search is not None else shipped_autoencoders()
        target = TargetEncoder(encode_exported, exported.encoder_id, exported.card, path,
                               _paired_decoder(exported.encoder_id, search))
    else:
        model, card = load_autoencoder(path)
        target = target_of(model, card, path)
    latent = target.encode(torch.zeros(1, 3, 240, 320))
    if tuple(latent.shape[2:]) != LATENT_SHAPE[1:] or (target.decoder is not None and latent.shape[1] != LATENT_SHAPE[0]):
        raise ModelLoadError(f"{path}: its latent is {tuple(latent.shape[1:])}, the decoder takes {LATENT_SHAPE}")
    return target


# --------------------------------------------------------------------------- the attacker's frames


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def public_pool(cfg: WhiteboxAttackConfig, *, exclude: Sequence[Path] = ()) -> tuple[Frames, dict[str, int]]:
    """The attacker's frames (uint8 ``N×240×320×3``) and how many came from each source.

    Videos give every ``every_n``-th frame; folders of many images (numbered frames) keep every
    ``every_n``-th image. Any file of ``exclude`` (the frames under evaluation), by path or by
    content, is left out. At most ``max_pool_frames`` frames (an even subsample)."""
    from models.data.frames import collect_sources, read_frames

    roots = cfg.public or default_public_sources()
    banned_paths = {Path(p).resolve() for p in exclude}
    # size -> content hashes of the excluded files: only a public file of the same size is read and hashed
    banned: dict[int, set[str]] = {}
    for p in banned_paths:
        if p.is_file() and p.stat().st_size < 256 * 2**20:
            banned.setdefault(p.stat().st_size, set()).add(_sha256(p))

    def excluded(path: Path) -> bool:
        size = path.stat().st_size
        return path.resolve() in banned_paths or (size in banned and _sha256(path) in banned[size])

    sources = [s for s in collect_sources(list(roots)) if not excluded(s.path)]
    keep, big = thin_frame_folders(sources, cfg.every_n)
    counts: dict[str, int] = {}
    chunks: list[np.ndarray] = []
    if keep:
        loaded = read_frames(keep, every_n=cfg.every_n, max_frames_per_source=cfg.max_frames_per_source)
        chunks.append(loaded.frames)
        for s in keep:  # image labels (file names) repeat across frame folders: count those by folder
            key = f"{s.path.parent.parent.name}/{s.path.parent.name}/" if s.path.parent in big else s.label
            counts[key] = counts.get(key, 0) + (loaded.kept.get(s.label, 0) if s.kind == "video" else 1)
    if not cfg.public:
        photos = skimage_photos()
        chunks.append(photos)
        counts["scikit-image photos"] = len(photos)
    frames = np.concatenate(chunks) if chunks else np.zeros((0, 240, 320, 3), np.uint8)
    if len(frames) == 0:
        raise ConfigError(f"the attacker has no public frames (sources: {', '.join(map(str, roots)) or 'none'})")
    if len(frames) > cfg.max_pool_frames:
        frames = frames[np.linspace(0, len(frames) - 1, cfg.max_pool_frames).round().astype(int)]
    return frames, counts


# --------------------------------------------------------------------------- training


@dataclass
class AttackBudget:
    """What the attacker spent: pool size, steps, frames seen, seconds (cumulative over resumes)."""

    pool_frames: int
    steps: int = 0
    frames_seen: int = 0
    seconds: float = 0.0
    final_loss: float | None = None
    pool_sources: dict[str, int] = field(default_factory=dict)
    checkpoint: str | None = None


def _cache_path(cfg: WhiteboxAttackConfig, eid: str, pool_sources: Mapping[str, int]) -> Path:
    key = json.dumps({"width": cfg.width, "blocks": cfg.blocks, "lr": cfg.lr, "batch": cfg.batch_size,
                      "seed": cfg.seed, "pool": dict(sorted(pool_sources.items()))}, sort_keys=True)
    return Path(cfg.cache_dir) / f"{eid}-{hashlib.sha256(key.encode()).hexdigest()[:12]}.pt"


def train_attacker(target: TargetEncoder, pool: Frames, cfg: WhiteboxAttackConfig, *,
                   pool_sources: Mapping[str, int] | None = None, progress: bool = True,
                   cache: bool = True) -> tuple[InversionDecoder, AttackBudget]:
    """Train (or resume, or reuse) the attacker's decoder on ``(encode(aug(x)), aug(x))`` pairs of
    ``pool`` until ``cfg.steps`` steps or ``cfg.seconds`` seconds in all; Adam, L1 loss."""
    device = resolve_device(cfg.device, strict=True)
    pool_sources = dict(pool_sources or {"pool": len(pool)})
    budget = AttackBudget(pool_frames=len(pool), pool_sources=pool_sources)
    path = _cache_path(cfg, target.encoder_id, pool_sources) if cache else None
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(cfg.seed)
        attacker = InversionDecoder(width=cfg.width, blocks=cfg.blocks,
                                    latent_channels=target.encode(torch.zeros(1, 3, 240, 320)).shape[1]).to(device)
    opt = torch.optim.Adam(attacker.parameters(), lr=cfg.lr)
    if path is not None and path.is_file():
        state = torch.load(path, map_location=device, weights_only=False)
        if state.get("format") != CACHE_FORMAT:
            raise ModelLoadError(f"{path}: not a pvad white-box attacker checkpoint ({state.get('format')!r})")
        attacker.load_state_dict(state["model"])
        opt.load_state_dict(state["optimizer"])
        budget.steps, budget.frames_seen = int(state["steps"]), int(state["frames_seen"])
        budget.seconds, budget.final_loss = float(state["seconds"]), state.get("final_loss")
        logger.info("white-box attacker for encoder %s: cached at %s (%d steps, %.0f s)", target.encoder_id,
                    path, budget.steps, budget.seconds)

    def save() -> None:
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_torch_save({"format": CACHE_FORMAT, "model": attacker.state_dict(), "optimizer": opt.state_dict(),
                               "steps": budget.steps, "frames_seen": budget.frames_seen, "seconds": budget.seconds,
                               "final_loss": budget.final_loss, "encoder_id": target.encoder_id,
                               "config": cfg.model_dump(mode="json"), "pool_sources": pool_sources}, path)

    rng = np.random.default_rng([cfg.seed, budget.steps])
    todo = budget.steps < cfg.steps and budget.seconds < cfg.seconds
    bar = tqdm(total=cfg.steps, initial=budget.steps, desc="white-box attacker", unit="step",
               disable=not progress or not todo)
    attacker.train()
    start, start_seconds, losses = time.perf_counter(), budget.seconds, []
    while budget.steps < cfg.steps and budget.seconds < cfg.seconds:
        x = _to_tensor(augment(pool[rng.integers(0, len(pool), cfg.batch_size)], rng))
        z = target.encode(x).to(device)
        loss = F.l1_loss(attacker(z), x.to(device))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        losses.append(loss.item())
        budget.steps += 1
        budget.frames_seen += len(x)
        budget.seconds = start_seconds + time.perf_counter() - start
        budget.final_loss = float(np.mean(losses[-20:]))
        bar.update(1)
        bar.set_postfix(l1=f"{budget.final_loss:.4f}", s=f"{budget.seconds:.0f}")
        if budget.steps % 25 == 0:
            save()
    bar.close()
    if todo:
        save()
        logger.info("white-box attacker: %d steps, %d frames seen, %.0f s, L1 %.4f", budget.steps,
                    budget.frames_seen, budget.seconds, budget.final_loss or float("nan"))
    budget.checkpoint = str(path) if path else None
    return attacker.eval(), budget


@torch.no_grad()
def invert(target: TargetEncoder, attacker: nn.Module, frames: Frames, *, batch_size: int = 8) -> Frames:
    """The attacker's reconstructions of ``frames`` (uint8 RGB) from their latents."""
    device = next(attacker.parameters()).device
    return np.concatenate([_to_u8(attacker(target.encode(_to_tensor(frames[i:i + batch_size])).to(device)).cpu())
                           for i in range(0, len(frames), batch_size)])


@torch.no_grad()
def ours(target: TargetEncoder, frames: Frames, *, batch_size: int = 8) -> Frames | None:
    """Our decoder's reconstructions (what the server sees), or None without a paired decoder."""
    if target.decoder is None:
        return None
    return np.concatenate([_to_u8(target.decoder(target.encode(_to_tensor(frames[i:i + batch_size]))))
                           for i in range(0, len(frames), batch_size)])


# --------------------------------------------------------------------------- evaluation


@dataclass
class OurView:
    """Our decoder's reconstructions of the evaluated frames, the faces ``detect_faces`` found in
    them and their re-identification top-1 (None without dlib's models), when the caller has them."""

    frames: Frames
    faces: Mapping[str, list[np.ndarray]]
    reid_top1: float | None


def evaluate_whitebox(target: TargetEncoder, frames: Frames, cfg: WhiteboxAttackConfig, *,
                      detectors: Mapping[str, FaceDetector], embedder: FaceEmbedder | None,
                      exclude: Sequence[Path] = (), out_dir: Path | None = None, progress: bool = True,
                      before: Mapping[str, list[np.ndarray]] | None = None,
                      our_view: OurView | None = None) -> dict[str, Any]:
    """Train (or reuse) the attacker against ``target`` and compare it with our decoder on ``frames``.

    Returns ``attack_{ssim,psnr,mse}``, ``ours_{ssim,psnr,mse}`` (None without our decoder),
    ``faces_before``, ``faces_after`` (ours), ``attack_faces_after`` (per detector and ``total``,
    the union), ``reid_top1``/``attack_reid_top1`` (None without dlib's models), ``epsilon``,
    ``delta``, ``budget`` (``pool_frames``, ``steps``, ``frames_seen``, ``seconds``) and, with
    ``out_dir``, ``grid`` (original / ours / attacker). ``before`` (faces in ``frames``) and
    ``our_view`` (same detectors and embedder) spare recomputing what the caller already has."""
    pool, sources = public_pool(cfg, exclude=exclude)
    logger.info("white-box attacker's public frames: %d from %s", len(pool), sources)
    attacker, budget = train_attacker(target, pool, cfg, pool_sources=sources, progress=progress)
    del pool
    stolen = invert(target, attacker, frames)
    before = before if before is not None else detect_faces(detectors, frames)
    after_attack = detect_faces(detectors, stolen)

    def reid(view: Frames | None, after: Mapping[str, list[np.ndarray]] | None) -> float | None:
        if embedder is None or view is None or after is None:
            return None
        return reidentification(embedder, frames, view, detectors=detectors,
                                boxes=(before["total"], after["total"]))["reid_top1"]

    if our_view is not None:
        mine, after_ours, reid_ours = our_view.frames, our_view.faces, our_view.reid_top1
    else:
        mine = ours(target, frames)
        after_ours = detect_faces(detectors, mine) if mine is not None else None
        reid_ours = reid(mine, after_ours)

    result: dict[str, Any] = {
        **{f"attack_{k}": v for k, v in quality(frames, stolen).items()},
        **{f"ours_{k}": (v if mine is not None else None) for k, v in
           (quality(frames, mine) if mine is not None else {"mse": None, "psnr": None, "ssim": None}).items()},
        "faces_before": count_faces(before),
        "faces_after": count_faces(after_ours) if after_ours is not None else None,
        "attack_faces_after": count_faces(after_attack),
        "reid_top1": reid_ours, "attack_reid_top1": reid(stolen, after_attack),
        "epsilon": target.extra.get("epsilon"), "delta": target.extra.get("delta"),
        "encoder_id": target.encoder_id, "encoder": str(target.source), "frames": len(frames),
        "budget": {"pool_frames": budget.pool_frames, "steps": budget.steps, "frames_seen": budget.frames_seen,
                   "seconds": round(budget.seconds, 1), "final_l1": budget.final_loss,
                   "pool_sources": budget.pool_sources, "checkpoint": budget.checkpoint,
                   "decoder": {"width": cfg.width, "blocks": cfg.blocks,
                               "parameters": sum(p.numel() for p in attacker.parameters())}},
    }
    if out_dir is not None:
        pick = frames_to_plot(before["total"])
        views = {**({"ours": mine[pick]} if mine is not None else {}), "white-box attacker": stolen[pick]}
        result["grid"] = str(plot_reconstruction_grid(frames[pick], views,
                                                      Path(out_dir) / f"whitebox-{target.encoder_id}.png"))
    logger.info("white-box attack on %s: %s", target.source,
                {k: v for k, v in result.items() if not isinstance(v, dict)})
    return result
