"""`pvad bench faults`: a real server and real cameras as separate processes on loopback, under faults.

Timeline (fractions of the cameras' stream time T): at 0.2 T the server is killed (SIGKILL) and
restarted 1 s later; at 0.45 T the cameras' TCP connections are cut by a proxy; at 0.5 T the
subscriber disconnects and resumes with its last event id; at 0.55 T hostile messages flood in
(hypothesis-generated, see `pvad.bench.hostile`) while the cameras keep streaming; at 0.75 T the
server is restarted gracefully (SIGTERM: drain, then reconnect). Then everything is counted.

The cameras send blurred JPEGs and the server runs a tiny untrained profile: this benchmark is
about delivery, not detection. The SAS threshold τ is set to the median confidence of that model on
the clip (see `calibrate_scoring`), so alarms rise and fall as people move.
"""

from __future__ import annotations

import asyncio
import collections
import json
import logging
import random
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import grpc
import yaml

from pvad.bench.hostile import draw_many, hostile_frames, random_bytes
from pvad.bench.proxy import CuttableProxy
from pvad.certs import make_dev_pki
from pvad.channel import secure_channel
from pvad.cluster.processes import free_port
from pvad.config import ClientTLS
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

log = logging.getLogger(__name__)

SUBSCRIBER = "bench"
BLUR_KERNEL = 31
# The server's profile: tiny and untrained (this benchmark measures delivery, not detection).
ANALYSIS = {
    "device": "cpu", "threads": 1,
    "classifier": {"backbone": "tiny", "hidden": 64, "bag": False, "pretrained": "never"},
    "detector": {"backend": "none"}, "batching": {"max_batch": 8, "max_wait_ms": 5},
    "normality": {"enabled": False},  # alarms from the classifier from the first frame on
}
FLOOD_CAMERA = "flood"


def rss_mb(pid: int) -> float:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return 0.0


@dataclass
class ServerProcess:
    """`pvad server` in its own process; counts exits it did not cause as crashes."""

    config: Path
    log_path: Path
    proc: subprocess.Popen | None = None
    crashes: int = 0
    peak_rss_mb: float = 0.0
    rss_samples: list[tuple[float, float]] = field(default_factory=list)
    _expected_exit: bool = False

    def start(self, timeout: float = 120.0) -> None:
        self._expected_exit = False
        logf = open(self.log_path, "a")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "pvad.cli", "server", "--config", str(self.config)],
            stdout=subprocess.PIPE, stderr=logf, text=True,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if line.startswith("listening on port"):
                return
            if not line and self.proc.poll() is not None:
                raise RuntimeError(f"server exited during start-up with code {self.proc.returncode}; see {self.log_path}")
        raise RuntimeError(f"server did not start within {timeout} s; see {self.log_path}")

    def kill(self) -> None:
        self._expected_exit = True
        self.proc.kill()
        self.proc.wait()

    def terminate(self, timeout: float = 30.0) -> int:
        self._expected_exit = True
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def poll(self) -> None:
        """Sample memory; restart (and count a crash) if it died on its own."""
        if self.proc is None:
            return
        if self.proc.poll() is not None and not self._expected_exit:
            self.crashes += 1
            log.error("server crashed (exit %s); restarting", self.proc.returncode)
            self.start()
            return
        mb = rss_mb(self.proc.pid)
        if mb:
            self.peak_rss_mb = max(self.peak_rss_mb, mb)
            self.rss_samples.append((time.monotonic(), mb))


def server_yaml(workdir: Path, pki: dict, *, port: int, **fields) -> None:
    """`workdir/server.yaml`: mTLS on 127.0.0.1:`port` with the PKI's server certificate, the event
    log in `workdir`, and `fields` (analysis, accept, ...)."""
    s = pki["server"]
    server = {
        "kind": "server", "listen": f"127.0.0.1:{port}",
        "tls": {"ca": str(s.ca), "cert": str(s.cert), "key": str(s.key)},
        "event_log": {"path": str(workdir / "events.sqlite")},
        **fields,
    }
    (workdir / "server.yaml").write_text(yaml.safe_dump(server))


def camera_yaml(workdir: Path, pki: dict, cam: str, *, port: int, source: Path, fps: float, frames: int,
                **fields) -> None:
    """`workdir/camera-<cam>.yaml`: a camera replaying `source` in real time (looping) to 127.0.0.1:`port`."""
    c = pki[f"camera/{cam}"]
    cfg = {
        "kind": "camera", "camera_id": cam, "server": f"127.0.0.1:{port}",
        "tls": {"ca": str(c.ca), "cert": str(c.cert), "key": str(c.key)},
        "capture": {"source": str(source), "target_fps": fps, "max_frames": frames, "realtime": True, "loop": True},
        **fields,
    }
    (workdir / f"camera-{cam}.yaml").write_text(yaml.safe_dump(cfg))


