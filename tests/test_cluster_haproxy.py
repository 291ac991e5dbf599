"""Two in-process servers behind a real HAProxy (Debian's haproxy; skipped without it): the generated
configuration, identity through the proxy, readiness, stream age."""

from __future__ import annotations

import asyncio
import time

import grpc
import numpy as np
import pytest
from conftest import client_tls, run, server_config

from analysis_server.health import HealthEndpoint
from analysis_server.service import STREAM_END_KEY, start_server
from camera_client.client import make_frame
from pvad.certs import CLIENT_CN_HEADER, make_dev_pki, pem_bundle
from pvad.channel import secure_channel
from pvad.cluster.haproxy import (
    Backend,
    Timing,
    check_config,
    haproxy_binary,
    haproxy_config,
)
from pvad.cluster.processes import free_port, http_status, start_haproxy
from pvad.config import AccessConfig
from pvad.config.server import HealthConfig, LimitsConfig
from pvad.errors import ConfigError
from pvad.subscriber import follow_alarms
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

needs_haproxy = pytest.mark.skipif(haproxy_binary() is None,
                                   reason="needs Debian's haproxy (make services installs it as root)")


@pytest.fixture(scope="module")
def proxy_pki(tmp_path_factory):
    return make_dev_pki(tmp_path_factory.mktemp("pki-cluster"), cameras=("cam-1", "cam-2", "cam-3"),
                        subscribers=("ops",), proxies=("hap-1",))


def write_haproxy(pki, tmp_path, backends, timing=Timing()) -> tuple:
    listen = ("127.0.0.1", free_port())
    text = haproxy_config(listen=f"{listen[0]}:{listen[1]}", backends=backends, ca=pki["server"].ca,
                          frontend_pem=pem_bundle(pki["server"], tmp_path / "frontend.pem"),
                          proxy_pem=pem_bundle(pki["proxy/hap-1"], tmp_path / "proxy.pem"), timing=timing)
    path = tmp_path / "haproxy.cfg"
    path.write_text(text)
    return path, listen


def test_config_names_what_is_wrong(proxy_pki, tmp_path):
    kw = dict(ca=tmp_path / "ca.pem", frontend_pem=tmp_path / "f.pem", proxy_pem=tmp_path / "p.pem")
    with pytest.raises(ConfigError, match="listen"):
        haproxy_config(listen="nowhere", backends=[Backend("s1", "127.0.0.1:1", 2)], **kw)
    with pytest.raises(ConfigError, match="at least one"):
        haproxy_config(listen="127.0.0.1:1", backends=[], **kw)
    with pytest.raises(ConfigError, match="duplicate"):
        haproxy_config(listen="127.0.0.1:1", backends=[Backend("s1", "127.0.0.1:1", 2)] * 2, **kw)


@needs_haproxy
def test_haproxy_accepts_the_generated_config_and_refuses_a_broken_one(proxy_pki, tmp_path):
    path, _ = write_haproxy(proxy_pki, tmp_path, [Backend("s1", "127.0.0.1:50061", 8061),
                                                   Backend("s2", "127.0.0.1:50062", 8062)])
    check_config(path)
    text = path.read_text()
    # the client's copy of the header is deleted before the proxy sets its own
    assert text.index(f"del-header {CLIENT_CN_HEADER}") < text.index(f"set-header {CLIENT_CN_HEADER}")
    assert "hash-type consistent" in text and "option httpchk GET /ready" in text and "hash-balance-factor 110" in text
    path.write_text(text.replace("balance hash", "balance hashh"))
    with pytest.raises(ConfigError, match="haproxy refuses"):
        check_config(path)


def test_readiness_endpoint(tmp_path):
    state = {"ok": False}

    async def scenario():
        ep = HealthEndpoint(lambda: (state["ok"], "starting"))
        port = await ep.start("127.0.0.1:0")
        url = f"http://127.0.0.1:{port}"
        try:
            codes = [await asyncio.to_thread(http_status, url + "/ready")]
            state["ok"] = True
            codes += [await asyncio.to_thread(http_status, url + p) for p in ("/ready", "/live", "/nope")]
            reader, writer = await asyncio.open_connection("127.0.0.1", port)  # garbage never crashes it
            writer.write(b"\x00\xff garbage\r\n\r\n")
            await writer.drain()
            await reader.read()
            writer.close()
            codes.append(await asyncio.to_thread(http_status, url + "/ready"))
        finally:
            await ep.stop()
        return codes

    assert run(scenario()) == [503, 200, 200, 404, 200]


