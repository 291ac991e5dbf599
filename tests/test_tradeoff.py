"""`pvad eval tradeoff` on one face photo and one short clip, with a small slice of the real UCSD Ped2
for the AUC column (the same layout: training/frames, testing/frames, ped2.mat)."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from conftest import SHARED_DATA, needs_shared
from scipy.io import savemat

from pvad.cli import main

PED2 = SHARED_DATA / "ucsd_ped2"
VISPR = SHARED_DATA / "la3d" / "vispr"
FACE_CLIP = SHARED_DATA / "intel_sample_videos" / "face-demographics-walking.gif"


def mini_ped2(root):
    """Training videos 01-02 (every frame) and test videos 01 (frames 30-89, anomalous from 61) and
    04 (0-59, anomalous from 31), as a Ped2-layout dataset with its ped2.mat."""
    for v in ("01", "02"):
        shutil.copytree(PED2 / "training" / "frames" / v, root / "training" / "frames" / v)
    cuts = {"01": range(30, 90), "04": range(60)}
    gt = np.empty((1, 2), dtype=object)
    for i, (v, frames) in enumerate(cuts.items()):
        dst = root / "testing" / "frames" / v
        dst.mkdir(parents=True)
        for k, f in enumerate(frames):
            shutil.copy(PED2 / "testing" / "frames" / v / f"{f:03d}.jpg", dst / f"{k:03d}.jpg")
    gt[0, 0] = np.array([[61 - 30 + 1], [60]], np.float64)  # 1-based, inclusive
    gt[0, 1] = np.array([[31 + 1], [60]], np.float64)
    savemat(str(root / "ped2.mat"), {"gt": gt})
    return root


@needs_shared
def test_tradeoff_table_on_one_photo_and_one_clip(tmp_path, capsys):
    data = mini_ped2(tmp_path / "ped2")
    attack = tmp_path / "attack.yaml"
    attack.write_text(f"kind: attack-whitebox\nwidth: 16\nblocks: 1\nbatch_size: 2\nmax_pool_frames: 40\n"
                      f"cache_dir: {tmp_path / 'cache'}\npublic: [{PED2 / 'training' / 'frames' / '03'}]\n")
    photo = sorted(VISPR.glob("*.jpg"))[0]
    out = tmp_path / "out"
    rc = main(["eval", "tradeoff", str(photo), str(FACE_CLIP), "--data", str(data), "--modes", "none", "blur",
               "dp-encoder", "--whitebox", "--attack-config", str(attack), "--attack-steps", "2",
               "--max-frames-per-video", "2", "--out", str(out), "--json", "--no-progress"])
    assert rc == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    rows = result["modes"]
    assert set(rows) == {"none", "blur", "dp-encoder"}
    for key, row in rows.items():
        assert 0.0 <= row["auc"] <= 1.0 and row["dataset"] == "ped2", key
        assert row["faces_before"] >= 1 and row["bytes_per_frame"] > 0 and row["camera_ms_per_frame"] > 0
    assert rows["none"]["faces_after"] >= 1 and rows["none"]["ssim"] == pytest.approx(1.0, abs=0.05)
    assert rows["dp-encoder"]["payload"] == "latent" and rows["dp-encoder"]["attack_budget"]["steps"] == 2
    assert "attack_ssim" not in rows["none"]  # an image anonymizer has no encoder to attack
    assert (out / "tradeoff.png").is_file() and "| dp-encoder |" in (out / "tradeoff.md").read_text()
