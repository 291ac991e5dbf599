"""Feature backbones behind one interface, looked up by name.

Every backbone maps a normalised image batch ``N×3×H×W`` to pooled features ``N×num_features``
(global average pooling over the last convolutional block, ``last_conv``, kept for Grad-CAM).
ImageNet-pretrained backbones expect inputs normalised with ``IMAGENET_MEAN``/``IMAGENET_STD``
from RGB in [0, 1].

Pretrained weights come from torchvision and are looked up in the torch hub cache
(``torch.hub.get_dir()/checkpoints/<file>``). When offline and the file is absent, a WARNING says
which file to put where, and the backbone keeps its random init (``pretrained_loaded=False``).
"""

from __future__ import annotations

import itertools
import logging
import socket
import urllib.request
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlparse

import torch
import torchvision
from torch import nn
from torchvision.models import (
    MobileNet_V3_Small_Weights,
    ResNet18_Weights,
    ResNet50_Weights,
    WeightsEnum,
)

from pvad.registry import Registry

logger = logging.getLogger(__name__)

IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

_CONNECT_TIMEOUT_S = 5.0


class Backbone(nn.Module):
    """``features`` (up to and including ``last_conv``) followed by global average pooling.

    forward: ``N×3×H×W`` → ``N×num_features``; forward_features: ``N×3×H×W`` → ``N×F×h×w``.
    """

    def __init__(self, *, name: str, features: nn.Module, last_conv: nn.Module, num_features: int) -> None:
        super().__init__()
        self.name = name
        self.features = features
        self.last_conv = last_conv  # a submodule of `features`, not a separate layer
        self.num_features = num_features
        self.pretrained_loaded = False
        self.pool = nn.AdaptiveAvgPool2d(1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"backbone {self.name!r} expects N×3×H×W, got shape {tuple(x.shape)}")
        return self.features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.flatten(self.pool(self.forward_features(x)), 1)


BackboneBuilder = Callable[..., Backbone]
_BACKBONES: Registry[BackboneBuilder] = Registry("backbone")


def register_backbone(name: str) -> Callable[[BackboneBuilder], BackboneBuilder]:
    """Decorator registering ``fn(*, pretrained: bool) -> Backbone`` under ``name``."""
    return _BACKBONES.register(name)


def list_backbones() -> list[str]:
    """Names of all registered backbones, sorted."""
    return _BACKBONES.names()


def create_backbone(name: str, *, pretrained: bool = False) -> Backbone:
    """Build a registered backbone; with ``pretrained`` try ImageNet weights (never fails for lack of them)."""
    return _BACKBONES.get(name)(pretrained=pretrained)


# --------------------------------------------------------------------------- weights


def weights_cache_path(weights: WeightsEnum) -> Path:
    """Where torch hub keeps (or would keep) the file for ``weights``."""
    filename = Path(urlparse(weights.url).path).name
    return Path(torch.hub.get_dir()) / "checkpoints" / filename


def _reachable(url: str) -> bool:
    """Quick check that the weights host answers, so offline machines do not hang in urlopen."""
    if urllib.request.getproxies().get(urlparse(url).scheme):
        return True  # a proxy is configured; let urllib go through it
    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)
    try:
        with socket.create_connection((parsed.hostname, port), timeout=_CONNECT_TIMEOUT_S):
            return True
    except OSError:
        return False


def _fetch_state_dict(weights: WeightsEnum) -> dict[str, torch.Tensor]:
    """Load the weights' state dict from the hub cache, downloading into it if absent."""
    return weights.get_state_dict(progress=False)


