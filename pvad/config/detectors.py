"""The server's ``analysis.detector:`` section: one model per detector backend, discriminated by ``backend``."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field

from pvad.config.base import Section


class UltralyticsDetector(Section):
    backend: Literal["ultralytics"] = "ultralytics"
    weights: str = Field("yolov8n.pt", description="weights file; a bare name is downloaded only when online")
    conf: float = Field(0.25, ge=0.0, le=1.0)
    imgsz: int = Field(320, ge=32, le=1280)


class DarknetDetector(Section):
    backend: Literal["darknet"] = "darknet"
    cfg: Path = Field(description="Darknet .cfg file (e.g. yolo-fastest-1.1.cfg)")
    weights: Path = Field(description="Darknet .weights file")
    conf: float = Field(0.25, ge=0.0, le=1.0)
    nms: float = Field(0.45, ge=0.0, le=1.0)
    input_size: int = Field(320, ge=32, le=1280, multiple_of=32, description="network input side, multiple of 32")
    runtime: Literal["opencv", "torch"] = Field(
        "opencv", description="opencv: OpenCV DNN, one frame at a time; torch: the same network in PyTorch "
        "(models/nets/darknet.py), batched on the server's device and precision"
    )


class HogDetector(Section):
    backend: Literal["hog"] = "hog"
    hit_threshold: float = 0.0
    win_stride: int = Field(8, ge=1, le=64)
    scale: float = Field(1.05, gt=1.0, le=2.0)


class NoDetector(Section):
    backend: Literal["none"] = "none"


DetectorConfig = Annotated[
    Union[UltralyticsDetector, DarknetDetector, HogDetector, NoDetector],
    Field(discriminator="backend"),
]
