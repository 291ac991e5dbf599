"""A learned anonymizer small enough for the camera (DESIGN §2 `learned`; T §3.2, D §2).

``UNetLite``: a fully-convolutional encoder-decoder, ``N×3×H×W`` RGB in [0, 1] → same shape in
[0, 1] (sigmoid output, as TeD-SPAD's f_A), for any H and W divisible by 8 (240×320 on the camera).

* encoder: 3×3 stride-2 convolution, then two MobileNet-style depthwise-separable stride-2 blocks
  (D §2 builds its obfuscator from MobileNet blocks), down to 1/8 resolution;
* bottleneck: ``blocks`` residual depthwise-separable blocks at 1/8 resolution;
* decoder: bilinear ×2 upsampling with U-Net skip connections from the 1/4 and 1/2 encoder
  stages, and a last ×2 upsampling to full resolution followed by a 3×3 convolution to RGB.

There is deliberately **no skip at full resolution** in the obfuscator (``full_res_skip=False``):
the finest detail reaches the output only through 1/2-resolution features, so the network cannot
pass the input through unchanged at zero cost. The adversary that tries to undo it
(``models.train.anonymizer``) is the same class with ``full_res_skip=True`` and more width.

No normalisation layers: training batches are small on a CPU, and inference then needs no
running statistics. Built in ``channels_last`` (faster on CPU, as for the autoencoder).
"""

from __future__ import annotations

import logging
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import (
    ModelCard,
    load_model,
    register_architecture,
    rgb_card,
)
from pvad.errors import ModelLoadError

logger = logging.getLogger(__name__)

ARCHITECTURE = "anonymizer-unet-lite"
INPUT_SIZE: tuple[int, int] = (240, 320)  # (H, W)


class SepConv(nn.Module):
    """Depthwise 3×3 (stride ``stride``) + ReLU, pointwise 1×1 + ReLU (MobileNet v1 block)."""

    def __init__(self, cin: int, cout: int, stride: int = 1) -> None:
        super().__init__()
        self.dw = nn.Conv2d(cin, cin, 3, stride=stride, padding=1, groups=cin)
        self.pw = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.pw(F.relu(self.dw(x))))


class Residual(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.body = SepConv(channels, channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _up(x: torch.Tensor) -> torch.Tensor:
    return F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)


class UNetLite(nn.Module):
    """``N×3×H×W`` in [0, 1] → ``N×3×H×W`` in [0, 1]; H and W multiples of 8.

    ``width`` is the channel count at 1/2 resolution (×2 at 1/4, ×4 at 1/8); ``blocks`` residual
    blocks at 1/8; ``full_res_skip`` concatenates the input before the last convolution (the
    adversary's decoder uses it, the camera's anonymizer does not).
    """

    def __init__(self, *, width: int = 32, blocks: int = 3, full_res_skip: bool = False,
                 channels_last: bool = True) -> None:
        super().__init__()
        if width < 4 or blocks < 0:
            raise ValueError(f"width must be >= 4 and blocks >= 0, got {width}, {blocks}")
        w = width
        self.full_res_skip = full_res_skip
        self.stem = nn.Conv2d(3, w, 3, stride=2, padding=1)  # 1/2
        self.down2 = SepConv(w, 2 * w, stride=2)  # 1/4
        self.down3 = SepConv(2 * w, 4 * w, stride=2)  # 1/8
        self.mid = nn.Sequential(*[Residual(4 * w) for _ in range(blocks)])
        self.up2 = SepConv(4 * w + 2 * w, 2 * w)  # at 1/4, with the 1/4 skip
        self.up1 = SepConv(2 * w + w, w)  # at 1/2, with the 1/2 skip
        self.head = nn.Conv2d(w + (3 if full_res_skip else 0), 3, 3, padding=1)
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3 or x.shape[2] % 8 or x.shape[3] % 8:
            raise ValueError(f"input must be N×3×H×W with H, W multiples of 8, got {tuple(x.shape)}")
        s1 = F.relu(self.stem(x))
        s2 = self.down2(s1)
        y = self.mid(self.down3(s2))
        y = self.up2(torch.cat([_up(y), s2], 1))
        y = self.up1(torch.cat([_up(y), s1], 1))
        y = _up(y)
        if self.full_res_skip:
            y = torch.cat([y, x], 1)
        return torch.sigmoid(self.head(y))


@register_architecture(ARCHITECTURE)
def _build(**kwargs) -> UNetLite:
    return UNetLite(**kwargs)


def count_parameters(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def anonymizer_card(*, trained: bool, provenance: str, width: int, blocks: int, **extra: object) -> ModelCard:
    """Card for ``anonymizer-unet-lite`` weights: 240×320 RGB in [0, 1], no normalisation."""
    return rgb_card(ARCHITECTURE, {"width": width, "blocks": blocks}, INPUT_SIZE, trained=trained,
                                 provenance=provenance, **extra)


def load_anonymizer(checkpoint: Path) -> tuple[UNetLite, ModelCard]:
    """``(anonymizer in eval mode, card)``; ModelLoadError when the file is not such a checkpoint."""
    model, card = load_model(checkpoint)
    if not isinstance(model, UNetLite) or model.full_res_skip:
        raise ModelLoadError(f"checkpoint {checkpoint}: architecture is {card.architecture!r}, "
                             f"expected {ARCHITECTURE!r} (an anonymizer, not its adversary)")
    return model, card
