"""Several frames of one camera in flight on the server (analysis.batching.max_in_flight_per_camera):
per-camera order is kept (flow and SAS equal the one-at-a-time result), a batch never holds two
frames of one camera, acks come in frame order and only after the commit, and a hard stop between
submit and commit loses nothing acknowledged and scores nothing twice."""

from __future__ import annotations

import asyncio
import threading

import cv2
import numpy as np
import pytest
from conftest import client_tls, run, server_config, tiny_analysis
from test_camera import BIKES, needs_bikes
from test_server import exchange, latent_frame

from analysis_server.pipeline import Batcher, FrameResult
from analysis_server.service import start_server
from camera_client.client import run_camera
from pvad.config import (
    BatchingConfig,
    BufferConfig,
    CameraConfig,
    CaptureConfig,
    DpEncoderAnonymizer,
    ReconnectConfig,
)
from pvad.v1 import pvad_pb2


def _bikes(n: int) -> list[np.ndarray]:
    cap = cv2.VideoCapture(str(BIKES))
    out = []
    while len(out) < n:
        ok, bgr = cap.read()
        assert ok
        out.append(cv2.resize(bgr, (320, 240), interpolation=cv2.INTER_AREA))
    cap.release()
    return out


class _Watching:
    """The real (tiny) analyzer, slowed, recording each batch's cameras and the frames queued behind it."""

    def __init__(self, real):
        self.real = real
        self.decoders, self.times, self.untrained, self.executor = real.decoders, real.times, real.untrained, real.executor
        self.normality_cfg = real.normality_cfg
        self.batches: list[list[tuple[str, int]]] = []
        self.queued: list[int] = []
        self.batcher: Batcher | None = None

    def new_camera_flow(self, *args):
        return self.real.new_camera_flow(*args)

    def analyze_frames(self, items):
        import time

        self.batches.append([(p.camera_id, p.seq) for _, p in items])
        if self.batcher is not None:
            self.queued.append(self.batcher._queue.qsize() + len(self.batcher._held))
        time.sleep(0.03)
        return self.real.analyze_frames(items)


@needs_bikes
def test_frames_in_flight_keep_each_cameras_order(pki, tmp_path, analyzer, encoder):
    """Two cameras × 10 real frames sent at once: with 4 frames per camera in flight the acks, the
    analysis order and the scores equal the one-at-a-time run (flow and SAS are per-camera and ordered)."""
    frames = _bikes(10)

    async def scenario(in_flight: int, log: str):
        cfg = server_config(pki, tmp_path, event_log={"path": tmp_path / log}, analysis=tiny_analysis(
            batching=BatchingConfig(max_batch=4, max_wait_ms=5, max_in_flight_per_camera=in_flight)))
        watch = _Watching(analyzer)
        srv = await start_server(cfg, analyzer=watch)
        watch.batcher = srv.batcher
        address = f"127.0.0.1:{srv.port}"
        try:
            acks = await asyncio.gather(*[
                exchange(address, client_tls(pki, f"camera/{cam}"),
                         [latent_frame(encoder, s + 1, camera=cam, frame=f) for s, f in enumerate(frames)])
                for cam in ("cam-1", "cam-2")])
            return acks, watch, srv.hub.log.load_camera("cam-1")
        finally:
            await srv.stop(0)

    runs = {n: run(scenario(n, f"events-{n}.sqlite")) for n in (1, 4)}
    for acks, watch, saved in runs.values():
        for stream in acks:
            assert [a.seq for a in stream] == list(range(1, 11))  # in frame order
            assert all(a.outcome == pvad_pb2.ACCEPTED for a in stream)
        assert saved.last_seq == 10
        assert all(len({cam for cam, _ in batch}) == len(batch) for batch in watch.batches)  # one frame per camera
        for cam in ("cam-1", "cam-2"):
            assert [s for batch in watch.batches for c, s in batch if c == cam] == list(range(1, 11))  # in order
    assert max(runs[4][1].queued) >= 2 and max(runs[1][1].queued) == 0  # frames waited behind their camera's previous one
    scores = {n: np.array([[(a.confidence, a.score) for a in stream] for stream in acks]) for n, (acks, _, _) in runs.items()}
    np.testing.assert_allclose(scores[4], scores[1], atol=1e-5)


