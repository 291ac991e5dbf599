"""Person-region and LA3D adaptive anonymizers (camera_client/anonymize/regions.py)."""

import logging
import subprocess
import sys

import cv2
import numpy as np
import pytest

from analysis_server.detectors import Detections
from camera_client.anonymize import create_anonymizer, list_anonymizers
from camera_client.anonymize.regions import (
    REGION_MODES,
    RegionImageAnonymizer,
    gaussian,
    la3d_adaptive_size,
    person_boxes,
    pixelate,
)
from pvad import samples
from pvad.config import (
    AdaptiveBlurAnonymizer,
    AdaptiveFullBlurAnonymizer,
    AdaptiveMaxBlurAnonymizer,
    AdaptiveMaxPixelateAnonymizer,
    AdaptivePixelateAnonymizer,
    BlurAnonymizer,
    MaskAnonymizer,
    NoDetector,
    ServerConfig,
    load_config,
)
from pvad.errors import ConfigError, PolicyRefused
from pvad.v1 import pvad_pb2

H, W = 240, 320
BOX = (100, 40, 180, 200)  # x0, y0, x1, y1: 80 x 160 px


def noise_frame(seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((H, W, 3)) * 255).astype(np.uint8)


class FakeDetector:
    """Returns the given person boxes on every call (or raises, or nothing)."""

    name = "fake"

    def __init__(self, *boxes, fail: bool = False) -> None:
        self.boxes, self.fail, self.calls = list(boxes), fail, 0

    def detect(self, frame):
        self.calls += 1
        if self.fail:
            raise RuntimeError("detector exploded")
        return Detections.from_arrays(np.array(self.boxes, np.float32).reshape(-1, 4),
                                      np.full(len(self.boxes), 0.9), np.zeros(len(self.boxes)))


class Script(FakeDetector):
    """Per call, the next entry: a list of boxes, or the string "fail"."""

    def __init__(self, *steps) -> None:
        super().__init__()
        self.steps = list(steps)

    def detect(self, frame):
        step = self.steps[min(self.calls, len(self.steps) - 1)]
        self.calls += 1
        if step == "fail":
            raise RuntimeError("detector exploded")
        return Detections.from_arrays(np.array(step, np.float32).reshape(-1, 4), np.full(len(step), 0.9),
                                      np.zeros(len(step)))


def inside(img: np.ndarray, box=BOX) -> np.ndarray:
    x0, y0, x1, y1 = box
    return img[y0:y1, x0:x1]


def outside_mask(box=BOX) -> np.ndarray:
    m = np.ones((H, W), bool)
    x0, y0, x1, y1 = box
    m[y0:y1, x0:x1] = False
    return m


# --------------------------------------------------------------------------- every mode on a known box


