"""`pvad bench e2e`: capture-to-score latency and throughput with real camera processes over mTLS.

One `pvad server` process runs a `pvad bench server` profile; `cameras` `pvad camera` processes
capture the video in real time at `fps` (looping), encode it with the DP encoder (uint8 latents,
zstd-delta) and stream it on loopback; a subscriber follows every camera's live SCORE events. The
latency of a frame is the subscriber's wall clock when its score arrives minus the frame's capture
time (the camera's wall clock, carried in `Frame.capture_time` and echoed in the SCORE event): it
covers the anonymizer, the camera's buffer, TLS, the server's queue and networks, SAS and the event
log. An alarm is raised by the same frame's update, published just before its score.

Frames captured before every camera had connected, plus `settle_s` after that, are left out (a camera
starting up buffers frames it cannot send yet). All processes share this machine's cores, so the
cameras' encoders compete with the server: each camera runs torch on one thread.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import time
from pathlib import Path

import numpy as np

from pvad.bench.faults import (
    ServerProcess,
    camera_yaml,
    free_port,
    run_cameras,
    server_yaml,
    wait_connected,
)
from pvad.bench.server import profiles
from pvad.certs import make_dev_pki
from pvad.channel import secure_channel
from pvad.config import ClientTLS
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

SUBSCRIBER = "bench"


def write_configs(workdir: Path, *, cameras: list[str], port: int, source: Path, seconds: float, fps: float,
                  analysis: dict, encoder_precision: str) -> dict:
    pki = make_dev_pki(workdir / "certs", cameras=cameras, subscribers=[SUBSCRIBER])
    server_yaml(workdir, pki, port=port, accept=["dp-encoder"], analysis=analysis)
    for cam in cameras:
        camera_yaml(workdir, pki, cam, port=port, source=source, fps=fps, frames=int(seconds * fps),
                    anonymizer={"name": "dp-encoder", "dtype": "uint8", "compression": "zstd-delta",
                                "precision": encoder_precision},
                    buffer={"capacity": 256, "policy": "drop-oldest"})
    return pki


async def follow_scores(address: str, tls: ClientTLS, arrivals: list, stop: asyncio.Event) -> None:
    """Every SCORE event's (capture time, arrival time) in ns, until `stop`."""
    async with secure_channel(address, tls) as ch:
        call = pvad_pb2_grpc.AlarmsStub(ch).Subscribe(pvad_pb2.SubscribeRequest(include_scores=True))
        stopper = asyncio.ensure_future(stop.wait())
        try:
            it = call.__aiter__()
            while True:
                nxt = asyncio.ensure_future(it.__anext__())
                done, _ = await asyncio.wait({nxt, stopper}, return_when=asyncio.FIRST_COMPLETED)
                if stopper in done:
                    nxt.cancel()
                    call.cancel()
                    return
                try:
                    ev = nxt.result()
                except StopAsyncIteration:
                    return
                if ev.kind == pvad_pb2.SCORE and ev.capture_time.ToNanoseconds():
                    arrivals.append((ev.capture_time.ToNanoseconds(), time.time_ns()))
        finally:
            stopper.cancel()


def _percentiles(ms: list[float]) -> dict[str, float]:
    if not ms:
        return {"p50": float("nan"), "p95": float("nan"), "p99": float("nan"), "max": float("nan")}
    p = np.percentile(ms, [50, 95, 99])
    return {"p50": round(float(p[0]), 1), "p95": round(float(p[1]), 1), "p99": round(float(p[2]), 1),
            "max": round(max(ms), 1)}


async def bench_e2e(workdir: Path, *, source: Path, cameras: int = 4, fps: float = 10.0, seconds: float = 30.0,
                    profile: str = "cpu", precision: str = "fp32", encoder_precision: str = "fp32",
                    max_batch: int | None = None, settle_s: float = 3.0, analysis: dict | None = None,
                    in_flight: int = 4) -> dict:
    """`analysis` replaces the profile (tests use a tiny one)."""
    workdir.mkdir(parents=True, exist_ok=True)
    for f in workdir.glob("events.sqlite*"):
        f.unlink()
    names = [f"cam-{i + 1}" for i in range(cameras)]
    port = free_port()
    if analysis is not None:
        profile = "custom"
    prof = analysis or profiles(precision)[profile]
    analysis = {**prof, "batching": {"max_batch": max_batch or cameras, "max_wait_ms": 2.0,
                                     "max_in_flight_per_camera": in_flight}}
    pki = write_configs(workdir, cameras=names, port=port, source=source, seconds=seconds, fps=fps,
                        analysis=analysis, encoder_precision=encoder_precision)
    server = ServerProcess(workdir / "server.yaml", workdir / "server.log")
    (workdir / "server.log").write_text("")
    await asyncio.to_thread(server.start)
    sub = pki[f"subscriber/{SUBSCRIBER}"]
    arrivals: list[tuple[int, int]] = []
    stop = asyncio.Event()
    follower = asyncio.create_task(
        follow_scores(f"127.0.0.1:{port}", ClientTLS(ca=sub.ca, cert=sub.cert, key=sub.key), arrivals, stop))
    procs = await run_cameras(workdir, names, env={**os.environ, "OMP_NUM_THREADS": "1"})  # a camera has its own cores
    try:
        await wait_connected(workdir / "server.log", cameras, procs)
        counted_from = time.time_ns() + int(settle_s * 1e9)
        t0 = time.monotonic()
        while any(p.poll() is None for p in procs) and time.monotonic() - t0 < seconds * 3 + 60:
            await asyncio.to_thread(server.poll)
            await asyncio.sleep(0.5)
        await asyncio.sleep(0.5)  # the last scores
    finally:
        stop.set()
        await asyncio.gather(follower, return_exceptions=True)
        for p in procs:
            if p.poll() is None:
                p.kill()
        server.terminate()
    reports = [r for r in (_report(p) for p in procs) if r is not None]  # a camera that lost frames exits 1
    window = [(c, a) for c, a in arrivals if c >= counted_from]
    lat = [(a - c) / 1e6 for c, a in window]
    span = (max(a for _, a in window) - min(c for c, _ in window)) / 1e9 if window else float("nan")
    return {
        "cameras": cameras,
        "fps_per_camera": fps,
        "profile": profile,
        "precision": precision,
        "encoder_precision": encoder_precision,
        "max_batch": analysis["batching"]["max_batch"],
        "in_flight_per_camera": in_flight,
        "frames_counted": len(lat),
        "latency_ms": _percentiles(lat),
        "latency_ms_mean": round(statistics.fmean(lat), 1) if lat else float("nan"),
        "throughput_fps": round(len(window) / span, 2) if window else 0.0,
        "offered_fps": cameras * fps,
        "frames_captured": sum(r["frames_captured"] for r in reports),
        "frames_acked": sum(r["frames_acked"] for r in reports),
        "frames_dropped_by_buffer": sum(r["frames_dropped"] for r in reports),
        "frames_lost": sum(r["frames_lost"] for r in reports) if len(reports) == cameras else None,
        "camera_reports": len(reports),
        "server_crashes": server.crashes,
    }


def _report(proc) -> dict | None:
    """A camera process's final JSON line (``pvad camera --json``), or None when it printed none."""
    lines = proc.stdout.read().strip().splitlines() if proc.stdout else []
    try:
        return json.loads(lines[-1]) if lines else None
    except json.JSONDecodeError:
        return None