def test_the_batcher_takes_one_frame_per_camera_per_batch_in_arrival_order():
    class Recorder:
        executor = None

        def __init__(self):
            self.batches = []

        def analyze_frames(self, items):
            self.batches.append([p for _, p in items])
            return [FrameResult(0.0) for _ in items]

    async def scenario():
        rec = Recorder()
        batcher = Batcher(rec, max_batch=4, max_wait_ms=20)
        a, b = object(), object()
        futures = [batcher.enqueue(state, name) for state, name in ((a, "a1"), (a, "a2"), (a, "a3"), (b, "b1"), (b, "b2"))]
        batcher.start()
        await asyncio.gather(*futures)
        late = batcher.enqueue(a, "a4")
        await batcher.stop()
        return rec.batches, late

    batches, late = run(scenario())
    assert batches == [["a1", "b1"], ["a2", "b2"], ["a3"]]
    assert late.cancelled()  # stopped with a frame queued: its stream acks nothing for it


@needs_bikes
def test_a_hard_stop_between_submit_and_commit_loses_nothing_acked_and_scores_nothing_twice(pki, tmp_path, analyzer):
    """The first server stops (grace 0) while 3+ frames of the camera are admitted and not committed;
    the camera resends what was not acknowledged to a second server on the same event log."""
    cfg = server_config(pki, tmp_path, analysis=tiny_analysis(batching=BatchingConfig(
        max_batch=4, max_wait_ms=2, max_in_flight_per_camera=4)))
    gate = threading.Event()
    committed: list[int] = []

    class Gated(_Watching):
        def analyze_frames(self, items):
            if first_seq[0] and any(p.seq >= first_seq[0] + 10 for _, p in items) and not gate.is_set():
                gate.wait(10)
            return super().analyze_frames(items)

    first_seq = [0]

    async def scenario():
        srv = await start_server(cfg, analyzer=Gated(analyzer))
        port = srv.port
        original_commit = srv.hub.log.commit_frame

        def counting_commit(**kw):
            committed.append(kw["seq"])
            return original_commit(**kw)

        srv.hub.log.commit_frame = counting_commit
        acked: list[int] = []

        def on_ack(ack, latency):
            if not first_seq[0]:
                first_seq[0] = ack.seq
            if ack.outcome in (pvad_pb2.ACCEPTED, pvad_pb2.DUPLICATE):
                acked.append(ack.seq)

        cam_cfg = CameraConfig(
            camera_id="cam-1", server=f"127.0.0.1:{port}", tls=client_tls(pki, "camera/cam-1"),
            capture=CaptureConfig(source=str(BIKES), target_fps=50, max_frames=40),
            anonymizer=DpEncoderAnonymizer(checkpoint=None, seed=0),
            max_in_flight=8, buffer=BufferConfig(capacity=64),
            reconnect=ReconnectConfig(initial_backoff_s=0.05, max_backoff_s=0.2),
        )
        camera = asyncio.create_task(run_camera(cam_cfg, on_ack=on_ack))
        for _ in range(400):  # until frames are held between submit and commit
            await asyncio.sleep(0.02)
            st = srv.ingest.cameras.get("cam-1")
            if st is not None and len(st.pending) >= 3 and first_seq[0]:
                break
        pending_at_stop = sorted(st.pending)
        acked_before = list(acked)
        await srv.stop(0)
        gate.set()
        on_disk = srv_log_last_seq(tmp_path)
        srv2 = await start_server(cfg.model_copy(update={"listen": f"127.0.0.1:{port}"}), analyzer=Gated(analyzer))
        original2 = srv2.hub.log.commit_frame

        def counting_commit2(**kw):
            committed.append(kw["seq"])
            return original2(**kw)

        srv2.hub.log.commit_frame = counting_commit2
        try:
            report = await asyncio.wait_for(camera, 60)
        finally:
            await srv2.stop(0)
        return report, pending_at_stop, acked_before, on_disk

    def srv_log_last_seq(path):
        import sqlite3

        with sqlite3.connect(path / "events.sqlite") as db:
            row = db.execute("SELECT last_seq FROM camera_state WHERE camera_id = 'cam-1'").fetchone()
        return row[0] if row else -1

    report, pending_at_stop, acked_before, on_disk = run(scenario(), timeout=120)
    assert len(pending_at_stop) >= 3
    assert max(acked_before) <= on_disk  # everything acknowledged before the stop was on disk
    assert report.lost == 0 and report.stream.acked == 40
    assert sorted(committed) == sorted(set(committed)) and len(committed) == 40  # each frame committed once
    assert set(pending_at_stop) <= set(committed)  # the frames cut off were committed by the second server
