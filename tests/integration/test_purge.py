"""`pos purge`: personal fields go once the retention period after a stay has passed; the
counts reports need stay."""

from __future__ import annotations

from service.db import Pool
from tests.support.clock import ManualClock
from tests.support.process import pos, pos_env
from tests.support.world import World


async def test_purge_erases_personal_fields_of_long_ended_bookings(
    world: World, db: Pool, clock: ManualClock, database_dsn: str
) -> None:
    site = await world.site()
    await world.bed(site["id"])
    await world.bed(site["id"])
    start = clock.now()
    ended = await world.book(site["id"], start, notes="speaks little English")
    live = await world.book(site["id"], start)
    await world.act(ended["id"], "confirm")
    await world.act(ended["id"], "check-in", key=world.provider)
    await world.act(ended["id"], "check-out", key=world.provider)
    await world.act(live["id"], "confirm")
    async with db.acquire() as conn:
        await conn.execute(
            # Retention counts from the stay's end (ended_at; null while it is live).
            "UPDATE allocation SET updated_at = now() - interval '91 days',"
            " ended_at = ended_at - interval '91 days'"
            " WHERE id = ANY($1::uuid[])",
            [ended["id"], live["id"]],
        )
        await conn.execute(
            "INSERT INTO idempotency_key (api_key_id, key, request_hash, response_status,"
            " response_type, response_body, created_at)"
            " SELECT id, 'old-key', '\\x00', 201, 'application/json', '{}',"
            " now() - interval '25 hours' FROM api_key LIMIT 1"
        )

    code, out, _ = await pos("purge", env=pos_env(DATABASE_URL=database_dsn))
    assert code == 0, out
    assert "erased personal fields of 1 booking(s)" in out

    erased = (await world.api.get(f"/v1/bookings/{ended['id']}", key=world.admin)).body
    assert (erased["person_ref"], erased["officer_collar"], erased["notes"]) == (None, None, None)
    assert erased["status"] == "departed" and len(erased["history"]) == 4
    assert erased["custody_suite"] == ended["custody_suite"]
    kept = (await world.api.get(f"/v1/bookings/{live['id']}", key=world.admin)).body
    assert kept["person_ref"] == live["person_ref"]
    async with db.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM idempotency_key WHERE key = 'old-key'") == 0
        )
