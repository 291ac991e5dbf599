"""Configuration of ``pvad train autoencoder`` (kind ``train-autoencoder``), G §4.2.

Defaults follow the paper where it says something: lr 1e-5, 70/15/15 split, early stopping with
patience 5, noise multipliers in 0.1–1.0. Relative paths are relative to the working directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pvad.config import Section

OPTIMIZERS = ("adam", "dp-sgd", "dp-adam", "dp-adagrad")
ACCOUNTANTS = ("rdp", "prv", "gdp")


class AdversarialConfig(Section):
    """The adversarial phase after DP training (models/train/adversarial.py), on public frames only."""

    public: list[Path] = Field(default_factory=list, description="folders/files of public frames (none of `data`)")
    scikit_image: bool = Field(True, description="also scikit-image's bundled photos")
    every_n: int = Field(3, ge=1)
    max_frames_per_source: int = Field(300, ge=1)
    steps: int = Field(300, ge=1, description="encoder-decoder steps (after the warm-up)")
    warmup: int = Field(50, ge=0, description="adversary-only steps first, so the encoder meets a real adversary")
    weight: float = Field(1.0, ge=0.0, description="privacy weight: loss = utility − weight × adversary's detail error")
    utility_sigma: float = Field(3.0, gt=0.0, le=32.0,
                                 description="Gaussian sigma (px) of the low-passed frame our decoder must rebuild")
    lr: float = Field(1e-4, gt=0.0, description="Adam lr of encoder and decoder")
    adversary_lr: float = Field(1e-3, gt=0.0)
    adversary_width: int = Field(48, ge=8, description="the adversary's InversionDecoder width (multiple of 8)")
    adversary_blocks: int = Field(2, ge=0, le=32)
    adversary_steps: int = Field(1, ge=1, le=16, description="adversary steps per encoder-decoder step")
    batch_size: int = Field(8, ge=1, le=1024)


class TrainAutoencoderConfig(Section):
    """Train the frame autoencoder with Adam (no DP) or an Opacus DP optimizer."""

    data: list[Path] = Field(min_length=1, description="folders (searched recursively) and/or video/image files")
    split_by: Literal["source", "time"] = Field(
        "source",
        description="source: whole videos/images go to one split (needs >= 3 sources); "
        "time: each video is cut into contiguous 70/15/15 ranges",
    )
    every_n: int = Field(5, ge=1, description="keep every n-th frame of a video")
    max_frames_per_source: int | None = Field(300, ge=1, description="frames kept per video at most; null = all")
    optimizer: Literal["adam", "dp-sgd", "dp-adam", "dp-adagrad"] = Field(
        "dp-adagrad", description="adam = no DP (the paper's reference); dp-* = Opacus DP-SGD family"
    )
    lr: float = Field(1e-5, gt=0.0, description="learning rate (paper: 1e-5; learns slowly at CPU scale)")
    batch_size: int = Field(32, ge=1, le=4096, description="batch size; with DP the expected size of a Poisson batch")
    epochs: int = Field(50, ge=1, le=100_000, description="maximum epochs (early stopping may end sooner)")
    patience: int = Field(5, ge=1, description="epochs without improvement before stopping (paper: 5)")
    min_delta: float = Field(1e-4, ge=0.0, description="smallest change in val loss, SSIM or PSNR (dB) that counts")
    noise_multiplier: float = Field(
        1.0, ge=0.1, le=10.0, description="noise std / max_grad_norm (paper range 0.1-1.0); ignored with target_epsilon"
    )
    target_epsilon: float | None = Field(
        None, gt=0.0, description="pick the noise multiplier that spends this epsilon in `epochs` epochs"
    )
    delta: float | None = Field(None, gt=0.0, lt=1.0, description="DP delta; null = 1/(10 * training frames)")
    max_grad_norm: float = Field(1.0, gt=0.0, description="per-frame gradient clipping bound (L2)")
    accountant: str = Field("rdp", description="privacy accountant: rdp, prv or gdp")
    seed: int = Field(0, description="seeds weights, split, sampling and noise")
    prefilter: Literal[1, 2, 4, 8] = Field(
        1, description="the encoder averages f×f pixel blocks first (models.nets.autoencoder.Encoder): 1 = the paper's "
        "encoder; 4 keeps no detail under 4 px in the latent, whatever decoder reads it")
    adversarial: AdversarialConfig | None = Field(
        None, description="after DP training, harden the encoder against an inversion adversary on public frames")
    out: Path = Field(description="final checkpoint; `<stem>.last.pt` beside it holds the resumable state")
    resume: bool = Field(False, description="continue from `<stem>.last.pt` when it exists")
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; null = torch's default")
    device: Literal["cpu", "cuda", "auto"] = "cpu"

    @field_validator("accountant")
    @classmethod
    def _known_accountant(cls, v: str) -> str:
        if v not in ACCOUNTANTS:
            raise ValueError(f"unknown accountant {v!r}; known: {', '.join(ACCOUNTANTS)}")
        return v

    @model_validator(mode="after")
    def _dp_only_fields(self) -> TrainAutoencoderConfig:
        if self.optimizer == "adam" and self.target_epsilon is not None:
            raise ValueError("target_epsilon needs a DP optimizer (dp-sgd, dp-adam, dp-adagrad), not adam")
        return self

    @property
    def dp(self) -> bool:
        """True for the dp-* optimizers."""
        return self.optimizer != "adam"
