"""Object-level normality features: per-box measurements, the object density, a model that sums grid and
object scores (and round-trips), the settings a stored model must match, and the analyzer's use of a
detector's boxes."""

from __future__ import annotations

import logging

import numpy as np
import pytest

from analysis_server.detectors.base import Detections
from analysis_server.normality import CameraNormality, NormalityModel, Phase
from analysis_server.normality.objects import MAX_OBJECTS, MIN_OBJECTS, ObjectKnn, object_rows
from conftest import tiny_analysis
from pvad.config import DecoderConfig, NormalityConfig

H, W = 240, 320
FEATURES = ["y", "w", "h", "vx", "vy", "speed", "speed_p90"]
CFG = NormalityConfig(learning_frames=30, min_frames=20, smoothing=3, folds=3)


def walker(rng: np.random.Generator, *, speed: float = 1.0, width: float = 0.4) -> np.ndarray:
    """One ``object_rows`` row of a pedestrian standing at a random depth: its box height grows with the
    bottom edge (perspective), it walks sideways at ``speed`` heights per 20 frames."""
    bottom = rng.uniform(80, 230)
    h = 10 + 0.2 * bottom
    v = speed * h / 20 * rng.choice([-1, 1])
    return np.array([rng.uniform(20, 300), bottom, width * h, h, v, 0.0, abs(v), abs(v) * 1.2], np.float32)


def normal_frames(n: int, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.stack([walker(rng, speed=rng.uniform(0.8, 1.2)) for _ in range(rng.integers(1, 4))]) for _ in range(n)]


def test_object_rows_measure_the_box_and_the_flow_inside_it():
    flow = np.zeros((H, W, 2), np.float32)
    flow[100:141, 50:71] = (3.0, -1.0)  # the object moves right and up
    dets = Detections.from_arrays([[50, 100, 70, 140], [300, 10, 290, 20]], [0.9, 0.5], [0, 1])  # 2nd: empty box
    rows = object_rows(dets, flow)
    assert rows.shape == (1, 8)
    cx, bottom, w, h, vx, vy, speed, p90 = rows[0]
    assert (cx, bottom, w, h) == (60, 140, 20, 40)
    assert vx == pytest.approx(3.0) and vy == pytest.approx(-1.0)
    assert speed == pytest.approx(np.hypot(3, 1), rel=1e-5) and p90 == pytest.approx(np.hypot(3, 1), rel=1e-5)
    assert object_rows(Detections.empty(), flow).shape == (0, 8)
    # at most MAX_OBJECTS boxes a frame, the most confident: a learning frame's memory is bounded
    n = MAX_OBJECTS + 10
    many = Detections.from_arrays([[i, 0, i + 5, 10] for i in range(n)], np.arange(n) / n, np.zeros(n))
    rows = object_rows(many, flow)
    assert len(rows) == MAX_OBJECTS and rows[:, 0].min() == 10 + 2.5  # the 10 least confident are dropped


def test_the_object_density_learns_perspective_and_flags_fast_or_odd_objects():
    knn = ObjectKnn.fit(normal_frames(300), k=1, features=FEATURES, frame_height=H)
    a, b = knn.perspective
    assert b == pytest.approx(0.2, abs=0.01) and a == pytest.approx(10, abs=1.5)  # learnt height = 10 + 0.2 * bottom
    rng = np.random.default_rng(7)
    held_out = [np.stack([walker(rng)]) for _ in range(50)]
    fast = [np.stack([walker(rng, speed=4.0)]) for _ in range(50)]  # a cyclist: 4x the walking speed
    wide = [np.stack([walker(rng, width=1.2)]) for _ in range(50)]  # a cart or a car: 3x as wide
    normal = knn.frame_scores(held_out)
    assert knn.frame_scores(fast).min() > normal.max()
    assert knn.frame_scores(wide).min() > normal.max()
    # a frame's score is its most unusual object's; no object scores 0
    mixed = knn.frame_scores([np.concatenate([held_out[0], fast[0]]), np.zeros((0, 8), np.float32)])
    assert mixed[0] == pytest.approx(knn.frame_scores([fast[0]])[0]) and mixed[1] == 0.0
    # speed is measured in heights: the same walk far away (fewer pixels per frame) is as normal as near
    far, near = walker(rng), walker(rng)
    far[1], near[1] = 90, 220
    for o in (far, near):
        o[2:4] = [0.4 * (10 + 0.2 * o[1]), 10 + 0.2 * o[1]]
        o[4] = o[6] = o[3] / 20
        o[5], o[7] = 0.0, o[6] * 1.2
    assert knn.frame_scores([far[None], near[None]]).max() <= normal.max() + 1e-6


