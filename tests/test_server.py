"""The server in-process on port 0 with certificates from a fixture: mTLS, acks, bad input, alarms."""

from __future__ import annotations

import asyncio

import cv2
import grpc
import numpy as np
import pytest
from conftest import client_tls, exchange, run, server_config

from analysis_server.pipeline import FrameResult
from analysis_server.service import start_server
from camera_client.anonymize import create_anonymizer
from camera_client.client import make_frame
from pvad.channel import secure_channel
from pvad.codec import encode_latent
from pvad.config import BlurAnonymizer, DpEncoderAnonymizer
from pvad.subscriber import follow_alarms
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

rng = np.random.default_rng(0)
FRAME = (rng.random((240, 320, 3)) * 255).astype(np.uint8)


def latent_frame(encoder, seq, camera="cam-1", frame=FRAME):
    return make_frame(camera, seq, 0, encoder(frame))


def test_round_trip_with_mtls(pki, tmp_path, analyzer, encoder):
    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        try:
            acks = await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, "camera/cam-1"),
                                  [latent_frame(encoder, s) for s in range(1, 6)])
        finally:
            await srv.stop(0)
        return acks

    acks = run(scenario())
    assert [a.seq for a in acks] == [1, 2, 3, 4, 5]
    assert all(a.outcome == pvad_pb2.ACCEPTED for a in acks)
    assert all(0.0 <= a.confidence <= 1.0 and 0.0 < a.score < 1.0 for a in acks)


def test_refused_without_tls(pki, tmp_path, analyzer):
    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        try:
            async with grpc.aio.insecure_channel(f"127.0.0.1:{srv.port}") as ch:
                stub = pvad_pb2_grpc.AlarmsStub(ch)
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in stub.Subscribe(pvad_pb2.SubscribeRequest(), timeout=5):
                        pass
                return err.value.code()
        finally:
            await srv.stop(0)

    assert run(scenario()) == grpc.StatusCode.UNAVAILABLE


def test_frame_for_another_camera_is_refused_and_stream_goes_on(pki, tmp_path, analyzer, encoder):
    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        try:
            frames = [latent_frame(encoder, 1, camera="cam-2"), latent_frame(encoder, 2)]
            return await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, "camera/cam-1"), frames)
        finally:
            await srv.stop(0)

    bad, good = run(scenario())
    assert bad.outcome == pvad_pb2.REJECTED
    assert bad.status_code == grpc.StatusCode.PERMISSION_DENIED.value[0]
    assert "cam-2" in bad.message and "cam-1" in bad.message
    assert good.outcome == pvad_pb2.ACCEPTED


def test_subscriber_certificate_cannot_send_frames(pki, tmp_path, analyzer, encoder):
    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        try:
            with pytest.raises(grpc.aio.AioRpcError) as err:
                await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, "subscriber/ops"), [latent_frame(encoder, 1)])
            return err.value
        finally:
            await srv.stop(0)

    err = run(scenario())
    assert err.code() == grpc.StatusCode.PERMISSION_DENIED


def _jpeg(img, q=90):
    return cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, q])[1].tobytes()