def _load_pretrained(model: nn.Module, weights: WeightsEnum, name: str) -> bool:
    """Load ImageNet ``weights`` into the torchvision ``model``; on any failure warn and return False."""
    cached = weights_cache_path(weights)
    if not cached.is_file() and not _reachable(weights.url):
        logger.warning(
            "ImageNet weights for backbone %r not loaded: %s is missing and %s is unreachable. "
            "Download that URL and put the file at %s (the torch hub checkpoints dir, "
            "torch.hub.get_dir()/checkpoints; set TORCH_HOME to move it). Keeping random init.",
            name, cached.name, weights.url, cached,
        )
        return False
    try:
        model.load_state_dict(_fetch_state_dict(weights))
    except Exception as exc:  # download errors, corrupt cache file, mismatched keys: never fatal
        logger.warning(
            "ImageNet weights for backbone %r not loaded from %s (%s: %s). Put a good copy of %s at %s "
            "(torch.hub.get_dir()/checkpoints). Keeping random init.",
            name, cached, type(exc).__name__, exc, weights.url, cached,
        )
        return False
    logger.info("backbone %r: loaded ImageNet weights %s", name, cached.name)
    return True


# --------------------------------------------------------------------------- registered backbones


def _resnet(name: str, ctor: Callable[..., nn.Module], weights: WeightsEnum, pretrained: bool) -> Backbone:
    net = ctor(weights=None)
    loaded = pretrained and _load_pretrained(net, weights, name)
    features = nn.Sequential(
        net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3, net.layer4
    )
    backbone = Backbone(name=name, features=features, last_conv=net.layer4, num_features=net.fc.in_features)
    backbone.pretrained_loaded = loaded
    return backbone


@register_backbone("resnet50")
def resnet50(*, pretrained: bool = False) -> Backbone:
    """ResNet-50 (P §3.2), 2048 features; last_conv = layer4."""
    return _resnet("resnet50", torchvision.models.resnet50, ResNet50_Weights.IMAGENET1K_V2, pretrained)


@register_backbone("resnet18")
def resnet18(*, pretrained: bool = False) -> Backbone:
    """ResNet-18, 512 features; last_conv = layer4."""
    return _resnet("resnet18", torchvision.models.resnet18, ResNet18_Weights.IMAGENET1K_V1, pretrained)


@register_backbone("mobilenet_v3_small")
def mobilenet_v3_small(*, pretrained: bool = False) -> Backbone:
    """MobileNetV3-Small, 576 features; last_conv = the final 1×1 conv block (features[-1])."""
    net = torchvision.models.mobilenet_v3_small(weights=None)
    weights = MobileNet_V3_Small_Weights.IMAGENET1K_V1
    loaded = pretrained and _load_pretrained(net, weights, "mobilenet_v3_small")
    last = net.features[-1]
    backbone = Backbone(
        name="mobilenet_v3_small", features=net.features, last_conv=last, num_features=last.out_channels
    )
    backbone.pretrained_loaded = loaded
    return backbone


def _conv_stage(cin: int, cout: int) -> nn.Sequential:
    """Two 3×3 conv-BN-ReLU, the first with stride 2."""
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
    )


@register_backbone("small_cnn")
def small_cnn(*, pretrained: bool = False) -> Backbone:
    """Five stride-2 stages of two 3×3 conv-BN-ReLU (16, 32, 64, 128, 256 channels), 256 features.

    For training from scratch on small data on a CPU at the full 240×320 frame (about 0.32 GMAC
    per image, a ninth of ResNet-18's at that size), where thin limbs and thrown objects a few
    pixels wide are still visible. No pretrained weights exist for it.
    """
    if pretrained:
        logger.warning("backbone 'small_cnn' has no pretrained weights; keeping random init")
    widths = (3, 16, 32, 64, 128, 256)
    stages = [_conv_stage(cin, cout) for cin, cout in itertools.pairwise(widths)]
    return Backbone(name="small_cnn", features=nn.Sequential(*stages), last_conv=stages[-1], num_features=256)


@register_backbone("tiny")
def tiny(*, pretrained: bool = False) -> Backbone:
    """Three small stride-2 convs, 16 features; for tests and quick CPU runs. No pretrained weights."""
    if pretrained:
        logger.warning("backbone 'tiny' has no pretrained weights; keeping random init")
    last = nn.Sequential(nn.Conv2d(16, 16, 3, stride=2, padding=1), nn.ReLU())
    features = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        last,
    )
    return Backbone(name="tiny", features=features, last_conv=last, num_features=16)
