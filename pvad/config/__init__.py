"""Configuration: one pydantic model per YAML section, typos fail (`extra="forbid"`).

`load_config(path, kind)` validates a YAML file and raises `ConfigError` whose message lists
every problem with its field path, e.g. ``analysis.detector.backend: Input should be ...``.
Runtime state (sockets, models) never lives on these objects.

One module per YAML section (``pvad/config/<section>.py``); this package re-exports them all, so
``from pvad.config import ServerConfig`` is the one way in.
"""

from pvad.config.analysis import (
    UNTRAINED_CLASSIFIER,
    AnalysisConfig,
    BackgroundConfig,
    BatchingConfig,
    ClassifierConfig,
    FlowConfig,
    QuantizationConfig,
)
from pvad.config.anonymizers import (
    ANONYMIZER_NAMES,
    AdaptiveBlurAnonymizer,
    AdaptiveFullBlurAnonymizer,
    AdaptiveMaxBlurAnonymizer,
    AdaptiveMaxPixelateAnonymizer,
    AdaptivePixelateAnonymizer,
    AnonymizerConfig,
    AnonymizerName,
    BlurAnonymizer,
    DpEncoderAnonymizer,
    EdgeAnonymizer,
    LatentNoiseConfig,
    LearnedAnonymizer,
    MaskAnonymizer,
    NoAnonymizer,
    PixelateAnonymizer,
    RegionAnonymizer,
)
from pvad.config.base import (
    FRAME_HEIGHT,
    FRAME_WIDTH,
    SHIPPED_AUTOENCODER,
    SHIPPED_CLASSIFIER,
    SHIPPED_DP_AUTOENCODER,
    SHIPPED_DP_ENCODER_ONNX,
    SHIPPED_HARDENED_AUTOENCODER,
    SHIPPED_LEARNED_ANONYMIZER,
    SHIPPED_WEIGHTS,
    Section,
    shipped_autoencoders,
)
from pvad.config.camera import (
    BufferConfig,
    CameraConfig,
    CaptureConfig,
    ReconnectConfig,
)
from pvad.config.demo import (
    DemoConfig,
    DemoWeb,
)
from pvad.config.detectors import (
    DarknetDetector,
    DetectorConfig,
    HogDetector,
    NoDetector,
    UltralyticsDetector,
)
from pvad.config.loader import (
    KINDS,
    config_model,
    format_validation_error,
    guess_kind,
    load_config,
    validate_config,
)
from pvad.config.normality import (
    MotionGridConfig,
    NormalityConfig,
)
from pvad.config.scoring import (
    ScoringConfig,
)
from pvad.config.server import (
    AccessConfig,
    DecoderConfig,
    EventLogConfig,
    LimitsConfig,
    MetricsConfig,
    MqttConfig,
    MqttTLS,
    ServerConfig,
    decoders_for,
)
from pvad.config.store import (
    PostgresConfig,
)
from pvad.config.subscriber import (
    SubscriberConfig,
)
from pvad.config.tls import (
    ClientTLS,
    ServerTLS,
)
from pvad.config.web import (
    WebConfig,
    WebTLS,
)

__all__ = [
    "decoders_for",
    "MotionGridConfig",
    "NormalityConfig",
    "UNTRAINED_CLASSIFIER",
    "ANONYMIZER_NAMES",
    "AccessConfig",
    "AdaptiveBlurAnonymizer",
    "AdaptiveFullBlurAnonymizer",
    "AdaptiveMaxBlurAnonymizer",
    "AdaptiveMaxPixelateAnonymizer",
    "AdaptivePixelateAnonymizer",
    "AnalysisConfig",
    "AnonymizerConfig",
    "AnonymizerName",
    "BackgroundConfig",
    "BatchingConfig",
    "BlurAnonymizer",
    "BufferConfig",
    "CameraConfig",
    "CaptureConfig",
    "ClassifierConfig",
    "ClientTLS",
    "DarknetDetector",
    "DecoderConfig",
    "DemoConfig",
    "DemoWeb",
    "DetectorConfig",
    "DpEncoderAnonymizer",
    "EdgeAnonymizer",
    "EventLogConfig",
    "PostgresConfig",
    "FRAME_HEIGHT",
    "FRAME_WIDTH",
    "FlowConfig",
    "HogDetector",
    "KINDS",
    "LatentNoiseConfig",
    "LearnedAnonymizer",
    "LimitsConfig",
    "MaskAnonymizer",
    "MetricsConfig",
    "MqttConfig",
    "MqttTLS",
    "NoAnonymizer",
    "NoDetector",
    "PixelateAnonymizer",
    "QuantizationConfig",
    "ReconnectConfig",
    "RegionAnonymizer",
    "SHIPPED_AUTOENCODER",
    "SHIPPED_CLASSIFIER",
    "SHIPPED_DP_AUTOENCODER",
    "SHIPPED_DP_ENCODER_ONNX",
    "SHIPPED_HARDENED_AUTOENCODER",
    "shipped_autoencoders",
    "SHIPPED_LEARNED_ANONYMIZER",
    "SHIPPED_WEIGHTS",
    "ScoringConfig",
    "Section",
    "ServerConfig",
    "ServerTLS",
    "SubscriberConfig",
    "UltralyticsDetector",
    "WebConfig",
    "WebTLS",
    "config_model",
    "format_validation_error",
    "guess_kind",
    "load_config",
    "validate_config",
]
