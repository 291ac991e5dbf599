"""Anonymizer registry: one on-device privacy transform per camera, selected by name.

Each anonymizer takes a BGR uint8 frame (240 x 320 x 3) and returns the payload that goes on the
wire: a `pvad.v1.Latent` (dp-encoder) or a `pvad.v1.Image` (JPEG of the transformed frame).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol

import numpy as np

from pvad.registry import Registry
from pvad.v1 import pvad_pb2


class Anonymizer(Protocol):
    name: str
    untrained: bool  # True when it runs on weights that were never trained

    def __call__(self, frame_bgr: np.ndarray) -> pvad_pb2.Latent | pvad_pb2.Image: ...


_REGISTRY: Registry[Callable[..., Anonymizer]] = Registry("anonymizer")
register_anonymizer = _REGISTRY.register


def list_anonymizers() -> list[str]:
    return _REGISTRY.names()


def create_anonymizer(cfg) -> Anonymizer:
    """Build the anonymizer named by `cfg.name` from its config section."""
    return _REGISTRY.get(cfg.name)(cfg)


# Registration happens on import of the implementations.
from camera_client.anonymize import dp_encoder, image_filters, learned, regions  # noqa: E402,F401
