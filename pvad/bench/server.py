"""`pvad bench server`: throughput of the whole analysis server, per profile and batch size.

For each profile and each max batch size, the real gRPC server (in process, mTLS on loopback)
receives latents of real frames from `cameras` concurrent streams; frames/s is what it sustains.
The networks are also timed alone (best batched time per frame for the decoder, the detector and the
two-stream classifier, plus flow); **pipeline efficiency** = that sum / the server's measured time
per frame (1.0 = orchestration, transport and Python cost nothing). **batch_speedup** = frames/s at
the largest batch over frames/s at batch 1.
"""

from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import torch

from analysis_server.pipeline import Analyzer
from analysis_server.service import start_server
from camera_client.anonymize import create_anonymizer
from camera_client.capture import iter_frames
from camera_client.client import make_frame
from pvad import samples
from pvad.certs import make_dev_pki
from pvad.channel import secure_channel
from pvad.codec import decode_latent
from pvad.config import (
    AnalysisConfig,
    CaptureConfig,
    ClientTLS,
    DecoderConfig,
    DpEncoderAnonymizer,
    EventLogConfig,
    ServerConfig,
    ServerTLS,
)
from pvad.v1 import pvad_pb2_grpc

def profiles(precision: str = "fp32") -> dict[str, dict]:
    """The paper profile (2x ResNet-50 + bag of objects, P §3) and a CPU profile (MobileNetV3)."""
    det = samples.offline_detector().model_dump(mode="json")
    return {
        "paper": {"device": "auto", "precision": precision, "detector": det,
                  "classifier": {"backbone": "resnet50", "streams": 2, "bag": True, "hidden": 4096, "pretrained": "never"}},
        "cpu": {"device": "auto", "precision": precision, "detector": det,
                "classifier": {"backbone": "mobilenet_v3_small", "streams": 2, "bag": True, "hidden": 1024,
                               "pretrained": "never"}},
    }


def _latents(source: Path, n: int) -> list:
    enc = create_anonymizer(DpEncoderAnonymizer())
    return [enc(f.bgr) for f in iter_frames(CaptureConfig(source=str(source), target_fps=10, max_frames=n))]


def isolated_ms(analyzer: Analyzer, latents: list, batch: int) -> dict[str, float]:
    """Best per-frame time of each network alone, batched (min over 3 repeats)."""
    dev = analyzer.device
    eid = latents[0].encoder_id
    z = torch.from_numpy(np.stack([decode_latent(l, expected_shape=(16, 30, 40)) for l in latents[:batch]])).to(dev)
    dec = analyzer.decoders.decoders[eid]

    def best(fn) -> float:
        times = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn()
            times.append(time.perf_counter() - t0)
        return 1000.0 * min(times) / len(z)

    with torch.inference_mode(), analyzer._autocast():
        decode = best(lambda: dec(z))
        rgb = dec(z).float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in rgb]
    detector = best(lambda: analyzer.detector.detect_batch(bgr)) if analyzer.detector is not None else 0.0
    flow_state = analyzer.new_camera_flow()
    flow = best(lambda: [flow_state.next(f) for f in rgb])
    x = analyzer._normalise(rgb.astype(np.float32) / 255.0)
    c = analyzer.cfg.classifier
    fl = x if c.streams == 2 else None
    bag = torch.zeros(len(z), 80, device=dev) if c.bag else None
    with torch.inference_mode(), analyzer._autocast():
        classifier = best(lambda: analyzer.classifier(x, fl, bag))
    return {"decode": round(decode, 2), "flow": round(flow, 2), "detector": round(detector, 2),
            "classifier": round(classifier, 2)}


async def _serve_and_stream(analyzer: Analyzer, cfg: ServerConfig, pki: dict, latents: list, cameras: int) -> float:
    srv = await start_server(cfg, analyzer=analyzer)
    address = f"127.0.0.1:{srv.port}"

    async def camera(i: int) -> int:
        cam = f"cam-{i + 1}"
        p = pki[f"camera/{cam}"]
        async with secure_channel(address, ClientTLS(ca=p.ca, cert=p.cert, key=p.key)) as ch:
            async def gen():
                for s, lat in enumerate(latents):
                    yield make_frame(cam, s + 1, 0, lat)

            return len([a async for a in pvad_pb2_grpc.IngestStub(ch).Stream(gen())])

    try:
        t0 = time.perf_counter()
        acked = sum(await asyncio.gather(*[camera(i) for i in range(cameras)]))
        wall = time.perf_counter() - t0
    finally:
        await srv.stop(0)
    return acked / wall


def bench_server(*, source: Path, cameras: int = 8, frames: int = 12, batches: tuple[int, ...] = (1, 4, 8),
                 precision: str = "fp32", only: list[str] | None = None, analysis: dict | None = None) -> dict:
    latents = _latents(source, frames)
    work = Path(tempfile.mkdtemp(prefix="pvad-bench-server-"))
    pki = make_dev_pki(work / "certs", cameras=[f"cam-{i + 1}" for i in range(cameras)], subscribers=["bench"])
    s = pki["server"]
    chosen = {"custom": analysis} if analysis else {k: v for k, v in profiles(precision).items() if not only or k in only}
    out: dict = {"cameras": cameras, "frames_per_camera": len(latents), "precision": precision, "profiles": {}}
    for name, prof in chosen.items():
        per_batch = {}
        isolated = None
        for b in batches:
            acfg = AnalysisConfig.model_validate({**prof, "batching": {"max_batch": b, "max_wait_ms": 5}})
            analyzer = Analyzer(acfg, DecoderConfig(untrained_seeds=[]))
            cfg = ServerConfig(listen="127.0.0.1:0", tls=ServerTLS(ca=s.ca, cert=s.cert, key=s.key),
                               event_log=EventLogConfig(path=work / f"{name}-{b}.sqlite"),
                               limits={"max_streams_per_camera": 2})
            fps = asyncio.run(_serve_and_stream(analyzer, cfg, pki, latents, cameras))
            per_batch[b] = {"fps": round(fps, 2), "stages_ms": analyzer.times.ms_per_frame()}
            if b == max(batches):
                isolated = isolated_ms(analyzer, latents, b)
        top = per_batch[max(batches)]
        ideal = sum(isolated.values())
        out["profiles"][name] = {
            "fps": top["fps"],
            "stages_ms": top["stages_ms"],
            "by_batch": per_batch,
            "isolated_ms": isolated,
            "pipeline_efficiency": round(ideal / (1000.0 / top["fps"]), 3),
            "batch_speedup": round(top["fps"] / per_batch[min(batches)]["fps"], 3),
        }
    first = next(iter(out["profiles"].values()))
    out["pipeline_efficiency"] = first["pipeline_efficiency"]
    out["batch_speedup"] = first["batch_speedup"]
    return out