@pytest.mark.parametrize("name", sorted(REGION_MODES))
def test_person_region_changes_the_box_and_nothing_else(name):
    frame = noise_frame()
    anon = RegionImageAnonymizer(REGION_MODES[name](region="person"), detector=FakeDetector(BOX))
    out = anon.anonymize(frame)
    assert out.shape == frame.shape and out.dtype == np.uint8
    diff = np.abs(out.astype(int) - frame.astype(int))
    assert inside(diff).mean() > 30, "the person box must be anonymized"
    assert (diff[outside_mask()] == 0).all(), "pixels outside the person box must be untouched"
    assert anon.stats()["frames_with_people"] == 1 and anon.stats()["boxes"] == 1
    payload = anon(frame)  # the wire payload: a JPEG image named after the mode
    assert isinstance(payload, pvad_pb2.Image) and payload.anonymizer == name
    img = cv2.imdecode(np.frombuffer(payload.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.shape == frame.shape


@pytest.mark.parametrize("name", sorted(REGION_MODES))
def test_frame_region_changes_the_whole_frame(name):
    frame = noise_frame(1)
    detector = FakeDetector(BOX)
    anon = RegionImageAnonymizer(REGION_MODES[name](region="frame"), detector=detector)
    out = anon.anonymize(frame)
    assert np.abs(out.astype(int) - frame.astype(int))[outside_mask()].mean() > 30
    assert anon.detector is None and detector.calls == 0  # no detector runs for region: frame


def test_blur_and_pixelate_default_to_the_whole_frame_as_before():
    from camera_client.anonymize.image_filters import blur as old_blur
    from camera_client.anonymize.image_filters import pixelate as old_pixelate

    frame = noise_frame(2)
    assert BlurAnonymizer().region == "frame"
    assert (create_anonymizer(BlurAnonymizer()).anonymize(frame) == old_blur(frame, 31)).all()
    assert (RegionImageAnonymizer(REGION_MODES["pixelate"]()).anonymize(frame) == old_pixelate(frame, 16)).all()


def test_margin_grows_the_box():
    dets = Detections.from_arrays([[100.4, 40.6, 180.2, 199.5], [10, 10, 10, 50]], [0.9, 0.9], [0, 0])
    assert person_boxes(dets, (H, W)).tolist() == [[100, 40, 181, 200]]  # outward rounding; empty box dropped
    assert person_boxes(dets, (H, W), margin=0.5).tolist() == [[60, 0, 221, 240]]  # clipped to the frame
    cars = Detections.from_arrays([[0, 0, 50, 50]], [0.9], [2])
    assert person_boxes(cars, (H, W)).shape == (0, 4)


# --------------------------------------------------------------------------- LA3D adaptive strength


@pytest.mark.parametrize(
    "box_wh, base, kwargs, expected",
    [
        # scale = floor(100*area/76800); r = max(ln(scale), 1); size = floor(max(r*base, base)); cap = floor(d/2)
        ((32, 64), 13, {"odd": True}, (13, 13)),  # scale 2: ln 2 < 1 -> r 1 -> 13
        ((64, 128), 13, {"odd": True}, (29, 29)),  # scale 10: 13*ln 10 = 29.93 -> 29
        ((160, 240), 13, {"odd": True}, (49, 49)),  # scale 50: 13*3.912 = 50.86 -> 50 -> odd 49
        ((40, 200), 13, {"odd": True}, (19, 29)),  # scale 10 -> 29; x capped at 40/2 = 20 -> odd 19
        ((320, 240), 13, {"odd": True}, (59, 59)),  # the whole frame: scale 100, 13*4.605 = 59.87
        ((160, 240), 4, {}, (15, 15)),  # pixelation block: 4*3.912 = 15.65 -> 15 (not made odd)
        ((160, 240), 10, {"cap": False}, (39, 39)),  # full-blur sigma: 10*3.912, uncapped
        ((64, 128), 13, {"odd": True, "log_scale": False}, (31, 63)),  # r = scale = 10 -> 130, caps 32 / 64
        ((32, 64), 13, {"odd": True, "alpha": 2.0}, (15, 25)),  # r = 2 -> 26; caps 16 -> 15 and 32 -> 26 -> 25
        ((2, 2), 13, {"odd": True}, (1, 1)),  # tiny box: cap 1
    ],
)
def test_la3d_adaptive_size_hand_computed(box_wh, base, kwargs, expected):
    assert la3d_adaptive_size(*box_wh, H * W, base, **kwargs) == expected


def test_la3d_strength_grows_with_box_size():
    sizes = [la3d_adaptive_size(w, 2 * w, H * W, 13, odd=True)[1] for w in (20, 40, 60, 80, 100, 120)]
    assert sizes == sorted(sizes) and sizes[-1] > sizes[0]


SMALL, BIG = (10, 10, 42, 74), (80, 0, 240, 240)  # 32x64 (scale 2) and 160x240 (scale 50)


@pytest.mark.parametrize("box, k", [(SMALL, 13), (BIG, 49)])
def test_adaptive_blur_uses_the_formula_per_box(box, k):
    frame = noise_frame(3)
    out = RegionImageAnonymizer(AdaptiveBlurAnonymizer(), detector=FakeDetector(box)).anonymize(frame)
    assert (inside(out, box) == gaussian(inside(frame, box), k, k, 10.0, 10.0)).all()


def test_adaptive_full_blur_grows_sigma_too():
    frame = noise_frame(4)
    out = RegionImageAnonymizer(AdaptiveFullBlurAnonymizer(), detector=FakeDetector(BIG)).anonymize(frame)
    assert (inside(out, BIG) == gaussian(inside(frame, BIG), 49, 49, 39, 39)).all()


def test_adaptive_pixelate_and_max_variants():
    frame = noise_frame(5)
    out = RegionImageAnonymizer(AdaptivePixelateAnonymizer(), detector=FakeDetector(BIG)).anonymize(frame)
    assert (inside(out, BIG) == pixelate(inside(frame, BIG), 15, 15)).all()
    out = RegionImageAnonymizer(AdaptiveMaxPixelateAnonymizer(), detector=FakeDetector(BIG)).anonymize(frame)
    crop = inside(out, BIG).reshape(-1, 3)
    assert (crop == crop[0]).all()  # one block: the box's mean colour
    assert np.abs(crop[0].astype(float) - inside(frame, BIG).reshape(-1, 3).mean(0)).max() <= 1
    out = RegionImageAnonymizer(AdaptiveMaxBlurAnonymizer(), detector=FakeDetector(BIG)).anonymize(frame)
    assert (inside(out, BIG) == gaussian(inside(frame, BIG), 159, 239)).all()  # kernel = the box, odd


def test_bigger_box_is_blurred_more():
    """Same content, a small and a big box: the adaptive kernel of the big one smooths more."""
    frame = noise_frame(6)
    small = RegionImageAnonymizer(AdaptiveBlurAnonymizer(), detector=FakeDetector(SMALL)).anonymize(frame)
    big = RegionImageAnonymizer(AdaptiveBlurAnonymizer(), detector=FakeDetector(BIG)).anonymize(frame)
    centre = lambda img, b: inside(img, b)[20:40, 10:20].astype(float)
    assert centre(big, BIG).std() < centre(small, SMALL).std()


# --------------------------------------------------------------------------- policy: no person, errors


def test_detector_failure_anonymizes_the_whole_frame_and_is_counted(caplog):
    frame = noise_frame(7)
    anon = RegionImageAnonymizer(MaskAnonymizer(), detector=FakeDetector(fail=True))
    with caplog.at_level(logging.WARNING, logger="camera_client.anonymize.regions"):
        outs = [anon.anonymize(frame) for _ in range(5)]
        payload = anon(frame)
    assert all((o == 0).all() for o in outs), "never the raw frame: the whole frame is masked"
    assert isinstance(payload, pvad_pb2.Image)
    img = cv2.imdecode(np.frombuffer(payload.jpeg, np.uint8), cv2.IMREAD_COLOR)
    assert img.max() < 10
    assert anon.stats()["detector_errors"] == 6
    warnings = [r for r in caplog.records if "detector failed" in r.getMessage()]
    assert 1 <= len(warnings) <= 3  # the first few, not one per frame


@pytest.mark.parametrize("name", sorted(REGION_MODES))
def test_detector_failure_never_sends_raw_in_any_mode(name):
    frame = noise_frame(8)
    out = RegionImageAnonymizer(REGION_MODES[name](region="person"), detector=FakeDetector(fail=True)).anonymize(frame)
    assert np.abs(out.astype(int) - frame.astype(int)).mean() > 30


def test_fallback_frame_after_n_frames_without_people():
    frame = noise_frame(9)
    anon = RegionImageAnonymizer(MaskAnonymizer(fallback="frame", fallback_after=2),
                                 detector=Script([BOX], [], [], [], [BOX]))
    outs = [anon.anonymize(frame) for _ in range(5)]
    for k in (0, 1, 2, 4):  # found, held, held, found again: box masked, rest untouched
        assert (inside(outs[k]) == 0).all() and (outs[k][outside_mask()] == frame[outside_mask()]).all()
    assert (outs[3] == 0).all()  # third frame without people: the whole frame
    assert anon.stats() == {"frames": 5, "frames_with_people": 2, "boxes": 2, "frames_held": 2, "frames_passed": 0,
                                "frames_whole": 1, "detector_errors": 0, "transform_errors": 0}


def test_fallback_pass_sends_a_scene_without_people_unchanged():
    frame = noise_frame(10)
    anon = RegionImageAnonymizer(MaskAnonymizer(fallback="pass", fallback_after=1), detector=Script([BOX], [], [], "fail"))
    outs = [anon.anonymize(frame) for _ in range(4)]
    assert (inside(outs[1]) == 0).all()  # held
    assert (outs[2] == frame).all()  # nobody for > 1 frame: passed
    assert (outs[3] == 0).all()  # a detector error is never "pass"
    s = anon.stats()
    assert (s["frames_held"], s["frames_passed"], s["detector_errors"]) == (1, 1, 1)


def test_reset_starts_a_new_stream():
    frame = noise_frame(12)
    anon = RegionImageAnonymizer(MaskAnonymizer(fallback_after=5), detector=Script([BOX], []))
    anon.anonymize(frame)
    anon.reset(keep_counters=True)  # e.g. the next source of an evaluation: no boxes carried over
    assert (anon.anonymize(frame) == 0).all()  # nobody seen yet and fallback frame: the whole frame, never raw
    assert (anon.stats()["frames"], anon.stats()["frames_whole"], anon.stats()["frames_passed"]) == (2, 1, 0)
    anon.reset()
    assert anon.stats()["frames"] == 0


def test_nobody_seen_yet_passes_only_under_fallback_pass():
    frame = noise_frame(13)
    anon = RegionImageAnonymizer(MaskAnonymizer(fallback="pass", fallback_after=5), detector=Script([], [BOX]))
    assert (anon.anonymize(frame) == frame).all()  # a scene without people, as configured
    assert (inside(anon.anonymize(frame)) == 0).all()
    assert anon.stats()["frames_passed"] == 1


# --------------------------------------------------------------------------- config and server policy


def _camera_yaml(tmp_path, anonymizer: str) -> str:
    path = tmp_path / "camera.yaml"
    path.write_text(f"kind: camera\ncamera_id: c1\nserver: 127.0.0.1:1\ntls: {{ca: a, cert: b, key: c}}\n"
                    f"capture: {{source: '0'}}\nanonymizer: {anonymizer}\n")
    return str(path)


def test_unknown_mode_lists_the_known_ones(tmp_path):
    with pytest.raises(ConfigError) as err:
        load_config(_camera_yaml(tmp_path, "{name: adaptive-blurr}"))
    for name in ("adaptive-blur", "adaptive-max-pixelate", "mask", "edge", "dp-encoder", "none"):
        assert f"'{name}'" in str(err.value)
    with pytest.raises(ValueError, match="unknown anonymizer 'bogus'; known: .*adaptive-blur"):
        create_anonymizer(type("Cfg", (), {"name": "bogus"})())


def test_new_modes_load_from_yaml_with_extra_forbid(tmp_path):
    cfg = load_config(_camera_yaml(tmp_path, "{name: adaptive-pixelate, block: 6, fallback: pass, detector: {backend: hog}}"))
    assert cfg.anonymizer.block == 6 and cfg.anonymizer.detector.backend == "hog"
    with pytest.raises(ConfigError, match="anonymizer.adaptive-pixelate.kernel"):
        load_config(_camera_yaml(tmp_path, "{name: adaptive-pixelate, kernel: 3}"))
    with pytest.raises(ConfigError, match="needs a detector"):
        load_config(_camera_yaml(tmp_path, "{name: mask, detector: {backend: none}}"))
    assert MaskAnonymizer(region="frame", detector=NoDetector())  # fine on the whole frame


def _image_frame(name: str) -> pvad_pb2.Frame:
    _ok, jpeg = cv2.imencode(".jpg", noise_frame(11))
    return pvad_pb2.Frame(camera_id="c1", seq=1, image=pvad_pb2.Image(anonymizer=name, jpeg=jpeg.tobytes()))


def test_server_accept_policy_with_the_new_names():
    from analysis_server.validate import parse_frame

    cfg = ServerConfig(tls={"ca": "a", "cert": "b", "key": "c"}, accept=["adaptive-blur", "mask"])
    for name in ("adaptive-blur", "mask"):
        assert parse_frame(_image_frame(name), cfg=cfg, peer_camera_id="c1", encoders={}).image.shape == (H, W, 3)
    with pytest.raises(PolicyRefused, match="does not accept 'none'"):
        parse_frame(_image_frame("none"), cfg=cfg, peer_camera_id="c1", encoders={})
    with pytest.raises(PolicyRefused, match="does not accept 'adaptive-max-blur'"):
        parse_frame(_image_frame("adaptive-max-blur"), cfg=cfg, peer_camera_id="c1", encoders={})
    allows_raw = ServerConfig(tls={"ca": "a", "cert": "b", "key": "c"}, accept=["none"])
    assert parse_frame(_image_frame("none"), cfg=allows_raw, peer_camera_id="c1", encoders={}).image is not None


def test_every_region_mode_is_registered():
    assert set(REGION_MODES) <= set(list_anonymizers())


# --------------------------------------------------------------------------- real detectors


def test_hog_camera_anonymizer_does_not_import_torch():
    code = ("import sys, numpy as np\n"
            "from camera_client.anonymize import create_anonymizer\n"
            "from pvad.config import MaskAnonymizer, HogDetector\n"
            "a = create_anonymizer(MaskAnonymizer(detector=HogDetector()))\n"
            "a(np.zeros((240, 320, 3), np.uint8))\n"
            "assert 'torch' not in sys.modules, 'torch was imported'\n"
            "print(type(a.detector).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "HogPeople"


needs_shared = pytest.mark.skipif(not samples.SHARED_DATA.is_dir(), reason=f"no shared data at {samples.SHARED_DATA}")


@needs_shared
def test_default_darknet_detector_finds_and_hides_people_in_a_real_photo():
    from models.data.frames import _to_rgb

    path = samples.SHARED_DATA / "la3d" / "vispr" / "2017_40438231.jpg"
    if not path.is_file():
        pytest.skip(f"{path} is missing")
    frame = cv2.cvtColor(_to_rgb(cv2.imread(str(path))), cv2.COLOR_RGB2BGR)
    anon = create_anonymizer(AdaptiveBlurAnonymizer())
    assert anon.detector.name == "darknet"
    out = anon.anonymize(frame)
    s = anon.stats()
    assert s["frames_with_people"] == 1 and s["boxes"] >= 1
    assert np.abs(out.astype(int) - frame.astype(int)).mean() > 1
