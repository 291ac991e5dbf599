"""`pvad bench encoder`: the camera's encoder cost and what it puts on the wire.

Prints the encoder's median ms/frame on one and on two threads, in fp32 and with bf16 autocast (with
bf16's latent error against fp32), the bytes of a frame message with
a float16 and with a uint8 latent (raw, zstd-coded and row-delta + zstd-coded), the bytes of a JPEG q90 of the same 320x240 frame, and the SSIM
of the server's reconstruction from each latent form against the reconstruction from the exact
float32 latent (what the codec costs).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from camera_client.capture import iter_frames
from models.eval.image_metrics import ssim
from models.nets.autoencoder import encoder_id, load_autoencoder
from pvad.codec import decode_latent, encode_latent
from pvad.config import SHIPPED_DP_AUTOENCODER, CaptureConfig


def _median_ms(fn, frames: list[np.ndarray], repeat: int = 1) -> float:
    times = []
    for _ in range(repeat):
        for f in frames:
            t0 = time.perf_counter()
            fn(f)
            times.append(1000.0 * (time.perf_counter() - t0))
    return statistics.median(times)


def bench_encoder(source: Path, *, checkpoint: Path | None = None, frames: int = 50) -> dict:
    path = checkpoint or SHIPPED_DP_AUTOENCODER
    ae, card = load_autoencoder(path if path.is_file() else None)
    enc, dec = ae.encoder.eval(), ae.decoder.eval()
    eid = encoder_id(enc)
    bgr = [f.bgr for f in iter_frames(CaptureConfig(source=str(source), target_fps=10, max_frames=frames))]
    tensors = [
        torch.from_numpy(cv2.cvtColor(f, cv2.COLOR_BGR2RGB)).permute(2, 0, 1)[None].float().div(255)
        .contiguous(memory_format=torch.channels_last)
        for f in bgr
    ]
    threads_before = torch.get_num_threads()
    ms = {}

    def enc_bf16(t: torch.Tensor) -> torch.Tensor:
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return enc(t).float()

    with torch.inference_mode():
        for threads in (1, 2):
            torch.set_num_threads(threads)
            for precision, fn in (("fp32", enc), ("bf16", enc_bf16)):
                fn(tensors[0])  # warm-up
                ms[threads, precision] = _median_ms(fn, tensors)
        torch.set_num_threads(threads_before)
        latents = [enc(t)[0].float().numpy() for t in tensors]
        latents_bf16 = [enc_bf16(t)[0].numpy() for t in tensors]

        def recon(z: np.ndarray) -> np.ndarray:
            return dec(torch.from_numpy(z)[None])[0].permute(1, 2, 0).clamp(0, 1).numpy()

        sizes = {"float16": [], "uint8": [], "float16_zstd": [], "uint8_zstd": [], "uint8_zstd_delta": []}
        ssims = {"float16": [], "uint8": [], "bf16": []}
        bf16_err = []
        for z, zb in zip(latents[: min(len(latents), 20)], latents_bf16):
            exact = recon(z)
            step = encode_latent(z, encoder_id=eid, dtype="uint8").scale
            bf16_err.append(float(np.abs(zb - z).max()) / step)
            ssims["bf16"].append(ssim(exact, recon(zb)))
            for dtype in ("float16", "uint8"):
                msg = encode_latent(z, encoder_id=eid, dtype=dtype)
                sizes[dtype].append(msg.ByteSize())
                sizes[f"{dtype}_zstd"].append(encode_latent(z, encoder_id=eid, dtype=dtype, compression="zstd").ByteSize())
                ssims[dtype].append(ssim(exact, recon(decode_latent(msg, expected_shape=z.shape))))
            sizes["uint8_zstd_delta"].append(
                encode_latent(z, encoder_id=eid, dtype="uint8", compression="zstd-delta").ByteSize())
    jpeg = [len(cv2.imencode(".jpg", f, [cv2.IMWRITE_JPEG_QUALITY, 90])[1]) for f in bgr]
    jpeg_mean = statistics.fmean(jpeg)
    return {
        "checkpoint": str(path) if path.is_file() else "untrained (seed 0)",
        "encoder_id": eid,
        "frames": len(bgr),
        "encoder_ms_1_thread": round(ms[1, "fp32"], 2),
        "encoder_ms_2_threads": round(ms[2, "fp32"], 2),
        "encoder_fps_2_threads": round(1000.0 / ms[2, "fp32"], 1),
        "encoder_ms_1_thread_bf16": round(ms[1, "bf16"], 2),
        "encoder_ms_2_threads_bf16": round(ms[2, "bf16"], 2),
        # bf16 autocast (anonymizer.precision: bf16) against fp32: the largest latent error in units of
        # the uint8 wire step (< 1: below what uint8 quantisation loses anyway), and SSIM of the decoded frames
        "bf16_latent_max_err_uint8_steps": round(max(bf16_err), 3),
        "ssim_bf16_vs_exact": round(statistics.fmean(ssims["bf16"]), 5),
        "latent_bytes_float16": round(statistics.fmean(sizes["float16"])),
        "latent_bytes_uint8": round(statistics.fmean(sizes["uint8"])),
        "latent_bytes_float16_zstd": round(statistics.fmean(sizes["float16_zstd"])),
        "latent_bytes_uint8_zstd": round(statistics.fmean(sizes["uint8_zstd"])),
        "latent_bytes_uint8_zstd_delta": round(statistics.fmean(sizes["uint8_zstd_delta"])),
        "jpeg_q90_bytes": round(jpeg_mean),
        "uint8_over_jpeg": round(statistics.fmean(sizes["uint8"]) / jpeg_mean, 3),
        "uint8_zstd_over_jpeg": round(statistics.fmean(sizes["uint8_zstd"]) / jpeg_mean, 3),
        "uint8_zstd_delta_over_jpeg": round(statistics.fmean(sizes["uint8_zstd_delta"]) / jpeg_mean, 3),
        "ssim_float16_vs_exact": round(statistics.fmean(ssims["float16"]), 5),
        "ssim_uint8_vs_exact": round(statistics.fmean(ssims["uint8"]), 5),
    }
