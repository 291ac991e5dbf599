"""`pvad bench edge`: what each camera-side stage costs, per anonymizer.

For real frames of a video: capture (decode + sample) and resize ms/frame, then for every
registered anonymizer (region modes on person boxes, with their detector) its ms/frame (transform, and the encoder for dp-encoder), the codec's
ms/frame (JPEG or latent packing) and the bytes of the frame message. Medians over the frames.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import cv2

from camera_client.anonymize import create_anonymizer
from camera_client.client import make_frame
from pvad.codec import encode_latent
from pvad.config import FRAME_HEIGHT, FRAME_WIDTH, DpEncoderAnonymizer


def bench_configs() -> dict:
    """Every registered anonymizer with its defaults (and LA3D's fixed person-box baselines), plus
    the DP encoder with uint8 latents coded by zstd and by row-delta + zstd; the same set
    `pvad eval anonymizers` measures."""
    from models.eval.anonymizers import default_mode_configs

    configs = {k: v for k, v in default_mode_configs().items() if not isinstance(v, str)}
    configs["dp-encoder-u8-zstd"] = DpEncoderAnonymizer(dtype="uint8", compression="zstd")
    configs["dp-encoder-u8-zstd-delta"] = DpEncoderAnonymizer(dtype="uint8", compression="zstd-delta")
    return configs


def _median_ms(times: list[float]) -> float:
    return round(1000.0 * statistics.median(times), 3)


def bench_edge(source: Path, *, frames: int = 50) -> dict:
    cap = cv2.VideoCapture(str(source))
    read, resize, raw = [], [], []
    while len(raw) < frames:
        t0 = time.perf_counter()
        ok, frame = cap.read()
        t1 = time.perf_counter()
        if not ok:
            break
        small = cv2.resize(frame, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_AREA)
        t2 = time.perf_counter()
        read.append(t1 - t0)
        resize.append(t2 - t1)
        raw.append(small)
    cap.release()
    result: dict = {"source": str(source), "frames": len(raw), "capture_ms": _median_ms(read),
                    "resize_ms": _median_ms(resize), "anonymizers": {}}
    for name, cfg in bench_configs().items():
        anon = create_anonymizer(cfg)
        anon(raw[0])  # warm-up
        total, sizes = [], []
        for i, f in enumerate(raw):
            t0 = time.perf_counter()
            payload = anon(f)
            total.append(time.perf_counter() - t0)
            sizes.append(make_frame("bench", i, 0, payload).ByteSize())
        entry = {"ms_per_frame": _median_ms(total), "bytes_per_frame": round(statistics.fmean(sizes))}
        if hasattr(anon, "encode"):  # split the encoder from the latent codec
            enc, codec = [], []
            for f in raw:
                t0 = time.perf_counter()
                z = anon.encode(f)
                t1 = time.perf_counter()
                encode_latent(z, encoder_id=anon.encoder_id, dtype=anon.dtype, compression=anon.compression)
                enc.append(t1 - t0)
                codec.append(time.perf_counter() - t1)
            entry["encoder_ms"] = _median_ms(enc)
            entry["codec_ms"] = _median_ms(codec)
        result["anonymizers"][name] = entry
    return result
