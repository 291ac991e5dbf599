"""Anonymizer registry: one on-device privacy transform per camera, selected by name.

Each anonymizer takes a BGR uint8 frame (240 x 320 x 3) and returns the payload that goes on the
wire: a `pvad.v1.Latent` (dp-encoder) or a `pvad.v1.Image` (JPEG of the transformed frame).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from pvad.v1 import pvad_pb2


class Anonymizer(Protocol):
    name: str
    untrained: bool  # True when it runs on weights that were never trained

    def __call__(self, frame_bgr: np.ndarray) -> pvad_pb2.Latent | pvad_pb2.Image: ...


_REGISTRY: dict[str, Callable[..., Anonymizer]] = {}


def register_anonymizer(name: str) -> Callable:
    def deco(factory: Callable[..., Anonymizer]) -> Callable[..., Anonymizer]:
        if name in _REGISTRY:
            raise ValueError(f"anonymizer {name!r} is registered twice")
        _REGISTRY[name] = factory
        return factory

    return deco


def list_anonymizers() -> list[str]:
    return sorted(_REGISTRY)


def create_anonymizer(cfg) -> Anonymizer:
    """Build the anonymizer named by `cfg.name` from its config section."""
    if cfg.name not in _REGISTRY:
        raise ValueError(f"unknown anonymizer {cfg.name!r}; known: {', '.join(list_anonymizers())}")
    return _REGISTRY[cfg.name](cfg)


# Registration happens on import of the implementations.
from camera_client.anonymize import dp_encoder, image_filters  # noqa: E402,F401
