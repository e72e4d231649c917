"""The webhook dispatcher: a background job (an aiohttp cleanup_ctx, started with the other
jobs in `pos serve`) that delivers each subscription's events, in feed order, at least once.

Each tick it leases the due subscriptions (FOR UPDATE SKIP LOCKED: replicas take different
ones) and commits the leases; then, for each, it finds the next event, POSTs it signed the
Standard Webhooks way, and records the attempt and moves the subscription on in one
transaction. A subscription's next event is sent only once the previous one is delivered or
given up. A process killed mid-delivery records nothing: its lease lapses and another process
(or the same one, restarted) sends the event again, so receivers dedupe by `webhook-id`.

The sender refuses private, loopback, link-local and other non-public addresses when it
connects, not only when the subscription is made (a host's DNS may change in between), unless
WEBHOOK_ALLOW_PRIVATE is set. Redirects are not followed: a 3xx is a failed attempt."""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import math
import secrets
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import aiohttp
import structlog
from aiohttp import web
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from standardwebhooks.webhooks import Webhook

from service import keys
from service.domain.webhooks import RetryPolicy, host_and_port, is_ip_literal, refused_address
from service.settings import Settings
from service.stopping import stop_task
from service.usecases import webhooks as usecase
from service.usecases.uow import SYSTEM, Units, UseCase
from service.usecases.webhooks import Attempt, Claimed, PendingEvent

log = structlog.get_logger(__name__)

# Subscriptions one claim leases (and serves at once); events one subscription may be sent
# under one claim before the others get their turn.
CLAIM_BATCH = 50
EVENTS_PER_CLAIM = 100
# Delivery-log rows deleted per statement, and how often the retention sweep runs.
FORGET_BATCH = 1000
FORGET_EVERY_SECONDS = 60.0
# What an error in the delivery log may hold.
MAX_ERROR = 500

USER_AGENT = "places-of-safety-webhooks/1"

# The backoff's jitter: from the operating system, so replicas do not draw alike.
_jitter = secrets.SystemRandom().random


@dataclass(frozen=True)
class DispatchConfig:
    lease: timedelta
    timeout_seconds: float
    policy: RetryPolicy
    allow_private: bool
    retention: timedelta

    @classmethod
    def from_settings(cls, settings: Settings) -> DispatchConfig:
        return cls(
            lease=timedelta(seconds=settings.webhook_lease_seconds),
            timeout_seconds=settings.webhook_timeout_seconds,
            policy=RetryPolicy(
                base=timedelta(seconds=settings.webhook_retry_base_seconds),
                cap=timedelta(seconds=settings.webhook_retry_max_seconds),
                give_up_after=timedelta(hours=settings.webhook_give_up_hours),
            ),
            allow_private=settings.webhook_allow_private,
            retention=timedelta(days=settings.webhook_delivery_retention_days),
        )


# --- sending ------------------------------------------------------------------------------------


class PublicOnlyResolver(AbstractResolver):
    """Resolves as the system does, keeping only public addresses: the address checked is the
    address connected to, so a host whose DNS answer changes after the subscription was made
    (or between two lookups) still cannot reach the service's own network."""

    def __init__(self, inner: AbstractResolver | None = None) -> None:
        self._inner = inner or DefaultResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        public = [r for r in found if refused_address(r["host"].split("%", 1)[0]) is None]
        if not public:
            # With an errno, so aiohttp's connection error shows the reason.
            raise OSError(errno.EACCES, f"{host} resolves only to addresses webhooks may not reach")
        return public

    async def close(self) -> None:
        await self._inner.close()


def new_session(config: DispatchConfig) -> aiohttp.ClientSession:
    """The dispatcher's HTTP client: no proxy from the environment, no cookies, and (unless
    private targets are allowed) only public addresses."""
    resolver = None if config.allow_private else PublicOnlyResolver()
    return aiohttp.ClientSession(
        connector=aiohttp.TCPConnector(resolver=resolver, limit=CLAIM_BATCH),
        cookie_jar=aiohttp.DummyCookieJar(),
        trust_env=False,
    )


