"""Reading config files: which model a ``kind`` is, YAML → validated model, errors with field paths."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from pvad.config.camera import CameraConfig
from pvad.config.demo import DemoConfig
from pvad.config.server import ServerConfig
from pvad.config.subscriber import SubscriberConfig
from pvad.errors import ConfigError

KINDS: dict[str, type[BaseModel] | str] = {
    "server": ServerConfig,
    "camera": CameraConfig,
    "subscriber": SubscriberConfig,
    "demo": DemoConfig,
    # Sections that live beside the code they configure, imported only when such a file is read.
    "train-autoencoder": "models.train.autoencoder_config:TrainAutoencoderConfig",
    "train-anonymizer": "models.train.anonymizer:TrainAnonymizerConfig",
    "train-classifier": "models.train.classifier_config:TrainClassifierConfig",
    "attack-whitebox": "models.eval.whitebox_config:WhiteboxAttackConfig",
}


def config_model(kind: str) -> type[BaseModel]:
    model = KINDS[kind]
    if isinstance(model, str):
        import importlib

        module, _, name = model.partition(":")
        model = getattr(importlib.import_module(module), name)
    return model


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"{path}: {e['msg']}")
    return "\n".join(lines)


def validate_config(data: Any, model: type[BaseModel], *, origin: str = "config") -> BaseModel:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as err:
        raise ConfigError(f"{origin}: {err.error_count()} error(s)\n{format_validation_error(err)}") from None


def guess_kind(data: Any) -> str:
    """Best guess of which kind of file this is, from a `kind:` key or the keys present."""
    if isinstance(data, dict):
        if "kind" in data:
            return str(data["kind"])
        if "camera_id" in data and "capture" in data:
            return "camera"
        if "listen" in data or "decoders" in data:
            return "server"
        if "workdir" in data or "source" in data:
            return "demo"
        if "include_scores" in data:
            return "subscriber"
    raise ConfigError(f"cannot tell what kind of config this is: add `kind:` ({'|'.join(KINDS)})")


def load_config(path: str | Path, kind: str | None = None) -> BaseModel:
    """Read and validate a YAML config (relative paths in it are relative to the working directory)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    data = dict(data or {})
    file_kind = data.pop("kind", None)
    kind = kind or file_kind or guess_kind(data)
    if kind not in KINDS:
        raise ConfigError(f"{path}: kind: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    return validate_config(data, config_model(kind), origin=str(path))
