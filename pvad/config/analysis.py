"""The server's ``analysis:`` section: device and precision, flow, background, classifier, detector, batching."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pvad.config.base import Section
from pvad.config.detectors import DetectorConfig
from pvad.config.normality import NormalityConfig


class FlowConfig(Section):
    method: Literal["dis", "farneback"] = "dis"
    dis_preset: Literal["ultrafast", "fast", "medium"] = "medium"
    clip: float = Field(20.0, gt=0.0, description="flow magnitude (pixels) mapped to full scale")


class BackgroundConfig(Section):
    """Per-camera background model (OpenCV MOG2) for classifiers whose frame stream sees the foreground."""

    history: int = Field(500, ge=1, description="frames the model remembers (MOG2 history)")
    var_threshold: float = Field(16.0, gt=0.0, description="squared Mahalanobis distance that counts as foreground")


# What an untrained classifier is built as when the config leaves a field out (the paper profile, P §3.2).
UNTRAINED_CLASSIFIER = {"backbone": "resnet50", "streams": 2, "bag": True, "hidden": 4096}


class ClassifierConfig(Section):
    """The supervised two-stream classifier. With a checkpoint, the fields left out (null) come from its
    card; a field given must agree with it. Without one, null fields take ``UNTRAINED_CLASSIFIER``."""

    checkpoint: Path | None = Field(None, description="trained classifier; null = untrained (said loudly)")
    backbone: str | None = Field(
        None, description="registered backbone: resnet50, resnet18, mobilenet_v3_small, small_cnn, tiny; null = the card's"
    )
    streams: Literal[1, 2] | None = Field(
        None, description="1S (frames) or 2S (frames + optical flow), P Table 1; null = the card's"
    )
    bag: bool | None = Field(None, description="join the 80-class bag-of-objects (P §3.1); null = the card's")
    hidden: int | None = Field(None, ge=1, description="width of the two FC layers; null = the card's")
    pretrained: Literal["auto", "never"] = Field(
        "auto", description="auto: ImageNet weights when cached or downloadable; never: random init"
    )
    seed: int = 0


class BatchingConfig(Section):
    max_batch: int = Field(8, ge=1, le=256, description="frames from any cameras run through the networks together")
    max_wait_ms: float = Field(2.0, ge=0.0, le=1000.0, description="how long a batch waits to fill once it has a frame")
    max_in_flight_per_camera: int = Field(
        4, ge=1, le=64, description="frames of one camera the server accepts before the earliest is committed and "
        "acknowledged (each in its own batch, in order; 1 = one at a time). More keeps the networks busy while "
        "acknowledgements travel; a camera never has more than its own `max_in_flight` unacknowledged",
    )
    warmup: bool = Field(
        True, description="run every batch size up to max_batch (above 16: the powers of two) once at start-up, so "
        "oneDNN/cuDNN set up their kernels before the first camera's frame instead of during it",
    )


class QuantizationConfig(Section):
    classifier: Literal["auto", "none", "int8"] = Field(
        "auto", description="int8: the classifier's backbone trunks run int8 on a CPU (PyTorch x86 backend), "
        "calibrated on the first calibration_frames frames the server analyses and checked against fp32 on them "
        "(analysis_server/quantize.py); auto = int8 on CPUs with VNNI/AMX-INT8, dropped if the check fails; never on CUDA"
    )
    calibration_frames: int = Field(64, ge=1, le=100_000, description="frames observed in fp32 before the switch to int8")


class AnalysisConfig(Section):
    device: Literal["cpu", "cuda", "auto"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; null = all cores")
    precision: Literal["auto", "fp32", "bf16", "fp16"] = Field(
        "auto", description="autocast for the networks: auto = bf16 on CPUs with AMX/AVX512-BF16 and on GPUs, fp32 on "
        "other CPUs (pvad/hardware.py); bf16 on a CPU without those instructions is refused; fp16 is GPU only"
    )
    flow: FlowConfig = FlowConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    detector: DetectorConfig | None = Field(
        None, description="object detector: the classifier's bag-of-objects and the normality model's object features "
        "(normality.objects); null = none for a classifier without a bag, OpenCV HOG for one with"
    )
    batching: BatchingConfig = BatchingConfig()
    quantization: QuantizationConfig = QuantizationConfig()
    normality: NormalityConfig = NormalityConfig()

    @model_validator(mode="after")
    def _bag_needs_detector(self) -> "AnalysisConfig":
        if self.classifier.bag and self.detector is not None and self.detector.backend == "none":
            raise ValueError("classifier.bag is true but detector.backend is 'none'")
        if self.normality.objects.enabled is True and not self.has_detector:
            raise ValueError("normality.objects.enabled is true but analysis.detector names no detector (set one, e.g. "
                             "backend: darknet, or use enabled: auto)")
        return self

    @property
    def has_detector(self) -> bool:
        return self.detector is not None and self.detector.backend != "none"

    @property
    def object_features(self) -> list[str] | None:
        """The normality model's object features, or None when no camera uses them (NormalityConfig.objects;
        with ``auto`` each camera decides by what it sends: ``CameraNormality.objects_for``)."""
        n = self.normality
        return n.objects.features if n.enabled and n.objects.enabled is not False and self.has_detector else None
