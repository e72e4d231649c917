"""The one bed-claim function: a bed retired meanwhile takes no claim of any kind."""

from __future__ import annotations

from datetime import timedelta

import pytest

from service.db import Pool
from service.usecases import tx
from service.usecases.claims import ClaimRefused, claim_bed
from tests.support.clock import ManualClock
from tests.support.world import World


@pytest.mark.parametrize("in_service_only", [True, False])
async def test_a_retired_bed_refuses_every_claim(
    world: World, clock: ManualClock, db: Pool, in_service_only: bool
) -> None:
    """What a block (in_service_only=False) that checked the bed just before a concurrent
    retirement committed meets once it holds the bed's lock."""
    site = await world.site()
    bed = await world.bed(site["id"])
    gone = await world.api.delete(f"/v1/sites/{site['id']}/beds/{bed['id']}", key=world.provider)
    assert gone.status == 204
    written = []

    async def write() -> None:
        written.append(True)

    start = clock.now()
    async with db.acquire() as conn, tx.writing(conn, at=start, who=None) as unit:
        with pytest.raises(ClaimRefused) as refused:
            await claim_bed(
                unit,
                bed["id"],
                start,
                start + timedelta(hours=4),
                write,
                in_service_only=in_service_only,
            )
    assert refused.value.removed
    assert refused.value.out_of_service
    assert written == []
