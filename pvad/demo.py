"""`pvad demo`: the embedded default. Both ends on this machine, over mutual TLS on loopback.

Generates a development CA and certificates in the work dir, starts the analysis server on a free
port, subscribes to its alarm stream, streams a real sample video through the camera's anonymizer,
prints scores and alarms as they happen, and returns a summary. With ``web.enabled`` (the default) the
operator dashboard runs too: a fresh ``demo`` admin user each run, its URL and password printed.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import statistics
import sys
import time
from pathlib import Path
from typing import Any, TextIO

from camera_client.client import run_camera
from pvad import samples
from pvad.certs import make_dev_pki
from pvad.channel import secure_channel
from pvad.config import (
    CameraConfig,
    CaptureConfig,
    ClientTLS,
    DemoConfig,
    EventLogConfig,
    ServerConfig,
    ServerTLS,
    WebConfig,
    decoders_for,
)
from pvad.subscriber import describe, follow_alarms
from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)

SUBSCRIBER = "demo"
MIN_DEMO_LEARNING = 20  # a shorter demo only learns


def choose_detector(cfg: DemoConfig) -> DemoConfig:
    """When the demo config names no detector and the classifier wants one, use `samples.offline_detector()`."""
    from models.nets.two_stream import classifier_arch

    uses_classifier = not cfg.analysis.normality.enabled or cfg.analysis.normality.fusion != "normality"
    if cfg.analysis.detector is not None or not uses_classifier or not classifier_arch(cfg.analysis.classifier)["bag"]:
        return cfg
    det = samples.offline_detector()
    log.info("demo: no detector configured; using %s", det.backend)
    analysis = cfg.analysis.model_copy(update={"detector": det})
    return cfg.model_copy(update={"analysis": analysis})


def sampled_frames(source: Path | str, fps: float, max_frames: int | None) -> int | None:
    """How many frames the camera will send from a video file (None for a live source or an unknown length)."""
    import cv2

    if not Path(str(source)).is_file():
        return None
    cap = cv2.VideoCapture(str(source))
    n, src_fps = cap.get(cv2.CAP_PROP_FRAME_COUNT), cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    if n <= 0 or not 0 < src_fps < 1000:
        return None
    sent = int(n * min(1.0, fps / src_fps))
    return min(sent, max_frames) if max_frames else sent


def fit_learning_period(cfg: DemoConfig, source: Path | str) -> DemoConfig:
    """The built-in demo learns from the first half of what it streams (150 of its 300 frames; a shorter
    sample video, e.g. bikes.mp4's 100 frames at 10 fps, its first half). A configured period is kept."""
    norm = cfg.analysis.normality
    n = sampled_frames(source, cfg.target_fps, cfg.max_frames)
    if not norm.enabled or n is None or norm.learning_frames < n:
        return cfg
    if "analysis" in cfg.model_fields_set and "normality" in cfg.analysis.model_fields_set:
        log.info("demo: %s gives %d frames, all within the configured learning period (%d): no frame is scored",
                 source, n, norm.learning_frames)
        return cfg
    learn = n // 2
    if learn < MIN_DEMO_LEARNING:
        log.info("demo: %d frames are too few to learn from and then score; all are learning frames", n)
        return cfg
    log.info("demo: %s gives %d frames; learning from the first %d", source, n, learn)
    norm = norm.model_copy(update={"learning_frames": learn, "min_frames": min(norm.min_frames, learn)})
    return cfg.model_copy(update={"analysis": cfg.analysis.model_copy(update={"normality": norm})})


def demo_user(server: ServerConfig) -> str:
    """A fresh `demo` admin user in the demo's users file; returns its password (also in workdir/web-password)."""
    from analysis_server.web.auth import add_user

    password = secrets.token_urlsafe(12)
    server.web.users_file.unlink(missing_ok=True)
    add_user(server.web.users_file, "demo", password, "admin")
    secret = server.web.users_file.with_name("web-password")
    secret.unlink(missing_ok=True)
    secret.touch(mode=0o600)
    secret.write_text(password + "\n")
    return password


def build_configs(cfg: DemoConfig, *, source: Path | str, pki: dict) -> tuple[ServerConfig, CameraConfig, ClientTLS]:
    server_paths, cam_paths = pki["server"], pki[f"camera/{cfg.camera_id}"]
    sub_paths = pki[f"subscriber/{SUBSCRIBER}"]
    anon = cfg.anonymizer
    decoders = decoders_for(anon)
    events = cfg.workdir / "events.sqlite"
    for suffix in ("", "-wal", "-shm"):  # each demo run starts with an empty event log
        Path(str(events) + suffix).unlink(missing_ok=True)
    server = ServerConfig(
        listen="127.0.0.1:0",
        tls=ServerTLS(ca=server_paths.ca, cert=server_paths.cert, key=server_paths.key),
        accept=cfg.accept,
        decoders=decoders,
        analysis=cfg.analysis,
        scoring=cfg.scoring,
        event_log=EventLogConfig(path=events),
        web=WebConfig(enabled=cfg.web.enabled, listen=cfg.web.listen, users_file=cfg.workdir / "web-users.json",
                      session_secret_file=cfg.workdir / "web-secret"),
    )
    camera = CameraConfig(
        camera_id=cfg.camera_id,
        server="127.0.0.1:0",  # replaced once the server has bound its port
        tls=ClientTLS(ca=cam_paths.ca, cert=cam_paths.cert, key=cam_paths.key),
        capture=CaptureConfig(source=str(source), target_fps=cfg.target_fps, max_frames=cfg.max_frames),
        anonymizer=anon,
        max_in_flight=cfg.max_in_flight,
    )
    sub_tls = ClientTLS(ca=sub_paths.ca, cert=sub_paths.cert, key=sub_paths.key)
    return server, camera, sub_tls


async def run_demo(cfg: DemoConfig, *, out: TextIO = sys.stdout) -> dict[str, Any]:
    from analysis_server.service import (
        start_server,  # heavy imports (torch models) only when run
    )

    t_start = time.perf_counter()
    cfg = choose_detector(cfg)
    source = samples.default_video() if cfg.source == "auto" else Path(cfg.source)
    log.info("demo: source %s", source)
    cfg = fit_learning_period(cfg, source)
    pki = make_dev_pki(cfg.workdir / "certs", cameras=[cfg.camera_id], subscribers=[SUBSCRIBER])
    server_cfg, camera_cfg, sub_tls = build_configs(cfg, source=source, pki=pki)

    password = demo_user(server_cfg) if server_cfg.web.enabled else None
    running = await start_server(server_cfg)
    address = f"127.0.0.1:{running.port}"
    if running.web is not None:
        print(f"dashboard: {running.web.url}  (user demo, password {password}; also in "
              f"{server_cfg.web.users_file.with_name('web-password')})", file=out, flush=True)
    camera_cfg = camera_cfg.model_copy(update={"server": address})
    events: list[pvad_pb2.AlarmEvent] = []
    subscribed = asyncio.Event()

    async def subscriber() -> None:
        async with secure_channel(address, sub_tls) as channel:
            subscribed.set()
            async for ev in follow_alarms(channel, include_scores=True):
                events.append(ev)
                print(describe(ev), file=out, flush=True)

    sub_task = asyncio.create_task(subscriber())
    try:
        await subscribed.wait()
        await asyncio.sleep(0.2)  # let the subscription reach the server before the first frame
        report = await run_camera(camera_cfg)
        # Let the subscriber receive the last score events before the server goes.
        deadline = time.monotonic() + 3.0
        while time.monotonic() < deadline and sum(e.kind == pvad_pb2.SCORE for e in events) < report.stream.accepted:
            await asyncio.sleep(0.05)
        if running.web is not None and cfg.web.hold_s:
            print(f"dashboard: serving for {cfg.web.hold_s:.0f} s more on {running.web.url}", file=out, flush=True)
            await asyncio.sleep(cfg.web.hold_s)
    finally:
        sub_task.cancel()
        try:
            await sub_task
        except (asyncio.CancelledError, Exception):
            pass
        stages = running.analyzer.times.ms_per_frame()
        published = running.hub.published
        untrained = list(running.analyzer.untrained)
        await running.stop(grace=1.0)

    st = report.stream
    scores = st.scores
    if report.untrained:
        untrained.insert(0, f"camera anonymizer {report.anonymizer}")
    clf = running.analyzer.classifier
    arch = clf.arch_kwargs if clf is not None else {"backbone": None, "streams": None, "bag": None}
    score_events = [e for e in events if e.kind == pvad_pb2.SCORE]
    summary = {
        "frames_captured": report.captured,
        "frames_sent": st.sent - st.resent,  # distinct frames
        "frames_resent": st.resent,
        "frames_dropped": report.dropped,
        "frames_acked": st.acked,
        "frames_accepted": st.accepted,
        "frames_rejected": st.rejected_total,
        "anonymizer": report.anonymizer,
        "transport": "mtls",
        "source": str(source),
        "detector": running.analyzer.detector_name,
        "backbone": arch["backbone"],
        "streams": arch["streams"],
        "bag": arch["bag"],
        "device": str(running.analyzer.device),
        "fusion": running.analyzer.fusion,
        "frames_learning": sum(e.phase == pvad_pb2.LEARNING for e in score_events),
        "frames_scoring": sum(e.phase == pvad_pb2.SCORING for e in score_events),
        "events_published": published,
        "alarms_raised": sum(e.kind == pvad_pb2.ALARM_RAISED for e in events),
        "score_events_received": sum(e.kind == pvad_pb2.SCORE for e in events),
        "score_mean": round(statistics.fmean(scores), 4) if scores else None,
        "score_max": round(max(scores), 4) if scores else None,
        "latency_ms_p50": round(statistics.median(st.latency_ms), 1) if st.latency_ms else None,
        "camera_ms_per_frame": {"anonymize": round(report.anonymize_ms, 2)},
        "wire_bytes_per_frame": round(report.wire_bytes),
        "server_ms_per_frame": stages,
        "untrained": untrained,
        "dashboard_url": running.web.url if running.web is not None else None,
        "wall_seconds": round(time.perf_counter() - t_start, 2),
    }
    return summary
