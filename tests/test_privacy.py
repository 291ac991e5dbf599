"""Privacy evaluation: face detectors, face embeddings, re-identification, the latent Gaussian
mechanism's ε, and the end-to-end evaluation on the untrained autoencoder."""

from __future__ import annotations

import importlib.util
import itertools
import math
import sys

import cv2
import numpy as np
import pytest
from conftest import SHARED_DATA  # noqa: E402

from models.eval import faces
from models.latent_noise import (
    clip_latent,
    gaussian_delta,
    gaussian_epsilon,
    privatize_latent,
    sigma_for_epsilon,
)
from pvad.errors import ModelLoadError

VISPR = SHARED_DATA / "la3d" / "vispr"
needs_vispr = pytest.mark.skipif(not VISPR.is_dir(), reason="needs ../shared/data/la3d/vispr (absent on this clone)")
needs_dlib = pytest.mark.skipif(importlib.util.find_spec("dlib") is None, reason="dlib not installed (pvad[faces])")
skimage_data = pytest.importorskip("skimage.data")


@pytest.fixture(scope="module")
def astronaut() -> np.ndarray:
    """scikit-image's astronaut (one frontal face) as the camera sends it: 240×320 RGB."""
    return cv2.resize(skimage_data.astronaut(), (320, 240), interpolation=cv2.INTER_AREA)


@pytest.fixture(scope="module")
def detectors() -> dict[str, faces.FaceDetector]:
    return faces.available_face_detectors()


@pytest.fixture(scope="module")
def embedder() -> faces.FaceEmbedder:
    if importlib.util.find_spec("dlib") is None:
        pytest.skip("dlib not installed (pvad[faces])")
    return faces.FaceEmbedder()


# --------------------------------------------------------------------------- detectors


@pytest.mark.parametrize("name", ["haar", pytest.param("dlib_hog", marks=needs_dlib)])
def test_detector_finds_the_astronauts_face(name, detectors, astronaut):
    boxes = detectors[name].detect(astronaut)
    assert boxes.shape == (1, 4) and boxes.dtype == np.int64
    x0, y0, x1, y1 = boxes[0]
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    # her face is in the upper middle: about x 110-170, y 25-85 of the 320×240 frame
    assert 0.3 * 320 < cx < 0.6 * 320 and 0.1 * 240 < cy < 0.4 * 240, boxes
    assert 35 <= x1 - x0 <= 90 and 35 <= y1 - y0 <= 90, boxes


@pytest.mark.parametrize("name", ["haar", pytest.param("dlib_hog", marks=needs_dlib)])
def test_detector_finds_nothing_in_blank_or_noise(name, detectors):
    blank = np.full((240, 320, 3), 128, np.uint8)
    noise = np.random.default_rng(0).integers(0, 256, (240, 320, 3), dtype=np.uint8)
    assert detectors[name].detect(blank).shape == (0, 4)
    assert detectors[name].detect(noise).shape == (0, 4)


def test_detector_rejects_non_rgb_uint8(detectors):
    with pytest.raises(ValueError, match="RGB uint8"):
        detectors["haar"].detect(np.zeros((240, 320), np.uint8))


def test_missing_haar_cascade_is_a_model_load_error(monkeypatch, tmp_path):
    monkeypatch.setattr(cv2.data, "haarcascades", str(tmp_path) + "/")
    with pytest.raises(ModelLoadError, match="Haar cascade"):
        faces.HaarFaces()


def test_missing_dlib_or_models_say_how_to_install(monkeypatch):
    monkeypatch.setattr(faces.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ModelLoadError, match=r"pvad\[faces\]"):
        faces.dlib_model_path("shape_predictor_5_face_landmarks.dat")
    monkeypatch.setitem(sys.modules, "dlib", None)  # makes `import dlib` raise ImportError
    with pytest.raises(ModelLoadError, match=r"pvad\[faces\]"):
        faces.DlibFaces()
    assert list(faces.available_face_detectors()) == ["haar"]


def test_merge_boxes_counts_overlapping_detections_once():
    a = np.array([[10, 10, 50, 50], [100, 100, 130, 130]])
    b = np.array([[12, 12, 52, 52], [200, 10, 230, 40]])
    merged = faces.merge_boxes([a, b])
    assert merged.tolist() == [[10, 10, 50, 50], [100, 100, 130, 130], [200, 10, 230, 40]]
    assert faces.box_iou(a, a).diagonal().tolist() == [1.0, 1.0]


