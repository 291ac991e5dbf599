"""Development PKI and gRPC TLS credentials (DESIGN.md §8: TLS always on, mTLS binds identity).

Identity scheme: a client certificate's subject Common Name is ``<role>/<id>`` with role
``camera``, ``subscriber`` or ``proxy`` (e.g. ``camera/cam-1``); :func:`identity_from_common_name` is
the one place that format is parsed. A ``proxy/<id>`` certificate is what a load balancer (HAProxy)
presents to the servers when it re-encrypts a client's connection; servers believe the client
identity it forwards only when ``access.trusted_proxies`` lists its id (``analysis_server.identity``). The server certificate has CN ``pvad-server`` and SANs DNS
``pvad-server``, DNS ``localhost``, IP 127.0.0.1, IP ::1 (plus extra DNS names). Every certificate
is signed by one development CA (CN ``pvad dev CA``). Keys are EC P-256, written with mode 0600.

Files in an output directory::

    ca.pem  ca.key                       the CA (reused when both exist)
    server.pem  server.key               the analysis server
    camera-<id>.pem  camera-<id>.key     one per camera
    subscriber-<id>.pem  ...             one per alarm subscriber
    proxy-<id>.pem  proxy-<id>.key       one per load balancer (``pvad certs --proxy ID``)

Credentials are built from paths that config files name; no key is read at import time.
"""

from __future__ import annotations

import datetime as _dt
import ipaddress
import logging
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Sequence

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from pvad.errors import ConfigError

log = logging.getLogger(__name__)

SERVER_NAME = "pvad-server"
"""CN and DNS SAN of the server certificate; clients dialing an IP override the target name to it."""

CA_COMMON_NAME = "pvad dev CA"
CLIENT_ROLES = ("camera", "subscriber", "proxy")
ROLES = ("server", *CLIENT_ROLES)
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
"""Camera and subscriber ids (same rule as ``CameraConfig.camera_id``)."""

CLIENT_CN_HEADER = "x-pvad-client-cn"
"""HTTP/2 header (gRPC metadata key) in which a trusted proxy forwards the client certificate's common name."""

MAX_COMMON_NAME = 64  # RFC 5280 ub-common-name
_CLOCK_SKEW = _dt.timedelta(minutes=5)
_HINT = "`pvad certs --out DIR` makes development ones"

Role = Literal["server", "camera", "subscriber", "proxy"]


@dataclass(frozen=True)
class CertPaths:
    """Where one party's TLS material lives: the CA certificate, its own certificate and key."""

    ca: Path
    cert: Path
    key: Path


# --------------------------------------------------------------------------- identity


def _check_name(name: str) -> str:
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise ValueError(
            f"invalid name {name!r}: use 1-64 letters, digits, '_', '.', '-', starting with a letter or digit"
        )
    return name


def common_name_for(role: str, name: str) -> str:
    """The CN a client certificate for ``role``/``name`` carries (inverse of identity_from_common_name).

    X.509 caps a CN at 64 characters (RFC 5280 ub-common-name), so with its ``<role>/`` prefix a
    camera id may have at most 57 characters and a subscriber id 53.
    """
    if role not in CLIENT_ROLES:
        raise ValueError(f"unknown client role {role!r}; known: {', '.join(CLIENT_ROLES)}")
    cn = f"{role}/{_check_name(name)}"
    if len(cn) > MAX_COMMON_NAME:
        raise ValueError(
            f"name {name!r} too long for a {role} certificate: the common name {role}/<name> may have "
            f"at most {MAX_COMMON_NAME} characters, so at most {MAX_COMMON_NAME - len(role) - 1} for the name"
        )
    return cn


