"""How well a learned anonymizer works: people a detector still finds, faces before and after, an
independent inversion attack, and `measure` on a real video and photos (`pvad train anonymizer` reports them)."""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from models.data.frames import collect_sources, read_frames

logger = logging.getLogger(__name__)

from models.train.anonymizer_steps import (
    adversary_step,
    anonymize,
    build_adversary,
    jpeg_roundtrip,
    random_crop,
    to_tensor,
)


def person_retention(frames_rgb: np.ndarray, anon_rgb: np.ndarray, detector=None, iou: float = 0.5) -> dict[str, Any]:
    """Persons the server's detector finds on the originals, and how many it still finds on the
    anonymized frames (a person counts as kept when an anonymized-frame person box overlaps it by IoU ≥ iou)."""
    from analysis_server.detectors import PERSON as DET_PERSON
    from analysis_server.detectors import create_detector
    from models.eval.faces import box_iou
    from pvad.samples import offline_detector

    detector = detector or create_detector(offline_detector())
    before = after = kept = frames_with = frames_with_after = 0
    for f, a in zip(frames_rgb, anon_rgb):
        d0 = detector.detect(cv2.cvtColor(f, cv2.COLOR_RGB2BGR))
        d1 = detector.detect(cv2.cvtColor(a, cv2.COLOR_RGB2BGR))
        b0 = d0.boxes[d0.class_ids == DET_PERSON]
        b1 = d1.boxes[d1.class_ids == DET_PERSON]
        before, after = before + len(b0), after + len(b1)
        frames_with += bool(len(b0))
        frames_with_after += bool(len(b0)) and bool(len(b1))
        if len(b0) and len(b1):
            kept += int((box_iou(b0, b1).max(1) >= iou).sum())
    return {"detector": getattr(detector, "name", type(detector).__name__), "persons_before": before,
            "persons_after": after, "persons_kept_iou50": kept,
            "person_recall": kept / before if before else float("nan"),
            "frames_with_person": frames_with, "of_those_still_with_person": frames_with_after}


def faces_before_after(photos_rgb: np.ndarray, anon_rgb: np.ndarray) -> dict[str, Any]:
    """Faces found by every available detector of ``models.eval.faces`` (merged), before and after."""
    from models.eval.faces import available_face_detectors, merge_boxes

    detectors = available_face_detectors()
    count = {"before": 0, "after": 0, "detectors": sorted(detectors)}
    for f, a in zip(photos_rgb, anon_rgb):
        count["before"] += len(merge_boxes([d.detect(f) for d in detectors.values()]))
        count["after"] += len(merge_boxes([d.detect(a) for d in detectors.values()]))
    return count


def independent_attack(anonymizer: nn.Module, train_frames: np.ndarray, test_frames: np.ndarray, *, width: int,
                       blocks: int, steps: int, lr: float, batch_size: int, crop: tuple[int, int], seed: int,
                       device: torch.device, progress: bool = True) -> dict[str, float]:
    """Train a fresh deobfuscator on (A(x), x) of ``train_frames`` for ``steps`` steps against the
    frozen anonymizer, then reconstruct ``test_frames``: SSIM / PSNR / MSE of the reconstruction to the original."""
    from models.eval.image_metrics import batch_metrics

    gen = torch.Generator().manual_seed(seed + 1)
    attacker = build_adversary(width, blocks).to(device)
    opt = torch.optim.AdamW(attacker.parameters(), lr=lr, weight_decay=1e-4)
    anonymizer.eval()
    bar = tqdm(range(steps), desc="attack", unit="step", disable=not progress)
    for _ in bar:
        idx = torch.randint(0, len(train_frames), (batch_size,), generator=gen).numpy()
        x = to_tensor(train_frames[idx]).to(device)
        loss = adversary_step(anonymizer, attacker, opt, x, random_crop(x, crop, gen))
        bar.set_postfix(mse=f"{loss:.4f}")
    bar.close()
    attacker.eval()
    sums = {"mse": 0.0, "psnr": 0.0, "ssim": 0.0}
    with torch.no_grad():
        for i in range(0, len(test_frames), 8):
            x = to_tensor(test_frames[i:i + 8]).to(device)
            for k, v in batch_metrics(x, attacker(anonymizer(x))).items():
                sums[k] += v * len(x)
    return {f"attack_{k}": v / max(len(test_frames), 1) for k, v in sums.items()}