def _bad_frames(encoder):
    good = encoder(FRAME)
    wrong_shape = pvad_pb2.Latent()
    wrong_shape.CopyFrom(good)
    del wrong_shape.shape[:]
    wrong_shape.shape.extend([16, 40, 30])
    wrong_dtype = pvad_pb2.Latent()
    wrong_dtype.CopyFrom(good)
    wrong_dtype.dtype = 7
    short = pvad_pb2.Latent()
    short.CopyFrom(good)
    short.data = good.data[:100]
    nan = encode_latent(np.full((16, 30, 40), np.nan, np.float32), encoder_id=good.encoder_id, dtype="float16")
    unknown = pvad_pb2.Latent()
    unknown.CopyFrom(good)
    unknown.encoder_id = "0123456789abcdef"
    jpeg = _jpeg(FRAME)
    huge = _jpeg(np.zeros((1200, 2000, 3), np.uint8), 50)
    return [
        ("wrong shape", wrong_shape, grpc.StatusCode.INVALID_ARGUMENT, "shape"),
        ("wrong dtype", wrong_dtype, grpc.StatusCode.INVALID_ARGUMENT, "dtype"),
        ("wrong size", short, grpc.StatusCode.INVALID_ARGUMENT, "bytes"),
        ("NaN latent", nan, grpc.StatusCode.INVALID_ARGUMENT, "NaN"),
        ("unknown encoder", unknown, grpc.StatusCode.FAILED_PRECONDITION, "encoder id"),
        ("truncated JPEG", pvad_pb2.Image(anonymizer="blur", jpeg=jpeg[: len(jpeg) // 2]), grpc.StatusCode.INVALID_ARGUMENT, "truncated"),
        ("not a JPEG", pvad_pb2.Image(anonymizer="blur", jpeg=b"hello" * 20), grpc.StatusCode.INVALID_ARGUMENT, "not a JPEG"),
        ("corrupt JPEG", pvad_pb2.Image(anonymizer="blur", jpeg=jpeg[:2] + bytes(200) + jpeg[-2:]), grpc.StatusCode.INVALID_ARGUMENT, "JPEG"),
        ("oversized image", pvad_pb2.Image(anonymizer="blur", jpeg=huge), grpc.StatusCode.INVALID_ARGUMENT, "2000x1200"),
        ("raw refused by policy", pvad_pb2.Image(anonymizer="none", jpeg=jpeg), grpc.StatusCode.FAILED_PRECONDITION, "none"),
        ("unknown anonymizer", pvad_pb2.Image(anonymizer="sepia", jpeg=jpeg), grpc.StatusCode.INVALID_ARGUMENT, "sepia"),
        ("no payload", None, grpc.StatusCode.INVALID_ARGUMENT, "no payload"),
    ]


def test_each_bad_input_is_refused_with_a_named_status_and_streams_go_on(pki, tmp_path, analyzer, encoder):
    cases = _bad_frames(encoder)

    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        address = f"127.0.0.1:{srv.port}"
        try:
            frames = []
            for i, (_, payload, _, _) in enumerate(cases):
                f = pvad_pb2.Frame(camera_id="cam-1", seq=10 + 2 * i)
                if payload is not None:
                    f.MergeFrom(make_frame("cam-1", 10 + 2 * i, 0, payload))
                frames += [f, latent_frame(encoder, 11 + 2 * i)]  # a good frame after each bad one
            other = [latent_frame(encoder, s, camera="cam-2") for s in range(1, 4)]
            acks, other_acks = await asyncio.gather(
                exchange(address, client_tls(pki, "camera/cam-1"), frames),
                exchange(address, client_tls(pki, "camera/cam-2"), other),
            )
            blur_ok = await exchange(address, client_tls(pki, "camera/cam-1"),
                                     [make_frame("cam-1", 1000, 0, create_anonymizer(BlurAnonymizer())(FRAME))])
            return acks, other_acks, blur_ok, srv.ingest.counters
        finally:
            await srv.stop(0)

    acks, other_acks, blur_ok, counters = run(scenario())
    assert len(acks) == 2 * len(cases)
    for (name, _, code, words), bad, good in zip(cases, acks[0::2], acks[1::2]):
        assert bad.outcome == pvad_pb2.REJECTED, name
        assert bad.status_code == code.value[0], (name, bad.message)
        assert words in bad.message, (name, bad.message)
        assert good.outcome == pvad_pb2.ACCEPTED, (name, good.message)
    assert all(a.outcome == pvad_pb2.ACCEPTED for a in other_acks)
    assert blur_ok[0].outcome == pvad_pb2.ACCEPTED
    assert sum(counters.rejected.values()) == len(cases)


def test_duplicate_sequence_numbers_are_not_scored_twice(pki, tmp_path, analyzer, encoder):
    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        try:
            tls = client_tls(pki, "camera/cam-1")
            first = await exchange(f"127.0.0.1:{srv.port}", tls, [latent_frame(encoder, s) for s in (1, 2)])
            again = await exchange(f"127.0.0.1:{srv.port}", tls, [latent_frame(encoder, s) for s in (2, 3)])
            return first, again
        finally:
            await srv.stop(0)

    first, again = run(scenario())
    assert [a.outcome for a in again] == [pvad_pb2.DUPLICATE, pvad_pb2.ACCEPTED]


class _FixedAnalyzer:
    """Stands in for the networks where a test needs a chosen confidence sequence (SAS/alarm tests)."""

    def __init__(self, real, sigmas):
        self.real, self.sigmas = real, list(sigmas)
        self.decoders, self.times, self.untrained, self.executor = real.decoders, real.times, [], real.executor

    normality_cfg = None  # the classifier path only

    def new_camera_flow(self, *args):
        return self.real.new_camera_flow()

    def analyze_frames(self, items):
        return [FrameResult(s) for s in self.analyze(items)]

    def analyze(self, items):
        return [self.sigmas.pop(0) for _ in items]


def test_alarm_resume_after_reconnect_returns_exactly_the_missed_events(pki, tmp_path, analyzer, encoder):
    # 1.0 x4 raises (x: -5,-3,-1,1), 0.0 clears, 1.0 raises again, 0.0 clears: 4 alarm events.
    sigmas = [1.0] * 4 + [0.0] + [1.0] + [0.0]

    async def scenario():
        fake = _FixedAnalyzer(analyzer, sigmas)
        srv = await start_server(server_config(pki, tmp_path), analyzer=fake)
        address = f"127.0.0.1:{srv.port}"
        sub_tls = client_tls(pki, "subscriber/ops")
        try:
            seen = []
            async with secure_channel(address, sub_tls) as ch:
                it = follow_alarms(ch).__aiter__()
                first_batch = asyncio.create_task(it.__anext__())
                await asyncio.sleep(0.2)
                await exchange(address, client_tls(pki, "camera/cam-1"), [latent_frame(encoder, s) for s in range(1, 5)])
                seen.append(await asyncio.wait_for(first_batch, 10))
                await it.aclose()
            # Disconnected: the rest of the events happen while nobody listens.
            await exchange(address, client_tls(pki, "camera/cam-1"), [latent_frame(encoder, s) for s in range(5, 8)])
            async with secure_channel(address, sub_tls) as ch:
                resumed = []
                async for ev in follow_alarms(ch, after_event_id=seen[-1].event_id):
                    resumed.append(ev)
                    if len(resumed) == 3:
                        break
            return seen, resumed, srv.hub.log.since(0)
        finally:
            await srv.stop(0)

    seen, resumed, all_events = run(scenario())
    assert [e.kind for e in all_events] == [pvad_pb2.ALARM_RAISED, pvad_pb2.ALARM_CLEARED,
                                            pvad_pb2.ALARM_RAISED, pvad_pb2.ALARM_CLEARED]
    assert seen[0].kind == pvad_pb2.ALARM_RAISED and seen[0].seq == 4
    assert [e.event_id for e in resumed] == [e.event_id for e in all_events[1:]]
    assert [e.seq for e in resumed] == [5, 6, 7]


class _RecordingAnalyzer(_FixedAnalyzer):
    """Records batch sizes; slow enough that frames from other cameras queue up behind a batch."""

    def __init__(self, real):
        super().__init__(real, [])
        self.batch_sizes = []

    def analyze(self, items):
        import time

        self.batch_sizes.append(len(items))
        time.sleep(0.05)
        return [0.1] * len(items)


def test_frames_from_several_cameras_share_batches(pki, tmp_path, analyzer, encoder):
    from conftest import tiny_analysis

    from pvad.config import BatchingConfig

    cfg = server_config(pki, tmp_path, analysis=tiny_analysis(batching=BatchingConfig(max_batch=2, max_wait_ms=20)))

    async def scenario():
        rec = _RecordingAnalyzer(analyzer)
        srv = await start_server(cfg, analyzer=rec)
        address = f"127.0.0.1:{srv.port}"
        try:
            acks = await asyncio.gather(*[
                exchange(address, client_tls(pki, f"camera/{cam}"), [latent_frame(encoder, s, camera=cam) for s in range(1, 7)])
                for cam in ("cam-1", "cam-2")
            ])
            return acks, rec.batch_sizes
        finally:
            await srv.stop(0)

    acks, sizes = run(scenario())
    assert all(a.outcome == pvad_pb2.ACCEPTED for stream in acks for a in stream)
    assert sum(sizes) == 12 and max(sizes) == 2  # never above max_batch
    assert sizes.count(2) >= 4  # the two cameras' frames went through together


def test_zstd_uint8_latents_are_accepted(pki, tmp_path, analyzer):
    zstd_encoder = create_anonymizer(DpEncoderAnonymizer(checkpoint=None, seed=0, dtype="uint8", compression="zstd"))

    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        try:
            frames = [make_frame("cam-1", s, 0, zstd_encoder(FRAME)) for s in (1, 2)]
            return frames, await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, "camera/cam-1"), frames)
        finally:
            await srv.stop(0)

    frames, acks = run(scenario())
    assert frames[0].latent.compression == pvad_pb2.COMPRESSION_ZSTD
    assert len(frames[0].latent.data) < 16 * 30 * 40
    assert [a.outcome for a in acks] == [pvad_pb2.ACCEPTED] * 2


async def events_during(address, pki, action, subscriber="subscriber/ops"):
    """Every event (scores included) a subscriber receives while `await action()` runs, and 0.3 s after."""
    async with secure_channel(address, client_tls(pki, subscriber)) as ch:
        got = []

        async def listen():
            async for ev in follow_alarms(ch, include_scores=True):
                got.append(ev)

        task = asyncio.create_task(listen())
        await asyncio.sleep(0.2)
        await action()
        await asyncio.sleep(0.3)
        task.cancel()
    return got


def test_score_events_carry_the_frames_capture_time(pki, tmp_path, analyzer, encoder):
    """What `pvad bench e2e` measures latency from: the camera's capture time, echoed to subscribers."""
    captured = [1_700_000_000_123_456_789 + k * 100_000_000 for k in range(3)]

    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        address = f"127.0.0.1:{srv.port}"
        frames = [make_frame("cam-1", s + 1, t, encoder(FRAME)) for s, t in enumerate(captured)]
        try:
            return await events_during(address, pki, lambda: exchange(address, client_tls(pki, "camera/cam-1"), frames))
        finally:
            await srv.stop(0)

    scores = [e for e in run(scenario()) if e.kind == pvad_pb2.SCORE]
    assert [e.seq for e in scores] == [1, 2, 3]
    assert [e.capture_time.ToNanoseconds() for e in scores] == captured
