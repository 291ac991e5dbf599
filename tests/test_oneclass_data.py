"""One-class datasets (Ped2 layouts) and frame folders as camera sources."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scipy.io import savemat

from camera_client.capture import iter_frames
from conftest import SHARED_DATA, needs_shared
from models.data.oneclass import load_oneclass_dataset, ranges_to_labels, read_ucsd_m
from pvad.cli import main
from pvad.config import CaptureConfig
from pvad.errors import ConfigError, SourceError

PED2 = SHARED_DATA / "ucsd_ped2"


def _frames(folder, n, *, start=0, ext=".jpg", skip=()):
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(str(folder)))
    for i in range(start, start + n):
        if i not in skip:
            cv2.imwrite(str(folder / f"{i:03d}{ext}"), rng.integers(0, 255, (24, 36, 3), dtype=np.uint8))


def _mat(path, ranges_per_video):
    gt = np.empty((1, len(ranges_per_video)), dtype=object)
    for i, ranges in enumerate(ranges_per_video):
        gt[0, i] = np.array(ranges, dtype=np.float64).T.reshape(2, -1)
    savemat(str(path), {"gt": gt})


def tiny_ped2(root, test_lengths=(5, 6), ranges=([(2, 4)], [(1, 1), (5, 6)])):
    for v in ("01", "02"):
        _frames(root / "training" / "frames" / v, 4)
    for v, n in zip(("01", "02"), test_lengths):
        _frames(root / "testing" / "frames" / v, n)
    _mat(root / "ped2.mat", list(ranges))
    return root


def test_ped2_layout_ranges_are_one_based_and_inclusive(tmp_path):
    ds = load_oneclass_dataset(tiny_ped2(tmp_path / "ped2"))
    assert ds.name == "ped2" and ds.fps == 10.0 and ds.layout == "frames"
    assert [len(v) for v in ds.train] == [4, 4]
    assert ds.test[0].labels.tolist() == [0, 1, 1, 1, 0]  # [2; 4]: the 2nd to the 4th frame
    assert ds.test[1].labels.tolist() == [1, 0, 0, 0, 1, 1]  # two ranges in one cell
    assert ds.test[0].frames[0].name == "000.jpg"  # frame 1 of the ground truth is 000.jpg
    assert ds.summary()["anomalous_test_frames"] == 6


def test_official_ucsd_layout(tmp_path):
    root = tmp_path / "UCSD_Anomaly_Dataset.v1p2" / "UCSDped2"
    _frames(root / "Train" / "Train001", 3, start=1, ext=".tif")
    _frames(root / "Test" / "Test001", 4, start=1, ext=".tif")
    _frames(root / "Test" / "Test002", 4, start=1, ext=".tif")
    (root / "Test" / "Test001_gt").mkdir()  # pixel masks of some test videos: not a video
    (root / "Test" / "UCSDped2.m").write_text(
        "TestVideoFile = {};\nTestVideoFile{end+1}.gt_frame = [2:3];\nTestVideoFile{end+1}.gt_frame = [1:1, 4:4];\n")
    ds = load_oneclass_dataset(tmp_path / "UCSD_Anomaly_Dataset.v1p2")
    assert ds.layout == "ucsd" and ds.name == "ped2"
    assert [v.labels.tolist() for v in ds.test] == [[0, 1, 1, 0], [1, 0, 0, 1]]
    assert read_ucsd_m(root / "Test" / "UCSDped2.m") == [[(2, 3)], [(1, 1), (4, 4)]]


def test_bad_datasets_are_refused_with_the_file_named(tmp_path):
    with pytest.raises(ConfigError, match=r"02.*outside the video's frames 1-5"):
        load_oneclass_dataset(tiny_ped2(tmp_path / "a", test_lengths=(5, 5), ranges=([(2, 4)], [(3, 7)])))
    gap = tiny_ped2(tmp_path / "b")
    (gap / "testing" / "frames" / "01" / "002.jpg").unlink()
    with pytest.raises(ConfigError, match=r"01: missing frame\(s\) 2"):
        load_oneclass_dataset(gap)
    few = tiny_ped2(tmp_path / "c")
    _mat(few / "ped2.mat", [[(1, 2)]])
    with pytest.raises(ConfigError, match="labels for 1 test videos, but 2"):
        load_oneclass_dataset(few)
    bad = tiny_ped2(tmp_path / "d")
    (bad / "ped2.mat").write_bytes(b"not a mat file")
    with pytest.raises(ConfigError, match="ped2.mat: not a label file"):
        load_oneclass_dataset(bad)
    with pytest.raises(ConfigError, match="neither"):
        load_oneclass_dataset(tmp_path)


def test_ranges_to_labels_rejects_empty_and_reversed_ranges():
    assert ranges_to_labels([], 3, where="x").tolist() == [0, 0, 0]
    with pytest.raises(ConfigError):
        ranges_to_labels([(3, 2)], 5, where="x")
    with pytest.raises(ConfigError):
        ranges_to_labels([(0, 2)], 5, where="x")


def test_data_index_reads_a_oneclass_dataset(tmp_path, capsys):
    root = tiny_ped2(tmp_path / "ped2")
    assert main(["data", "index", str(root), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["dataset"] == "ped2" and out["test_frames"] == 11 and out["anomalous_test_frames"] == 6


def test_a_frame_folder_is_a_camera_source(tmp_path):
    _frames(tmp_path / "clip", 6)
    frames = list(iter_frames(CaptureConfig(source=str(tmp_path / "clip"), target_fps=10.0)))
    assert len(frames) == 6 and frames[0].bgr.shape == (240, 320, 3)
    # a folder recorded at 10 fps, sampled to 5 fps: every other image
    assert len(list(iter_frames(CaptureConfig(source=str(tmp_path / "clip"), target_fps=5.0, source_fps=10.0)))) == 3
    _frames(tmp_path / "gappy", 5, skip=(2,))
    with pytest.raises(SourceError, match="missing frame"):
        list(iter_frames(CaptureConfig(source=str(tmp_path / "gappy"))))


@needs_shared
@pytest.mark.shared_data
def test_the_shipped_ped2_copy_matches_its_provenance():
    ds = load_oneclass_dataset(PED2)
    s = ds.summary()
    assert (s["train_videos"], s["train_frames"], s["test_videos"], s["test_frames"]) == (16, 2550, 12, 2010)
    assert s["anomalous_test_frames"] == 1648
    assert ds.test[0].labels[:60].sum() == 0 and ds.test[0].labels[60:].all()  # 61-180
