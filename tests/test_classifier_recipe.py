"""The training recipe's parts (P §3.3) and the detection metrics, on hand-computed cases."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from models.data.sampling import (
    adaptive_indices,
    evaluation_targets,
    thin,
    training_targets,
    uniform_indices,
)
from models.data.vad import HARD, NORMAL, SOFT
from models.eval.detection import (
    VideoScores,
    frame_level_auc,
    frame_level_auc_per_class,
    sas_series,
    video_level,
)
from models.train.classifier import mine_hard, split_validation, weighted_bce
from models.train.classifier_config import TrainClassifierConfig
from pvad.config import ScoringConfig


def test_adaptive_sampling_takes_the_stated_rates():
    # 30 fps video: 60 normal frames, 90 hard frames, 60 normal frames
    labels = np.array([NORMAL] * 60 + [HARD] * 90 + [NORMAL] * 60, np.uint8)
    idx = adaptive_indices(labels, 30.0, anomalous_fps=3.0, normal_fps=10.0, hard_only=False)
    normal_a = idx[idx < 60]
    hard = idx[(idx >= 60) & (idx < 150)]
    normal_b = idx[idx >= 150]
    assert list(normal_a) == list(range(0, 60, 3))  # 10 fps of 30 = every 3rd frame
    assert list(hard) == list(range(60, 150, 10))  # 3 fps of 30 = every 10th frame, from the run's start
    assert list(normal_b) == list(range(150, 210, 3))
    assert len(hard) / 3.0 == pytest.approx(3.0)  # 3 seconds of anomaly -> 9 samples


def test_hard_only_mode_drops_soft_frames_and_default_mode_keeps_them_anomalous():
    labels = np.array([NORMAL] * 10 + [SOFT] * 10 + [HARD] * 10, np.uint8)
    assert list(training_targets(labels, hard_only=False)) == [0] * 10 + [1] * 20
    assert list(training_targets(labels, hard_only=True)) == [0] * 10 + [-1] * 10 + [1] * 10
    idx = adaptive_indices(labels, 10.0, anomalous_fps=10.0, normal_fps=10.0, hard_only=True)
    assert not set(idx) & set(range(10, 20))
    assert list(evaluation_targets(labels)) == [0] * 20 + [1] * 10  # soft counts as normal in testing


def test_soft_frames_can_be_trained_as_normal_in_hard_only_mode():
    labels = np.array([NORMAL] * 3 + [SOFT] * 3 + [HARD] * 3, np.uint8)
    assert list(training_targets(labels, hard_only=True, soft="normal")) == [0] * 6 + [1] * 3
    idx = adaptive_indices(labels, 10.0, anomalous_fps=10.0, normal_fps=10.0, hard_only=True, soft="normal")
    assert list(idx) == list(range(9))  # soft frames are sampled, at the normal rate


def test_uniform_and_thin():
    assert list(uniform_indices(10, 30.0, 10.0)) == [0, 3, 6, 9]
    assert list(thin(np.arange(100), 5)) == [0, 25, 50, 74, 99]
    assert len(thin(np.arange(3), None)) == 3


def test_hard_mining_selects_the_highest_losses():
    losses = torch.tensor([0.1, 2.0, 0.5, 3.0, 0.05, 1.0])
    assert sorted(mine_hard(losses, 3).tolist()) == [1, 3, 5]
    # end to end: the picked candidates are the ones the model gets most wrong
    logits = torch.tensor([5.0, -5.0, 0.0, 5.0])
    target = torch.tensor([1.0, 1.0, 1.0, 0.0])  # samples 1 and 3 are badly wrong, 2 is unsure
    picked = mine_hard(weighted_bce(logits, target, torch.ones(4)), 2)
    assert sorted(picked.tolist()) == [1, 3]


def test_class_weights_enter_the_loss():
    logits = torch.zeros(2)
    target = torch.tensor([0.0, 1.0])
    w = torch.tensor([1.0, 2.0])
    loss = weighted_bce(logits, target, w)
    assert loss[0].item() == pytest.approx(math.log(2))
    assert loss[1].item() == pytest.approx(2 * math.log(2))


def _video(name, cat, sigma, truth):
    sigma = np.asarray(sigma, float)
    return VideoScores(name, cat, np.arange(len(sigma)), np.asarray(truth), sigma, sas_series(sigma, ScoringConfig()))


def test_video_level_f1_by_hand():
    # SAS starts at LB=-7 and gains ν·Δ⁺ = 2·1 = 2 per frame at σ=1: 4 frames reach x=1 > 0 -> s ≥ 0.5
    hit = _video("a1", "Fight", [1.0] * 4, [1] * 4)
    short = _video("a2", "Fight", [1.0] * 3, [1] * 3)  # x = -1 after 3 frames: s < 0.5, missed
    fp = _video("n1", "Normal", [1.0] * 5, [0] * 5)
    tn = _video("n2", "Normal", [0.2] * 5, [0] * 5)
    assert hit.predicted and not short.predicted and fp.predicted and not tn.predicted
    m = video_level([hit, short, fp, tn])
    assert (m["vl_tp"], m["vl_fp"], m["vl_fn"], m["vl_tn"]) == (1, 1, 1, 1)
    assert m["vl_f1"] == pytest.approx(0.5)  # 2·1 / (2·1 + 1 + 1)
    assert m["vl_tpr"] == pytest.approx(0.5) and m["vl_fpr"] == pytest.approx(0.5)


def test_frame_level_auc_by_hand():
    # positives {0.9, 0.4}, negatives {0.5, 0.1}: pairs ranked right 3 of 4 -> AUC 0.75
    a = _video("a", "Fight", [0.9, 0.4], [1, 1])
    n = _video("n", "Normal", [0.5, 0.1], [0, 0])
    assert frame_level_auc([a, n]) == pytest.approx(0.75)
    assert math.isnan(frame_level_auc([n]))
    # per class: each class's frames against the normal videos' frames only
    f = _video("f", "Fall", [0.05, 0.6], [1, 1])  # 0.05 < both negatives, 0.6 > both: 2 of 4 pairs
    assert frame_level_auc_per_class([a, f, n]) == pytest.approx({"Fight": 0.75, "Fall": 0.5})


def test_validation_split_is_stratified_and_disjoint():
    class V:
        def __init__(self, name, category):
            self.name, self.category = name, category

    test = [V(f"f{i}", "Fighting") for i in range(4)] + [V(f"n{i}", "Normal") for i in range(6)]
    val, held = split_validation(test, 0.5, seed=0)
    assert {v.name for v in val}.isdisjoint({v.name for v in held})
    assert sum(v.category == "Fighting" for v in val) == 2 and sum(v.category == "Normal" for v in val) == 3


def test_variant_names_follow_table_1(tmp_path):
    base = {"data": tmp_path, "out": tmp_path / "m.pt"}
    assert TrainClassifierConfig(**base).variant == "2S-bag"
    cfg = TrainClassifierConfig(**base, model={"streams": 1, "bag": False}, hard_anomalies_only=True,
                                hard_mining={"enabled": False})
    assert cfg.variant == "1S-ha-no-hm"
    with pytest.raises(ValueError, match="class_weights"):
        TrainClassifierConfig(**base, class_weights=(1.0, 0.0))
