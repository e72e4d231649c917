"""Service configuration, read from the environment once and validated at start."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, Self
from urllib.parse import urlsplit

from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    """Every knob the service has; README.md lists them with their defaults."""

    model_config = SettingsConfigDict(frozen=True, extra="ignore", case_sensitive=False)

    environment: Literal["development", "production"] = "development"
    database_url: str | None = None
    data_dir: Path = Path(".data")
    host: str = "127.0.0.1"
    # 0: any free port (the one taken is printed at start; the tests use it).
    port: int = Field(default=8080, ge=0, le=65535)
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "json", "console"] = "auto"
    db_pool_min: int = Field(default=1, ge=0, le=100)
    db_pool_max: int = Field(default=10, ge=1, le=200)
    shutdown_timeout_seconds: float = Field(default=30.0, gt=0, le=600)
    body_timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    seed_demo: bool = True

    hold_ttl_seconds: int = Field(default=900, ge=10, le=86_400)
    provider_response_seconds: int = Field(default=1800, ge=10, le=7 * 86_400)
    no_show_grace_seconds: int = Field(default=7200, ge=0, le=7 * 86_400)
    sweep_interval_seconds: float = Field(default=5.0, gt=0, le=3600)
    idempotency_ttl_hours: int = Field(default=24, ge=24, le=24 * 30)
    # 0 (development only) erases a stay at the first erasure round after it ends: a way to
    # watch erasure happen (with a short ERASURE_INTERVAL_SECONDS) without editing the database.
    personal_data_retention_days: int = Field(default=90, ge=0, le=3650)
    # How often the erasure job looks for stays past the retention period (one replica at a
    # time does it).
    erasure_interval_seconds: float = Field(default=3600.0, gt=0, le=7 * 86_400)
    # Bookings erased per transaction (README, "Operations": how the default was measured).
    erasure_batch_size: int = Field(default=1000, ge=1, le=50_000)
    # Capacity a provider has neither changed nor confirmed for this long is stale: shown so in
    # searches, ranked after fresh sites, and announced once as site.capacity_stale.
    stale_after_hours: float = Field(default=8.0, gt=0, le=24 * 30)
    staleness_interval_seconds: float = Field(default=60.0, gt=0, le=3600)
    # Live (unconfirmed, unexpired) holds one API key, and one force across its keys, may have
    # at once: far above a busy custody suite, far below a site's worth of beds per key.
    hold_cap_per_key: int = Field(default=5, ge=1, le=10_000)
    hold_cap_per_force: int = Field(default=20, ge=1, le=100_000)
    # Bookings not yet arrived (held, pending and confirmed together) one key, and one force
    # across its keys, may have: a custody suite places a few people a night, so one key that
    # has ten people on their way is either a mistake or someone emptying the scheme.
    booking_cap_per_key: int = Field(default=10, ge=1, le=10_000)
    booking_cap_per_force: int = Field(default=60, ge=1, le=100_000)
    # How far ahead a stay may start: a Place of Safety is for tonight, not next month.
    max_lead_hours: float = Field(default=48.0, gt=0, le=90 * 24)
    # An officer is shown a site's address and phone only once the booking is confirmed and
    # its stay starts within this many hours (the person is about to travel).
    address_lead_hours: float = Field(default=4.0, gt=0, le=7 * 24)
    # Distinct sites whose address one key, and one force, may be shown in a rolling 24 hours:
    # far above a custody suite's night, far below the directory.
    disclosure_budget_per_key: int = Field(default=6, ge=1, le=10_000)
    disclosure_budget_per_force: int = Field(default=40, ge=1, le=100_000)
    # A booking cancelled within this many minutes of its address being shown is a
    # "disclosure without placement" (alerted, reported).
    disclosure_without_placement_minutes: float = Field(default=120.0, gt=0, le=7 * 24 * 60)
    # A key refused by limits (429) this many times within an hour raises a security alert.
    alert_refusals_per_hour: int = Field(default=20, ge=1, le=1_000_000)
    # Requests per API key per minute, per replica (0: no limit); a burst of the whole minute's
    # budget is allowed, then requests are spaced evenly.
    rate_limit_searches_per_minute: int = Field(default=600, ge=0, le=1_000_000)
    rate_limit_writes_per_minute: int = Field(default=300, ge=0, le=1_000_000)
    # Reads of GET /v1/events (a budget of its own: a reader catching up must not spend its
    # key's searches). A reader following next_cursor with `wait` reads once per batch.
    rate_limit_feed_reads_per_minute: int = Field(default=120, ge=0, le=1_000_000)
    # Long polls (GET /v1/events with `wait`) one API key may have parked at once, per replica:
    # each holds a socket and wakes with its scope's writes.
    long_polls_per_key: int = Field(default=5, ge=1, le=10_000)

    # Webhooks (issue 9). Private, loopback, link-local and metadata addresses are refused as
    # webhook targets unless this is set (development and tests only: refused in production).
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    # Retries back off exponentially from the base to the cap, with full jitter, until the
    # event has been tried for WEBHOOK_GIVE_UP_HOURS (at least 24).
    webhook_retry_base_seconds: float = Field(default=5.0, gt=0, le=3600)
    webhook_retry_max_seconds: float = Field(default=3600.0, gt=0, le=86_400)
    webhook_give_up_hours: float = Field(default=25.0, ge=24, le=24 * 14)
    # How long a dispatcher's claim on a subscription lasts: longer than one attempt, so a
    # killed process's delivery is taken up again soon after.
    webhook_lease_seconds: float = Field(default=60.0, gt=0, le=3600)
    dispatch_interval_seconds: float = Field(default=1.0, gt=0, le=3600)
    webhook_delivery_retention_days: int = Field(default=30, ge=1, le=3650)

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        # Not pydantic's PostgresDsn: it refuses Unix-socket DSNs (`postgresql://u@/db?host=/run`).
        if value is None or value == "":
            return None
        if urlsplit(value).scheme not in ("postgres", "postgresql"):
            raise ValueError("must be a postgresql:// URL")
        return value

    @model_validator(mode="after")
    def _refuse_unsafe_production(self) -> Self:
        if self.db_pool_min > self.db_pool_max:
            raise ValueError("DB_POOL_MIN must not exceed DB_POOL_MAX")
        if self.webhook_retry_base_seconds > self.webhook_retry_max_seconds:
            raise ValueError("WEBHOOK_RETRY_BASE_SECONDS must not exceed WEBHOOK_RETRY_MAX_SECONDS")
        if self.webhook_lease_seconds <= self.webhook_timeout_seconds:
            raise ValueError("WEBHOOK_LEASE_SECONDS must exceed WEBHOOK_TIMEOUT_SECONDS")
        if self.hold_cap_per_key > self.hold_cap_per_force:
            raise ValueError("HOLD_CAP_PER_KEY must not exceed HOLD_CAP_PER_FORCE")
        if self.booking_cap_per_key > self.booking_cap_per_force:
            raise ValueError("BOOKING_CAP_PER_KEY must not exceed BOOKING_CAP_PER_FORCE")
        if self.hold_cap_per_key > self.booking_cap_per_key:
            raise ValueError("HOLD_CAP_PER_KEY must not exceed BOOKING_CAP_PER_KEY")
        if self.disclosure_budget_per_key > self.disclosure_budget_per_force:
            raise ValueError(
                "DISCLOSURE_BUDGET_PER_KEY must not exceed DISCLOSURE_BUDGET_PER_FORCE"
            )
        if self.environment == "production":
            if self.database_url is None:
                raise ValueError(
                    "DATABASE_URL is required in production "
                    "(the embedded PostgreSQL is for development and tests)"
                )
            if self.webhook_allow_private:
                raise ValueError(
                    "WEBHOOK_ALLOW_PRIVATE must be false in production: webhooks must not reach "
                    "the service's own network"
                )
            if self.personal_data_retention_days < 1:
                raise ValueError(
                    "PERSONAL_DATA_RETENTION_DAYS must be at least 1 in production (0, erasure "
                    "as soon as a stay ends, is for watching it in development)"
                )
            if self.seed_demo:
                raise ValueError(
                    "SEED_DEMO must be false in production: demo keys are published in the README"
                )
        return self


def load_settings(**overrides: object) -> Settings:
    """Read Settings from the environment; overrides win (used by the CLI and tests)."""
    return Settings(**overrides)  # type: ignore[arg-type]
