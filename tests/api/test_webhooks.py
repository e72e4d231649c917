"""Webhook subscriptions through the API: create, list, read, delete and the delivery log, each
role in its own scope; the secret shown once; the targets refused (SSRF) and the rules behind
them. Delivery itself is tested in tests/integration/test_webhook_dispatch.py."""

from __future__ import annotations

import random
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from service.db import Pool
from service.domain import webhooks as rules
from service.domain.webhooks import RetryPolicy
from service.errors import ValidationProblem
from service.queries import webhooks as store
from service.usecases.webhooks import TargetRules, check_target
from service.vocab import DeliveryOutcome, Role
from tests.conftest import AppFactory
from tests.support.api import Api
from tests.support.world import World, new_key, unique

PRIVATE_OK = {"webhook_allow_private": True}


@pytest.fixture(autouse=True)
async def _no_subscription_outlives_its_test(db: Pool) -> AsyncIterator[None]:
    """The session's database is shared: a test that runs the background jobs would dispatch
    to what these tests subscribed (private and public addresses alike). Nothing is left
    active for it."""
    yield
    async with db.acquire() as conn:
        await conn.execute("UPDATE webhook SET status = 'deleted' WHERE status <> 'deleted'")


HOOK = "http://127.0.0.1:9/hook"
TYPES = ["booking.confirmed", "booking.cancelled"]


async def _create(api: Api, key: str, url: str = HOOK, **extra: Any) -> dict[str, Any]:
    reply = await api.post("/v1/webhooks", {"url": url, "event_types": TYPES}, key=key, **extra)
    assert reply.status == 201, reply.body
    created: dict[str, Any] = reply.body
    return created


async def deliveries_of(api: Api, key: str, webhook_id: str) -> list[Any]:
    return await api.all_items(f"/v1/webhooks/{webhook_id}/deliveries", key=key, limit=5)


async def _audit(api: Api, admin: str, webhook_id: str) -> list[Any]:
    return await api.all_items(
        "/v1/audit", key=admin, params={"object_type": "webhook", "object_id": webhook_id}
    )


async def test_a_subscription_is_made_read_listed_and_deleted_in_its_scope(
    make_api: AppFactory, db: Pool
) -> None:
    api = await make_api(settings_overrides=PRIVATE_OK)
    world = await World.create(api, db)
    created = await _create(api, world.officer)
    hook_id = created["id"]
    assert created["url"] == HOOK
    assert created["event_types"] == TYPES
    assert created["status"] == "active"
    assert created["disabled_reason"] is None
    assert created["secret"].startswith("whsec_")

    shown = await api.get(f"/v1/webhooks/{hook_id}", key=world.officer)
    assert shown.status == 200
    assert "secret" not in shown.body
    assert shown.body == {k: v for k, v in created.items() if k != "secret"}

    # The same force's other officers manage it too; admins see everything.
    colleague = await new_key(api, world.admin, role="officer", force=world.force)
    assert (await api.get(f"/v1/webhooks/{hook_id}", key=colleague)).status == 200
    assert (await api.get(f"/v1/webhooks/{hook_id}", key=world.admin)).status == 200
    listed = await api.all_items("/v1/webhooks", key=world.officer)
    assert [w["id"] for w in listed] == [hook_id]
    assert all("secret" not in w for w in listed)
    assert hook_id in {w["id"] for w in await api.all_items("/v1/webhooks", key=world.admin)}

    # Another force's officer and a provider: not found, not listed, not deletable.
    other_force = unique("f")
    reply = await api.post(
        "/v1/forces", {"code": other_force, "name": f"Force {other_force}"}, key=world.admin
    )
    assert reply.status == 201
    stranger = await new_key(api, world.admin, role="officer", force=other_force)
    for outsider in (stranger, world.provider):
        assert (await api.get(f"/v1/webhooks/{hook_id}", key=outsider)).status == 404
        assert (await api.get(f"/v1/webhooks/{hook_id}/deliveries", key=outsider)).status == 404
        assert (await api.delete(f"/v1/webhooks/{hook_id}", key=outsider)).status == 404
        assert hook_id not in {w["id"] for w in await api.all_items("/v1/webhooks", key=outsider)}
    mine = await _create(api, stranger)
    assert [w["id"] for w in await api.all_items("/v1/webhooks", key=stranger)] == [mine["id"]]
    providers = await _create(api, world.provider)
    assert [w["id"] for w in await api.all_items("/v1/webhooks", key=world.provider)] == [
        providers["id"]
    ]

    deleted = await api.delete(f"/v1/webhooks/{hook_id}", key=colleague)
    assert deleted.status == 204
    assert (await api.get(f"/v1/webhooks/{hook_id}", key=world.officer)).status == 404
    assert (await api.delete(f"/v1/webhooks/{hook_id}", key=world.officer)).status == 404
    assert await api.all_items("/v1/webhooks", key=world.officer) == []
    async with db.acquire() as conn:
        status = await conn.fetchval("SELECT status FROM webhook WHERE id = $1::uuid", hook_id)
    assert status == "deleted"

    # Audited by field name only: never the URL or the secret.
    audit = await _audit(api, world.admin, hook_id)
    assert [(row["action"], row["fields"]) for row in audit] == [
        ("create", ["event_types", "url"]),
        ("delete", ["status"]),
    ]
    assert [row["scope"] for row in audit] == [world.force, world.force]
    assert created["secret"] not in str(audit) and HOOK not in str(audit)


