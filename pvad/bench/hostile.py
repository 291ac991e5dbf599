"""Malformed and hostile frames, generated with hypothesis, for the fault benchmark.

Every class here must be refused by the server (a REJECTED ack, or for bytes that are not a
protobuf at all, an error status on that one call); none may crash it or disturb other streams.
"""

from __future__ import annotations

import random

import numpy as np
from hypothesis import strategies as st

from pvad.v1 import pvad_pb2

LATENT_SHAPE = (16, 30, 40)


def _latent(encoder_id: str, **kw) -> pvad_pb2.Latent:
    base = dict(encoder_id=encoder_id, shape=list(LATENT_SHAPE), dtype=pvad_pb2.DTYPE_FLOAT16,
                data=np.zeros(LATENT_SHAPE, "<f2").tobytes())
    base.update(kw)
    return pvad_pb2.Latent(**base)


def hostile_frames(camera_id: str, encoder_id: str, good_jpeg: bytes) -> dict[str, st.SearchStrategy]:
    """One strategy per hostile class; each draws a `pvad.v1.Frame` the server must refuse."""

    def frame(**payload) -> pvad_pb2.Frame:
        return pvad_pb2.Frame(camera_id=camera_id, **payload)

    shapes = st.lists(st.integers(0, 2**31), min_size=0, max_size=6).filter(lambda s: tuple(s) != LATENT_SHAPE)
    return {
        "wrong_shape": shapes.map(lambda s: frame(latent=_latent(encoder_id, shape=s))),
        "wrong_dtype": st.integers(3, 2**20).map(lambda d: frame(latent=_latent(encoder_id, dtype=d))),
        "wrong_size": st.binary(max_size=4096).map(lambda b: frame(latent=_latent(encoder_id, data=b))),
        "nan_inf": st.sampled_from([np.nan, np.inf, -np.inf]).map(
            lambda v: frame(latent=_latent(encoder_id, data=np.full(LATENT_SHAPE, v, "<f2").tobytes()))
        ),
        "huge_dims": st.integers(10_000, 2**32 - 1).map(
            lambda n: frame(latent=_latent(encoder_id, shape=[16, n, n]))
        ),
        "unknown_encoder": st.text("0123456789abcdef", min_size=1, max_size=32).filter(lambda e: e != encoder_id).map(
            lambda e: frame(latent=_latent(e))
        ),
        "truncated_jpeg": st.integers(2, max(3, len(good_jpeg) - 3)).map(
            lambda n: frame(image=pvad_pb2.Image(anonymizer="blur", jpeg=good_jpeg[:n]))
        ),
        "garbage_jpeg": st.binary(min_size=0, max_size=2048).map(
            lambda b: frame(image=pvad_pb2.Image(anonymizer="blur", jpeg=b"\xff\xd8" + b + b"\xff\xd9"))
        ),
        "wrong_camera": st.text("abcdefghij-", min_size=1, max_size=20).filter(lambda c: c != camera_id).map(
            lambda c: pvad_pb2.Frame(camera_id=c, latent=_latent(encoder_id))
        ),
        "no_payload": st.just(frame()),
    }


def draw_many(strategy: st.SearchStrategy, n: int) -> list:
    """`n` examples of a strategy, outside a test (hypothesis' `example()` is meant for the REPL)."""
    from hypothesis import HealthCheck, given, settings

    out: list = []

    @settings(max_examples=1, database=None, suppress_health_check=list(HealthCheck), deadline=None)
    @given(st.lists(strategy, min_size=n, max_size=n))
    def pick(xs):
        out[:] = xs

    pick()
    return out


def random_bytes(rng: random.Random, n: int) -> bytes:
    return bytes(rng.getrandbits(8) for _ in range(n))
