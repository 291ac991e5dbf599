"""Prometheus metrics of one server (its own registry, so several servers can live in one process)."""

from __future__ import annotations

import logging

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    start_http_server,
)

log = logging.getLogger(__name__)

_STAGE_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ServerMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.frames_received = Counter("pvad_frames_received", "Frames received", registry=r)
        self.frames_accepted = Counter("pvad_frames_accepted", "Frames analysed and scored", registry=r)
        self.frames_duplicate = Counter("pvad_frames_duplicate", "Frames received again after being scored", registry=r)
        self.frames_rejected = Counter("pvad_frames_rejected", "Frames refused, by gRPC status", ["reason"], registry=r)
        self.stage_seconds = Histogram(
            "pvad_stage_seconds", "Time per frame in each pipeline stage", ["stage"], buckets=_STAGE_BUCKETS, registry=r
        )
        self.frame_seconds = Histogram(
            "pvad_frame_seconds", "Server time per accepted frame, receipt to ack", buckets=_STAGE_BUCKETS, registry=r
        )
        self.streams = Gauge("pvad_camera_streams", "Open Ingest streams", registry=r)
        self.subscribers = Gauge("pvad_subscribers", "Open Alarms subscriptions", registry=r)
        self.alarms = Counter("pvad_alarm_events", "Alarm events persisted and published", ["kind"], registry=r)
        self.scores_dropped = Counter("pvad_score_events_dropped", "Score events dropped for slow subscribers", registry=r)
        self.streams_aged = Counter(
            "pvad_streams_aged", "Camera streams ended cleanly at limits.max_stream_age_s (the camera reconnects)", registry=r)
        self.camera_cold_starts = Counter(
            "pvad_camera_cold_starts",
            "Cameras that arrived with stored state (moved here, or this server restarted): flow and background start cold",
            registry=r)
        self.frames_held_cold = Counter(
            "pvad_frames_held_cold", "Frames whose SAS was held while a cold start's flow and background warm up", registry=r)
        self.batch_size = Histogram("pvad_batch_size", "Frames per network batch", buckets=(1, 2, 4, 8, 16, 32, 64), registry=r)

    def serve(self, listen: str) -> int:
        host, _, port = listen.rpartition(":")
        server, _thread = start_http_server(int(port), addr=host or "0.0.0.0", registry=self.registry)
        bound = server.server_address[1]
        log.info("Prometheus metrics on http://%s:%d/metrics", host or "0.0.0.0", bound)
        return bound
