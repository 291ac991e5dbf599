"""The pretrained-feature probe (models/eval/probe_features.py): its flow statistics and an end-to-end run."""

import numpy as np
import pytest

from models.data.synth import SynthParams, make_benchmark
from models.eval.probe_features import flow_statistics, probe
from pvad.samples import YOLO_FASTEST

needs_yolo = pytest.mark.skipif(not (YOLO_FASTEST / "yolo-fastest-1.1.weights").is_file(),
                                reason="needs the YOLO-Fastest files of ../shared/data")


def test_flow_statistics_weigh_motion_where_people_are():
    flow = np.zeros((1, 240, 320, 3), np.uint8)
    flow[0, :120, :, 2] = 255  # full-scale motion in the top half only
    top = np.zeros((1, 10, 10), np.float32)
    top[0, :5] = 1.0  # a "person" covering the top half of the map
    s = flow_statistics(flow, [top, 1.0 - top])
    assert s.shape == (1, 7 + 2 * 2)
    assert s[0, 0] == pytest.approx(0.5) and s[0, 1] == pytest.approx(1.0)
    assert s[0, 7] == pytest.approx(1.0, rel=1e-3) and s[0, 8] == pytest.approx(1.0)  # where the person is: all motion
    assert s[0, 9] == 0.0 and s[0, 10] == 0.0  # where the other map sees people: none


@needs_yolo
def test_probe_runs_end_to_end_on_tiny_synthetic_sets(tmp_path):
    make_benchmark(tmp_path / "train", SynthParams(seed=5, videos=6, frames=60, fps=10.0, test_fraction=0.0))
    make_benchmark(tmp_path / "heldout", SynthParams(seed=6, videos=4, frames=60, fps=10.0))
    r = probe(tmp_path / "train", tmp_path / "heldout", cache_dir=tmp_path / "cache", variant="yolo-fastest-1.1")
    assert r["train_frames"] == 6 * 30 and r["heldout_frames"] == 4 * 30  # 5 of every 10 frames/s
    assert len(r["probes"]) == 6
    for v in r["probes"].values():
        assert 0.0 <= v["fl_auc"] <= 1.0
        assert set(v["by_kind"]) <= {"Fighting", "Fall", "Running", "Throwing"}
