"""`pvad train classifier` and `pvad eval detection` end to end on a tiny synthetic benchmark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from models.data.features import FeatureCache
from models.data.vad import load_dataset
from models.eval.detection import evaluate_detection
from models.nets.two_stream import TwoStreamClassifier, load_classifier
from models.train.classifier import (
    Batches,
    Dist,
    last_checkpoint_path,
    predict,
    prepare_samples,
    train_classifier,
)
from models.train.classifier_config import TrainClassifierConfig
from pvad.config import load_config


def _cfg(synth_bench: Path, tmp: Path, **over) -> TrainClassifierConfig:
    raw = {
        "data": synth_bench, "out": tmp / "clf.pt", "cache_dir": tmp / "cache", "threads": 2,
        "model": {"backbone": "tiny", "streams": 2, "bag": False, "hidden": 32, "pretrained": "never", "dropout": 0.0},
        "sampling": {"anomalous_fps": 10, "normal_fps": 10, "camera_fps": 10, "validation_fps": 10},
        "detector": {"backend": "none"}, "batch_size": 8, "hard_mining": {"alpha": 2},
        "phases": [{"train": "all", "lr": 3e-3, "max_epochs": 4}], "patience": 10,
    }
    raw.update(over)
    return TrainClassifierConfig(**raw)


def _train_loss(cfg: TrainClassifierConfig, model: TwoStreamClassifier) -> float:
    cache = FeatureCache(cfg.cache_dir, flow=cfg.flow, camera_fps=cfg.sampling.camera_fps)
    train, _, _, _ = prepare_samples(cfg, load_dataset(cfg.data), cache, Dist(), progress=False)
    b = Batches(model, (0.485, 0.456, 0.406), (0.229, 0.224, 0.225), torch.device("cpu"))
    p = np.clip(predict(model, b, train, np.arange(len(train))), 1e-7, 1 - 1e-7)
    t = train.target
    return float((-(t * np.log(p) + (1 - t) * np.log(1 - p)) * train.weight).mean())


def test_short_training_lowers_the_loss_and_writes_a_card(synth_bench: Path, tmp_path: Path):
    cfg = _cfg(synth_bench, tmp_path)
    torch.manual_seed(cfg.seed)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(cfg.seed)
        init = TwoStreamClassifier(backbone="tiny", streams=2, bag=False, hidden=32, dropout=0.0)
    before = _train_loss(cfg, init)
    result = train_classifier(cfg, progress=False)
    model, card = load_classifier(result.out, backbone=None, streams=None, bag=None, hidden=None, pretrained=False, seed=0)
    after = _train_loss(cfg, model)
    assert after < before
    assert card.trained and card.extra["variant"] == "2S"
    assert card.extra["recipe"]["hard_mining"] == {"enabled": True, "alpha": 2}
    assert len(card.extra["history"]) == 4 and set(card.extra["validation_videos"])
    assert last_checkpoint_path(cfg.out).is_file()
    # the features were cached: a second preparation computes nothing
    cache = FeatureCache(cfg.cache_dir, flow=cfg.flow, camera_fps=cfg.sampling.camera_fps)
    prepare_samples(cfg, load_dataset(cfg.data), cache, Dist(), progress=False)
    assert cache.misses == 0 and cache.hits > 0

    report = evaluate_detection(synth_bench, result.out, split="all", cache_dir=cfg.cache_dir, progress=False)
    m = report.metrics
    assert m["videos"] == 6 and m["frames"] == 6 * 60
    assert 0.0 <= m["fl_auc"] <= 1.0 and 0.0 <= m["vl_f1"] <= 1.0
    assert m["anomalous_videos"] == 3


def test_resume_continues_where_the_run_stopped(synth_bench: Path, tmp_path: Path):
    cfg = _cfg(synth_bench, tmp_path, phases=[{"train": "all", "lr": 3e-3, "max_epochs": 2}])
    train_classifier(cfg, progress=False)
    longer = cfg.model_copy(update={"phases": [cfg.phases[0].model_copy(update={"max_epochs": 3})], "resume": True})
    # the phase already finished, so a resumed run with a longer phase does not redo the first epochs
    result = train_classifier(longer, progress=False)
    assert [r["epoch"] for r in result.history] == [1, 2]


def test_config_errors_name_the_field(tmp_path: Path):
    path = tmp_path / "c.yaml"
    path.write_text("kind: train-classifier\ndata: x\nout: y.pt\nhard_mining: {alpha: 0}\n")
    with pytest.raises(Exception, match="hard_mining.alpha"):
        load_config(path)


def test_shipped_config_validates():
    cfg = load_config(Path(__file__).resolve().parents[1] / "configs" / "train-classifier-synth.yaml")
    assert cfg.variant == "2S-ha"


@pytest.mark.skipif(shutil.which("torchrun") is None and not (Path(sys.executable).parent / "torchrun").is_file(),
                    reason="torchrun is not installed")
def test_torchrun_two_processes(synth_bench: Path, tmp_path: Path):
    """DDP on gloo with 2 CPU processes: both ranks train, rank 0 writes the checkpoint."""
    cfg = _cfg(synth_bench, tmp_path, phases=[{"train": "all", "lr": 3e-3, "max_epochs": 1}], threads=1)
    path = tmp_path / "c.yaml"
    raw = json.loads(cfg.model_dump_json())
    raw["kind"] = "train-classifier"
    path.write_text(json.dumps(raw))
    torchrun = Path(sys.executable).parent / "torchrun"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [str(torchrun), "--standalone", "--nproc-per-node", "2", "--no-python",
         str(Path(sys.executable).parent / "pvad"), "train", "classifier", "--config", str(path), "--no-progress"],
        capture_output=True, text=True, timeout=600, env=env,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [json.loads(line) for line in proc.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 1  # only rank 0 reports
    assert Path(lines[0]["checkpoint"]).is_file()


def test_ablation_trains_missing_variants_and_tabulates_them(synth_bench: Path, tmp_path: Path, capsys):
    from pvad.cli import main

    one = {"phases": [{"train": "all", "lr": 3e-3, "max_epochs": 1}]}
    paths = []
    for name, over in (("2S-ha", {"hard_anomalies_only": True}),
                       ("1S-no-hm", {"model": {"backbone": "tiny", "streams": 1, "bag": False, "hidden": 16,
                                               "pretrained": "never"}, "hard_mining": {"enabled": False}})):
        cfg = _cfg(synth_bench, tmp_path, out=tmp_path / f"{name}.pt", **one, **over)
        path = tmp_path / f"{name}.yaml"
        path.write_text(json.dumps({"kind": "train-classifier", **cfg.model_dump(mode="json")}))
        paths.append(str(path))
    out = tmp_path / "ablation"
    args = ["eval", "ablation", *paths, "--data", str(synth_bench), "--out", str(out), "--no-progress", "--json"]
    assert main(args) == 0
    rows = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["rows"]
    assert [r["variant"] for r in rows] == ["2S-ha", "1S-no-hm"]
    for r in rows:
        assert 0.0 <= r["fl_auc"] <= 1.0 and r["videos"] == 6 and r["train_samples"] > 0
        assert set(r["fl_auc_per_class"]) <= {"Fighting", "Fall", "Running", "Throwing"}
    table = (out / "ablation.md").read_text().splitlines()
    assert table[0].startswith("| variant | FL-AUC") and len(table) == 2 + 2
    assert (out / "roc.png").stat().st_size > 0
    # a second run evaluates the existing checkpoints without training them again
    before = {p: Path(tmp_path / f"{n}.pt").stat().st_mtime_ns for p, n in zip(paths, ("2S-ha", "1S-no-hm"))}
    assert main(args) == 0
    capsys.readouterr()
    assert {p: Path(tmp_path / f"{n}.pt").stat().st_mtime_ns for p, n in zip(paths, ("2S-ha", "1S-no-hm"))} == before
