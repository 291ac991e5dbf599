"""Detector backends on real pictures of people; load failures say what is missing."""

from pathlib import Path

import cv2
import numpy as np
import pytest

from analysis_server.detectors import COCO_CLASSES, Detections, bag_of_objects, create_detector, list_detectors
from pvad.config import DarknetDetector, HogDetector, NoDetector, UltralyticsDetector
from pvad.errors import ModelLoadError

from conftest import INTEL_VIDEO, SHARED_DATA, needs_shared

VISPR = sorted((SHARED_DATA / "la3d" / "vispr").glob("*.jpg"))
YOLO_FASTEST = SHARED_DATA / "weights" / "yolo-fastest-1.1_coco"


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


@needs_shared
def test_darknet_finds_the_person_in_the_intel_video():
    det = create_detector(DarknetDetector(cfg=YOLO_FASTEST / "yolo-fastest-1.1-xl.cfg",
                                          weights=YOLO_FASTEST / "yolo-fastest-1.1-xl.weights"))
    frame = _video_frame(250)
    dets = det.detect(frame)
    assert COCO_CLASSES[int(dets.class_ids[0])] == "person"


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


def test_darknet_missing_file_names_it(tmp_path):
    with pytest.raises(ModelLoadError, match=r"detector.cfg: no such file .*missing.cfg"):
        create_detector(DarknetDetector(cfg=tmp_path / "missing.cfg", weights=tmp_path / "missing.weights"))


def test_ultralytics_missing_weights_names_the_path(tmp_path):
    pytest.importorskip("ultralytics")
    with pytest.raises(ModelLoadError, match="nope/yolov8n.pt"):
        create_detector(UltralyticsDetector(weights=str(tmp_path / "nope" / "yolov8n.pt")))


def test_ultralytics_untrained_yaml_runs_offline():
    pytest.importorskip("ultralytics")
    import torch

    threads = torch.get_num_threads()
    det = create_detector(UltralyticsDetector(weights="yolov8n.yaml"))
    assert torch.get_num_threads() == threads  # the import must not leave torch on one thread
    frames = [np.zeros((240, 320, 3), np.uint8)] * 2
    out = det.detect_batch(frames)
    assert len(out) == 2 and all(isinstance(d, Detections) for d in out)
