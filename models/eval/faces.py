"""Face detectors and a face embedder, used to measure what a decoded frame still reveals (G §5.2.2).

Every detector takes one RGB ``uint8`` image ``H×W×3`` and returns boxes as an ``N×4`` ``int64``
array of ``(x0, y0, x1, y1)`` pixel corners (x1, y1 exclusive), so nothing past this module sees
OpenCV rectangles or dlib objects.

- ``HaarFaces``: an OpenCV Viola-Jones frontal-face cascade. Its smallest window is 20-24 px, too
  big for faces in 240×320 frames, so the image is upscaled first.
- ``DlibFaces``: dlib's HOG + linear SVM frontal detector, run at one or more upsampling levels
  (its smallest face is ~80 px, halved by each upsampling); detections of all levels are merged.
- ``FaceEmbedder``: dlib's 5-point landmarks + ResNet face descriptor (128-d; two faces are the
  same person when their Euclidean distance is below 0.6, dlib's LFW threshold).

dlib is optional (``pip install 'pvad[faces]'``: dlib-bin + face-recognition-models). The model
files of ``face_recognition_models`` are located without importing it (it imports ``pkg_resources``).
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pvad.errors import ModelLoadError

logger = logging.getLogger(__name__)

INSTALL_HINT = "install the face extras: pip install 'pvad[faces]' (dlib-bin, face-recognition-models)"
SAME_PERSON_DISTANCE = 0.6  # dlib's threshold on the Euclidean distance of 128-d descriptors


class FaceDetector(Protocol):
    """One RGB uint8 image ``H×W×3`` → ``N×4`` int64 boxes ``(x0, y0, x1, y1)``."""

    name: str

    def detect(self, image_rgb: np.ndarray) -> np.ndarray: ...


# --------------------------------------------------------------------------- boxes


def _check_image(image: np.ndarray) -> None:
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image H×W×3, got {image.dtype} {image.shape}")


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU matrix ``len(a)×len(b)`` of xyxy boxes."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    x0 = np.maximum(a[:, None, 0], b[None, :, 0])
    y0 = np.maximum(a[:, None, 1], b[None, :, 1])
    x1 = np.minimum(a[:, None, 2], b[None, :, 2])
    y1 = np.minimum(a[:, None, 3], b[None, :, 3])
    inter = np.clip(x1 - x0, 0, None) * np.clip(y1 - y0, 0, None)
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.where(union > 0, inter / np.maximum(union, 1e-9), 0.0)


def merge_boxes(boxes: Sequence[np.ndarray], *, iou: float = 0.3) -> np.ndarray:
    """Union of several box sets, one box per face: a box overlapping an earlier kept one by
    ``IoU ≥ iou`` is dropped (earlier sets win). Used to count the faces found by any detector."""
    kept: list[np.ndarray] = []
    for box in (b for group in boxes for b in np.asarray(group).reshape(-1, 4)):
        if not kept or box_iou(box[None], np.stack(kept)).max() < iou:
            kept.append(box)
    return np.stack(kept).astype(np.int64) if kept else np.zeros((0, 4), np.int64)


# --------------------------------------------------------------------------- detectors


class HaarFaces:
    """OpenCV Haar cascade frontal-face detector.

    The grey image is histogram-equalised and upscaled by ``upscale`` (faces of ~12 px in a
    240×320 frame become detectable). Default cascade ``haarcascade_frontalface_alt.xml`` with
    ``min_neighbors=3``: on 27 frames of the VISPR photos and Intel sample videos (upscaled 2×) it
    found 14 boxes, 2 of them not faces, where ``haarcascade_frontalface_default.xml`` found 24
    with ~10 false positives (crockery, clothes) even at ``min_neighbors=5``.
    Raises ModelLoadError when the cascade file is missing (OpenCV 5 ships none).
    """

    name = "haar"

    def __init__(self, *, cascade: str = "haarcascade_frontalface_alt.xml", upscale: float = 2.0,
                 scale_factor: float = 1.1, min_neighbors: int = 3) -> None:
        import cv2

        root = getattr(getattr(cv2, "data", None), "haarcascades", None)
        if root is None or not hasattr(cv2, "CascadeClassifier"):
            raise ModelLoadError(
                f"OpenCV {cv2.__version__} has no Haar cascades (removed in OpenCV 5); "
                "install opencv-python>=4.10,<5"
            )
        path = Path(root) / cascade
        self._cascade = cv2.CascadeClassifier(str(path)) if path.is_file() else None
        if self._cascade is None or self._cascade.empty():
            raise ModelLoadError(f"cannot load the Haar cascade {path}; install opencv-python>=4.10,<5")
        self.upscale, self.scale_factor, self.min_neighbors = upscale, scale_factor, min_neighbors

    def detect(self, image_rgb: np.ndarray) -> np.ndarray:
        import cv2

        _check_image(image_rgb)
        grey = cv2.equalizeHist(cv2.cvtColor(image_rgb, cv2.COLOR_RGB2GRAY))
        if self.upscale != 1.0:
            grey = cv2.resize(grey, None, fx=self.upscale, fy=self.upscale, interpolation=cv2.INTER_LINEAR)
        found = self._cascade.detectMultiScale(grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors)
        if len(found) == 0:
            return np.zeros((0, 4), np.int64)
        xywh = np.asarray(found, dtype=np.float64) / self.upscale
        return np.round(np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)).astype(np.int64)


def _import_dlib() -> Any:
    try:
        import dlib
    except ImportError as exc:
        raise ModelLoadError(f"dlib is not importable ({exc}); {INSTALL_HINT}") from exc
    return dlib


def dlib_model_path(filename: str) -> Path:
    """Path of a ``face_recognition_models`` file, found without importing that package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError(f"face_recognition_models is not installed (needed for {filename}); {INSTALL_HINT}")
    path = Path(next(iter(spec.submodule_search_locations))) / "models" / filename
    if not path.is_file():
        raise ModelLoadError(f"dlib model file {path} is missing; reinstall: {INSTALL_HINT}")
    return path


