"""Capacity that is never silently stale: announcing each site whose provider has neither
changed nor confirmed its capacity for STALE_AFTER_HOURS, once per staleness."""

from __future__ import annotations

from datetime import timedelta

from service.domain import capacity
from service.queries import sites
from service.usecases.tx import Tx
from service.vocab import EventType


async def announce_stale(tx: Tx, stale_after: timedelta) -> int:
    """Mark every active site that has turned stale since the last round and emit one
    site.capacity_stale each (to its provider and admins), in the same transaction; returns
    how many. Safe on any number of replicas: the marking UPDATE returns each site to one of
    them only, and a site stays marked until its capacity is confirmed again."""
    turned = await sites.mark_stale(tx.conn, tx.at, capacity.stale_before(tx.at, stale_after))
    for site in turned:
        await tx.event(EventType.SITE_CAPACITY_STALE, site_id=site["id"])
    return len(turned)
