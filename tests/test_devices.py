"""The one device rule (pvad/devices.py) that the server, cameras, trainers and evaluations share."""

import logging

import pytest
import torch

from pvad.devices import resolve_device
from pvad.errors import ConfigError


def test_auto_and_cpu():
    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU fallback")
def test_cuda_without_a_gpu_warns_or_refuses(caplog):
    with caplog.at_level(logging.WARNING):
        assert resolve_device("cuda", field="analysis.device").type == "cpu"
    assert "analysis.device: cuda requested" in caplog.text
    with pytest.raises(ConfigError, match="device: cuda requested but torch sees no CUDA device"):
        resolve_device("cuda", strict=True)
