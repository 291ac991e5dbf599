"""Hostile input generated with hypothesis: every class refused, a parallel good stream unharmed;
and the proxy the fault benchmark uses really cuts live streams."""

from __future__ import annotations

import asyncio
import random

import cv2
import grpc

from analysis_server.service import start_server
from pvad.bench.hostile import draw_many, hostile_frames, random_bytes
from pvad.bench.proxy import CuttableProxy
from pvad.channel import secure_channel
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

from conftest import client_tls, run, server_config
from test_server import FRAME, exchange, latent_frame

EXPECTED = {
    "wrong_shape": grpc.StatusCode.INVALID_ARGUMENT,
    "wrong_dtype": grpc.StatusCode.INVALID_ARGUMENT,
    "wrong_size": grpc.StatusCode.INVALID_ARGUMENT,
    "nan_inf": grpc.StatusCode.INVALID_ARGUMENT,
    "huge_dims": grpc.StatusCode.INVALID_ARGUMENT,
    "unknown_encoder": grpc.StatusCode.FAILED_PRECONDITION,
    "truncated_jpeg": grpc.StatusCode.INVALID_ARGUMENT,
    "garbage_jpeg": grpc.StatusCode.INVALID_ARGUMENT,
    "wrong_camera": grpc.StatusCode.PERMISSION_DENIED,
    "no_payload": grpc.StatusCode.INVALID_ARGUMENT,
}


def test_every_hostile_class_is_refused_with_its_status_while_a_good_stream_goes_on(pki, tmp_path, analyzer, encoder):
    jpeg = cv2.imencode(".jpg", FRAME)[1].tobytes()
    classes = hostile_frames("cam-1", encoder.encoder_id, jpeg)
    assert set(classes) == set(EXPECTED)

    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        address = f"127.0.0.1:{srv.port}"
        try:
            hostile = []
            for name, strategy in classes.items():
                for f in draw_many(strategy, 8):
                    hostile.append((name, f))
            for i, (_, f) in enumerate(hostile):
                f.seq = i + 1
            good = [latent_frame(encoder, s, camera="cam-2") for s in range(1, 11)]
            bad_acks, good_acks = await asyncio.gather(
                exchange(address, client_tls(pki, "camera/cam-1"), [f for _, f in hostile]),
                exchange(address, client_tls(pki, "camera/cam-2"), good),
            )
            # bytes that are no protobuf at all: that call fails, the server does not
            rng = random.Random(0)
            raw_codes = []
            async with secure_channel(address, client_tls(pki, "camera/cam-1")) as ch:
                raw = ch.stream_stream("/pvad.v1.Ingest/Stream", request_serializer=lambda b: b,
                                       response_deserializer=pvad_pb2.FrameAck.FromString)
                for _ in range(5):
                    async def one():
                        yield b"\x0a\xff\xff\xff\xff\x0f" + random_bytes(rng, 64)  # field 1, absurd length
                    try:
                        acks = [a async for a in raw(one(), timeout=10)]
                        raw_codes.append("REJECTED" if all(a.outcome == pvad_pb2.REJECTED for a in acks) else "ACCEPTED")
                    except grpc.aio.AioRpcError as err:
                        raw_codes.append(err.code().name)
            after = await exchange(address, client_tls(pki, "camera/cam-2"), [latent_frame(encoder, 100, camera="cam-2")])
            return hostile, bad_acks, good_acks, raw_codes, after
        finally:
            await srv.stop(0)

    hostile, bad_acks, good_acks, raw_codes, after = run(scenario())
    assert len(bad_acks) == len(hostile)
    for (name, _), ack in zip(hostile, bad_acks):
        assert ack.outcome == pvad_pb2.REJECTED, name
        assert ack.status_code == EXPECTED[name].value[0], (name, ack.message)
    assert all(a.outcome == pvad_pb2.ACCEPTED for a in good_acks)
    assert raw_codes and "ACCEPTED" not in raw_codes and "OK" not in raw_codes
    assert after[0].outcome == pvad_pb2.ACCEPTED  # still serving


def test_proxy_forwards_and_cuts(pki, tmp_path, analyzer, encoder):
    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        proxy = CuttableProxy("127.0.0.1", srv.port)
        port = await proxy.start()
        try:
            through = await exchange(f"127.0.0.1:{port}", client_tls(pki, "camera/cam-1"), [latent_frame(encoder, 1)])
            async with secure_channel(f"127.0.0.1:{port}", client_tls(pki, "camera/cam-1")) as ch:
                async def slow():
                    yield latent_frame(encoder, 2)
                    await asyncio.sleep(30)

                call = pvad_pb2_grpc.IngestStub(ch).Stream(slow())
                first = await call.read()
                cut = proxy.cut()
                try:
                    await asyncio.wait_for(call.read(), 10)
                    code = None
                except grpc.aio.AioRpcError as err:
                    code = err.code()
            return through, first, cut, code
        finally:
            await proxy.close()
            await srv.stop(0)

    through, first, cut, code = run(scenario())
    assert through[0].outcome == pvad_pb2.ACCEPTED and first.outcome == pvad_pb2.ACCEPTED
    assert cut >= 2 and code == grpc.StatusCode.UNAVAILABLE
