"""Identity through a proxy: the forwarded client CN is believed only from proxies in access.trusted_proxies."""

from __future__ import annotations

import logging

import grpc
import pytest
from conftest import client_tls, run, server_config

from analysis_server.identity import IdentityRefused, resolve_identity
from analysis_server.service import start_server
from camera_client.client import make_frame
from pvad.certs import CLIENT_CN_HEADER, identity_from_common_name, make_dev_pki
from pvad.channel import secure_channel
from pvad.config import AccessConfig
from pvad.errors import ConfigError
from pvad.v1 import pvad_pb2, pvad_pb2_grpc

TRUSTED = ("hap-1",)


@pytest.fixture(scope="module")
def proxy_pki(tmp_path_factory):
    return make_dev_pki(tmp_path_factory.mktemp("pki-proxy"), cameras=("cam-1", "cam-2"), subscribers=("ops",),
                        proxies=("hap-1", "rogue"))


# --------------------------------------------------------------------------- the rule, without a network


def test_direct_client_is_its_certificate_and_a_forged_header_is_ignored(caplog):
    assert resolve_identity([b"camera/cam-1"], [], role="camera", trusted_proxies=TRUSTED).ident == "cam-1"
    with caplog.at_level(logging.WARNING, logger="analysis_server.identity"):
        who = resolve_identity([b"camera/cam-1"], [(CLIENT_CN_HEADER, "camera/cam-2")], role="camera",
                               trusted_proxies=TRUSTED)
    assert (who.ident, who.proxy) == ("cam-1", None)
    assert "ignored" in caplog.text and "camera/cam-1" in caplog.text


def test_trusted_proxy_forwards_the_client_identity():
    who = resolve_identity([b"proxy/hap-1"], [("user-agent", "x"), (CLIENT_CN_HEADER, "camera/cam-2")],
                           role="camera", trusted_proxies=TRUSTED)
    assert (who.role, who.ident, who.proxy) == ("camera", "cam-2", "hap-1")
    assert who.describe() == "camera/cam-2 via proxy/hap-1"


@pytest.mark.parametrize("cn, metadata, role, code, words", [
    (b"proxy/rogue", [(CLIENT_CN_HEADER, "camera/cam-1")], "camera", grpc.StatusCode.PERMISSION_DENIED,
     "not a trusted proxy"),
    (b"proxy/hap-1", [], "camera", grpc.StatusCode.UNAUTHENTICATED, "cannot be used as a camera"),
    (b"proxy/hap-1", [(CLIENT_CN_HEADER, "camera/a"), (CLIENT_CN_HEADER, "camera/b")], "camera",
     grpc.StatusCode.UNAUTHENTICATED, "2 x-pvad-client-cn headers"),
    (b"proxy/hap-1", [(CLIENT_CN_HEADER, "camera/a b")], "camera", grpc.StatusCode.UNAUTHENTICATED, "malformed"),
    (b"proxy/hap-1", [(CLIENT_CN_HEADER, "proxy/hap-1")], "camera", grpc.StatusCode.PERMISSION_DENIED,
     "do not chain"),
    (b"proxy/hap-1", [(CLIENT_CN_HEADER, "subscriber/ops")], "camera", grpc.StatusCode.PERMISSION_DENIED,
     "forwarded by proxy/hap-1"),
    (b"camera/cam-1", [], "subscriber", grpc.StatusCode.PERMISSION_DENIED, "yours is a camera one"),
    (b"proxy/hap-1", [], "subscriber", grpc.StatusCode.UNAUTHENTICATED, "cannot be used as a subscriber"),
])
def test_refusals_name_the_reason(cn, metadata, role, code, words):
    with pytest.raises(IdentityRefused) as err:
        resolve_identity([cn], metadata, role=role, trusted_proxies=TRUSTED)
    assert err.value.code == code
    assert words in str(err.value)


def test_no_proxy_is_trusted_by_default():
    with pytest.raises(IdentityRefused) as err:
        resolve_identity([b"proxy/hap-1"], [(CLIENT_CN_HEADER, "camera/cam-1")], role="camera")
    assert err.value.code == grpc.StatusCode.PERMISSION_DENIED


def test_proxy_role_in_the_pki(proxy_pki):
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    cert = x509.load_pem_x509_certificate(proxy_pki["proxy/hap-1"].cert.read_bytes())
    cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    assert identity_from_common_name(cn) == ("proxy", "hap-1")
    assert proxy_pki["proxy/hap-1"].cert.name == "proxy-hap-1.pem"


