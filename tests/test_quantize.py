"""int8 classifier trunks (analysis.quantization): calibrated on the server's own real frames, then within
the benchmark's tolerance of fp32 on the frames that follow."""

import logging

import cv2
import numpy as np
import torch

from analysis_server.pipeline import Analyzer
from analysis_server.validate import Payload
from camera_client.capture import iter_frames
from pvad import samples
from analysis_server import quantize
from analysis_server.quantize import FEATURE_TOLERANCE
from pvad.bench.server import TOLERANCE
from pvad.config import SHIPPED_CLASSIFIER, CaptureConfig, DecoderConfig

from conftest import tiny_analysis

CALIBRATION = 12


def _real_frames(n: int) -> list[np.ndarray]:
    cap = CaptureConfig(source=str(samples.default_video()), target_fps=10, max_frames=n)
    return [cv2.cvtColor(f.bgr, cv2.COLOR_BGR2RGB) for f in iter_frames(cap)]


def _run(setting: str, frames: list[np.ndarray]) -> tuple[np.ndarray, torch.Tensor, Analyzer, int]:
    cfg = tiny_analysis(classifier={"checkpoint": SHIPPED_CLASSIFIER},
                        quantization={"classifier": setting, "calibration_frames": CALIBRATION},
                        batching={"max_batch": 1, "warmup": False})
    a = Analyzer(cfg, DecoderConfig(checkpoints=[], untrained_seeds=[]))
    seen: list[torch.Tensor] = []
    a.classifier.head.register_forward_hook(lambda m, inp, out: seen.append(inp[0].detach().float()))
    flow = a.new_camera_flow()
    sigmas, switched = [], len(frames)
    for i, f in enumerate(frames):
        sigmas += a.analyze([(flow, Payload("cam", i, 0, image=f))])
        if a.int8 is not None and a.int8.state == "converting":
            a.int8.wait_ready()
            switched = i + 1
    a.close()
    return np.array(sigmas), torch.cat(seen), a, switched


def test_int8_trunks_calibrate_on_real_frames_then_stay_within_tolerance():
    frames = _real_frames(30)
    fp32, f_fp32, _, _ = _run("none", frames)
    int8, f_int8, a, switched = _run("int8", frames)
    # the trunks really are int8 now, and only after the calibration frames
    assert a.int8.state == "int8"
    assert any(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in a.classifier.frame_stream.features.modules())
    assert switched == CALIBRATION + 1
    # while calibrating, observers watch fp32 arithmetic: σ is fp32's
    np.testing.assert_allclose(int8[:switched], fp32[:switched], atol=1e-5)
    # afterwards int8 differs (it is not secretly fp32) but within what the benchmark accepts
    after = slice(switched, None)
    assert np.abs(int8[after] - fp32[after]).max() <= TOLERANCE
    rel = (f_int8[after] - f_fp32[after]).norm(dim=1) / f_fp32[after].norm(dim=1)
    assert 0 < rel.max() <= FEATURE_TOLERANCE


def test_the_guard_drops_int8_that_auto_chose_and_keeps_int8_that_was_configured(monkeypatch, caplog):
    frames = _real_frames(20)
    fp32, *_ = _run("none", frames)
    monkeypatch.setattr(quantize, "FEATURE_TOLERANCE", 0.0)  # every int8 conversion now fails the guard
    monkeypatch.setattr("analysis_server.pipeline.resolve_int8", lambda *a, **k: (True, "CPU has avx512_vnni (mocked)"))
    with caplog.at_level(logging.WARNING):
        auto, _, a, switched = _run("auto", frames)
    assert a.int8.state == "fp32" and a.int8.check_err > 0
    assert "int8 classifier trunks rejected" in caplog.text
    assert not any(isinstance(m, torch.ao.nn.quantized.Conv2d) for m in a.classifier.frame_stream.features.modules())
    np.testing.assert_allclose(auto, fp32, atol=1e-5)  # the fp32 trunks again, after as before the check
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        int8, _, a, _ = _run("int8", frames)
    assert a.int8.state == "int8" and "int8 as configured, but its features differ" in caplog.text


def test_int8_without_a_classifier_is_reported_not_silently_ignored(caplog):
    cfg = tiny_analysis(normality={"enabled": True, "fusion": "normality"}, quantization={"classifier": "int8"},
                        batching={"max_batch": 1, "warmup": False})
    with caplog.at_level(logging.WARNING):
        a = Analyzer(cfg, DecoderConfig(checkpoints=[], untrained_seeds=[]))
    assert a.int8 is None
    assert "analysis.quantization.classifier: int8 not applied" in caplog.text
