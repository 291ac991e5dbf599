"""`pvad bench gpu`: the paper profile on a CUDA GPU, in one run of under five minutes.

What it measures, each at every precision asked for (fp16 and bf16 by default):

1. **networks alone**: the decoder, the detector (YOLO-Fastest xl, batched torch runtime, when its
   files are there), the two ResNet-50 streams + head, and flow, per frame at each batch size
   (1 … 64), with the device synchronised around every timing;
2. **the server**: the real gRPC server in process (mTLS on loopback) fed by 8 … 64 concurrent camera
   streams of real latents, max batch = the number of cameras: frames/s and pipeline efficiency
   (the networks' isolated time ÷ the server's time per frame);
3. **latency**: `pvad bench e2e` with real camera processes (32 cameras × 10 frames/s by default),
   capture-to-score p50/p95/p99;
4. **training steps**: the classifier's (2×ResNet-50 + bag, the papers' recipe: hard-mined batches,
   α candidates scored without gradients, then one Adam step on the hardest) and the DP autoencoder's
   (Opacus DP-Adam, per-sample gradients), median seconds per step.

Every part checks a deadline (`budget_s`) before it starts and is listed under ``skipped`` when the
budget is spent, so the whole command fits a lent machine's time. It refuses to run without CUDA
unless ``device="cpu"`` is asked for (the test suite does that with a tiny profile, to keep the code
that only a GPU machine would otherwise run exercised).
"""

from __future__ import annotations

import asyncio
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from pvad.bench.server import _latents, bench_server, isolated_ms, profiles
from pvad.devices import synchronize

BATCHES = (1, 2, 4, 8, 16, 32, 64)
CAMERAS = (8, 16, 32, 64)


class NoCuda(RuntimeError):
    pass


def _device_info(device: torch.device) -> dict[str, Any]:
    info: dict[str, Any] = {"device": str(device), "torch": torch.__version__}
    if device.type == "cuda":
        p = torch.cuda.get_device_properties(device)
        info.update(gpu=p.name, gpu_memory_gb=round(p.total_memory / 2**30, 1), cuda=torch.version.cuda,
                    bf16_supported=torch.cuda.is_bf16_supported())
    return info


