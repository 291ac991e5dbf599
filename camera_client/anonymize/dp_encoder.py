"""`dp-encoder`: the encoder half of the (DP-trained) autoencoder runs on the camera; only its
latent code (16 x 30 x 40) leaves the device, tagged with the encoder's id (G §3.3.1)."""

from __future__ import annotations

import logging

import cv2
import numpy as np

from camera_client.anonymize import register_anonymizer
from pvad.codec import encode_latent
from pvad.config import DpEncoderAnonymizer
from pvad.devices import resolve_device
from pvad.errors import ModelLoadError
from pvad.v1 import pvad_pb2

log = logging.getLogger(__name__)


class DpEncoder:
    name = "dp-encoder"

    def __init__(self, cfg: DpEncoderAnonymizer) -> None:
        self.dtype = cfg.dtype
        self.compression = cfg.compression
        self.noise = cfg.latent_noise
        self._rng = np.random.default_rng()
        self._exported = None
        if cfg.runtime == "onnxruntime":
            self._init_exported(cfg)
        else:
            self._init_torch(cfg)
        if self.noise is not None:
            from models.latent_noise import gaussian_epsilon

            eps = gaussian_epsilon(self.noise.sigma / (2 * self.noise.clip_norm), self.noise.delta)
            log.info("latent noise: clip %.3g, sigma %.3g -> each frame is (%.3g, %.0e)-DP", self.noise.clip_norm,
                     self.noise.sigma, eps, self.noise.delta)

    def _init_exported(self, cfg: DpEncoderAnonymizer) -> None:
        from camera_client.anonymize.exported import ExportedEncoder

        self._exported = ExportedEncoder(cfg.exported)
        self.encoder_id = self._exported.encoder_id
        self.untrained = not self._exported.card.get("trained", False)
        log.info("dp-encoder %s from %s on %s", self.encoder_id, cfg.exported, ", ".join(self._exported.providers))

    def _init_torch(self, cfg: DpEncoderAnonymizer) -> None:
        try:  # here, not at import: cameras with image anonymizers or onnxruntime run without torch
            import torch
        except ImportError:
            raise ModelLoadError("anonymizer.runtime torch needs PyTorch (pip install 'pvad[server]'); "
                                 "a camera-only install uses `runtime: onnxruntime`") from None

        from models.nets.autoencoder import encoder_id, load_autoencoder

        self._torch = torch
        ae, card = load_autoencoder(cfg.checkpoint, seed=cfg.seed)
        self.device = resolve_device(cfg.device, field="anonymizer.device")
        if cfg.precision == "fp16" and self.device.type != "cuda":
            raise ModelLoadError("anonymizer.precision: fp16 needs a CUDA device; use bf16 or fp32 on a CPU")
        self._dtype = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}[cfg.precision]
        self.encoder = ae.encoder.to(self.device).eval()
        self.encoder_id = encoder_id(ae.encoder)
        self.untrained = not card.trained
        if self.untrained:
            log.warning("dp-encoder %s is UNTRAINED (%s): latents are not private by training", self.encoder_id, card.provenance)
        else:
            log.info("dp-encoder %s loaded (%s)", self.encoder_id, card.provenance)

    def encode(self, frame_bgr: np.ndarray) -> np.ndarray:
        """BGR uint8 240x320x3 -> latent float32 16x30x40."""
        rgb = cv2.cvtColor(frame_bgr, cv2.COLOR_BGR2RGB)
        if self._exported is not None:
            return self._exported(rgb.transpose(2, 0, 1)[None].astype(np.float32) / 255.0)[0]
        torch = self._torch
        with torch.inference_mode(), torch.autocast(self.device.type, dtype=self._dtype, enabled=self._dtype is not None):
            x = torch.from_numpy(rgb).to(self.device).permute(2, 0, 1).unsqueeze(0).float().div_(255.0)
            return self.encoder(x.contiguous(memory_format=torch.channels_last))[0].float().cpu().numpy()

    def __call__(self, frame_bgr: np.ndarray) -> pvad_pb2.Latent:
        z = self.encode(frame_bgr)
        if self.noise is not None:
            from models.latent_noise import privatize_latent

            z = privatize_latent(z, clip_norm=self.noise.clip_norm, sigma=self.noise.sigma, rng=self._rng)
        return encode_latent(z, encoder_id=self.encoder_id, dtype=self.dtype, compression=self.compression)


@register_anonymizer("dp-encoder")
def _make(cfg: DpEncoderAnonymizer) -> DpEncoder:
    return DpEncoder(cfg)