def evaluate_anonymizer(model: nn.Module, frames: np.ndarray, *, device: torch.device | None = None,
                        detector=None, jpeg_quality: int = 90) -> dict[str, Any]:
    """SSIM/PSNR/MSE of the anonymized frame (as the server decodes it) to the original, and person retention."""
    from models.eval.image_metrics import batch_metrics

    anon = jpeg_roundtrip(anonymize(model.eval(), frames, device=device), jpeg_quality)
    q = batch_metrics(to_tensor(frames), to_tensor(anon))
    return {**{f"anon_{k}": v for k, v in q.items()}, **person_retention(frames, anon, detector)}


# --------------------------------------------------------------------------- training




def measure(checkpoint: Path, *, video: Path, photos: list[Path], frames: int = 50,
            threads: tuple[int, ...] = (2, 1)) -> dict[str, Any]:
    """Camera cost and quick privacy/utility figures of an anonymizer checkpoint.

    * ms/frame of the camera's ``learned`` anonymizer (network + JPEG) and of the network alone,
      median over ``frames`` frames of ``video`` (resized to 240×320 like the camera), per torch
      thread count; bytes of the ``pvad.v1.Frame`` message, against the raw JPEG of ``none``;
    * on those frames: SSIM/PSNR of what the server decodes to the original, and persons found
      by the server's offline detector before/after;
    * on ``photos``: faces found (Haar + dlib when installed, merged) before/after, and SSIM.
    """
    import statistics

    from camera_client.anonymize import create_anonymizer
    from camera_client.client import make_frame
    from models.eval.image_metrics import batch_metrics
    from pvad.config import LearnedAnonymizer, NoAnonymizer

    cap = cv2.VideoCapture(str(video))
    total = int(cap.get(cv2.CAP_PROP_FRAME_COUNT)) or frames
    step = max(1, total // frames)
    raw: list[np.ndarray] = []
    i = 0
    while len(raw) < frames:
        ok, f = cap.read()
        if not ok:
            break
        if i % step == 0:
            raw.append(cv2.resize(f, (320, 240), interpolation=cv2.INTER_AREA))
        i += 1
    cap.release()
    anon = create_anonymizer(LearnedAnonymizer(checkpoint=checkpoint))
    none = create_anonymizer(NoAnonymizer())
    out: dict[str, Any] = {"checkpoint": str(checkpoint), "video": str(video), "frames": len(raw)}
    before = torch.get_num_threads()
    try:
        for n in threads:
            torch.set_num_threads(n)
            anon(raw[0])
            full, net = [], []
            for f in raw:
                t0 = time.perf_counter()
                anon.transform(f)
                t1 = time.perf_counter()
                anon(f)
                net.append(t1 - t0)
                full.append(time.perf_counter() - t1)
            out[f"ms_per_frame_{n}_threads"] = round(1000 * statistics.median(full), 2)
            out[f"network_ms_{n}_threads"] = round(1000 * statistics.median(net), 2)
    finally:
        torch.set_num_threads(before)
    payloads = [anon(f) for f in raw]
    out["bytes_per_frame"] = round(statistics.fmean(make_frame("cam", k, 0, p).ByteSize()
                                                    for k, p in enumerate(payloads)))
    out["bytes_per_frame_none_jpeg"] = round(statistics.fmean(make_frame("cam", k, 0, none(f)).ByteSize()
                                                              for k, f in enumerate(raw)))
    orig_rgb = np.stack([cv2.cvtColor(f, cv2.COLOR_BGR2RGB) for f in raw])
    seen_rgb = np.stack([cv2.cvtColor(cv2.imdecode(np.frombuffer(p.jpeg, np.uint8), cv2.IMREAD_COLOR),
                                      cv2.COLOR_BGR2RGB) for p in payloads])
    out.update({f"video_{k}": v for k, v in batch_metrics(to_tensor(orig_rgb), to_tensor(seen_rgb)).items()})
    out["video_persons"] = person_retention(orig_rgb, seen_rgb)
    if photos:
        pics = read_frames(collect_sources(photos)).frames
        seen = jpeg_roundtrip(anonymize(anon.model, pics))
        out["photos"] = len(pics)
        out.update({f"photos_{k}": v for k, v in batch_metrics(to_tensor(pics), to_tensor(seen)).items()})
        out["photos_faces"] = faces_before_after(pics, seen)
        out["photos_persons"] = person_retention(pics, seen)
    return out