def test_too_few_learning_objects_fit_no_object_bank():
    assert ObjectKnn.fit(normal_frames(3), k=1, features=FEATURES, frame_height=H) is None
    assert ObjectKnn.fit([np.zeros((0, 8), np.float32)] * 100, k=1, features=FEATURES, frame_height=H) is None
    assert MIN_OBJECTS > 3


def grid_feats(n: int, seed: int = 1) -> np.ndarray:
    return np.abs(np.random.default_rng(seed).normal(0, 1, (n, 48, 4))).astype(np.float32)


def test_a_model_sums_scaled_grid_and_object_scores_and_round_trips():
    n = 120
    feats, objects = grid_feats(n), normal_frames(n)
    m = NormalityModel.fit(feats, np.zeros(n, np.int32), cfg=CFG, source="image:none", frame_shape=(H, W),
                           objects=objects, object_features=FEATURES)
    assert m.objects is not None and m.scales is not None and m.features["objects"] == FEATURES
    grid_only = NormalityModel.fit(feats, np.zeros(n, np.int32), cfg=CFG, source="image:none", frame_shape=(H, W))
    rng = np.random.default_rng(9)
    probe, calm = grid_feats(20, seed=5), [np.stack([walker(rng)]) for _ in range(20)]
    fast = [np.stack([walker(rng, speed=4.0)]) for _ in range(20)]
    # the grid's share is its own score over its scale; a fast object adds to it
    g = grid_only.raw_scores(probe) / m.scales[0]
    np.testing.assert_allclose(m.raw_scores(probe, calm), g + m.objects.frame_scores(calm) / m.scales[1])
    assert (m.raw_scores(probe, fast) > m.raw_scores(probe, calm)).all()
    np.testing.assert_allclose(m.raw_scores(probe), g)  # no objects given: none seen
    # the threshold is set on the summed held-out scores, and σ is 0.5 there as before
    assert m.sigma(m.threshold) == pytest.approx(0.5)
    again = NormalityModel.from_bytes(m.to_bytes())
    np.testing.assert_array_equal(again.raw_scores(probe, fast), m.raw_scores(probe, fast))
    assert again.describe()["objects"] == m.objects.points


def test_a_learning_period_without_objects_fits_the_grid_alone(caplog):
    cam = CameraNormality(CFG, "cam-o", object_features=FEATURES)
    feats = grid_feats(40)
    with caplog.at_level(logging.INFO):
        for i, f in enumerate(feats):
            step = cam.step(f, source="image:none", frame_shape=(H, W), has_flow=i > 0, objects=None)
    assert step.phase is Phase.SCORING and cam.model.objects is None
    assert "objects detected while learning, so the model scores grid features only" in caplog.text


def test_auto_uses_objects_on_unanonymized_frames_only():
    """Ped2's tuning videos chose object features on raw frames only (on anonymized frames the detector
    finds few objects and they lowered the tuning AUC), so `auto` leaves them out elsewhere."""
    n, feats, objects = 40, grid_feats(40), normal_frames(40)
    fitted = {}
    for enabled in ("auto", True):
        cfg = NormalityConfig(**{**CFG.model_dump(), "objects": {"enabled": enabled}})
        for source in ("image:none", "image:blur:person", "latent:abc"):
            cam = CameraNormality(cfg, "cam-r", object_features=FEATURES)
            for i in range(n):
                cam.step(feats[i], source=source, frame_shape=(H, W), has_flow=i > 0, objects=objects[i])
            fitted[enabled, source] = cam.model.objects is not None
    assert fitted == {("auto", "image:none"): True, ("auto", "image:blur:person"): False, ("auto", "latent:abc"): False,
                      (True, "image:none"): True, (True, "image:blur:person"): True, (True, "latent:abc"): True}


