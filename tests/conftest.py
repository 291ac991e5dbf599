"""Shared fixtures: a development PKI, a tiny analyzer, and helpers to run an in-process server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from models.data.synth import SynthParams
from pvad.config import (
    AnalysisConfig,
    BatchingConfig,
    ClassifierConfig,
    ClientTLS,
    DecoderConfig,
    EventLogConfig,
    NoDetector,
    NormalityConfig,
    ServerConfig,
    ServerTLS,
)

TINY_SYNTH = SynthParams(seed=5, videos=6, frames=60, fps=10.0)
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
INTEL_VIDEO = SHARED_DATA / "intel_sample_videos" / "one-by-one-person-detection.mp4"
needs_shared = pytest.mark.skipif(not SHARED_DATA.is_dir(), reason="needs ../shared/data (absent on this clone)")

CAMERAS = ("cam-1", "cam-2")


@pytest.fixture(scope="session")
def synth_bench(tmp_path_factory) -> Path:
    """A tiny `pvad synth` benchmark (TINY_SYNTH: 6 videos of 60 frames), written once per session."""
    from models.data.synth import make_benchmark

    out = tmp_path_factory.mktemp("synth") / "bench"
    make_benchmark(out, TINY_SYNTH)
    return out


@pytest.fixture(scope="session")
def pki(tmp_path_factory):
    from pvad.certs import make_dev_pki

    return make_dev_pki(tmp_path_factory.mktemp("pki"), cameras=CAMERAS, subscribers=("ops",))


def tiny_analysis(**overrides) -> AnalysisConfig:
    base = dict(
        device="cpu",
        precision="fp32",  # the same arithmetic on every test machine, whatever its CPU offers
        quantization={"classifier": "none"},  # likewise: no int8 trunks where the CPU has VNNI
        classifier=ClassifierConfig(backbone="tiny", hidden=32, bag=False, pretrained="never"),
        detector=NoDetector(),
        batching=BatchingConfig(max_batch=4, max_wait_ms=2),
        normality=NormalityConfig(enabled=False),  # the classifier path; normality tests turn it on
    )
    base.update(overrides)
    return AnalysisConfig(**base)


@pytest.fixture(scope="session")
def analyzer():
    """One tiny analyzer shared by the server tests (untrained decoder of seed 0, tiny backbone)."""
    from analysis_server.pipeline import Analyzer

    return Analyzer(tiny_analysis(), DecoderConfig(checkpoints=[], untrained_seeds=[0]))


@pytest.fixture(scope="session")
def encoder():
    """The camera's dp-encoder with the untrained seed-0 weights, whose decoder `analyzer` holds."""
    from camera_client.anonymize import create_anonymizer
    from pvad.config import DpEncoderAnonymizer

    return create_anonymizer(DpEncoderAnonymizer(checkpoint=None, seed=0))


def server_config(pki, tmp_path, **overrides) -> ServerConfig:
    s = pki["server"]
    base = dict(
        listen="127.0.0.1:0",
        tls=ServerTLS(ca=s.ca, cert=s.cert, key=s.key),
        accept=["dp-encoder", "blur", "pixelate"],
        analysis=tiny_analysis(),
        event_log=EventLogConfig(path=tmp_path / "events.sqlite"),
    )
    base.update(overrides)
    return ServerConfig(**base)


def client_tls(pki, who: str) -> ClientTLS:
    p = pki[who]
    return ClientTLS(ca=p.ca, cert=p.cert, key=p.key)


def run(coro, timeout: float = 60.0):
    """Run a coroutine with a hard time limit, so a hung stream fails the test instead of the suite."""
    return asyncio.run(asyncio.wait_for(coro, timeout))


async def exchange(address: str, tls: ClientTLS, frames) -> list:
    """Send `frames` on one Ingest stream; return the acks in order."""
    from pvad.channel import secure_channel
    from pvad.v1 import pvad_pb2_grpc

    async with secure_channel(address, tls) as ch:
        stub = pvad_pb2_grpc.IngestStub(ch)

        async def gen():
            for f in frames:
                yield f

        return [a async for a in stub.Stream(gen(), timeout=30)]
