"""Foreground frame input (frame minus the camera's background) and the SAS calibration offset."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from conftest import TINY_SYNTH, tiny_analysis
from pydantic import ValidationError

from analysis_server.background import CameraBackground
from analysis_server.pipeline import Analyzer
from analysis_server.validate import Payload
from models.checkpoint import save_checkpoint
from models.data.features import FeatureCache, read_frames
from models.data.sampling import uniform_indices
from models.data.vad import load_dataset
from models.eval.detection import evaluate_detection
from models.nets.two_stream import (
    TwoStreamClassifier,
    card_background,
    load_classifier,
    two_stream_card,
)
from models.train.calibration import fit_logit_bias, vl_metrics
from models.train.classifier import Batches, SampleSet, predict, train_classifier
from models.train.classifier_config import TrainClassifierConfig
from pvad.config import (
    BackgroundConfig,
    ClassifierConfig,
    DecoderConfig,
    FlowConfig,
    ScoringConfig,
)


def _scene(rng: np.random.Generator, t: int, bg: np.ndarray) -> np.ndarray:
    img = bg.copy()
    x = 10 + 6 * t
    img[100:140, x:x + 20] = (250, 20, 20)  # a red block crossing the view
    return img


def test_background_learns_the_static_scene_and_not_what_moves():
    rng = np.random.default_rng(0)
    bg = rng.integers(40, 200, (240, 320, 3), dtype=np.uint8)
    model = CameraBackground(BackgroundConfig())
    for t in range(40):
        frame = _scene(rng, t, bg)
        est = model.next(frame)
    assert est.shape == frame.shape and est.dtype == np.uint8
    diff = np.abs(frame.astype(int) - est.astype(int)).sum(-1)
    block = diff[100:140, 10 + 6 * 39:30 + 6 * 39]
    assert block.mean() > 100  # the block is foreground
    rest = np.ones_like(diff, bool)
    rest[100:140, :] = False
    assert diff[rest].mean() < 3  # everything else is background
    # a new resolution starts a new scene instead of failing
    assert model.next(np.zeros((120, 160, 3), np.uint8)).shape == (120, 160, 3)


def test_cached_backgrounds_equal_the_servers(synth_bench: Path, tmp_path: Path):
    """The training features hold the background the server's per-camera model has at that frame."""
    video = load_dataset(synth_bench).videos[0]
    idx = np.array([5, 17, 40])
    cache = FeatureCache(tmp_path, flow=FlowConfig(), camera_fps=10.0, background=BackgroundConfig(history=50))
    f = cache.get(video, idx)
    assert f.background is not None and f.background.shape == f.frame.shape
    server = Analyzer.__new__(Analyzer)  # only new_camera_flow's background is used here
    server.flow, server.background_cfg, server.normality_cfg = None, BackgroundConfig(history=50), None
    state = server.new_camera_flow()
    frames = read_frames(video.path, set(range(41)))
    for i in range(41):
        bg = state.background.next(frames[i][..., ::-1].copy())  # BGR -> RGB, as the server receives
        if i in idx:
            assert np.array_equal(bg, f.background[list(idx).index(i)])
    again = FeatureCache(tmp_path, flow=FlowConfig(), camera_fps=10.0, background=BackgroundConfig(history=50)).get(video, idx)
    assert np.array_equal(again.background, f.background)  # read back from the cache
    plain = FeatureCache(tmp_path, flow=FlowConfig(), camera_fps=10.0)
    assert plain.path_for(video, idx) != cache.path_for(video, idx) and plain.get(video, idx).background is None