def test_a_stored_model_with_other_feature_settings_is_dropped_and_learnt_again(caplog):
    n = 60
    with_objects = NormalityModel.fit(grid_feats(n), np.zeros(n, np.int32), cfg=CFG, source="image:none",
                                      frame_shape=(H, W), objects=normal_frames(n), object_features=FEATURES)
    cam = CameraNormality(CFG, "cam-p", with_objects)  # this server has no detector: grid features only
    with caplog.at_level(logging.WARNING):
        step = cam.step(grid_feats(1)[0], source="image:none", frame_shape=(H, W), has_flow=True)
    assert step.phase is Phase.LEARNING and cam.model is None
    assert "fitted with features" in caplog.text
    # a model of three grid features (before p90) on a server that measures four: learnt again
    old = NormalityModel.fit(grid_feats(n)[..., :3], np.zeros(n, np.int32),
                             cfg=NormalityConfig(**{**CFG.model_dump(), "motion": {"features": ["mean", "max", "fg"]}}),
                             source="image:none", frame_shape=(H, W))
    cam = CameraNormality(CFG, "cam-q", old)
    assert cam.step(grid_feats(1)[0], source="image:none", frame_shape=(H, W), has_flow=True).phase is Phase.LEARNING


def test_object_settings_are_validated_and_resolved_against_the_detector():
    with pytest.raises(ValueError, match="normality.objects.enabled is true but analysis.detector names no detector"):
        tiny_analysis(normality=NormalityConfig(objects={"enabled": True}))
    assert tiny_analysis(normality=NormalityConfig()).object_features is None  # auto, detector 'none'
    with_hog = tiny_analysis(normality=NormalityConfig(), detector={"backend": "hog"})
    assert with_hog.object_features == FEATURES
    off = tiny_analysis(normality=NormalityConfig(objects={"enabled": False}), detector={"backend": "hog"})
    assert off.object_features is None
    with pytest.raises(ValueError, match="name a feature twice"):
        NormalityConfig(objects={"features": ["y", "y"]})
    with pytest.raises(ValueError, match="bank 'shared' finds active cells"):
        NormalityConfig(bank="shared", motion={"features": ["mean", "p90"]})


def test_the_analyzer_feeds_the_detectors_boxes_with_their_flow_to_the_normality_model():
    from analysis_server.pipeline import Analyzer
    from analysis_server.validate import Payload

    class BoxAt:
        """A detector that finds the moving block of the test scene (where the test put it)."""

        name = "box-at"
        x = 0

        def detect_batch(self, frames):
            return [Detections.from_arrays([[self.x, 100, self.x + 20, 140]], [0.9], [0]) for _ in frames]

    analyzer = Analyzer(tiny_analysis(detector={"backend": "hog"}, batching={"max_batch": 1, "warmup": False},
                                      normality=NormalityConfig(learning_frames=0, min_frames=10, smoothing=1, folds=2),
                                      ), DecoderConfig(checkpoints=[], untrained_seeds=[0]))
    assert analyzer.object_features == FEATURES
    analyzer.detector = BoxAt()
    state = analyzer.new_camera_flow("cam-a")
    state.normality.relearn(learn_only=True)
    rng = np.random.default_rng(0)
    bg = rng.integers(60, 200, (H, W, 3), dtype=np.uint8)

    def frame(x: int) -> np.ndarray:
        img = bg.copy()
        img[100:140, x : x + 20] = (230, 40, 40)
        return img

    for t in range(60):  # a block walking 2 px a frame
        BoxAt.x = 20 + 2 * (t % 100)
        analyzer.analyze_frames([(state, Payload("cam-a", t, 0, image=frame(BoxAt.x), anonymizer="none"))])
    model = state.normality.finish()
    assert model.objects is not None and model.objects.points >= MIN_OBJECTS
    scores = {}
    for name, step in (("walk", 2), ("run", 12)):
        state = analyzer.new_camera_flow("cam-a", model)
        x, out = 40, []
        for t in range(8):
            x += step
            BoxAt.x = x
            out.append(analyzer.analyze_frames([(state, Payload("cam-a", t, 0, image=frame(x), anonymizer="none"))])[0]
                       .normality_score)
        scores[name] = [s for s in out if s is not None]
    assert min(scores["run"][1:]) > max(scores["walk"][1:])
