"""Live views: a small JPEG of what the server analysed last for a camera, made in memory on request.

The image is the decoder's reconstruction of the camera's last latent (the pipeline's own
``reconstruct``, on the analysis thread, so it is exactly what the networks saw) or the anonymized
image the camera sent. It is at most 320x240, encoded to JPEG in memory, cached per frame in memory
only, and never written to disk. A frame whose anonymizer is ``none`` (a raw frame, which the server
may accept for analysis) is never shown, whatever ``accept`` allows.
"""

from __future__ import annotations

import asyncio

import cv2
import numpy as np

from analysis_server.validate import Payload

MAX_WIDTH, MAX_HEIGHT = 320, 240
JPEG_QUALITY = 80


class RawFrameRefused(Exception):
    """The camera sends raw frames (anonymizer ``none``): no live view, ever."""


def fit(rgb: np.ndarray) -> np.ndarray:
    """Scaled down (never up) to fit MAX_WIDTH x MAX_HEIGHT."""
    h, w = rgb.shape[:2]
    s = min(1.0, MAX_WIDTH / w, MAX_HEIGHT / h)
    if s >= 1.0:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def encode_jpeg(rgb: np.ndarray) -> bytes:
    ok, buf = cv2.imencode(".jpg", cv2.cvtColor(np.ascontiguousarray(rgb), cv2.COLOR_RGB2BGR),
                           [cv2.IMWRITE_JPEG_QUALITY, JPEG_QUALITY])
    if not ok:
        raise ValueError("JPEG encoding failed")
    return buf.tobytes()


class ViewMaker:
    """One cached JPEG per camera: the last frame's, made again only when a newer frame was scored."""

    def __init__(self, analyzer) -> None:
        self.analyzer = analyzer
        self._cache: dict[str, tuple[int, bytes]] = {}

    def _reconstruct(self, payload: Payload) -> np.ndarray:
        return self.analyzer.reconstruct([payload])[0]  # the pipeline's own decoding: what the networks saw

    async def jpeg(self, payload: Payload) -> bytes:
        if payload.latent is None and (payload.anonymizer == "none" or payload.image is None):
            raise RawFrameRefused(f"camera {payload.camera_id} sends raw frames (anonymizer none): no live view")
        cached = self._cache.get(payload.camera_id)
        if cached is not None and cached[0] == payload.seq:
            return cached[1]
        if payload.latent is not None:
            rgb = await asyncio.get_running_loop().run_in_executor(self.analyzer.executor, self._reconstruct, payload)
        else:
            rgb = payload.image
        data = await asyncio.to_thread(lambda: encode_jpeg(fit(rgb)))
        self._cache[payload.camera_id] = (payload.seq, data)
        return data
