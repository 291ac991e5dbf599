"""`pvad eval privacy`: every autoencoder on the same frames, with the quick or the white-box attack.

The measures are in ``models.eval.privacy`` (quality, faces, re-identification, the quick
interception attack, plots) and ``models.eval.whitebox`` (the white-box attacker); this module
runs them for each checkpoint and writes ``privacy.json`` and the plots.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from models.eval.faces import available_face_detectors, optional_face_embedder
from models.eval.privacy import (
    Frames,
    count_faces,
    detect_faces,
    frames_to_plot,
    interception_attack,
    plot_face_overlays,
    plot_reconstruction_grid,
    public_frames,
    quality,
    reconstruct,
    reidentification,
)
from models.eval.whitebox import OurView, evaluate_whitebox, load_target, target_of
from models.eval.whitebox_config import WhiteboxAttackConfig
from models.nets.autoencoder import encoder_id, load_autoencoder
from pvad.errors import ModelLoadError

logger = logging.getLogger(__name__)


def load_eval_frames(files: Sequence[Path], *, every_n: int = 10, max_frames_per_video: int = 8) -> tuple[Frames, list[str]]:
    """Frames of images (resized to 240×320, INTER_AREA) and videos (every ``every_n``-th frame,
    at most ``max_frames_per_video``), with one label per frame."""
    from models.data.frames import collect_sources, read_frames

    sources = collect_sources([Path(f) for f in files])
    loaded = read_frames(sources, every_n=every_n, max_frames_per_source=max_frames_per_video)
    names = [f"{label}#{k}" if n > 1 else label for label, n in loaded.kept.items() for k in range(n)]
    return loaded.frames, names


def _label(checkpoint: Path | None, card_extra: Mapping[str, Any], taken: Mapping[str, Any]) -> str:
    label = "untrained" if checkpoint is None else str(card_extra.get("optimizer") or Path(checkpoint).stem)
    if label in taken:
        label = f"{label}:{Path(checkpoint).stem if checkpoint else len(taken)}"
    return label


class _ExportedPair(nn.Module):
    """An exported encoder (ONNX/TorchScript, run outside torch) with the checkpoint decoder that pairs with it."""

    def __init__(self, target: Any) -> None:
        super().__init__()
        self.decoder = target.decoder
        self._encode = target.encode

    def encoder(self, x: torch.Tensor) -> torch.Tensor:
        return self._encode(x)


def _load_pair(checkpoint: Path | None, seed: int) -> tuple[nn.Module, dict[str, Any], bool, Any]:
    """(autoencoder-like pair, card extra, trained, white-box target or None for untrained weights)."""
    if checkpoint is None:
        model, card = load_autoencoder(None, seed=seed)
        return model, card.extra, card.trained, None
    if Path(checkpoint).suffix not in (".onnx", ".ts"):
        model, card = load_autoencoder(checkpoint, seed=seed)
        return model, card.extra, card.trained, target_of(model, card, checkpoint)
    target = load_target(checkpoint)
    if target.decoder is None:
        raise ModelLoadError(f"{checkpoint}: no autoencoder checkpoint in models/weights holds the decoder of encoder "
                             f"{target.encoder_id}; pass the checkpoint (.pt) instead of the exported file")
    return _ExportedPair(target), target.extra, bool(target.card.get("trained", True)), target


def evaluate_privacy(checkpoints: Sequence[Path | None], files: Sequence[Path], *, attack: bool | str,
                     out_dir: Path | None = None, seed: int = 0, attack_epochs: int = 3,
                     attack_public: int = 64, max_frames_per_video: int = 8,
                     latent_noise: tuple[float, float, float] | None = None,
                     whitebox: Any = None, progress: bool = True) -> dict[str, dict[str, Any]]:
    """Evaluate each autoencoder (``None`` = untrained, seed ``seed``) on frames of ``files``.

    Returns ``{label: {...}}``, label = ``card.extra["optimizer"]`` or the file stem
    ("untrained" for None), with ``mse``, ``psnr``, ``ssim``, ``faces_before``, ``faces_after``
    (per detector and ``total``), ``reid_top1``, ``reid_top1_known_boxes``, ``reid`` (counts),
    ``epsilon``, ``delta`` (None when not DP), ``encoder_id``, ``trained``, ``frames`` and
    ``attack``: ``"quick"`` (or True) = ``interception_attack``'s small attacker; ``"whitebox"`` =
    ``models.eval.whitebox.evaluate_whitebox`` with the ``whitebox`` config (a
    ``WhiteboxAttackConfig``; its keys ``attack_ssim``, ``ours_ssim``, ``attack_faces_after``,
    ``attack_reid_top1`` and ``attack_budget`` are also copied to the label's top level, and faces
    are counted with dlib's CNN detector too); ``"none"`` (or False) = no attack. A checkpoint may
    be an exported encoder (``.onnx``/``.ts`` with its card) whose decoder ships in models/weights. With
    ``latent_noise=(clip_norm, sigma, delta)`` every model is also evaluated with the camera's
    inference-time Gaussian mechanism, as ``<label>+noise`` with its per-frame ``frame_epsilon``
    at ``frame_delta``. With ``out_dir``:
    ``privacy.json``, ``reconstructions.png`` and ``faces_<label>.png`` are written there.
    """
    attack = {True: "quick", False: "none"}.get(attack, attack)  # type: ignore[arg-type]
    if attack not in ("none", "quick", "whitebox"):
        raise ValueError(f"attack must be none, quick or whitebox, got {attack!r}")
    frames, names = load_eval_frames(files, max_frames_per_video=max_frames_per_video)
    detectors = available_face_detectors(cnn=attack == "whitebox")
    embedder = optional_face_embedder()
    before = detect_faces(detectors, frames)
    public = public_frames(attack_public, seed=seed) if attack == "quick" else None
    if attack == "whitebox":
        from models.data.frames import collect_sources

        whitebox = whitebox or WhiteboxAttackConfig()
        evaluated = [s.path for s in collect_sources(list(files))]  # never among the attacker's frames
    results: dict[str, dict[str, Any]] = {}
    recon_by_label: dict[str, Frames] = {}
    for checkpoint in checkpoints:
        model, card_extra, trained, target = _load_pair(checkpoint, seed)
        label = _label(checkpoint, card_extra, results)
        decoded = reconstruct(model, frames)
        recon_by_label[label] = decoded
        after = detect_faces(detectors, decoded)
        reid = (reidentification(embedder, frames, decoded, detectors=detectors,
                                 boxes=(before["total"], after["total"])) if embedder else None)
        results[label] = {
            **quality(frames, decoded),
            "faces_before": count_faces(before),
            "faces_after": count_faces(after),
            "reid_top1": reid["reid_top1"] if reid else None,
            "reid_top1_known_boxes": reid["reid_top1_known_boxes"] if reid else None,
            "reid": reid, "epsilon": card_extra.get("epsilon"), "delta": card_extra.get("delta"),
            "encoder_id": target.encoder_id if target else encoder_id(model.encoder), "trained": trained,
            "frames": len(frames), "checkpoint": str(checkpoint) if checkpoint else None, "attack": None,
        }
        if attack == "quick":
            results[label]["attack"] = interception_attack(model.encoder, public, frames, epochs=attack_epochs,
                                                           seed=seed, decoder=model.decoder, detectors=detectors)
        elif attack == "whitebox" and target is not None:  # untrained weights have no encoder to attack
            wb = evaluate_whitebox(target, frames, whitebox, detectors=detectors, embedder=embedder,
                                   exclude=evaluated, out_dir=out_dir, progress=progress, before=before,
                                   our_view=OurView(decoded, after, results[label]["reid_top1"]))
            results[label]["attack"] = wb
            results[label] |= {"ours_ssim": results[label]["ssim"], "attack_ssim": wb["attack_ssim"],
                               "attack_psnr": wb["attack_psnr"], "attack_faces_after": wb["attack_faces_after"],
                               "attack_reid_top1": wb["attack_reid_top1"], "attack_budget": wb["budget"]}
        logger.info("privacy %s: %s", label, {k: v for k, v in results[label].items() if not isinstance(v, dict)})
        if latent_noise is not None:
            from models.latent_noise import gaussian_epsilon

            clip_norm, sigma, delta = latent_noise
            noisy = reconstruct(model, frames, latent_noise=(clip_norm, sigma), seed=seed)
            recon_by_label[f"{label}+noise"] = noisy
            after_noisy = detect_faces(detectors, noisy)
            reid_noisy = (reidentification(embedder, frames, noisy, detectors=detectors,
                                           boxes=(before["total"], after_noisy["total"])) if embedder else None)
            results[f"{label}+noise"] = {
                **quality(frames, noisy),
                "faces_before": results[label]["faces_before"],
                "faces_after": count_faces(after_noisy),
                "reid_top1": reid_noisy["reid_top1"] if reid_noisy else None,
                "reid_top1_known_boxes": reid_noisy["reid_top1_known_boxes"] if reid_noisy else None,
                "reid": reid_noisy, "epsilon": card_extra.get("epsilon"), "delta": card_extra.get("delta"),
                "frame_epsilon": gaussian_epsilon(sigma / (2 * clip_norm), delta), "frame_delta": delta,
                "latent_noise": {"clip_norm": clip_norm, "sigma": sigma},
                "encoder_id": results[label]["encoder_id"], "trained": trained, "frames": len(frames),
                "checkpoint": results[label]["checkpoint"], "attack": None,
            }
        if out_dir is not None:
            pick = frames_to_plot(before["total"])
            plot_face_overlays([img for i in pick for img in (frames[i], decoded[i])],
                               [b for i in pick for b in (before["total"][i], after["total"][i])],
                               Path(out_dir) / f"faces_{label.replace(':', '_')}.png",
                               titles=[t for i in pick for t in (f"{names[i]}: {len(before['total'][i])} faces",
                                                                 f"{label}: {len(after['total'][i])} faces")])
    if out_dir is not None:
        pick = frames_to_plot(before["total"])
        plot_reconstruction_grid(frames[pick], {k: v[pick] for k, v in recon_by_label.items()},
                                 Path(out_dir) / "reconstructions.png")
        (Path(out_dir) / "privacy.json").write_text(json.dumps(results, indent=2, default=str))
    return results
