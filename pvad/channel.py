"""Client side of mutual TLS: one way to dial the analysis server, used by cameras and subscribers."""

from __future__ import annotations

import grpc

from pvad.certs import CertPaths, channel_credentials, channel_options
from pvad.config import ClientTLS

MAX_MESSAGE_BYTES = 4 * 1024 * 1024


def secure_channel(address: str, tls: ClientTLS) -> grpc.aio.Channel:
    creds = channel_credentials(CertPaths(ca=tls.ca, cert=tls.cert, key=tls.key))
    options = channel_options(tls.server_name) + [
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]
    return grpc.aio.secure_channel(address, creds, options=options)
