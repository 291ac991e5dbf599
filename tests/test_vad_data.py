"""models.data.vad: UCF-Crime lists, temporal/Vatic/Liu 2019 labels, problems, `pvad data index`."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.data.vad import (
    HARD,
    NORMAL,
    SOFT,
    liu2019_hard_mask,
    load_dataset,
    parse_temporal,
    parse_train_list,
    parse_vatic,
)
from pvad.errors import ConfigError
from pvad.samples import SHARED_DATA

UCF = SHARED_DATA / "ucf_crime"
LIU = SHARED_DATA / "ucf_crime_bbox_liu2019"


def _video(path: Path, n: int, fps: float = 25.0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    w = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (64, 48))
    for i in range(n):
        w.write(np.full((48, 64, 3), (i * 7) % 255, np.uint8))
    w.release()
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    """Official-format files over 5 short videos (one listed but missing, one on disk but unlisted)."""
    root = tmp_path / "ucf"
    _video(root / "Anomaly-Videos" / "Fighting" / "Fighting001_x264.mp4", 30)
    _video(root / "Anomaly-Videos" / "Fighting" / "Fighting002_x264.mp4", 30)
    _video(root / "Anomaly-Videos" / "Stealing" / "Stealing001_x264.mp4", 20)
    _video(root / "Training_Normal_Videos_Anomaly" / "Normal_Videos001_x264.mp4", 25)
    _video(root / "Testing_Normal_Videos_Anomaly" / "Normal_Videos003_x264.mp4", 15)
    _video(root / "extra" / "Orphan001_x264.mp4", 5)
    (root / "Anomaly_Train.txt").write_text(
        "Fighting/Fighting001_x264.mp4\nTraining_Normal_Videos_Anomaly/Normal_Videos001_x264.mp4\n"
        "Robbery/Robbery009_x264.mp4\nnot a path\n")
    (root / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").write_text(
        "Fighting002_x264.mp4  Fighting  3  5  10  12  \n"
        "Stealing001_x264.mp4  Stealing  1  4  -1  -1\n"
        "Normal_Videos003_x264.mp4  Normal  -1  -1  -1  -1\n"
        "Broken_x264.mp4 Fighting x y -1 -1\n")
    vatic = root / "vatic"
    vatic.mkdir()
    # track 0 visible frames 10..14, lost at 15..16; track 1 visible 13..16, occluded+generated at 16
    lines = [f'0 1 2 30 40 {f} {int(f >= 15)} 0 0 "person"' for f in range(8, 17)]
    lines += [f'1 5 5 20 20 {f} 0 {int(f == 16)} {int(f == 16)} "person"' for f in range(13, 17)]
    lines += ["0 1 2 3", 'x 1 2 3 4 5 0 0 0 "person"']
    (vatic / "Fighting001_x264.txt").write_text("\n".join(lines) + "\n")
    # test video with both sources: Vatic at 20..21 plus temporal 3..5, 10..12
    (vatic / "Fighting002_x264.txt").write_text('0 0 0 9 9 20 0 0 0 "person"\n0 0 0 9 9 21 0 0 0 "person"\n'
                                               '0 0 0 9 9 22 1 0 0 "person"\n')
    return root


def test_labels_splits_and_problems(tiny: Path) -> None:
    ds = load_dataset(tiny)
    by = {v.name: v for v in ds.videos}
    assert set(by) == {"Fighting001_x264", "Fighting002_x264", "Stealing001_x264", "Normal_Videos001_x264",
                       "Normal_Videos003_x264"}
    f1 = by["Fighting001_x264"]
    assert (f1.split, f1.category, f1.n_frames, f1.fps, f1.anomalous) == ("train", "Fighting", 30, 25.0, True)
    assert f1.labels.dtype == np.uint8 and f1.labels.shape == (30,)
    assert np.flatnonzero(f1.labels == HARD).tolist() == list(range(8, 17))  # lost=0 of track 0 (8..14) ∪ track 1
    assert (f1.labels[f1.labels != HARD] == SOFT).all()
    assert f1.sources == ("vatic",)
    f2 = by["Fighting002_x264"]  # temporal 1-based 3..5, 10..12 -> 2..4, 9..11; Vatic 20, 21 (22 is lost)
    assert f2.split == "test"
    assert np.flatnonzero(f2.labels == HARD).tolist() == [2, 3, 4, 9, 10, 11, 20, 21]
    assert (f2.labels[f2.labels != HARD] == SOFT).all()  # a sparse source makes the rest SOFT
    st = by["Stealing001_x264"]  # temporal only: rest NORMAL
    assert np.flatnonzero(st.labels == HARD).tolist() == [0, 1, 2, 3]
    assert (st.labels[4:] == NORMAL).all()
    assert not by["Normal_Videos001_x264"].labels.any() and not by["Normal_Videos003_x264"].anomalous
    assert [v.name for v in ds.split("test")] == ["Fighting002_x264", "Normal_Videos003_x264", "Stealing001_x264"]

    text = "\n".join(ds.problems)
    assert "Anomaly_Train.txt:3: video Robbery009_x264 not found" in text
    assert "Anomaly_Train.txt:4" in text  # "not a path"
    assert "Temporal_Anomaly_Annotation_for_Testing_Videos.txt:4" in text  # non-integer frames
    assert "Fighting001_x264.txt:14" in text and "Fighting001_x264.txt:15" in text  # short and non-numeric line
    assert "Orphan001_x264.mp4: in neither" in text
    assert "class 'Robbery' has no usable video in split 'train' (1 listed but missing)" in text
    assert "class 'Stealing' has no usable video in split 'train'" in text
    assert "1 of 6 listed videos missing" in text

    s = ds.summary()
    assert s["problems"] == len(ds.problems)
    assert s["splits"]["train"]["videos"] == 2 and s["splits"]["test"]["videos"] == 3
    assert s["splits"]["train"]["classes"]["Fighting"] == {"videos": 1, "frames": 30, "hard": 9, "soft": 21,
                                                           "normal": 0}
    assert s["splits"]["test"]["hard"] == 8 + 4


def test_annotation_modes(tiny: Path) -> None:
    tem = {v.name: v for v in load_dataset(tiny, annotations="temporal").videos}
    assert (tem["Fighting001_x264"].labels == SOFT).all()  # anomalous train video, no frame labels
    assert np.flatnonzero(tem["Fighting002_x264"].labels == HARD).tolist() == [2, 3, 4, 9, 10, 11]
    assert (tem["Fighting002_x264"].labels != SOFT).all()
    vat = {v.name: v for v in load_dataset(tiny, annotations="vatic").videos}
    assert np.flatnonzero(vat["Fighting002_x264"].labels == HARD).tolist() == [20, 21]
    with pytest.raises(ConfigError, match="liu2019"):
        load_dataset(tiny, annotations="liu2019")
    with pytest.raises(ConfigError, match="annotations"):
        load_dataset(tiny, annotations="bogus")


def test_liu2019_source(tiny: Path) -> None:
    (tiny / "annotations").mkdir()
    (tiny / "annotations" / "Train_annotation.json").write_text(json.dumps(
        {"videos": {"Fighting001_x264": [[3, 0, 0, 5, 5], [5, 0, 0, 5, 5]], "Ghost_x264": [[1, 0, 0, 1, 1]]}}))
    ds = load_dataset(tiny, annotations="liu2019")
    f1 = {v.name: v for v in ds.videos}["Fighting001_x264"]
    # 1-based 3, 5 -> 2, 4; one run, clip of 16 frames ending on each keyframe -> 0..4
    assert np.flatnonzero(f1.labels == HARD).tolist() == list(range(5))
    assert (f1.labels[5:] == SOFT).all() and f1.sources == ("liu2019",)
    assert any("Ghost_x264" in p for p in ds.problems)


def test_liu2019_rule() -> None:
    m = liu2019_hard_mask([17, 33, 49, 200], 300, max_gap=48, pad_before=4, pad_after=3, index_base=1)
    assert np.flatnonzero(m).tolist() == list(range(12, 52)) + list(range(195, 203))
    assert np.flatnonzero(liu2019_hard_mask([1, 298], 300, max_gap=16, pad_before=2, pad_after=2,
                                            index_base=1)).tolist() == [0, 1, 2, 295, 296, 297, 298, 299]
    assert np.flatnonzero(liu2019_hard_mask([20, 36], 100)).tolist() == list(range(4, 36))  # defaults: 16-frame clips
    assert np.flatnonzero(liu2019_hard_mask([20, 120], 200)).tolist() == list(range(4, 20)) + list(range(104, 120))
    assert not liu2019_hard_mask([], 10).any()


def test_vatic_parser_flags(tmp_path: Path) -> None:
    f = tmp_path / "v.txt"
    f.write_text('3 10 20 30 40 7 1 1 0 "Person"\n3 10 20 30 40 8 0 0 1 "Person" "walking"\n'
                 '3 10 20 30 40 -1 0 0 0 "Person"\n3 10 20 30 40 9 2 0 0 "Person"\n')
    boxes, problems = parse_vatic(f)
    assert [(b.frame, b.lost, b.occluded, b.generated, b.label) for b in boxes] == \
        [(7, True, True, False, "Person"), (8, False, False, True, "Person")]
    assert [p.split(": ")[0] for p in problems] == [f"{f}:3", f"{f}:4"]


def test_no_usable_video_raises(tmp_path: Path) -> None:
    (tmp_path / "Anomaly_Train.txt").write_text("Abuse/Abuse001_x264.mp4\n")
    with pytest.raises(ConfigError, match=str(tmp_path)):
        load_dataset(tmp_path)
    with pytest.raises(ConfigError, match="not a folder"):
        load_dataset(tmp_path / "nope")


def test_cli_data_index(tiny: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pvad.cli import main

    assert main(["data", "index", str(tiny), "--json"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["splits"]["test"]["classes"]["Fighting"]["hard"] == 8
    assert any("Robbery009_x264" in p for p in out["problem_list"])
    assert main(["data", "index", str(tiny), "--problems", "2"]) == 0
    text = capsys.readouterr().out
    assert "train: 2 videos" in text and "more (--problems 0 shows all)" in text
    assert main(["data", "index", str(tiny / "nope")]) == 2


@pytest.mark.skipif(not UCF.is_dir(), reason=f"{UCF} absent (shared data not staged)")
def test_real_ucf_crime_files() -> None:
    tem, problems = parse_temporal(UCF / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt")
    assert problems == [] and len(tem) == 290
    assert sum(e.category == "Normal" for e in tem.values()) == 150
    assert tem["Abuse028_x264"].segments == [(165, 240)]
    assert tem["Vandalism028_x264"].segments == [(1830, 1980), (2400, 2670)]
    train, problems = parse_train_list(UCF / "Anomaly_Train.txt")
    assert problems == [] and len(train) == 1610
    assert sum(c == "Normal" for c in train.values()) == 800 and train["Abuse001_x264"] == "Abuse"
    assert not set(train) & set(tem)
    with pytest.raises(ConfigError, match="no usable video"):  # annotation files only, no video
        load_dataset(UCF)


@pytest.mark.skipif(not LIU.is_dir(), reason=f"{LIU} absent (shared data not staged)")
def test_real_liu2019_inside_temporal_segments() -> None:
    from models.data.vad import load_liu2019

    liu, problems = load_liu2019(LIU / "Test_annotation.json")
    assert problems == [] and len(liu) == 140
    tem, _ = parse_temporal(UCF / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt")
    tp = fp = 0
    for name, ks in liu.items():
        n = max(e for _, e in tem[name].segments) + 200
        truth = np.zeros(n, bool)
        for s, e in tem[name].segments:
            truth[s - 1: e] = True
        m = liu2019_hard_mask(ks, n)
        tp, fp = tp + int((m & truth).sum()), fp + int((m & ~truth).sum())
    assert tp / (tp + fp) > 0.99  # the rule's HARD frames are nearly all inside the official segments


@pytest.mark.skipif(not (UCF.is_dir() and LIU.is_dir()), reason="shared UCF-Crime annotation files absent")
def test_real_annotations_from_other_folders(tmp_path: Path) -> None:
    """Videos in one folder, the staged official + Liu files found through annotation_dirs."""
    _video(tmp_path / "Abuse" / "Abuse028_x264.mp4", 260)
    ds = load_dataset(tmp_path, annotation_dirs=[UCF, LIU])
    (v,) = ds.videos
    assert (v.split, v.category, v.sources) == ("test", "Abuse", ("temporal", "liu2019"))
    hard = np.flatnonzero(v.labels == HARD)
    assert hard[0] == 164 and hard[-1] == 239  # temporal 165..240 (1-based) ⊇ Liu keyframes 180..228 ± 15
    assert (v.labels[:164] == SOFT).all() and (v.labels[240:] == SOFT).all()
    assert sum("not found under" in p for p in ds.problems) == 290 + 1610 - 1
    with pytest.raises(ConfigError, match="not a folder"):
        load_dataset(tmp_path, annotation_dirs=[tmp_path / "nope"])
