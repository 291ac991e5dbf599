"""Domain errors. Each carries the gRPC status code it maps to, so the server maps them in one place."""

from __future__ import annotations

import grpc


class PvadError(Exception):
    """Base of every error pvad raises on purpose."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL


class ConfigError(PvadError):
    """A configuration file or value is invalid."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class InvalidFrame(PvadError):
    """A frame's payload is malformed: wrong shape, dtype, size, NaN, corrupt JPEG..."""

    code = grpc.StatusCode.INVALID_ARGUMENT


class UnknownEncoder(PvadError):
    """A latent names an encoder id the server has no decoder for."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class PolicyRefused(PvadError):
    """The payload kind or anonymizer is not in the server's accept list."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class IdentityMismatch(PvadError):
    """The frame's camera id is not the identity in the client certificate."""

    code = grpc.StatusCode.PERMISSION_DENIED


class ModelLoadError(PvadError):
    """A model or weights file could not be loaded; the message says what to fix."""

    code = grpc.StatusCode.FAILED_PRECONDITION


class SourceError(PvadError):
    """A capture source could not be opened or read."""

    code = grpc.StatusCode.UNAVAILABLE


_STATUS_BY_NUMBER = {c.value[0]: c for c in grpc.StatusCode}


def status_name(code: int) -> str:
    """Name of a numeric gRPC status code (as carried in a FrameAck), e.g. 3 -> 'INVALID_ARGUMENT'."""
    status = _STATUS_BY_NUMBER.get(code)
    return status.name if status else f"UNKNOWN_STATUS_{code}"


class LearningRefused(PvadError):
    """The server did not fit a camera's normality model from a `pvad learn` stream."""

    code = grpc.StatusCode.FAILED_PRECONDITION