def test_foreground_inputs_are_the_difference_and_flip_with_the_frame():
    model = TwoStreamClassifier(backbone="tiny", streams=1, bag=False, hidden=8, frame_input="foreground")
    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
    rng = np.random.default_rng(1)
    frame = rng.integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    bg = rng.integers(0, 256, (2, 240, 320, 3), dtype=np.uint8)
    s = SampleSet(frame, frame, np.zeros((2, 80), np.float32), np.zeros(2, np.float32), np.ones(2, np.float32),
                  np.zeros(2, np.int32), ["v"], bg)
    x, _, _ = Batches(model, mean, std, torch.device("cpu")).inputs(s, np.arange(2), flip=np.array([False, True]))
    want = (frame.astype(np.float32) - bg) / (255 * np.array(std, np.float32))
    assert np.allclose(x[0].permute(1, 2, 0).numpy(), want[0], atol=1e-4)
    assert np.allclose(x[1].permute(1, 2, 0).numpy(), want[1][:, ::-1], atol=1e-4)
    s.background = None
    with pytest.raises(Exception, match="background"):
        Batches(model, mean, std, torch.device("cpu")).inputs(s, np.arange(2))


def test_server_scores_a_foreground_model_like_training(synth_bench: Path, tmp_path: Path):
    torch.manual_seed(0)
    model = TwoStreamClassifier(backbone="tiny", streams=2, bag=False, hidden=16, frame_input="foreground",
                                logit_bias=-0.7).eval()
    card = two_stream_card(trained=True, provenance="test", **model.arch_kwargs)
    card.extra = {"features": {"background": {"history": 40, "var_threshold": 16.0}}}
    ck = save_checkpoint(tmp_path / "fg.pt", model, card)
    loaded, loaded_card = load_classifier(ck, backbone=None, streams=None, bag=None, hidden=None, pretrained=False, seed=0)
    assert loaded.frame_input == "foreground" and loaded.logit_bias == -0.7
    assert card_background(loaded_card) == BackgroundConfig(history=40)

    video = load_dataset(synth_bench).videos[1]
    idx = uniform_indices(video.n_frames, video.fps, 10.0)[:20]
    f = FeatureCache(tmp_path / "c", flow=FlowConfig(), camera_fps=10.0, background=card_background(loaded_card)).get(video, idx)
    s = SampleSet.stack([(video.name, f, np.zeros(len(f), np.int8))], (1.0, 1.0))
    offline = predict(loaded, Batches(loaded, card.mean, card.std, torch.device("cpu")), s, np.arange(len(s)))

    cfg = tiny_analysis(classifier=ClassifierConfig(checkpoint=ck, backbone="tiny", hidden=16, bag=False,
                                                    pretrained="never"), batching={"max_batch": 1, "warmup": False})
    server = Analyzer(cfg, DecoderConfig(checkpoints=[], untrained_seeds=[]))
    state = server.new_camera_flow()
    online = [server.analyze([(state, Payload("c", i, 0, image=f.frame[i]))])[0] for i in range(len(f))]
    # flow differs only by the uint8 quantisation of the cached flow image
    assert np.max(np.abs(np.array(online) - offline)) < 2e-3


def test_logit_bias_shifts_the_logits_only():
    torch.manual_seed(0)
    a = TwoStreamClassifier(backbone="tiny", streams=1, bag=False, hidden=8).eval()
    b = TwoStreamClassifier(backbone="tiny", streams=1, bag=False, hidden=8, logit_bias=1.5).eval()
    b.load_state_dict(a.state_dict())
    x = torch.randn(3, 3, 240, 320)
    assert torch.allclose(b(x), a(x) + 1.5, atol=1e-5)
    with pytest.raises(ValueError, match="frame_input"):
        TwoStreamClassifier(backbone="tiny", streams=1, bag=False, hidden=8, frame_input="depth")


def test_float16_checkpoint_is_half_the_size_and_loads_as_float32(tmp_path: Path):
    torch.manual_seed(0)
    model = TwoStreamClassifier(backbone="small_cnn", streams=2, bag=False, hidden=64, input_scale=0.5).eval()
    card = two_stream_card(trained=True, provenance="test", **model.arch_kwargs)
    full = save_checkpoint(tmp_path / "f32.pt", model, card)
    half = save_checkpoint(tmp_path / "f16.pt", model, card, weights_dtype=torch.float16)
    assert half.stat().st_size < 0.6 * full.stat().st_size
    loaded, _ = load_classifier(half, backbone=None, streams=None, bag=None, hidden=None, pretrained=False, seed=0)
    assert all(p.dtype == torch.float32 for p in loaded.parameters())
    x, w = torch.randn(4, 3, 240, 320), torch.randn(4, 3, 240, 320)
    with torch.no_grad():
        assert torch.allclose(loaded(x, w), model(x, w), atol=2e-2)


