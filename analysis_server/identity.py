"""Who is calling: the client certificate's identity, directly or forwarded by a trusted proxy (DESIGN.md §9).

A camera or subscriber that connects straight to a server is who its certificate's common name says
(``camera/<id>``, ``subscriber/<id>``). Behind HAProxy the TLS peer is the proxy: it terminated the
client's mTLS, re-encrypted with its own ``proxy/<id>`` certificate, deleted any ``x-pvad-client-cn``
header the client sent and set it to the CN of the certificate the client presented. A server
believes that header only when the TLS peer is a proxy listed in ``access.trusted_proxies``:

- a listed proxy with the header: the identity is the header's CN (parsed like a certificate's);
- a listed proxy without it: refused (UNAUTHENTICATED): a proxy certificate is not a camera;
- a proxy not listed: refused (PERMISSION_DENIED), with the id to add if it is one of yours;
- anyone else with the header: the header is ignored, the certificate decides, and it is logged
  (a client trying to pass for another, or a proxy that does not strip the header).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass

import grpc

from pvad.certs import CLIENT_CN_HEADER, identity_from_common_name

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Identity:
    role: str  # camera, subscriber
    ident: str
    proxy: str | None = None  # the trusted proxy it came through, None for a direct connection

    def describe(self) -> str:
        return f"{self.role}/{self.ident}" + (f" via proxy/{self.proxy}" if self.proxy else "")


class IdentityRefused(Exception):
    """The caller has no acceptable identity; ``code`` is the gRPC status to end the call with."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


def _header(metadata: Iterable[tuple[str, str | bytes]] | None) -> list[str | bytes]:
    return [v for k, v in (metadata or ()) if k.lower() == CLIENT_CN_HEADER]


def resolve_identity(common_names: list[bytes | str], metadata: Iterable[tuple[str, str | bytes]] | None, *,
                     role: str, trusted_proxies: Iterable[str] = ()) -> Identity:
    """The caller's identity for a call meant for ``role`` certificates; raises :class:`IdentityRefused`.

    ``common_names`` is what gRPC's auth context holds under ``x509_common_name`` (the TLS peer's
    certificate), ``metadata`` the call's invocation metadata."""
    if not common_names:
        raise IdentityRefused(grpc.StatusCode.UNAUTHENTICATED, "no client certificate")
    try:
        peer_role, peer_ident = identity_from_common_name(common_names[0])
    except ValueError as err:
        raise IdentityRefused(grpc.StatusCode.UNAUTHENTICATED, f"client certificate: {err}") from None
    forwarded = _header(metadata)
    if peer_role == "proxy":
        if peer_ident not in set(trusted_proxies):
            raise IdentityRefused(
                grpc.StatusCode.PERMISSION_DENIED,
                f"proxy/{peer_ident} is not a trusted proxy of this server (access.trusted_proxies); "
                "add its id there if it is one of yours",
            )
        if not forwarded:
            raise IdentityRefused(
                grpc.StatusCode.UNAUTHENTICATED,
                f"proxy/{peer_ident} sent no {CLIENT_CN_HEADER} header: a proxy certificate cannot be used as a "
                f"{role} (HAProxy must set the header from ssl_c_s_dn(CN))",
            )
        if len(forwarded) > 1:
            raise IdentityRefused(
                grpc.StatusCode.UNAUTHENTICATED,
                f"proxy/{peer_ident} sent {len(forwarded)} {CLIENT_CN_HEADER} headers; it must delete the client's "
                "copy before setting its own",
            )
        try:
            role_, ident = identity_from_common_name(forwarded[0])
        except ValueError as err:
            raise IdentityRefused(grpc.StatusCode.UNAUTHENTICATED,
                                  f"client certificate forwarded by proxy/{peer_ident}: {err}") from None
        if role_ == "proxy":
            raise IdentityRefused(grpc.StatusCode.PERMISSION_DENIED,
                                  f"proxy/{peer_ident} forwarded a proxy certificate ({forwarded[0]!r}); proxies do not chain")
        who = Identity(role_, ident, peer_ident)
    else:
        if forwarded:
            log.warning("%s/%s sent a %s header (%r): ignored, only a trusted proxy's is believed", peer_role,
                        peer_ident, CLIENT_CN_HEADER, forwarded[0][:80])
        who = Identity(peer_role, peer_ident)
    if who.role != role:
        raise IdentityRefused(
            grpc.StatusCode.PERMISSION_DENIED,
            f"this call is for {role} certificates; yours is a {who.role} one"
            + (f" (forwarded by proxy/{who.proxy})" if who.proxy else ""),
        )
    return who


async def caller_identity(context: grpc.aio.ServicerContext, role: str, trusted_proxies: Iterable[str] = ()) -> Identity:
    """:func:`resolve_identity` for a gRPC call; aborts it with the refusal's status."""
    try:
        return resolve_identity(context.auth_context().get("x509_common_name") or [],
                                context.invocation_metadata(), role=role, trusted_proxies=trusted_proxies)
    except IdentityRefused as err:
        log.info("call from %s refused: %s", context.peer(), err)
        await context.abort(err.code, str(err))
        raise  # abort raises; never reached
