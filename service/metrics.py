"""Prometheus metrics, in a registry of the app's own (several apps can live in one process)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST


class Metrics:
    content_type = CONTENT_TYPE_LATEST

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "pos_http_requests_total",
            "HTTP requests answered, by route template and status.",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "pos_http_request_duration_seconds",
            "Time to answer an HTTP request, by route template.",
            ["method", "route"],
            registry=self.registry,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        )
        self.bookings = Counter(
            "pos_booking_transitions_total",
            "Booking state changes, by the state entered.",
            ["status"],
            registry=self.registry,
        )
        self.searches = Counter(
            "pos_availability_searches_total",
            "Availability searches, by whether any site matched.",
            ["matched"],
            registry=self.registry,
        )

        self.disconnects = Counter(
            "pos_http_client_disconnects_total",
            "Requests whose client went away before the body arrived (not counted as answered).",
            ["method", "route"],
            registry=self.registry,
        )
        self.limited = Counter(
            "pos_limit_refusals_total",
            "Requests refused with 429, by limit: holds_per_key, holds_per_force (live holds),"
            " searches, writes (requests per key per minute).",
            ["limit"],
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
