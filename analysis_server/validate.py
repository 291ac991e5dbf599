"""Frame validation: everything a camera sends is checked here before any network sees it.

`parse_frame` turns a `pvad.v1.Frame` into a `Payload` or raises a `PvadError` whose message
names the problem (the service maps it to a gRPC status in the frame's ack).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from pvad.codec import decode_latent
from pvad.config import ANONYMIZER_NAMES, FRAME_HEIGHT, FRAME_WIDTH, ServerConfig
from pvad.errors import IdentityMismatch, InvalidFrame, PolicyRefused, UnknownEncoder
from pvad.v1 import pvad_pb2

_JPEG_SOI = b"\xff\xd8"
_JPEG_EOI = b"\xff\xd9"


@dataclass(frozen=True)
class Payload:
    """A validated frame. Exactly one of `latent` (C x H x W float32) and `image` (H x W x 3 RGB uint8)."""

    camera_id: str
    seq: int
    capture_time_ns: int
    latent: np.ndarray | None = None
    encoder_id: str = ""
    image: np.ndarray | None = None
    anonymizer: str = ""  # the image anonymizer's registry name (images only)
    discontinuity: bool = False  # this frame does not follow the camera's previous one

    @property
    def source(self) -> str:
        """What made the frame: ``latent:<encoder id>`` or ``image:<anonymizer>`` (normality models record it)."""
        return f"latent:{self.encoder_id}" if self.latent is not None else f"image:{self.anonymizer or 'unknown'}"


def _image_size(jpeg: bytes) -> tuple[int, int] | None:
    """(width, height) from the JPEG's SOF marker without decoding it; None if not found."""
    i, n = 2, len(jpeg)
    while i + 9 < n:
        if jpeg[i] != 0xFF:
            return None
        marker = jpeg[i + 1]
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        length = int.from_bytes(jpeg[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            h = int.from_bytes(jpeg[i + 5 : i + 7], "big")
            w = int.from_bytes(jpeg[i + 7 : i + 9], "big")
            return w, h
        i += 2 + length
    return None


def decode_jpeg(jpeg: bytes, *, max_width: int, max_height: int) -> np.ndarray:
    """JPEG bytes -> RGB uint8 at FRAME_HEIGHT x FRAME_WIDTH. Rejects truncated or oversized images."""
    if not jpeg:
        raise InvalidFrame("image payload is empty")
    if not jpeg.startswith(_JPEG_SOI):
        raise InvalidFrame("image payload is not a JPEG (no start-of-image marker)")
    if not jpeg.rstrip(b"\x00").endswith(_JPEG_EOI):
        raise InvalidFrame("JPEG is truncated (no end-of-image marker)")
    size = _image_size(jpeg)
    if size is None:
        raise InvalidFrame("JPEG has no frame header")
    w, h = size
    if w > max_width or h > max_height or w == 0 or h == 0:
        raise InvalidFrame(f"JPEG is {w}x{h}; this server accepts at most {max_width}x{max_height}")
    bgr = cv2.imdecode(np.frombuffer(jpeg, np.uint8), cv2.IMREAD_COLOR)
    if bgr is None:
        raise InvalidFrame("JPEG could not be decoded")
    if bgr.shape[:2] != (FRAME_HEIGHT, FRAME_WIDTH):
        bgr = cv2.resize(bgr, (FRAME_WIDTH, FRAME_HEIGHT), interpolation=cv2.INTER_AREA)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def parse_frame(
    frame: pvad_pb2.Frame,
    *,
    cfg: ServerConfig,
    peer_camera_id: str,
    encoders: dict[str, tuple[int, ...]],
) -> Payload:
    """Validate `frame` sent by the camera whose certificate says `peer_camera_id`.

    `encoders` maps each encoder id the server can decode to its latent shape.
    """
    if frame.camera_id != peer_camera_id:
        raise IdentityMismatch(
            f"frame says camera {frame.camera_id!r} but the client certificate is for camera {peer_camera_id!r}"
        )
    kind = frame.WhichOneof("payload")
    base = dict(camera_id=frame.camera_id, seq=frame.seq, capture_time_ns=frame.capture_time.ToNanoseconds(),
                discontinuity=frame.discontinuity)
    if kind == "latent":
        if "dp-encoder" not in cfg.accept:
            raise PolicyRefused(f"this server does not accept latents; it accepts {cfg.accept}")
        lat = frame.latent
        if lat.encoder_id not in encoders:
            raise UnknownEncoder(
                f"no decoder for encoder id {lat.encoder_id!r}; this server has {sorted(encoders)}"
            )
        latent = decode_latent(lat, expected_shape=encoders[lat.encoder_id])
        return Payload(**base, latent=latent, encoder_id=lat.encoder_id)
    if kind == "image":
        name = frame.image.anonymizer
        if name not in ANONYMIZER_NAMES or name == "dp-encoder":
            raise InvalidFrame(f"unknown image anonymizer {name!r}")
        if name not in cfg.accept:
            raise PolicyRefused(f"this server does not accept {name!r} images; it accepts {cfg.accept}")
        image = decode_jpeg(
            frame.image.jpeg, max_width=cfg.limits.max_image_width, max_height=cfg.limits.max_image_height
        )
        return Payload(**base, image=image, anonymizer=name)
    raise InvalidFrame("frame has no payload (neither latent nor image)")
