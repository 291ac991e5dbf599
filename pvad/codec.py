"""Latent codec: the one place that turns a latent tensor into a `pvad.v1.Latent` message and back.

Layout on the wire: C x H x W (channels first), row-major, little-endian.
- float16: values rounded to half precision; relative error <= 2**-11 (about 4.9e-4) inside
  float16's normal range.
- uint8: affine quantisation over the tensor's own min..max, q = round(x / scale) + zero_point,
  value = (q - zero_point) * scale; absolute error <= scale / 2 = (max - min) / 510.
Either form may be zstd-compressed (lossless); a uint8 latent may instead be row-delta coded
before zstd (`zstd-delta`: each row minus the row above, mod 256; about 20 % smaller than plain zstd
on the shipped encoder's latents, see `pvad bench encoder`). The receiver refuses a zstd frame that
would decompress to anything but the exact byte count of the declared shape and dtype.
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
COMPRESSIONS = {
    "none": pvad_pb2.COMPRESSION_NONE,
    "zstd": pvad_pb2.COMPRESSION_ZSTD,
    "zstd-delta": pvad_pb2.COMPRESSION_ZSTD_ROW_DELTA,
}
ZSTD_LEVEL = 3


def _zstd():
    try:
        import zstandard
    except ImportError:  # pragma: no cover - a declared dependency
        raise InvalidFrame("zstd-compressed latent, but the zstandard package is not installed") from None
    return zstandard


def encode_latent(latent: np.ndarray, *, encoder_id: str, dtype: str, compression: str = "none") -> pvad_pb2.Latent:
    """Pack one latent (C, H, W float array) into a `Latent` message."""
    if compression not in COMPRESSIONS:
        raise ValueError(f"unknown compression {compression!r}; known: {', '.join(COMPRESSIONS)}")
    if compression == "zstd-delta" and dtype != "uint8":
        raise ValueError("compression zstd-delta needs dtype uint8 (row differences of float16 bytes do not compress)")
    msg = _pack(latent, encoder_id=encoder_id, dtype=dtype)
    if compression == "none":
        return msg
    data = msg.data
    if compression == "zstd-delta":
        q = np.frombuffer(data, dtype=np.uint8).reshape(latent.shape)
        data = np.diff(q, axis=1, prepend=np.zeros_like(q[:, :1])).tobytes()  # uint8 arithmetic wraps mod 256
    msg.data = _zstd().ZstdCompressor(level=ZSTD_LEVEL).compress(data)
    msg.compression = COMPRESSIONS[compression]
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
    if msg.compression == pvad_pb2.COMPRESSION_ZSTD_ROW_DELTA and msg.dtype != pvad_pb2.DTYPE_UINT8:
        raise InvalidFrame("latent compression COMPRESSION_ZSTD_ROW_DELTA is only defined for DTYPE_UINT8")
    if msg.compression in (pvad_pb2.COMPRESSION_ZSTD, pvad_pb2.COMPRESSION_ZSTD_ROW_DELTA):
        zstd = _zstd()
        try:  # bounded: read at most one byte past the declared tensor, whatever the frame claims
            with zstd.ZstdDecompressor().stream_reader(io.BytesIO(data)) as reader:
                data = reader.read(expected_bytes + 1)
        except zstd.ZstdError as err:
            raise InvalidFrame(f"latent zstd data is corrupt: {err}") from None
        if len(data) > expected_bytes:
            raise InvalidFrame(f"latent zstd data expands past the {expected_bytes} bytes its shape allows")
    elif msg.compression != pvad_pb2.COMPRESSION_NONE:
        raise InvalidFrame(f"latent compression {msg.compression} is not one of {', '.join(COMPRESSIONS)}")
    if len(data) != expected_bytes:
        raise InvalidFrame(
            f"latent data has {len(data)} bytes; shape {list(shape)} as {np_dtype.name} needs {expected_bytes}"
        )
    raw = np.frombuffer(data, dtype=np_dtype).reshape(shape)
    if msg.compression == pvad_pb2.COMPRESSION_ZSTD_ROW_DELTA:
        raw = np.cumsum(raw, axis=1, dtype=np.uint8)  # undo the row differences, mod 256
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