async def test_a_paged_list(make_api: AppFactory, db: Pool) -> None:
    api = await make_api(settings_overrides=PRIVATE_OK)
    world = await World.create(api, db)
    made = [(await _create(api, world.officer))["id"] for _ in range(5)]
    first = await api.get("/v1/webhooks", key=world.officer, params={"limit": 2})
    assert first.status == 200
    assert [w["id"] for w in first.body["items"]] == made[:2]
    assert first.body["next_cursor"] is not None
    assert [w["id"] for w in await api.all_items("/v1/webhooks", key=world.officer, limit=2)] == (
        made
    )
    bad = await api.get("/v1/webhooks", key=world.officer, params={"cursor": "nonsense"})
    assert bad.status == 400 and bad.field_names() == {"cursor"}


async def test_the_secret_is_shown_once_and_an_idempotent_replay_shows_null(
    make_api: AppFactory, db: Pool
) -> None:
    api = await make_api(settings_overrides=PRIVATE_OK)
    world = await World.create(api, db)
    headers = {"Idempotency-Key": unique("hook")}
    body = {"url": HOOK, "event_types": TYPES}
    first = await api.post("/v1/webhooks", body, key=world.officer, headers=headers)
    again = await api.post("/v1/webhooks", body, key=world.officer, headers=headers)
    assert first.status == again.status == 201
    secret = first.body["secret"]
    assert secret.startswith("whsec_") and len(secret) == len("whsec_") + 44
    assert again.headers.get("Idempotent-Replayed") == "true"
    assert again.body == {**first.body, "secret": None}
    assert again.headers["Location"] == first.headers["Location"]
    # Only one subscription was made, and no stored answer holds the secret.
    assert [w["id"] for w in await api.all_items("/v1/webhooks", key=world.officer)] == [
        first.body["id"]
    ]
    async with db.acquire() as conn:
        stored = await conn.fetch("SELECT * FROM idempotency_key")
    assert secret not in str([dict(r) for r in stored])
    # Two subscriptions never share a secret.
    other = await _create(api, world.officer)
    assert other["secret"] != secret


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://169.254.169.254/latest/meta-data/",
        "http://localhost:8080/",
        "http://10.1.2.3/",
        "http://192.168.0.10/",
        "http://172.16.5.4/",
        "http://100.64.0.1/",
        "http://0.0.0.0/",
        "http://224.0.0.1/",
        "http://240.0.0.1/",
        "http://[::1]/",
        "http://[fd00::1]/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:169.254.169.254]/",
        "http://[64:ff9b::a9fe:a9fe]/",
        "http://host.invalid/",
    ],
)
async def test_private_targets_are_refused_unless_allowed(
    make_api: AppFactory, db: Pool, url: str
) -> None:
    refusing = await make_api()
    world = await World.create(refusing, db)
    reply = await refusing.post(
        "/v1/webhooks", {"url": url, "event_types": TYPES}, key=world.officer
    )
    assert reply.status == 400, reply.body
    assert reply.field_names() == {"url"}
    assert await refusing.all_items("/v1/webhooks", key=world.officer) == []
    if url == "http://host.invalid/":
        return  # unresolvable: refused whatever the settings say about private addresses
    allowing = await make_api(settings_overrides=PRIVATE_OK)
    assert (await _create(allowing, world.officer, url))["url"] == url


