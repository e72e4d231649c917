"""Claiming time on a bed: the one way a hold, an extension or an early arrival, and a block
take a bed for a period."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import datetime
from typing import TypeVar
from uuid import UUID

import asyncpg

from service.queries import allocations, beds
from service.usecases.expiry import expire_lapsed
from service.usecases.tx import Tx

T = TypeVar("T")


class ClaimRefused(Exception):
    """The bed cannot be claimed for the period: removed (`removed`, and `out_of_service`),
    out of service (`out_of_service`), or another live claim is in the way (`claim`, when one
    is found)."""

    def __init__(
        self,
        claim: asyncpg.Record | None,
        *,
        out_of_service: bool = False,
        removed: bool = False,
    ) -> None:
        super().__init__("the bed is not free")
        self.claim = claim
        self.out_of_service = out_of_service or removed
        self.removed = removed


async def claim_bed(
    tx: Tx,
    bed_id: UUID,
    start: datetime,
    end: datetime,
    write: Callable[[], Awaitable[T]],
    *,
    in_service_only: bool = True,
) -> T:
    """Run `write` (the insert or update that claims [start, end) on the bed) under the bed's
    claim lock, after writing off the bed's lapsed holds and requests (they still count for
    the exclusion constraint until written off).

    The lock queues claims on one bed behind each other instead of letting two overlapping
    inserts deadlock inside the exclusion constraint, which stays the arbiter. A savepoint:
    a refused claim costs only this attempt, and rolling it back releases the bed's lock.
    Raises ClaimRefused, naming the claim in the way when there is one.
    """
    try:
        async with tx.conn.transaction():
            bed = await beds.lock_for_claim(tx.conn, bed_id)
            # The write-off is the service's doing, not the caller's: another force's lapsed
            # hold must not name (or be audited as the act of) whoever claims the bed next.
            await expire_lapsed(replace(tx, who=None, on_behalf="system"), bed_id=bed_id)
            # A bed retired meanwhile takes no claim of any kind (its retirement checked
            # that nothing claims it from then on).
            if bed is None or bed["removed"]:
                raise ClaimRefused(None, removed=True)
            if in_service_only and not bed["in_service"]:
                raise ClaimRefused(None, out_of_service=True)
            return await write()
    except asyncpg.ExclusionViolationError:
        claim = await allocations.find_conflict(tx.conn, bed_id, start, end, tx.at)
        raise ClaimRefused(claim) from None
