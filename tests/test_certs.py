"""Development PKI and gRPC mTLS credentials.

The handshake tests run a real in-process gRPC server on 127.0.0.1:0 with certificates made by a
fixture.
"""

from __future__ import annotations

import ipaddress
import os
import stat
from concurrent import futures
from pathlib import Path

import grpc
import pytest
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pvad import certs
from pvad.certs import (
    SERVER_NAME,
    CertPaths,
    channel_credentials,
    channel_options,
    identity_from_common_name,
    issue_cert,
    make_ca,
    make_dev_pki,
    server_credentials,
)
from pvad.errors import ConfigError

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 5.0
WHOAMI = "/pvad.test.Echo/WhoAmI"


def _cert(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def _cn(cert: x509.Certificate) -> str:
    return cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def _eku(cert: x509.Certificate) -> list:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> dict[str, CertPaths]:
    return make_dev_pki(tmp_path_factory.mktemp("pki"), cameras=["cam-1", "cam-2"], subscribers=["demo"])


@pytest.fixture(scope="module")
def other_pki(tmp_path_factory) -> dict[str, CertPaths]:
    """An unrelated CA with a camera certificate of the same name."""
    return make_dev_pki(tmp_path_factory.mktemp("other"), cameras=["cam-1"])


# --------------------------------------------------------------------------- certificate contents


def test_dev_pki_files_and_keys(pki):
    assert set(pki) == {"server", "camera/cam-1", "camera/cam-2", "subscriber/demo"}
    out = pki["server"].ca.parent
    assert pki["server"] == CertPaths(ca=out / "ca.pem", cert=out / "server.pem", key=out / "server.key")
    assert pki["camera/cam-1"].cert == out / "camera-cam-1.pem"
    assert pki["subscriber/demo"].key == out / "subscriber-demo.key"
    assert all(p.ca == out / "ca.pem" for p in pki.values())


def test_ca_certificate(pki):
    ca = _cert(pki["server"].ca)
    assert _cn(ca) == "pvad dev CA"
    assert ca.subject == ca.issuer
    bc = ca.extensions.get_extension_for_class(x509.BasicConstraints).value
    assert bc.ca is True
    assert isinstance(ca.public_key(), ec.EllipticCurvePublicKey)
    assert ca.public_key().curve.name == "secp256r1"
    ca.verify_directly_issued_by(ca)


def test_server_certificate(pki):
    ca, srv = _cert(pki["server"].ca), _cert(pki["server"].cert)
    assert _cn(srv) == SERVER_NAME == "pvad-server"
    san = srv.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert {"pvad-server", "localhost"} <= set(san.get_values_for_type(x509.DNSName))
    assert set(san.get_values_for_type(x509.IPAddress)) == {
        ipaddress.ip_address("127.0.0.1"),
        ipaddress.ip_address("::1"),
    }
    assert _eku(srv) == [ExtendedKeyUsageOID.SERVER_AUTH]
    assert srv.extensions.get_extension_for_class(x509.BasicConstraints).value.ca is False
    assert srv.public_key().curve.name == "secp256r1"
    srv.verify_directly_issued_by(ca)


@pytest.mark.parametrize("key,cn", [("camera/cam-1", "camera/cam-1"), ("subscriber/demo", "subscriber/demo")])
def test_client_certificates(pki, key, cn):
    ca, cert = _cert(pki[key].ca), _cert(pki[key].cert)
    assert _cn(cert) == cn
    assert _eku(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    cert.verify_directly_issued_by(ca)
    assert identity_from_common_name(_cn(cert)) == tuple(key.split("/"))


def test_foreign_certificate_does_not_verify(pki, other_pki):
    # both CAs are called "pvad dev CA", so only the signature tells them apart
    with pytest.raises(InvalidSignature):
        _cert(other_pki["camera/cam-1"].cert).verify_directly_issued_by(_cert(pki["server"].ca))


def test_validity_days(tmp_path):
    paths = issue_cert(tmp_path, role="camera", name="c", days=7)
    c = _cert(paths.cert)
    span = c.not_valid_after_utc - c.not_valid_before_utc
    assert 7 * 86400 <= span.total_seconds() <= 7 * 86400 + 600


def test_leaf_validity_capped_at_ca(tmp_path):
    make_ca(tmp_path, days=2)
    c = _cert(issue_cert(tmp_path, role="camera", name="c", days=365).cert)
    assert c.not_valid_after_utc <= _cert(tmp_path / "ca.pem").not_valid_after_utc


def test_server_extra_dns(tmp_path):
    paths = issue_cert(tmp_path, role="server", name="server", extra_dns=["pvad.example.org"])
    assert paths.cert == tmp_path / "server.pem"
    san = _cert(paths.cert).extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert set(san.get_values_for_type(x509.DNSName)) == {"pvad-server", "localhost", "server", "pvad.example.org"}


def test_key_files_are_private(pki):
    for paths in pki.values():
        assert stat.S_IMODE(os.stat(paths.key).st_mode) == 0o600, paths.key
    assert stat.S_IMODE(os.stat(pki["server"].ca.with_suffix(".key")).st_mode) == 0o600
    # certificates are public
    assert stat.S_IMODE(os.stat(pki["server"].cert).st_mode) == 0o644


# --------------------------------------------------------------------------- CA reuse, validation


def test_ca_is_reused(tmp_path):
    first = issue_cert(tmp_path, role="camera", name="a")
    ca_bytes = (tmp_path / "ca.pem").read_bytes()
    assert make_ca(tmp_path) == (tmp_path / "ca.pem", tmp_path / "ca.key")
    second = issue_cert(tmp_path, role="camera", name="b")
    assert (tmp_path / "ca.pem").read_bytes() == ca_bytes
    ca = _cert(second.ca)
    _cert(first.cert).verify_directly_issued_by(ca)
    _cert(second.cert).verify_directly_issued_by(ca)
    make_dev_pki(tmp_path, cameras=["c"])
    assert (tmp_path / "ca.pem").read_bytes() == ca_bytes


def test_half_a_ca_is_an_error(tmp_path):
    make_ca(tmp_path)
    (tmp_path / "ca.key").unlink()
    with pytest.raises(ConfigError, match="ca.key"):
        make_ca(tmp_path)


@pytest.mark.parametrize(
    "name", ["", "a/b", "../x", "cam 1", "x" * 65, "-lead", "é", "cam\n", None]
)
def test_bad_names_rejected(tmp_path, name):
    with pytest.raises(ValueError):
        issue_cert(tmp_path, role="camera", name=name)
    assert not any(tmp_path.glob("camera-*")), "nothing written for a bad name"


@pytest.mark.parametrize("name", ["cam-1", "A", "x" * 53, "front_door.2"])
def test_good_names_accepted(tmp_path, name):
    assert issue_cert(tmp_path, role="subscriber", name=name).cert.name == f"subscriber-{name}.pem"


def test_common_name_length_limit(tmp_path):
    """X.509 caps a CN at 64 characters, so `<role>/<id>` leaves 57 for a camera id, 53 for a subscriber."""
    assert _cn(_cert(issue_cert(tmp_path, role="camera", name="c" * 57).cert)) == "camera/" + "c" * 57
    with pytest.raises(ValueError, match="at most 57"):
        issue_cert(tmp_path, role="camera", name="c" * 58)
    with pytest.raises(ValueError, match="at most 53"):
        issue_cert(tmp_path, role="subscriber", name="s" * 54)
    # the server's files and CN do not contain its name, so the full 64 is fine there
    issue_cert(tmp_path, role="server", name="s" * 64)


def test_bad_role_and_days(tmp_path):
    with pytest.raises(ValueError):
        issue_cert(tmp_path, role="admin", name="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        issue_cert(tmp_path, role="camera", name="x", days=0)
    with pytest.raises(ValueError):
        issue_cert(tmp_path, role="camera", name="x", extra_dns=["a"])


def test_make_dev_pki_validates_before_writing(tmp_path):
    with pytest.raises(ValueError):
        make_dev_pki(tmp_path, cameras=["ok", "not ok"])
    with pytest.raises(ValueError):
        make_dev_pki(tmp_path, cameras=["ok"], subscribers=["s" * 60])
    with pytest.raises(ValueError):
        issue_cert(tmp_path, role="camera", name="x", extra_dns=["a"])
    assert not any(tmp_path.iterdir())


# --------------------------------------------------------------------------- identity


@pytest.mark.parametrize("role", ["camera", "subscriber"])
@pytest.mark.parametrize("ident", ["cam-1", "demo", "a.b_c-9", "x" * 53])
def test_identity_round_trip(role, ident):
    cn = certs.common_name_for(role, ident)
    assert cn == f"{role}/{ident}"
    assert identity_from_common_name(cn) == (role, ident)
    assert identity_from_common_name(cn.encode()) == (role, ident)


@pytest.mark.parametrize(
    "cn",
    [
        "", "cam-1", "camera", "camera/", "/cam-1", "server/x", "pvad-server", "admin/x",
        "camera/a/b", "camera/cam 1", "Camera/cam-1", "camera/" + "x" * 65, "camera/-x",
        b"\xff\xfe", "camera//x",
    ],
)
def test_identity_malformed(cn):
    with pytest.raises(ValueError):
        identity_from_common_name(cn)


# --------------------------------------------------------------------------- credentials errors


def test_missing_files_raise_config_error(tmp_path, pki):
    missing = tmp_path / "nope.pem"
    for paths in (
        CertPaths(ca=missing, cert=pki["server"].cert, key=pki["server"].key),
        CertPaths(ca=pki["server"].ca, cert=missing, key=pki["server"].key),
        CertPaths(ca=pki["server"].ca, cert=pki["server"].cert, key=missing),
    ):
        for make in (server_credentials, channel_credentials):
            with pytest.raises(ConfigError) as err:
                make(paths)
            assert str(missing) in str(err.value)
            assert "pvad certs --out DIR" in str(err.value)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads mode-000 files")
def test_unreadable_file_raises_config_error(tmp_path, pki):
    key = tmp_path / "k.key"
    key.write_bytes(pki["server"].key.read_bytes())
    key.chmod(0)
    with pytest.raises(ConfigError, match="k.key"):
        server_credentials(CertPaths(ca=pki["server"].ca, cert=pki["server"].cert, key=key))


def test_directory_instead_of_file_raises_config_error(tmp_path, pki):
    (tmp_path / "dir.key").mkdir()
    with pytest.raises(ConfigError, match="dir.key"):
        channel_credentials(CertPaths(ca=pki["server"].ca, cert=pki["camera/cam-1"].cert, key=tmp_path / "dir.key"))


def test_garbage_and_mismatched_files(tmp_path, pki):
    junk = tmp_path / "junk.pem"
    junk.write_text("not a certificate")
    with pytest.raises(ConfigError, match="junk.pem"):
        channel_credentials(CertPaths(ca=junk, cert=pki["camera/cam-1"].cert, key=pki["camera/cam-1"].key))
    with pytest.raises(ConfigError, match="does not match"):
        channel_credentials(CertPaths(ca=pki["server"].ca, cert=pki["camera/cam-1"].cert, key=pki["camera/cam-2"].key))


def test_channel_options():
    assert channel_options() == [("grpc.ssl_target_name_override", "pvad-server")]
    assert channel_options("other") == [("grpc.ssl_target_name_override", "other")]


# --------------------------------------------------------------------------- real mTLS handshakes


def _whoami(request: bytes, context: grpc.ServicerContext) -> bytes:
    auth = context.auth_context()
    assert auth.get("transport_security_type") == [b"ssl"]
    return b"".join(auth.get("x509_common_name", [b"<none>"]))


@pytest.fixture(scope="module")
def mtls_server(pki):
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    handler = grpc.method_handlers_generic_handler(
        "pvad.test.Echo", {"WhoAmI": grpc.unary_unary_rpc_method_handler(_whoami)}
    )
    server.add_generic_rpc_handlers((handler,))
    port = server.add_secure_port("127.0.0.1:0", server_credentials(pki["server"]))
    assert port > 0
    server.start()
    yield f"127.0.0.1:{port}"
    server.stop(grace=None)


def _call(channel: grpc.Channel) -> bytes:
    with channel:
        return channel.unary_unary(WHOAMI)(b"", timeout=TIMEOUT)


@pytest.mark.parametrize("who", ["camera/cam-1", "camera/cam-2", "subscriber/demo"])
def test_mtls_identity_reaches_handler(mtls_server, pki, who):
    ch = grpc.secure_channel(mtls_server, channel_credentials(pki[who]), options=channel_options())
    cn = _call(ch)
    assert cn == who.encode()
    assert identity_from_common_name(cn) == tuple(who.split("/"))


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost"])
def test_mtls_without_name_override(mtls_server, pki, host):
    """The server certificate's IP and DNS SANs verify when dialed directly."""
    port = mtls_server.rsplit(":", 1)[1]
    ch = grpc.secure_channel(f"{host}:{port}", channel_credentials(pki["camera/cam-1"]))
    assert _call(ch) == b"camera/cam-1"


def _assert_unavailable(channel: grpc.Channel) -> None:
    with pytest.raises(grpc.RpcError) as err:
        _call(channel)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE, err.value


def test_client_without_certificate_is_refused(mtls_server, pki):
    creds = grpc.ssl_channel_credentials(root_certificates=pki["server"].ca.read_bytes())
    _assert_unavailable(grpc.secure_channel(mtls_server, creds, options=channel_options()))


def test_insecure_channel_is_refused(mtls_server):
    _assert_unavailable(grpc.insecure_channel(mtls_server))


def test_certificate_from_another_ca_is_refused(mtls_server, pki, other_pki):
    foreign = other_pki["camera/cam-1"]
    # trusts our CA for the server, presents a client certificate signed by another CA
    paths = CertPaths(ca=pki["server"].ca, cert=foreign.cert, key=foreign.key)
    _assert_unavailable(grpc.secure_channel(mtls_server, channel_credentials(paths), options=channel_options()))


def test_server_from_another_ca_is_refused(mtls_server, other_pki):
    """The client checks the server too: trusting only another CA fails."""
    ch = grpc.secure_channel(mtls_server, channel_credentials(other_pki["camera/cam-1"]), options=channel_options())
    _assert_unavailable(ch)


def test_wrong_server_name_is_refused(mtls_server, pki):
    ch = grpc.secure_channel(
        mtls_server, channel_credentials(pki["camera/cam-1"]), options=channel_options("not-pvad")
    )
    _assert_unavailable(ch)
