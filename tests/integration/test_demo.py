"""The demo data set: a realistic national picture, seeded once however often it is asked."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from service.demo import DEMO_KEYS, FORCES, seed_demo
from service.migrate import migrate


@pytest.fixture
async def demo_dsn(fresh_database: str) -> str:
    conn = await asyncpg.connect(fresh_database)
    await migrate(conn)
    await conn.close()
    return fresh_database


async def _seed(dsn: str) -> bool:
    conn = await asyncpg.connect(dsn)
    try:
        return await seed_demo(conn)
    finally:
        await conn.close()


async def test_demo_data_is_a_national_picture_seeded_once(demo_dsn: str) -> None:
    results = await asyncio.gather(_seed(demo_dsn), _seed(demo_dsn), _seed(demo_dsn))
    assert sorted(results) == [False, False, True]
    conn = await asyncpg.connect(demo_dsn)
    try:
        forces = await conn.fetchval("SELECT count(*) FROM force")
        providers = await conn.fetchval("SELECT count(*) FROM provider")
        sites = await conn.fetch("SELECT * FROM site")
        bed_kinds = await conn.fetchrow(
            "SELECT count(*) FILTER (WHERE room_type = 'family') AS family,"
            " count(*) FILTER (WHERE wheelchair_accessible) AS accessible,"
            " count(*) AS beds FROM bed"
        )
        keys = await conn.fetch("SELECT role, force_code, revoked_at FROM api_key")
    finally:
        await conn.close()
    assert forces == len(FORCES) == 43
    assert {"met", "gmp", "wmp", "swp", "nwp"} <= {code for code, _ in FORCES}
    assert providers == 5
    assert len(sites) >= 40
    welsh = [
        s
        for s in sites
        if -5.5 < s["lon"] < -2.6 and 51.3 < s["lat"] < 53.5 and "cy" in s["languages"]
    ]
    assert len(welsh) >= 5
    assert {tuple(s["genders_accepted"]) for s in sites} >= {("female",), ("male",)}
    assert {s["booking_mode"] for s in sites} == {"instant", "request"}
    assert len({lang for s in sites for lang in s["languages"]}) >= 10
    assert any(s["interpreter_on_call"] for s in sites)
    assert bed_kinds["family"] >= 10 and bed_kinds["accessible"] >= 10
    assert sorted(k["role"] for k in keys) == sorted(k.role for k in DEMO_KEYS)
