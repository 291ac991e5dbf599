"""Latent codec: the one place that turns a latent tensor into a `pvad.v1.Latent` message and back.

Layout on the wire: C x H x W (channels first), row-major, little-endian.
- float16: values rounded to half precision; relative error <= 2**-11 (about 4.9e-4) inside
  float16's normal range.
- uint8: affine quantisation over the tensor's own min..max, q = round(x / scale) + zero_point,
  value = (q - zero_point) * scale; absolute error <= scale / 2 = (max - min) / 510.
Either form may be zstd-compressed (lossless); the receiver refuses a zstd frame that would
decompress to anything but the exact byte count of the declared shape and dtype.
"""

from __future__ import annotations

import io
import math

import numpy as np

from pvad.errors import InvalidFrame
from pvad.v1 import pvad_pb2

DTYPES = {
    "float16": pvad_pb2.DTYPE_FLOAT16,
    "uint8": pvad_pb2.DTYPE_UINT8,
}
_NUMPY = {pvad_pb2.DTYPE_FLOAT16: np.dtype("<f2"), pvad_pb2.DTYPE_UINT8: np.dtype("u1")}
COMPRESSIONS = ("none", "zstd")
ZSTD_LEVEL = 3


def _zstd():
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a declared dependency
        raise InvalidFrame("zstd-compressed latent, but the zstandard package is not installed") from None
    return zstandard


def encode_latent(latent: np.ndarray, *, encoder_id: str, dtype: str, compression: str = "none") -> pvad_pb2.Latent:
    """Pack one latent (C, H, W float array) into a `Latent` message."""
    msg = _pack(latent, encoder_id=encoder_id, dtype=dtype)
    if compression == "zstd":
        msg.data = _zstd().ZstdCompressor(level=ZSTD_LEVEL).compress(msg.data)
        msg.compression = pvad_pb2.COMPRESSION_ZSTD
    elif compression != "none":
        raise ValueError(f"unknown compression {compression!r}; known: {', '.join(COMPRESSIONS)}")
    return msg


def _pack(latent: np.ndarray, *, encoder_id: str, dtype: str) -> pvad_pb2.Latent:
    if latent.ndim != 3:
        raise ValueError(f"latent must be C x H x W, got shape {latent.shape}")
    if dtype not in DTYPES:
        raise ValueError(f"unknown latent dtype {dtype!r}; known: {', '.join(DTYPES)}")
    x = np.ascontiguousarray(latent, dtype=np.float32)
    msg = pvad_pb2.Latent(encoder_id=encoder_id, shape=list(x.shape), dtype=DTYPES[dtype])
    if dtype == "float16":
        msg.data = x.astype("<f2").tobytes()
        return msg
    lo, hi = float(x.min()), float(x.max())
    lo, hi = min(lo, 0.0), max(hi, 0.0)  # keep 0 exactly representable
    scale = (hi - lo) / 255.0 or 1.0
    zero_point = int(round(-lo / scale))
    q = np.clip(np.rint(x / scale) + zero_point, 0, 255).astype(np.uint8)
    msg.scale, msg.zero_point, msg.data = scale, zero_point, q.tobytes()
    return msg


def decode_latent(msg: pvad_pb2.Latent, *, expected_shape: tuple[int, ...]) -> np.ndarray:
    """Unpack and validate a `Latent`; raises `InvalidFrame` saying exactly what is wrong."""
    shape = tuple(int(s) for s in msg.shape)
    if shape != tuple(expected_shape):
        raise InvalidFrame(f"latent shape {list(shape)} is not the expected {list(expected_shape)}")
    if msg.dtype not in _NUMPY:
        name = pvad_pb2.DType.Name(msg.dtype) if msg.dtype in pvad_pb2.DType.values() else str(msg.dtype)
        raise InvalidFrame(f"latent dtype {name} is not allowed; allowed: DTYPE_FLOAT16, DTYPE_UINT8")
    np_dtype = _NUMPY[msg.dtype]
    expected_bytes = math.prod(shape) * np_dtype.itemsize
    data = msg.data
    if msg.compression == pvad_pb2.COMPRESSION_ZSTD:
        zstd = _zstd()
        try:  # bounded: read at most one byte past the declared tensor, whatever the frame claims
            with zstd.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
                data = reader.read(expected_bytes + 1)
        except zstd.ZstdError as err:
            raise InvalidFrame(f"latent zstd data is corrupt: {err}") from None
        if len(data) > expected_bytes:
            raise InvalidFrame(f"latent zstd data expands past the {expected_bytes} bytes its shape allows")
    elif msg.compression != pvad_pb2.COMPRESSION_NONE:
        raise InvalidFrame(f"latent compression {msg.compression} is not one of none, zstd")
    if len(data) != expected_bytes:
        raise InvalidFrame(
            f"latent data has {len(data)} bytes; shape {list(shape)} as {np_dtype.name} needs {expected_bytes}"
        )
    raw = np.frombuffer(data, dtype=np_dtype).reshape(shape)
    if msg.dtype == pvad_pb2.DTYPE_FLOAT16:
        out = raw.astype(np.float32)
    else:
        if not (math.isfinite(msg.scale) and msg.scale > 0):
            raise InvalidFrame(f"uint8 latent scale must be a positive finite number, got {msg.scale}")
        if not 0 <= msg.zero_point <= 255:
            raise InvalidFrame(f"uint8 latent zero_point must be in [0, 255], got {msg.zero_point}")
        out = (raw.astype(np.float32) - msg.zero_point) * np.float32(msg.scale)
    if not np.isfinite(out).all():
        raise InvalidFrame("latent contains NaN or infinite values")
    return out