async def _stream(address, client, frames, metadata=()):
    async with secure_channel(address, client) as ch:
        async def gen():
            for f in frames:
                yield f

        call = pvad_pb2_grpc.IngestStub(ch).Stream(gen(), metadata=metadata or None, timeout=30)
        return [a async for a in call]


def _frame(camera, seq, encoder):
    return make_frame(camera, seq, 0, encoder(np.zeros((240, 320, 3), np.uint8)))


@needs_haproxy
def test_through_haproxy_identity_is_the_client_certificate_and_cameras_stick(proxy_pki, tmp_path, analyzer, encoder):
    """A camera that forges the header gets its own CN; each camera stays on one server; a subscriber is
    served through the proxy; a server that starts draining is marked down and its camera moves."""

    async def scenario():
        servers = []
        for i in range(2):
            (tmp_path / f"s{i}").mkdir()
            cfg = server_config(proxy_pki, tmp_path / f"s{i}", access=AccessConfig(trusted_proxies=["hap-1"]),
                                health=HealthConfig(listen="127.0.0.1:0"))
            servers.append(await start_server(cfg, analyzer=analyzer))
        # plain consistent hashing: placement by the CN alone (bounded loads would also weigh the open streams)
        path, listen = write_haproxy(proxy_pki, tmp_path, [Backend(f"s{i}", f"127.0.0.1:{s.port}", s.health_port)
                                                           for i, s in enumerate(servers)],
                                     timing=Timing(hash_balance_factor=None))
        hap = await asyncio.to_thread(start_haproxy, path, tmp_path / "haproxy.log", listen)
        address = f"{listen[0]}:{listen[1]}"
        out = {}
        try:
            for _ in range(40):  # until HAProxy's first checks have passed
                acks = None
                try:
                    acks = await _stream(address, client_tls(proxy_pki, "camera/cam-1"), [_frame("cam-1", 1, encoder)])
                    break
                except grpc.aio.AioRpcError:
                    await asyncio.sleep(0.1)
            out["first"] = [a.outcome for a in acks]
            acks = await _stream(address, client_tls(proxy_pki, "camera/cam-1"),
                                 [_frame("cam-1", 2, encoder), _frame("cam-2", 3, encoder)],
                                 metadata=((CLIENT_CN_HEADER, "camera/cam-2"),))
            out["forged"] = [a.outcome for a in acks]
            for cam in ("cam-2", "cam-3"):
                for seq in (1, 2):  # two connections each
                    await _stream(address, client_tls(proxy_pki, f"camera/{cam}"), [_frame(cam, seq, encoder)])
            out["placement"] = [sorted(s.ingest.cameras) for s in servers]
            async with secure_channel(address, client_tls(proxy_pki, "subscriber/ops")) as ch:
                async def first_event():
                    async for ev in follow_alarms(ch, include_scores=True):
                        return ev

                task = asyncio.create_task(first_event())
                for _ in range(50):  # live scores come from the subscriber's own server: find it
                    held = [i for i, s in enumerate(servers) if s.hub.subscribers]
                    if held:
                        break
                    await asyncio.sleep(0.1)
                cam = sorted(servers[held[0]].ingest.cameras)[0]
                await _stream(address, client_tls(proxy_pki, f"camera/{cam}"), [_frame(cam, 10, encoder)])
                ev = await asyncio.wait_for(task, 10)
                out["subscriber_event"] = (ev.camera_id, cam) if ev.kind == pvad_pb2.SCORE else None
            # the server holding cam-1 begins to stop: /ready says 503, HAProxy marks it down, cam-1 moves
            home = next(i for i, s in enumerate(servers) if "cam-1" in s.ingest.cameras)
            servers[home].lifecycle["stopping"] = True
            out["ready_while_stopping"] = await asyncio.to_thread(
                http_status, f"http://127.0.0.1:{servers[home].health_port}/ready")
            t0 = time.monotonic()
            while True:
                acks = await _stream(address, client_tls(proxy_pki, "camera/cam-1"), [_frame("cam-1", 20, encoder)])
                if "cam-1" in servers[1 - home].ingest.cameras:
                    break
                assert time.monotonic() - t0 < 10, "cam-1 never moved"
                await asyncio.sleep(0.2)
            out["moved_after_s"] = time.monotonic() - t0
        finally:
            hap.stop(5)
            for s in servers:
                await s.stop(0)
        return out

    out = run(scenario(), timeout=90)
    assert out["first"] == [pvad_pb2.ACCEPTED]
    assert out["forged"] == [pvad_pb2.ACCEPTED, pvad_pb2.REJECTED]  # still cam-1: cam-2's frame is refused
    placement = out["placement"]
    assert sorted(c for p in placement for c in p) == ["cam-1", "cam-2", "cam-3"]  # each on exactly one server
    assert out["subscriber_event"] is not None and out["subscriber_event"][0] == out["subscriber_event"][1]
    assert out["ready_while_stopping"] == 503
    assert out["moved_after_s"] < 5


