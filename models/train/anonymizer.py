"""Train the camera's learned anonymizer adversarially (DESIGN §2/§6 `learned`): `pvad train anonymizer`.

**Scheme: De Coninck et al. (D), not TeD-SPAD (T).** Both train an encoder-decoder anonymizer f_A
in a min-max game; they differ in the utility and privacy branches:

* T keeps an *action-recognition video encoder* (I3D, Kinetics-pretrained) working, with its
  temporally-distinct triplet loss, and defeats a *self-supervised SimCLR ResNet-50* privacy
  branch. Neither pretrained network is available here (offline, 2 CPU cores), and our server
  does not run an action encoder: it runs an off-the-shelf COCO detector (bag-of-objects) and a
  frame/flow classifier on whatever frame it receives.
* D keeps a *pretrained, unmodified object detector* working on the obfuscated frame and defeats
  a *deobfuscator* that learns to reconstruct the original. That is our deployment exactly: the
  server's detector is YOLO-Fastest-1.1-xl (``pvad.samples.offline_detector()``), which must not
  be retrained, and "can whoever receives the frames reconstruct them" is the attack DESIGN §7 asks
  about. So the objective here is D's (appendix A.1)::

      L_deobf = MSE(D(A(x)), x)                       (adversary minimises)
      L_obf   = L_util(A(x); x) - privacy_weight · L_deobf   (anonymizer minimises)

  updated alternately, one adversary step then one anonymizer step per batch (AdamW, as in D).

**Utility.** YOLO-Fastest-1.1-xl ported to PyTorch (``DarknetYoloTorch``: the same Darknet
``.cfg``/``.weights`` files the server loads with OpenCV; outputs agree with OpenCV DNN to ~5e-4),
frozen. Its raw outputs on the *original* frames are computed once (the teacher) and the anonymizer
is trained so that the detector's outputs on the anonymized frame match them: weighted BCE on the
objectness and on the person-class logit, and L1 on the box offsets, weighted by the teacher's
objectness (cells where the detector saw something count; the rest only must stay empty). This
is a distillation form of D's "detector loss against the detector's own labels on the originals"
(D §3.1 takes Faster R-CNN's detections on the originals as ground truth too).

**Privacy.** The deobfuscator is a wider ``UNetLite`` with a full-resolution skip. For CPU cost it
trains, and is evaluated inside the game, on random 128×160 crops of the anonymized frame (the
anonymizer still sees the whole frame: the detector needs it). Initialisation as in T Eq. 3: the
anonymizer is first pretrained for ``identity_steps`` steps to reproduce its input (L1).

**What a low L_deobf does not prove.** The game's adversary co-evolves with the anonymizer; a
transform it cannot invert may still be invertible by an attacker trained afterwards. So the run
ends with an *independent* attack: a fresh deobfuscator trained for ``attack_steps`` on the
frozen anonymizer's outputs of the training frames, scored on held-out frames (SSIM/PSNR to the
original). That number, not the game's, goes on the card as the privacy result, together with
person-detection retention of the OpenCV detector on held-out frames (after a JPEG round-trip, as
the server sees them) and faces found before/after on photos never trained on.

Resumable (``<stem>.last.pt`` after the identity phase and every epoch), seeded (own RNG stream,
the caller's is untouched), tqdm progress bars, losses logged per epoch.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from pydantic import Field, field_validator
from torch import nn
from tqdm import tqdm

from models.checkpoint import (
    ModelCard,
    atomic_torch_save,
    last_checkpoint_path,
    load_resume_state,
    save_checkpoint,
)
from models.data.frames import collect_sources, describe, read_frames, split_sources
from models.eval.learned_anonymizer import (
    evaluate_anonymizer,
    faces_before_after,
    independent_attack,
)
from models.nets.darknet import DarknetYoloTorch
from models.nets.learned_anonymizer import UNetLite, anonymizer_card, count_parameters
from models.train.anonymizer_steps import (
    adversary_step,
    anonymize,
    anonymizer_step,
    build_adversary,
    detector_outputs,
    identity_step,
    jpeg_roundtrip,
    random_crop,
    teacher_targets,
    to_tensor,
    utility_loss,
)
from pvad.config import Section
from pvad.devices import resolve_device
from pvad.samples import YOLO_FASTEST

logger = logging.getLogger(__name__)

STATE_FORMAT = "pvad-train-anonymizer-state-v1"
# Fields that must not change between a run and its resumption.
_RESUME_KEYS = ("data", "split_by", "every_n", "max_frames_per_source", "width", "blocks", "adversary_width",
                "adversary_blocks", "utility_cfg", "utility_weights", "identity_steps", "identity_lr", "lr",
                "adversary_lr", "privacy_weight", "crop", "batch_size", "seed")


# --------------------------------------------------------------------------- config


class TrainAnonymizerConfig(Section):
    """Train the learned anonymizer against a deobfuscator while YOLO-Fastest keeps detecting (kind train-anonymizer)."""

    data: list[Path] = Field(min_length=1, description="folders (searched recursively) and/or video/image files")
    split_by: Literal["source", "time"] = Field("time", description="as for train-autoencoder")
    every_n: int = Field(3, ge=1, description="keep every n-th frame of a video")
    max_frames_per_source: int | None = Field(300, ge=1, description="frames kept per video at most; null = all")
    face_photos: list[Path] = Field(default_factory=list,
                                    description="photos never trained on, for faces found before/after")
    width: int = Field(32, ge=4, le=256, description="anonymizer channels at 1/2 resolution")
    blocks: int = Field(5, ge=0, le=32, description="anonymizer residual blocks at 1/8 resolution")
    adversary_width: int = Field(48, ge=4, le=256, description="deobfuscator channels at 1/2 resolution")
    adversary_blocks: int = Field(4, ge=0, le=32)
    utility_cfg: Path = Field(YOLO_FASTEST / "yolo-fastest-1.1-xl.cfg", description="Darknet .cfg of the detector")
    utility_weights: Path = Field(YOLO_FASTEST / "yolo-fastest-1.1-xl.weights", description="its .weights")
    identity_steps: int = Field(150, ge=0, description="L1 steps that initialise the anonymizer as identity (T Eq. 3)")
    identity_lr: float = Field(2e-3, gt=0.0)
    lr: float = Field(1e-3, gt=0.0, description="anonymizer learning rate (AdamW)")
    adversary_lr: float = Field(1e-3, gt=0.0, description="deobfuscator learning rate (AdamW)")
    weight_decay: float = Field(1e-4, ge=0.0, description="AdamW weight decay of both (D: 1e-4)")
    privacy_weight: float = Field(1.0, ge=0.0, description="weight of -L_deobf in the anonymizer's loss")
    crop: tuple[int, int] = Field((128, 160), description="(H, W) crops the deobfuscator works on; multiples of 8")
    batch_size: int = Field(4, ge=1, le=1024)
    epochs: int = Field(6, ge=1, le=100_000)
    attack_steps: int = Field(300, ge=0, description="steps of the independent attacker after training; 0 = none")
    attack_lr: float = Field(1e-3, gt=0.0)
    seed: int = Field(0, description="seeds weights, split order, crops and shuffling")
    out: Path = Field(description="final checkpoint (anonymizer only); `<stem>.last.pt` beside it holds the state")
    resume: bool = Field(False, description="continue from `<stem>.last.pt` when it exists")
    threads: int | None = Field(1, ge=1, description="torch intra-op threads; null = torch's default")
    device: Literal["cpu", "cuda", "auto"] = "cpu"

    @field_validator("crop")
    @classmethod
    def _crop_multiple_of_8(cls, v: tuple[int, int]) -> tuple[int, int]:
        if v[0] % 8 or v[1] % 8 or not (8 <= v[0] <= 240 and 8 <= v[1] <= 320):
            raise ValueError(f"must be two multiples of 8 within 240x320, got {v}")
        return v


# --------------------------------------------------------------------------- the utility model (models/nets/darknet.py)


@dataclass
class TrainResult:
    checkpoint: Path
    card: ModelCard
    history: list[dict[str, Any]]


def train_anonymizer(cfg: TrainAnonymizerConfig, *, progress: bool = True) -> TrainResult:
    """Identity init, the adversarial game for ``cfg.epochs``, the independent attack and the card."""
    threads_before = torch.get_num_threads()
    if cfg.threads is not None:
        torch.set_num_threads(cfg.threads)
    device = resolve_device(cfg.device, strict=True)
    try:
        with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
            return _train(cfg, device, progress=progress)
    finally:
        torch.set_num_threads(threads_before)


def _train(cfg: TrainAnonymizerConfig, device: torch.device, *, progress: bool) -> TrainResult:
    t_start = time.perf_counter()
    utility = DarknetYoloTorch(cfg.utility_cfg, cfg.utility_weights, fields=("utility_cfg", "utility_weights")).to(device)
    splits = split_sources(collect_sources(cfg.data), seed=cfg.seed, split_by=cfg.split_by)
    loaded = [read_frames(s, every_n=cfg.every_n, max_frames_per_source=cfg.max_frames_per_source) for s in splits]
    train_frames, val_frames, test_frames = (x.frames for x in loaded)
    state = load_resume_state(last_checkpoint_path(cfg.out), resume=cfg.resume, fmt=STATE_FORMAT,
                              config=cfg.model_dump(mode="json"), keys=_RESUME_KEYS, what="anonymizer training state")
    torch.manual_seed(cfg.seed)
    anonymizer = UNetLite(width=cfg.width, blocks=cfg.blocks).to(device)
    adversary = build_adversary(cfg.adversary_width, cfg.adversary_blocks).to(device)
    opt_a = torch.optim.AdamW(anonymizer.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    opt_d = torch.optim.AdamW(adversary.parameters(), lr=cfg.adversary_lr, weight_decay=cfg.weight_decay)
    gen = torch.Generator().manual_seed(cfg.seed)

    # The teacher: the detector's outputs on the original frames, computed once.
    with torch.no_grad():
        teacher = torch.cat([teacher_targets(utility, to_tensor(train_frames[i:i + 16]).to(device)).cpu()
                             for i in tqdm(range(0, len(train_frames), 16), desc="teacher", unit="batch",
                                           disable=not progress)])
        val_teacher = torch.cat([teacher_targets(utility, to_tensor(val_frames[i:i + 16]).to(device)).cpu()
                                 for i in range(0, len(val_frames), 16)])
    history: list[dict[str, Any]] = []
    epoch, steps, identity_done = 0, 0, 0
    if state:
        anonymizer.load_state_dict(state["anonymizer"])
        adversary.load_state_dict(state["adversary"])
        opt_a.load_state_dict(state["opt_a"])
        opt_d.load_state_dict(state["opt_d"])
        torch.set_rng_state(state["rng"])
        gen.set_state(state["gen"])
        history, epoch, steps = list(state["history"]), int(state["epoch"]), int(state["steps"])
        identity_done = int(state["identity_done"])

    def save_state() -> None:
        atomic_torch_save({"format": STATE_FORMAT, "config": cfg.model_dump(mode="json"), "epoch": epoch, "steps": steps,
                      "identity_done": identity_done, "history": history, "anonymizer": anonymizer.state_dict(),
                      "adversary": adversary.state_dict(), "opt_a": opt_a.state_dict(), "opt_d": opt_d.state_dict(),
                      "rng": torch.get_rng_state(), "gen": gen.get_state()}, last_checkpoint_path(cfg.out))

    if identity_done < cfg.identity_steps:  # T Eq. 3: start from (a blurry) identity
        opt_i = torch.optim.Adam(anonymizer.parameters(), lr=cfg.identity_lr)
        bar = tqdm(range(cfg.identity_steps), desc="identity init", unit="step", disable=not progress)
        t0 = time.perf_counter()
        for _ in bar:
            idx = torch.randint(0, len(train_frames), (cfg.batch_size,), generator=gen).numpy()
            loss = identity_step(anonymizer, opt_i, to_tensor(train_frames[idx]).to(device))
            bar.set_postfix(l1=f"{loss:.4f}")
        bar.close()
        identity_done = cfg.identity_steps
        history.append({"epoch": 0, "phase": "identity", "l1": loss, "seconds": time.perf_counter() - t0,
                        **_val_row(anonymizer, adversary, utility, val_frames, val_teacher, cfg, device)})
        logger.info("identity init: L1 %.4f, val SSIM %.3f, val utility %.4f (%.0f s)", loss,
                    history[-1]["val_ssim"], history[-1]["val_util"], history[-1]["seconds"])
        save_state()

    n = len(train_frames)
    while epoch < cfg.epochs:
        epoch += 1
        t0 = time.perf_counter()
        anonymizer.train()
        adversary.train()
        order = torch.randperm(n, generator=gen)
        sums = {"util": 0.0, "priv": 0.0, "adv": 0.0}
        batches = [order[i:i + cfg.batch_size] for i in range(0, n, cfg.batch_size)]
        bar = tqdm(batches, desc=f"epoch {epoch}/{cfg.epochs}", unit="batch", disable=not progress)
        for idx in bar:
            x = to_tensor(train_frames[idx.numpy()]).to(device)
            window = random_crop(x, cfg.crop, gen)
            adv = adversary_step(anonymizer, adversary, opt_d, x, window)
            util, priv = anonymizer_step(anonymizer, adversary, utility, opt_a, x, teacher[idx].to(device), window,
                                         cfg.privacy_weight)
            steps += 1
            for k, v in (("util", util), ("priv", priv), ("adv", adv)):
                sums[k] += v * len(idx)
            bar.set_postfix(util=f"{util:.4f}", deobf_mse=f"{priv:.4f}")
        bar.close()
        row = {"epoch": epoch, "phase": "adversarial", "train_util": sums["util"] / n,
               "train_deobf_mse": sums["priv"] / n, "adversary_loss": sums["adv"] / n, "steps": steps,
               **_val_row(anonymizer, adversary, utility, val_frames, val_teacher, cfg, device),
               "seconds": time.perf_counter() - t0}
        history.append(row)
        logger.info("epoch %d: utility %.4f (val %.4f), deobfuscator MSE %.4f (val %.4f), anonymized SSIM %.3f "
                    "(%.0f s)", epoch, row["train_util"], row["val_util"], row["train_deobf_mse"], row["val_deobf_mse"],
                    row["val_ssim"], row["seconds"])
        save_state()
    # Identity + game seconds over all (resumed) runs; data loading and the teacher pass add ~1 minute.
    train_seconds = sum(h["seconds"] for h in history)
    logger.info("training: %.1f min (this process: %.1f min)", train_seconds / 60, (time.perf_counter() - t_start) / 60)
    return _finish(cfg, anonymizer, history, splits, loaded, test_frames, train_frames, device, progress,
                   steps=steps, train_seconds=train_seconds)


@torch.no_grad()
def _val_row(anonymizer: nn.Module, adversary: nn.Module, utility: DarknetYoloTorch, frames: np.ndarray,
             teacher: torch.Tensor, cfg: TrainAnonymizerConfig, device: torch.device) -> dict[str, float]:
    """Validation: utility loss, the current deobfuscator's MSE (whole frames) and SSIM of A(x) to x."""
    from models.eval.image_metrics import batch_metrics

    was = anonymizer.training, adversary.training
    anonymizer.eval()
    adversary.eval()
    util = mse = ssim = 0.0
    for i in range(0, len(frames), 8):
        x = to_tensor(frames[i:i + 8]).to(device)
        a = anonymizer(x)
        util += utility_loss(detector_outputs(utility, a), teacher[i:i + 8].to(device)).item() * len(x)
        mse += F.mse_loss(adversary(a), x).item() * len(x)
        ssim += batch_metrics(x, a)["ssim"] * len(x)
    anonymizer.train(was[0])
    adversary.train(was[1])
    n = max(len(frames), 1)
    return {"val_util": util / n, "val_deobf_mse": mse / n, "val_ssim": ssim / n}