def _median_step_s(step: Callable[[], None], steps: int, device: torch.device) -> float:
    step()  # warm-up: kernel selection, allocator
    synchronize(device)
    times = []
    for _ in range(steps):
        t0 = time.perf_counter()
        step()
        synchronize(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def classifier_step_s(prof: dict, device: torch.device, *, precision: str, batch: int, alpha: int, steps: int) -> float:
    """One step of the papers' recipe on random inputs: α·batch candidates scored without gradients, the
    `batch` hardest trained (weighted BCE, Adam), under autocast at `precision` (fp32: none)."""
    from models.nets.two_stream import TwoStreamClassifier, classifier_arch
    from models.train.classifier import mine_hard, weighted_bce
    from pvad.config import ClassifierConfig

    arch = classifier_arch(ClassifierConfig.model_validate(prof["classifier"]))
    model = TwoStreamClassifier(**arch).to(device).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    n = alpha * batch
    frame = torch.randn(n, 3, 240, 320, device=device)
    flow = torch.randn(n, 3, 240, 320, device=device) if model.streams == 2 else None
    bag = torch.rand(n, model.bag_dim, device=device) * 3 if model.use_bag else None
    target = (torch.rand(n, device=device) < 0.3).float()
    weight = torch.ones(n, device=device)
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    scaler = torch.amp.GradScaler(device.type, enabled=precision == "fp16")

    def autocast():
        return torch.autocast(device.type, dtype=dtype, enabled=dtype is not None)

    def pick(x, idx):
        return None if x is None else x[idx]

    def step() -> None:
        with torch.no_grad(), autocast():
            losses = weighted_bce(model(frame, flow, bag).float(), target, weight)
        idx = mine_hard(losses, batch)
        with autocast():
            loss = weighted_bce(model(frame[idx], pick(flow, idx), pick(bag, idx)).float(), target[idx], weight[idx]).mean()
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()

    return _median_step_s(step, steps, device)


def dp_autoencoder_step_s(device: torch.device, *, batch: int, steps: int) -> float:
    """One DP-Adam step of the autoencoder (Opacus, per-sample gradients, fixed-size batches), fp32 as it trains."""
    import warnings

    from opacus import PrivacyEngine
    from torch.utils.data import DataLoader

    from models.nets.autoencoder import Autoencoder
    from models.train.autoencoder import create_optimizer, dp_compatible, train_step

    with warnings.catch_warnings():  # a benchmark: no secure RNG (Opacus says so), and its hooks on a first
        warnings.filterwarnings("ignore", message="Secure RNG turned off")  # layer whose input needs no gradient
        warnings.filterwarnings("ignore", message="Full backward hook is firing")
        model = dp_compatible(Autoencoder()).to(device)
        optimizer = create_optimizer("dp-adam", model, 1e-3)
        loader = DataLoader(torch.rand(batch * 2, 3, 240, 320), batch_size=batch)
        model, optimizer, loader = PrivacyEngine(accountant="rdp").make_private(
            module=model, optimizer=optimizer, data_loader=loader, noise_multiplier=1.0, max_grad_norm=1.0,
            poisson_sampling=False)
        x = next(iter(loader)).to(device)
        return _median_step_s(lambda: train_step(model, optimizer, x), steps, device)


def bench_gpu(*, source: Path, device: str = "cuda", precisions: tuple[str, ...] = ("fp16", "bf16"),
              batches: tuple[int, ...] = BATCHES, cameras: tuple[int, ...] = CAMERAS, frames: int = 24,
              e2e_cameras: int = 32, e2e_fps: float = 10.0, e2e_seconds: float = 20.0,
              train_batch: int = 32, train_alpha: int = 3, dp_batch: int = 16, train_steps: int = 5,
              budget_s: float = 290.0, analysis: dict | None = None, workdir: Path | None = None) -> dict:
    """`analysis` replaces the paper profile (the tests' tiny one); `e2e_cameras=0` skips the latency part."""
    from analysis_server.pipeline import Analyzer
    from pvad.config import AnalysisConfig, DecoderConfig

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise NoCuda("pvad bench gpu needs a CUDA device and torch.cuda.is_available() is False here "
                     "(`pvad bench server` measures a CPU; `--device cpu` runs this command's code on one)")
    t_start = time.monotonic()
    deadline = t_start + budget_s
    prof = {**(analysis or profiles()["paper"]), "device": dev.type}
    out: dict[str, Any] = {**_device_info(dev), "profile": "custom" if analysis else "paper",
                           "precisions": list(precisions), "networks": {}, "server": {}, "training": {},
                           "skipped": []}

    def due(what: str) -> bool:
        if time.monotonic() < deadline:
            return True
        out["skipped"].append(what)
        return False

    latents = _latents(source, max(frames, max(batches)))
    if len(latents) < max(batches):
        raise ValueError(f"{source} gives {len(latents)} frames at 10 fps, fewer than the largest batch {max(batches)}")

    # 1. each network alone, per batch size
    for p in precisions:
        if not due(f"networks {p}"):
            continue
        acfg = AnalysisConfig.model_validate({**prof, "precision": p, "batching": {"max_batch": max(batches)}})
        analyzer = Analyzer(acfg, DecoderConfig(untrained_seeds=[]))
        rows = {}
        for b in batches:
            ms = analyzer.executor.submit(isolated_ms, analyzer, latents, b).result()
            rows[b] = {"ms_per_frame": ms, "networks_fps": round(1000.0 / max(sum(ms.values()), 1e-9), 1)}
        analyzer.close()
        out["networks"][p] = rows

    # 2. the whole server, 8 … 64 cameras, max batch = cameras
    for p in precisions:
        out["server"][p] = {}
        for c in cameras:
            if not due(f"server {p} {c} cameras"):
                continue
            r = bench_server(source=source, cameras=c, frames=frames, batches=(min(c, max(batches)),),
                             analysis={**prof, "precision": p})
            top = r["profiles"]["custom"]
            out["server"][p][c] = {"fps": top["fps"], "pipeline_efficiency": top["pipeline_efficiency"],
                                   "stages_ms": top["stages_ms"]}

    # 3. capture-to-score latency with camera processes
    if e2e_cameras and due("e2e"):
        from pvad.bench.e2e import bench_e2e

        work = workdir or Path(tempfile.mkdtemp(prefix="pvad-bench-gpu-"))
        r = asyncio.run(bench_e2e(work / "e2e", source=source, cameras=e2e_cameras, fps=e2e_fps, seconds=e2e_seconds,
                                  analysis={**prof, "precision": precisions[0]}))
        keep = ("cameras", "fps_per_camera", "max_batch", "in_flight_per_camera", "frames_counted", "latency_ms",
                "throughput_fps", "offered_fps", "frames_lost", "server_crashes")
        out["e2e"] = {"precision": precisions[0], **{k: r[k] for k in keep}}

    # 4. training steps
    for p in ("fp32", *precisions):
        if due(f"classifier step {p}"):
            out["training"][f"classifier_step_s_{p}"] = round(classifier_step_s(
                prof, dev, precision=p, batch=train_batch, alpha=train_alpha, steps=train_steps), 4)
    if due("dp autoencoder step"):
        out["training"]["dp_autoencoder_step_s"] = round(dp_autoencoder_step_s(dev, batch=dp_batch, steps=train_steps), 4)
    out["training"].update(classifier_batch=train_batch, classifier_alpha=train_alpha, dp_batch=dp_batch)
    out["seconds"] = round(time.monotonic() - t_start, 1)
    return out
