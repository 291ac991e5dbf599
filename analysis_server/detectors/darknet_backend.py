"""Darknet YOLO (e.g. the COCO YOLO-Fastest 1.1 weights) through OpenCV DNN, or (`runtime: torch`)
through the PyTorch port of models/nets/darknet.py, batched, on the server's device and precision."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from analysis_server.detectors.base import (
    COCO_CLASSES,
    Detections,
    Detector,
    register_detector,
)
from pvad.config import DarknetDetector
from pvad.errors import ModelLoadError

log = logging.getLogger(__name__)

_HINT = "the COCO YOLO-Fastest files (yolo-fastest-1.1.cfg/.weights) come from https://github.com/dog-qiuqiu/Yolo-Fastest (ModelZoo)"


class DarknetYolo(Detector):
    name = "darknet"
    classes = COCO_CLASSES

    def __init__(self, cfg: DarknetDetector) -> None:
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


class DarknetYoloTorch(Detector):
    """The same network and post-processing as `DarknetYolo` (scores = objectness x class, class-wise
    NMS), with the whole batch in one forward pass."""

    name = "darknet-torch"
    classes = COCO_CLASSES

    def __init__(self, cfg: DarknetDetector) -> None:
        import contextlib

        import torch

        from models.nets.darknet import DarknetYoloTorch as Net

        self.torch = torch
        self.cfg = cfg
        self.net = Net(cfg.cfg, cfg.weights, fields=("detector.cfg", "detector.weights"))
        self.net.input_size = (cfg.input_size, cfg.input_size)  # fully convolutional: any multiple of 32, as OpenCV
        self.device = torch.device("cpu")
        self.autocast = contextlib.nullcontext
        log.info("detector: darknet-torch %s (input %s)", cfg.weights.name, self.net.input_size)

    def place(self, device, autocast) -> None:
        self.net.to(device)
        self.device, self.autocast = device, autocast

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        return self.detect_batch([frame_bgr])[0]

    def detect_batch(self, frames_bgr) -> list[Detections]:
        from torchvision.ops import batched_nms

        from models.nets.darknet import decode_yolo

        torch = self.torch
        if not len(frames_bgr):
            return []
        h_in, w_in = self.net.input_size
        # the same stretch and interpolation as OpenCV's blobFromImage
        blob = np.stack([cv2.resize(f, (w_in, h_in))[..., ::-1] for f in frames_bgr])
        x = torch.from_numpy(blob).to(self.device).permute(0, 3, 1, 2).float().div_(255.0)
        with torch.inference_mode(), self.autocast():
            rows = decode_yolo(self.net, self.net(x.contiguous(memory_format=torch.channels_last)))
        scores, class_ids = rows[..., 4:].max(-1)
        out = []
        for f, r, sc, cl in zip(frames_bgr, rows, scores, class_ids):
            h, w = f.shape[:2]
            keep = sc >= max(self.cfg.conf, 1e-6)
            r, sc, cl = r[keep], sc[keep], cl[keep]
            boxes = torch.stack([(r[:, 0] - r[:, 2] / 2) * w, (r[:, 1] - r[:, 3] / 2) * h,
                                 (r[:, 0] + r[:, 2] / 2) * w, (r[:, 1] + r[:, 3] / 2) * h], 1)
            idx = batched_nms(boxes, sc, cl, self.cfg.nms)
            boxes = boxes[idx].clamp_(min=0).cpu().numpy()
            boxes = np.minimum(boxes, [w, h, w, h])
            out.append(Detections.from_arrays(boxes, sc[idx].cpu().numpy(), cl[idx].cpu().numpy()))
        return out


@register_detector("darknet")
def _make(cfg: DarknetDetector) -> Detector:
    for what, path in (("cfg", cfg.cfg), ("weights", cfg.weights)):
        if not path.is_file():
            raise ModelLoadError(f"detector.{what}: no such file {path}; {_HINT}")
    return DarknetYoloTorch(cfg) if cfg.runtime == "torch" else DarknetYolo(cfg)
