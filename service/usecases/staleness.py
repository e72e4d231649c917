"""Capacity that is never silently stale: announcing each site whose provider has neither
changed nor confirmed its capacity for STALE_AFTER_HOURS, once per staleness."""

from __future__ import annotations

from service.domain import capacity
from service.queries import sites
from service.usecases.tx import Tx
from service.vocab import EventType


async def announce_stale(tx: Tx, limit: int) -> int:
    """Mark up to `limit` active sites that have turned stale (unconfirmed for the policy's
    `stale_after`) since the last round and emit
    one site.capacity_stale each (to its provider and admins), in the same transaction and the
    same statement; returns how many. Safe on any number of replicas: each site is marked by
    one of them only, and stays marked until its capacity is confirmed again."""
    return await sites.announce_stale(
        tx.conn,
        tx.at,
        capacity.stale_before(tx.at, tx.policy.stale_after),
        EventType.SITE_CAPACITY_STALE,
        limit,
    )