@pytest.mark.parametrize(
    "host",
    [
        "134744072",  # 8.8.8.8 as one decimal number
        "0x08080808",  # ... as one hexadecimal number
        "8.8.2056",  # the last part spanning two bytes
        "8.526344",
        "8.8",
        "010.8.8.8",  # octal: 8.8.8.8
        "0x8.0x8.0x8.0x8",
        "08.8.8.8",
        "8.8.8.8.",  # a trailing dot
        "[::ffff:134744072]",
    ],
)
async def test_an_ipv4_address_not_written_as_four_decimal_numbers_is_refused(
    make_api: AppFactory, db: Pool, host: str
) -> None:
    """Resolvers read these as 8.8.8.8 (inet_aton), the dispatcher's URL parser does not: a
    subscription to one could never be delivered. Refused whatever private targets may do."""
    for overrides in ({}, PRIVATE_OK):
        api = await make_api(settings_overrides=overrides)
        world = await World.create(api, db)
        reply = await api.post(
            "/v1/webhooks", {"url": f"http://{host}/hook", "event_types": TYPES}, key=world.officer
        )
        assert reply.status == 400, reply.body
        assert reply.field_names() == {"url"}


@pytest.mark.parametrize(
    ("host", "refused"),
    [
        ("93.184.215.14", False),
        ("8.8.8.8", False),
        ("123.example", False),  # a name may have numeric labels, but not end in one
        ("4.example.org", False),
        ("[2001:4860:4860::8888]", False),
        ("example.123", True),
        ("example.0x1f", True),
        ("1.2.3.4.5", True),
        ("256.1.1.1", True),
        ("\uff18.\uff18.\uff18.\uff18", True),  # full-width digits, read as 8.8.8.8
        ("8\u30028\u30028\u30028", True),  # ideographic full stops
        ("example.\uff11\uff12\uff13", True),
    ],
)
def test_the_form_of_an_address_in_a_url(host: str, refused: bool) -> None:
    problem = rules.url_problem(f"https://{host}/", require_https=True)
    assert (problem is not None) == refused, problem


async def test_public_targets_are_accepted(api: Api, world: World) -> None:
    # An address literal: nothing is resolved or contacted when the subscription is made.
    created = await _create(api, world.officer, "https://93.184.215.14/events?force=x")
    assert created["status"] == "active"


async def test_https_is_required_in_production(make_api: AppFactory, db: Pool) -> None:
    api = await make_api(settings_overrides={"environment": "production"})
    world = await World.create(api, db)
    reply = await api.post(
        "/v1/webhooks", {"url": "http://93.184.215.14/", "event_types": TYPES}, key=world.officer
    )
    assert reply.status == 400 and reply.field_names() == {"url"}
    assert "https" in reply.body["detail"]
    assert (await _create(api, world.officer, "https://93.184.215.14/"))["status"] == "active"
    # The check itself, with a resolver that answers a public address for any name.

    async def public(host: str, port: int) -> list[str]:
        return ["93.184.215.14"]

    production = TargetRules(require_https=True, allow_private=False)
    with pytest.raises(ValidationProblem):
        await check_target("http://receiver.example/", production, public)
    await check_target("https://receiver.example/", production, public)
    await check_target("http://receiver.example/", TargetRules(False, False), public)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"url": "ftp://93.184.215.14/", "event_types": TYPES}, "url"),
        ({"url": "https://user:pw@93.184.215.14/", "event_types": TYPES}, "url"),
        ({"url": "https:///nohost", "event_types": TYPES}, "url"),
        ({"url": "https://93.184.215.14/#frag", "event_types": TYPES}, "url"),
        ({"url": "https://93.184.215.14:99999/", "event_types": TYPES}, "url"),
        ({"url": "not a url", "event_types": TYPES}, "url"),
        ({"url": "https://93.184.215.14/", "event_types": []}, "event_types"),
        ({"url": "https://93.184.215.14/", "event_types": ["booking.nope"]}, "event_types.0"),
        ({"url": "https://93.184.215.14/", "event_types": TYPES + TYPES[:1]}, "event_types"),
        ({"event_types": TYPES}, "url"),
    ],
)
async def test_bad_subscriptions_are_refused(
    api: Api, world: World, body: dict[str, Any], field: str
) -> None:
    reply = await api.post("/v1/webhooks", body, key=world.officer)
    assert reply.status == 400, reply.body
    assert field in reply.field_names(), reply.body


