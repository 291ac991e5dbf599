"""An alarm subscriber's file (kind ``subscriber``)."""

from __future__ import annotations

from pydantic import Field

from pvad.config.base import Section
from pvad.config.tls import ClientTLS


class SubscriberConfig(Section):
    server: str
    tls: ClientTLS
    camera_ids: list[str] = Field(default_factory=list)
    include_scores: bool = False
    after_event_id: int = Field(0, ge=0)
