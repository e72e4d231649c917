"""Issue 14's acceptance run on the demo data: one officer key looping hold -> confirm over
every instant site ends with at most its cap of bookings and learns at most its disclosure
budget of addresses; each refusal and breach is an alert an admin can list; another force
still finds beds meanwhile."""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import asyncpg
import pytest
from aiohttp.test_utils import TestClient

from service.app import create_app
from service.demo import DEMO_ADMIN_KEY, DEMO_OFFICER_KEY, seed_demo
from service.migrate import migrate
from service.settings import Settings
from tests.conftest import ServiceTestServer
from tests.support.api import Api
from tests.support.clock import ManualClock
from tests.support.world import booking_body, new_key, unique


@pytest.fixture
async def demo_api(fresh_database: str, clock: ManualClock) -> AsyncIterator[Api]:
    conn = await asyncpg.connect(fresh_database)
    try:
        await migrate(conn)
        await seed_demo(conn, at=clock.now())
    finally:
        await conn.close()
    settings = Settings(database_url=fresh_database, seed_demo=False, db_pool_max=10)
    app = create_app(settings, clock=clock, dsn=fresh_database, run_jobs=False)
    client: TestClient[Any, Any] = TestClient(ServiceTestServer(app, host="127.0.0.1"))
    await client.start_server()
    yield Api(client)
    await client.close()


async def test_one_key_cannot_empty_the_scheme_or_map_its_houses(
    demo_api: Api, clock: ManualClock
) -> None:
    api, settings = demo_api, Settings()
    sites = await api.all_items("/v1/sites", key=DEMO_ADMIN_KEY)
    instant = [s for s in sites if s["booking_mode"] == "instant" and s["status"] == "active"]
    assert len(instant) > settings.booking_cap_per_key
    statuses: Counter[int] = Counter()
    addresses: set[str] = set()
    for site in instant:
        body = booking_body(site["id"], clock.now(), needs={"gender": site["genders_accepted"][0]})
        held = await api.post("/v1/bookings", body, key=DEMO_OFFICER_KEY)
        statuses[held.status] += 1
        if held.status != 201:
            assert held.status == 429 and held.problem_type == "too-many-bookings", held.body
            continue
        confirmed = await api.post(
            f"/v1/bookings/{held.body['id']}/confirm", None, key=DEMO_OFFICER_KEY
        )
        assert confirmed.status == 200, confirmed.body
        if "address" in confirmed.body["site"]:
            addresses.add(confirmed.body["site"]["address"])
        else:
            assert confirmed.body["site"]["duty_phone"]
    cap = settings.booking_cap_per_key
    assert statuses == {201: cap, 429: len(instant) - cap}
    assert 0 < len(addresses) <= settings.disclosure_budget_per_key

    alerts = await api.all_items("/v1/alerts", key=DEMO_ADMIN_KEY, params={"force": "met"})
    kinds = {a["kind"]: a for a in alerts}
    assert kinds["booking_cap"]["count"] == statuses[429]
    if len(addresses) == settings.disclosure_budget_per_key:
        assert "disclosure_budget" in kinds

    # Another force still finds beds and takes one.
    code = unique("f")
    made = await api.post("/v1/forces", {"code": code, "name": code}, key=DEMO_ADMIN_KEY)
    assert made.status == 201, made.body
    stranger = await new_key(api, DEMO_ADMIN_KEY, role="officer", force=code)
    found = await api.get(
        "/v1/availability",
        key=stranger,
        params={"end": (clock.now() + timedelta(hours=24)).isoformat(), "gender": "female"},
    )
    assert found.status == 200 and found.body["items"]
    site_id = found.body["items"][0]["site_id"]
    taken = await api.post("/v1/bookings", booking_body(site_id, clock.now()), key=stranger)
    assert taken.status == 201, taken.body
