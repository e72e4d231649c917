"""Webhook subscriptions (every role, in its own scope) and the dispatcher's steps: claim the
due subscriptions, find each one's next event, settle an attempt's result.

The dispatcher itself (service/dispatch.py) sends over HTTP; everything it reads or writes in
the database goes through these functions."""

from __future__ import annotations

import asyncio
import base64
import secrets
import socket
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID

import asyncpg

from service import paging
from service.domain import webhooks as rules
from service.domain.webhooks import RetryPolicy, Scope, Verdict
from service.errors import NotFound, ValidationProblem
from service.paging import Page, Position
from service.queries import events
from service.queries import webhooks as store
from service.usecases.changes import Change, record
from service.usecases.results import DeliveryShown, EventShown, WebhookShown
from service.usecases.tx import ReadTx, Tx
from service.vocab import AuditAction, DeliveryOutcome, ObjectType, Role, WebhookStatus

# How long resolving a new subscription's host may take before it counts as unresolvable.
RESOLVE_SECONDS = 5.0

# Resolves a host and port to its addresses (textual IPs).
Resolver = Callable[[str, int], Awaitable[list[str]]]


async def resolve_host(host: str, port: int) -> list[str]:
    """Every address `host` resolves to, through the system resolver."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True)
class TargetRules:
    """Where webhooks may point: https only in production; private addresses only when the
    settings allow them (development and tests)."""

    require_https: bool
    allow_private: bool


def _url_refused(message: str) -> ValidationProblem:
    return ValidationProblem(f"url {message}", errors=[{"field": "url", "message": message}])


async def check_target(url: str, target: TargetRules, resolve: Resolver = resolve_host) -> None:
    """400 naming `url` unless a webhook may be sent there: the URL's form, then every address
    its host resolves to (one private address is enough to refuse: a resolver may answer
    either). The dispatcher checks the address again when it connects."""
    problem = rules.url_problem(url, require_https=target.require_https)
    if problem is not None:
        raise _url_refused(problem)
    if target.allow_private:
        return
    host, port = rules.host_and_port(url)
    try:
        async with asyncio.timeout(RESOLVE_SECONDS):
            addresses = await resolve(host, port)
    except (OSError, TimeoutError, ValueError):  # UnicodeError (IDNA) is a ValueError
        raise _url_refused("names a host that does not resolve") from None
    if not addresses:
        raise _url_refused("names a host that does not resolve")
    for address in addresses:
        why = rules.refused_address(address.split("%", 1)[0])
        if why is not None:
            raise _url_refused(f"resolves to {why}, which webhooks may not reach")


def new_secret() -> str:
    """A signing secret as Standard Webhooks writes it: `whsec_` and 32 random bytes, base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


@dataclass(frozen=True)
class NewWebhook:
    url: str
    event_types: Sequence[str]


@dataclass(frozen=True)
class CreatedWebhook:
    webhook: WebhookShown
    # Shown to whoever created the subscription, this once.
    secret: str


async def create_webhook(
    tx: Tx, command: NewWebhook, resolve: Resolver = resolve_host
) -> CreatedWebhook:
    """Subscribe the caller's scope to `event_types` at `url`, from the feed's head on, if
    the policy lets webhooks point there."""
    target = TargetRules(tx.policy.webhook_require_https, tx.policy.webhook_allow_private)
    await check_target(command.url, target, resolve)
    who = tx.caller
    scope = Scope.of(who)
    secret = new_secret()
    row = await store.create(
        tx.conn,
        url=command.url,
        event_types=rules.unique_types(list(command.event_types)),
        secret=secret,
        created_by=who.key_id,
        role=scope.role,
        force_code=scope.force_code,
        provider_id=scope.provider_id,
        at=tx.at,
    )
    given = {"event_types": command.event_types, "url": command.url}
    await record(tx, Change.of(AuditAction.CREATE, ObjectType.WEBHOOK, row["id"], given))
    return CreatedWebhook(WebhookShown.model_validate(dict(row)), secret)


async def list_webhooks(tx: ReadTx, after: Position | None, limit: int) -> Page[WebhookShown]:
    scope = Scope.of(tx.caller)
    rows = await store.list_page(tx.conn, scope.force_code, scope.provider_id, after, limit + 1)
    page = paging.page(rows, limit, paging.by_created)
    return page.map(lambda row: WebhookShown.model_validate(dict(row)))


async def get_webhook(tx: ReadTx, webhook_id: UUID) -> WebhookShown:
    """A subscription in the caller's scope; any other (or a deleted one) is 404."""
    scope = Scope.of(tx.caller)
    row = await store.get(tx.conn, webhook_id, scope.force_code, scope.provider_id)
    if row is None:
        raise NotFound("webhook not found")
    return WebhookShown.model_validate(dict(row))


async def delete_webhook(tx: Tx, webhook_id: UUID) -> None:
    """Stop a subscription's deliveries: its status becomes `deleted`."""
    scope = Scope.of(tx.caller)
    if not await store.delete(tx.conn, webhook_id, scope.force_code, scope.provider_id, tx.at):
        raise NotFound("webhook not found")
    await record(
        tx,
        Change.of(
            AuditAction.DELETE, ObjectType.WEBHOOK, webhook_id, {"status": WebhookStatus.DELETED}
        ),
    )


async def list_deliveries(
    tx: ReadTx,
    webhook_id: UUID,
    before: int | None,
    limit: int,
    cursor_of: Callable[[int], str],
) -> Page[DeliveryShown]:
    """A page of a subscription's delivery attempts, newest first, before the row id `before`;
    the next page's cursor is `cursor_of` the last one's row id."""
    await get_webhook(tx, webhook_id)
    rows = await store.deliveries(tx.conn, webhook_id, before, limit + 1)
    shown = [DeliveryShown.model_validate(dict(row)) for row in rows]
    return paging.page(shown, limit, lambda delivery: cursor_of(delivery.row_id))


