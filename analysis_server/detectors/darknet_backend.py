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
        cols = self._forward(np.zeros((cfg.input_size, cfg.input_size, 3), np.uint8)).shape[1]
        if cols != 5 + len(COCO_CLASSES):
            raise ModelLoadError(f"Darknet model {cfg.cfg} outputs {cols - 5} classes; a COCO-80 model is needed")
        log.info("detector: darknet %s (%d output layers, input %d)", cfg.weights.name, len(self.out_names), cfg.input_size)

    def _forward(self, frame_bgr: np.ndarray) -> np.ndarray:
        """All YOLO output rows, (M, 85): cx, cy, w, h (relative), objectness, 80 class scores."""
        s = self.cfg.input_size
        self.net.setInput(cv2.dnn.blobFromImage(frame_bgr, 1 / 255.0, (s, s), swapRB=True, crop=False))
        return np.concatenate([o.reshape(-1, o.shape[-1]) for o in self.net.forward(self.out_names)])

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        """Detections in pixels of `frame_bgr`.

        OpenCV's Darknet [yolo] layer already multiplies each class score by the objectness and zeroes
        products below 0.2, so the class columns are the final scores (multiplying by column 4 again
        would square the objectness and lose about half the people); `conf` below 0.2 changes nothing.
        """
        h, w = frame_bgr.shape[:2]
        rows = self._forward(frame_bgr)
        class_ids = rows[:, 5:].argmax(1)
        scores = rows[np.arange(len(rows)), 5 + class_ids]
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
