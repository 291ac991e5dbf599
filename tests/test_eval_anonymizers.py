"""`pvad eval anonymizers` (models/eval/anonymizers.py) on a tiny generated set, and its AP."""

import json

import cv2
import numpy as np
import pytest

from camera_client.anonymize import list_anonymizers
from models.eval.anonymizers import (
    HARDENED,
    LA3D_BASELINES,
    average_precision,
    default_mode_configs,
    nmi,
)
from pvad import samples
from pvad.cli import main


def test_average_precision_hand_cases():
    gt = [np.array([[0, 0, 10, 10]]), np.array([[20, 20, 40, 40]])]
    hit0, hit1, miss = np.array([[0, 0, 10, 10]]), np.array([[21, 21, 40, 40]]), np.array([[50, 50, 60, 60]])
    assert average_precision(gt, [hit0, hit1], [np.array([0.9]), np.array([0.8])]) == pytest.approx(1.0)
    # a false positive ranked first: precision 1/2 at recall 1/2, 2/3 at recall 1; the interpolated
    # precision at recall 1/2 is the best at any recall >= 1/2, i.e. 2/3
    got = average_precision(gt, [np.concatenate([miss, hit0]), hit1], [np.array([0.95, 0.9]), np.array([0.8])])
    assert got == pytest.approx(2 / 3)
    # the false positive ranked last: recall 1 at precision 1
    got = average_precision(gt, [np.concatenate([miss, hit0]), hit1], [np.array([0.5, 0.9]), np.array([0.8])])
    assert got == pytest.approx(1.0)
    assert average_precision(gt, [hit0, np.zeros((0, 4))], [np.array([0.9]), np.zeros(0)]) == pytest.approx(0.5)
    # a duplicate of a matched box is a false positive
    assert average_precision(gt[:1], [np.concatenate([hit0, hit0])], [np.array([0.9, 0.8])]) == pytest.approx(1.0)
    assert average_precision(gt, [np.zeros((0, 4))] * 2, [np.zeros(0)] * 2) == 0.0
    assert average_precision([np.zeros((0, 4))], [hit0], [np.array([0.9])]) is None


def test_nmi_range():
    rng = np.random.default_rng(0)
    a = (rng.random((60, 80, 3)) * 255).astype(np.uint8)
    assert nmi(a, a) == pytest.approx(2.0)
    assert nmi(a, (rng.random((60, 80, 3)) * 255).astype(np.uint8)) < 1.1


def default_modes() -> set[str]:
    """Every registered anonymizer, the LA3D baselines and the hardened DP pair when it ships."""
    from pvad.config import SHIPPED_HARDENED_AUTOENCODER

    return set(list_anonymizers()) | set(LA3D_BASELINES) | ({HARDENED} if SHIPPED_HARDENED_AUTOENCODER.is_file() else set())


def test_default_modes_are_every_registered_one_plus_baselines():
    configs = default_mode_configs()
    assert set(configs) == default_modes()
    assert configs[HARDENED].checkpoint.name == "autoencoder-dp-hardened.pt"
    with pytest.raises(ValueError, match="known: .*adaptive-blur"):
        default_mode_configs(["nope"])


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory):
    """Generated frames from a real photo of a person (scikit-image's astronaut), shifted: two as
    images and four as a short clip."""
    from skimage import data

    d = tmp_path_factory.mktemp("tiny")
    photo = cv2.resize(cv2.cvtColor(data.astronaut(), cv2.COLOR_RGB2BGR), (320, 240), interpolation=cv2.INTER_AREA)
    frames = [np.roll(photo, 8 * k, axis=1) for k in range(4)]
    cv2.imwrite(str(d / "a.png"), frames[0])
    cv2.imwrite(str(d / "b.png"), frames[1])
    clip = cv2.VideoWriter(str(d / "clip.avi"), cv2.VideoWriter_fourcc(*"MJPG"), 10, (320, 240))
    for f in frames:
        clip.write(f)
    clip.release()
    return d


def test_eval_command_json_has_every_mode(tiny_set, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["-q", "eval", "anonymizers", "--json", "--no-progress", "--out", str(out), "--every-n", "2",
               "--max-frames-per-video", "1", str(tiny_set / "a.png"), str(tiny_set / "clip.avi")])
    assert rc == 0
    result = json.loads(capsys.readouterr().out)
    assert result["meta"]["frames"] == 2  # 1 image + 1 clip frame
    modes = result["modes"]
    assert set(modes) == default_modes()
    ours = ["none", "dp-encoder", HARDENED, "blur:person", "pixelate:person", *[m for m in modes if m in (
        "blur", "pixelate", "mask", "edge", "adaptive-blur", "adaptive-full-blur", "adaptive-max-blur",
        "adaptive-pixelate", "adaptive-max-pixelate")]]
    for m in ours:
        r = modes[m]
        assert "error" not in r, (m, r)
        assert r["ms_per_frame"] > 0 and r["bytes_per_frame"] > 0 and r["traced_peak_mb"] >= 0
        for k in ("ssim", "psnr", "mse", "nmi", "faces_before", "faces_after", "person_count_mae"):
            assert k in r, (m, k)
    assert modes["none"]["ssim"] > 0.9 and modes["none"]["nmi"] > modes["blur"]["nmi"]
    assert modes["dp-encoder"]["payload"] == "latent" and modes["dp-encoder"]["ssim"] is not None
    assert modes["adaptive-blur"]["overhead_vs"] == "blur:person" and modes["adaptive-blur"]["ms_ratio_vs_plain"] > 0
    assert modes["adaptive-blur"]["policy"]["frames"] == 2
    assert (out / "anonymizers.json").is_file() and (out / "tradeoff.png").is_file()
    assert json.loads((out / "anonymizers.json").read_text())["modes"].keys() == modes.keys()


def test_eval_command_table(tiny_set, capsys):
    rc = main(["-q", "eval", "anonymizers", "--no-progress", "--modes", "mask", "none", "--", str(tiny_set / "a.png")])
    assert rc == 0
    text = capsys.readouterr().out
    assert text.splitlines()[0].split()[:2] == ["mode", "ms/fr"]
    assert any(line.startswith("mask ") for line in text.splitlines())


needs_shared = pytest.mark.skipif(not samples.SHARED_DATA.is_dir(), reason=f"no shared data at {samples.SHARED_DATA}")


@needs_shared
def test_eval_on_a_real_photo_gives_person_ap():
    from models.eval.anonymizers import evaluate_anonymizers

    photo = samples.SHARED_DATA / "la3d" / "vispr" / "2017_29342011.jpg"
    if not photo.is_file():
        pytest.skip(f"{photo} is missing")
    r = evaluate_anonymizers([photo], modes=["none", "mask", "blur:person", "adaptive-blur"], progress=False)
    assert r["meta"]["gt_person_boxes"] > 0
    modes = r["modes"]
    assert modes["none"]["person_ap50"] > modes["mask"]["person_ap50"]
    assert modes["adaptive-blur"]["ms_ratio_vs_plain"] > 0