class DlibFaces:
    """dlib HOG frontal-face detector, run at each level of ``upsample`` and merged (IoU ≥ 0.3).

    Several levels help because dlib's image pyramid (steps of 5/6) samples different face sizes
    at each upsampling: on 240×320 frames, level 1 finds some faces that level 2 misses and back.
    ``threshold`` is dlib's ``adjust_threshold`` (0 = its default; lower finds more).
    """

    name = "dlib_hog"

    def __init__(self, *, upsample: int | Sequence[int] = (1, 2), threshold: float = 0.0) -> None:
        self._dlib = _import_dlib()
        self._detector = self._dlib.get_frontal_face_detector()
        self.upsample = (upsample,) if isinstance(upsample, int) else tuple(upsample)
        if not self.upsample or min(self.upsample) < 0:
            raise ValueError(f"upsample must be non-negative levels, got {upsample}")
        self.threshold = threshold

    def detect(self, image_rgb: np.ndarray) -> np.ndarray:
        _check_image(image_rgb)
        image = np.ascontiguousarray(image_rgb)
        per_level = []
        for level in self.upsample:
            rects, scores, _ = self._detector.run(image, level, self.threshold)
            order = np.argsort(scores)[::-1]  # best first, so merging keeps the best box
            per_level.append(np.array([[rects[i].left(), rects[i].top(), rects[i].right() + 1,
                                        rects[i].bottom() + 1] for i in order], np.int64).reshape(-1, 4))
        boxes = merge_boxes(per_level)
        h, w = image.shape[:2]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        return boxes


