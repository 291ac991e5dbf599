"""Our own detections type and the detector interface; third-party outputs are converted at the
boundary (each backend module), so nothing past it imports ultralytics or cv2.dnn."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pvad.registry import Registry

# COCO-80 in the order YOLO models (Darknet and ultralytics) index them.
COCO_CLASSES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)
PERSON = 0


@dataclass(frozen=True)
class Detections:
    """N detections: `boxes` (N, 4) float32 xyxy in pixels of the input frame, `scores` (N,)
    float32, `class_ids` (N,) int64 COCO-80 indices."""

    boxes: np.ndarray
    scores: np.ndarray
    class_ids: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.scores)
        if self.boxes.shape != (n, 4) or self.class_ids.shape != (n,):
            raise ValueError(f"inconsistent detections: boxes {self.boxes.shape}, scores {n}, classes {self.class_ids.shape}")

    @classmethod
    def empty(cls) -> "Detections":
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int64))

    @classmethod
    def from_arrays(cls, boxes, scores, class_ids) -> "Detections":
        return cls(
            np.asarray(boxes, np.float32).reshape(-1, 4),
            np.asarray(scores, np.float32).reshape(-1),
            np.asarray(class_ids, np.int64).reshape(-1),
        )

    def __len__(self) -> int:
        return len(self.scores)

    def filter(self, mask: np.ndarray) -> "Detections":
        return Detections(self.boxes[mask], self.scores[mask], self.class_ids[mask])


def bag_of_objects(dets: Detections, num_classes: int = len(COCO_CLASSES)) -> np.ndarray:
    """Per-class object counts (P §3.1): float32 vector of length `num_classes`."""
    return np.bincount(dets.class_ids, minlength=num_classes)[:num_classes].astype(np.float32)


class Detector(ABC):
    name: str
    classes: tuple[str, ...]  # which classes it can report

    @abstractmethod
    def detect(self, frame_bgr: np.ndarray) -> Detections:
        """Detections on one H x W x 3 uint8 BGR frame."""

    def detect_batch(self, frames_bgr: Sequence[np.ndarray]) -> list[Detections]:
        return [self.detect(f) for f in frames_bgr]

    def place(self, device, autocast) -> None:  # most backends have nothing to place
        """Run on the server's torch `device` under its `autocast` context factory; torch backends only."""


_REGISTRY: Registry[Callable[..., Detector]] = Registry("detector backend")
register_detector = _REGISTRY.register


def list_detectors() -> list[str]:
    return _REGISTRY.names()


def create_detector(cfg) -> Detector:
    """Build the backend named by `cfg.backend`; a backend that cannot load raises ModelLoadError."""
    return _REGISTRY.get(cfg.backend)(cfg)


class NullDetector(Detector):
    name = "none"
    classes: tuple[str, ...] = ()

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        return Detections.empty()


@register_detector("none")
def _make_none(cfg) -> Detector:
    return NullDetector()
