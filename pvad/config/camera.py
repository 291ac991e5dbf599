"""A camera client's file (kind ``camera``): capture, anonymizer, buffer, reconnection."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from pvad.config.anonymizers import AnonymizerConfig, DpEncoderAnonymizer
from pvad.config.base import Section
from pvad.config.tls import ClientTLS


class CaptureConfig(Section):
    source: str = Field(description="video file path, folder of frame images, device index (e.g. '0') or rtsp:// URL")
    source_fps: float | None = Field(
        None, gt=0.0, le=1000.0, description="frame rate a folder of images was recorded at; null = target_fps (every image)"
    )
    target_fps: float = Field(10.0, gt=0.0, le=120.0, description="frames per second sent to the server")
    max_frames: int | None = Field(None, ge=1, description="stop after this many frames")
    loop: bool = Field(False, description="restart a file source at its end")
    realtime: bool = Field(
        False, description="pace a file source at target_fps (a live source is paced by the device)"
    )


class BufferConfig(Section):
    """Frames captured but not yet acknowledged; resent after a reconnect."""

    capacity: int = Field(512, ge=1, le=1_000_000)
    policy: Literal["auto", "block", "drop-oldest", "drop-newest"] = Field(
        "auto", description="when full: block capture (auto for files) or drop a frame (auto for live sources)"
    )


class ReconnectConfig(Section):
    initial_backoff_s: float = Field(0.2, gt=0.0, le=60.0)
    max_backoff_s: float = Field(10.0, gt=0.0, le=600.0)
    give_up_after_s: float | None = Field(None, gt=0.0, description="stop after this long without a connection")


class CameraConfig(Section):
    camera_id: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,56}$")
    server: str = Field(description="analysis server address host:port")
    tls: ClientTLS
    capture: CaptureConfig
    anonymizer: AnonymizerConfig = DpEncoderAnonymizer()
    max_in_flight: int = Field(32, ge=1, le=4096, description="frames sent but not yet acknowledged")
    buffer: BufferConfig = BufferConfig()
    reconnect: ReconnectConfig = ReconnectConfig()