class DlibCnnFaces:
    """dlib's CNN face detector (MMOD, ``mmod_human_face_detector.dat``), at ``upsample`` levels.

    More robust to pose and blur than HOG, ~20× slower on a CPU (about 1 s for a 240×320 frame
    upsampled once, 2 cores), so only the white-box evaluation, on a few dozen frames, uses it.
    """

    name = "dlib_cnn"

    def __init__(self, *, upsample: int = 1) -> None:
        dlib = _import_dlib()
        try:
            self._detector = dlib.cnn_face_detection_model_v1(str(dlib_model_path("mmod_human_face_detector.dat")))
        except RuntimeError as exc:
            raise ModelLoadError(f"cannot load dlib's CNN face detector: {exc}; {INSTALL_HINT}") from exc
        self.upsample = upsample

    def detect(self, image_rgb: np.ndarray) -> np.ndarray:
        _check_image(image_rgb)
        found = self._detector(np.ascontiguousarray(image_rgb), self.upsample)
        found = sorted(found, key=lambda d: -d.confidence)
        boxes = np.array([[d.rect.left(), d.rect.top(), d.rect.right() + 1, d.rect.bottom() + 1] for d in found],
                         np.int64).reshape(-1, 4)
        h, w = image_rgb.shape[:2]
        boxes[:, [0, 2]] = np.clip(boxes[:, [0, 2]], 0, w)
        boxes[:, [1, 3]] = np.clip(boxes[:, [1, 3]], 0, h)
        return merge_boxes([boxes])


def available_face_detectors(*, cnn: bool = False) -> dict[str, FaceDetector]:
    """Every detector that loads here, by name; the missing ones are logged with the reason.
    ``cnn``: also dlib's CNN detector (slow; the white-box evaluation uses it)."""
    detectors: dict[str, FaceDetector] = {}
    for cls in (HaarFaces, DlibFaces, *((DlibCnnFaces,) if cnn else ())):
        try:
            detectors[cls.name] = cls()
        except ModelLoadError as exc:
            logger.warning("face detector %s unavailable: %s", cls.name, exc)
    if not detectors:
        logger.error("no face detector is available; face counts will be empty")
    return detectors


# --------------------------------------------------------------------------- embeddings


class FaceEmbedder:
    """dlib face descriptor: 5-point landmarks in a box, then a ResNet → 128-d vector.

    Two descriptors closer than ``SAME_PERSON_DISTANCE`` (0.6, Euclidean) are the same person by
    dlib's convention (99.38% on LFW). The landmark regressor always returns 5 points, so any box
    (even on noise) gets an embedding.
    """

    def __init__(self, *, jitters: int = 0, padding: float = 0.25) -> None:
        dlib = _import_dlib()
        try:
            self._shapes = dlib.shape_predictor(str(dlib_model_path("shape_predictor_5_face_landmarks.dat")))
            self._net = dlib.face_recognition_model_v1(
                str(dlib_model_path("dlib_face_recognition_resnet_model_v1.dat")))
        except RuntimeError as exc:  # dlib raises RuntimeError for unreadable model files
            raise ModelLoadError(f"cannot load the dlib face models: {exc}; {INSTALL_HINT}") from exc
        self._dlib, self.jitters, self.padding = dlib, jitters, padding

    def embed(self, image_rgb_u8: np.ndarray, box: Sequence[int] | np.ndarray) -> np.ndarray:
        """128-d float64 descriptor of the face in ``box`` (x0, y0, x1, y1) of an RGB uint8 image."""
        _check_image(image_rgb_u8)
        x0, y0, x1, y1 = (int(v) for v in box)
        if x1 <= x0 or y1 <= y0:
            raise ValueError(f"empty face box {tuple(box)}")
        image = np.ascontiguousarray(image_rgb_u8)
        shape = self._shapes(image, self._dlib.rectangle(x0, y0, x1 - 1, y1 - 1))
        vec = self._net.compute_face_descriptor(image, shape, self.jitters, self.padding)
        return np.asarray(vec, dtype=np.float64)


def optional_face_embedder() -> FaceEmbedder | None:
    """A `FaceEmbedder`, or None (with a warning saying why) where dlib's models are missing: the
    evaluations then report no re-identification instead of failing."""
    try:
        return FaceEmbedder()
    except ModelLoadError as exc:
        logger.warning("no re-identification: %s", exc)
        return None
