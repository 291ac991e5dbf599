"""The analysis server's file (kind ``server``) and its own sections: decoders, limits, access, event log, metrics, MQTT
(the dashboard's ``web`` section is in ``pvad.config.web``)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, field_validator, model_validator

from pvad.config.analysis import AnalysisConfig
from pvad.config.anonymizers import AnonymizerName
from pvad.config.base import SHIPPED_AUTOENCODER, SHIPPED_DP_AUTOENCODER, SHIPPED_HARDENED_AUTOENCODER, Section
from pvad.config.scoring import ScoringConfig
from pvad.config.store import PostgresConfig, default_server_id
from pvad.config.tls import ServerTLS
from pvad.config.web import WebConfig


class DecoderConfig(Section):
    checkpoints: list[Path] = Field(
        default_factory=lambda: [SHIPPED_DP_AUTOENCODER, SHIPPED_HARDENED_AUTOENCODER, SHIPPED_AUTOENCODER],
        description="autoencoder checkpoints whose decoders this server holds (default: the shipped pairs)",
    )
    untrained_seeds: list[int] = Field(
        default_factory=list,
        description="also hold the untrained autoencoder made from each seed (development only)",
    )


def decoders_for(anonymizer) -> DecoderConfig:
    """The decoders a server needs for a camera with this anonymizer section: the dp-encoder's pair (its
    checkpoint, or the untrained weights of its seed), none for an image anonymizer."""
    if getattr(anonymizer, "name", None) != "dp-encoder":
        return DecoderConfig(checkpoints=[], untrained_seeds=[])
    if anonymizer.checkpoint:
        return DecoderConfig(checkpoints=[anonymizer.checkpoint], untrained_seeds=[])
    return DecoderConfig(checkpoints=[], untrained_seeds=[anonymizer.seed])


class LimitsConfig(Section):
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_image_width: int = Field(1920, ge=16)
    max_image_height: int = Field(1080, ge=16)
    max_streams_per_camera: int = Field(
        2, ge=1, le=64, description="concurrent Ingest streams per camera (2 lets a reconnect overlap a dying stream)"
    )
    max_subscribers: int = Field(64, ge=1, le=100_000)
    subscriber_queue: int = Field(256, ge=1, le=1_000_000, description="live score events buffered per subscriber")
    max_stream_age_s: float | None = Field(
        None, ge=1.0, le=86_400.0,
        description="end a camera's stream cleanly after this long (the camera reconnects at once and resends what was "
                    "not acknowledged), so cameras rebalance behind a load balancer after a server joins or returns; "
                    "null = streams live until the connection ends",
    )
    stream_age_jitter: float = Field(
        0.2, ge=0.0, lt=1.0,
        description="each stream's age limit is max_stream_age_s × (1 ± up to this fraction), so cameras do not all "
                    "reconnect at once",
    )


class AccessConfig(Section):
    """Which cameras each subscriber (by certificate id) and each dashboard user (by name) may follow."""

    subscribers: dict[str, list[str]] = Field(
        default_factory=dict, description="subscriber id -> camera ids it may see"
    )
    users: dict[str, list[str]] = Field(
        default_factory=dict, description="dashboard user name -> camera ids it may see (admins see every camera)"
    )
    default: Literal["all", "none"] = Field("all", description="for subscribers and users not listed above")
    trusted_proxies: list[str] = Field(
        default_factory=list,
        description="ids of proxy/<id> certificates (pvad certs --proxy ID) whose x-pvad-client-cn header names the "
                    "client they forward; a proxy not listed here is refused, and the header from anyone else ignored",
    )

    @field_validator("trusted_proxies")
    @classmethod
    def _proxy_ids(cls, ids: list[str]) -> list[str]:
        from pvad.certs import NAME_PATTERN

        for ident in ids:
            if not NAME_PATTERN.fullmatch(ident):
                raise ValueError(f"{ident!r} is not a proxy id (the <id> of a proxy/<id> certificate: 1-64 letters, "
                                 "digits, '_', '.', '-', starting with a letter or digit)")
        return ids

    def cameras_for(self, subscriber: str) -> frozenset[str] | None:
        """Camera ids `subscriber` may see; None means every camera."""
        if subscriber in self.subscribers:
            return frozenset(self.subscribers[subscriber])
        return None if self.default == "all" else frozenset()

    def cameras_for_user(self, user: str) -> frozenset[str] | None:
        """Camera ids dashboard user `user` may see; None means every camera."""
        if user in self.users:
            return frozenset(self.users[user])
        return None if self.default == "all" else frozenset()


class MqttTLS(Section):
    ca: Path = Field(description="CA that signed the broker's certificate")
    cert: Path | None = Field(None, description="client certificate, when the broker asks for one")
    key: Path | None = None


class MqttConfig(Section):
    """Alarm events to an MQTT broker (Frigate-style topics), replayed from the event log."""

    host: str = "127.0.0.1"
    port: int = Field(1883, ge=1, le=65535)
    topic_prefix: str = Field("pvad", pattern=r"^[^#+]+$")
    client_id: str = "pvad-server"
    qos: Literal[0, 1, 2] = 1
    username: str | None = None
    password_file: Path | None = Field(None, description="file holding the password (never the password itself)")
    tls: MqttTLS | None = None
    reconnect_max_s: float = Field(30.0, gt=0.0)


class MetricsConfig(Section):
    listen: str | None = Field(None, description="host:port for Prometheus /metrics; null = off")


class HealthConfig(Section):
    """Plain HTTP readiness for load balancers (HAProxy ``option httpchk GET /ready``): ``/ready`` is 200 while the
    server takes streams and 503 while it starts or drains; ``/live`` is 200 while the process answers."""

    listen: str | None = Field(None, description="host:port for /ready and /live (no TLS, no data); null = off")


class EventLogConfig(Section):
    path: Path = Field(Path("pvad-events.sqlite"), description="SQLite event log (WAL)")


class ServerConfig(Section):
    listen: str = Field("127.0.0.1:50051", description="host:port; port 0 picks a free one")
    tls: ServerTLS
    accept: list[AnonymizerName] = Field(
        default_factory=lambda: ["dp-encoder"], description="payload kinds this server analyses"
    )
    decoders: DecoderConfig = DecoderConfig()
    analysis: AnalysisConfig = AnalysisConfig()
    scoring: ScoringConfig = ScoringConfig()
    limits: LimitsConfig = LimitsConfig()
    access: AccessConfig = AccessConfig()
    event_log: EventLogConfig = EventLogConfig()
    postgres: PostgresConfig | None = Field(
        None, description="a PostgreSQL store shared by the servers of a cluster instead of the SQLite event_log; null = SQLite"
    )
    server_id: str = Field(
        default_factory=lambda: default_server_id(None), min_length=1, max_length=128,
        description="this server's name in the shared store and its logs (default: host name and listen port)",
    )

    @model_validator(mode="before")
    @classmethod
    def _name_this_server(cls, data):
        if isinstance(data, dict) and data.get("server_id") is None:
            data = {**data, "server_id": default_server_id(data.get("listen") or cls.model_fields["listen"].default)}
        return data
    metrics: MetricsConfig = MetricsConfig()
    health: HealthConfig = HealthConfig()
    mqtt: MqttConfig | None = Field(None, description="null = no MQTT bridge")
    drain_s: float = Field(5.0, ge=0.0, le=600.0, description="on SIGTERM, time to finish frames in analysis")
    web: WebConfig = WebConfig()

    @model_validator(mode="after")
    def _one_store(self) -> ServerConfig:
        if self.postgres is not None and "event_log" in self.model_fields_set:
            raise ValueError("event_log and postgres both name a store: keep one (postgres for a cluster, "
                             "event_log for one server)")
        return self
