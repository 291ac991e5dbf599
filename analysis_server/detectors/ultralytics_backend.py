"""Ultralytics YOLO (e.g. yolov8n.pt). A bare weights name is downloaded by ultralytics only when
the machine is online; offline, the file must exist. A `.yaml` name builds an untrained model."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import cv2
import numpy as np

from analysis_server.detectors.base import (
    COCO_CLASSES,
    Detections,
    Detector,
    register_detector,
)
from pvad.config import UltralyticsDetector
from pvad.errors import ModelLoadError

log = logging.getLogger(__name__)


@contextmanager
def _keep_thread_counts() -> Iterator[None]:
    """Undo ultralytics' process-wide thread settings: its import calls cv2.setNumThreads(0), and its
    first predict calls torch.set_num_threads(cpu_count - 1), i.e. 1 on a 2-core machine."""
    import torch  # here, not at import: cameras load the darknet/hog backends of this package without torch

    torch_threads, cv2_threads = torch.get_num_threads(), cv2.getNumThreads()
    try:
        yield
    finally:
        if torch.get_num_threads() != torch_threads:
            torch.set_num_threads(torch_threads)
        if cv2.getNumThreads() != cv2_threads:
            cv2.setNumThreads(cv2_threads)


def _import_yolo():
    """Import ultralytics without network look-ups at import, pip runs, or a lost thread count."""
    os.environ.setdefault("YOLO_AUTOINSTALL", "0")
    os.environ.setdefault("YOLO_CONFIG_DIR", str(Path.home() / ".cache" / "pvad" / "ultralytics"))
    omp = os.environ.get("OMP_NUM_THREADS")
    try:
        with _keep_thread_counts():
            from ultralytics import YOLO
    except ImportError:
        raise ModelLoadError("detector.backend ultralytics needs the ultralytics package: pip install 'pvad[yolo]'") from None
    finally:
        if omp is None:  # importing ultralytics sets OMP_NUM_THREADS=1 when unset: not for our child processes
            os.environ.pop("OMP_NUM_THREADS", None)
    return YOLO


class UltralyticsYolo(Detector):
    name = "ultralytics"
    classes = COCO_CLASSES

    def __init__(self, cfg: UltralyticsDetector) -> None:
        weights = cfg.weights
        is_yaml = weights.endswith((".yaml", ".yml"))
        local = Path(weights)
        if local.is_file():
            os.environ.setdefault("YOLO_OFFLINE", "1")
        elif os.sep in weights or (not is_yaml and local.suffix != ".pt"):
            raise ModelLoadError(
                f"detector.weights: no such file {weights}. Only a bare name (e.g. yolov8n.pt) is downloaded, and "
                f"only when online: on an offline machine place the weights file at that path"
            )
        YOLO = _import_yolo()
        try:
            with _keep_thread_counts():
                self.model = YOLO(weights, task="detect")
        except Exception as err:
            raise ModelLoadError(
                f"detector.weights: could not load {weights!r} ({type(err).__name__}: {err}). Offline, put the "
                f"weights file at that path (e.g. yolov8n.pt from https://github.com/ultralytics/assets/releases)"
            ) from None
        if is_yaml:
            log.warning("detector: ultralytics %s is an UNTRAINED architecture (no weights)", weights)
        names = getattr(self.model, "names", {}) or {}
        if len(names) != len(COCO_CLASSES):
            raise ModelLoadError(f"detector.weights: {weights} has {len(names)} classes; a COCO-80 model is needed")
        self.cfg = cfg
        self.untrained = is_yaml
        log.info("detector: ultralytics %s (imgsz %d)", weights, cfg.imgsz)

    def detect_batch(self, frames_bgr) -> list[Detections]:
        if not len(frames_bgr):
            return []
        with _keep_thread_counts():
            results = self.model.predict(list(frames_bgr), imgsz=self.cfg.imgsz, conf=self.cfg.conf, verbose=False)
        out = []
        for r in results:
            b = r.boxes
            out.append(Detections.from_arrays(b.xyxy.cpu().numpy(), b.conf.cpu().numpy(), b.cls.cpu().numpy()))
        return out

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        return self.detect_batch([frame_bgr])[0]


@register_detector("ultralytics")
def _make(cfg: UltralyticsDetector) -> Detector:
    return UltralyticsYolo(cfg)
