"""The analysis pipeline: precision modes agree with fp32 within a stated tolerance."""

import numpy as np
import pytest

from analysis_server.pipeline import Analyzer
from analysis_server.validate import Payload
from pvad.config import DecoderConfig
from pvad.errors import ConfigError

from conftest import tiny_analysis

BF16_TOLERANCE = 1e-2  # on σ in [0, 1]


def _sigmas(precision: str, frames) -> list[float]:
    a = Analyzer(tiny_analysis(precision=precision, batching={"max_batch": 1}), DecoderConfig(checkpoints=[], untrained_seeds=[0]))
    flow = a.new_camera_flow()
    rng = np.random.default_rng(0)
    out = []
    for i, f in enumerate(frames):
        latent = rng.normal(0, 1, (16, 30, 40)).astype(np.float32)
        out += a.analyze([(flow, Payload("c", i, 0, image=f))])
        out += a.analyze([(flow, Payload("c", 100 + i, 0, latent=latent, encoder_id=next(iter(a.decoders.decoders))))])
    return out


def test_bf16_agrees_with_fp32():
    rng = np.random.default_rng(1)
    frames = [(rng.random((240, 320, 3)) * 255).astype(np.uint8) for _ in range(4)]
    fp32, bf16 = _sigmas("fp32", frames), _sigmas("bf16", frames)
    assert np.max(np.abs(np.array(fp32) - np.array(bf16))) < BF16_TOLERANCE


def test_fp16_needs_cuda():
    with pytest.raises(ConfigError, match="analysis.precision"):
        Analyzer(tiny_analysis(device="cpu", precision="fp16"), DecoderConfig(checkpoints=[], untrained_seeds=[]))


def test_bench_server_reports_fps_stages_and_efficiency():
    from pvad import samples
    from pvad.bench.server import bench_server

    tiny = {"device": "cpu", "detector": {"backend": "none"},
            "classifier": {"backbone": "tiny", "hidden": 16, "bag": False, "pretrained": "never"}}
    r = bench_server(source=samples.default_video(), cameras=2, frames=3, batches=(1, 2), analysis=tiny)
    p = r["profiles"]["custom"]
    assert set(p["by_batch"]) == {1, 2} and all(v["fps"] > 0 for v in p["by_batch"].values())
    assert set(p["isolated_ms"]) == {"decode", "flow", "normality", "detector", "classifier"}
    assert "normality" in p["stages_ms"]
    assert 0 < p["pipeline_efficiency"] and p["batch_speedup"] > 0 and p["networks_batch_speedup"] > 0
    assert r["pipeline_efficiency"] == p["pipeline_efficiency"]


def test_warm_up_runs_every_batch_size_and_forgets_its_timings(monkeypatch):
    seen = []
    real = Analyzer.analyze

    def spy(self, items):
        seen.append(len(items))
        return real(self, items)

    monkeypatch.setattr(Analyzer, "analyze", spy)
    a = Analyzer(tiny_analysis(batching={"max_batch": 5}), DecoderConfig(checkpoints=[], untrained_seeds=[0]))
    assert seen == [1, 2, 3, 4, 5]
    assert a.times.frames == 0 and not a.times.seconds
    seen.clear()
    Analyzer(tiny_analysis(batching={"max_batch": 5, "warmup": False}), DecoderConfig(checkpoints=[], untrained_seeds=[]))
    assert seen == []
    a.close()


def test_flows_of_several_cameras_in_parallel_equal_one_by_one():
    a = Analyzer(tiny_analysis(batching={"max_batch": 4, "warmup": False}), DecoderConfig(checkpoints=[], untrained_seeds=[]))
    rng = np.random.default_rng(2)
    base = (rng.random((240, 320, 3)) * 255).astype(np.uint8)
    clips = [[np.roll(base, (k * d, 2 * k * d), axis=(0, 1)) for k in range(3)] for d in (1, 2, 3, 4)]
    parallel = [a.new_camera_flow() for _ in clips]
    serial = [a.new_camera_flow() for _ in clips]
    for t in range(3):
        frames = [c[t] for c in clips]
        together = a.flows(parallel, frames)
        alone = np.stack([s.next(f) for s, f in zip(serial, frames)])
        assert np.array_equal(together, alone)
    assert all(f[..., 2].mean() > 0 for f in together)  # real motion (channel 2: |flow|)
    assert not np.array_equal(together[0], together[3])  # and each camera its own
    a.close()


def test_compare_precisions_states_auto_against_the_fastest_variant_within_tolerance():
    from pvad import samples
    from pvad.bench.server import compare_precisions
    from pvad.hardware import resolve_precision

    tiny = {"device": "cpu", "detector": {"backend": "none"},
            "classifier": {"backbone": "tiny", "hidden": 16, "bag": False, "pretrained": "never"}}
    r = compare_precisions(source=samples.default_video(), cameras=1, frames=6, batch=2, analysis=tiny)
    p = r["profiles"]["custom"]
    assert {"fp32", "fp32+int8", "auto"} <= set(p["variants"])
    assert r["auto"]["precision"] == p["variants"]["auto"]["precision"] == resolve_precision("auto", "cpu")[0]
    int8 = p["variants"]["fp32+int8"]["vs_fp32"]
    assert int8["frames_compared"] == 3 and int8["features_max_rel_err"] > 0  # int8 ran, on frames it did not calibrate on
    assert p["variants"]["fp32+int8"]["classifier_trunks"] in ("int8", "fp32")
    assert p["variants"]["fp32"]["classifier_trunks"] == "none"
    assert p["variants"][p["fastest_within_tolerance"]]["within_tolerance"] and p["fastest_within_tolerance"] != "auto"
    assert p["auto_vs_fastest"] > 0
