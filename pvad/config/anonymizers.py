"""The camera's ``anonymizer:`` section: one model per anonymizer, a union discriminated by ``name`` (DESIGN §2)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Literal, Union

from pydantic import Field, field_validator, model_validator

from pvad.config.base import (
    SHIPPED_DP_AUTOENCODER,
    SHIPPED_DP_ENCODER_ONNX,
    SHIPPED_LEARNED_ANONYMIZER,
    Section,
)
from pvad.config.detectors import DetectorConfig


class LatentNoiseConfig(Section):
    """Inference-time Gaussian mechanism on each latent (models/latent_noise.py): clip the frame's
    latent to L2 norm `clip_norm`, add N(0, sigma²); per-frame (ε, δ) from the analytic Gaussian
    mechanism with sensitivity 2·clip_norm."""

    clip_norm: float = Field(gt=0.0, description="L2 bound of one frame's latent")
    sigma: float = Field(gt=0.0, description="noise standard deviation per latent element")
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="δ at which the per-frame ε is stated")


class DpEncoderAnonymizer(Section):
    name: Literal["dp-encoder"] = "dp-encoder"
    checkpoint: Path | None = Field(
        SHIPPED_DP_AUTOENCODER,
        description="autoencoder checkpoint (default: the shipped DP pair); null = untrained weights from `seed`",
    )
    seed: int = Field(0, description="seed of the untrained weights when no checkpoint is given")
    dtype: Literal["float16", "uint8"] = Field("float16", description="latent dtype on the wire")
    compression: Literal["none", "zstd", "zstd-delta"] = Field(
        "none", description="lossless coding of the latent bytes; zstd-delta (row differences, then zstd) needs dtype uint8"
    )
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="torch runtime: autocast dtype of the encoder (bf16: CPUs with AMX/AVX512-BF16; fp16: CUDA); "
        "`pvad bench encoder` measures its speed and its latent error against fp32",
    )
    latent_noise: LatentNoiseConfig | None = Field(None, description="null = no inference-time noise")
    runtime: Literal["torch", "onnxruntime"] = Field(
        "torch", description="onnxruntime: run `exported` (TensorRT/CUDA provider when present, else CPU)"
    )
    exported: Path = Field(
        SHIPPED_DP_ENCODER_ONNX, description="encoder made by `pvad export` (.onnx), for runtime onnxruntime"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "DpEncoderAnonymizer":
        if self.compression == "zstd-delta" and self.dtype != "uint8":
            raise ValueError("compression zstd-delta needs dtype: uint8 (row differences of float16 bytes do not compress)")
        if self.runtime == "onnxruntime" and self.precision != "fp32":
            raise ValueError("precision applies to runtime torch; for onnxruntime export an fp16 model (pvad export --fp16)")
        return self


class RegionAnonymizer(Section):
    """Shared by the image anonymizers of camera_client/anonymize/regions.py (LA3D): the transform
    goes on the people a detector finds on the camera (`region: person`) or on the whole frame."""

    region: Literal["person", "frame"] = "person"
    detector: DetectorConfig | None = Field(
        None, description="person detector on the camera; null = YOLO-Fastest 1.1 (shared data) when present, else HOG"
    )
    fallback: Literal["frame", "pass"] = Field(
        "frame", description="after `fallback_after` frames without a person (or before the first one): "
        "anonymize the whole frame, or nothing"
    )
    fallback_after: int = Field(
        10, ge=0, le=1_000_000, description="frames without a person during which the last boxes stay anonymized"
    )
    margin: float = Field(0.0, ge=0.0, le=1.0, description="grow each person box by this fraction on every side")
    jpeg_quality: int = Field(90, ge=10, le=100)

    @model_validator(mode="after")
    def _needs_detector(self) -> "RegionAnonymizer":
        if self.region == "person" and self.detector is not None and self.detector.backend == "none":
            raise ValueError("region: person needs a detector; detector.backend 'none' finds nobody")
        return self


class BlurAnonymizer(RegionAnonymizer):
    name: Literal["blur"] = "blur"
    region: Literal["person", "frame"] = "frame"
    kernel: int = Field(31, ge=3, le=255, description="Gaussian kernel size in pixels (odd)")
    sigma: float = Field(0.0, ge=0.0, le=255.0, description="Gaussian sigma; 0 = derived from the kernel (OpenCV)")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd")
        return v


class PixelateAnonymizer(RegionAnonymizer):
    name: Literal["pixelate"] = "pixelate"
    region: Literal["person", "frame"] = "frame"
    block: int = Field(16, ge=2, le=160, description="side of a pixel block in pixels")


class MaskAnonymizer(RegionAnonymizer):
    name: Literal["mask"] = "mask"
    color: tuple[int, int, int] = Field((0, 0, 0), description="BGR fill of each person box (LA3D: black)")


class EdgeAnonymizer(RegionAnonymizer):
    name: Literal["edge"] = "edge"
    low: int = Field(100, ge=0, le=1000, description="Canny hysteresis low threshold (LA3D: 100)")
    high: int = Field(200, ge=1, le=1000, description="Canny hysteresis high threshold (LA3D: 200)")

    @model_validator(mode="after")
    def _order(self) -> "EdgeAnonymizer":
        if self.low >= self.high:
            raise ValueError("low must be below high")
        return self


class AdaptiveBlurAnonymizer(RegionAnonymizer):
    """LA3D adaptive Gaussian blur: the kernel of each person grows with the box's share of the
    frame (camera_client.anonymize.regions.la3d_adaptive_size)."""

    name: Literal["adaptive-blur"] = "adaptive-blur"
    kernel: int = Field(13, ge=1, le=255, description="base kernel size k (LA3D: 13)")
    sigma: float = Field(10.0, ge=0.0, le=255.0, description="base Gaussian sigma (LA3D: 10)")
    alpha: float = Field(1.0, gt=0.0, le=10.0, description="alpha_mask_scale")
    alpha_dim: float = Field(0.5, gt=0.0, le=1.0, description="cap: kernel <= alpha_dim x box side")
    log_scale: bool = Field(True, description="r = alpha * max(ln(scale), 1); false: max(scale, 1)")


class AdaptiveFullBlurAnonymizer(AdaptiveBlurAnonymizer):
    """As adaptive-blur, and sigma grows with the box by the same factor (LA3D adaptive_sigma)."""

    name: Literal["adaptive-full-blur"] = "adaptive-full-blur"


class AdaptiveMaxBlurAnonymizer(RegionAnonymizer):
    """LA3D maximum blur: each box blurred with a kernel as large as the box itself."""

    name: Literal["adaptive-max-blur"] = "adaptive-max-blur"


class AdaptivePixelateAnonymizer(RegionAnonymizer):
    name: Literal["adaptive-pixelate"] = "adaptive-pixelate"
    block: int = Field(4, ge=1, le=160, description="base block side (LA3D downsize: 4)")
    alpha: float = Field(1.0, gt=0.0, le=10.0, description="alpha_mask_scale")
    alpha_dim: float = Field(0.5, gt=0.0, le=1.0, description="cap: block <= alpha_dim x box side")
    log_scale: bool = Field(True, description="r = alpha * max(ln(scale), 1); false: max(scale, 1)")


class AdaptiveMaxPixelateAnonymizer(RegionAnonymizer):
    """LA3D maximum pixelation: each box becomes one block of its mean colour."""

    name: Literal["adaptive-max-pixelate"] = "adaptive-max-pixelate"


class LearnedAnonymizer(Section):
    """A small encoder-decoder trained against a deobfuscator while a detector keeps working (T, D);
    the transformed frame goes out as JPEG (models/nets/learned_anonymizer.py, models/train/anonymizer.py)."""

    name: Literal["learned"] = "learned"
    checkpoint: Path = Field(SHIPPED_LEARNED_ANONYMIZER, description="anonymizer checkpoint (default: the shipped one)")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    jpeg_quality: int = Field(90, ge=10, le=100)


class NoAnonymizer(Section):
    name: Literal["none"] = "none"
    jpeg_quality: int = Field(90, ge=10, le=100)


AnonymizerConfig = Annotated[
    Union[DpEncoderAnonymizer, BlurAnonymizer, PixelateAnonymizer, MaskAnonymizer, EdgeAnonymizer,
          AdaptiveBlurAnonymizer, AdaptiveFullBlurAnonymizer, AdaptiveMaxBlurAnonymizer, AdaptivePixelateAnonymizer,
          AdaptiveMaxPixelateAnonymizer, LearnedAnonymizer, NoAnonymizer],
    Field(discriminator="name"),
]
ANONYMIZER_NAMES = ("dp-encoder", "blur", "pixelate", "mask", "edge", "adaptive-blur", "adaptive-full-blur",
                    "adaptive-max-blur", "adaptive-pixelate", "adaptive-max-pixelate", "learned", "none")
AnonymizerName = Literal[ANONYMIZER_NAMES]  # a server's `accept` list: any of the names above
