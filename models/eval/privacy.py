"""Privacy measures of the frame autoencoder (G §5.1.1-5.2.2, DESIGN §7); ``models.eval.privacy_report``
runs them for each checkpoint (``pvad eval privacy``), ``models.eval.whitebox`` adds the white-box attacker.

For each autoencoder, on frames of the given images/videos (``N×240×320×3`` uint8 RGB):

- image quality of what the server sees (``models.eval.image_metrics``: MSE and SSIM on [0, 1] floats,
  PSNR with peak 1.0; G's PSNRs of 65-70 dB look like peak 255 over a [0, 1] MSE, i.e. ours
  + 48.1 dB);
- faces found before/after by each face detector of ``models.eval.faces`` (G: 8 of 13 → 0 of 13);
- identity leakage: can a face in the decoded frame be matched to the right person
  (``reidentification``);
- an interception attack: someone holding latents but not our decoder trains their own
  (``interception_attack``).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from models.eval import image_metrics as metrics
from models.eval.faces import (
    SAME_PERSON_DISTANCE,
    FaceDetector,
    FaceEmbedder,
    available_face_detectors,
    box_iou,
    merge_boxes,
)
from models.eval.plots import save_figure
from models.nets.autoencoder import Decoder

logger = logging.getLogger(__name__)

Frames = np.ndarray  # N×240×320×3 uint8 RGB


def _to_tensor(frames: Frames) -> torch.Tensor:
    frames = np.asarray(frames)
    if frames.ndim != 4 or frames.shape[3] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"expected N×H×W×3 uint8 RGB frames, got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255.0)


def _to_u8(x: torch.Tensor) -> Frames:
    return (x.detach().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).contiguous().numpy())


@torch.no_grad()
def _encode(encoder: nn.Module, frames: Frames, batch_size: int) -> torch.Tensor:
    return torch.cat([encoder(_to_tensor(frames[i:i + batch_size])) for i in range(0, len(frames), batch_size)])


@torch.no_grad()
def _decode(decoder: nn.Module, latents: torch.Tensor, batch_size: int) -> Frames:
    return np.concatenate([_to_u8(decoder(latents[i:i + batch_size])) for i in range(0, len(latents), batch_size)])


def reconstruct(autoencoder: nn.Module, frames_rgb_u8: Frames, *, batch_size: int = 8,
                latent_noise: tuple[float, float] | None = None, seed: int = 0) -> Frames:
    """What the server sees: ``decoder(encoder(frames))`` as uint8 RGB of the same shape.

    ``latent_noise=(clip_norm, sigma)`` applies the camera's inference-time Gaussian mechanism
    (``models.latent_noise.privatize_latent``) to each latent first."""
    autoencoder.eval()
    z = _encode(autoencoder.encoder, frames_rgb_u8, batch_size)
    if latent_noise is not None:
        from models.latent_noise import privatize_latent

        clip_norm, sigma = latent_noise
        rng = np.random.default_rng(seed)
        z = torch.from_numpy(np.stack([privatize_latent(zi, clip_norm=clip_norm, sigma=sigma, rng=rng)
                                       for zi in z.float().numpy()]))
    return _decode(autoencoder.decoder, z, batch_size)


def quality(originals: Frames, decoded: Frames) -> dict[str, float]:
    """Mean ``mse``, ``psnr`` (dB, peak 1) and ``ssim`` over frames, on [0, 1] floats."""
    rows = [(metrics.mse(a, b), metrics.psnr(a, b, 1.0), metrics.ssim(a, b, 1.0))
            for a, b in zip(originals.astype(np.float64) / 255.0, decoded.astype(np.float64) / 255.0)]
    mean = np.mean(np.array(rows, dtype=np.float64), axis=0)
    return {"mse": float(mean[0]), "psnr": float(mean[1]), "ssim": float(mean[2])}


# --------------------------------------------------------------------------- faces


def detect_faces(detectors: Mapping[str, FaceDetector], images: Sequence[np.ndarray]) -> dict[str, list[np.ndarray]]:
    """Boxes per image for each detector, plus ``"total"``: the union (a face found by several
    detectors, IoU ≥ 0.3, counts once)."""
    found = {name: [det.detect(img) for img in images] for name, det in detectors.items()}
    found["total"] = [merge_boxes([found[name][i] for name in detectors]) for i in range(len(images))]
    return found


def count_faces(found: Mapping[str, Sequence[np.ndarray]]) -> dict[str, int]:
    """``detect_faces``'s boxes as counts: faces per detector and in ``"total"``."""
    return {name: int(sum(len(b) for b in boxes)) for name, boxes in found.items()}