# --------------------------------------------------------------------------- embeddings


def test_embedder_same_person_close_other_person_far(embedder, detectors, astronaut):
    box = detectors["haar"].detect(astronaut)[0]
    ref = embedder.embed(astronaut, box)
    assert ref.shape == (128,)
    moved = np.clip(np.roll(astronaut, (3, 4), axis=(0, 1)).astype(int) + 25, 0, 255).astype(np.uint8)
    assert np.linalg.norm(ref - embedder.embed(moved, box + [4, 3, 4, 3])) < 0.3  # measured 0.13
    # an LFW face of someone else (a man), 25×25 upscaled: measured 0.87
    lfw = cv2.resize((skimage_data.lfw_subset()[0] * 255).astype(np.uint8), (100, 100), interpolation=cv2.INTER_CUBIC)
    other = cv2.copyMakeBorder(cv2.cvtColor(lfw, cv2.COLOR_GRAY2RGB), 25, 25, 25, 25, cv2.BORDER_REPLICATE)
    assert np.linalg.norm(ref - embedder.embed(other, [25, 25, 125, 125])) > faces.SAME_PERSON_DISTANCE


def test_reidentification_identical_blank(embedder, detectors, astronaut):
    from models.eval.privacy import reidentification

    same = reidentification(embedder, [astronaut], [astronaut.copy()], detectors=detectors)
    assert same["reid_top1"] == 1.0 and same["reid_top1_known_boxes"] == 1.0
    assert same["faces_original"] == 1 and same["distractors"] == 4 and same["known_boxes_mean_distance"] == 0.0
    blank = reidentification(embedder, [astronaut], [np.full_like(astronaut, 128)], detectors=detectors)
    assert blank["reid_top1"] == 0.0 and blank["probes"] == 0
    assert blank["reid_top1_known_boxes"] == 0.0  # a grey face box is > 0.6 from her (measured 0.80)


# --------------------------------------------------------------------------- latent Gaussian mechanism


def _independent_delta(eps: float, s: float) -> float:
    """Balle & Wang 2018 Thm 8 with scipy's normal CDF (independent of latent_noise's erfc code)."""
    from scipy.special import ndtr

    return float(ndtr(1 / (2 * s) - eps * s) - math.exp(eps) * ndtr(-1 / (2 * s) - eps * s))


def test_gaussian_epsilon_known_value_and_inverse():
    eps = gaussian_epsilon(1.0, 1e-5)
    assert eps == pytest.approx(4.37718, abs=1e-4)
    assert abs(_independent_delta(eps, 1.0) - 1e-5) < 1e-9
    assert abs(gaussian_delta(eps, 1.0) - 1e-5) < 1e-9
    # the inverse: ε = 1, δ = 1e-5 needs σ ≈ 3.73 Δ (Balle & Wang's example; the classic bound says 4.84)
    sigma = sigma_for_epsilon(1.0, 1e-5, sensitivity=2.0)
    assert sigma / 2.0 == pytest.approx(3.7306, abs=1e-3)
    assert gaussian_epsilon(sigma / 2.0, 1e-5) == pytest.approx(1.0, abs=1e-6)


def test_gaussian_epsilon_decreases_with_sigma_and_composes():
    values = [gaussian_epsilon(s, 1e-5) for s in (0.1, 0.3, 1.0, 3.0, 10.0, 100.0)]
    assert all(a > b for a, b in itertools.pairwise(values)) and values[-1] >= 0.0
    assert gaussian_epsilon(2.0, 1e-5, frames=4) == pytest.approx(gaussian_epsilon(1.0, 1e-5), rel=1e-9)
    assert gaussian_epsilon(1.0, 1e-5, frames=10) > gaussian_epsilon(1.0, 1e-5)
    with pytest.raises(ValueError):
        gaussian_epsilon(1.0, 0.0)


