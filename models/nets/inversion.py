"""An inversion decoder of the attacker's own design: latent ``N×C×30×40`` → frame ``N×3×240×320``.

Larger than our decoder (``models.nets.autoencoder.Decoder``, 3 transposed convolutions): a 3×3
stem, ``blocks`` residual blocks of ``width`` channels at the latent's resolution, then three
×2 pixel-shuffle stages (Shi et al. 2016: a convolution to 4× the channels, then
``nn.PixelShuffle``; no checkerboard artefacts) halving the width each time, one residual block
after the first, and a 3×3 convolution + sigmoid to RGB in [0, 1]. With the defaults (width 96,
6 blocks) it has 1.5 M parameters and costs ~2.6 GMAC a frame, ~4× our decoder's.

Used by the white-box attack (``models.eval.whitebox``) and, small, as the adversary of the
hardened encoder's training (``models.train.adversarial``).
"""

from __future__ import annotations

import torch
from torch import nn

from models.nets.autoencoder import LATENT_SHAPE


class ResidualBlock(nn.Module):
    """``x + conv(relu(conv(x)))``, 3×3, same width (EDSR style, no normalisation)."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(width, width, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(width, width, 3, padding=1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


def _upsample(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, padding=1), nn.PixelShuffle(2), nn.ReLU())


class InversionDecoder(nn.Module):
    """Latent ``N×latent_channels×30×40`` → ``N×3×240×320`` RGB in [0, 1] (see the module doc)."""

    def __init__(self, *, width: int = 96, blocks: int = 6, latent_channels: int = LATENT_SHAPE[0]) -> None:
        super().__init__()
        if width < 8 or width % 8 or blocks < 0:
            raise ValueError(f"width must be a multiple of 8 (≥ 8) and blocks ≥ 0, got width {width}, blocks {blocks}")
        w2, w4, w8 = width // 2, width // 4, width // 8
        self.latent_channels = latent_channels
        self.layers = nn.Sequential(
            nn.Conv2d(latent_channels, width, 3, padding=1), nn.ReLU(),
            *[ResidualBlock(width) for _ in range(blocks)],
            _upsample(width, w2), ResidualBlock(w2),
            _upsample(w2, w4),
            _upsample(w4, w8),
            nn.Conv2d(w8, 3, 3, padding=1), nn.Sigmoid(),
        )
        self.to(memory_format=torch.channels_last)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if z.ndim != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"inversion decoder input must be N×{self.latent_channels}×H×W, got {tuple(z.shape)}")
        return self.layers(z)