def face_counts(detectors: Mapping[str, FaceDetector], images: Sequence[np.ndarray]) -> dict[str, int]:
    """Faces found in ``images`` by each detector and in ``"total"`` (union over detectors)."""
    return count_faces(detect_faces(detectors, images))


def _lfw_distractors(count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``count`` (image, box) pairs of scikit-image's LFW faces (the first 100 of lfw_subset),
    25×25 upscaled to 100×100 with a 25 px border, face box = the upscaled crop."""
    if count <= 0:
        return []
    import cv2
    from skimage import data

    faces = (data.lfw_subset()[:100] * 255).round().astype(np.uint8)
    out = []
    for face in faces[:count]:
        big = cv2.cvtColor(cv2.resize(face, (100, 100), interpolation=cv2.INTER_CUBIC), cv2.COLOR_GRAY2RGB)
        out.append((cv2.copyMakeBorder(big, 25, 25, 25, 25, cv2.BORDER_REPLICATE), np.array([25, 25, 125, 125])))
    return out


def reidentification(embedder: FaceEmbedder, originals: Sequence[np.ndarray], decoded: Sequence[np.ndarray], *,
                     detectors: Mapping[str, FaceDetector] | None = None, threshold: float = SAME_PERSON_DISTANCE,
                     iou_min: float = 0.3, min_identities: int = 5,
                     boxes: tuple[Sequence[np.ndarray], Sequence[np.ndarray]] | None = None) -> dict[str, Any]:
    """Can the faces of the original frames be re-identified from the decoded frames?

    Gallery: every face found in the ORIGINAL images (union of ``detectors``) is its own identity
    (image index, face index), embedded from the original; when fewer than ``min_identities``,
    LFW faces are added as distractor identities.

    ``reid_top1`` (the server's view, no side information): faces are detected in the DECODED
    images by the same detectors; a probe counts when its nearest gallery embedding (Euclidean)
    is closer than ``threshold`` and is the probe's true identity, the original face of the same
    image overlapping it most (IoU ≥ ``iou_min``). Value = identities re-identified / faces in
    the originals, so no face found after decoding gives 0.0.

    ``reid_top1_known_boxes`` (stronger attacker who knows where the faces are): each decoded
    image is embedded at the ORIGINAL face boxes, then matched the same way.

    Chance level: tiny faces (15-25 px in 240×320) give weak, mutually close embeddings, so even
    a flat grey box can land within 0.6 of the right one (1 of 7 on the VISPR photos); read these
    rates against the untrained autoencoder (flat grey output) as the floor.

    Both are None when the originals hold no face. Also returned: the counts, and
    ``known_boxes_mean_distance`` (mean distance between a face's original and decoded embedding).
    ``boxes``: the ``"total"`` boxes of ``detect_faces`` on (originals, decoded), if already known.
    """
    if len(originals) != len(decoded):
        raise ValueError(f"{len(originals)} originals but {len(decoded)} decoded images")
    detectors = available_face_detectors() if detectors is None else detectors
    if boxes is None:
        boxes = (detect_faces(detectors, originals)["total"], detect_faces(detectors, decoded)["total"])
    gallery_boxes, probe_boxes = boxes
    ids = [(i, j) for i, boxes in enumerate(gallery_boxes) for j in range(len(boxes))]
    gallery = [embedder.embed(originals[i], gallery_boxes[i][j]) for i, j in ids]
    distractors = _lfw_distractors(min_identities - len(ids)) if ids else []
    gallery += [embedder.embed(img, box) for img, box in distractors]
    labels: list[tuple[int, int] | None] = [*ids, *([None] * len(distractors))]
    gal = np.stack(gallery) if gallery else np.zeros((0, 128))

    def nearest(vec: np.ndarray) -> tuple[tuple[int, int] | None, float]:
        dist = np.linalg.norm(gal - vec, axis=1)
        k = int(np.argmin(dist))
        return (labels[k] if dist[k] < threshold else None), float(dist[k])

    probes = found_on_face = 0
    correct: set[tuple[int, int]] = set()
    for i, image in enumerate(decoded):
        probes += len(probe_boxes[i])
        for box in probe_boxes[i]:
            overlap = box_iou(box[None], gallery_boxes[i])[0] if len(gallery_boxes[i]) else np.zeros(0)
            if not len(overlap) or overlap.max() < iou_min:
                continue
            found_on_face += 1
            truth = (i, int(np.argmax(overlap)))
            if nearest(embedder.embed(image, box))[0] == truth:
                correct.add(truth)
    known, dists = 0, []
    for k, (i, j) in enumerate(ids):
        vec = embedder.embed(decoded[i], gallery_boxes[i][j])
        known += nearest(vec)[0] == (i, j)
        dists.append(float(np.linalg.norm(vec - gallery[k])))
    n = len(ids)
    return {
        "reid_top1": len(correct) / n if n else None,
        "reid_top1_known_boxes": known / n if n else None,
        "faces_original": n, "distractors": len(distractors), "probes": probes,
        "probes_on_original_faces": found_on_face, "reidentified": len(correct),
        "reidentified_known_boxes": known, "threshold": threshold,
        "known_boxes_mean_distance": float(np.mean(dists)) if dists else None,
    }


# --------------------------------------------------------------------------- interception attack


def public_frames(count: int, *, seed: int = 0) -> Frames:
    """``count`` face-free 240×320 frames from scikit-image's bundled photos (random 4:3 crops,
    ≥ half the short side, random flips): a stand-in for the public data an attacker holds."""
    import cv2
    from skimage import data

    names = ("chelsea", "coffee", "rocket", "stereo_motorcycle", "immunohistochemistry", "retina",
             "hubble_deep_field", "coins", "brick", "grass", "gravel", "moon", "cell")
    photos = []
    for name in names:
        img = getattr(data, name)()
        img = np.asarray(img[0] if isinstance(img, tuple) else img)
        photos.append(np.repeat(img[..., None], 3, axis=2) if img.ndim == 2 else img[..., :3])
    rng = np.random.default_rng(seed)
    out = np.empty((count, 240, 320, 3), np.uint8)
    for k in range(count):
        img = photos[k % len(photos)]
        h, w = img.shape[:2]
        ch = int(rng.integers(min(h, w * 3 // 4) // 2, min(h, w * 3 // 4) + 1))
        cw = ch * 4 // 3
        y, x = int(rng.integers(0, h - ch + 1)), int(rng.integers(0, w - cw + 1))
        crop = img[y:y + ch, x:x + cw]
        out[k] = cv2.resize(crop[:, ::-1] if rng.random() < 0.5 else crop, (320, 240), interpolation=cv2.INTER_AREA)
    return out


def interception_attack(encoder: nn.Module, public_frames: Frames, test_frames: Frames, *, epochs: int, seed: int,
                        decoder: nn.Module | None = None, detectors: Mapping[str, FaceDetector] | None = None,
                        batch_size: int = 8, lr: float = 1e-3) -> dict[str, Any]:
    """Train an attacker's decoder from intercepted latents and report how well it reconstructs.

    Threat model: the adversary reads latents on the wire (TLS broken or the server breached) but
    does not have our decoder weights. In the worst case it can query the camera's encoder (or
    owns a copy, or a paired set of public frames and their latents): it trains a decoder of our
    architecture (``models.nets.autoencoder.Decoder``, fresh init, Adam ``lr``, MSE) on
    ``(encoder(public), public)`` pairs, then decodes the latents of ``test_frames``. Kept CPU
    small (use ≤ 64 public frames and a few epochs), so it is a lower bound on a real attacker.

    Returns ``attack_{mse,psnr,ssim}`` of the attacker's reconstructions of ``test_frames``,
    ``ours_{mse,psnr,ssim}`` when ``decoder`` is given, ``attack_faces_after`` (per detector)
    when ``detectors`` are, the final training loss and the sizes.
    """
    if epochs < 1 or len(public_frames) == 0 or len(test_frames) == 0:
        raise ValueError("interception_attack needs epochs >= 1 and non-empty public and test frames")
    encoder.eval()
    z_public, z_test = _encode(encoder, public_frames, batch_size), _encode(encoder, test_frames, batch_size)
    x_public = _to_tensor(public_frames)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        attacker = Decoder().to(memory_format=torch.channels_last)
        opt = torch.optim.Adam(attacker.parameters(), lr=lr)
        order = torch.Generator().manual_seed(seed)
        attacker.train()
        for epoch in range(epochs):
            total = 0.0
            for idx in torch.randperm(len(x_public), generator=order).split(batch_size):
                loss = nn.functional.mse_loss(attacker(z_public[idx]), x_public[idx])
                opt.zero_grad()
                loss.backward()
                opt.step()
                total += loss.item() * len(idx)
            logger.info("interception attack: epoch %d/%d, loss %.5f", epoch + 1, epochs, total / len(x_public))
    attacker.eval()
    stolen = _decode(attacker, z_test, batch_size)
    result: dict[str, Any] = {f"attack_{k}": v for k, v in quality(test_frames, stolen).items()}
    if decoder is not None:
        result |= {f"ours_{k}": v for k, v in quality(test_frames, _decode(decoder.eval(), z_test, batch_size)).items()}
    if detectors is not None:
        result["attack_faces_after"] = face_counts(detectors, stolen)
    result |= {"final_loss": total / len(x_public), "public_frames": len(public_frames),
               "test_frames": len(test_frames), "epochs": epochs}
    return result


def frames_to_plot(boxes: Sequence[np.ndarray], limit: int = 4) -> list[int]:
    """Up to ``limit`` frame indices, those with the most faces first (then in order)."""
    return sorted(sorted(range(len(boxes)), key=lambda i: -len(boxes[i]))[:limit])


# --------------------------------------------------------------------------- plots


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reconstruction_grid(originals: Frames, recon_by_label: Mapping[str, Frames], path: Path) -> Path:
    """Rows: images; columns: the original, then each model's reconstruction titled with its
    SSIM / PSNR (like G Fig. 7). Written as PNG to ``path``."""
    plt = _pyplot()
    cols = 1 + len(recon_by_label)
    fig, axes = plt.subplots(len(originals), cols, figsize=(3.2 * cols, 2.5 * len(originals)), squeeze=False)
    for r, orig in enumerate(originals):
        axes[r][0].imshow(orig)
        axes[r][0].set_title("original", fontsize=9)
        for c, (label, recon) in enumerate(recon_by_label.items(), start=1):
            q = quality(orig[None], recon[r][None])
            axes[r][c].imshow(recon[r])
            axes[r][c].set_title(f"{label}\nSSIM {q['ssim']:.2f}  PSNR {q['psnr']:.1f} dB", fontsize=9)
    for ax in axes.flat:
        ax.axis("off")
    return save_figure(fig, path, plt)


def plot_face_overlays(images: Sequence[np.ndarray], boxes: Sequence[np.ndarray], path: Path, *,
                       titles: Sequence[str] | None = None, ncols: int = 2) -> Path:
    """Each image with its face boxes drawn (like G Figs. 8-9); by default pairs before/after,
    ``ncols`` per row. Written as PNG to ``path``."""
    plt = _pyplot()
    if len(images) != len(boxes):
        raise ValueError(f"{len(images)} images but {len(boxes)} box sets")
    rows = max(1, math.ceil(len(images) / ncols))
    fig, axes = plt.subplots(rows, ncols, figsize=(3.6 * ncols, 2.8 * rows), squeeze=False)
    for k, ax in enumerate(axes.flat):
        ax.axis("off")
        if k >= len(images):
            continue
        ax.imshow(images[k])
        for x0, y0, x1, y1 in np.asarray(boxes[k]).reshape(-1, 4):
            ax.add_patch(plt.Rectangle((x0, y0), x1 - x0, y1 - y0, fill=False, edgecolor="lime", linewidth=1.5))
        ax.set_title(titles[k] if titles else f"{len(boxes[k])} faces", fontsize=9)
    return save_figure(fig, path, plt)
