"""Detector backends on real pictures of people; load failures say what is missing."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from analysis_server.detectors import COCO_CLASSES, Detections, bag_of_objects, create_detector, list_detectors
from pvad.config import DarknetDetector, HogDetector, NoDetector, UltralyticsDetector
from pvad.errors import ModelLoadError

from conftest import INTEL_VIDEO, SHARED_DATA, needs_shared
from pvad.samples import YOLO_FASTEST

VISPR = sorted((SHARED_DATA / "la3d" / "vispr").glob("*.jpg"))


def _frame(path: Path) -> np.ndarray:
    return cv2.resize(cv2.imread(str(path)), (320, 240), interpolation=cv2.INTER_AREA)


def _video_frame(index: int) -> np.ndarray:
    cap = cv2.VideoCapture(str(INTEL_VIDEO))
    cap.set(cv2.CAP_PROP_POS_FRAMES, index)
    ok, frame = cap.read()
    cap.release()
    assert ok
    return cv2.resize(frame, (320, 240), interpolation=cv2.INTER_AREA)


def _check(dets: Detections, frame: np.ndarray) -> None:
    h, w = frame.shape[:2]
    assert dets.boxes.dtype == np.float32 and dets.class_ids.dtype == np.int64
    assert (dets.boxes[:, 0] >= 0).all() and (dets.boxes[:, 2] <= w).all()
    assert (dets.boxes[:, 1] >= 0).all() and (dets.boxes[:, 3] <= h).all()
    assert (dets.boxes[:, 2] > dets.boxes[:, 0]).all() and (dets.boxes[:, 3] > dets.boxes[:, 1]).all()
    assert ((dets.class_ids >= 0) & (dets.class_ids < 80)).all()


def test_bag_of_objects_counts_per_class():
    d = Detections.from_arrays(np.zeros((4, 4)) + [0, 0, 1, 1], np.ones(4), [0, 0, 2, 79])
    bag = bag_of_objects(d)
    assert bag.shape == (80,) and bag.dtype == np.float32
    assert bag[0] == 2 and bag[2] == 1 and bag[79] == 1 and bag.sum() == 4


def test_registry():
    assert {"darknet", "hog", "ultralytics", "none"} <= set(list_detectors())
    assert len(COCO_CLASSES) == 80 and COCO_CLASSES[:3] == ("person", "bicycle", "car")
    assert len(create_detector(NoDetector()).detect(np.zeros((240, 320, 3), np.uint8))) == 0


@needs_shared
@pytest.mark.parametrize("variant", ["yolo-fastest-1.1", "yolo-fastest-1.1-xl"])
def test_darknet_finds_people_on_real_photos(variant):
    det = create_detector(DarknetDetector(cfg=YOLO_FASTEST / f"{variant}.cfg", weights=YOLO_FASTEST / f"{variant}.weights"))
    for path in VISPR:
        frame = _frame(path)
        dets = det.detect(frame)
        _check(dets, frame)
        assert (dets.class_ids == 0).sum() >= 1, path.name
        bag = bag_of_objects(dets)
        for c in set(dets.class_ids.tolist()):
            assert bag[c] == (dets.class_ids == c).sum()


def _darknet(variant: str = "yolo-fastest-1.1-xl", **kw):
    return create_detector(
        DarknetDetector(cfg=YOLO_FASTEST / f"{variant}.cfg", weights=YOLO_FASTEST / f"{variant}.weights", **kw)
    )


@needs_shared
@pytest.mark.parametrize("variant", ["yolo-fastest-1.1", "yolo-fastest-1.1-xl"])
def test_darknet_finds_the_one_person_in_the_intel_video(variant):
    det = _darknet(variant)
    frame = _video_frame(250)  # a man in black, back to the camera, about 200 px tall at 320x240
    dets = det.detect(frame)
    _check(dets, frame)
    people = dets.filter(dets.class_ids == 0)
    assert len(people) == 1 and people.scores[0] > 0.9
    x1, y1, x2, y2 = people.boxes[0]
    assert 140 < (x1 + x2) / 2 < 250 and y2 - y1 > 150
    empty_room = det.detect(_video_frame(200))
    assert (empty_room.class_ids == 0).sum() == 0


@needs_shared
@pytest.mark.parametrize(("variant", "size"), [("yolo-fastest-1.1", 320), ("yolo-fastest-1.1-xl", 320),
                                               ("yolo-fastest-1.1-xl", 256)])
def test_darknet_torch_runtime_matches_opencv_in_one_batch(variant, size):
    """runtime: torch (one batched forward pass, the server's path) finds what OpenCV DNN finds:
    same classes, scores within 1e-3, boxes within half a pixel; bf16 autocast keeps every person."""
    from functools import partial

    import torch

    frames = [_frame(p) for p in VISPR] + [_video_frame(250), _video_frame(200)]
    ref = [_darknet(variant, input_size=size).detect(f) for f in frames]
    det = _darknet(variant, runtime="torch", input_size=size)
    assert det.name == "darknet-torch"
    got = det.detect_batch(frames)
    assert sum(len(d) for d in ref) > len(frames)
    for r, g, f in zip(ref, got, frames):
        _check(g, f)
        assert sorted(r.class_ids.tolist()) == sorted(g.class_ids.tolist())
        i, j = np.lexsort(r.boxes.T[::-1]), np.lexsort(g.boxes.T[::-1])
        assert np.abs(r.boxes[i] - g.boxes[j]).max() < 0.5
        assert np.abs(r.scores[i] - g.scores[j]).max() < 1e-3
    det.place(torch.device("cpu"), partial(torch.autocast, "cpu", dtype=torch.bfloat16))
    bf16 = det.detect_batch(frames)
    for r, g in zip(ref, bf16):
        assert abs(int((r.class_ids == 0).sum()) - int((g.class_ids == 0).sum())) <= 1


@needs_shared
def test_darknet_scores_are_not_squared():
    """OpenCV's [yolo] layer already folds the objectness into the class scores: multiplying again
    kept 5 of the 14 people on this crowd photo."""
    det = _darknet("yolo-fastest-1.1")
    dets = det.detect(_frame(SHARED_DATA / "la3d" / "vispr" / "2017_22709469.jpg"))
    assert (dets.class_ids == 0).sum() >= 10
    assert (dets.scores >= 0.25).all() and (dets.scores <= 1).all()


@needs_shared
def test_hog_finds_people_and_only_people():
    det = create_detector(HogDetector())
    found = 0
    for path in VISPR:
        dets = det.detect(_frame(path))
        _check(dets, _frame(path))
        assert (dets.class_ids == 0).all()
        found += len(dets)
    assert found >= 3
    assert len(det.detect(np.full((240, 320, 3), 128, np.uint8))) == 0


@needs_shared
def test_hog_counts_the_one_person_in_the_intel_video_once():
    det = create_detector(HogDetector())
    frame = _video_frame(250)
    dets = det.detect(frame)  # windows on the whole body and on the torso merge into one person
    _check(dets, frame)
    assert len(dets) == 1 and bag_of_objects(dets)[0] == 1 and bag_of_objects(dets).sum() == 1
    assert len(det.detect(_video_frame(200))) == 0  # the empty room


def test_unknown_backend_lists_known_ones():
    class Cfg:
        backend = "tensorrt"

    with pytest.raises(ValueError, match=r"unknown detector backend 'tensorrt'; known: darknet, hog, none"):
        create_detector(Cfg())


def test_darknet_missing_file_names_it(tmp_path):
    with pytest.raises(ModelLoadError, match=r"detector.cfg: no such file .*missing.cfg"):
        create_detector(DarknetDetector(cfg=tmp_path / "missing.cfg", weights=tmp_path / "missing.weights"))


@needs_shared
def test_darknet_missing_weights_names_them(tmp_path):
    with pytest.raises(ModelLoadError, match=r"detector.weights: no such file .*gone.weights.*dog-qiuqiu/Yolo-Fastest"):
        create_detector(DarknetDetector(cfg=YOLO_FASTEST / "yolo-fastest-1.1.cfg", weights=tmp_path / "gone.weights"))


def test_ultralytics_missing_weights_names_the_path(tmp_path):
    pytest.importorskip("ultralytics")
    with pytest.raises(ModelLoadError, match="nope/yolov8n.pt"):
        create_detector(UltralyticsDetector(weights=str(tmp_path / "nope" / "yolov8n.pt")))


def test_ultralytics_untrained_yaml_runs_offline():
    pytest.importorskip("ultralytics")
    import torch

    threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    det = create_detector(UltralyticsDetector(weights="yolov8n.yaml"))
    frames = [np.zeros((240, 320, 3), np.uint8)] * 2
    out = det.detect_batch(frames)
    assert len(out) == 2 and all(isinstance(d, Detections) for d in out)
    for d in out:
        assert d.boxes.shape == (len(d), 4) and d.boxes.dtype == np.float32
        assert d.scores.dtype == np.float32 and d.class_ids.dtype == np.int64
        assert ((d.class_ids >= 0) & (d.class_ids < 80)).all()
    # neither the import (cv2.setNumThreads(0)) nor the first predict (torch.set_num_threads) may stick
    assert (torch.get_num_threads(), cv2.getNumThreads()) == (threads, cv2_threads)
