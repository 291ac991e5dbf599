"""models.data.synth: deterministic synthetic benchmark whose labels match what is drawn; read by vad_data."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from models.data.synth import KINDS, SynthParams, make_benchmark, plan, simulate_video
from models.data.vad import HARD, NORMAL, load_dataset, parse_vatic
from pvad.errors import ConfigError

TINY = SynthParams(seed=3, videos=6, frames=60, fps=10.0)  # 10 fps: whole 2-4 s events fit in 60 frames


def _frames(path: Path) -> np.ndarray:
    cap = cv2.VideoCapture(str(path))
    out = []
    while True:
        ok, f = cap.read()
        if not ok:
            break
        out.append(f)
    cap.release()
    return np.stack(out)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("synth") / "a"
    make_benchmark(out, TINY)
    return out


def test_layout_and_loader(tiny: Path) -> None:
    manifest = json.loads((tiny / "manifest.json").read_text())
    assert manifest["seed"] == 3 and manifest["params"]["frames"] == 60
    videos = {v["name"]: v for v in manifest["videos"]}
    assert sum(v["class"] == "Normal" for v in videos.values()) == 3
    ds = load_dataset(tiny)
    assert {v.name for v in ds.videos} == set(videos)
    for item in ds.videos:
        v = videos[item.name]
        assert (item.category, item.split, item.n_frames, item.fps) == (v["class"], v["split"], 60, 10.0)
        assert item.path == tiny / v["path"]
        if item.anomalous:  # HARD exactly during the event (train: from Vatic; test: Vatic ∪ temporal)
            (ev,) = v["events"]
            assert ev["kind"] == item.category
            assert np.flatnonzero(item.labels == HARD).tolist() == list(range(ev["onset"], ev["offset"] + 1))
            assert "vatic" in item.sources
        else:
            assert (item.labels == NORMAL).all() and v["events"] == []
    assert ds.split("test") and ds.split("train")
    assert any(v.anomalous for v in ds.split("test"))
    temporal = (tiny / "Temporal_Anomaly_Annotation_for_Testing_Videos.txt").read_text().splitlines()
    assert len(temporal) == len(ds.split("test"))
    for line in temporal:  # official format, 1-based
        name, cls, s1, e1, s2, e2 = line.split()
        if cls != "Normal":
            ev = videos[name[:-4]]["events"][0]
            assert (int(s1), int(e1), s2, e2) == (ev["onset"] + 1, ev["offset"] + 1, "-1", "-1")


def test_deterministic(tiny: Path, tmp_path: Path) -> None:
    again = tmp_path / "b"
    make_benchmark(again, TINY)
    names = ["manifest.json", "Anomaly_Train.txt", "Temporal_Anomaly_Annotation_for_Testing_Videos.txt"]
    names += [f"vatic/{p.name}" for p in sorted((tiny / "vatic").iterdir())]
    for name in names:
        assert (tiny / name).read_bytes() == (again / name).read_bytes(), name
    for v in json.loads((tiny / "manifest.json").read_text())["videos"][:3]:
        assert np.array_equal(_frames(tiny / v["path"]), _frames(again / v["path"])), v["name"]
    other = tmp_path / "c"
    make_benchmark(other, SynthParams(seed=4, videos=2, frames=60, fps=10.0))
    first = json.loads((tiny / "manifest.json").read_text())["videos"][0]["path"]
    assert not np.array_equal(_frames(tiny / first)[:5], _frames(other / first)[:5])
    make_benchmark(other, SynthParams(seed=4, videos=2, frames=60, fps=10.0))  # rewrite over its own output
    with pytest.raises(ConfigError, match="not empty"):
        make_benchmark(tmp_path, TINY)  # holds a, b, c but no manifest


def test_boxes_contain_the_drawn_figures(tiny: Path) -> None:
    """During events every visible (lost=0) box covers drawn foreground; outside all boxes is background."""
    manifest = json.loads((tiny / "manifest.json").read_text())
    checked = 0
    for v in manifest["videos"]:
        if v["class"] == "Normal":
            continue
        sv = simulate_video(TINY, v["index"], v["class"], v["name"])
        frames = _frames(tiny / v["path"])
        fg = np.abs(frames.astype(np.int16) - sv.background.astype(np.int16)).max(-1) > 40
        boxes, problems = parse_vatic(tiny / "vatic" / f"{v['name']}.txt")
        assert problems == []
        ev = v["events"][0]
        visible = [b for b in boxes if not b.lost]
        assert {b.frame for b in visible} == set(range(ev["onset"], ev["offset"] + 1))
        assert {b.track for b in visible} == set(ev["tracks"])
        for b in visible:
            x1, y1, x2, y2 = b.box
            inside = fg[b.frame, y1: y2 + 1, x1: x2 + 1]
            assert inside.mean() > 0.05, (v["name"], b)
            checked += 1
        for t in range(ev["onset"], ev["offset"] + 1, 5):
            outside = fg[t].copy()
            for x1, y1, x2, y2 in sv.all_boxes(t):
                outside[max(0, y1 - 2): y2 + 3, max(0, x1 - 2): x2 + 3] = False
            assert outside.mean() < 0.005, (v["name"], t)
    assert checked > 50


def test_anomalies_learnable_but_normal_walkers_vary() -> None:
    """Runners are clearly faster than any normal walker; normal videos still hold fast walkers and crossings."""
    p = SynthParams(seed=0, videos=8, frames=120, fps=25.0)
    normal_speeds, run_speeds = [], []
    for i in range(6):
        sv = simulate_video(p, i, "Running" if i % 2 else "Normal", f"v{i}")
        for f in sv.figures:
            speed = np.hypot(np.diff(f.x), np.diff(f.y) / 0.6) / (f.h[1:] / 50)
            if f.fid in sv.involved:
                ev = sv.events[0]
                run_speeds.append(np.median(speed[ev.onset + 4: ev.offset]))
            else:
                normal_speeds.append(speed.max())
    assert max(normal_speeds) > 1.8  # some normal walkers walk fast
    assert min(run_speeds) > 1.6 * np.percentile(normal_speeds, 90)


def test_plan_is_balanced_and_stratified() -> None:
    videos = plan(SynthParams(videos=40))
    classes = [v["class"] for v in videos]
    assert classes.count("Normal") == 20 and all(classes.count(k) == 5 for k in KINDS)
    test = [v for v in videos if v["split"] == "test"]
    assert len(test) == 12 and {v["class"] for v in test} == {"Normal", *KINDS}
    assert len({v["name"] for v in videos}) == 40
    with pytest.raises(ConfigError):
        plan(SynthParams(videos=0))


def test_cli_synth_and_index(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from pvad.cli import main

    out = tmp_path / "s"
    assert main(["synth", "--seed", "1", "--videos", "2", "--frames", "60", "--fps", "10", "--out", str(out),
                 "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["videos"] == 2
    assert main(["data", "index", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    total = summary["splits"]["train"]["videos"] + summary["splits"]["test"]["videos"]
    assert total == 2 and summary["splits"]["train"]["hard"] + summary["splits"]["test"]["hard"] > 0
