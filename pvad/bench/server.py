"""`pvad bench server`: throughput of the whole analysis server, per profile and batch size.

For each profile and each max batch size, the real gRPC server (in process, mTLS on loopback)
receives latents of real frames from `cameras` concurrent streams; frames/s is what it sustains.
The networks are also timed alone (best batched time per frame for the decoder, the detector and the
two-stream classifier, plus flow); **pipeline efficiency** = that sum / the server's measured time
per frame (1.0 = orchestration, transport and Python cost nothing). **batch_speedup** = frames/s at
the largest batch over frames/s at batch 1, beside **networks_batch_speedup**, the same ratio for the
isolated networks (what batching can give at most). Every analyzer warms up its batch shapes before the clock
starts (`batching.warmup`). With a reduced `--precision` (or `--int8` classifier trunks, calibrated on
the benchmark's own frames before the clock starts), each profile also reports the largest |σ - σ_fp32|
and the largest relative error of the head's input features on the same frames, and whether both are
within tolerance. `--compare-precisions` runs every variant this CPU allows and states `auto` against
the fastest one within tolerance.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from analysis_server.pipeline import Analyzer
from analysis_server.quantize import FEATURE_TOLERANCE
from analysis_server.service import start_server
from camera_client.anonymize import create_anonymizer
from camera_client.capture import iter_frames
from camera_client.client import make_frame
from models.nets.autoencoder import LATENT_SHAPE
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
from pvad.devices import synchronize
from pvad.v1 import pvad_pb2_grpc

NORMALITY_LEARNING = 20  # frames each benchmark camera learns from before its normality model scores
BENCH_NORMALITY = {"fusion": "max", "learning_frames": NORMALITY_LEARNING, "min_frames": 10}


def profiles(precision: str = "fp32", quantization: str = "none") -> dict[str, dict]:
    """The paper profile (2x ResNet-50 + bag of objects, P §3) and a CPU profile (MobileNetV3). The
    detector is YOLO-Fastest 1.1 at 320 px (xl for the paper profile, the plain one for the CPU
    profile) through the batched torch runtime when its files are there, else HOG."""

    def detector(variant: str) -> dict:
        det = samples.offline_detector(variant).model_dump(mode="json")
        if det["backend"] == "darknet":
            det["runtime"] = "torch"
        return det

    # Both σ sources run (fusion max), and each camera scores against a normality model after its first
    # NORMALITY_LEARNING frames, so the normality stage is timed as it runs for a scoring camera.
    normality = BENCH_NORMALITY
    quant = {"quantization": {"classifier": quantization, "calibration_frames": INT8_CALIBRATION}}
    return {
        "paper": {"device": "auto", "precision": precision, "detector": detector("yolo-fastest-1.1-xl"),
                  "classifier": {"backbone": "resnet50", "streams": 2, "bag": True, "hidden": 4096, "pretrained": "never"},
                  "normality": normality, **quant},
        "cpu": {"device": "auto", "precision": precision, "detector": detector("yolo-fastest-1.1"),
                "classifier": {"backbone": "mobilenet_v3_small", "streams": 2, "bag": True, "hidden": 1024,
                               "pretrained": "never"}, "normality": normality, **quant},
    }


INT8_CALIBRATION = 16  # frames of the benchmark's own video that calibrate int8 trunks before the clock starts


def calibrate(analyzer: Analyzer, latents: list) -> None:
    """Run int8 trunks' calibration on real frames (one camera) and wait for the int8 swap: the clock then
    times the int8 steady state, not the fp32 calibration period."""
    from analysis_server.validate import Payload

    if analyzer.int8 is None:
        return
    flow = analyzer.new_camera_flow()
    for i, z in enumerate(latents[: analyzer.int8.calibration_frames]):
        p = Payload("calibration", i, 0, latent=decode_latent(z, expected_shape=LATENT_SHAPE), encoder_id=z.encoder_id)
        analyzer.executor.submit(analyzer.analyze, [(flow, p)]).result()
    analyzer.executor.submit(analyzer.int8.wait_ready).result()


def _latents(source: Path, n: int) -> list:
    enc = create_anonymizer(DpEncoderAnonymizer())
    return [enc(f.bgr) for f in iter_frames(CaptureConfig(source=str(source), target_fps=10, max_frames=n))]


def isolated_ms(analyzer: Analyzer, latents: list, batch: int) -> dict[str, float]:
    """Best per-frame time of each network alone, batched (min over 3 repeats)."""
    dev = analyzer.device
    eid = latents[0].encoder_id
    z = torch.from_numpy(np.stack([decode_latent(l, expected_shape=LATENT_SHAPE) for l in latents[:batch]])).to(dev)
    dec = analyzer.decoders.decoders[eid]

    def best(fn) -> float:
        times = []
        for _ in range(3):
            synchronize(dev)
            t0 = time.perf_counter()
            fn()
            synchronize(dev)
            times.append(time.perf_counter() - t0)
        return 1000.0 * min(times) / len(z)

    with torch.inference_mode(), analyzer._autocast():
        decode = best(lambda: dec(z))
        rgb = dec(z).float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()
    bgr = [cv2.cvtColor(f, cv2.COLOR_RGB2BGR) for f in rgb]
    detector = best(lambda: analyzer.detector.detect_batch(bgr)) if analyzer.detector is not None else 0.0
    states = [analyzer.new_camera_flow() for _ in rgb]
    prev = [cv2.cvtColor(f, cv2.COLOR_RGB2GRAY) for f in np.roll(rgb, 1, axis=0)]  # each camera: a real predecessor

    def flows() -> None:  # the pipeline's "flow" stage: flow, and the background for a foreground classifier
        for st, g in zip(states, prev):
            st.prev_gray = g
        analyzer.flows(states, list(rgb))
        if analyzer.background_cfg is not None:
            analyzer.backgrounds(states, list(rgb))

    flow = best(flows)
    out = {"decode": round(decode, 2), "flow": round(flow, 2)}
    if analyzer.normality_cfg is not None:
        out["normality"] = round(best(_scoring_cameras(analyzer, states, rgb, eid)), 2)
    classifier = 0.0
    if analyzer.classifier is not None:
        x = analyzer._normalise(rgb, 1.0 / 255.0)
        fl = x if analyzer.classifier.streams == 2 else None
        bag = torch.zeros(len(z), 80, device=dev) if analyzer.classifier.use_bag else None
        with torch.inference_mode(), analyzer.classifier_autocast():
            classifier = best(lambda: analyzer.classifier(x, fl, bag))
    return {**out, "detector": round(detector, 2), "classifier": round(classifier, 2)}


def _scoring_cameras(analyzer: Analyzer, states: list, rgb: np.ndarray, eid: str):
    """The pipeline's "normality" stage for cameras that score: features, kNN, smoothing (a model fitted on
    these frames' own features, so every camera is in the scoring phase)."""
    from analysis_server.normality import NormalityModel
    from analysis_server.normality.objects import object_rows
    from analysis_server.validate import Payload

    payloads = [Payload("bench", i, 0, latent=np.zeros(1), encoder_id=eid) for i in range(len(rgb))]
    feats = np.stack([analyzer.motion(st.raw, st.normality.foreground.foreground(f)) for st, f in zip(states, rgb)])
    # with object features, the detector's boxes (timed in its own stage) and their flow
    dets = analyzer.object_detections(states, payloads, list(rgb))
    objects = [object_rows(d, st.raw) if d is not None else None for d, st in zip(dets, states)]
    reps = max(1, -(-analyzer.normality_cfg.min_frames // len(feats)))
    learn = np.concatenate([feats] * reps) * np.random.default_rng(0).uniform(0.9, 1.1, (reps * len(feats), 1, 1))
    model = NormalityModel.fit(learn.astype(np.float32), np.zeros(len(learn), np.int32), cfg=analyzer.normality_cfg,
                               source=payloads[0].source, frame_shape=rgb.shape[1:3],
                               objects=objects * reps, object_features=states[0].normality.objects_for(payloads[0].source))
    for st in states:
        st.normality.model, st.has_flow = model, True
    items = list(zip(rgb, payloads, dets))
    return lambda: analyzer._per_camera_list(lambda s, a: analyzer._normality(s, *a), states, items)


def precision_error(prof: dict, latents: list) -> dict[str, float]:
    """What the profile's precision (and int8 trunks) cost against plain fp32, same weights and frames (each
    after the first has real flow): the largest |σ - σ_fp32|, and the largest relative L2 error of the joined
    features the head sees (an untrained head gives nearly constant σ, so σ alone would hide a backbone that
    went wrong). int8 trunks calibrate on the first frames and are compared on the others only."""
    from analysis_server.validate import Payload

    sig, feats = {}, {}
    plain = {**prof, "precision": "fp32", "quantization": {"classifier": "none"}}
    start = 0
    for name, p in (("fp32", plain), ("reduced", prof)):
        cfg = AnalysisConfig.model_validate({**p, "batching": {"max_batch": 8, "warmup": False}})
        a = Analyzer(cfg, DecoderConfig(untrained_seeds=[]))
        seen: list[torch.Tensor] = []
        hook = a.classifier.head.register_forward_hook(lambda m, inp, out, seen=seen: seen.append(inp[0].detach().float()))
        flow = a.new_camera_flow()
        payloads = [Payload("c", i, 0, latent=decode_latent(z, expected_shape=LATENT_SHAPE), encoder_id=z.encoder_id)
                    for i, z in enumerate(latents)]
        out = []
        for i, pl in enumerate(payloads):
            if a.int8 is not None and a.int8.state == "calibrating" and i >= min(a.int8.calibration_frames, len(payloads) // 2):
                a.int8.wait_ready()  # calibrated on at most the first half
                start = i  # the first frame the int8 trunks score
            out.append(a.analyze([(flow, pl)])[0])
        hook.remove()
        a.close()
        sig[name], feats[name] = np.array(out), torch.cat(seen)
    rel = (feats["reduced"][start:] - feats["fp32"][start:]).norm(dim=1) / feats["fp32"][start:].norm(dim=1).clamp_min(1e-12)
    return {"sigma_max_abs_err": float(np.abs(sig["reduced"][start:] - sig["fp32"][start:]).max()),
            "features_max_rel_err": float(rel.max()), "frames_compared": len(latents) - start}


async def _serve_and_stream(analyzer: Analyzer, cfg: ServerConfig, pki: dict, latents: list, cameras: int) -> tuple[float, float]:
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
    return acked / wall, acked / max(srv.batcher.batches, 1)


TOLERANCE = 0.02  # the largest |σ - σ_fp32| we accept from a reduced precision
# ... and FEATURE_TOLERANCE, the largest relative error of the head's input features (the int8 guard's too): an
# untrained head gives a nearly constant σ, which would pass a backbone whose int8 conversion went wrong


def within_tolerance(err: dict[str, float]) -> bool:
    return err["sigma_max_abs_err"] <= TOLERANCE and err["features_max_rel_err"] <= FEATURE_TOLERANCE


def bench_server(*, source: Path, cameras: int = 8, frames: int = 24, batches: tuple[int, ...] = (1, 4, 8),
                 precision: str = "fp32", quantization: str = "none", only: list[str] | None = None,
                 analysis: dict | None = None) -> dict:
    with ThreadPoolExecutor(1) as once:  # the camera's encoder on a thread of its own (see Analyzer.executor)
        latents = once.submit(_latents, source, frames).result()
    work = Path(tempfile.mkdtemp(prefix="pvad-bench-server-"))
    try:
        pki = make_dev_pki(work / "certs", cameras=[f"cam-{i + 1}" for i in range(cameras)], subscribers=["bench"])
        s = pki["server"]
        if analysis and "normality" not in analysis:  # a custom profile is timed like the built-in ones
            analysis = {**analysis, "normality": BENCH_NORMALITY}
        if analysis and "quantization" not in analysis:
            analysis = {**analysis, "quantization": {"classifier": quantization, "calibration_frames": INT8_CALIBRATION}}
        chosen = ({"custom": analysis} if analysis else
                  {k: v for k, v in profiles(precision, quantization).items() if not only or k in only})
        from pvad.hardware import cpu_flags, reported_flags

        out: dict = {"cameras": cameras, "frames_per_camera": len(latents), "precision": precision,
                     "quantization": quantization, "cpu_flags": reported_flags(cpu_flags()), "profiles": {}}
        for name, prof in chosen.items():
            per_batch = {}
            isolated = isolated_b1 = None
            for b in batches:
                acfg = AnalysisConfig.model_validate({**prof, "batching": {"max_batch": b, "max_wait_ms": 5}})
                analyzer = Analyzer(acfg, DecoderConfig(untrained_seeds=[]))  # warms up every batch size <= b
                calibrate(analyzer, latents)
                cfg = ServerConfig(listen="127.0.0.1:0", tls=ServerTLS(ca=s.ca, cert=s.cert, key=s.key), analysis=acfg,
                                   event_log=EventLogConfig(path=work / f"{name}-{b}.sqlite"),
                                   limits={"max_streams_per_camera": 2})
                fps, mean_batch = asyncio.run(_serve_and_stream(analyzer, cfg, pki, latents, cameras))
                per_batch[b] = {"fps": round(fps, 2), "mean_batch": round(mean_batch, 2),
                                "stages_ms": analyzer.times.ms_per_frame()}
                if b == max(batches):
                    isolated = analyzer.executor.submit(isolated_ms, analyzer, latents, b).result()  # its networks' thread
                if b == min(batches) and len(batches) > 1:
                    isolated_b1 = analyzer.executor.submit(isolated_ms, analyzer, latents, b).result()
                analyzer.close()  # its thread and OpenMP team go: the next analyzer runs alone
            top = per_batch[max(batches)]
            resolved = analyzer.precision
            int8_state = analyzer.int8.state if analyzer.int8 is not None else "none"
            ideal = sum(isolated.values())
            out["profiles"][name] = {
                "fps": top["fps"],
                "stages_ms": top["stages_ms"],
                "by_batch": per_batch,
                "isolated_ms": isolated,
                "pipeline_efficiency": round(ideal / (1000.0 / top["fps"]), 3),
                "batch_speedup": round(top["fps"] / per_batch[min(batches)]["fps"], 3),
                # what batching can give at most: the isolated networks' time per frame, smallest over largest batch
                "networks_batch_speedup": (round(sum(isolated_b1.values()) / ideal, 3) if len(batches) > 1 else None),
                "precision": resolved,
                "classifier_trunks": int8_state,  # none, int8, or fp32 (int8 rejected by its guard)
            }
            if resolved != "fp32" or int8_state != "none":
                err = precision_error({**prof, "precision": resolved}, latents)
                out["profiles"][name]["vs_fp32"] = {k: round(v, 4) for k, v in err.items()}
                out["profiles"][name]["within_tolerance"] = within_tolerance(err)
        out["tolerance"] = {"sigma": TOLERANCE, "features_rel": FEATURE_TOLERANCE}
        first = next(iter(out["profiles"].values()))
        out["pipeline_efficiency"] = first["pipeline_efficiency"]
        out["batch_speedup"] = first["batch_speedup"]
        return out
    finally:
        shutil.rmtree(work, ignore_errors=True)  # certificates and event logs of this run only


def compare_precisions(*, source: Path, cameras: int = 8, frames: int = 24, batch: int = 8,
                       only: list[str] | None = None, analysis: dict | None = None) -> dict:
    """Each precision/runtime this CPU allows (fp32, bf16 where it is not emulated, either with int8
    classifier trunks), at one batch size: frames/s and the error against fp32; then `auto` (precision and
    quantization both auto, its int8 guard included) run the same way, against the fastest variant within
    tolerance."""
    from pvad.errors import ConfigError
    from pvad.hardware import resolve_int8, resolve_precision

    precisions = ["fp32"]
    try:
        resolve_precision("bf16", "cpu")
        precisions.append("bf16")
    except ConfigError:
        pass
    auto, why = resolve_precision("auto", "cpu")
    auto_int8, int8_why = resolve_int8("auto", "cpu")

    def run(precision: str, quantization: str) -> dict:
        return bench_server(source=source, cameras=cameras, frames=frames, batches=(batch,), precision=precision,
                            quantization=quantization, only=only,
                            analysis={**analysis, "precision": precision} if analysis else None)

    runs = {p + ("+int8" if q == "int8" else ""): run(p, q) for p in precisions for q in ("none", "int8")}
    runs["auto"] = run("auto", "auto")
    out: dict = {"batch": batch, "auto": {"precision": auto, "why": why, "int8": auto_int8, "int8_why": int8_why},
                 "cpu_flags": runs["fp32"]["cpu_flags"],
                 "tolerance": {"sigma": TOLERANCE, "features_rel": FEATURE_TOLERANCE}, "profiles": {}}
    for name in runs["fp32"]["profiles"]:
        rows = {}
        for v, r in runs.items():
            prof = r["profiles"][name]
            rows[v] = {"fps": prof["fps"], "within_tolerance": prof.get("within_tolerance", True),
                       "precision": prof["precision"], "classifier_trunks": prof["classifier_trunks"],
                       **({"vs_fp32": prof["vs_fp32"]} if "vs_fp32" in prof else {})}
        ok = {v: r["fps"] for v, r in rows.items() if r["within_tolerance"] and v != "auto"}
        fastest = max(ok, key=ok.get)
        out["profiles"][name] = {"variants": rows, "fastest_within_tolerance": fastest,
                                 "auto_vs_fastest": round(rows["auto"]["fps"] / ok[fastest], 3)}
    return out

