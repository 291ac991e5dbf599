"""Person-adaptive lightweight image anonymizers on the camera (LA3D, Asres et al. 2024).

Every mode sends a JPEG `pvad.v1.Image`. With `region: person` a detector backend of
`analysis_server.detectors` (YOLO-Fastest through OpenCV DNN, OpenCV HOG, or ultralytics when
configured with a weights file; imported only here, and without PyTorch for darknet/hog) finds the
people, and the transform goes on their boxes; with `region: frame` on the whole frame.

| mode | on a person box (LA3D name) |
|---|---|
| `blur` | Gaussian blur, fixed kernel (`blur`, G⁰) |
| `pixelate` | fixed block size (`pixelization`, P⁰) |
| `mask` | solid fill (`mask` = LA3D "silhoutte", black) |
| `edge` | Canny edges only, white on black (`edge`) |
| `adaptive-blur` | kernel grows with the box (`adaptive_blur`, Gᵃ); sigma fixed |
| `adaptive-full-blur` | kernel and sigma grow with the box (`adaptive_full_blur`) |
| `adaptive-max-blur` | kernel = the box itself (`adaptive_max_blur`, Gᵃ_max) |
| `adaptive-pixelate` | block grows with the box (`adaptive_pixelization`, Pᵃ) |
| `adaptive-max-pixelate` | the box becomes one block (`adaptive_max_pixelization`, Pᵃ_max) |

As in LA3D's code (muleina/LA3D, src/anony_interface.py, src/config/config.py), the fixed modes
transform the whole frame and paste it inside the boxes; the adaptive ones transform each box's
crop with its own strength (`la3d_adaptive_size`). Differences from LA3D: boxes, not instance
segmentation masks (the whole box is anonymized and its area gives the scale); downsampling for
pixelation uses INTER_AREA (block means) where LA3D uses INTER_LINEAR (which samples a few pixels).

No person found: the last boxes stay anonymized for `fallback_after` frames (detector flicker);
after that, or when no box was ever found on this stream, `fallback: frame` anonymizes the whole
frame and `fallback: pass` sends the frame with nothing anonymized (a scene without people). A detector error anonymizes the whole frame and is
counted and logged; no error path sends the frame untransformed.
"""

from __future__ import annotations

import logging
import math
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import asdict, dataclass

import cv2
import numpy as np

from camera_client.anonymize import register_anonymizer
from camera_client.anonymize.image_filters import encode_jpeg
from pvad.config import (
    AdaptiveBlurAnonymizer,
    AdaptiveFullBlurAnonymizer,
    AdaptiveMaxBlurAnonymizer,
    AdaptiveMaxPixelateAnonymizer,
    AdaptivePixelateAnonymizer,
    BlurAnonymizer,
    EdgeAnonymizer,
    MaskAnonymizer,
    PixelateAnonymizer,
    RegionAnonymizer,
)
from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)

Boxes = np.ndarray  # (N, 4) int xyxy, x1/y1 exclusive, inside the frame

_WARN_FIRST = 3  # detector errors logged one by one, then every _WARN_EVERY-th
_WARN_EVERY = 100


# --------------------------------------------------------------------------- the LA3D formula


def la3d_adaptive_size(box_w: int, box_h: int, frame_area: int, base: float, *, alpha: float = 1.0,
                       alpha_dim: float = 0.5, log_scale: bool = True, cap: bool = True,
                       odd: bool = False) -> tuple[int, int]:
    """Adaptive anonymization strength of one person box (LA3D, Asres et al. 2024, arXiv:2410.18717;
    muleina/LA3D `ConventionalImageAnonymizer.guassian_blur` / `.pixelization` with `mask_scale`).

    - scale = max(1, floor(100 · box_area / frame_area)), the box's share of the frame in percent;
    - r = α · max(ln(scale), 1)   (`log_scale=False`: r = α · max(scale, 1));
    - size = floor(max(r · base, α · base));
    - `cap`: per side d of the box, size_d = min(max(floor(alpha_dim · d), 1), size), i.e. at most
      half the box side by default (without `cap` both sides get `size`: LA3D's adaptive sigma);
    - `odd`: an even size_d becomes size_d − 1 (Gaussian kernels must be odd).

    `base` is the kernel (blur, LA3D 13), the block (pixelation, LA3D 4) or the sigma (full blur,
    LA3D 10, uncapped). Returns (size along x, size along y).
    """
    if box_w <= 0 or box_h <= 0 or frame_area <= 0:
        raise ValueError(f"empty box {box_w}x{box_h} or frame area {frame_area}")
    scale = max(1, math.floor(100 * box_w * box_h / frame_area))
    r = alpha * max(math.log(scale) if log_scale else scale, 1)
    size = math.floor(max(r * base, alpha * base))
    sizes = [min(max(math.floor(alpha_dim * d), 1), size) for d in (box_w, box_h)] if cap else [size, size]
    if odd:
        sizes = [s - 1 if s % 2 == 0 else s for s in sizes]
    return sizes[0], sizes[1]


