"""Adversarial hardening of the camera encoder against inversion (the ``adversarial:`` phase of
``pvad train autoencoder``; TeD-SPAD and De Coninck et al. train their anonymizers the same way).

After the DP-SGD phase, an inversion adversary (``models.nets.inversion.InversionDecoder``, small)
and our encoder-decoder pair are trained in alternation on PUBLIC frames only:

- adversary step: minimise ``L1(adv(z), x)`` with ``z = encoder(x)`` held fixed: it learns to
  invert the current encoder, as the white-box attacker will;
- encoder-decoder step: minimise ``utility − weight · privacy`` where
  ``utility = L1(decoder(z), lowpass(x))`` keeps what the server needs (the frame's structure and
  motion at the scale of people, a Gaussian low-pass of sigma ``utility_sigma`` px) and
  ``privacy = L1(highpass(adv(z)), highpass(x))`` is the adversary's error on the detail that
  identifies people (faces, texture: ``x − lowpass(x)``). The encoder is pushed to drop that
  detail from the latent; the privacy term is bounded by the detail's own energy (an adversary
  that cannot predict it outputs none), so the minimax cannot run away.

Privacy accounting: the released weights after the DP phase are (ε, δ)-DP for its training frames;
this phase touches only public frames (checked: no file of the DP data may be among them), so by
the post-processing property of DP it spends no ε. The card states both.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torchvision.transforms.functional import gaussian_blur
from tqdm import tqdm

from models.data.augment import augment
from models.data.public import skimage_photos, thin_frame_folders
from models.nets.autoencoder import Autoencoder
from models.nets.inversion import InversionDecoder
from models.train.autoencoder_config import AdversarialConfig
from pvad.errors import ConfigError

logger = logging.getLogger(__name__)


def lowpass(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Gaussian blur of ``N×3×H×W`` with std ``sigma`` px (kernel ±3σ, odd)."""
    k = 2 * round(3 * sigma) + 1
    return gaussian_blur(x, [k, k], [sigma, sigma])


@dataclass
class StepLosses:
    adversary: float  # the adversary's L1 on the whole frame (its own objective)
    utility: float  # our decoder's L1 to the low-passed frame
    privacy: float  # the adversary's L1 on the high-pass detail (what the encoder maximises)


def adversary_step(model: Autoencoder, adversary: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor) -> float:
    """One step of the adversary on ``(encoder(x), x)``; the encoder is not touched."""
    with torch.no_grad():
        z = model.encoder(x)
    loss = F.l1_loss(adversary(z), x)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss.item()


def encoder_step(model: Autoencoder, adversary: nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, *,
                 weight: float, sigma: float) -> StepLosses:
    """One step of encoder + decoder on ``utility − weight · privacy`` (see the module doc)."""
    low = lowpass(x, sigma)
    z = model.encoder(x)
    utility = F.l1_loss(model.decoder(z), low)
    guess = adversary(z)
    privacy = F.l1_loss(guess - lowpass(guess, sigma), x - low)
    loss = utility - weight * privacy
    opt.zero_grad(set_to_none=True)
    adversary.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    adversary.zero_grad(set_to_none=True)  # its gradients from this step are not its own objective's
    with torch.no_grad():
        adv_loss = F.l1_loss(guess, x).item()
    return StepLosses(adversary=adv_loss, utility=utility.item(), privacy=privacy.item())


def load_public(cfg: AdversarialConfig, private: list[Path]) -> np.ndarray:
    """The public frames of the phase; ConfigError when any of them is a file of the DP training data."""
    from models.data.frames import collect_sources, read_frames

    sources = collect_sources(list(cfg.public)) if cfg.public else []
    private_files = {s.path.resolve() for s in collect_sources(private)}
    shared = sorted(str(s.path) for s in sources if s.path.resolve() in private_files)
    if shared:
        raise ConfigError(f"adversarial.public: {', '.join(shared[:3])} also in `data` (the DP training frames); "
                          "the adversarial phase must see public frames only, or ε no longer holds")
    sources, _ = thin_frame_folders(sources, cfg.every_n)
    chunks = [read_frames(sources, every_n=cfg.every_n, max_frames_per_source=cfg.max_frames_per_source).frames] \
        if sources else []
    if cfg.scikit_image:
        chunks.append(skimage_photos())
    if not chunks:
        raise ConfigError("adversarial: no public frames (set `public` or `scikit_image: true`)")
    return np.concatenate(chunks)


def harden(model: Autoencoder, public: np.ndarray, cfg: AdversarialConfig, *, device: torch.device,
           seed: int = 0, progress: bool = True) -> dict[str, Any]:
    """Run the adversarial phase on ``model`` in place; returns what goes on the card."""
    rng = np.random.default_rng([seed, 7])
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        adversary = InversionDecoder(width=cfg.adversary_width, blocks=cfg.adversary_blocks).to(device)
    opt_a = torch.optim.Adam(adversary.parameters(), lr=cfg.adversary_lr)
    opt_m = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    model.train()
    adversary.train()
    history: list[dict[str, float]] = []
    t0 = time.perf_counter()
    total = cfg.warmup + cfg.steps
    bar = tqdm(range(total), desc="adversarial phase", unit="step", disable=not progress)

    def batch() -> torch.Tensor:
        frames = augment(public[rng.integers(0, len(public), cfg.batch_size)], rng)
        return torch.from_numpy(frames).permute(0, 3, 1, 2).float().div(255.0).to(device)

    for step in bar:
        for _ in range(cfg.adversary_steps):
            adv = adversary_step(model, adversary, opt_a, batch())
        if step < cfg.warmup:
            bar.set_postfix(adversary=f"{adv:.4f}")
            continue
        losses = encoder_step(model, adversary, opt_m, batch(), weight=cfg.weight, sigma=cfg.utility_sigma)
        history.append({"step": step + 1, "adversary": adv, **losses.__dict__})
        bar.set_postfix(adversary=f"{adv:.4f}", utility=f"{losses.utility:.4f}", privacy=f"{losses.privacy:.4f}")
    model.eval()

    def mean(key: str, part: slice) -> float | None:
        rows = history[part]
        return float(np.mean([r[key] for r in rows])) if rows else None

    first, last = slice(0, 20), slice(-20, None)
    out = {
        "public_frames": len(public), "steps": cfg.steps, "warmup": cfg.warmup, "weight": cfg.weight,
        "utility_sigma": cfg.utility_sigma, "batch_size": cfg.batch_size,
        "adversary": {"width": cfg.adversary_width, "blocks": cfg.adversary_blocks, "steps_per_step": cfg.adversary_steps},
        "adversary_l1_first": mean("adversary", first), "adversary_l1_last": mean("adversary", last),
        "utility_l1_first": mean("utility", first), "utility_l1_last": mean("utility", last),
        "privacy_l1_first": mean("privacy", first), "privacy_l1_last": mean("privacy", last),
        "seconds": round(time.perf_counter() - t0, 1),
        "epsilon_note": "public frames only: post-processing of the DP release, no ε spent",
    }
    logger.info("adversarial phase: %s", out)
    return out