def signed_request(
    secret: str, event: PendingEvent, sent_at: datetime
) -> tuple[bytes, dict[str, str]]:
    """The body and headers of a delivery: the event as JSON, signed with the subscription's
    secret over `webhook-id.webhook-timestamp.body` (Standard Webhooks)."""
    # The feed's JSON of the event, as json.dumps writes it (non-ASCII escaped).
    body = json.dumps(event.body.model_dump(mode="json"), separators=(",", ":"))
    message_id = event.public_id
    headers = {
        "content-type": "application/json",
        "user-agent": USER_AGENT,
        "webhook-id": message_id,
        "webhook-timestamp": str(math.floor(sent_at.timestamp())),
        "webhook-signature": Webhook(secret).sign(message_id, sent_at, body),
    }
    return body.encode(), headers


def _error_text(exc: BaseException) -> str:
    text = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
    return text[:MAX_ERROR]


Sender = Callable[[Claimed, PendingEvent], Awaitable[Attempt]]


def http_sender(session: aiohttp.ClientSession, config: DispatchConfig) -> Sender:
    """POST one event to one subscription's URL, within WEBHOOK_TIMEOUT_SECONDS."""

    async def send(sub: Claimed, event: PendingEvent) -> Attempt:
        # Signed with the wall clock, not the service's: receivers hold the timestamp to theirs.
        body, headers = signed_request(sub.secret, event, datetime.now(UTC))
        host, _ = host_and_port(sub.url)
        if not config.allow_private and is_ip_literal(host):
            why = refused_address(host)
            if why is not None:
                return Attempt(None, 0, f"refused: the URL names {why}")
        started = time.monotonic()
        status: int | None = None
        error: str | None = None
        try:
            async with session.post(
                sub.url,
                data=body,
                headers=headers,
                allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=config.timeout_seconds),
            ) as response:
                status = response.status
                if 300 <= status < 400:
                    error = "redirects are not followed"
        except TimeoutError:
            error = f"no answer within {config.timeout_seconds:g} s"
        except (aiohttp.ClientError, OSError, ValueError) as exc:
            error = _error_text(exc)
        elapsed = max(0, round((time.monotonic() - started) * 1000))
        return Attempt(status, elapsed, error)

    return send


# --- the loop -----------------------------------------------------------------------------------


async def _serve(
    units: Units,
    send: Sender,
    config: DispatchConfig,
    random: Callable[[], float],
    sub: Claimed,
    db_slots: asyncio.Semaphore,
    stop: asyncio.Event | None = None,
) -> int:
    """Send a claimed subscription's pending events in order, until one fails, none is left,
    it has had its share, or the service is stopping; returns the attempts made."""
    made = 0
    for _ in range(EVENTS_PER_CLAIM):
        if stop is not None and stop.is_set():
            break
        async with db_slots:
            found = await units.read(SYSTEM, UseCase(usecase.next_event, sub))
            event = found.event
            if event is None:
                await units.write(SYSTEM, UseCase(usecase.release, sub, found.position))
                return made
        attempt = await send(sub, event)
        made += 1
        async with db_slots:
            settled = await units.write(
                SYSTEM,
                UseCase(usecase.settle, sub, event, attempt, config.policy, config.lease, random),
            )
        if settled is None:
            log.warning("webhook lease lapsed during a delivery", webhook_id=str(sub.id))
            return made
        log.info(
            "webhook attempt",
            webhook_id=str(sub.id),
            event_id=event.public_id,
            outcome=str(settled.verdict.outcome),
            status_code=attempt.status_code,
            duration_ms=attempt.duration_ms,
        )
        if settled.lease is None:
            return made
        sub = replace(
            sub, position=event.position, attempts=0, first_attempt_at=None, lease=settled.lease
        )
    async with db_slots:
        await units.write(SYSTEM, UseCase(usecase.release, sub))
    return made


