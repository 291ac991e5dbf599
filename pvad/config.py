"""Configuration: one pydantic model per YAML section, typos fail (`extra="forbid"`).

`load_config(path, kind)` validates a YAML file and raises `ConfigError` whose message lists
every problem with its field path, e.g. ``analysis.detector.backend: Input should be ...``.
Runtime state (sockets, models) never lives on these objects.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from pvad.errors import ConfigError

# Frame geometry the paper's autoencoder is built for (G §3.3.1): 240 rows x 320 columns, RGB.
FRAME_HEIGHT = 240
FRAME_WIDTH = 320

# Trained autoencoder pairs that ship with pvad (made by `pvad train autoencoder` with
# configs/train-autoencoder-dp.yaml and configs/train-autoencoder.yaml; their cards say how).
SHIPPED_WEIGHTS = Path(__file__).resolve().parents[1] / "models" / "weights"
SHIPPED_DP_AUTOENCODER = SHIPPED_WEIGHTS / "autoencoder-dp-adagrad.pt"
SHIPPED_AUTOENCODER = SHIPPED_WEIGHTS / "autoencoder-adam.pt"
# The CPU-sized two-stream classifier trained on synthetic scenes, made by `pvad train classifier
# --config configs/train-classifier-synth.yaml`; its card says what it was and was not trained on.
SHIPPED_CLASSIFIER = SHIPPED_WEIGHTS / "classifier-synth.pt"
# The DP pair's encoder exported by `pvad export --format onnx` (for cameras without PyTorch).
SHIPPED_DP_ENCODER_ONNX = SHIPPED_WEIGHTS / "autoencoder-dp-adagrad.encoder.onnx"
# The learned (adversarially trained) anonymizer, made by `pvad train anonymizer` (configs/train-anonymizer.yaml).
SHIPPED_LEARNED_ANONYMIZER = SHIPPED_WEIGHTS / "anonymizer-learned.pt"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


# --------------------------------------------------------------------------- TLS


class ServerTLS(Section):
    ca: Path = Field(description="CA certificate that signed camera and subscriber certificates")
    cert: Path = Field(description="server certificate (PEM)")
    key: Path = Field(description="server private key (PEM)")


class ClientTLS(Section):
    ca: Path = Field(description="CA certificate that signed the server certificate")
    cert: Path = Field(description="this client's certificate (PEM); its CN names its role and id")
    key: Path = Field(description="this client's private key (PEM)")
    server_name: str = Field("pvad-server", description="name the server certificate must carry")


# --------------------------------------------------------------------------- anonymizers (camera)


class LatentNoiseConfig(Section):
    """Inference-time Gaussian mechanism on each latent (models/latent_noise.py): clip the frame's
    latent to L2 norm `clip_norm`, add N(0, sigma²); per-frame (ε, δ) from the analytic Gaussian
    mechanism with sensitivity 2·clip_norm."""

    clip_norm: float = Field(gt=0.0, description="L2 bound of one frame's latent")
    sigma: float = Field(gt=0.0, description="noise standard deviation per latent element")
    delta: float = Field(1e-5, gt=0.0, lt=1.0, description="δ at which the per-frame ε is stated")


class DpEncoderAnonymizer(Section):
    name: Literal["dp-encoder"] = "dp-encoder"
    checkpoint: Path | None = Field(
        SHIPPED_DP_AUTOENCODER,
        description="autoencoder checkpoint (default: the shipped DP pair); null = untrained weights from `seed`",
    )
    seed: int = Field(0, description="seed of the untrained weights when no checkpoint is given")
    dtype: Literal["float16", "uint8"] = Field("float16", description="latent dtype on the wire")
    compression: Literal["none", "zstd", "zstd-delta"] = Field(
        "none", description="lossless coding of the latent bytes; zstd-delta (row differences, then zstd) needs dtype uint8"
    )
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="torch runtime: autocast dtype of the encoder (bf16: CPUs with AMX/AVX512-BF16; fp16: CUDA); "
        "`pvad bench encoder` measures its speed and its latent error against fp32",
    )
    latent_noise: LatentNoiseConfig | None = Field(None, description="null = no inference-time noise")
    runtime: Literal["torch", "onnxruntime"] = Field(
        "torch", description="onnxruntime: run `exported` (TensorRT/CUDA provider when present, else CPU)"
    )
    exported: Path = Field(
        SHIPPED_DP_ENCODER_ONNX, description="encoder made by `pvad export` (.onnx), for runtime onnxruntime"
    )

    @model_validator(mode="after")
    def _consistent(self) -> "DpEncoderAnonymizer":
        if self.compression == "zstd-delta" and self.dtype != "uint8":
            raise ValueError("compression zstd-delta needs dtype: uint8 (row differences of float16 bytes do not compress)")
        if self.runtime == "onnxruntime" and self.precision != "fp32":
            raise ValueError("precision applies to runtime torch; for onnxruntime export an fp16 model (pvad export --fp16)")
        return self


class RegionAnonymizer(Section):
    """Shared by the image anonymizers of camera_client/anonymize/regions.py (LA3D): the transform
    goes on the people a detector finds on the camera (`region: person`) or on the whole frame."""

    region: Literal["person", "frame"] = "person"
    detector: DetectorConfig | None = Field(
        None, description="person detector on the camera; null = YOLO-Fastest 1.1 (shared data) when present, else HOG"
    )
    fallback: Literal["frame", "pass"] = Field(
        "frame", description="after `fallback_after` frames without a person (or before the first one): "
        "anonymize the whole frame, or nothing"
    )
    fallback_after: int = Field(
        10, ge=0, le=1_000_000, description="frames without a person during which the last boxes stay anonymized"
    )
    margin: float = Field(0.0, ge=0.0, le=1.0, description="grow each person box by this fraction on every side")
    jpeg_quality: int = Field(90, ge=10, le=100)

    @model_validator(mode="after")
    def _needs_detector(self) -> "RegionAnonymizer":
        if self.region == "person" and self.detector is not None and self.detector.backend == "none":
            raise ValueError("region: person needs a detector; detector.backend 'none' finds nobody")
        return self


class BlurAnonymizer(RegionAnonymizer):
    name: Literal["blur"] = "blur"
    region: Literal["person", "frame"] = "frame"
    kernel: int = Field(31, ge=3, le=255, description="Gaussian kernel size in pixels (odd)")
    sigma: float = Field(0.0, ge=0.0, le=255.0, description="Gaussian sigma; 0 = derived from the kernel (OpenCV)")

    @field_validator("kernel")
    @classmethod
    def _odd(cls, v: int) -> int:
        if v % 2 == 0:
            raise ValueError("must be odd")
        return v


class PixelateAnonymizer(RegionAnonymizer):
    name: Literal["pixelate"] = "pixelate"
    region: Literal["person", "frame"] = "frame"
    block: int = Field(16, ge=2, le=160, description="side of a pixel block in pixels")


class MaskAnonymizer(RegionAnonymizer):
    name: Literal["mask"] = "mask"
    color: tuple[int, int, int] = Field((0, 0, 0), description="BGR fill of each person box (LA3D: black)")


class EdgeAnonymizer(RegionAnonymizer):
    name: Literal["edge"] = "edge"
    low: int = Field(100, ge=0, le=1000, description="Canny hysteresis low threshold (LA3D: 100)")
    high: int = Field(200, ge=1, le=1000, description="Canny hysteresis high threshold (LA3D: 200)")

    @model_validator(mode="after")
    def _order(self) -> "EdgeAnonymizer":
        if self.low >= self.high:
            raise ValueError("low must be below high")
        return self


class AdaptiveBlurAnonymizer(RegionAnonymizer):
    """LA3D adaptive Gaussian blur: the kernel of each person grows with the box's share of the
    frame (camera_client.anonymize.regions.la3d_adaptive_size)."""

    name: Literal["adaptive-blur"] = "adaptive-blur"
    kernel: int = Field(13, ge=1, le=255, description="base kernel size k (LA3D: 13)")
    sigma: float = Field(10.0, ge=0.0, le=255.0, description="base Gaussian sigma (LA3D: 10)")
    alpha: float = Field(1.0, gt=0.0, le=10.0, description="alpha_mask_scale")
    alpha_dim: float = Field(0.5, gt=0.0, le=1.0, description="cap: kernel <= alpha_dim x box side")
    log_scale: bool = Field(True, description="r = alpha * max(ln(scale), 1); false: max(scale, 1)")


class AdaptiveFullBlurAnonymizer(AdaptiveBlurAnonymizer):
    """As adaptive-blur, and sigma grows with the box by the same factor (LA3D adaptive_sigma)."""

    name: Literal["adaptive-full-blur"] = "adaptive-full-blur"


class AdaptiveMaxBlurAnonymizer(RegionAnonymizer):
    """LA3D maximum blur: each box blurred with a kernel as large as the box itself."""

    name: Literal["adaptive-max-blur"] = "adaptive-max-blur"


class AdaptivePixelateAnonymizer(RegionAnonymizer):
    name: Literal["adaptive-pixelate"] = "adaptive-pixelate"
    block: int = Field(4, ge=1, le=160, description="base block side (LA3D downsize: 4)")
    alpha: float = Field(1.0, gt=0.0, le=10.0, description="alpha_mask_scale")
    alpha_dim: float = Field(0.5, gt=0.0, le=1.0, description="cap: block <= alpha_dim x box side")
    log_scale: bool = Field(True, description="r = alpha * max(ln(scale), 1); false: max(scale, 1)")


class AdaptiveMaxPixelateAnonymizer(RegionAnonymizer):
    """LA3D maximum pixelation: each box becomes one block of its mean colour."""

    name: Literal["adaptive-max-pixelate"] = "adaptive-max-pixelate"


class LearnedAnonymizer(Section):
    """A small encoder-decoder trained against a deobfuscator while a detector keeps working (T, D);
    the transformed frame goes out as JPEG (models/learned_anonymizer.py, models/train_anonymizer.py)."""

    name: Literal["learned"] = "learned"
    checkpoint: Path = Field(SHIPPED_LEARNED_ANONYMIZER, description="anonymizer checkpoint (default: the shipped one)")
    device: Literal["cpu", "cuda", "auto"] = "cpu"
    jpeg_quality: int = Field(90, ge=10, le=100)


class NoAnonymizer(Section):
    name: Literal["none"] = "none"
    jpeg_quality: int = Field(90, ge=10, le=100)


AnonymizerConfig = Annotated[
    Union[DpEncoderAnonymizer, BlurAnonymizer, PixelateAnonymizer, MaskAnonymizer, EdgeAnonymizer,
          AdaptiveBlurAnonymizer, AdaptiveFullBlurAnonymizer, AdaptiveMaxBlurAnonymizer, AdaptivePixelateAnonymizer,
          AdaptiveMaxPixelateAnonymizer, LearnedAnonymizer, NoAnonymizer],
    Field(discriminator="name"),
]
ANONYMIZER_NAMES = ("dp-encoder", "blur", "pixelate", "mask", "edge", "adaptive-blur", "adaptive-full-blur",
                    "adaptive-max-blur", "adaptive-pixelate", "adaptive-max-pixelate", "learned", "none")
AnonymizerName = Literal[ANONYMIZER_NAMES]  # a server's `accept` list: any of the names above


# --------------------------------------------------------------------------- detectors (server)


class UltralyticsDetector(Section):
    backend: Literal["ultralytics"] = "ultralytics"
    weights: str = Field("yolov8n.pt", description="weights file; a bare name is downloaded only when online")
    conf: float = Field(0.25, ge=0.0, le=1.0)
    imgsz: int = Field(320, ge=32, le=1280)


class DarknetDetector(Section):
    backend: Literal["darknet"] = "darknet"
    cfg: Path = Field(description="Darknet .cfg file (e.g. yolo-fastest-1.1.cfg)")
    weights: Path = Field(description="Darknet .weights file")
    conf: float = Field(0.25, ge=0.0, le=1.0)
    nms: float = Field(0.45, ge=0.0, le=1.0)
    input_size: int = Field(320, ge=32, le=1280, multiple_of=32, description="network input side, multiple of 32")
    runtime: Literal["opencv", "torch"] = Field(
        "opencv", description="opencv: OpenCV DNN, one frame at a time; torch: the same network in PyTorch "
        "(models/darknet.py), batched on the server's device and precision"
    )


class HogDetector(Section):
    backend: Literal["hog"] = "hog"
    hit_threshold: float = 0.0
    win_stride: int = Field(8, ge=1, le=64)
    scale: float = Field(1.05, gt=1.0, le=2.0)


class NoDetector(Section):
    backend: Literal["none"] = "none"


DetectorConfig = Annotated[
    Union[UltralyticsDetector, DarknetDetector, HogDetector, NoDetector],
    Field(discriminator="backend"),
]


# --------------------------------------------------------------------------- analysis (server)


class FlowConfig(Section):
    method: Literal["dis", "farneback"] = "dis"
    dis_preset: Literal["ultrafast", "fast", "medium"] = "medium"
    clip: float = Field(20.0, gt=0.0, description="flow magnitude (pixels) mapped to full scale")


class BackgroundConfig(Section):
    """Per-camera background model (OpenCV MOG2) for classifiers whose frame stream sees the foreground."""

    history: int = Field(500, ge=1, description="frames the model remembers (MOG2 history)")
    var_threshold: float = Field(16.0, gt=0.0, description="squared Mahalanobis distance that counts as foreground")


class ClassifierConfig(Section):
    checkpoint: Path | None = Field(None, description="trained classifier; null = untrained (said loudly)")
    backbone: str = Field("resnet50", description="registered backbone: resnet50, resnet18, mobilenet_v3_small, tiny")
    streams: Literal[1, 2] = Field(2, description="1S (frames) or 2S (frames + optical flow), P Table 1")
    bag: bool = Field(True, description="join the 80-class bag-of-objects (P §3.1)")
    hidden: int = Field(4096, ge=1, description="width of the two FC layers")
    pretrained: Literal["auto", "never"] = Field(
        "auto", description="auto: ImageNet weights when cached or downloadable; never: random init"
    )
    seed: int = 0


class BatchingConfig(Section):
    max_batch: int = Field(8, ge=1, le=256, description="frames from any cameras run through the networks together")
    max_wait_ms: float = Field(2.0, ge=0.0, le=1000.0, description="how long a batch waits to fill once it has a frame")
    warmup: bool = Field(
        True, description="run every batch size up to max_batch (above 16: the powers of two) once at start-up, so "
        "oneDNN/cuDNN set up their kernels before the first camera's frame instead of during it",
    )


class AnalysisConfig(Section):
    device: Literal["cpu", "cuda", "auto"] = "auto"
    threads: int | None = Field(None, ge=1, description="torch intra-op threads; null = all cores")
    precision: Literal["fp32", "bf16", "fp16"] = Field(
        "fp32", description="autocast for the networks: bf16 (CPUs with AMX/AVX512-BF16, GPUs), fp16 (GPU only)"
    )
    flow: FlowConfig = FlowConfig()
    classifier: ClassifierConfig = ClassifierConfig()
    detector: DetectorConfig = HogDetector()
    batching: BatchingConfig = BatchingConfig()

    @model_validator(mode="after")
    def _bag_needs_detector(self) -> "AnalysisConfig":
        if self.classifier.bag and self.detector.backend == "none":
            raise ValueError("classifier.bag is true but detector.backend is 'none'")
        return self


class ScoringConfig(Section):
    """Sigmoidal anomaly score parameters (DESIGN.md §5)."""

    tau: float = Field(0.5, gt=0.0, lt=1.0, description="sensibility threshold")
    nu: float = Field(2.0, gt=0.0, description="reactivity")
    lb: float = Field(-7.0, description="accumulator lower bound (also x_0)")
    ub: float = Field(7.0, description="accumulator upper bound")

    @model_validator(mode="after")
    def _bounds(self) -> "ScoringConfig":
        if not self.lb < self.ub:
            raise ValueError("lb must be below ub")
        return self


class DecoderConfig(Section):
    checkpoints: list[Path] = Field(
        default_factory=lambda: [SHIPPED_DP_AUTOENCODER, SHIPPED_AUTOENCODER],
        description="autoencoder checkpoints whose decoders this server holds (default: the shipped pairs)",
    )
    untrained_seeds: list[int] = Field(
        default_factory=list,
        description="also hold the untrained autoencoder made from each seed (development only)",
    )


class LimitsConfig(Section):
    max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024)
    max_image_width: int = Field(1920, ge=16)
    max_image_height: int = Field(1080, ge=16)
    max_streams_per_camera: int = Field(
        2, ge=1, le=64, description="concurrent Ingest streams per camera (2 lets a reconnect overlap a dying stream)"
    )
    max_subscribers: int = Field(64, ge=1, le=100_000)
    subscriber_queue: int = Field(256, ge=1, le=1_000_000, description="live score events buffered per subscriber")


class AccessConfig(Section):
    """Which cameras each subscriber (by certificate id) may follow."""

    subscribers: dict[str, list[str]] = Field(
        default_factory=dict, description="subscriber id -> camera ids it may see"
    )
    default: Literal["all", "none"] = Field("all", description="for subscribers not listed above")

    def cameras_for(self, subscriber: str) -> frozenset[str] | None:
        """Camera ids `subscriber` may see; None means every camera."""
        if subscriber in self.subscribers:
            return frozenset(self.subscribers[subscriber])
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
    metrics: MetricsConfig = MetricsConfig()
    mqtt: MqttConfig | None = Field(None, description="null = no MQTT bridge")
    drain_s: float = Field(5.0, ge=0.0, le=600.0, description="on SIGTERM, time to finish frames in analysis")


# --------------------------------------------------------------------------- camera


class CaptureConfig(Section):
    source: str = Field(description="video file path, device index (e.g. '0') or rtsp:// URL")
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


# --------------------------------------------------------------------------- subscriber


class SubscriberConfig(Section):
    server: str
    tls: ClientTLS
    camera_ids: list[str] = Field(default_factory=list)
    include_scores: bool = False
    after_event_id: int = Field(0, ge=0)


# --------------------------------------------------------------------------- demo


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
            classifier=ClassifierConfig(
                checkpoint=SHIPPED_CLASSIFIER, backbone="small_cnn", streams=2, bag=False, hidden=1024, pretrained="never"
            ),
            batching=BatchingConfig(max_batch=1, max_wait_ms=0.0),
        ),
        description="the shipped CPU classifier (trained on synthetic scenes; its card says what it was not trained on)",
    )
    scoring: ScoringConfig = ScoringConfig()


KINDS: dict[str, type[BaseModel] | str] = {
    "server": ServerConfig,
    "camera": CameraConfig,
    "subscriber": SubscriberConfig,
    "demo": DemoConfig,
    # Sections that live beside the code they configure, imported only when such a file is read.
    "train-autoencoder": "models.train_config:TrainAutoencoderConfig",
    "train-anonymizer": "models.train_anonymizer:TrainAnonymizerConfig",
    "train-classifier": "models.classifier_config:TrainClassifierConfig",
}


def config_model(kind: str) -> type[BaseModel]:
    model = KINDS[kind]
    if isinstance(model, str):
        import importlib

        module, _, name = model.partition(":")
        model = getattr(importlib.import_module(module), name)
    return model


def format_validation_error(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        path = ".".join(str(p) for p in e["loc"]) or "<root>"
        lines.append(f"{path}: {e['msg']}")
    return "\n".join(lines)


def validate_config(data: Any, model: type[BaseModel], *, origin: str = "config") -> BaseModel:
    try:
        return model.model_validate(data if data is not None else {})
    except ValidationError as err:
        raise ConfigError(f"{origin}: {err.error_count()} error(s)\n{format_validation_error(err)}") from None


def guess_kind(data: Any) -> str:
    """Best guess of which kind of file this is, from a `kind:` key or the keys present."""
    if isinstance(data, dict):
        if "kind" in data:
            return str(data["kind"])
        if "camera_id" in data and "capture" in data:
            return "camera"
        if "listen" in data or "decoders" in data:
            return "server"
        if "workdir" in data or "source" in data:
            return "demo"
        if "include_scores" in data:
            return "subscriber"
    raise ConfigError(f"cannot tell what kind of config this is: add `kind:` ({'|'.join(KINDS)})")


def load_config(path: str | Path, kind: str | None = None) -> BaseModel:
    """Read and validate a YAML config (relative paths in it are relative to the working directory)."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: not valid YAML: {err}") from None
    if data is not None and not isinstance(data, dict):
        raise ConfigError(f"{path}: the top level must be a mapping")
    data = dict(data or {})
    file_kind = data.pop("kind", None)
    kind = kind or file_kind or guess_kind(data)
    if kind not in KINDS:
        raise ConfigError(f"{path}: kind: unknown kind {kind!r}; known: {', '.join(KINDS)}")
    return validate_config(data, config_model(kind), origin=str(path))
