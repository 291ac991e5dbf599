import datetime

from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class DType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    DTYPE_UNSPECIFIED: _ClassVar[DType]
    DTYPE_FLOAT16: _ClassVar[DType]
    DTYPE_UINT8: _ClassVar[DType]

class Compression(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    COMPRESSION_NONE: _ClassVar[Compression]
    COMPRESSION_ZSTD: _ClassVar[Compression]
    COMPRESSION_ZSTD_ROW_DELTA: _ClassVar[Compression]

class CameraPhase(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    PHASE_UNSPECIFIED: _ClassVar[CameraPhase]
    LEARNING: _ClassVar[CameraPhase]
    SCORING: _ClassVar[CameraPhase]

class Outcome(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    OUTCOME_UNSPECIFIED: _ClassVar[Outcome]
    ACCEPTED: _ClassVar[Outcome]
    REJECTED: _ClassVar[Outcome]
    DUPLICATE: _ClassVar[Outcome]

class EventKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    EVENT_KIND_UNSPECIFIED: _ClassVar[EventKind]
    ALARM_RAISED: _ClassVar[EventKind]
    ALARM_CLEARED: _ClassVar[EventKind]
    SCORE: _ClassVar[EventKind]
DTYPE_UNSPECIFIED: DType
DTYPE_FLOAT16: DType
DTYPE_UINT8: DType
COMPRESSION_NONE: Compression
COMPRESSION_ZSTD: Compression
COMPRESSION_ZSTD_ROW_DELTA: Compression
PHASE_UNSPECIFIED: CameraPhase
LEARNING: CameraPhase
SCORING: CameraPhase
OUTCOME_UNSPECIFIED: Outcome
ACCEPTED: Outcome
REJECTED: Outcome
DUPLICATE: Outcome
EVENT_KIND_UNSPECIFIED: EventKind
ALARM_RAISED: EventKind
ALARM_CLEARED: EventKind
SCORE: EventKind

class Latent(_message.Message):
    __slots__ = ("encoder_id", "shape", "dtype", "scale", "zero_point", "data", "compression")
    ENCODER_ID_FIELD_NUMBER: _ClassVar[int]
    SHAPE_FIELD_NUMBER: _ClassVar[int]
    DTYPE_FIELD_NUMBER: _ClassVar[int]
    SCALE_FIELD_NUMBER: _ClassVar[int]
    ZERO_POINT_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    COMPRESSION_FIELD_NUMBER: _ClassVar[int]
    encoder_id: str
    shape: _containers.RepeatedScalarFieldContainer[int]
    dtype: DType
    scale: float
    zero_point: int
    data: bytes
    compression: Compression
    def __init__(self, encoder_id: _Optional[str] = ..., shape: _Optional[_Iterable[int]] = ..., dtype: _Optional[_Union[DType, str]] = ..., scale: _Optional[float] = ..., zero_point: _Optional[int] = ..., data: _Optional[bytes] = ..., compression: _Optional[_Union[Compression, str]] = ...) -> None: ...

class Image(_message.Message):
    __slots__ = ("anonymizer", "jpeg")
    ANONYMIZER_FIELD_NUMBER: _ClassVar[int]
    JPEG_FIELD_NUMBER: _ClassVar[int]
    anonymizer: str
    jpeg: bytes
    def __init__(self, anonymizer: _Optional[str] = ..., jpeg: _Optional[bytes] = ...) -> None: ...

class Frame(_message.Message):
    __slots__ = ("camera_id", "seq", "capture_time", "discontinuity", "latent", "image")
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    DISCONTINUITY_FIELD_NUMBER: _ClassVar[int]
    LATENT_FIELD_NUMBER: _ClassVar[int]
    IMAGE_FIELD_NUMBER: _ClassVar[int]
    camera_id: str
    seq: int
    capture_time: _timestamp_pb2.Timestamp
    discontinuity: bool
    latent: Latent
    image: Image
    def __init__(self, camera_id: _Optional[str] = ..., seq: _Optional[int] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., discontinuity: _Optional[bool] = ..., latent: _Optional[_Union[Latent, _Mapping]] = ..., image: _Optional[_Union[Image, _Mapping]] = ...) -> None: ...

class FrameAck(_message.Message):
    __slots__ = ("seq", "outcome", "status_code", "message", "confidence", "score", "alarm", "server_ms", "phase", "normality_score", "classifier_confidence")
    SEQ_FIELD_NUMBER: _ClassVar[int]
    OUTCOME_FIELD_NUMBER: _ClassVar[int]
    STATUS_CODE_FIELD_NUMBER: _ClassVar[int]
    MESSAGE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    ALARM_FIELD_NUMBER: _ClassVar[int]
    SERVER_MS_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    NORMALITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    CLASSIFIER_CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    seq: int
    outcome: Outcome
    status_code: int
    message: str
    confidence: float
    score: float
    alarm: bool
    server_ms: float
    phase: CameraPhase
    normality_score: float
    classifier_confidence: float
    def __init__(self, seq: _Optional[int] = ..., outcome: _Optional[_Union[Outcome, str]] = ..., status_code: _Optional[int] = ..., message: _Optional[str] = ..., confidence: _Optional[float] = ..., score: _Optional[float] = ..., alarm: _Optional[bool] = ..., server_ms: _Optional[float] = ..., phase: _Optional[_Union[CameraPhase, str]] = ..., normality_score: _Optional[float] = ..., classifier_confidence: _Optional[float] = ...) -> None: ...

class SubscribeRequest(_message.Message):
    __slots__ = ("camera_ids", "after_event_id", "include_scores")
    CAMERA_IDS_FIELD_NUMBER: _ClassVar[int]
    AFTER_EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    INCLUDE_SCORES_FIELD_NUMBER: _ClassVar[int]
    camera_ids: _containers.RepeatedScalarFieldContainer[str]
    after_event_id: int
    include_scores: bool
    def __init__(self, camera_ids: _Optional[_Iterable[str]] = ..., after_event_id: _Optional[int] = ..., include_scores: _Optional[bool] = ...) -> None: ...

class AlarmEvent(_message.Message):
    __slots__ = ("event_id", "camera_id", "kind", "seq", "score", "confidence", "time", "capture_time", "phase", "normality_score")
    EVENT_ID_FIELD_NUMBER: _ClassVar[int]
    CAMERA_ID_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    SEQ_FIELD_NUMBER: _ClassVar[int]
    SCORE_FIELD_NUMBER: _ClassVar[int]
    CONFIDENCE_FIELD_NUMBER: _ClassVar[int]
    TIME_FIELD_NUMBER: _ClassVar[int]
    CAPTURE_TIME_FIELD_NUMBER: _ClassVar[int]
    PHASE_FIELD_NUMBER: _ClassVar[int]
    NORMALITY_SCORE_FIELD_NUMBER: _ClassVar[int]
    event_id: int
    camera_id: str
    kind: EventKind
    seq: int
    score: float
    confidence: float
    time: _timestamp_pb2.Timestamp
    capture_time: _timestamp_pb2.Timestamp
    phase: CameraPhase
    normality_score: float
    def __init__(self, event_id: _Optional[int] = ..., camera_id: _Optional[str] = ..., kind: _Optional[_Union[EventKind, str]] = ..., seq: _Optional[int] = ..., score: _Optional[float] = ..., confidence: _Optional[float] = ..., time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., capture_time: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., phase: _Optional[_Union[CameraPhase, str]] = ..., normality_score: _Optional[float] = ...) -> None: ...
