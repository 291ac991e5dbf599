"""Camera resilience: a server restart mid-stream loses nothing and scores nothing twice."""

from __future__ import annotations

import asyncio
import time

import pytest
from conftest import client_tls, run, server_config
from test_camera import BIKES, needs_bikes

from analysis_server.pipeline import FrameResult
from analysis_server.service import start_server
from camera_client.buffer import FrameBuffer
from camera_client.client import run_camera
from pvad.config import (
    BufferConfig,
    CameraConfig,
    CaptureConfig,
    DpEncoderAnonymizer,
    ReconnectConfig,
)
from pvad.v1 import pvad_pb2


class _SeqRecorder:
    """Stands in for the networks; records every (camera, seq) it scores, slowly."""

    def __init__(self, real, scored: list):
        self.real, self.scored = real, scored
        self.decoders, self.times, self.untrained, self.executor = real.decoders, real.times, [], real.executor

    normality_cfg = None  # the classifier path only

    def new_camera_flow(self, *args):
        return self.real.new_camera_flow()

    def analyze_frames(self, items):
        return [FrameResult(s) for s in self.analyze(items)]

    def analyze(self, items):
        time.sleep(0.02)
        self.scored.extend((p.camera_id, p.seq) for _, p in items)
        return [0.2] * len(items)


@needs_bikes
def test_server_restart_mid_stream_loses_nothing_and_scores_nothing_twice(pki, tmp_path, analyzer):
    scored: list = []
    cfg = server_config(pki, tmp_path)

    async def scenario():
        srv = await start_server(cfg, analyzer=_SeqRecorder(analyzer, scored))
        port = srv.port
        acks = 0
        restarted = asyncio.Event()

        def on_ack(ack, latency):
            nonlocal acks
            acks += 1
            if acks == 10:
                restarted.set()

        cam_cfg = CameraConfig(
            camera_id="cam-1", server=f"127.0.0.1:{port}", tls=client_tls(pki, "camera/cam-1"),
            capture=CaptureConfig(source=str(BIKES), target_fps=25, max_frames=40),
            anonymizer=DpEncoderAnonymizer(checkpoint=None, seed=0),  # the test server's decoder
            max_in_flight=8, buffer=BufferConfig(capacity=64),
            reconnect=ReconnectConfig(initial_backoff_s=0.05, max_backoff_s=0.2),
        )
        camera = asyncio.create_task(run_camera(cam_cfg, on_ack=on_ack))
        await restarted.wait()
        await srv.stop(0)  # hard stop: in-flight streams are cancelled
        await asyncio.sleep(0.3)  # the camera keeps capturing into its buffer meanwhile
        srv2 = await start_server(cfg.model_copy(update={"listen": f"127.0.0.1:{port}"}),
                                  analyzer=_SeqRecorder(analyzer, scored))
        try:
            report = await asyncio.wait_for(camera, 60)
        finally:
            await srv2.stop(0)
        return report, srv.ingest.counters.accepted + srv2.ingest.counters.accepted

    report, committed = run(scenario())
    assert report.captured == 40
    assert report.lost == 0 and report.dropped == 0
    assert report.stream.acked == 40
    assert report.stream.reconnects >= 1
    assert report.stream.accepted + report.stream.duplicates == 40
    # Every frame's score was committed exactly once across the two servers; a frame whose analysis
    # was cut off by the stop (never committed, never acknowledged) is analysed again after the restart.
    assert committed == 40
    assert len(set(s for _, s in scored)) == 40


def test_buffer_policies():
    async def scenario():
        frames = [pvad_pb2.Frame(camera_id="c", seq=s) for s in range(5)]
        oldest, newest = FrameBuffer(3, "drop-oldest"), FrameBuffer(3, "drop-newest")
        for f in frames:
            await oldest.put(f)
            await newest.put(f)
        block = FrameBuffer(2, "block")
        await block.put(frames[0])
        await block.put(frames[1])
        waiter = asyncio.create_task(block.put(frames[2]))
        await asyncio.sleep(0.05)
        blocked = not waiter.done()
        await block.ack(0)
        await asyncio.wait_for(waiter, 1)
        return oldest, newest, block, blocked

    oldest, newest, block, blocked = run(scenario())
    assert list(oldest._frames) == [2, 3, 4] and oldest.dropped == 2
    assert list(newest._frames) == [0, 1, 2] and newest.dropped == 2
    assert blocked and list(block._frames) == [1, 2] and block.dropped == 0


