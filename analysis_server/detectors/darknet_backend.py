"""Darknet YOLO through OpenCV DNN (e.g. the COCO YOLO-Fastest 1.1 weights)."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from analysis_server.detectors.base import COCO_CLASSES, Detections, Detector, register_detector
from pvad.config import DarknetDetector
from pvad.errors import ModelLoadError

log = logging.getLogger(__name__)

_HINT = "the COCO YOLO-Fastest files (yolo-fastest-1.1.cfg/.weights) come from https://github.com/dog-qiuqiu/Yolo-Fastest (ModelZoo)"


class DarknetYolo(Detector):
    name = "darknet"
    classes = COCO_CLASSES

    def __init__(self, cfg: DarknetDetector) -> None:
        for what, path in (("cfg", cfg.cfg), ("weights", cfg.weights)):
            if not path.is_file():
                raise ModelLoadError(f"detector.{what}: no such file {path}; {_HINT}")
        if not hasattr(cv2.dnn, "readNetFromDarknet"):
            raise ModelLoadError("this OpenCV has no Darknet importer (removed in OpenCV 5): install opencv-python<5")
        try:
            self.net = cv2.dnn.readNetFromDarknet(str(cfg.cfg), str(cfg.weights))
        except cv2.error as err:
            raise ModelLoadError(f"OpenCV could not load Darknet model {cfg.cfg} / {cfg.weights}: {err}") from None
        self.out_names = self.net.getUnconnectedOutLayersNames()
        self.cfg = cfg
        log.info("detector: darknet %s (%d output layers, input %d)", cfg.weights.name, len(self.out_names), cfg.input_size)

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        h, w = frame_bgr.shape[:2]
        s = self.cfg.input_size
        self.net.setInput(cv2.dnn.blobFromImage(frame_bgr, 1 / 255.0, (s, s), swapRB=True, crop=False))
        rows = np.concatenate([o.reshape(-1, o.shape[-1]) for o in self.net.forward(self.out_names)])
        if rows.shape[1] != 5 + len(COCO_CLASSES):
            raise ModelLoadError(f"Darknet model outputs {rows.shape[1] - 5} classes; a COCO-80 model is needed")
        class_ids = rows[:, 5:].argmax(1)
        scores = rows[:, 4] * rows[np.arange(len(rows)), 5 + class_ids]
        keep = scores >= self.cfg.conf
        rows, class_ids, scores = rows[keep], class_ids[keep], scores[keep]
        if not len(rows):
            return Detections.empty()
        cx, cy, bw, bh = rows[:, 0] * w, rows[:, 1] * h, rows[:, 2] * w, rows[:, 3] * h
        xywh = np.stack([cx - bw / 2, cy - bh / 2, bw, bh], 1)
        idx = cv2.dnn.NMSBoxesBatched(xywh.tolist(), scores.tolist(), class_ids.tolist(), self.cfg.conf, self.cfg.nms)
        idx = np.asarray(idx, np.int64).reshape(-1)
        boxes = np.stack([xywh[:, 0], xywh[:, 1], xywh[:, 0] + xywh[:, 2], xywh[:, 1] + xywh[:, 3]], 1)[idx]
        boxes = np.clip(boxes, 0, [w, h, w, h])
        return Detections.from_arrays(boxes, scores[idx], class_ids[idx])


@register_detector("darknet")
def _make(cfg: DarknetDetector) -> Detector:
    return DarknetYolo(cfg)