def test_privatize_latent_clips_each_frame_then_adds_noise():
    rng = np.random.default_rng(0)
    z = rng.normal(0, 1, (3, 16, 30, 40)).astype(np.float32)
    z[1] *= 1e-3  # already inside the ball: unchanged
    clipped = clip_latent(z, 5.0)
    norms = np.linalg.norm(clipped.reshape(3, -1), axis=1)
    assert norms[0] == pytest.approx(5.0, rel=1e-5) and norms[2] == pytest.approx(5.0, rel=1e-5)
    np.testing.assert_array_equal(clipped[1], z[1])
    assert np.linalg.norm(clip_latent(z[0], 5.0)) == pytest.approx(5.0, rel=1e-5)  # one C×H×W frame
    noisy = privatize_latent(z, clip_norm=5.0, sigma=0.5, rng=np.random.default_rng(1))
    assert noisy.dtype == np.float32 and noisy.shape == z.shape
    assert np.std(noisy - clipped) == pytest.approx(0.5, rel=0.02)
    again = privatize_latent(z, clip_norm=5.0, sigma=0.5, rng=np.random.default_rng(1))
    np.testing.assert_array_equal(noisy, again)
    np.testing.assert_array_equal(privatize_latent(z, clip_norm=5.0, sigma=0.0, rng=rng), clipped)


# --------------------------------------------------------------------------- end to end

KEYS = {"mse", "psnr", "ssim", "faces_before", "faces_after", "reid_top1", "reid_top1_known_boxes", "reid",
        "epsilon", "delta", "encoder_id", "trained", "frames", "checkpoint", "attack"}


@needs_dlib
def test_evaluate_privacy_untrained_end_to_end(tmp_path, astronaut):
    from models.eval.privacy_report import evaluate_privacy

    cv2.imwrite(str(tmp_path / "astronaut.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "wall.png"), np.full((480, 640, 3), 90, np.uint8))
    out = tmp_path / "out"
    result = evaluate_privacy([None], [tmp_path / "astronaut.png", tmp_path / "wall.png"], attack=True,
                              out_dir=out, seed=0, attack_epochs=1, attack_public=4)
    assert list(result) == ["untrained"]
    r = result["untrained"]
    assert KEYS <= set(r), KEYS - set(r)
    assert r["trained"] is False and r["epsilon"] is None and r["frames"] == 2
    assert r["faces_before"] == {"haar": 1, "dlib_hog": 1, "total": 1}
    assert r["faces_after"]["total"] == 0 and r["reid_top1"] == 0.0  # untrained output is flat grey
    assert 0.0 < r["ssim"] < 0.9 and 0 < r["mse"] < 1 and math.isfinite(r["psnr"])
    attack = r["attack"]
    assert {"attack_mse", "attack_psnr", "attack_ssim", "ours_ssim", "attack_faces_after"} <= set(attack)
    assert attack["ours_ssim"] == pytest.approx(r["ssim"]) and attack["public_frames"] == 4
    assert {p.name for p in out.iterdir()} == {"privacy.json", "reconstructions.png", "faces_untrained.png"}


@needs_vispr
@needs_dlib
def test_vispr_faces_found_before_and_none_after_untrained():
    from models.eval.privacy_report import evaluate_privacy

    r = evaluate_privacy([None], sorted(VISPR.glob("*.jpg")), attack=False)["untrained"]
    assert r["frames"] == 3 and r["attack"] is None
    assert r["faces_before"]["total"] >= 3, r["faces_before"]  # measured: haar 4, dlib 4, union 7
    assert r["faces_after"]["total"] == 0 and r["reid_top1"] == 0.0


def test_evaluate_privacy_with_latent_noise(tmp_path, astronaut):
    from models.eval.privacy_report import evaluate_privacy
    from models.latent_noise import gaussian_epsilon

    cv2.imwrite(str(tmp_path / "astronaut.png"), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    result = evaluate_privacy([None], [tmp_path / "astronaut.png"], attack=False, seed=0,
                              latent_noise=(10.0, 2.0, 1e-5))
    assert list(result) == ["untrained", "untrained+noise"]
    noisy = result["untrained+noise"]
    assert noisy["frame_epsilon"] == pytest.approx(gaussian_epsilon(2.0 / 20.0, 1e-5))
    assert noisy["frame_delta"] == 1e-5 and noisy["latent_noise"] == {"clip_norm": 10.0, "sigma": 2.0}
    assert noisy["mse"] != pytest.approx(result["untrained"]["mse"], rel=1e-6)  # the noise changed the frames