def identity_from_common_name(cn: str | bytes) -> tuple[str, str]:
    """``"camera/cam-1"`` -> ``("camera", "cam-1")``; ValueError for anything else.

    Accepts the raw bytes grpc puts in ``context.auth_context()["x509_common_name"]``.
    """
    if isinstance(cn, bytes):
        try:
            cn = cn.decode("utf-8")
        except UnicodeDecodeError:
            raise ValueError(f"certificate common name is not UTF-8: {cn!r}") from None
    if not isinstance(cn, str):
        raise ValueError(f"certificate common name must be a string, got {type(cn).__name__}")
    role, sep, ident = cn.partition("/")
    if not sep or role not in CLIENT_ROLES or not NAME_PATTERN.fullmatch(ident):
        raise ValueError(
            f"malformed certificate common name {cn!r}: expected '<role>/<id>' with role "
            f"{' or '.join(CLIENT_ROLES)} and an id of 1-64 letters, digits, '_', '.', '-'"
        )
    return role, ident


# --------------------------------------------------------------------------- files


def _write_private(path: Path, data: bytes) -> None:
    """Write atomically with mode 0600 from the start (never world-readable, not even briefly)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)  # mkstemp: mode 0600
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _write_public(path: Path, data: bytes) -> None:
    _write_private(path, data)
    os.chmod(path, 0o644)


def _read(path: Path, what: str) -> bytes:
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as err:
        reason = err.strerror or type(err).__name__
        raise ConfigError(f"{path}: cannot read {what} ({reason}); {_HINT}") from None


def _parse_cert(data: bytes, path: Path, what: str) -> x509.Certificate:
    try:
        return x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigError(f"{path}: not a PEM {what}; {_HINT}") from None


def _load_cert(path: Path, what: str = "certificate") -> x509.Certificate:
    return _parse_cert(_read(path, what), path, what)


def _load_key(path: Path) -> tuple[bytes, Any]:
    data = _read(path, "private key")
    try:
        return data, serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError):
        raise ConfigError(f"{path}: not an unencrypted PEM private key; {_HINT}") from None


def _pem_cert(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(serialization.Encoding.PEM)


def _pem_key(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _same_public_key(cert: x509.Certificate, key: Any) -> bool:
    fmt = (serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return cert.public_key().public_bytes(*fmt) == key.public_key().public_bytes(*fmt)


def _check_days(days: int) -> int:
    if not isinstance(days, int) or isinstance(days, bool) or days < 1:
        raise ValueError(f"days must be a positive integer, got {days!r}")
    return days


# --------------------------------------------------------------------------- issuing


def make_ca(out_dir: Path, *, days: int = 365) -> tuple[Path, Path]:
    """Create ``ca.pem``/``ca.key`` in ``out_dir``, or reuse them when both already exist.

    Returns (certificate path, key path). Only one of the two present is an error (making a new CA
    would orphan every certificate the old one signed).
    """
    _check_days(days)
    out_dir = Path(out_dir)
    cert_path, key_path = out_dir / "ca.pem", out_dir / "ca.key"
    if cert_path.exists() or key_path.exists():
        if not (cert_path.exists() and key_path.exists()):
            missing = key_path if cert_path.exists() else cert_path
            raise ConfigError(f"{missing}: missing while its CA partner exists; restore it or remove both")
        cert = _load_cert(cert_path, "CA certificate")
        _, key = _load_key(key_path)
        if not _same_public_key(cert, key):
            raise ConfigError(f"{key_path}: does not match {cert_path}")
        return cert_path, key_path

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, CA_COMMON_NAME)])
    now = _dt.datetime.now(_dt.timezone.utc)
    ski = x509.SubjectKeyIdentifier.from_public_key(key.public_key())
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(now + _dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(ski, critical=False)
        .sign(key, hashes.SHA256())
    )
    _write_private(key_path, _pem_key(key))
    _write_public(cert_path, _pem_cert(cert))
    log.info("created development CA %s (valid %d days)", cert_path, days)
    return cert_path, key_path


def issue_cert(
    out_dir: Path,
    *,
    role: Role,
    name: str,
    days: int = 365,
    extra_dns: Sequence[str] = (),
) -> CertPaths:
    """Issue a certificate signed by the CA in ``out_dir`` (created if absent); overwrite old files.

    Clients (camera, subscriber, proxy) get CN ``<role>/<name>``, EKU clientAuth, files
    ``<role>-<name>.pem/.key``. The server gets CN ``pvad-server``, EKU serverAuth, files
    ``server.pem/.key`` and SANs pvad-server, localhost, 127.0.0.1, ::1, ``name`` and ``extra_dns``.
    The validity never runs past the CA's.
    """
    if role not in ROLES:
        raise ValueError(f"unknown role {role!r}; known: {', '.join(ROLES)}")
    if role == "server":
        _check_name(name)
    else:
        common_name_for(role, name)
        if extra_dns:
            raise ValueError("extra_dns applies to the server certificate only")
    _check_days(days)
    out_dir = Path(out_dir)
    ca_cert_path, ca_key_path = make_ca(out_dir, days=days)
    ca_cert = _load_cert(ca_cert_path, "CA certificate")
    _, ca_key = _load_key(ca_key_path)

    key = ec.generate_private_key(ec.SECP256R1())
    now = _dt.datetime.now(_dt.timezone.utc)
    wanted = now + _dt.timedelta(days=days)
    not_after = min(wanted, ca_cert.not_valid_after_utc)
    if wanted - not_after > _dt.timedelta(days=1):  # not for a CA made a moment ago with the same days
        log.warning("%s/%s certificate validity capped at the CA's expiry %s", role, name, not_after)

    if role == "server":
        cn, stem, eku = SERVER_NAME, "server", ExtendedKeyUsageOID.SERVER_AUTH
        dns: list[str] = []
        for d in (SERVER_NAME, "localhost", name, *extra_dns):
            if not isinstance(d, str) or not d:
                raise ValueError(f"invalid DNS name {d!r}")
            if d not in dns:
                dns.append(d)
        san: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
        san += [x509.IPAddress(ipaddress.ip_address(a)) for a in ("127.0.0.1", "::1")]
    else:
        cn, stem, eku = common_name_for(role, name), f"{role}-{name}", ExtendedKeyUsageOID.CLIENT_AUTH
        san = []

    builder = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _CLOCK_SKEW)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=False, crl_sign=False,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([eku]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False
        )
    )
    if san:
        builder = builder.add_extension(x509.SubjectAlternativeName(san), critical=False)
    cert = builder.sign(ca_key, hashes.SHA256())

    paths = CertPaths(ca=ca_cert_path, cert=out_dir / f"{stem}.pem", key=out_dir / f"{stem}.key")
    _write_private(paths.key, _pem_key(key))
    _write_public(paths.cert, _pem_cert(cert))
    log.info("issued %s certificate %s (CN %s)", role, paths.cert, cn)
    return paths


def make_dev_pki(
    out_dir: Path,
    *,
    cameras: Sequence[str],
    subscribers: Sequence[str] = ("demo",),
    proxies: Sequence[str] = (),
    days: int = 365,
) -> dict[str, CertPaths]:
    """CA (reused if present), server, one certificate per camera, subscriber and proxy.

    Keys of the result: ``"server"``, ``"camera/<id>"``, ``"subscriber/<id>"``, ``"proxy/<id>"``.
    """
    if isinstance(cameras, str) or isinstance(subscribers, str) or isinstance(proxies, str):
        raise TypeError("cameras, subscribers and proxies are sequences of names, not a single string")
    for role, names in (("camera", cameras), ("subscriber", subscribers), ("proxy", proxies)):  # fail before writing
        for n in names:
            common_name_for(role, n)
    _check_days(days)
    make_ca(out_dir, days=days)
    out: dict[str, CertPaths] = {"server": issue_cert(out_dir, role="server", name=SERVER_NAME, days=days)}
    for cam in cameras:
        out[f"camera/{cam}"] = issue_cert(out_dir, role="camera", name=cam, days=days)
    for sub in subscribers:
        out[f"subscriber/{sub}"] = issue_cert(out_dir, role="subscriber", name=sub, days=days)
    for proxy in proxies:
        out[f"proxy/{proxy}"] = issue_cert(out_dir, role="proxy", name=proxy, days=days)
    return out


def pem_bundle(paths: CertPaths, out: Path) -> Path:
    """Write ``paths.cert`` followed by ``paths.key`` into ``out`` (mode 0600): the one-file form
    HAProxy's ``crt`` takes. The pair is checked first, so a mismatch is named here."""
    _, cert_pem, key_pem = _read_triplet(paths)
    out = Path(out)
    _write_private(out, cert_pem.rstrip(b"\n") + b"\n" + key_pem)
    return out