async def test_the_delivery_log_is_newest_first_and_paged(make_api: AppFactory, db: Pool) -> None:
    api = await make_api(settings_overrides=PRIVATE_OK)
    world = await World.create(api, db)
    hook = await _create(api, world.officer)
    empty = await api.get(f"/v1/webhooks/{hook['id']}/deliveries", key=world.officer)
    assert empty.status == 200 and empty.body == {"items": [], "next_cursor": None}
    at = datetime(2030, 1, 1, tzinfo=UTC)
    site = await world.site()
    await world.bed(site["id"])  # an event to have been delivered
    async with db.acquire() as conn:
        event = await conn.fetchrow(
            "SELECT id, public_id::text AS public_id FROM event WHERE site_id = $1 LIMIT 1",
            site["id"],
        )
        assert event is not None
        # Twelve attempts: past ten, so ids that sort as text ("10" < "9") would show.
        for n in range(1, 13):
            await store.record(
                conn,
                webhook_id=hook["id"],
                event_id=event["id"],
                attempt=n,
                at=at + timedelta(seconds=n),
                status_code=500 if n < 12 else 200,
                duration_ms=7,
                error=None,
                outcome="retry" if n < 12 else "delivered",
                next_attempt_at=at + timedelta(seconds=10 * n) if n < 12 else None,
            )
    first = await api.get(
        f"/v1/webhooks/{hook['id']}/deliveries", key=world.officer, params={"limit": 2}
    )
    assert [d["attempt"] for d in first.body["items"]] == [12, 11]
    # The event's public id, as its deliveries sent it; delivery ids and cursors are no
    # global sequence either (issue 14 item 8).
    assert first.body["items"][0]["event_id"] == event["public_id"]
    assert len({d["id"] for d in first.body["items"]}) == 2
    assert all(not d["id"].isdigit() for d in first.body["items"])
    assert first.body["items"][0]["outcome"] == "delivered"
    assert first.body["items"][1]["next_attempt_at"] is not None
    rest = await api.get(
        f"/v1/webhooks/{hook['id']}/deliveries",
        key=world.officer,
        params={"limit": 2, "cursor": first.body["next_cursor"]},
    )
    assert [d["attempt"] for d in rest.body["items"]] == [10, 9]
    everything = await deliveries_of(api, world.officer, hook["id"])
    assert [d["attempt"] for d in everything] == list(range(12, 0, -1))
    bad = await api.get(
        f"/v1/webhooks/{hook['id']}/deliveries", key=world.officer, params={"cursor": "abc"}
    )
    assert bad.status == 400 and bad.field_names() == {"cursor"}
    missing = await api.get(
        "/v1/webhooks/00000000-0000-7000-8000-000000000000/deliveries", key=world.officer
    )
    assert missing.status == 404
    assert (await api.get("/v1/webhooks/not-a-uuid", key=world.officer)).status == 404


# --- the rules ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.9.9.9",
        "10.0.0.1",
        "172.31.255.255",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "100.127.255.254",
        "0.0.0.0",  # noqa: S104
        "224.0.0.251",
        "255.255.255.255",
        "240.0.0.1",
        "::1",
        "::",
        "fc00::1",
        "fd12:3456::1",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::7f00:1",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::",
    ],
)
def test_addresses_webhooks_may_not_reach(address: str) -> None:
    assert rules.refused_address(address) is not None


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "8.8.8.8",
        "2606:4700:4700::1111",
        "::ffff:93.184.215.14",
        "64:ff9b::808:808",
    ],
)
def test_public_addresses(address: str) -> None:
    assert rules.refused_address(address) is None


def test_backoff_grows_to_its_cap_with_full_jitter() -> None:
    policy = RetryPolicy(timedelta(seconds=5), timedelta(seconds=3600), timedelta(hours=25))
    ceilings = [rules.backoff(n, policy, lambda: 1.0).total_seconds() for n in range(1, 14)]
    assert ceilings == [5, 10, 20, 40, 80, 160, 320, 640, 1280, 2560, 3600, 3600, 3600]
    assert rules.backoff(1000, policy, lambda: 1.0) == timedelta(seconds=3600)
    assert rules.backoff(3, policy, lambda: 0.0) == timedelta(0)
    draws = [rules.backoff(4, policy, random.random).total_seconds() for _ in range(500)]
    assert all(0 <= d < 40 for d in draws)
    assert max(draws) - min(draws) > 20  # spread over the range, not bunched


