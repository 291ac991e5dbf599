"""The frame autoencoder of Giorgi et al. 2022, §3.3.1.

The encoder runs on the camera client and sends its latent; the decoder runs on the server.

Layouts: frames are ``N×3×240×320`` float RGB in [0, 1]; latents are ``N×16×30×40`` float.

Memory format: modules are built in ``torch.channels_last``; on CPU this makes these
convolutions 2-4x faster (measured with PyTorch 2.14, 2 cores). Inputs may stay NCHW-contiguous
(PyTorch follows the weights' format); outputs then come back channels_last-strided, which is
the same logical N×C×H×W tensor (``.contiguous()`` if a caller needs NCHW bytes).

ReLUs are not in-place: Opacus' per-sample-gradient backward hooks (DP training) fail on
in-place ops applied to a hooked layer's output.
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from torch import nn

from models.checkpoint import (
    ModelCard,
    load_model,
    register_architecture,
    rgb_card,
)
from pvad.errors import ModelLoadError

logger = logging.getLogger(__name__)

ARCHITECTURE = "autoencoder-g22"
INPUT_SIZE: tuple[int, int] = (240, 320)  # (H, W)
LATENT_SHAPE: tuple[int, int, int] = (16, 30, 40)  # (C, H, W)


def _check_input(x: torch.Tensor, channels: int, what: str) -> None:
    if x.ndim != 4 or x.shape[1] != channels:
        raise ValueError(f"{what} must be N×{channels}×H×W, got shape {tuple(x.shape)}")


PREFILTERS = (1, 2, 4, 8)


def _strides(prefilter: int) -> tuple[int, int, int]:
    """Strides of the three convolutions so that prefilter × strides = 8 (latent 30×40 for 240×320)."""
    return {1: (2, 2, 2), 2: (2, 2, 1), 4: (2, 1, 1), 8: (1, 1, 1)}[prefilter]


class Encoder(nn.Module):
    """``N×3×240×320`` RGB in [0, 1] → latent ``N×16×30×40``.

    Three 3×3 convolutions (240, 64, 16 filters); ReLU after the first two, the last is linear
    so the latent is unbounded. With ``prefilter`` 1 (the paper's encoder) all three have
    stride 2. With ``prefilter`` f > 1 the frame is first averaged over f×f pixel blocks (a fixed
    low-pass, ``nn.AvgPool2d``) and the strides shrink so the latent keeps its size: the latent is
    then a function of a (240/f)×(320/f) thumbnail, so no decoder, ours or an attacker's, can
    recover detail finer than f pixels from it (a face of 20 px keeps 20/f px of information).
    """

    def __init__(self, *, prefilter: int = 1) -> None:
        super().__init__()
        if prefilter not in PREFILTERS:
            raise ValueError(f"prefilter must be one of {PREFILTERS}, got {prefilter}")
        self.prefilter = prefilter
        self.pool = nn.AvgPool2d(prefilter) if prefilter > 1 else nn.Identity()
        s1, s2, s3 = _strides(prefilter)
        self.layers = nn.Sequential(
            nn.Conv2d(3, 240, 3, stride=s1, padding=1),
            nn.ReLU(),
            nn.Conv2d(240, 64, 3, stride=s2, padding=1),
            nn.ReLU(),
            nn.Conv2d(64, LATENT_SHAPE[0], 3, stride=s3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        _check_input(x, 3, "encoder input")
        return self.layers(self.pool(x))


class Decoder(nn.Module):
    """Latent ``N×16×30×40`` → reconstructed ``N×3×240×320`` RGB in [0, 1].

    Three 3×3 stride-2 transposed convolutions (64, 240, 3 filters, each + ReLU) double the size
    each time; a final 3×3 convolution + sigmoid gives the frame.
    """

    def __init__(self) -> None:
        super().__init__()
        up = dict(kernel_size=3, stride=2, padding=1, output_padding=1)
        self.layers = nn.Sequential(
            nn.ConvTranspose2d(LATENT_SHAPE[0], 64, **up),
            nn.ReLU(),
            nn.ConvTranspose2d(64, 240, **up),
            nn.ReLU(),
            nn.ConvTranspose2d(240, 3, **up),
            nn.ReLU(),
            nn.Conv2d(3, 3, 3, padding=1),
            nn.Sigmoid(),
        )

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        _check_input(z, LATENT_SHAPE[0], "decoder input")
        return self.layers(z)


class Autoencoder(nn.Module):
    """``decoder(encoder(x))``: ``N×3×240×320`` in [0, 1] → same shape in [0, 1]."""

    def __init__(self, *, channels_last: bool = True, prefilter: int = 1) -> None:
        super().__init__()
        self.encoder = Encoder(prefilter=prefilter)
        self.decoder = Decoder()
        if channels_last:
            self.to(memory_format=torch.channels_last)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.encoder(x))


@register_architecture(ARCHITECTURE)
def _build_autoencoder(**kwargs: bool | int) -> Autoencoder:
    return Autoencoder(**kwargs)


def encoder_id(encoder: nn.Module) -> str:
    """First 16 hex chars of sha256 over the encoder's weights.

    Hashes, for each state_dict entry in sorted name order, the UTF-8 name followed by the
    tensor's float32 bytes in NCHW-contiguous CPU layout, so the id does not depend on device
    or memory format. Same weights → same id in any process. An encoder with a ``prefilter`` other
    than 1 also hashes ``prefilter=<f>`` first (the paper's encoder keeps the ids it always had).
    """
    digest = hashlib.sha256()
    if getattr(encoder, "prefilter", 1) != 1:
        digest.update(f"prefilter={encoder.prefilter}".encode())
    state = encoder.state_dict()
    for name in sorted(state):
        tensor = state[name].detach().to(device="cpu", dtype=torch.float32).contiguous()
        digest.update(name.encode("utf-8"))
        digest.update(tensor.numpy().tobytes())
    return digest.hexdigest()[:16]


def untrained_autoencoder(seed: int, *, prefilter: int = 1) -> Autoencoder:
    """A randomly initialised autoencoder, identical for the same seed (same torch version).

    Built under ``torch.random.fork_rng`` so the caller's global RNG state is left untouched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return Autoencoder(prefilter=prefilter)


def autoencoder_card(*, trained: bool, provenance: str, prefilter: int = 1, **extra: object) -> ModelCard:
    """Card for ``autoencoder-g22`` weights: 240×320 RGB in [0, 1], no normalisation.

    ``prefilter`` other than 1 goes to the architecture's kwargs (older cards have none: 1);
    ``extra`` goes to ``card.extra`` (e.g. DP ε, δ, training data).
    """
    kwargs = {"prefilter": prefilter} if prefilter != 1 else {}
    return rgb_card(ARCHITECTURE, kwargs, INPUT_SIZE, trained=trained, provenance=provenance, **extra)


def load_autoencoder(checkpoint: Path | None, *, seed: int = 0) -> tuple[Autoencoder, ModelCard]:
    """Load ``(autoencoder in eval mode, card)`` from a checkpoint, or build an untrained one.

    With ``checkpoint=None`` the weights are random (``seed``) and ``card.trained`` is False.
    Raises ModelLoadError when the file is not a loadable ``autoencoder-g22`` checkpoint.
    """
    if checkpoint is None:
        model = untrained_autoencoder(seed).eval()
        card = autoencoder_card(trained=False, provenance=f"untrained: random init, seed {seed}")
        logger.warning("autoencoder is UNTRAINED (random init, seed %d); reconstructions are noise", seed)
        return model, card
    model, card = load_model(checkpoint)
    if not isinstance(model, Autoencoder):
        raise ModelLoadError(
            f"checkpoint {checkpoint}: architecture is {card.architecture!r}, expected {ARCHITECTURE!r}"
        )
    return model, card
