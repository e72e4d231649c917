"""Trust against an insider (issue 14 items 1-3): one key can neither take the scheme's beds
nor map its safe houses, and what it tries beyond that reaches the coordinators as alerts."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import timedelta
from typing import Any

from service.db import Pool
from tests.conftest import AppFactory
from tests.support.api import Api, Reply
from tests.support.clock import ManualClock
from tests.support.world import World, booking_body, new_key, unique


async def _instant_site(
    world: World, beds: int = 1, key: str | None = None, **overrides: Any
) -> dict[str, Any]:
    site = await world.site(key, **overrides)
    for _ in range(beds):
        await world.bed(site["id"], key)
    return site


async def _hold(api: Api, key: str, site_id: str, clock: ManualClock, hours: float = 0) -> Reply:
    body = booking_body(site_id, clock.now() + timedelta(hours=hours))
    return await api.post("/v1/bookings", body, key=key)


async def _hold_and_confirm(
    api: Api, key: str, site_id: str, clock: ManualClock, hours: float = 0
) -> dict[str, Any]:
    held = await _hold(api, key, site_id, clock, hours)
    assert held.status == 201, held.body
    confirmed = await api.post(f"/v1/bookings/{held.body['id']}/confirm", None, key=key)
    assert confirmed.status == 200, confirmed.body
    body: dict[str, Any] = confirmed.body
    return body


async def _alerts(api: Api, admin: str, **params: Any) -> list[dict[str, Any]]:
    return await api.all_items("/v1/alerts", key=admin, params=params)


async def _refusals_audited(db: Pool, key_id: str) -> list[list[str]]:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT fields FROM audit WHERE action = 'refuse' AND object_type = 'api_key'"
            " AND object_id = $1 ORDER BY id",
            key_id,
        )
    return [list(r["fields"]) for r in rows]


async def _key_id(api: Api, admin: str, secret: str) -> str:
    keys = await api.all_items("/v1/api-keys", key=admin)
    (found,) = [k for k in keys if secret.startswith(k["prefix"].rstrip("."))]
    return str(found["id"])


async def _new_force(world: World) -> str:
    code = unique("f")
    reply = await world.api.post("/v1/forces", {"code": code, "name": code}, key=world.admin)
    assert reply.status == 201, reply.body
    return code


# --- item 1: one key cannot take every bed ------------------------------------------------------


async def test_confirming_is_no_way_round_the_cap_on_bookings_not_yet_arrived(
    world: World, make_api: AppFactory, clock: ManualClock, db: Pool
) -> None:
    api = await make_api(settings_overrides={"booking_cap_per_key": 3, "booking_cap_per_force": 5})
    sites = [await _instant_site(world) for _ in range(6)]
    # Hold -> confirm in a loop: the cap counts confirmations too, so the fourth is refused.
    confirmed = [await _hold_and_confirm(api, world.officer, s["id"], clock) for s in sites[:3]]
    refused = await _hold(api, world.officer, sites[3]["id"], clock)
    assert refused.status == 429 and refused.problem_type == "too-many-bookings", refused.body
    assert int(refused.headers["Retry-After"]) >= 1
    # A second key of the force takes the force to its cap of five, then is refused too.
    colleague = await new_key(api, world.admin, role="officer", force=world.force)
    await _hold_and_confirm(api, colleague, sites[3]["id"], clock)
    await _hold_and_confirm(api, colleague, sites[4]["id"], clock)
    by_force = await _hold(api, colleague, sites[5]["id"], clock)
    assert by_force.status == 429 and "your force" in by_force.body["detail"]
    # Another force still finds and takes a bed meanwhile.
    other = await new_key(api, world.admin, role="officer", force=await _new_force(world))
    assert (await _hold(api, other, sites[5]["id"], clock)).status == 201
    # Arrival frees a place under the cap: the cap is on people not yet arrived.
    checked_in = await api.post(
        f"/v1/bookings/{confirmed[0]['id']}/check-in", None, key=world.provider
    )
    assert checked_in.status == 200, checked_in.body
    sites.append(await _instant_site(world))
    assert (await _hold(api, world.officer, sites[-1]["id"], clock)).status == 201

    # Each refusal is audited on the key, counted, and raised as an alert.
    officer_id = await _key_id(api, world.admin, world.officer)
    assert await _refusals_audited(db, officer_id) == [["bookings_per_key"]]
    alerts = await _alerts(api, world.admin, force=world.force)
    assert Counter(a["kind"] for a in alerts) == {"booking_cap": 2}
    mine = await _alerts(api, world.admin, key_id=officer_id)
    assert len(mine) == 1 and mine[0]["key_id"] == officer_id and mine[0]["force"] == world.force
    assert "bookings_per_key" in mine[0]["detail"] and mine[0]["count"] == 1
    metrics = (await api.get("/metrics")).raw.decode()
    assert 'pos_limit_refusals_total{limit="bookings_per_key"} 1.0' in metrics
    assert 'pos_limit_refusals_total{limit="bookings_per_force"} 1.0' in metrics


async def test_concurrent_holds_of_one_key_never_overshoot_the_booking_cap(
    world: World, make_api: AppFactory, clock: ManualClock
) -> None:
    api = await make_api(settings_overrides={"booking_cap_per_key": 3, "hold_cap_per_key": 3})
    site = await _instant_site(world, beds=12)
    await _hold_and_confirm(api, world.officer, site["id"], clock)
    await _hold_and_confirm(api, world.officer, site["id"], clock)
    racing = (_hold(api, world.officer, site["id"], clock) for _ in range(8))
    replies = await asyncio.gather(*racing)
    assert Counter(r.status for r in replies) == {201: 1, 429: 7}
    assert {r.problem_type for r in replies if r.status == 429} == {"too-many-bookings"}


async def test_a_stay_may_start_at_most_the_lead_time_ahead(
    world: World, make_api: AppFactory, clock: ManualClock, db: Pool
) -> None:
    api = await make_api(settings_overrides={"max_lead_hours": 48})
    site = await _instant_site(world)
    # Thirty days ahead (what the probe booked) is refused, and told when it could be held.
    far = await _hold(api, world.officer, site["id"], clock, hours=30 * 24)
    assert far.status == 429 and far.problem_type == "too-far-ahead", far.body
    assert int(far.headers["Retry-After"]) == 28 * 24 * 3600
    search = await api.get(
        "/v1/availability",
        key=world.officer,
        params={
            "start": (clock.now() + timedelta(hours=49)).isoformat(),
            "end": (clock.now() + timedelta(hours=60)).isoformat(),
        },
    )
    assert search.status == 400 and search.field_names() == {"start"}
    assert (await _hold(api, world.officer, site["id"], clock, hours=47)).status == 201
    # A window no booking may have (beyond the 90-day horizon) is bad input, a 400 and no
    # refusal, whatever the lead time.
    beyond = await _hold(api, world.officer, site["id"], clock, hours=91 * 24)
    assert beyond.status == 400 and beyond.field_names() == {"start"}
    officer_id = await _key_id(api, world.admin, world.officer)
    assert await _refusals_audited(db, officer_id) == [["max_lead"]]
    (alert,) = await _alerts(api, world.admin, key_id=officer_id)
    assert alert["kind"] == "too_far_ahead"


# --- item 2: one key cannot learn every address -------------------------------------------------


async def test_the_address_is_shown_only_when_the_person_is_about_to_travel(
    world: World, make_api: AppFactory, clock: ManualClock, db: Pool
) -> None:
    api = await make_api(settings_overrides={"address_lead_hours": 4})
    duty = "+44 20 7946 0999"
    provider_id = (
        await api.post("/v1/providers", {"name": unique("P"), "duty_phone": duty}, key=world.admin)
    ).body["id"]
    provider = await new_key(api, world.admin, role="provider", provider_id=provider_id)
    site = await _instant_site(world, key=provider)
    booking = await _hold_and_confirm(api, world.officer, site["id"], clock, hours=10)
    # Confirmed, but the stay is ten hours away: the name, the area and the duty phone only.
    assert booking["site"]["duty_phone"] == duty
    assert "address" not in booking["site"] and "phone" not in booking["site"]
    withheld = booking["site"]["address_withheld"]
    assert withheld["reason"] == "before_lead_time" and "duty phone" in withheld["detail"]
    # The provider always sees it.
    seen = await api.get(f"/v1/bookings/{booking['id']}", key=provider)
    assert seen.body["site"]["address"] == site["address"]
    # Four hours before the start it is shown, and the read is audited naming it.
    clock.advance(hours=6)
    near = await api.get(f"/v1/bookings/{booking['id']}", key=world.officer)
    assert near.body["site"]["address"] == site["address"]
    assert near.body["site"]["phone"] == site["phone"]
    assert "address_withheld" not in near.body["site"]
    async with db.acquire() as conn:
        read_fields = await conn.fetch(
            "SELECT fields FROM audit WHERE action = 'read' AND object_id = $1 AND role = 'officer'"
            " ORDER BY id",
            booking["id"],
        )
    shown = ["site.address" in r["fields"] for r in read_fields]
    assert shown[-1] and not any(shown[:-1])


async def test_a_phone_only_site_never_shows_its_address_to_an_officer(
    world: World, clock: ManualClock
) -> None:
    site = await _instant_site(world, address_by_phone_only=True)
    assert site["address_by_phone_only"] is True
    booking = await _hold_and_confirm(world.api, world.officer, site["id"], clock)
    assert booking["site"]["address_withheld"]["reason"] == "phone_only"
    assert "address" not in booking["site"] and "phone" not in booking["site"]
    arrived = await world.api.post(
        f"/v1/bookings/{booking['id']}/check-in", None, key=world.provider
    )
    assert arrived.body["site"]["address"] == site["address"]  # the provider's view
    as_officer = await world.api.get(f"/v1/bookings/{booking['id']}", key=world.officer)
    assert "address" not in as_officer.body["site"]
    listed = await world.all_bookings(site_id=site["id"])
    assert all("address" not in b["site"] for b in listed)
    assert {b["site"]["address_withheld"]["reason"] for b in listed} == {"phone_only"}
    # The provider can lift it (or set it) like any other field.
    patched = await world.api.patch(
        f"/v1/sites/{site['id']}", {"address_by_phone_only": False}, key=world.provider
    )
    assert patched.status == 200 and patched.body["address_by_phone_only"] is False
    shown = await world.api.get(f"/v1/bookings/{booking['id']}", key=world.officer)
    assert shown.body["site"]["address"] == site["address"]


async def test_past_its_disclosure_budget_a_key_is_told_to_call_and_an_alert_is_raised(
    world: World, make_api: AppFactory, clock: ManualClock
) -> None:
    api = await make_api(
        settings_overrides={"disclosure_budget_per_key": 2, "disclosure_budget_per_force": 3}
    )
    sites = [await _instant_site(world, beds=2) for _ in range(4)]
    first, second = [await _hold_and_confirm(api, world.officer, s["id"], clock) for s in sites[:2]]
    assert "address" in first["site"] and "address" in second["site"]
    third = await _hold_and_confirm(api, world.officer, sites[2]["id"], clock)
    assert "address" not in third["site"]
    assert third["site"]["address_withheld"]["reason"] == "budget_spent"
    assert third["status"] == "confirmed"  # the booking still works
    # What was shown before is shown again without spending more; so is a second booking at a
    # site the key has been shown.
    again = await api.get(f"/v1/bookings/{first['id']}", key=world.officer)
    assert again.body["site"]["address"] == sites[0]["address"]
    same_site = await _hold_and_confirm(api, world.officer, sites[0]["id"], clock)
    assert same_site["site"]["address"] == sites[0]["address"]
    # The force's budget (three sites) binds its other keys: one more site, then no more.
    colleague = await new_key(api, world.admin, role="officer", force=world.force)
    fourth = await _hold_and_confirm(api, colleague, sites[2]["id"], clock)
    assert fourth["site"]["address"] == sites[2]["address"]
    fifth = await _hold_and_confirm(api, colleague, sites[3]["id"], clock)
    assert fifth["site"]["address_withheld"]["reason"] == "budget_spent"
    # Each breach raised an alert naming the key and its force.
    alerts = await _alerts(api, world.admin, force=world.force, kind="disclosure_budget")
    assert len(alerts) == 2 and len({a["key_id"] for a in alerts}) == 2
    assert all(a["force"] == world.force and a["site_id"] for a in alerts)
    # Reading the force's list spends nothing: it never shows an address.
    listed = await api.all_items("/v1/bookings", key=colleague, params={"status": "confirmed"})
    assert {b["site"]["address_withheld"]["reason"] for b in listed} == {"listed"}
    # A day later the budget is whole again.
    clock.advance(hours=25)
    later = await api.get(f"/v1/bookings/{third['id']}", key=world.officer)
    assert later.body["site"]["address"] == sites[2]["address"]


async def test_a_booking_cancelled_soon_after_its_address_was_shown_is_alerted(
    world: World, clock: ManualClock
) -> None:
    sites = [await _instant_site(world) for _ in range(3)]
    quick = await _hold_and_confirm(world.api, world.officer, sites[0]["id"], clock)
    assert "address" in quick["site"]
    clock.advance(minutes=5)
    await world.act(quick["id"], "cancel", reason_code="booked_in_error")
    # Cancelled long after: not a disclosure without placement.
    slow = await _hold_and_confirm(world.api, world.officer, sites[1]["id"], clock)
    clock.advance(hours=3)
    await world.act(slow["id"], "cancel", reason_code="transport_failed")
    # Never shown (not confirmed): nothing to flag either.
    held = await _hold(world.api, world.officer, sites[2]["id"], clock)
    await world.act(held.body["id"], "cancel", reason_code="booked_in_error")
    (alert,) = await _alerts(
        world.api, world.admin, force=world.force, kind="disclosure_without_placement"
    )
    assert alert["booking_id"] == quick["id"] and alert["site_id"] == sites[0]["id"]
    assert "5 minutes" in alert["detail"]
    # Reported per force (admins only, never in a publishable export).
    window = {
        "start": (clock.now() - timedelta(days=1)).isoformat(),
        "end": (clock.now() + timedelta(days=1)).isoformat(),
        "force": world.force,
        "group_by": "force",
    }
    report = await world.api.get("/v1/reports/summary", key=world.admin, params=window)
    (group,) = report.body["groups"]
    assert group["disclosures_without_placement"] == 1 and group["security_alerts"] == 1
    as_officer = await world.api.get(
        "/v1/reports/summary", key=world.officer, params={**window, "force": None}
    )
    assert all(g["security_alerts"] is None for g in as_officer.body["groups"])


# --- item 3: alerts for the coordinators --------------------------------------------------------


async def test_alerts_are_for_admins_and_in_their_feed_only(
    world: World, make_api: AppFactory, clock: ManualClock
) -> None:
    api = await make_api(settings_overrides={"hold_cap_per_key": 1})
    site = await _instant_site(world, beds=2)
    assert (await _hold(api, world.officer, site["id"], clock)).status == 201
    assert (await _hold(api, world.officer, site["id"], clock)).status == 429
    # A repeat in the same hour counts up on the same alert.
    assert (await _hold(api, world.officer, site["id"], clock)).status == 429
    (alert,) = await _alerts(api, world.admin, force=world.force)
    assert alert["kind"] == "hold_cap" and alert["count"] == 2
    for key in (world.officer, world.provider):
        forbidden = await api.get("/v1/alerts", key=key)
        assert forbidden.status == 403
    feed = {"types": "security.alert", "limit": 500}
    admin_feed = (await api.get("/v1/events", key=world.admin, params=feed)).body["items"]
    raised = [e for e in admin_feed if e["data"]["force"] == world.force]
    assert [e["data"]["alert_id"] for e in raised] == [alert["id"]]
    assert raised[0]["data"]["kind"] == "hold_cap"
    officer_feed = await api.get("/v1/events", key=world.officer, params=feed)
    assert officer_feed.status == 200 and officer_feed.body["items"] == []


async def test_a_key_refused_by_limits_many_times_in_an_hour_raises_one_alert(
    world: World, make_api: AppFactory, clock: ManualClock
) -> None:
    api = await make_api(
        settings_overrides={"alert_refusals_per_hour": 3, "rate_limit_searches_per_minute": 1}
    )
    params = {"end": (clock.now() + timedelta(hours=12)).isoformat()}
    statuses = [
        (await api.get("/v1/availability", key=world.officer, params=params)).status
        for _ in range(6)
    ]
    assert statuses == [200, 429, 429, 429, 429, 429]
    (alert,) = await _alerts(api, world.admin, force=world.force, kind="repeated_refusals")
    assert "3 times" in alert["detail"] and alert["count"] == 1
    # The next hour starts a new count.
    clock.advance(hours=1)
    for _ in range(4):
        await api.get("/v1/availability", key=world.officer, params=params)
    assert len(await _alerts(api, world.admin, kind="repeated_refusals", force=world.force)) == 2


async def test_refusals_sent_with_idempotency_keys_never_starve_the_pool(
    world: World, make_api: AppFactory, clock: ManualClock, db: Pool
) -> None:
    """A refusal is recorded once the request's own connection is back: with a pool of three
    and four idempotent holds refused at once, each waiting for a second connection while
    holding its first would hang the service (found by review)."""
    api = await make_api(
        settings_overrides={"booking_cap_per_key": 1, "hold_cap_per_key": 1, "db_pool_max": 3}
    )
    sites = [await _instant_site(world) for _ in range(5)]
    assert (await _hold(api, world.officer, sites[0]["id"], clock)).status == 201

    async def refused(site: dict[str, Any]) -> Reply:
        body = booking_body(site["id"], clock.now())
        headers = {"Idempotency-Key": unique("refused")}
        return await api.post("/v1/bookings", body, key=world.officer, headers=headers)

    replies = await asyncio.wait_for(asyncio.gather(*(refused(s) for s in sites[1:])), 15)
    assert [r.status for r in replies] == [429] * 4
    officer_id = await _key_id(api, world.admin, world.officer)
    assert await _refusals_audited(db, officer_id) == [["bookings_per_key"]] * 4