def test_an_attempts_verdict() -> None:
    policy = RetryPolicy(timedelta(seconds=5), timedelta(seconds=3600), timedelta(hours=25))
    first = datetime(2030, 1, 1, tzinfo=UTC)

    def judge(status: int | None, at: datetime, attempt: int = 1) -> rules.Verdict:
        return rules.judge(
            status,
            attempt=attempt,
            first_attempt_at=first,
            at=at,
            policy=policy,
            random=lambda: 0.5,
        )

    for ok in (200, 201, 204, 299):
        assert judge(ok, first) == rules.Verdict(DeliveryOutcome.DELIVERED, advance=True)
    gone = judge(410, first)
    assert gone.outcome == DeliveryOutcome.DISABLED and not gone.advance
    assert gone.disabled_reason is not None
    for failed in (None, 301, 302, 400, 404, 429, 500, 503):
        retry = judge(failed, first, attempt=3)
        assert retry.outcome == DeliveryOutcome.RETRY and not retry.advance
        assert retry.next_attempt_at == first + timedelta(seconds=10)
    late = first + timedelta(hours=25)
    assert judge(500, late, attempt=40) == rules.Verdict(DeliveryOutcome.GAVE_UP, advance=True)
    assert judge(200, late) == rules.Verdict(DeliveryOutcome.DELIVERED, advance=True)


def test_an_officer_sees_only_which_sites_availability_changed() -> None:
    event = {
        "id": 7,
        "public_id": "0f6c1b8e-1d2a-4c3b-9e4f-5a6b7c8d9e0f",
        "type": "site.availability_changed",
        "occurred_at": datetime(2030, 1, 1, 12, 0, 0, 250000, tzinfo=UTC),
        "booking_id": None,
        "site_id": "6a0f5d0e-0000-7000-8000-000000000001",
        "data": {"site_id": "6a0f5d0e-0000-7000-8000-000000000001", "cause": "booking_held"},
    }
    as_officer = rules.event_body(event, Role.OFFICER)
    assert as_officer == {
        "id": "0f6c1b8e-1d2a-4c3b-9e4f-5a6b7c8d9e0f",  # the public id, never the sequence
        "type": "site.availability_changed",
        "occurred_at": "2030-01-01T12:00:00.250000Z",
        "booking_id": None,
        "site_id": event["site_id"],
        "data": {"site_id": event["site_id"]},
    }
    assert rules.event_body(event, Role.PROVIDER)["data"] == event["data"]


async def test_revoking_a_key_disables_the_subscriptions_it_made(
    make_api: AppFactory, db: Pool
) -> None:
    """Whoever held a revoked key must not go on receiving its scope's events at the URL they
    chose: its subscriptions are disabled with it (and audited), others are not."""
    api = await make_api(settings_overrides=PRIVATE_OK)
    world = await World.create(api, db)
    doomed = await new_key(api, world.admin, role="officer", force=world.force)
    theirs = await _create(api, doomed)
    ours = await _create(api, world.officer)
    keys = await api.all_items("/v1/api-keys", key=world.admin, limit=200)
    doomed_id = next(k["id"] for k in keys if doomed.startswith(k["prefix"]))
    revoked = await api.delete(f"/v1/api-keys/{doomed_id}", key=world.admin)
    assert revoked.status == 204
    seen = await api.get(f"/v1/webhooks/{theirs['id']}", key=world.officer)
    assert seen.status == 200
    assert seen.body["status"] == "disabled"
    assert "revoked" in seen.body["disabled_reason"]
    still = await api.get(f"/v1/webhooks/{ours['id']}", key=world.officer)
    assert still.body["status"] == "active"
    changed = [row["action"] for row in await _audit(api, world.admin, theirs["id"])]
    assert changed == ["create", "update"]
    async with db.acquire() as conn:
        claimable = await store.claim(conn, datetime.now(UTC) + timedelta(days=1), 60, 50)
    assert theirs["id"] not in {str(row["id"]) for row in claimable}
