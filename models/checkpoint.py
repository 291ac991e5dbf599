"""Checkpoints that carry their own preprocessing, and a registry of architectures.

A checkpoint file is ``torch.save`` of::

    {"format": "pvad-checkpoint-v1",
     "card": ModelCard.model_dump(mode="json"),   # plain JSON types only
     "state_dict": model.state_dict()}

and is read back with ``torch.load(weights_only=True)``, so loading never runs pickled code.
The card says how to rebuild the module (``architecture`` + ``arch_kwargs``, looked up in the
registry below) and how to prepare its input (size, channel order, value range, mean, std).
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from torch import nn

from pvad import __version__ as _PVAD_VERSION
from pvad.errors import ConfigError, ModelLoadError
from pvad.registry import Registry

logger = logging.getLogger(__name__)

CHECKPOINT_FORMAT = "pvad-checkpoint-v1"

ArchitectureBuilder = Callable[..., nn.Module]
_ARCHITECTURES: Registry[ArchitectureBuilder] = Registry("architecture")


def _now_iso() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class ModelCard(BaseModel):
    """What a set of weights is and how its input must be prepared.

    Input preparation, in order: resize to ``input_size`` (H, W), arrange channels as
    ``channel_order``, scale pixels to ``value_range``, then ``(x - mean) / std`` per channel.
    """

    model_config = ConfigDict(extra="forbid")

    architecture: str = Field(description="registry name, e.g. 'autoencoder-g22', 'two-stream'")
    arch_kwargs: dict[str, Any] = Field(default_factory=dict, description="kwargs to rebuild it")
    input_size: tuple[int, int] = Field(description="(H, W) in pixels")
    channel_order: Literal["RGB", "BGR"]
    value_range: tuple[float, float] = Field(description="pixel range before normalisation")
    mean: tuple[float, ...]
    std: tuple[float, ...]
    trained: bool
    provenance: str = Field(description="how these weights came to be")
    metrics: dict[str, float] = Field(default_factory=dict)
    extra: dict[str, Any] = Field(default_factory=dict, description="e.g. DP epsilon, delta")
    created: str = Field(default_factory=_now_iso, description="ISO 8601 time")
    pvad_version: str = _PVAD_VERSION

    @model_validator(mode="after")
    def _check_preprocessing(self) -> ModelCard:
        if min(self.input_size) <= 0:
            raise ValueError(f"input_size must be positive, got {self.input_size}")
        if self.value_range[0] >= self.value_range[1]:
            raise ValueError(f"value_range must be (low, high) with low < high, got {self.value_range}")
        if len(self.mean) != len(self.std) or not self.mean:
            raise ValueError(f"mean and std need one value per channel, got {self.mean} and {self.std}")
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std must be positive, got {self.std}")
        return self


# --------------------------------------------------------------------------- registry


def rgb_card(architecture: str, arch_kwargs: dict[str, Any], input_size: tuple[int, int], *, trained: bool,
             provenance: str, mean: tuple[float, float, float] = (0.0, 0.0, 0.0),
             std: tuple[float, float, float] = (1.0, 1.0, 1.0), **extra: object) -> ModelCard:
    """Card of a network that takes RGB in [0, 1], normalised with ``mean``/``std`` (default: taken as it is,
    as the autoencoder and the learned anonymizer do; the two-stream classifier passes ImageNet's)."""
    return ModelCard(
        architecture=architecture,
        arch_kwargs=arch_kwargs,
        input_size=input_size,
        channel_order="RGB",
        value_range=(0.0, 1.0),
        mean=mean,
        std=std,
        trained=trained,
        provenance=provenance,
        extra=dict(extra),
    )


def register_architecture(name: str) -> Callable[[ArchitectureBuilder], ArchitectureBuilder]:
    """Decorator registering ``fn(**arch_kwargs) -> nn.Module`` under ``name``."""
    return _ARCHITECTURES.register(name)


def list_architectures() -> list[str]:
    """Names of all registered architectures, sorted."""
    return _ARCHITECTURES.names()


def build_model(card: ModelCard) -> nn.Module:
    """Build an untrained module of the card's architecture (weights are not loaded here).

    Raises ModelLoadError for an unknown architecture (listing the known ones) or bad arch_kwargs.
    """
    try:
        builder = _ARCHITECTURES.get(card.architecture)
    except ValueError as exc:
        raise ModelLoadError(str(exc)) from None
    try:
        return builder(**card.arch_kwargs)
    except (TypeError, ValueError) as exc:
        raise ModelLoadError(
            f"cannot build architecture {card.architecture!r} from arch_kwargs {card.arch_kwargs}: {exc}"
        ) from exc


# --------------------------------------------------------------------------- files


def save_checkpoint(path: str | os.PathLike[str], model: nn.Module, card: ModelCard, *,
                    weights_dtype: torch.dtype | None = None) -> Path:
    """Write model weights and card to ``path`` (atomically: temp file, then rename). Returns the path.

    ``weights_dtype=torch.float16`` stores floating-point tensors at half precision (half the file);
    ``load_model`` copies them back into the float32 module.
    """
    path = Path(path)
    state = model.state_dict()
    if weights_dtype is not None:  # one converted tensor per storage: aliased modules stay shared
        converted: dict[tuple, torch.Tensor] = {}
        state = {k: converted.setdefault((v.data_ptr(), v.shape, v.stride()), v.to(weights_dtype))
                 if v.is_floating_point() else v for k, v in state.items()}
    payload = {
        "format": CHECKPOINT_FORMAT,
        "card": card.model_dump(mode="json"),
        "state_dict": state,
    }
    atomic_torch_save(payload, path)
    logger.info("saved %s checkpoint to %s", card.architecture, path)
    return path


def last_checkpoint_path(out: str | os.PathLike[str]) -> Path:
    """Where a training run keeps its resumable state: ``<stem>.last.pt`` beside ``out``."""
    out = Path(out)
    return out.with_name(out.stem + ".last.pt")


def load_resume_state(path: Path, *, resume: bool, fmt: str, config: dict[str, Any],
                      keys: tuple[str, ...], what: str) -> dict[str, Any] | None:
    """The resumable state at ``path`` when ``resume`` and it exists, else None (said in the log).

    Raises ConfigError when the file is not a ``fmt`` state of ``what`` or when any of ``keys``
    of the saved run's config differs from ``config`` (a resumed run must be the same run).
    """
    if not resume or not path.exists():
        if path.exists() or resume:
            logger.warning("%s: %s", path, "overwritten by a fresh run (resume: false)" if path.exists()
                           else "not found, starting a fresh run")
        return None
    state = torch.load(path, map_location="cpu", weights_only=True)
    if not isinstance(state, dict) or state.get("format") != fmt:
        raise ConfigError(f"resume: {path} is not a pvad {what} ({fmt})")
    changed = [k for k in keys if state["config"].get(k) != config[k]]
    if changed:
        raise ConfigError(f"resume: {', '.join(changed)} differ from the run saved in {path}; set resume: false "
                          "or restore them")
    logger.info("resuming from %s after epoch %d", path, state["epoch"])
    return state


def atomic_torch_save(obj: Any, path: str | os.PathLike[str]) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: a crash never leaves a torn file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: str | os.PathLike[str]) -> tuple[dict[str, torch.Tensor], ModelCard]:
    """Read ``(state_dict, card)`` from a checkpoint file, tensors on CPU.

    Raises ModelLoadError naming the file when it is missing, unreadable, not a pvad
    checkpoint, or its card is invalid.
    """
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"checkpoint {path}: file not found")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or foreign files
        raise ModelLoadError(f"checkpoint {path}: not a readable torch file ({exc})") from exc
    if not isinstance(payload, dict) or payload.get("format") != CHECKPOINT_FORMAT:
        found = payload.get("format") if isinstance(payload, dict) else type(payload).__name__
        raise ModelLoadError(
            f"checkpoint {path}: format is {found!r}, expected {CHECKPOINT_FORMAT!r} "
            "(was it written by models.checkpoint.save_checkpoint?)"
        )
    try:
        card = ModelCard.model_validate(payload.get("card"))
    except ValidationError as exc:
        raise ModelLoadError(f"checkpoint {path}: invalid model card: {exc}") from exc
    state_dict = payload.get("state_dict")
    if not isinstance(state_dict, dict) or not all(isinstance(v, torch.Tensor) for v in state_dict.values()):
        raise ModelLoadError(f"checkpoint {path}: 'state_dict' is missing or not a dict of tensors")
    return state_dict, card


def load_model(path: str | os.PathLike[str]) -> tuple[nn.Module, ModelCard]:
    """Build the card's architecture, load the weights strictly, return ``(module in eval mode, card)``."""
    state_dict, card = load_checkpoint(path)
    try:
        model = build_model(card)
    except ModelLoadError as exc:
        raise ModelLoadError(f"checkpoint {path}: {exc}") from exc
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as exc:
        raise ModelLoadError(
            f"checkpoint {path}: weights do not match architecture {card.architecture!r} "
            f"with {card.arch_kwargs}: {exc}"
        ) from exc
    model.eval()
    logger.info("loaded %s from %s (trained=%s)", card.architecture, path, card.trained)
    return model, card