# --- the dispatcher's steps -------------------------------------------------------------------


@dataclass(frozen=True)
class Claimed:
    """A subscription a dispatcher holds until `lease`, and where it stands."""

    id: UUID
    url: str
    event_types: list[str]
    secret: str
    role: Role
    force_code: str | None
    provider_id: UUID | None
    position: tuple[str, int]
    attempts: int
    first_attempt_at: datetime | None
    lease: datetime

    @classmethod
    def of(cls, row: asyncpg.Record) -> Claimed:
        return cls(
            id=row["id"],
            url=row["url"],
            event_types=list(row["event_types"]),
            secret=row["secret"],
            role=Role(row["role"]),
            force_code=row["force_code"],
            provider_id=row["provider_id"],
            position=(row["after_tx"], row["after_id"]),
            attempts=row["attempts"],
            first_attempt_at=row["first_attempt_at"],
            lease=row["leased_until"],
        )


async def claim_due(tx: Tx, lease: timedelta, limit: int) -> list[Claimed]:
    """Lease up to `limit` active subscriptions whose next try is due (from `tx.at`); commit
    the Tx before sending, so other dispatchers see the leases."""
    rows = await store.claim(tx.conn, tx.at, lease.total_seconds(), limit)
    return [Claimed.of(row) for row in rows]


@dataclass(frozen=True)
class PendingEvent:
    """A subscription's next event: its feed position and the body to send."""

    id: int
    position: tuple[str, int]
    body: EventShown

    @property
    def public_id(self) -> str:
        """The id receivers see (the body's `id` and the `webhook-id` header), stable per
        event: they de-duplicate by it."""
        return self.body.id


@dataclass(frozen=True)
class Next:
    """A subscription's next event (None: none yet), and the position to go on from when
    there is none: the feed's horizon, so a subscription whose types match nothing for a while
    does not walk the same stretch of other events every round."""

    event: PendingEvent | None
    position: tuple[str, int]


async def next_event(tx: ReadTx, sub: Claimed) -> Next:
    """The first committed event after the subscription's position that its scope may see
    and its types ask for, as its scope's role sees it."""
    read = await events.page(
        tx.conn,
        after=sub.position,
        limit=1,
        force_code=sub.force_code,
        provider_id=sub.provider_id,
        types=sub.event_types,
    )
    if not read.rows:
        return Next(None, read.position)
    event = read.rows[0]
    return Next(
        PendingEvent(
            id=event["id"],
            position=(event["tx"], event["id"]),
            body=EventShown.model_validate(rules.event_body(event, sub.role)),
        ),
        read.position,
    )


async def release(tx: Tx, sub: Claimed, position: tuple[str, int] | None = None) -> None:
    """Nothing (more) to send now: the subscription is free again (if the lease is still
    ours), goes behind the others in the claim order, and moves on to `position` when given
    (everything in its scope and types before it has been delivered or given up)."""
    after_tx, after_id = position or sub.position
    await store.release(tx.conn, sub.id, sub.lease, tx.at, after_tx, after_id)


@dataclass(frozen=True)
class Attempt:
    """What one POST came to: the status code (None: no answer), its time and any error."""

    status_code: int | None
    duration_ms: int
    error: str | None


@dataclass(frozen=True)
class Settled:
    verdict: Verdict
    # The renewed lease, when the dispatcher may go on to the subscription's next event.
    lease: datetime | None


async def settle(
    tx: Tx,
    sub: Claimed,
    event: PendingEvent,
    attempt: Attempt,
    policy: RetryPolicy,
    lease: timedelta,
    random: Callable[[], float],
) -> Settled | None:
    """Record the attempt and move the subscription on, in one transaction: delivered or given
    up -> past the event (its next event may go now, under a renewed lease); 410 -> disabled;
    anything else -> retried after a backoff. None when the lease lapsed and another
    dispatcher took the subscription: nothing is recorded, the other one tries again."""
    number = sub.attempts + 1
    first = sub.first_attempt_at or tx.at
    verdict = rules.judge(
        attempt.status_code,
        attempt=number,
        first_attempt_at=first,
        at=tx.at,
        policy=policy,
        random=random,
    )
    moved_on = verdict.advance
    renewed = tx.at + lease if moved_on else None
    status = await store.settle(
        tx.conn,
        sub.id,
        sub.lease,
        position=event.position if moved_on else None,
        attempts=0 if moved_on else number,
        first_attempt_at=None if moved_on else first,
        next_attempt_at=verdict.next_attempt_at,
        disabled_reason=verdict.disabled_reason,
        at=tx.at,
        new_lease=renewed or tx.at,
    )
    if status is None:
        return None
    await store.record(
        tx.conn,
        webhook_id=sub.id,
        event_id=event.id,
        attempt=number,
        at=tx.at,
        status_code=attempt.status_code,
        duration_ms=attempt.duration_ms,
        error=attempt.error,
        outcome=verdict.outcome,
        next_attempt_at=verdict.next_attempt_at,
    )
    still_active = status == "active" and verdict.outcome != DeliveryOutcome.DISABLED
    return Settled(verdict, renewed if still_active else None)


async def forget_deliveries(tx: Tx, older_than: timedelta, limit: int) -> int:
    """Delete up to `limit` delivery rows older than the retention; how many went."""
    return await store.forget(tx.conn, tx.at - older_than, limit)