def write_configs(workdir: Path, *, cameras: list[str], port: int, proxy_port: int, source: Path,
                  frames: int, fps: float, tau: float, nu: float = 2.0) -> dict:
    pki = make_dev_pki(workdir / "certs", cameras=[*cameras, FLOOD_CAMERA], subscribers=[SUBSCRIBER])
    server_yaml(workdir, pki, port=port, accept=["dp-encoder", "blur"],
                decoders={"checkpoints": [], "untrained_seeds": [0]}, analysis=ANALYSIS,
                scoring={"tau": tau, "nu": nu}, limits={"max_streams_per_camera": 4}, drain_s=3.0)
    for cam in cameras:
        camera_yaml(workdir, pki, cam, port=proxy_port, source=source, fps=fps, frames=frames,
                    anonymizer={"name": "blur", "kernel": BLUR_KERNEL}, max_in_flight=8,
                    buffer={"capacity": 1024, "policy": "drop-oldest"},
                    reconnect={"initial_backoff_s": 0.1, "max_backoff_s": 1.0})
    return pki


def calibrate_scoring(source: Path, n: int = 150) -> tuple[float, float]:
    """τ = median confidence of the bench's tiny untrained model on the cameras' blurred frames, and
    ν such that about three frames in a row on one side of τ move the score across 0.5, so alarms
    rise and fall (with motion in the clip: the untrained model's output drifts with its input)."""
    from analysis_server.pipeline import Analyzer
    from analysis_server.validate import Payload
    from camera_client.anonymize.image_filters import blur
    from camera_client.capture import iter_frames
    from pvad.config import AnalysisConfig, CaptureConfig, DecoderConfig

    analyzer = Analyzer(AnalysisConfig.model_validate(ANALYSIS), DecoderConfig(checkpoints=[], untrained_seeds=[]))
    flow = analyzer.new_camera_flow()
    sigmas = []
    for f in iter_frames(CaptureConfig(source=str(source), target_fps=10, max_frames=n)):
        rgb = cv2.cvtColor(blur(f.bgr, BLUR_KERNEL), cv2.COLOR_BGR2RGB)
        sigmas += analyzer.analyze([(flow, Payload("c", f.index, 0, image=rgb))])
    tau = float(statistics.median(sigmas))
    spread = statistics.median(abs(s - tau) for s in sigmas) or 1e-6
    nu = 7.0 / (3.0 * spread / min(tau, 1.0 - tau))
    return tau, float(nu)


async def follow(address: str, tls: ClientTLS, received: dict, stop: asyncio.Event, restart: asyncio.Event) -> int:
    """A subscriber that reconnects (and, on `restart`, deliberately disconnects) resuming by event id."""
    from pvad.subscriber import follow_alarms

    last, reconnects = 0, 0
    while not stop.is_set():
        try:
            async with secure_channel(address, tls) as ch:
                async for ev in follow_alarms(ch, after_event_id=last):
                    received[ev.event_id] = ev
                    last = ev.event_id
                    if restart.is_set():
                        restart.clear()
                        break
                    if stop.is_set():
                        return reconnects
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.2)
        reconnects += 1
    return reconnects


async def flood(address: str, tls: ClientTLS, encoder_id: str, good_jpeg: bytes, per_class: int, seed: int) -> dict:
    """Send every hostile class on its own stream, plus random bytes and an oversized message on
    calls of their own. Returns sent/rejected counts per class."""
    rng = random.Random(seed)
    results: dict[str, list[int]] = {}
    classes = hostile_frames(FLOOD_CAMERA, encoder_id, good_jpeg)
    async with secure_channel(address, tls) as ch:
        stub = pvad_pb2_grpc.IngestStub(ch)
        for name, strategy in classes.items():
            frames = draw_many(strategy, per_class)
            for i, f in enumerate(frames):
                f.seq = i + 1

            async def gen(frames=frames):
                for f in frames:
                    yield f

            for attempt in range(20):
                try:
                    acks = [a async for a in stub.Stream(gen(), timeout=30)]
                    break
                except grpc.aio.AioRpcError as err:
                    if err.code() != grpc.StatusCode.UNAVAILABLE:
                        raise
                    await asyncio.sleep(0.5)
            results[name] = [len(frames), sum(a.outcome == pvad_pb2.REJECTED for a in acks)]
        raw = ch.stream_stream("/pvad.v1.Ingest/Stream", request_serializer=lambda b: b,
                               response_deserializer=pvad_pb2.FrameAck.FromString)
        for name, payloads in (("random_bytes", [random_bytes(rng, rng.randint(1, 512)) for _ in range(per_class)]),
                               ("oversized", [b"\x0a" + b"\xff" * (5 * 1024 * 1024)])):
            sent = rejected = 0
            for p in payloads:
                sent += 1

                async def one(p=p):
                    yield p

                try:
                    acks = [a async for a in raw(one(), timeout=30)]
                    rejected += int(all(a.outcome == pvad_pb2.REJECTED for a in acks))
                except grpc.aio.AioRpcError as err:
                    rejected += int(err.code() != grpc.StatusCode.OK)
            results[name] = [sent, rejected]
    return results


