"""Webhook subscriptions and their delivery log: the API's reads and writes, and the
dispatcher's claim, lease and bookkeeping.

A scope is given as (force_code, provider_id): an officer's force, a provider, or neither (an
admin, who sees every subscription)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

import asyncpg

from service.db import Connection
from service.ids import new_id
from service.queries import events

COLUMNS = """id, url, event_types, status, disabled_reason, role, force_code, provider_id,
       after_tx::text AS after_tx, after_id, attempts, first_attempt_at, next_attempt_at,
       leased_until, created_at, updated_at"""

INSERT = """
INSERT INTO webhook (id, url, event_types, secret, created_by, role, force_code, provider_id,
                     after_tx, after_id, created_at, updated_at)
VALUES ($1, $2, $3::text[], $4, $5, $6, $7, $8, $9::text::xid8, $10, $11, $11)
RETURNING id, url, event_types, status, disabled_reason, created_at
"""

# Deleted subscriptions are gone as far as the API is concerned.
LIST = """
SELECT id, url, event_types, status, disabled_reason, created_at
FROM webhook
WHERE status <> 'deleted'
  AND ($1::text IS NULL OR force_code = $1)
  AND ($2::uuid IS NULL OR provider_id = $2)
  AND ($3::timestamptz IS NULL OR (created_at, id) > ($3, $4::uuid))
ORDER BY created_at, id
LIMIT $5
"""

GET = """
SELECT id, url, event_types, status, disabled_reason, created_at
FROM webhook
WHERE id = $1 AND status <> 'deleted'
  AND ($2::text IS NULL OR force_code = $2)
  AND ($3::uuid IS NULL OR provider_id = $3)
"""

# Deleting stops delivery at once: the dispatcher claims only active subscriptions, and an
# attempt already under way records its delivery without reviving the subscription.
DELETE = """
UPDATE webhook
SET status = 'deleted', next_attempt_at = NULL, updated_at = $4
WHERE id = $1 AND status <> 'deleted'
  AND ($2::text IS NULL OR force_code = $2)
  AND ($3::uuid IS NULL OR provider_id = $3)
RETURNING id
"""

DELIVERIES = """
SELECT d.id AS row_id, d.public_id::text AS id, e.public_id::text AS event_id, d.attempt, d.at,
       d.status_code, d.duration_ms, d.error, d.outcome, d.next_attempt_at
FROM webhook_delivery d
-- Events are never deleted; the list shows their public ids, as the deliveries sent them.
JOIN event e ON e.id = d.event_id
WHERE d.webhook_id = $1 AND ($2::bigint IS NULL OR d.id < $2)
-- The column, not the text the list shows: "10" sorts before "9".
ORDER BY d.id DESC
LIMIT $3
"""

# The dispatcher's claim: active subscriptions whose next try is due and that no live lease
# holds, each leased until `$1 + $2 seconds`. SKIP LOCKED: replicas claiming at once take
# different subscriptions, and none waits for another. A lease given back is set to the time
# it ended, so the least recently served subscriptions come first: with more due than one
# claim takes, every one gets its turn.
CLAIM = """
UPDATE webhook w
SET leased_until = $1::timestamptz + make_interval(secs => $2::float8)
WHERE w.id IN (
    SELECT id FROM webhook
    WHERE status = 'active'
      -- A revoked key's subscriptions are disabled with it: this keeps it so even for one
      -- revoked while a claim was being made.
      AND NOT EXISTS (
          SELECT 1 FROM api_key k WHERE k.id = webhook.created_by AND k.revoked_at IS NOT NULL
      )
      AND (next_attempt_at IS NULL OR next_attempt_at <= $1)
      AND (leased_until IS NULL OR leased_until <= $1)
    ORDER BY leased_until NULLS FIRST, id
    LIMIT $3
    FOR UPDATE SKIP LOCKED
)
RETURNING w.id, w.url, w.event_types, w.secret, w.role, w.force_code, w.provider_id,
          w.after_tx::text AS after_tx, w.after_id, w.attempts, w.first_attempt_at,
          w.leased_until
"""

# A revoked key's subscriptions stop with it: whoever held the key must not go on receiving
# its scope's events at a URL of their choosing.
DISABLE_FOR_KEY = """
UPDATE webhook
SET status = 'disabled', disabled_reason = 'the API key that made it was revoked',
    leased_until = NULL, updated_at = $2
