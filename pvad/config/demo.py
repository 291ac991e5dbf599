"""The embedded default (kind ``demo``): server, camera and subscriber on one machine."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field

from pvad.config.analysis import AnalysisConfig, BatchingConfig
from pvad.config.anonymizers import (
    AnonymizerConfig,
    AnonymizerName,
    DpEncoderAnonymizer,
)
from pvad.config.base import Section
from pvad.config.normality import NormalityConfig
from pvad.config.scoring import ScoringConfig


class DemoWeb(Section):
    """The operator dashboard during the demo: a fresh `demo` admin user each run (its password printed)."""

    enabled: bool = Field(True, description="serve the dashboard and print its URL")
    listen: str = Field("127.0.0.1:0", description="host:port (loopback; port 0 picks a free one)")
    hold_s: float = Field(0.0, ge=0.0, le=86_400.0, description="keep serving this long after the camera's last frame")


class DemoConfig(Section):
    """The embedded default: both ends on this machine, certificates generated into `workdir`."""

    workdir: Path = Field(Path(".pvad/demo"), description="certificates, event log and logs go here")
    source: str = Field("auto", description="'auto' picks a bundled sample video")
    camera_id: str = "cam-1"
    max_frames: int | None = Field(300, ge=1, description="stop after this many frames; null = the whole source")
    target_fps: float = Field(10.0, gt=0.0, le=120.0)
    max_in_flight: int = Field(4, ge=1, le=4096, description="camera's unacknowledged frames at most")
    anonymizer: AnonymizerConfig = DpEncoderAnonymizer()
    accept: list[AnonymizerName] = Field(
        default_factory=lambda: ["dp-encoder"]
    )
    analysis: AnalysisConfig = Field(
        default_factory=lambda: AnalysisConfig(
            normality=NormalityConfig(learning_frames=150, min_frames=100),
            batching=BatchingConfig(max_batch=1, max_wait_ms=0.0),
        ),
        description="the camera's normality model, learnt from the first 150 frames, scores the rest (fusion normality)",
    )
    scoring: ScoringConfig = ScoringConfig()
    web: DemoWeb = DemoWeb()
