"""Latent codec round trips within the stated error, and its refusals."""

import numpy as np
import pytest

from pvad.codec import decode_latent, encode_latent
from pvad.errors import InvalidFrame
from pvad.v1 import pvad_pb2

SHAPE = (16, 30, 40)


@pytest.fixture
def latent():
    return np.random.default_rng(0).normal(0, 3, SHAPE).astype(np.float32)


def test_float16_round_trip(latent):
    msg = encode_latent(latent, encoder_id="abc", dtype="float16")
    assert len(msg.data) == latent.size * 2
    out = decode_latent(msg, expected_shape=SHAPE)
    np.testing.assert_allclose(out, latent, rtol=2**-11, atol=1e-7)


def test_uint8_round_trip_error_at_most_half_a_step(latent):
    msg = encode_latent(latent, encoder_id="abc", dtype="uint8")
    assert len(msg.data) == latent.size
    out = decode_latent(msg, expected_shape=SHAPE)
    assert np.abs(out - latent).max() <= msg.scale / 2 + 1e-6
    assert msg.scale == pytest.approx((latent.max() - latent.min()) / 255, rel=1e-6)


def test_uint8_constant_latent():
    z = np.zeros(SHAPE, np.float32)
    out = decode_latent(encode_latent(z, encoder_id="e", dtype="uint8"), expected_shape=SHAPE)
    assert np.array_equal(out, z)


def test_survives_serialisation(latent):
    msg = encode_latent(latent, encoder_id="abc", dtype="uint8")
    again = pvad_pb2.Latent.FromString(msg.SerializeToString())
    assert np.array_equal(decode_latent(again, expected_shape=SHAPE), decode_latent(msg, expected_shape=SHAPE))


@pytest.mark.parametrize(
    "mutate, words",
    [
        (lambda m: m.ClearField("shape") or m.shape.extend([16, 30, 41]), "shape"),
        (lambda m: setattr(m, "dtype", pvad_pb2.DTYPE_UNSPECIFIED), "dtype"),
        (lambda m: setattr(m, "data", m.data[:-1]), "bytes"),
        (lambda m: setattr(m, "data", np.full(SHAPE, np.nan, "<f2").tobytes()), "NaN"),
        (lambda m: setattr(m, "data", np.full(SHAPE, np.inf, "<f2").tobytes()), "infinite"),
    ],
)
def test_bad_latents_are_refused(latent, mutate, words):
    msg = encode_latent(latent, encoder_id="abc", dtype="float16")
    mutate(msg)
    with pytest.raises(InvalidFrame, match=words):
        decode_latent(msg, expected_shape=SHAPE)


def test_uint8_bad_scale_refused(latent):
    msg = encode_latent(latent, encoder_id="abc", dtype="uint8")
    msg.scale = float("nan")
    with pytest.raises(InvalidFrame, match="scale"):
        decode_latent(msg, expected_shape=SHAPE)


@pytest.mark.parametrize("dtype", ["float16", "uint8"])
def test_zstd_round_trip_is_lossless(latent, dtype):
    plain = encode_latent(latent, encoder_id="abc", dtype=dtype)
    packed = encode_latent(latent, encoder_id="abc", dtype=dtype, compression="zstd")
    assert packed.compression == pvad_pb2.COMPRESSION_ZSTD
    assert np.array_equal(decode_latent(packed, expected_shape=SHAPE), decode_latent(plain, expected_shape=SHAPE))


def test_row_delta_is_lossless_and_smaller_on_smooth_latents():
    """A spatially smooth latent (like an encoder's) round-trips exactly and codes smaller."""
    yy, xx = np.mgrid[0:30, 0:40]
    smooth = np.stack([np.sin(yy / (4 + c)) * np.cos(xx / (5 + c)) for c in range(16)]).astype(np.float32)
    plain = encode_latent(smooth, encoder_id="abc", dtype="uint8", compression="zstd")
    delta = encode_latent(smooth, encoder_id="abc", dtype="uint8", compression="zstd-delta")
    assert delta.compression == pvad_pb2.COMPRESSION_ZSTD_ROW_DELTA
    assert np.array_equal(decode_latent(delta, expected_shape=SHAPE), decode_latent(plain, expected_shape=SHAPE))
    assert delta.ByteSize() < plain.ByteSize()


def test_row_delta_needs_uint8(latent):
    with pytest.raises(ValueError, match="uint8"):
        encode_latent(latent, encoder_id="abc", dtype="float16", compression="zstd-delta")
    forged = encode_latent(latent, encoder_id="abc", dtype="float16", compression="zstd")
    forged.compression = pvad_pb2.COMPRESSION_ZSTD_ROW_DELTA
    with pytest.raises(InvalidFrame, match="only defined for DTYPE_UINT8"):
        decode_latent(forged, expected_shape=SHAPE)
    from pydantic import ValidationError

    from pvad.config import DpEncoderAnonymizer

    with pytest.raises(ValidationError, match="zstd-delta needs dtype"):
        DpEncoderAnonymizer(dtype="float16", compression="zstd-delta")


def test_zstd_bomb_and_garbage_are_refused(latent):
    import zstandard

    bomb = encode_latent(latent, encoder_id="abc", dtype="uint8")
    bomb.data = zstandard.ZstdCompressor().compress(b"\0" * (64 * 1024 * 1024))  # 64 MiB from ~2 KB
    bomb.compression = pvad_pb2.COMPRESSION_ZSTD
    with pytest.raises(InvalidFrame, match="expands past"):
        decode_latent(bomb, expected_shape=SHAPE)
    garbage = encode_latent(latent, encoder_id="abc", dtype="uint8")
    garbage.data, garbage.compression = b"not zstd at all", pvad_pb2.COMPRESSION_ZSTD
    with pytest.raises(InvalidFrame, match="corrupt"):
        decode_latent(garbage, expected_shape=SHAPE)
    unknown = encode_latent(latent, encoder_id="abc", dtype="uint8")
    unknown.compression = 9
    with pytest.raises(InvalidFrame, match="compression"):
        decode_latent(unknown, expected_shape=SHAPE)
