"""Prometheus metrics of the dashboard, on the server's own registry (``/metrics`` of ``metrics.listen``)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0)


class WebMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        r = registry
        self.requests = Counter("pvad_web_requests", "Dashboard HTTP requests, by route and status",
                                ["route", "status"], registry=r)
        self.request_seconds = Histogram("pvad_web_request_seconds", "Dashboard request time (event streams left out)",
                                         ["route"], buckets=_BUCKETS, registry=r)
        self.streams = Gauge("pvad_web_streams", "Open dashboard event streams (browser tabs)", registry=r)
        self.events_sent = Counter("pvad_web_events_sent", "Events sent to dashboard tabs, by type", ["type"], registry=r)
        self.events_dropped = Counter("pvad_web_score_events_dropped", "Score events dropped for slow tabs", registry=r)
        self.logins = Counter("pvad_web_logins", "Dashboard logins, by outcome", ["outcome"], registry=r)
        self.acks = Counter("pvad_web_acks", "Alarms acknowledged on the dashboard", registry=r)
        self.views = Counter("pvad_web_views", "Live view images, by outcome (served, forbidden, none-anonymizer, "
                             "no-frame)", ["outcome"], registry=r)