def test_stream_ends_cleanly_at_its_age_and_the_camera_loses_nothing(proxy_pki, tmp_path, analyzer):
    """limits.max_stream_age_s: the server stops reading, acknowledges what it took, ends with status OK and
    a pvad-stream-end trailer; the camera reconnects at once and resends the rest."""
    from camera_client.client import run_camera
    from pvad.config import BlurAnonymizer, CameraConfig, CaptureConfig

    cfg = server_config(proxy_pki, tmp_path, limits=LimitsConfig(max_stream_age_s=1.0, stream_age_jitter=0.0))
    frames = tmp_path / "frames"
    frames.mkdir()
    import cv2

    rng = np.random.default_rng(1)
    for i in range(30):
        cv2.imwrite(str(frames / f"{i:04d}.png"), (rng.random((240, 320, 3)) * 255).astype(np.uint8))

    async def scenario():
        srv = await start_server(cfg, analyzer=analyzer)
        try:
            cam = CameraConfig(camera_id="cam-1", server=f"127.0.0.1:{srv.port}", tls=client_tls(proxy_pki, "camera/cam-1"),
                               capture=CaptureConfig(source=str(frames), target_fps=12, realtime=True),
                               anonymizer=BlurAnonymizer(), max_in_flight=4)
            report = await run_camera(cam)
            return report, srv.metrics.streams_aged._value.get(), srv.ingest.counters.accepted
        finally:
            await srv.stop(0)

    report, aged, accepted = run(scenario(), timeout=60)
    assert report.captured == 30 and report.lost == 0
    assert aged >= 1 and report.stream.connections == aged + 1
    assert report.stream.reconnects == 0  # a clean end is not a failure: no backoff
    assert report.trailers.get(STREAM_END_KEY) in (None, "max-stream-age")
    assert accepted == 30  # every frame scored once (resent ones were never admitted before)


def test_compose_cluster_profile_matches_the_generator():
    """The compose file's `cluster` profile: its haproxy.cfg is what `pvad cluster haproxy-config` writes, its
    servers trust that proxy and use the compose PostgreSQL, and every secret they name is delivered."""
    from pathlib import Path

    import yaml

    from pvad.config import load_config

    root = Path(__file__).resolve().parents[1]
    compose = yaml.safe_load((root / "docker-compose.yml").read_text())
    services = compose["services"]
    cluster = {k for k, v in services.items() if "cluster" in v.get("profiles", [])}
    assert cluster == {"haproxy", "postgres", "cluster-server-1", "cluster-server-2"}
    text = haproxy_config(listen="0.0.0.0:50051", backends=[Backend(f"server-{i}", f"cluster-server-{i}:50051", 8081)
                                                              for i in (1, 2)],
                          ca=Path("/run/secrets/pvad_ca"), frontend_pem=Path("/run/secrets/pvad_haproxy_frontend"),
                          proxy_pem=Path("/run/secrets/pvad_haproxy_proxy"))
    assert (root / "configs/cluster/haproxy.cfg").read_text() == text
    for i in (1, 2):
        svc = services[f"cluster-server-{i}"]
        mount = next(v for v in svc["volumes"] if v["target"] == "/etc/pvad/server.yaml")
        cfg = load_config(root / mount["source"], "server")
        assert cfg.server_id == f"server-{i}" and cfg.access.trusted_proxies == ["hap-1"]
        assert cfg.health.listen.endswith(":8081") and cfg.postgres is not None and "host=postgres" in cfg.postgres.dsn
        delivered = {f"/run/secrets/{s}" for s in svc["secrets"]}
        assert {str(cfg.tls.ca), str(cfg.tls.cert), str(cfg.tls.key), str(cfg.postgres.password_file)} <= delivered
    hap = services["haproxy"]
    assert {f"/run/secrets/{s}" for s in hap["secrets"]} >= {"/run/secrets/pvad_ca", "/run/secrets/pvad_haproxy_frontend",
                                                             "/run/secrets/pvad_haproxy_proxy"}
    for svc in (services[n] for n in cluster):
        for name in svc.get("secrets", []):
            assert name in compose["secrets"], name