def test_next_after_waits_and_ends_when_closed():
    async def scenario():
        buf = FrameBuffer(4, "block")
        getter = asyncio.create_task(buf.next_after(-1))
        await asyncio.sleep(0.02)
        assert not getter.done()
        await buf.put(pvad_pb2.Frame(seq=7))
        first = await asyncio.wait_for(getter, 1)
        await buf.close()
        return first.seq, await buf.next_after(7), buf.drained

    seq, nothing, drained = run(scenario())
    assert seq == 7 and nothing is None and not drained  # seq 7 still unacknowledged


# ----------------------------------------------------------------------------- server side

import grpc  # noqa: E402
from test_server import _FixedAnalyzer, events_during, exchange, latent_frame  # noqa: E402

from pvad.channel import secure_channel  # noqa: E402
from pvad.config import AccessConfig, MetricsConfig  # noqa: E402
from pvad.subscriber import follow_alarms  # noqa: E402


def test_subscriber_limited_to_camera_a_sees_nothing_of_camera_b(pki, tmp_path, analyzer, encoder):
    cfg = server_config(pki, tmp_path, access=AccessConfig(subscribers={"ops": ["cam-1"]}))
    sigmas = [1.0] * 4 + [1.0] * 4  # cam-1 and cam-2 both raise an alarm on their 4th frame

    async def scenario():
        srv = await start_server(cfg, analyzer=_FixedAnalyzer(analyzer, sigmas))
        address = f"127.0.0.1:{srv.port}"

        async def both_cameras():
            await exchange(address, client_tls(pki, "camera/cam-2"), [latent_frame(encoder, s, "cam-2") for s in range(1, 5)])
            await exchange(address, client_tls(pki, "camera/cam-1"), [latent_frame(encoder, s, "cam-1") for s in range(1, 5)])

        try:
            got = await events_during(address, pki, both_cameras)
            async with secure_channel(address, client_tls(pki, "subscriber/ops")) as ch:
                with pytest.raises(grpc.aio.AioRpcError) as denied:
                    async for _ in follow_alarms(ch, camera_ids=["cam-2"]):
                        pass
            return got, denied.value.code(), srv.hub.log.since(0)
        finally:
            await srv.stop(0)

    got, code, persisted = run(scenario())
    assert {e.camera_id for e in persisted} == {"cam-1", "cam-2"}  # both alarms happened
    assert got and {e.camera_id for e in got} == {"cam-1"}
    assert any(e.kind == pvad_pb2.ALARM_RAISED for e in got)
    assert code == grpc.StatusCode.PERMISSION_DENIED


def test_unauthenticated_subscribers_are_refused(pki, tmp_path, analyzer):
    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        address = f"127.0.0.1:{srv.port}"
        codes = []
        try:
            for tls in (client_tls(pki, "camera/cam-1"),):  # a camera is no subscriber
                async with secure_channel(address, tls) as ch:
                    with pytest.raises(grpc.aio.AioRpcError) as err:
                        async for _ in follow_alarms(ch):
                            pass
                    codes.append(err.value.code())
            async with grpc.aio.insecure_channel(address) as ch:  # no certificate at all
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    async for _ in pvad_pb2_grpc.AlarmsStub(ch).Subscribe(pvad_pb2.SubscribeRequest(), timeout=5):
                        pass
                codes.append(err.value.code())
        finally:
            await srv.stop(0)
        return codes

    from pvad.v1 import pvad_pb2_grpc

    assert run(scenario()) == [grpc.StatusCode.PERMISSION_DENIED, grpc.StatusCode.UNAVAILABLE]


class _Slow(_SeqRecorder):
    def analyze(self, items):
        time.sleep(0.15)
        self.scored.extend((p.camera_id, p.seq) for _, p in items)
        return [0.2] * len(items)


def test_shutdown_drains_frames_in_analysis(pki, tmp_path, analyzer, encoder):
    scored: list = []

    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=_Slow(analyzer, scored))
        address = f"127.0.0.1:{srv.port}"
        acked: list = []

        async def camera():
            async with secure_channel(address, client_tls(pki, "camera/cam-1")) as ch:
                async def gen():
                    for s in range(1, 21):
                        yield latent_frame(encoder, s)

                try:
                    async for ack in pvad_pb2_grpc.IngestStub(ch).Stream(gen()):
                        acked.append(ack)
                except grpc.aio.AioRpcError as err:
                    return err.code()

        from pvad.v1 import pvad_pb2_grpc

        task = asyncio.create_task(camera())
        await asyncio.sleep(0.5)  # a few frames analysed, one in analysis now
        await srv.stop(grace=5.0)
        return await task, acked

    code, acked = run(scenario())
    assert code == grpc.StatusCode.UNAVAILABLE  # told to reconnect
    assert 0 < len(acked) < 20
    # every frame that was analysed was acknowledged before the server went
    assert {s for _, s in scored} == {a.seq for a in acked}


