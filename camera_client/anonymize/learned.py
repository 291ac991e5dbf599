"""`learned`: the frame goes through the adversarially trained anonymizer (models/nets/learned_anonymizer.py,
trained by `pvad train anonymizer`) on the camera, and its output leaves as a JPEG `pvad.v1.Image`
(anonymizer "learned"), decoded by the server like any image payload."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from camera_client.anonymize import register_anonymizer
from camera_client.anonymize.image_filters import encode_jpeg
from pvad.config import LearnedAnonymizer as LearnedAnonymizerConfig
from pvad.devices import resolve_device
from pvad.errors import ModelLoadError
from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)


class LearnedAnonymizer:
    name = "learned"

    def __init__(self, cfg: LearnedAnonymizerConfig) -> None:
        try:  # here, not at import: cameras with other anonymizers run without torch
            import torch
        except ImportError:
            raise ModelLoadError("anonymizer `learned` needs PyTorch (pip install 'pvad[server]')") from None
        from models.nets.learned_anonymizer import load_anonymizer

        self._torch = torch
        model, card = load_anonymizer(cfg.checkpoint)
        self.device = resolve_device(cfg.device, field="anonymizer.device")
        self.model = model.to(self.device).eval()
        self.card = card
        self.quality = cfg.jpeg_quality
        self.untrained = not card.trained
        if self.untrained:
            log.warning("learned anonymizer %s is UNTRAINED (%s)", cfg.checkpoint, card.provenance)
        else:
            log.info("learned anonymizer loaded from %s (%s)", cfg.checkpoint, card.provenance)

    def transform(self, frame_bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 H×W×3 (H, W multiples of 8; 240×320 on the camera) → anonymized BGR uint8."""
        torch = self._torch
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        with torch.inference_mode():
            x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            y = self.model(x.contiguous(memory_format=torch.channels_last))[0]
            out = y.mul(255.0).round_().clamp_(0, 255).to(torch.uint8).permute(1, 2, 0).cpu().numpy()
        return cv2.cvtColor(out, cv2.COLOR_RGB2BGR)

    def __call__(self, frame_bgr: np.ndarray) -> pvad_pb2.Image:
        return pvad_pb2.Image(anonymizer=self.name, jpeg=encode_jpeg(self.transform(frame_bgr), self.quality))


@register_anonymizer("learned")
def _make(cfg: LearnedAnonymizerConfig) -> LearnedAnonymizer:
    return LearnedAnonymizer(cfg)
