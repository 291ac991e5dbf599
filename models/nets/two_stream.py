"""Two-stream anomaly classifier of Petrocchi et al. 2021, §3.2 (also Giorgi et al. 2022, §3.4.2).

Frame stream and (optionally) optical-flow stream are backbones with separate weights, each
globally average pooled; their features are concatenated with the bag-of-objects (optional) and
classified by FC(hidden) → ReLU → Dropout → FC(hidden) → ReLU → Dropout → FC(1).

``pool="avgmax"`` (not in the papers) concatenates global max pooling to the average: in a wide
fixed-camera view an anomaly may cover a few percent of the frame, and the average of a feature
map dilutes it by that share while the maximum keeps it.

``frame_input="foreground"`` (not in the papers) feeds the frame stream the frame minus the
camera's background (``analysis_server.background``) instead of the frame: a network trained from
scratch on a few hundred fixed-camera scenes otherwise scores each scene's background.

``logit_bias`` (not in the papers) is added to the output logit. With ``calibration: vl_f1``
training leaves it at 0 and then sets it on the validation videos so that the sigmoidal anomaly score's fixed τ = 0.5 separates
normal from anomalous videos (``models.train.calibration``); hard mining and the 1:2 class weights
otherwise push every confidence up.

Layouts (normalisation with the card's mean/std is the caller's job):
- ``frame``: ``N×3×H×W`` float, normalised RGB; for ``frame_input="foreground"`` the normalised
  frame minus the normalised background, i.e. ``(frame − background) / (255·std)``;
- ``flow``: ``N×3×H×W`` float, flow encoded as a 3-channel image, normalised the same way;
- ``bag``: ``N×bag_dim`` float raw per-class object counts (≥ 0). The model applies
  ``torch.log1p`` itself so that counts of 0..dozens land on a scale similar to pooled features.
- output: logits ``N`` (pre-sigmoid); ``predict_proba`` gives probabilities in [0, 1].
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from models.checkpoint import ModelCard, load_checkpoint, load_model, register_architecture, rgb_card
from models.nets.backbones import IMAGENET_MEAN, IMAGENET_STD, create_backbone
from pvad.config import UNTRAINED_CLASSIFIER, BackgroundConfig, ClassifierConfig
from pvad.errors import ModelLoadError

logger = logging.getLogger(__name__)

ARCHITECTURE = "two-stream"
INPUT_SIZE: tuple[int, int] = (240, 320)  # (H, W), the autoencoder's frame size
POOLS = ("avg", "avgmax")
FRAME_INPUTS = ("rgb", "foreground")


class TwoStreamClassifier(nn.Module):
    """Frame (+ flow) backbones + optional bag-of-objects → anomaly logit per sample."""

    def __init__(
        self,
        *,
        backbone: str,
        streams: int,
        bag: bool,
        bag_dim: int = 80,
        hidden: int = 4096,
        dropout: float = 0.5,
        input_scale: float = 1.0,
        pool: str = "avg",
        frame_input: str = "rgb",
        logit_bias: float = 0.0,
        pretrained: bool = False,
    ) -> None:
        super().__init__()
        if streams not in (1, 2):
            raise ValueError(f"streams must be 1 or 2, got {streams!r}")
        if bag_dim <= 0 or hidden <= 0:
            raise ValueError(f"bag_dim and hidden must be positive, got {bag_dim}, {hidden}")
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        if not 0.0 < input_scale <= 1.0:
            raise ValueError(f"input_scale must be in (0, 1], got {input_scale}")
        if pool not in POOLS:
            raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
        if frame_input not in FRAME_INPUTS:
            raise ValueError(f"frame_input must be one of {FRAME_INPUTS}, got {frame_input!r}")
        self.pool = pool
        self.frame_input = frame_input
        self.logit_bias = float(logit_bias)
        self.input_scale = input_scale
        self.backbone_name = backbone
        self.streams = streams
        self.use_bag = bag
        self.bag_dim = bag_dim
        self.hidden = hidden
        self.dropout = dropout

        self.frame_stream = create_backbone(backbone, pretrained=pretrained)
        self.flow_stream = create_backbone(backbone, pretrained=pretrained) if streams == 2 else None
        pooled = self.frame_stream.num_features * (2 if pool == "avgmax" else 1)
        in_features = pooled * streams + (bag_dim if bag else 0)
        self.head = nn.Sequential(
            nn.Linear(in_features, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, hidden),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden, 1),
        )

    @property
    def arch_kwargs(self) -> dict[str, Any]:
        """Keyword arguments that rebuild this architecture (for ``ModelCard.arch_kwargs``)."""
        return {
            "backbone": self.backbone_name,
            "streams": self.streams,
            "bag": self.use_bag,
            "bag_dim": self.bag_dim,
            "hidden": self.hidden,
            "dropout": self.dropout,
            "input_scale": self.input_scale,
            "pool": self.pool,
            "frame_input": self.frame_input,
            "logit_bias": self.logit_bias,
        }

    @property
    def backbones_pretrained(self) -> bool:
        """True when every stream's backbone holds ImageNet weights loaded at construction."""
        streams = [self.frame_stream] + ([self.flow_stream] if self.flow_stream is not None else [])
        return all(s.pretrained_loaded for s in streams)

    def _check_inputs(self, frame: torch.Tensor, flow: torch.Tensor | None, bag: torch.Tensor | None) -> None:
        if frame.ndim != 4 or frame.shape[1] != 3:
            raise ValueError(f"frame must be N×3×H×W, got shape {tuple(frame.shape)}")
        if self.streams == 2:
            if flow is None:
                raise ValueError("this two-stream model needs a flow input")
            if flow.shape != frame.shape:
                raise ValueError(f"flow shape {tuple(flow.shape)} differs from frame shape {tuple(frame.shape)}")
        elif flow is not None:
            raise ValueError("this one-stream model takes no flow input")
        if self.use_bag:
            if bag is None:
                raise ValueError("this model needs a bag-of-objects input")
            if bag.shape != (frame.shape[0], self.bag_dim):
                raise ValueError(f"bag must be N×{self.bag_dim} = {(frame.shape[0], self.bag_dim)}, got {tuple(bag.shape)}")
            if bool((bag < 0).any()):
                raise ValueError("bag holds object counts and must be non-negative")
        elif bag is not None:
            raise ValueError("this model takes no bag-of-objects input")

    def forward(
        self, frame: torch.Tensor, flow: torch.Tensor | None = None, bag: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Logits ``N`` from ``frame`` ``N×3×H×W``, ``flow`` ``N×3×H×W`` (2 streams), ``bag`` ``N×bag_dim`` (counts).

        Raises ValueError when a required input is missing, an unused one is given, or shapes disagree.
        """
        self._check_inputs(frame, flow, bag)
        parts = [self._pooled(self.frame_stream, frame)]
        if self.flow_stream is not None:
            parts.append(self._pooled(self.flow_stream, flow))
        if self.use_bag:
            parts.append(torch.log1p(bag.to(parts[0].dtype)))
        logits = self.head(torch.cat(parts, dim=1)).squeeze(-1)
        return logits + self.logit_bias if self.logit_bias else logits

    def _pooled(self, stream: nn.Module, x: torch.Tensor) -> torch.Tensor:
        z = stream.forward_features(self._rescale(x))
        avg = z.mean(dim=(2, 3))
        return torch.cat([avg, z.amax(dim=(2, 3))], dim=1) if self.pool == "avgmax" else avg

    def _rescale(self, x: torch.Tensor) -> torch.Tensor:
        """Downscale by ``input_scale`` (antialiased) before the backbone: CPU-sized models see fewer pixels."""
        if self.input_scale == 1.0:
            return x
        return F.interpolate(x, scale_factor=self.input_scale, mode="bilinear", antialias=True, align_corners=False)

    def predict_proba(
        self, frame: torch.Tensor, flow: torch.Tensor | None = None, bag: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Anomaly probabilities ``N`` in [0, 1] (sigmoid of the logits, no grad; mode is left as is)."""
        with torch.no_grad():
            return torch.sigmoid(self(frame, flow, bag))


@register_architecture(ARCHITECTURE)
def _build_two_stream(**arch_kwargs: Any) -> TwoStreamClassifier:
    # Weights come from the checkpoint, so never fetch ImageNet weights when rebuilding.
    arch_kwargs.pop("pretrained", None)
    return TwoStreamClassifier(**arch_kwargs, pretrained=False)


def two_stream_card(*, trained: bool, provenance: str, **arch_kwargs: Any) -> ModelCard:
    """Card for ``two-stream`` weights: 240×320 RGB in [0, 1], ImageNet mean/std.

    ``arch_kwargs`` are TwoStreamClassifier's (``pretrained`` is dropped: the weights are in the file).
    """
    arch_kwargs.pop("pretrained", None)
    return rgb_card(ARCHITECTURE, arch_kwargs, INPUT_SIZE, trained=trained, provenance=provenance,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD)


def card_background(card: ModelCard) -> BackgroundConfig | None:
    """The background model a classifier's inputs need: its card's, for ``frame_input="foreground"``."""
    if card.arch_kwargs.get("frame_input", "rgb") != "foreground":
        return None
    saved = ((card.extra or {}).get("features") or {}).get("background")
    return BackgroundConfig(**saved) if saved else BackgroundConfig()


def classifier_arch(cfg: ClassifierConfig) -> dict[str, Any]:
    """Backbone, streams, bag and hidden width the classifier of ``cfg`` will have, without building it:
    each field the config gives, else its checkpoint card's, else ``UNTRAINED_CLASSIFIER``'s."""
    saved = load_checkpoint(cfg.checkpoint)[1].arch_kwargs if cfg.checkpoint is not None else UNTRAINED_CLASSIFIER
    given = {"backbone": cfg.backbone, "streams": cfg.streams, "bag": cfg.bag, "hidden": cfg.hidden}
    return {k: saved[k] if v is None else v for k, v in given.items()}


def load_classifier(
    checkpoint: Path | None,
    *,
    backbone: str | None,
    streams: int | None,
    bag: bool | None,
    hidden: int | None,
    pretrained: bool,
    seed: int,
) -> tuple[TwoStreamClassifier, ModelCard]:
    """Load ``(classifier in eval mode, card)`` from a checkpoint, or build an untrained one.

    From a file the card wins, but ``backbone``/``streams``/``bag`` must agree with it (else
    ModelLoadError naming the field; ``None`` takes the file's). Without a file, the head (and backbones unless ImageNet
    weights load) are random with ``seed``, ``None`` fields take ``UNTRAINED_CLASSIFIER``; ``card.trained`` is False.
    """
    if checkpoint is not None:
        model, card = load_model(checkpoint)
        if not isinstance(model, TwoStreamClassifier):
            raise ModelLoadError(
                f"checkpoint {checkpoint}: architecture is {card.architecture!r}, expected {ARCHITECTURE!r}"
            )
        wanted = {"backbone": backbone, "streams": streams, "bag": bag}
        for field, value in wanted.items():
            if value is not None and model.arch_kwargs[field] != value:
                raise ModelLoadError(
                    f"checkpoint {checkpoint}: {field} is {model.arch_kwargs[field]!r} in the file "
                    f"but {value!r} in the configuration"
                )
        if hidden is not None and model.hidden != hidden:
            logger.warning("checkpoint %s has hidden=%d but classifier.hidden is %d; the file's wins", checkpoint, model.hidden, hidden)
        return model, card

    given = {"backbone": backbone, "streams": streams, "bag": bag, "hidden": hidden}
    arch = {k: UNTRAINED_CLASSIFIER[k] if v is None else v for k, v in given.items()}
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TwoStreamClassifier(**arch, pretrained=pretrained)
    if model.backbones_pretrained:
        provenance = f"untrained: backbones ImageNet-pretrained, head untrained (random init, seed {seed})"
    else:
        provenance = f"untrained: random init, seed {seed}"
        if pretrained:
            provenance += " (ImageNet weights requested but not available)"
    logger.warning("anomaly classifier is UNTRAINED (%s); scores are meaningless", provenance)
    return model.eval(), two_stream_card(trained=False, provenance=provenance, **model.arch_kwargs)
