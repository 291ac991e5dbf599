"""TLS sections: the server's certificate and CA, a client's (camera, subscriber) certificate and CA."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pvad.config.base import Section


class ServerTLS(Section):
    ca: Path = Field(description="CA certificate that signed camera and subscriber certificates")
    cert: Path = Field(description="server certificate (PEM)")
    key: Path = Field(description="server private key (PEM)")


class ClientTLS(Section):
    ca: Path = Field(description="CA certificate that signed the server certificate")
    cert: Path = Field(description="this client's certificate (PEM); its CN names its role and id")
    key: Path = Field(description="this client's private key (PEM)")
    server_name: str = Field("pvad-server", description="name the server certificate must carry")
