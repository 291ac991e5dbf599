"""`pvad bench gpu` runs only where a GPU is lent; its code runs here on the CPU with a tiny profile."""

import pytest
import torch

from pvad import samples
from pvad.bench.gpu import NoCuda, bench_gpu

TINY = {"detector": {"backend": "none"},
        "classifier": {"backbone": "tiny", "hidden": 16, "bag": False, "pretrained": "never"}}


def test_refuses_without_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(NoCuda, match="needs a CUDA device"):
        bench_gpu(source=samples.default_video())


def test_every_part_runs_and_reports(tmp_path):
    r = bench_gpu(source=samples.default_video(), device="cpu", precisions=("fp32",), batches=(1, 2), cameras=(1, 2),
                  frames=3, e2e_cameras=0, train_batch=2, train_alpha=2, dp_batch=2, train_steps=1, analysis=TINY,
                  workdir=tmp_path)
    assert r["skipped"] == [] and r["device"] == "cpu"
    assert set(r["networks"]["fp32"]) == {1, 2}
    assert all(row["networks_fps"] > 0 and row["ms_per_frame"]["decode"] > 0 for row in r["networks"]["fp32"].values())
    assert set(r["server"]["fp32"]) == {1, 2} and all(v["fps"] > 0 for v in r["server"]["fp32"].values())
    assert r["training"]["classifier_step_s_fp32"] > 0 and r["training"]["dp_autoencoder_step_s"] > 0


def test_a_spent_budget_skips_parts_and_says_which():
    r = bench_gpu(source=samples.default_video(), device="cpu", precisions=("fp32",), batches=(1,), cameras=(1,),
                  frames=2, e2e_cameras=0, budget_s=0.0, analysis=TINY)
    assert r["networks"] == {} and "networks fp32" in r["skipped"] and "dp autoencoder step" in r["skipped"]
