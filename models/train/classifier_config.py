"""Configuration of ``pvad train classifier`` (kind ``train-classifier``), P §3.3, §4.2.

Defaults are the paper's recipe: adaptive sampling at 3 fps inside anomalous segments and 10 fps
elsewhere, batch-wise hard mining with α = 3, class weights 1:2, two phases (fully-connected
head only at lr 1e-5, then every layer at 1e-6), early stopping with patience 5 on the validation
loss, dropout 0.5 after each FC layer, Adam. Half of the test videos (class-stratified) are the
validation set (P §4.2). Relative paths are relative to the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pvad.config import (
    BackgroundConfig,
    DetectorConfig,
    FlowConfig,
    HogDetector,
    Section,
)


class ModelSection(Section):
    """The classifier to train (P Table 1 variants: streams 1/2, bag on/off)."""

    backbone: str = Field("resnet50", description="registered backbone: resnet50, resnet18, mobilenet_v3_small, tiny")
    streams: Literal[1, 2] = 2
    bag: bool = True
    hidden: int = Field(4096, ge=1, description="width of the two FC layers (paper: 4096)")
    dropout: float = Field(0.5, ge=0.0, lt=1.0, description="after each FC layer (paper: 0.5)")
    input_scale: float = Field(
        1.0, gt=0.0, le=1.0, description="the model downscales its 240x320 inputs by this before the backbones"
    )
    pool: Literal["avg", "avgmax"] = Field(
        "avg", description="global pooling of each stream: avg (paper) or avg and max concatenated (small anomalies)"
    )
    frame_input: Literal["rgb", "foreground"] = Field(
        "rgb", description="what the frame stream sees: the frame (paper) or the frame minus the camera's background"
    )
    pretrained: Literal["auto", "never"] = Field(
        "auto", description="auto: ImageNet weights when cached or downloadable; never: random init"
    )


class SamplingSection(Section):
    """Adaptive frame-rate sampling (P §3.3): fewer, more varied frames from long segments."""

    anomalous_fps: float = Field(3.0, gt=0.0, description="sampling rate inside anomalous segments (paper: 3)")
    normal_fps: float = Field(10.0, gt=0.0, description="sampling rate elsewhere (paper: 10)")
    camera_fps: float = Field(
        10.0, gt=0.0,
        description="frame rate the server will see: flow is computed against the frame 1/camera_fps earlier",
    )
    validation_fps: float = Field(10.0, gt=0.0, description="uniform rate at which validation videos are scored")
    max_per_video: int | None = Field(None, ge=1, description="training samples per video at most (evenly thinned)")


class HardMiningSection(Section):
    """Batch-wise hard mining (P §3.3): score α·K candidates, train on the K with the highest loss."""

    enabled: bool = True
    alpha: int = Field(3, ge=1, description="candidates per trained sample (paper: 3)")


class PhaseSection(Section):
    train: Literal["head", "all"] = Field(description="head: the FC layers only (backbones frozen); all: every layer")
    lr: float = Field(gt=0.0)
    max_epochs: int = Field(100, ge=1, le=100_000, description="early stopping usually ends the phase sooner")


def _paper_phases() -> list[PhaseSection]:
    return [PhaseSection(train="head", lr=1e-5), PhaseSection(train="all", lr=1e-6)]


class TrainClassifierConfig(Section):
    """Train the two-stream anomaly classifier on an annotated video dataset (UCF-Crime layout)."""

    data: Path = Field(description="dataset root (UCF-Crime layout: videos + official annotation files)")
    annotations: Literal["auto", "temporal", "vatic", "liu2019"] = "auto"
    validation_fraction: float = Field(
        0.5, gt=0.0, lt=1.0, description="share of the test videos used for validation, stratified by class (paper: 0.5)"
    )
    model: ModelSection = ModelSection()
    sampling: SamplingSection = SamplingSection()
    hard_mining: HardMiningSection = HardMiningSection()
    hard_anomalies_only: bool = Field(
        False, description="-ha: soft frames are left out of training and count as normal in evaluation"
    )
    soft_frames: Literal["exclude", "normal"] = Field(
        "exclude",
        description="-ha only: SOFT frames are left out of training, or trained as normal (P §4.2: 'segments "
        "without hard anomalies were considered normal')",
    )
    class_weights: tuple[float, float] = Field((1.0, 2.0), description="loss weight of (normal, anomalous) samples")
    batch_size: int = Field(16, ge=1, le=4096, description="K, the samples trained on per step")
    phases: list[PhaseSection] = Field(default_factory=_paper_phases, min_length=1)
    patience: int = Field(5, ge=1, description="epochs without a better validation figure before a phase ends")
    monitor: Literal["val_loss", "val_fl_auc"] = Field(
        "val_loss", description="what early stopping watches (paper: the validation loss)"
    )
    min_delta: float = Field(1e-4, ge=0.0)
    bn_momentum: float | None = Field(
        None, gt=0.0, le=1.0,
        description="BatchNorm running-stat momentum; null keeps the backbone's (torchvision's MobileNetV3 uses "
        "0.01, too slow for a few short epochs: its eval-mode outputs stay garbage)",
    )
    precise_bn: int | None = Field(
        256, ge=1,
        description="after each epoch, recompute BatchNorm statistics on this many random (not hard-mined) "
        "training samples; null = keep the running averages of the mined batches",
    )
    autoencoder: Path | None = Field(
        None, description="pass every frame through this autoencoder first (G §5.4), as the server sees it"
    )
    flow: FlowConfig = FlowConfig()
    background: BackgroundConfig | None = Field(
        None, description="background model for model.frame_input: foreground (null there = the defaults)"
    )
    calibration: Literal["none", "vl_f1"] = Field(
        "none", description="vl_f1: after training, set the logit offset that maximises validation VL-F1 under the "
        "SAS (needs sampling.validation_fps = camera_fps); none: the paper's raw confidences",
    )
    detector: DetectorConfig = Field(
        default_factory=HogDetector, description="bag-of-objects detector; must match the server's"
    )
    cache_dir: Path = Field(Path(".pvad/cache/classifier"), description="per-video features (frames, flow, bags)")
    out: Path = Field(description="final checkpoint; `<stem>.last.pt` beside it holds the resumable state")
    weights_dtype: Literal["float32", "float16"] = Field(
        "float32", description="storage precision of the final checkpoint (float16: half the file, loaded as float32)"
    )
    resume: bool = Field(False, description="continue from `<stem>.last.pt` when it exists")
    seed: int = 0
    threads: int | None = Field(None, ge=1, description="torch intra-op threads per process; null = torch's default")
    device: Literal["cpu", "cuda", "auto"] = "cpu"

    @model_validator(mode="after")
    def _weights_positive(self) -> TrainClassifierConfig:
        if min(self.class_weights) <= 0:
            raise ValueError("class_weights must both be positive")
        if self.background is not None and self.model.frame_input != "foreground":
            raise ValueError("background is set but model.frame_input is 'rgb', which uses no background")
        if self.calibration != "none" and self.sampling.validation_fps != self.sampling.camera_fps:
            raise ValueError(
                f"calibration: {self.calibration} runs the SAS over the validation videos, which counts frames: "
                f"sampling.validation_fps ({self.sampling.validation_fps:g}) must equal sampling.camera_fps "
                f"({self.sampling.camera_fps:g})")
        return self

    @property
    def feature_background(self) -> BackgroundConfig | None:
        """The background model the features need: the configured one, the defaults, or none (rgb input)."""
        if self.model.frame_input != "foreground":
            return None
        return self.background or BackgroundConfig()

    @property
    def variant(self) -> str:
        """P Table 1 name of this run, e.g. ``2S-bag-ha`` or ``1S-no-hm``."""
        name = f"{self.model.streams}S" + ("-bag" if self.model.bag else "")
        if self.hard_anomalies_only:
            name += "-ha"
        if not self.hard_mining.enabled:
            name += "-no-hm"
        return name