def test_pvad_certs_proxy_alone_adds_only_proxy_certificates(tmp_path):
    from pvad.cli import main

    assert main(["certs", "--out", str(tmp_path), "--proxy", "hap-1", "--proxy", "hap-2"]) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ca.key", "ca.pem", "proxy-hap-1.key", "proxy-hap-1.pem",
                                                          "proxy-hap-2.key", "proxy-hap-2.pem"]


def test_trusted_proxies_config_names_a_bad_id():
    with pytest.raises(ValueError, match="trusted_proxies"):
        AccessConfig(trusted_proxies=["hap 1"])
    assert AccessConfig(trusted_proxies=["hap-1"]).trusted_proxies == ["hap-1"]


# --------------------------------------------------------------------------- through a real server (no HAProxy)


async def _stream(address, client, frames, metadata=()):
    async with secure_channel(address, client) as ch:
        async def gen():
            for f in frames:
                yield f

        return [a async for a in pvad_pb2_grpc.IngestStub(ch).Stream(gen(), metadata=metadata or None, timeout=30)]


def _frame(camera, seq, encoder):
    import numpy as np

    return make_frame(camera, seq, 0, encoder(np.zeros((240, 320, 3), np.uint8)))


def test_server_applies_the_rule(proxy_pki, tmp_path, analyzer, encoder):
    cfg = server_config(proxy_pki, tmp_path, access=AccessConfig(trusted_proxies=["hap-1"]))

    async def scenario():
        srv = await start_server(cfg, analyzer=analyzer)
        address = f"127.0.0.1:{srv.port}"
        out = {}
        try:
            # a camera that forges the header is still itself: its own frames go in, another camera's are refused
            acks = await _stream(address, client_tls(proxy_pki, "camera/cam-1"),
                                 [_frame("cam-1", 1, encoder), _frame("cam-2", 2, encoder)],
                                 metadata=((CLIENT_CN_HEADER, "camera/cam-2"),))
            out["forged"] = [(a.outcome, a.status_code) for a in acks]
            # the trusted proxy speaks for cam-2
            acks = await _stream(address, client_tls(proxy_pki, "proxy/hap-1"), [_frame("cam-2", 1, encoder)],
                                 metadata=((CLIENT_CN_HEADER, "camera/cam-2"),))
            out["proxied"] = [a.outcome for a in acks]
            for who, md in (("proxy/hap-1", ()), ("proxy/rogue", ((CLIENT_CN_HEADER, "camera/cam-2"),))):
                with pytest.raises(grpc.aio.AioRpcError) as err:
                    await _stream(address, client_tls(proxy_pki, who), [_frame("cam-2", 5, encoder)], metadata=md)
                out[who] = (err.value.code(), err.value.details())
            out["cameras"] = sorted(srv.ingest.cameras)
        finally:
            await srv.stop(0)
        return out

    out = run(scenario())
    assert out["forged"] == [(pvad_pb2.ACCEPTED, 0), (pvad_pb2.REJECTED, grpc.StatusCode.PERMISSION_DENIED.value[0])]
    assert out["proxied"] == [pvad_pb2.ACCEPTED]
    assert out["proxy/hap-1"][0] == grpc.StatusCode.UNAUTHENTICATED
    assert "cannot be used as a camera" in out["proxy/hap-1"][1]
    assert out["proxy/rogue"][0] == grpc.StatusCode.PERMISSION_DENIED
    assert "access.trusted_proxies" in out["proxy/rogue"][1]
    assert out["cameras"] == ["cam-1", "cam-2"]


def test_pem_bundle_checks_the_pair(proxy_pki, tmp_path):
    from pvad.certs import CertPaths, pem_bundle

    p = proxy_pki["proxy/hap-1"]
    out = pem_bundle(p, tmp_path / "b.pem")
    assert out.stat().st_mode & 0o777 == 0o600
    text = out.read_text()
    assert "BEGIN CERTIFICATE" in text and "PRIVATE KEY" in text
    with pytest.raises(ConfigError, match="does not match"):
        pem_bundle(CertPaths(ca=p.ca, cert=p.cert, key=proxy_pki["camera/cam-1"].key), tmp_path / "c.pem")
