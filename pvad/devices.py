"""Which torch device a configured `device: cpu | cuda | auto` means: the one rule for every part.

`auto` is CUDA when torch sees a GPU, else the CPU. `cuda` without a GPU falls back to the CPU with a
warning naming the field (a server or camera keeps running), or, with `strict`, is a `ConfigError`
(a training job would otherwise run for hours on the wrong device).
"""

from __future__ import annotations

import logging

log = logging.getLogger(__name__)


def resolve_device(name: str, *, field: str = "device", strict: bool = False):
    import torch  # here: camera-only installs import pvad without torch

    if name in ("auto", "cuda") and torch.cuda.is_available():
        return torch.device("cuda")
    if name == "cuda":
        if strict:
            from pvad.errors import ConfigError

            raise ConfigError(f"{field}: cuda requested but torch sees no CUDA device")
        log.warning("%s: cuda requested but no CUDA device is available; running on CPU", field)
    return torch.device("cpu")


def synchronize(device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously: a timing must cover the work, not its
    launch); nothing to wait for on a CPU."""
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize(device)