def test_metrics_endpoint(pki, tmp_path, analyzer, encoder):
    import urllib.request

    cfg = server_config(pki, tmp_path, metrics=MetricsConfig(listen="127.0.0.1:0"))

    async def scenario():
        srv = await start_server(cfg, analyzer=analyzer)
        try:
            good = [latent_frame(encoder, s) for s in (1, 2, 3)]
            bad = pvad_pb2.Frame(camera_id="cam-1", seq=4)
            await exchange(f"127.0.0.1:{srv.port}", client_tls(pki, "camera/cam-1"), good + [bad])
            return await asyncio.to_thread(
                lambda: urllib.request.urlopen(f"http://127.0.0.1:{srv.metrics_port}/metrics", timeout=5).read().decode()
            )
        finally:
            await srv.stop(0)

    text = run(scenario())
    assert "pvad_frames_accepted_total 3.0" in text
    assert 'pvad_frames_rejected_total{reason="INVALID_ARGUMENT"} 1.0' in text
    assert 'pvad_stage_seconds_count{stage="classifier"}' in text


def test_certificate_rotation_without_restart(tmp_path, analyzer):
    """A new server certificate (here: with an extra DNS name) is served without a restart."""
    import shutil

    from pvad.certs import issue_cert, make_dev_pki
    from pvad.config import ClientTLS

    pki = make_dev_pki(tmp_path / "pki", cameras=["cam-1"], subscribers=["ops"])
    live = tmp_path / "live"
    live.mkdir()
    for name in ("ca.pem", "server.pem", "server.key"):
        shutil.copy(tmp_path / "pki" / name, live / name)
    from pvad.config import ServerTLS

    cfg = server_config(pki, tmp_path, tls=ServerTLS(ca=live / "ca.pem", cert=live / "server.pem", key=live / "server.key"))
    sub = pki["subscriber/ops"]
    renamed = ClientTLS(ca=sub.ca, cert=sub.cert, key=sub.key, server_name="rotated.pvad.test")

    async def can_subscribe(address) -> bool:
        async with secure_channel(address, renamed) as ch:
            stub = pvad_pb2_grpc.AlarmsStub(ch)
            call = stub.Subscribe(pvad_pb2.SubscribeRequest(), timeout=1.0)
            try:
                async for _ in call:
                    pass
            except grpc.aio.AioRpcError as err:
                return err.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # connected, then nothing to read
            return True

    async def scenario():
        srv = await start_server(cfg, analyzer=analyzer)
        address = f"127.0.0.1:{srv.port}"
        try:
            before = await can_subscribe(address)
            new = issue_cert(tmp_path / "pki", role="server", name="rotated", extra_dns=["rotated.pvad.test"])
            time.sleep(0.01)
            shutil.copy(new.key, live / "server.key")
            shutil.copy(new.cert, live / "server.pem")
            after = await can_subscribe(address)
        finally:
            await srv.stop(0)
        return before, after

    from pvad.v1 import pvad_pb2_grpc

    before, after = run(scenario())
    assert (before, after) == (False, True)


def test_only_tls_1_2_or_newer(pki, tmp_path, analyzer):
    import socket
    import ssl
    import warnings

    async def scenario():
        srv = await start_server(server_config(pki, tmp_path), analyzer=analyzer)
        results = {}
        try:
            for ver in (ssl.TLSVersion.TLSv1_1, ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
                ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
                ctx.set_ciphers("DEFAULT:@SECLEVEL=0")  # let the client offer old versions at all
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", DeprecationWarning)
                    ctx.minimum_version = ctx.maximum_version = ver
                cam = pki["camera/cam-1"]
                ctx.load_cert_chain(cam.cert, cam.key)
                ctx.set_alpn_protocols(["h2"])

                def handshake():
                    with socket.create_connection(("127.0.0.1", srv.port), timeout=5) as s:
                        with ctx.wrap_socket(s) as t:
                            return t.version()

                try:
                    results[ver.name] = await asyncio.to_thread(handshake)
                except (ssl.SSLError, OSError):
                    results[ver.name] = None
        finally:
            await srv.stop(0)
        return results

    assert run(scenario()) == {"TLSv1_1": None, "TLSv1_2": "TLSv1.2", "TLSv1_3": "TLSv1.3"}