def read_events(path: Path) -> list[int]:
    with sqlite3.connect(str(path)) as db:
        return [r[0] for r in db.execute("SELECT id FROM events ORDER BY id")]


async def wait_connected(server_log: Path, n: int, procs: list[subprocess.Popen], timeout: float = 180.0) -> None:
    """Until `n` cameras have opened a stream (their start-up loads torch: seconds)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server_log.read_text().count("connected from") >= n:
            return
        if all(p.poll() is not None for p in procs):
            raise RuntimeError("every camera exited before connecting; see the camera-*.log files")
        await asyncio.sleep(0.2)
    raise RuntimeError(f"cameras did not connect within {timeout} s")


async def run_cameras(workdir: Path, cameras: list[str], env: dict | None = None) -> list[subprocess.Popen]:
    return [
        subprocess.Popen([sys.executable, "-m", "pvad.cli", "-q", "camera", "--config", str(workdir / f"camera-{c}.yaml")],
                         stdout=subprocess.PIPE, stderr=open(workdir / f"camera-{c}.log", "w"), text=True, env=env)
        for c in cameras
    ]


async def follow_scores(address: str, tls: ClientTLS, scored: list, stop: asyncio.Event) -> None:
    """A second subscriber, with live scores: every (camera, seq) whose score it sees. Scores published
    while it is disconnected are missed, so a frame scored twice can go unseen, never seen wrongly."""
    from pvad.subscriber import follow_alarms

    while not stop.is_set():
        try:
            async with secure_channel(address, tls) as ch:
                async for ev in follow_alarms(ch, include_scores=True):
                    if ev.kind == pvad_pb2.SCORE:
                        scored.append((ev.camera_id, ev.seq))
        except grpc.aio.AioRpcError:
            await asyncio.sleep(0.2)


async def bench_faults(workdir: Path, *, source: Path, cameras: int = 2, frames: int = 150, fps: float = 10.0,
                       per_class: int = 20, seed: int = 0) -> dict:
    workdir.mkdir(parents=True, exist_ok=True)
    for f in workdir.glob("events.sqlite*"):
        f.unlink()
    names = [f"cam-{i + 1}" for i in range(cameras)]
    tau, nu = await asyncio.to_thread(calibrate_scoring, source, frames)
    port = free_port()
    proxy = CuttableProxy("127.0.0.1", port)
    proxy_port = await proxy.start()
    pki = write_configs(workdir, cameras=names, port=port, proxy_port=proxy_port, source=source,
                        frames=frames, fps=fps, tau=tau, nu=nu)
    server = ServerProcess(workdir / "server.yaml", workdir / "server.log")
    await asyncio.to_thread(server.start)
    address = f"127.0.0.1:{port}"
    sub = pki[f"subscriber/{SUBSCRIBER}"]
    sub_tls = ClientTLS(ca=sub.ca, cert=sub.cert, key=sub.key)
    fl = pki[f"camera/{FLOOD_CAMERA}"]
    flood_tls = ClientTLS(ca=fl.ca, cert=fl.cert, key=fl.key)
    received: dict = {}
    stop_sub, restart_sub = asyncio.Event(), asyncio.Event()
    subscriber = asyncio.create_task(follow(address, sub_tls, received, stop_sub, restart_sub))
    scored: list = []
    score_follower = asyncio.create_task(follow_scores(address, sub_tls, scored, stop_sub))

    from camera_client.anonymize import create_anonymizer
    from pvad.config import DpEncoderAnonymizer

    encoder_id = create_anonymizer(DpEncoderAnonymizer(checkpoint=None, seed=0)).encoder_id
    cap = cv2.VideoCapture(str(source))
    ok, img = cap.read()
    cap.release()
    good_jpeg = cv2.imencode(".jpg", cv2.resize(img, (320, 240)))[1].tobytes()

    t_stream = frames / fps
    procs = await run_cameras(workdir, names)
    await wait_connected(workdir / "server.log", cameras, procs)
    t0 = time.monotonic()
    flood_task = None
    steps = [
        (0.20, "kill -9 server", lambda: server.kill()),
        (0.20 + 1.0 / t_stream, "restart server", lambda: server.start()),
        (0.45, "cut connections", lambda: proxy.cut()),
        (0.50, "restart subscriber", lambda: restart_sub.set()),
        (0.55, "flood hostile messages", None),
        (0.75, "graceful restart (SIGTERM)", lambda: (server.terminate(), server.start())),
    ]
    faults = []
    while any(p.poll() is None for p in procs):
        elapsed = (time.monotonic() - t0) / t_stream
        while steps and elapsed >= steps[0][0]:
            _, what, action = steps.pop(0)
            log.info("fault: %s", what)
            faults.append(what)
            if action is None:
                flood_task = asyncio.create_task(flood(address, flood_tls, encoder_id, good_jpeg, per_class, seed))
            elif what == "cut connections":
                action()
            else:
                await asyncio.to_thread(action)
        await asyncio.to_thread(server.poll)
        await asyncio.sleep(0.2)
        if time.monotonic() - t0 > 10 * t_stream + 120:
            raise RuntimeError("cameras did not finish in time")
    flood_results = await flood_task if flood_task else {}
    reports = [json.loads(p.stdout.read().strip().splitlines()[-1]) for p in procs]
    # Let the subscriber catch up with everything persisted, then stop.
    published = read_events(workdir / "events.sqlite")
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and not set(published) <= set(received):
        await asyncio.sleep(0.1)
    stop_sub.set()
    subscriber.cancel()
    score_follower.cancel()
    await asyncio.gather(subscriber, score_follower, return_exceptions=True)
    server.poll()
    server.terminate()
    await proxy.close()
    captured = sum(r["frames_captured"] for r in reports)
    acked = sum(r["frames_acked"] for r in reports)
    malformed_sent = sum(v[0] for v in flood_results.values())
    malformed_rejected = sum(v[1] for v in flood_results.values())
    return {
        "cameras": cameras,
        "faults": faults,
        "frames_captured": captured,
        "frames_acked": acked,
        "frames_lost": captured - acked,
        "frames_dropped_by_buffer": sum(r["frames_dropped"] for r in reports),
        "frames_resent": sum(r["frames_resent"] for r in reports),
        "camera_reconnects": sum(r["reconnects"] for r in reports),
        "alarms_published": len(published),
        "alarms_received": len(set(published) & set(received)),
        "alarms_missed": len(set(published) - set(received)),
        "frames_scored_seen": len(set(scored)),  # by a live follower: a lower bound (it misses its downtimes)
        "frames_scored_twice": sum(1 for n in collections.Counter(scored).values() if n > 1),
        "malformed_sent": malformed_sent,
        "malformed_rejected": malformed_rejected,
        "malformed_by_class": flood_results,
        "server_crashes": server.crashes,
        "peak_server_rss_mb": round(server.peak_rss_mb, 1),
        "tau": round(tau, 4),
        "nu": round(nu, 1),
    }


async def bench_load(workdir: Path, *, source: Path, cameras: int = 16, seconds: float = 60.0, fps: float = 10.0) -> dict:
    """`cameras` real camera processes for `seconds` against one server: throughput and memory."""
    workdir.mkdir(parents=True, exist_ok=True)
    for f in workdir.glob("events.sqlite*"):
        f.unlink()
    names = [f"cam-{i + 1}" for i in range(cameras)]
    port = free_port()
    write_configs(workdir, cameras=names, port=port, proxy_port=port, source=source,
                  frames=int(seconds * fps), fps=fps, tau=0.5)
    server = ServerProcess(workdir / "server.yaml", workdir / "server.log")
    await asyncio.to_thread(server.start)
    procs = await run_cameras(workdir, names)
    await wait_connected(workdir / "server.log", cameras, procs)
    t0 = time.monotonic()
    while any(p.poll() is None for p in procs) and time.monotonic() - t0 < seconds * 3 + 60:
        await asyncio.to_thread(server.poll)
        await asyncio.sleep(0.5)
    wall = time.monotonic() - t0
    for p in procs:
        if p.poll() is None:
            p.kill()
    reports = [json.loads(p.stdout.read().strip().splitlines()[-1]) for p in procs if p.returncode is not None and p.stdout]
    server.terminate()
    samples = server.rss_samples
    warm = [mb for t, mb in samples if t - t0 > min(10.0, seconds / 4)] or [mb for _, mb in samples]
    acked = sum(r["frames_acked"] for r in reports)
    return {
        "cameras": cameras,
        "seconds": round(wall, 1),
        "frames_captured": sum(r["frames_captured"] for r in reports),
        "frames_acked": acked,
        "frames_dropped_by_buffer": sum(r["frames_dropped"] for r in reports),
        "throughput_fps": round(acked / wall, 1),
        "offered_fps": cameras * fps,
        "server_rss_mb_after_warmup": round(warm[0], 1) if warm else None,
        "server_rss_mb_end": round(warm[-1], 1) if warm else None,
        "server_rss_growth_mb": round(warm[-1] - warm[0], 1) if warm else None,
        "peak_server_rss_mb": round(server.peak_rss_mb, 1),
        "server_crashes": server.crashes,
    }