def _finish(cfg: TrainAnonymizerConfig, anonymizer: UNetLite, history: list[dict[str, Any]], splits, loaded,
            test_frames: np.ndarray, train_frames: np.ndarray, device: torch.device, progress: bool, *,
            steps: int, train_seconds: float) -> TrainResult:
    anonymizer.eval()
    t0 = time.perf_counter()
    metrics: dict[str, float] = {}
    quality = evaluate_anonymizer(anonymizer, test_frames, device=device)
    metrics.update({k: float(v) for k, v in quality.items() if isinstance(v, (int, float))})
    if cfg.attack_steps:
        metrics.update(independent_attack(anonymizer, train_frames, test_frames, width=cfg.adversary_width,
                                          blocks=cfg.adversary_blocks, steps=cfg.attack_steps, lr=cfg.attack_lr,
                                          batch_size=cfg.batch_size, crop=cfg.crop, seed=cfg.seed, device=device,
                                          progress=progress))
    faces = None
    if cfg.face_photos:
        photos = read_frames(collect_sources(cfg.face_photos)).frames
        faces = faces_before_after(photos, jpeg_roundtrip(anonymize(anonymizer, photos, device=device)))
        metrics.update(faces_before=faces["before"], faces_after=faces["after"])
    eval_seconds = time.perf_counter() - t0
    n = [len(x.frames) for x in loaded]
    data = describe([s for split in splits for s in split])
    data.update(split_by=cfg.split_by, every_n=cfg.every_n, max_frames_per_source=cfg.max_frames_per_source,
                split_sizes=dict(zip(("train", "val", "test"), n)),
                split_sources={k: [s.label for s in v] for k, v in zip(("train", "val", "test"), splits)},
                face_photos=[str(p) for p in cfg.face_photos])
    threads = cfg.threads or torch.get_num_threads()
    scale_note = (
        f"CPU scale: {n[0]} training frames ({', '.join(sorted({s.path.name for s in splits[0]}))}), "
        f"{cfg.identity_steps} identity steps + {cfg.epochs} adversarial epoch(s) = {steps} game steps of batch "
        f"{cfg.batch_size}, {train_seconds / 60:.1f} min of training steps + {eval_seconds / 60:.1f} min evaluation on "
        f"{threads} CPU thread(s). Not trained on: UCF-Crime, Avenue, ShanghaiTech or any dataset of the papers; "
        "no face or identity labels; no pedestrian re-identification adversary; the utility kept is one "
        "detector's (YOLO-Fastest-1.1-xl) person/objectness outputs, not the anomaly classifier's. Measured "
        "privacy is against a reconstruction attacker only.")
    card = anonymizer_card(
        trained=True, width=cfg.width, blocks=cfg.blocks,
        provenance=(f"pvad train anonymizer: De Coninck-style adversarial obfuscator (utility YOLO-Fastest-1.1-xl "
                    f"distillation, privacy deobfuscator MSE, weight {cfg.privacy_weight:g}); {cfg.epochs} epoch(s)"),
        scheme="deconinck", parameters=count_parameters(anonymizer), utility_model=str(cfg.utility_weights.name),
        privacy_weight=cfg.privacy_weight, lr=cfg.lr, adversary_lr=cfg.adversary_lr, batch_size=cfg.batch_size,
        epochs=cfg.epochs, steps=steps, identity_steps=cfg.identity_steps, crop=list(cfg.crop),
        adversary={"width": cfg.adversary_width, "blocks": cfg.adversary_blocks, "full_res_skip": True},
        attack={"steps": cfg.attack_steps, "lr": cfg.attack_lr, "fresh_adversary": True}, seed=cfg.seed,
        threads=threads, train_seconds=round(train_seconds, 1), eval_seconds=round(eval_seconds, 1),
        data=data, scale_note=scale_note, person_eval=quality, faces=faces, history=history)
    card.metrics.update({k: v for k, v in metrics.items() if math.isfinite(v)})
    path = save_checkpoint(cfg.out, anonymizer, card)
    logger.info("anonymized SSIM %.3f; persons kept %s/%s; attacker SSIM %s; saved %s", metrics.get("anon_ssim", 0),
                quality["persons_kept_iou50"], quality["persons_before"], metrics.get("attack_ssim"), path)
    return TrainResult(checkpoint=path, card=card, history=history)


# --------------------------------------------------------------------------- measurement


