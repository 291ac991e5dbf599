"""Detector backends behind one interface (DESIGN.md §4): ultralytics, darknet, hog, none."""

# Registration happens on import of the backends (each imports its third-party library lazily).
from analysis_server.detectors import darknet_backend, hog_backend, ultralytics_backend  # noqa: E402,F401
from analysis_server.detectors.base import (
    COCO_CLASSES,
    PERSON,
    Detections,
    Detector,
    bag_of_objects,
    create_detector,
    list_detectors,
    register_detector,
)

__all__ = [
    "COCO_CLASSES", "PERSON", "Detections", "Detector", "bag_of_objects", "create_detector", "list_detectors",
    "register_detector",
]