# --------------------------------------------------------------------------- gRPC credentials


def _read_triplet(paths: CertPaths) -> tuple[bytes, bytes, bytes]:
    """Read and sanity-check CA, certificate and key so a mistake is named here, not in a TLS alert."""
    ca_pem = _read(paths.ca, "CA certificate")
    _parse_cert(ca_pem, paths.ca, "CA certificate")
    cert_pem = _read(paths.cert, "certificate")
    cert = _parse_cert(cert_pem, paths.cert, "certificate")
    key_pem, key = _load_key(paths.key)
    if not _same_public_key(cert, key):
        raise ConfigError(f"{paths.key}: does not match the certificate {paths.cert}")
    return ca_pem, cert_pem, key_pem


def server_credentials(paths: CertPaths) -> grpc.ServerCredentials:
    """TLS server credentials that require a client certificate signed by ``paths.ca``."""
    ca_pem, cert_pem, key_pem = _read_triplet(paths)
    return grpc.ssl_server_credentials(
        [(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True
    )


def reloading_server_credentials(paths: CertPaths) -> grpc.ServerCredentials:
    """Like :func:`server_credentials`, but new handshakes pick up rotated files without a restart.

    gRPC asks before each handshake; the files are re-read when one of their modification times
    changed. A rotation that does not parse (or whose key does not match) is logged and ignored:
    the server keeps the last good certificate.
    """
    ca_pem, cert_pem, key_pem = _read_triplet(paths)
    files = (paths.ca, paths.cert, paths.key)
    seen = {"mtimes": [f.stat().st_mtime_ns for f in files]}

    def fetch() -> grpc.ServerCertificateConfiguration | None:
        try:
            mtimes = [f.stat().st_mtime_ns for f in files]
        except OSError:
            return None
        if mtimes == seen["mtimes"]:
            return None
        try:
            ca, cert, key = _read_triplet(paths)
        except ConfigError as err:
            log.warning("certificate rotation ignored: %s", err)
            return None
        seen["mtimes"] = mtimes
        log.info("server certificate reloaded from %s", paths.cert)
        return grpc.ssl_server_certificate_configuration([(key, cert)], root_certificates=ca)

    initial = grpc.ssl_server_certificate_configuration([(key_pem, cert_pem)], root_certificates=ca_pem)
    return grpc.dynamic_ssl_server_credentials(initial, fetch, require_client_authentication=True)


def channel_credentials(paths: CertPaths) -> grpc.ChannelCredentials:
    """TLS channel credentials presenting this client's certificate and trusting ``paths.ca``."""
    ca_pem, cert_pem, key_pem = _read_triplet(paths)
    return grpc.ssl_channel_credentials(
        root_certificates=ca_pem, private_key=key_pem, certificate_chain=cert_pem
    )


def channel_options(server_name: str = SERVER_NAME) -> list[tuple[str, Any]]:
    """Channel options that check the server certificate against ``server_name`` whatever address is dialed."""
    return [("grpc.ssl_target_name_override", server_name)]