# --------------------------------------------------------------------------- transforms (BGR uint8)


def gaussian(img: np.ndarray, kx: int, ky: int, sigma_x: float = 0.0, sigma_y: float = 0.0) -> np.ndarray:
    """Gaussian blur; kernel sides odd; sigma 0 = derived from the kernel by OpenCV."""
    return cv2.GaussianBlur(img, (max(1, kx), max(1, ky)), sigma_x, sigmaY=sigma_y)


def pixelate(img: np.ndarray, bx: int, by: int) -> np.ndarray:
    """Blocks of bx × by pixels (each the mean of its pixels), at least one block per side."""
    h, w = img.shape[:2]
    small = cv2.resize(img, (max(1, w // max(1, bx)), max(1, h // max(1, by))), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_NEAREST)


def edges(img: np.ndarray, low: int, high: int) -> np.ndarray:
    """Canny edges of the grey image (white on black), as 3 channels (LA3D `edge`)."""
    e = cv2.Canny(cv2.cvtColor(img, cv2.COLOR_BGR2GRAY), low, high)
    return cv2.cvtColor(e, cv2.COLOR_GRAY2BGR)


def _paste(frame: np.ndarray, transformed: np.ndarray, boxes: Boxes) -> np.ndarray:
    out = frame.copy()
    for x0, y0, x1, y1 in boxes:
        out[y0:y1, x0:x1] = transformed[y0:y1, x0:x1]
    return out


def _per_box(frame: np.ndarray, boxes: Boxes, fn: Callable[[np.ndarray, int], np.ndarray]) -> np.ndarray:
    """Each box's crop of the ORIGINAL frame transformed by fn(crop, frame_area), pasted (LA3D)."""
    out = frame.copy()
    area = frame.shape[0] * frame.shape[1]
    for x0, y0, x1, y1 in boxes:
        out[y0:y1, x0:x1] = fn(frame[y0:y1, x0:x1], area)
    return out


def _frame_box(frame: np.ndarray) -> Boxes:
    return np.array([[0, 0, frame.shape[1], frame.shape[0]]], np.int64)


class Mode(ABC):
    """One transform: `on_boxes` (person regions) and `whole` (the frame, e.g. the fallback)."""

    @abstractmethod
    def on_boxes(self, frame: np.ndarray, boxes: Boxes) -> np.ndarray: ...

    @abstractmethod
    def whole(self, frame: np.ndarray) -> np.ndarray: ...


class FixedMode(Mode):
    """blur / pixelate / edge / mask: one transform of the whole frame, pasted inside the boxes."""

    def __init__(self, fn: Callable[[np.ndarray], np.ndarray]) -> None:
        self._fn = fn

    def whole(self, frame: np.ndarray) -> np.ndarray:
        return self._fn(frame)

    def on_boxes(self, frame: np.ndarray, boxes: Boxes) -> np.ndarray:
        return _paste(frame, self._fn(frame), boxes)


class MaskMode(Mode):
    def __init__(self, color: tuple[int, int, int]) -> None:
        self._color = np.asarray(color, np.uint8)

    def whole(self, frame: np.ndarray) -> np.ndarray:
        return np.broadcast_to(self._color, frame.shape).copy()

    def on_boxes(self, frame: np.ndarray, boxes: Boxes) -> np.ndarray:
        out = frame.copy()
        for x0, y0, x1, y1 in boxes:
            out[y0:y1, x0:x1] = self._color
        return out


class AdaptiveMode(Mode):
    """Per-box transform whose strength comes from the box; the whole frame is one box (scale 100)."""

    def __init__(self, fn: Callable[[np.ndarray, int], np.ndarray]) -> None:
        self._fn = fn

    def on_boxes(self, frame: np.ndarray, boxes: Boxes) -> np.ndarray:
        return _per_box(frame, boxes, self._fn)

    def whole(self, frame: np.ndarray) -> np.ndarray:
        return _per_box(frame, _frame_box(frame), self._fn)


def adaptive_blur_fn(cfg: AdaptiveBlurAnonymizer, *, full: bool) -> Callable[[np.ndarray, int], np.ndarray]:
    def fn(crop: np.ndarray, frame_area: int) -> np.ndarray:
        h, w = crop.shape[:2]
        common = {"alpha": cfg.alpha, "alpha_dim": cfg.alpha_dim, "log_scale": cfg.log_scale}
        kx, ky = la3d_adaptive_size(w, h, frame_area, cfg.kernel, odd=True, **common)
        sx = sy = cfg.sigma
        if full:  # LA3D adaptive_sigma: sigma grows by the same r, uncapped, then at most the kernel
            sx, sy = la3d_adaptive_size(w, h, frame_area, cfg.sigma, cap=False, **common)
        return gaussian(crop, kx, ky, min(sx, kx), min(sy, ky))

    return fn


def _max_blur(crop: np.ndarray, frame_area: int) -> np.ndarray:
    h, w = crop.shape[:2]
    return gaussian(crop, w - 1 if w % 2 == 0 else w, h - 1 if h % 2 == 0 else h)


def adaptive_pixelate_fn(cfg: AdaptivePixelateAnonymizer) -> Callable[[np.ndarray, int], np.ndarray]:
    def fn(crop: np.ndarray, frame_area: int) -> np.ndarray:
        h, w = crop.shape[:2]
        bx, by = la3d_adaptive_size(w, h, frame_area, cfg.block, alpha=cfg.alpha, alpha_dim=cfg.alpha_dim,
                                    log_scale=cfg.log_scale)
        return pixelate(crop, bx, by)

    return fn


def _max_pixelate(crop: np.ndarray, frame_area: int) -> np.ndarray:
    mean = cv2.resize(crop, (1, 1), interpolation=cv2.INTER_AREA)
    return np.broadcast_to(mean, crop.shape).copy()


def build_mode(cfg: RegionAnonymizer) -> Mode:
    """The transform of a mode config (its region handling is RegionImageAnonymizer's)."""
    if isinstance(cfg, BlurAnonymizer):
        return FixedMode(lambda f: gaussian(f, cfg.kernel, cfg.kernel, cfg.sigma, cfg.sigma))
    if isinstance(cfg, PixelateAnonymizer):
        return FixedMode(lambda f: pixelate(f, cfg.block, cfg.block))
    if isinstance(cfg, MaskAnonymizer):
        return MaskMode(cfg.color)
    if isinstance(cfg, EdgeAnonymizer):
        return FixedMode(lambda f: edges(f, cfg.low, cfg.high))
    if isinstance(cfg, AdaptiveBlurAnonymizer):  # also AdaptiveFullBlurAnonymizer (a subclass)
        return AdaptiveMode(adaptive_blur_fn(cfg, full=isinstance(cfg, AdaptiveFullBlurAnonymizer)))
    if isinstance(cfg, AdaptiveMaxBlurAnonymizer):
        return AdaptiveMode(_max_blur)
    if isinstance(cfg, AdaptivePixelateAnonymizer):
        return AdaptiveMode(adaptive_pixelate_fn(cfg))
    if isinstance(cfg, AdaptiveMaxPixelateAnonymizer):
        return AdaptiveMode(_max_pixelate)
    raise TypeError(f"no region transform for {type(cfg).__name__}")


# --------------------------------------------------------------------------- detector and policy


def default_person_detector():
    """The camera's detector when the config names none: YOLO-Fastest 1.1 (COCO, 1.4 MB Darknet
    files from ../shared/data, OpenCV DNN) when present, else OpenCV's HOG people detector."""
    from pvad.config import DarknetDetector, HogDetector
    from pvad.samples import YOLO_FASTEST

    cfg, weights = YOLO_FASTEST / "yolo-fastest-1.1.cfg", YOLO_FASTEST / "yolo-fastest-1.1.weights"
    if cfg.is_file() and weights.is_file():
        return DarknetDetector(cfg=cfg, weights=weights)
    return HogDetector()


def person_boxes(dets, shape: tuple[int, ...], margin: float = 0.0) -> Boxes:
    """Integer xyxy boxes (outward rounded, grown by `margin` of their size, clipped) of the
    detections of class person (COCO 0)."""
    h, w = shape[:2]
    boxes = np.asarray(dets.boxes, np.float64).reshape(-1, 4)[np.asarray(dets.class_ids).reshape(-1) == 0]
    if not len(boxes):
        return np.zeros((0, 4), np.int64)
    if margin:
        grow = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1) * margin
        boxes = boxes + grow * np.array([-1, -1, 1, 1])
    out = np.concatenate([np.floor(boxes[:, :2]), np.ceil(boxes[:, 2:])], axis=1)
    out = np.clip(out, 0, [w, h, w, h]).astype(np.int64)
    return out[(out[:, 2] > out[:, 0]) & (out[:, 3] > out[:, 1])]


@dataclass
class RegionCounters:
    """What the region policy did, per frame (the camera client reports these)."""

    frames: int = 0
    frames_with_people: int = 0
    boxes: int = 0
    frames_held: int = 0  # nobody found; the last boxes anonymized (within fallback_after)
    frames_passed: int = 0  # nobody found and nothing anonymized (fallback pass, or no boxes yet)
    frames_whole: int = 0  # nobody found for > fallback_after frames: whole frame (fallback frame)
    detector_errors: int = 0  # the detector raised: whole frame anonymized
    transform_errors: int = 0  # the region transform raised: whole frame anonymized

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class RegionImageAnonymizer:
    """One image mode + where it applies (person boxes or frame) + the no-person/error policy."""

    untrained = False

    def __init__(self, cfg: RegionAnonymizer, *, detector=None) -> None:
        self.name = cfg.name
        self.cfg = cfg
        self.mode = build_mode(cfg)
        self.counters = RegionCounters()
        self._lock = threading.Lock()
        self._last: Boxes = np.zeros((0, 4), np.int64)
        self._misses = 0
        self.detector = None
        if cfg.region == "person":
            if detector is None:  # imported here: only cameras with person regions need a detector
                from analysis_server.detectors import create_detector

                detector = create_detector(cfg.detector or default_person_detector())
            self.detector = detector
            log.info("anonymizer %s on person boxes from detector %s (fallback %s after %d frame(s))", self.name,
                     getattr(detector, "name", type(detector).__name__), cfg.fallback, cfg.fallback_after)
        else:
            log.info("anonymizer %s on the whole frame", self.name)

    def stats(self) -> dict[str, int]:
        with self._lock:
            return self.counters.as_dict()

    def reset(self, *, keep_counters: bool = False) -> None:
        """Forget the last boxes (a new stream starts) and, unless `keep_counters`, zero the counters."""
        with self._lock:
            if not keep_counters:
                self.counters = RegionCounters()
            self._last, self._misses = np.zeros((0, 4), np.int64), 0

    def anonymize(self, frame_bgr: np.ndarray) -> np.ndarray:
        """The transformed BGR frame (before JPEG)."""
        with self._lock:
            c = self.counters
            c.frames += 1
            if self.detector is None:
                return self.mode.whole(frame_bgr)
            try:
                boxes = person_boxes(self.detector.detect(frame_bgr), frame_bgr.shape, self.cfg.margin)
            except Exception as err:  # noqa: BLE001 - any detector failure: never send the frame raw
                c.detector_errors += 1
                if c.detector_errors <= _WARN_FIRST or c.detector_errors % _WARN_EVERY == 0:
                    log.warning("anonymizer %s: detector failed on frame %d (%s: %s); whole frame anonymized "
                                "(%d detector error(s) so far)", self.name, c.frames, type(err).__name__, err,
                                c.detector_errors)
                return self.mode.whole(frame_bgr)
            if len(boxes):
                self._last, self._misses = boxes, 0
                c.frames_with_people += 1
                c.boxes += len(boxes)
            else:
                self._misses += 1
                if self._misses > self.cfg.fallback_after:
                    if self.cfg.fallback == "frame":
                        c.frames_whole += 1
                        return self.mode.whole(frame_bgr)
                    c.frames_passed += 1
                    return frame_bgr.copy()
                if not len(self._last):  # nobody seen yet on this stream: no boxes to hold
                    if self.cfg.fallback == "frame":
                        c.frames_whole += 1
                        return self.mode.whole(frame_bgr)
                    c.frames_passed += 1
                    return frame_bgr.copy()
                c.frames_held += 1
                boxes = self._last
            try:
                return self.mode.on_boxes(frame_bgr, boxes)
            except Exception as err:  # noqa: BLE001
                c.transform_errors += 1
                log.warning("anonymizer %s: region transform failed (%s: %s); whole frame anonymized", self.name,
                            type(err).__name__, err)
                return self.mode.whole(frame_bgr)

    def __call__(self, frame_bgr: np.ndarray) -> pvad_pb2.Image:
        return pvad_pb2.Image(anonymizer=self.name, jpeg=encode_jpeg(self.anonymize(frame_bgr), self.cfg.jpeg_quality))


def _factory(cfg: RegionAnonymizer) -> RegionImageAnonymizer:
    return RegionImageAnonymizer(cfg)


REGION_MODES: dict[str, type[RegionAnonymizer]] = {
    "blur": BlurAnonymizer,
    "pixelate": PixelateAnonymizer,
    "mask": MaskAnonymizer,
    "edge": EdgeAnonymizer,
    "adaptive-blur": AdaptiveBlurAnonymizer,
    "adaptive-full-blur": AdaptiveFullBlurAnonymizer,
    "adaptive-max-blur": AdaptiveMaxBlurAnonymizer,
    "adaptive-pixelate": AdaptivePixelateAnonymizer,
    "adaptive-max-pixelate": AdaptiveMaxPixelateAnonymizer,
}
for _name in REGION_MODES:
    register_anonymizer(_name)(_factory)
