"""The server's ``analysis.normality:`` section: each camera learns its own normal activity (DESIGN §10).

A camera with no fitted model is *learning*: its frames' features are kept (at most ``max_frames``;
beyond that every other one is dropped, so memory stays bounded) and no alarm is raised. After
``learning_frames`` frames (or at the end of a ``pvad learn`` stream) the model is fitted, stored
with the camera's state, and the camera is *scoring*: each frame's distance to what was normal for
that camera becomes σ_t (fused with the classifier's by ``fusion``), and the SAS and alarms follow.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from pvad.config.base import Section


GridFeature = Literal["mean", "max", "p90", "fg"]


class MotionGridConfig(Section):
    """Grid-cell motion features on the frames the server sees: per cell, the mean, maximum and 90th
    percentile of the optical-flow magnitude (pixels/frame) and the MOG2 foreground fraction."""

    features: list[GridFeature] = Field(
        ["mean", "max", "fg", "p90"], min_length=1,
        description="per-cell features, in this order: mean / max / p90 = mean, maximum, 90th percentile of |flow|; "
        "fg = foreground fraction (the default set was chosen on Ped2's tuning videos; README)",
    )
    cell: int = Field(40, ge=8, le=240, description="cell side in pixels of the 320x240 frame (must divide both)")
    history: int = Field(500, ge=1, description="MOG2 history (frames) of the foreground model")
    var_threshold: float = Field(16.0, gt=0.0, description="MOG2 squared Mahalanobis distance for foreground")
    latent_diff: bool = Field(
        False, description="latent cameras: add each latent channel's mean |z_t - z_(t-1)| over the cell (the latent "
        "grid is 8 px, so the cell must be a multiple of 8)",
    )

    @model_validator(mode="after")
    def _divides(self) -> "MotionGridConfig":
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"features {self.features} name a feature twice")
        if 320 % self.cell or 240 % self.cell:
            raise ValueError(f"cell {self.cell} must divide 320 and 240 (e.g. 8, 10, 16, 20, 40, 80)")
        if self.latent_diff and self.cell % 8:
            raise ValueError(f"latent_diff needs a cell that is a multiple of 8 (the latent's grid); cell is {self.cell}")
        return self


ObjectFeature = Literal["y", "w", "h", "vx", "vy", "speed", "speed_p90"]


class ObjectsConfig(Section):
    """Object-level features (analysis_server/normality/objects.py): each box of ``analysis.detector`` on
    the frames the server sees, with the flow inside it, scored against the camera's normal objects."""

    enabled: bool | Literal["auto"] = Field(
        "auto", description="auto: on for cameras that send unanonymized frames when analysis.detector names a "
        "detector (on anonymized frames the detector finds few objects and they lowered Ped2's tuning AUC); true: "
        "every camera, needs analysis.detector; false: grid features only",
    )
    features: list[ObjectFeature] = Field(
        ["y", "w", "h", "vx", "vy", "speed", "speed_p90"], min_length=1,
        description="per object, in units of the height an object has at its place (learnt perspective): y = bottom "
        "edge / frame height; w, h = box size; vx, vy, speed, speed_p90 = mean velocity, mean and 90th-percentile speed "
        "of the flow in the box (chosen on Ped2's tuning videos; README)",
    )
    k: int = Field(1, ge=1, le=64, description="neighbours whose mean distance scores an object")

    @model_validator(mode="after")
    def _unique(self) -> "ObjectsConfig":
        if len(set(self.features)) != len(self.features):
            raise ValueError(f"features {self.features} name a feature twice")
        return self


class NormalityConfig(Section):
    enabled: bool = Field(True, description="learn and score each camera's normal activity")
    learning_frames: int = Field(
        600, ge=0, le=10_000_000,
        description="live frames a camera without a model learns from before it scores (600 = 1 min at 10 fps); "
        "0 = learn only from `pvad learn` streams",
    )
    min_frames: int = Field(100, ge=10, description="frames a fit needs at least; a shorter `pvad learn` is refused")
    max_frames: int = Field(
        6000, ge=100, le=1_000_000,
        description="learning buffer bound per camera: past it every other kept frame is dropped (memory bound)",
    )
    motion: MotionGridConfig = MotionGridConfig()
    objects: ObjectsConfig = Field(
        ObjectsConfig(), description="object-level features where the detector finds objects; a frame's score is "
        "then the sum of its grid and its object score, each divided by its 99th percentile over held-out learning frames",
    )
    bank: Literal["per_position", "shared", "both"] = Field(
        "per_position",
        description="per_position: each cell is compared with what that cell showed; shared: moving cells are "
        "compared with moving cells anywhere on their row (perspective), so a crowd is not novel just for its place; "
        "both: the sum of the two, each on its own scale",
    )
    row_weight: float = Field(4.0, ge=0.0, description="shared bank: weight of the cell's row among its features")
    active_flow: float = Field(0.5, ge=0.0, description="shared bank: a cell moving faster (max |flow|, px/frame) is active")
    active_fg: float = Field(0.05, ge=0.0, le=1.0, description="shared bank: a cell with more foreground is active")
    bank_size: int = Field(65_536, ge=1_000, le=10_000_000, description="shared bank: points kept at most (random subset)")
    k: int = Field(1, ge=1, le=64, description="neighbours whose mean distance scores a cell")
    top: int = Field(3, ge=1, le=64, description="a frame's score is the mean of its `top` most unusual cells")
    smoothing: int = Field(5, ge=1, le=1000, description="trailing mean over this many frames of the camera (causal)")
    folds: int = Field(
        5, ge=2, le=50,
        description="the learning frames are cut into this many consecutive blocks; each is scored by a model of the "
        "others, and the threshold is set from those held-out scores",
    )
    threshold_margin: float = Field(
        1.5, ge=1.0, le=100.0, description="threshold = margin x the highest held-out score of the learning frames"
    )
    fusion: Literal["normality", "classifier", "max", "mean"] = Field(
        "normality",
        description="how σ_t is formed: the normality model's alone (default, chosen on Ped2's tuning videos), the "
        "classifier's alone, the larger of the two, or their mean",
    )

    @model_validator(mode="after")
    def _consistent(self) -> "NormalityConfig":
        if self.learning_frames and self.learning_frames < self.min_frames:
            raise ValueError(f"learning_frames ({self.learning_frames}) is below min_frames ({self.min_frames})")
        if self.bank != "per_position" and not {"max", "fg"} <= set(self.motion.features):
            raise ValueError(f"bank {self.bank!r} finds active cells by their max |flow| and foreground: "
                             f"motion.features must include 'max' and 'fg' (it is {self.motion.features})")
        if self.max_frames < self.min_frames:
            raise ValueError(f"max_frames ({self.max_frames}) is below min_frames ({self.min_frames})")
        return self