@dataclass(frozen=True)
class Round:
    claimed: int
    attempts: int


async def dispatch_once(
    units: Units,
    send: Sender,
    config: DispatchConfig,
    random: Callable[[], float] = _jitter,
    stop: asyncio.Event | None = None,
) -> Round:
    """One round: lease the due subscriptions (committed before anything is sent), then serve
    them all at once. A subscription whose serving fails (the database went away) keeps its
    lease until it lapses, and is served again after that."""
    claimed = await units.write(SYSTEM, UseCase(usecase.claim_due, config.lease, CLAIM_BATCH))
    if not claimed:
        return Round(0, 0)
    # Deliveries run side by side, but take at most half the pool between them: requests keep
    # the other half however many subscriptions are due.
    db_slots = asyncio.Semaphore(max(1, units.pool.get_max_size() // 2))
    results = await asyncio.gather(
        *(_serve(units, send, config, random, sub, db_slots, stop) for sub in claimed),
        return_exceptions=True,
    )
    attempts = 0
    for sub, result in zip(claimed, results, strict=True):
        if isinstance(result, BaseException):
            if isinstance(result, asyncio.CancelledError):
                raise result
            log.error("webhook dispatch failed", webhook_id=str(sub.id), exc_info=result)
        else:
            attempts += result
    return Round(len(claimed), attempts)


async def forget_old_deliveries(
    units: Units, retention: timedelta, stop: asyncio.Event | None = None
) -> int:
    """Delete the delivery log's rows older than the retention, a batch per transaction,
    giving the event loop a turn between batches; stops after a batch once `stop` is set."""
    total = 0
    while True:
        done = await units.write(
            SYSTEM, UseCase(usecase.forget_deliveries, retention, FORGET_BATCH)
        )
        total += done
        if done < FORGET_BATCH or (stop is not None and stop.is_set()):
            return total
        await asyncio.sleep(0)


async def dispatch_job(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: a round as soon as events commit, or every DISPATCH_INTERVAL_SECONDS (at
    once again after a full claim, so a backlog drains without waiting); the delivery log's
    retention once a minute. Registered after the event listener, which it waits on."""
    settings = app[keys.SETTINGS]
    config = DispatchConfig.from_settings(settings)
    interval = settings.dispatch_interval_seconds
    session = new_session(config)
    send = http_sender(session, config)
    listener = app[keys.EVENT_LISTENER]
    shutdown = app[keys.SHUTDOWN]
    stop = shutdown.requested

    async def loop() -> None:
        forgotten_at = -math.inf
        while not stop.is_set():
            units = app[keys.UNITS]
            # Taken before the round: an event committing during it wakes the next at once.
            seen = listener.generation
            full = False
            try:
                done = await dispatch_once(units, send, config, stop=stop)
                full = done.claimed == CLAIM_BATCH and done.attempts > 0
                if time.monotonic() - forgotten_at >= FORGET_EVERY_SECONDS:
                    forgotten_at = time.monotonic()
                    forgotten = await forget_old_deliveries(units, config.retention, stop)
                    if forgotten:
                        log.info("forgot old webhook deliveries", count=forgotten)
            except Exception:  # a failed round is retried next interval; the job must live on
                log.exception("webhook dispatch round failed")
            if not full and not stop.is_set():
                # Until new events commit (the process's LISTEN connection), or the interval
                # passes: retries fall due with time, not with events.
                if listener.stopping:
                    # The listener is closing (waiters are released at once from now on):
                    # wait for the stop the shutdown is about to ask instead.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), interval)
                else:
                    await listener.wait_any(seen, interval)

    task = asyncio.create_task(loop(), name="webhook-dispatcher")
    try:
        yield
    finally:
        # After the subscriptions it is serving have had their current attempt (each within
        # WEBHOOK_TIMEOUT_SECONDS): their leases lapse, or are released, for another process.
        await stop_task(task, "webhook dispatcher", shutdown)
        await session.close()