WHERE created_by = $1 AND status = 'active'
RETURNING id
"""

# Nothing (more) to send: give the subscription back at `$3`, if the lease is still ours.
RELEASE = """
UPDATE webhook SET leased_until = $3, after_tx = $4::text::xid8, after_id = $5
WHERE id = $1 AND leased_until = $2
"""

# After an attempt, if the lease `$2` is still ours (a slow attempt whose lease lapsed and
# was taken by another dispatcher records nothing: the other one tries again). The position
# moves to ($3, $4) when the event was delivered or given up; the lease is renewed to `$10`
# (the dispatcher goes on to the next event) or given back (`$10` is the attempt's time).
SETTLE = """
UPDATE webhook
SET after_tx = coalesce($3::text::xid8, after_tx),
    after_id = coalesce($4::bigint, after_id),
    attempts = $5,
    first_attempt_at = $6,
    next_attempt_at = CASE WHEN status = 'active' THEN $7::timestamptz END,
    status = CASE WHEN status = 'active' AND $8::text IS NOT NULL THEN 'disabled'
                  ELSE status END,
    disabled_reason = CASE WHEN status = 'active' AND $8::text IS NOT NULL THEN $8
                           ELSE disabled_reason END,
    leased_until = $10,
    updated_at = $9
WHERE id = $1 AND leased_until = $2
RETURNING status
"""

RECORD = """
INSERT INTO webhook_delivery (webhook_id, event_id, attempt, at, status_code, duration_ms,
                              error, outcome, next_attempt_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
"""

# A batch of the delivery log past its retention.
FORGET = """
DELETE FROM webhook_delivery
WHERE id IN (SELECT id FROM webhook_delivery WHERE at < $1 ORDER BY at LIMIT $2)
"""


async def create(
    conn: Connection,
    *,
    url: str,
    event_types: Sequence[str],
    secret: str,
    created_by: UUID,
    role: str,
    force_code: str | None,
    provider_id: UUID | None,
    at: datetime,
) -> asyncpg.Record:
    """A new subscription, starting at the feed's head: it receives the events committed
    after it (and those of transactions still in progress now)."""
    head = await conn.fetchrow(events.HEAD)
    assert head is not None
    row = await conn.fetchrow(
        INSERT,
        new_id(),
        url,
        list(event_types),
        secret,
        created_by,
        role,
        force_code,
        provider_id,
        head["tx"],
        head["id"],
        at,
    )
    assert row is not None
    return row


async def list_page(
    conn: Connection,
    force_code: str | None,
    provider_id: UUID | None,
    after: tuple[datetime, UUID] | None,
    limit: int,
) -> list[asyncpg.Record]:
    created_at, webhook_id = after if after is not None else (None, None)
    return await conn.fetch(LIST, force_code, provider_id, created_at, webhook_id, limit)


async def get(
    conn: Connection, webhook_id: UUID, force_code: str | None, provider_id: UUID | None
) -> asyncpg.Record | None:
    return await conn.fetchrow(GET, webhook_id, force_code, provider_id)


async def delete(
    conn: Connection,
    webhook_id: UUID,
    force_code: str | None,
    provider_id: UUID | None,
    at: datetime,
) -> bool:
    return await conn.fetchval(DELETE, webhook_id, force_code, provider_id, at) is not None


async def deliveries(
    conn: Connection, webhook_id: UUID, before: int | None, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(DELIVERIES, webhook_id, before, limit)


async def claim(
    conn: Connection, at: datetime, lease_seconds: float, limit: int
) -> list[asyncpg.Record]:
    return await conn.fetch(CLAIM, at, lease_seconds, limit)


async def disable_for_key(conn: Connection, key_id: UUID, at: datetime) -> list[UUID]:
    return [row["id"] for row in await conn.fetch(DISABLE_FOR_KEY, key_id, at)]


async def release(
    conn: Connection,
    webhook_id: UUID,
    lease: datetime,
    at: datetime,
    after_tx: str,
    after_id: int,
) -> None:
    await conn.execute(RELEASE, webhook_id, lease, at, after_tx, after_id)


async def settle(
    conn: Connection,
    webhook_id: UUID,
    lease: datetime,
    *,
    position: tuple[str, int] | None,
    attempts: int,
    first_attempt_at: datetime | None,
    next_attempt_at: datetime | None,
    disabled_reason: str | None,
    at: datetime,
    new_lease: datetime,
) -> str | None:
    """The subscription's status after the attempt, or None when the lease is no longer ours
    (then nothing was changed)."""
    tx, event_id = position if position is not None else (None, None)
    status: str | None = await conn.fetchval(
        SETTLE,
        webhook_id,
        lease,
        tx,
        event_id,
        attempts,
        first_attempt_at,
        next_attempt_at,
        disabled_reason,
        at,
        new_lease,
    )
    return status


async def record(
    conn: Connection,
    *,
    webhook_id: UUID,
    event_id: int,
    attempt: int,
    at: datetime,
    status_code: int | None,
    duration_ms: int,
    error: str | None,
    outcome: str,
    next_attempt_at: datetime | None,
) -> None:
    await conn.execute(
        RECORD,
        webhook_id,
        event_id,
        attempt,
        at,
        status_code,
        duration_ms,
        error,
        outcome,
        next_attempt_at,
    )


async def forget(conn: Connection, before: datetime, limit: int) -> int:
    """Delete up to `limit` delivery rows older than `before`; how many went."""
    done = await conn.execute(FORGET, before, limit)
    return int(done.split()[-1])