def _videos(normal_level: float, anomalous_level: float, n: int = 3, frames: int = 40):
    """Normal videos at a constant logit; anomalous ones rise to a higher logit half-way through."""
    out = [(f"n{i}", "Normal", np.full(frames, normal_level)) for i in range(n)]
    for i in range(n):
        logits = np.full(frames, normal_level)
        logits[frames // 2:] = anomalous_level
        out.append((f"a{i}", "Fighting", logits))
    return out


def test_calibration_moves_the_offset_to_the_middle_of_the_best_range():
    videos = _videos(1.0, 4.0)  # every normal video alarms at offset 0
    cal = fit_logit_bias(videos)
    assert cal.before["vl_fpr"] == 1.0 and cal.before["vl_f1"] < 1.0
    assert cal.after["vl_f1"] == 1.0 and cal.after["vl_fpr"] == 0.0
    # a normal video stays quiet while 1 + b < 0 and an anomalous one alarms while 4 + b ≥ ~0: b in (-4, -1)
    assert -4.0 < cal.bias < -1.0 and abs(cal.bias - (-2.5)) < 0.6
    assert vl_metrics(videos, cal.bias, ScoringConfig())["vl_f1"] == 1.0
    with pytest.raises(ValueError, match="normal and anomalous"):
        fit_logit_bias([v for v in videos if v[1] == "Normal"])


def test_config_rules_for_background_and_calibration(tmp_path: Path):
    base = {"data": tmp_path, "out": tmp_path / "c.pt"}
    with pytest.raises(ValidationError, match="background is set but model.frame_input"):
        TrainClassifierConfig(**base, background={"history": 100})
    with pytest.raises(ValidationError, match="sampling.validation_fps"):
        TrainClassifierConfig(**base, calibration="vl_f1", sampling={"validation_fps": 5, "camera_fps": 10})
    cfg = TrainClassifierConfig(**base, model={"frame_input": "foreground"})
    assert cfg.feature_background == BackgroundConfig()
    assert TrainClassifierConfig(**base).feature_background is None


def test_foreground_training_calibrates_and_evaluates(synth_bench: Path, tmp_path: Path):
    cfg = TrainClassifierConfig(
        data=synth_bench, out=tmp_path / "fg.pt", cache_dir=tmp_path / "cache", threads=2, calibration="vl_f1",
        model={"backbone": "tiny", "streams": 2, "bag": False, "hidden": 16, "pretrained": "never",
               "dropout": 0.0, "frame_input": "foreground"},
        background={"history": 100},
        sampling={"anomalous_fps": 10, "normal_fps": 10, "camera_fps": 10, "validation_fps": 10},
        detector={"backend": "none"}, batch_size=8, phases=[{"train": "all", "lr": 3e-3, "max_epochs": 2}],
    )
    result = train_classifier(cfg, progress=False)
    model, card = load_classifier(result.out, backbone=None, streams=None, bag=None, hidden=None, pretrained=False, seed=0)
    assert model.frame_input == "foreground"
    cal = card.extra["calibration"]
    assert model.logit_bias == cal["logit_bias"] and cal["after"]["vl_f1"] >= cal["before"]["vl_f1"]
    assert card.extra["features"]["background"] == {"history": 100, "var_threshold": 16.0}
    report = evaluate_detection(synth_bench, result.out, split="all", cache_dir=tmp_path / "cache", progress=False)
    assert report.metrics["videos"] == TINY_SYNTH.videos and 0.0 <= report.metrics["fl_auc"] <= 1.0
