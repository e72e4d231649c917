"""Prometheus metrics, in a registry of the app's own (several apps can live in one process)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.registry import Collector


class PoolGauges(Collector):
    """The database pool, read at scrape time: connections open, in use, the most allowed, and
    requests waiting for one (a pool that starves shows here before it shows as latency)."""

    def __init__(self, read: Callable[[], dict[str, int] | None]) -> None:
        self.read = read

    def collect(self) -> Iterator[GaugeMetricFamily]:
        state = self.read()
        if state is None:
            return
        for name, value in state.items():
            yield GaugeMetricFamily(
                f"pos_db_pool_{name}", f"Database pool: {name.replace('_', ' ')}.", value=value
            )


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
            "Time to answer an HTTP request, by route template and status.",
            ["method", "route", "status"],
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
        self.holds = Counter(
            "pos_hold_attempts_total",
            "Hold requests, by outcome: held, no_capacity, capped, refused (another 4xx).",
            ["outcome"],
            registry=self.registry,
        )
        self.sweeps = Counter(
            "pos_expiry_sweeps_total",
            "Runs of the expiry job, by outcome: ok or failed.",
            ["outcome"],
            registry=self.registry,
        )
        self.swept = Counter(
            "pos_expiry_swept_total",
            "Holds and pending requests the expiry job wrote off.",
            registry=self.registry,
        )
        self.limited = Counter(
            "pos_limit_refusals_total",
            "Requests refused with 429, by limit: holds_per_key, holds_per_force (live holds),"
            " searches, writes, feed (requests per key per minute), long_polls (parked at once"
            " per key).",
            ["limit"],
            registry=self.registry,
        )

        self.feed_reads = Counter(
            "pos_event_feed_reads_total",
            "Database reads of the event feed for GET /v1/events (requests asking the same read"
            " at once share one), by cause: request (a request's first read), woken (long polls"
            " woken by a change in their scope), fallback (read again on a timer while the"
            " event listener is down).",
            ["cause"],
            registry=self.registry,
        )
        self.feed_waiting = Gauge(
            "pos_event_feed_waiting",
            "Long polls of GET /v1/events waiting now in this process.",
            registry=self.registry,
        )

    def observe_request(self, method: str, route: str, status: int, seconds: float) -> None:
        self.requests.labels(method, route, str(status)).inc()
        self.latency.labels(method, route, str(status)).observe(seconds)

    def watch_pool(self, read: Callable[[], dict[str, int] | None]) -> None:
        self.registry.register(PoolGauges(read))

    def render(self) -> bytes:
        return generate_latest(self.registry)
