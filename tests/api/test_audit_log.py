"""The audit log (issue 8 item 4, SPEC section 8), seen through the API and the database.

Every route that shows a booking (POST /v1/bookings, GET one, lists, every action's answer, an
Idempotency-Key replay) records one `read` row per booking shown, as the caller who saw it and
with the request's own X-Request-ID, naming the personal fields shown and never their values.
Each transition records its own row under its action's name. A request that fails and rolls
back records nothing, neither audit nor event. Admins read the log at GET /v1/audit; erasing
personal fields is audited and leaves the earlier rows as they were.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import pytest

from service.auth import hash_key
from service.db import Pool
from tests.support.api import Api, Reply
from tests.support.clock import ManualClock
from tests.support.process import pos, pos_env
from tests.support.world import World, booking_body, unique

PERSONAL = ("person_ref", "officer_collar", "notes")
SITE_DISCLOSED = frozenset({"site.address", "site.phone"})
# Transitions that change a booking's state (extend changes its end; hold creates it).
STATUS_CHANGING = frozenset(
    {"confirm", "accept", "decline", "cancel", "check-in", "check-out", "no-show"}
)


def _at(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


@dataclass(frozen=True)
class Caller:
    """A test key and what the audit log must say about it."""

    secret: str
    key_id: UUID
    role: str
    scope: str | None


async def _caller(db: Pool, secret: str) -> Caller:
    async with db.acquire() as conn:
        row = await conn.fetchrow(
            "SELECT id, role, force_code, provider_id FROM api_key WHERE key_hash = $1",
            hash_key(secret),
        )
    assert row is not None
    scope = {
        "officer": row["force_code"],
        "provider": None if row["provider_id"] is None else str(row["provider_id"]),
        "admin": None,
    }[row["role"]]
    return Caller(secret, row["id"], row["role"], scope)


def shown_fields(booking: dict[str, Any]) -> set[str]:
    """What a read of this booking's answer disclosed: its personal fields that are set, and
    the site's address and phone when the answer holds them."""
    fields = {name for name in PERSONAL if booking.get(name) is not None}
    fields |= {f"site.{name}" for name in ("address", "phone") if name in booking["site"]}
    return fields


@dataclass
class Audited:
    """The world of one test, seen by request id in the audit table."""

    world: World
    db: Pool
    clock: ManualClock
    officer: Caller
    provider: Caller
    admin: Caller
    # Every personal value sent: no audit column may ever hold one.
    personal_values: set[str] = field(default_factory=set)
    first_audit_id: int = 0

    @property
    def api(self) -> Api:
        return self.world.api

    async def call(
        self,
        method: str,
        path: str,
        who: Caller,
        body: Any = None,
        params: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
        contract: bool = True,
    ) -> tuple[Reply, str]:
        """One request with a request id of its own; returns the reply and that id."""
        request_id = f"audit-test-{uuid.uuid4().hex}"
        reply = await self.api.request(
            method,
            path,
            key=who.secret,
            json_body=body,
            params=params,
            headers={"X-Request-ID": request_id, **(headers or {})},
            contract=contract,
        )
        assert reply.headers["X-Request-ID"] == request_id
        return reply, request_id

    async def rows(self, request_id: str) -> list[asyncpg.Record]:
        async with self.db.acquire() as conn:
            return list(
                await conn.fetch(
                    "SELECT * FROM audit WHERE request_id = $1 ORDER BY id", request_id
                )
            )

    async def check_reads(
        self, request_id: str, who: Caller, shown: Sequence[dict[str, Any]]
    ) -> list[asyncpg.Record]:
        """Exactly one `read` row per booking shown, as `who`, naming what was disclosed.
        Returns every row the request left."""
        rows = await self.rows(request_id)
        for row in rows:
            assert (row["api_key_id"], row["role"], row["scope"]) == (
                who.key_id,
                who.role,
                who.scope,
            ), dict(row)
            assert row["at"] == self.clock.now(), "the audit row is dated by the service's clock"
            assert all(
                name.replace("-", "_").replace(".", "_").isidentifier() for name in row["fields"]
            ), row["fields"]
        reads = [r for r in rows if r["action"] == "read"]
        assert sorted(r["object_id"] for r in reads) == sorted(b["id"] for b in shown)
        by_id = {b["id"]: b for b in shown}
        for read in reads:
            assert read["object_type"] == "booking"
            got = set(read["fields"])
            assert len(got) == len(read["fields"]), read["fields"]
            expected = shown_fields(by_id[read["object_id"]])
            if who.role == "officer":
                # Disclosing a site's address or phone to an officer is audited, always.
                assert got == expected, (read["object_id"], got, expected)
            else:
                # A provider's own site, or an admin: the personal fields are what counts.
                assert got - SITE_DISCLOSED == expected - SITE_DISCLOSED, (got, expected)
                assert got & SITE_DISCLOSED <= expected & SITE_DISCLOSED, (got, expected)
        return rows

    async def hold(
        self, site_id: str, start: datetime | None = None, hours: float = 24, **overrides: Any
    ) -> dict[str, Any]:
        body = booking_body(
            site_id,
            start or self.clock.now(),
            hours,
            person_ref=unique("REF"),
            officer_collar=unique("PC"),
            **overrides,
        )
        self.personal_values |= {str(body[name]) for name in PERSONAL if body.get(name)}
        reply, request_id = await self.call("POST", "/v1/bookings", self.officer, body)
        assert reply.status == 201, reply.body
        booking: dict[str, Any] = reply.body
        rows = await self.check_reads(request_id, self.officer, [booking])
        self.check_own_row(rows, booking["id"], "hold")
        return booking

    async def act(
        self, booking: dict[str, Any], action: str, who: Caller, **body: Any
    ) -> dict[str, Any]:
        reply, request_id = await self.call(
            "POST", f"/v1/bookings/{booking['id']}/{action}", who, body or None
        )
        assert reply.status == 200, reply.body
        shown: dict[str, Any] = reply.body
        rows = await self.check_reads(request_id, who, [shown])
        self.check_own_row(rows, booking["id"], action)
        return shown

    def check_own_row(self, rows: Sequence[asyncpg.Record], booking_id: str, action: str) -> None:
        """A change: its own row under the action's name, and one read of the answer."""
        assert Counter((r["object_type"], r["object_id"], r["action"]) for r in rows) == {
            ("booking", booking_id, action): 1,
            ("booking", booking_id, "read"): 1,
        }
        (own,) = [r for r in rows if r["action"] == action]
        if action in STATUS_CHANGING:
            assert "status" in own["fields"], own["fields"]

    async def get_one(self, booking_id: str, who: Caller) -> dict[str, Any]:
        reply, request_id = await self.call("GET", f"/v1/bookings/{booking_id}", who)
        assert reply.status == 200, reply.body
        rows = await self.check_reads(request_id, who, [reply.body])
        assert [r["action"] for r in rows] == ["read"]
        shown: dict[str, Any] = reply.body
        return shown

    async def last_read(self, booking_id: str, who: Caller) -> set[str]:
        """The fields named by the latest read of this booking by this caller."""
        async with self.db.acquire() as conn:
            fields = await conn.fetchval(
                "SELECT fields FROM audit WHERE action = 'read' AND object_type = 'booking'"
                " AND object_id = $1 AND api_key_id = $2 ORDER BY id DESC LIMIT 1",
                booking_id,
                who.key_id,
            )
        assert fields is not None
        return set(fields)

    async def check_no_values(self) -> None:
        """No audit row written during the test holds a personal value that was sent."""
        async with self.db.acquire() as conn:
            rows = await conn.fetch(
                "SELECT a::text AS row FROM audit a WHERE id > $1", self.first_audit_id
            )
        assert rows, "the test wrote audit rows"
        assert self.personal_values
        for row in rows:
            for value in self.personal_values:
                assert value not in row["row"], f"an audit row holds a personal value: {row}"

    async def counts(self) -> tuple[int, int]:
        async with self.db.acquire() as conn:
            row = await conn.fetchrow(
                "SELECT (SELECT count(*) FROM audit) AS audit,"
                " (SELECT count(*) FROM event) AS event"
            )
        assert row is not None
        return int(row["audit"]), int(row["event"])


@pytest.fixture
async def audited(world: World, db: Pool, clock: ManualClock) -> Audited:
    async with db.acquire() as conn:
        first = int(await conn.fetchval("SELECT coalesce(max(id), 0) FROM audit"))
    return Audited(
        world,
        db,
        clock,
        officer=await _caller(db, world.officer),
        provider=await _caller(db, world.provider),
        admin=await _caller(db, world.admin),
        first_audit_id=first,
    )


async def test_an_instant_stay_audits_every_answer_and_transition(audited: Audited) -> None:
    a = audited
    site = await a.world.site(booking_mode="instant", max_stay_hours=72)
    await a.world.bed(site["id"])
    start = a.clock.now()
    booking = await a.hold(site["id"], start, notes=unique("NOTE"))
    assert shown_fields(booking) == {"person_ref", "officer_collar", "notes"}
    bid = booking["id"]

    # A held booking: the officer is not shown the address, and the read says so.
    held = await a.get_one(bid, a.officer)
    assert "site.address" not in shown_fields(held) and "site.phone" not in shown_fields(held)
    assert await a.last_read(bid, a.officer) == {"person_ref", "officer_collar", "notes"}
    for who in (a.provider, a.admin):
        await a.get_one(bid, who)

    # Confirmed at an instant site: the officer is shown the address and phone, audited.
    confirmed = await a.act(booking, "confirm", a.officer)
    assert confirmed["status"] == "confirmed"
    assert {"site.address", "site.phone"} <= shown_fields(confirmed)
    again = await a.get_one(bid, a.officer)
    assert {"site.address", "site.phone"} <= shown_fields(again)
    assert await a.last_read(bid, a.officer) == {
        "person_ref",
        "officer_collar",
        "notes",
        "site.address",
        "site.phone",
    }

    longer = await a.act(booking, "extend", a.officer, end=_at(start + timedelta(hours=36)))
    assert longer["end"] == _at(start + timedelta(hours=36))
    a.clock.advance(minutes=30)
    arrived = await a.act(booking, "check-in", a.provider)
    assert arrived["status"] == "arrived"
    a.clock.advance(hours=10)
    departed = await a.act(booking, "check-out", a.provider, reason="moved on")
    assert departed["status"] == "departed"
    await a.get_one(bid, a.admin)
    await a.check_no_values()


async def test_a_request_site_audits_pending_accept_and_decline(audited: Audited) -> None:
    a = audited
    site = await a.world.site(booking_mode="request")
    await a.world.bed(site["id"])
    await a.world.bed(site["id"])
    accepted = await a.hold(site["id"])
    pending = await a.act(accepted, "confirm", a.officer)
    assert pending["status"] == "pending"
    # Pending: no address for the officer, in the answer or in the audit.
    assert not shown_fields(pending) & SITE_DISCLOSED
    done = await a.act(accepted, "accept", a.provider)
    assert done["status"] == "confirmed"
    assert {"site.address", "site.phone"} <= shown_fields(await a.get_one(done["id"], a.officer))

    declined = await a.hold(site["id"])
    await a.act(declined, "confirm", a.officer)
    no = await a.act(declined, "decline", a.provider, reason="no female staff tonight")
    assert no["status"] == "declined"
    await a.check_no_values()


@pytest.mark.parametrize("role", ["officer", "provider"])
async def test_cancel_is_audited_as_whoever_cancelled(audited: Audited, role: str) -> None:
    a = audited
    site = await a.world.site()
    await a.world.bed(site["id"])
    await a.world.bed(site["id"])
    who = a.officer if role == "officer" else a.provider
    held = await a.hold(site["id"])
    gone = await a.act(held, "cancel", who, reason="released by court")
    assert gone["status"] == "cancelled"
    confirmed = await a.hold(site["id"], notes=unique("NOTE"))
    await a.act(confirmed, "confirm", a.officer)
    also_gone = await a.act(confirmed, "cancel", who, reason="released by court")
    assert also_gone["status"] == "cancelled"
    await a.check_no_values()


async def test_a_no_show_is_audited(audited: Audited) -> None:
    a = audited
    site = await a.world.site()
    await a.world.bed(site["id"])
    booking = await a.hold(site["id"])
    await a.act(booking, "confirm", a.officer)
    a.clock.advance(hours=2, seconds=1)
    gone = await a.act(booking, "no-show", a.provider)
    assert gone["status"] == "no_show"
    await a.check_no_values()


async def test_an_idempotent_replay_audits_the_read_and_not_the_change(audited: Audited) -> None:
    a = audited
    site = await a.world.site()
    await a.world.bed(site["id"])
    await a.world.bed(site["id"])
    body = booking_body(
        site["id"], a.clock.now(), person_ref=unique("REF"), officer_collar=unique("PC")
    )
    a.personal_values |= {body["person_ref"], body["officer_collar"]}
    hold_key = {"Idempotency-Key": unique("hold")}
    first, first_id = await a.call("POST", "/v1/bookings", a.officer, body, headers=hold_key)
    assert first.status == 201, first.body
    bid = first.body["id"]
    a.check_own_row(await a.check_reads(first_id, a.officer, [first.body]), bid, "hold")
    before = await a.counts()

    replay, replay_id = await a.call("POST", "/v1/bookings", a.officer, body, headers=hold_key)
    assert replay.status == 201 and replay.headers["Idempotent-Replayed"] == "true"
    assert replay.body["id"] == bid
    rows = await a.check_reads(replay_id, a.officer, [replay.body])
    assert [(r["action"], r["object_id"]) for r in rows] == [("read", bid)]
    audit_rows, events = await a.counts()
    assert (audit_rows, events) == (before[0] + 1, before[1]), "a replay changes nothing"

    confirm_key = {"Idempotency-Key": unique("confirm")}
    path = f"/v1/bookings/{bid}/confirm"
    done, done_id = await a.call("POST", path, a.officer, headers=confirm_key)
    assert done.status == 200, done.body
    a.check_own_row(await a.check_reads(done_id, a.officer, [done.body]), bid, "confirm")
    again, again_id = await a.call("POST", path, a.officer, headers=confirm_key)
    assert again.status == 200 and again.headers["Idempotent-Replayed"] == "true"
    rows = await a.check_reads(again_id, a.officer, [again.body])
    assert [(r["action"], r["object_id"]) for r in rows] == [("read", bid)]
    assert {"site.address", "site.phone"} <= {f for r in rows for f in r["fields"]}
    await a.check_no_values()


async def test_lists_audit_one_read_per_booking_shown(audited: Audited) -> None:
    a = audited
    site = await a.world.site()
    for _ in range(4):
        await a.world.bed(site["id"])
    made = [await a.hold(site["id"], notes=unique("NOTE")) for _ in range(2)]
    made.append(await a.hold(site["id"]))  # no notes: 'notes' is not named for this one
    await a.act(made[0], "confirm", a.officer)
    made.append(await a.hold(site["id"]))
    await a.act(made[3], "cancel", a.officer, reason="not needed")
    ids = [b["id"] for b in made]

    for who, params in (
        (a.officer, {"site_id": site["id"]}),
        (a.provider, {"site_id": site["id"]}),
        (a.admin, {"site_id": site["id"], "force": a.world.force}),
    ):
        reply, request_id = await a.call("GET", "/v1/bookings", who, params=params)
        assert reply.status == 200, reply.body
        items = reply.body["items"]
        assert sorted(b["id"] for b in items) == sorted(ids) and reply.body["next_cursor"] is None
        rows = await a.check_reads(request_id, who, items)
        assert [r["action"] for r in rows] == ["read"] * 4
        if who is a.officer:
            fields = {r["object_id"]: set(r["fields"]) for r in rows}
            # A list discloses no address to an officer (issue 14), confirmed or not, and
            # the one without notes names none.
            assert not fields[made[0]["id"]] & SITE_DISCLOSED
            assert not fields[made[1]["id"]] & SITE_DISCLOSED
            assert fields[made[2]["id"]] == {"person_ref", "officer_collar"}

    # Paged: each page audits what it showed, under its own request id.
    seen: list[str] = []
    cursor = None
    while True:
        reply, request_id = await a.call(
            "GET",
            "/v1/bookings",
            a.provider,
            params={"site_id": site["id"], "limit": 3, "cursor": cursor},
        )
        assert reply.status == 200, reply.body
        items = reply.body["items"]
        assert 1 <= len(items) <= 3
        rows = await a.check_reads(request_id, a.provider, items)
        assert len(rows) == len(items)
        seen += [b["id"] for b in items]
        cursor = reply.body["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == sorted(ids) and len(seen) == len(set(seen))

    # Nothing shown, nothing audited.
    empty, empty_id = await a.call(
        "GET", "/v1/bookings", a.officer, params={"site_id": site["id"], "status": "declined"}
    )
    assert empty.status == 200 and empty.body["items"] == []
    assert await a.rows(empty_id) == []
    await a.check_no_values()


async def test_a_request_that_fails_leaves_no_audit_row_and_no_event(audited: Audited) -> None:
    a = audited
    site = await a.world.site(max_stay_hours=72)
    bed = await a.world.bed(site["id"])
    start = a.clock.now()
    booking = await a.hold(site["id"], start, hours=24)
    await a.act(booking, "confirm", a.officer)
    later = {
        "bed_id": bed["id"],
        "start": _at(start + timedelta(hours=26)),
        "end": _at(start + timedelta(hours=30)),
        "reason": "deep clean",
    }
    block, _ = await a.call("POST", f"/v1/sites/{site['id']}/blocks", a.provider, later)
    assert block.status == 201, block.body

    async def refused(
        method: str, path: str, who: Caller, body: Any, status: int, slug: str
    ) -> None:
        before = await a.counts()
        reply, request_id = await a.call(method, path, who, body)
        assert reply.status == status and reply.problem_type == slug, reply.body
        assert await a.rows(request_id) == []
        assert await a.counts() == before

    # A hold with no free bed.
    full = booking_body(site["id"], start, person_ref=unique("REF"), officer_collar=unique("PC"))
    a.personal_values |= {full["person_ref"], full["officer_collar"]}
    await refused("POST", "/v1/bookings", a.officer, full, 409, "no-capacity")
    # An extend into the blocked period.
    await refused(
        "POST",
        f"/v1/bookings/{booking['id']}/extend",
        a.officer,
        {"end": _at(start + timedelta(hours=28))},
        409,
        "bed-unavailable",
    )
    # A block over the booking.
    over = {
        **later,
        "start": _at(start + timedelta(hours=1)),
        "end": _at(start + timedelta(hours=3)),
    }
    await refused("POST", f"/v1/sites/{site['id']}/blocks", a.provider, over, 409, "overlap")
    # A verb the role lacks.
    await refused(
        "POST", f"/v1/bookings/{booking['id']}/cancel", a.admin, {"reason": "x"}, 403, "forbidden"
    )
    # Nothing changed: the booking is as it was, and the block count too.
    still = await a.get_one(booking["id"], a.officer)
    assert still["status"] == "confirmed" and still["end"] == _at(start + timedelta(hours=24))
    async with a.db.acquire() as conn:
        blocks = await conn.fetchval(
            "SELECT count(*) FROM allocation WHERE site_id = $1::uuid AND kind = 'block'",
            site["id"],
        )
    assert blocks == 1
    await a.check_no_values()


async def test_admins_read_the_audit_log_by_booking_paged(audited: Audited) -> None:
    a = audited
    site = await a.world.site()
    await a.world.bed(site["id"])
    booking = await a.hold(site["id"])
    bid = booking["id"]
    await a.act(booking, "confirm", a.officer)
    await a.get_one(bid, a.provider)
    await a.act(booking, "check-in", a.provider)
    await a.get_one(bid, a.admin)

    async with a.db.acquire() as conn:
        expected = [
            (r["request_id"], r["action"], r["api_key_id"])
            for r in await conn.fetch(
                "SELECT request_id, action, api_key_id FROM audit"
                " WHERE object_type = 'booking' AND object_id = $1 ORDER BY id",
                bid,
            )
        ]
    assert len(expected) == 8  # hold, confirm, check-in and a read with each; two GETs

    def shape(items: list[Any]) -> list[tuple[str, str]]:
        for item in items:
            assert item["object_type"] == "booking" and item["object_id"] == bid
        return [(i["request_id"], i["action"]) for i in items]

    want = [(request_id, action) for request_id, action, _ in expected]
    first = await a.api.get("/v1/audit", key=a.admin.secret, params={"booking_id": bid, "limit": 3})
    assert first.status == 200, first.body
    assert len(first.body["items"]) == 3 and first.body["next_cursor"]
    paged = await a.api.all_items(
        "/v1/audit", key=a.admin.secret, params={"booking_id": bid}, limit=3
    )
    assert shape(paged) == want
    by_object = await a.api.all_items(
        "/v1/audit",
        key=a.admin.secret,
        params={"object_type": "booking", "object_id": bid},
        limit=5,
    )
    assert shape(by_object) == want
    by_key = await a.api.all_items(
        "/v1/audit",
        key=a.admin.secret,
        params={"booking_id": bid, "key_id": str(a.provider.key_id)},
    )
    assert shape(by_key) == [
        (request_id, action) for request_id, action, key in expected if key == a.provider.key_id
    ]
    for who in (a.officer, a.provider):
        refused = await a.api.get("/v1/audit", key=who.secret, params={"booking_id": bid})
        assert refused.status == 403 and refused.problem_type == "forbidden", refused.body


@pytest.mark.slow
async def test_erasing_personal_fields_is_audited_and_keeps_earlier_rows(
    audited: Audited, database_dsn: str
) -> None:
    # Erasure runs as `pos purge` runs it (the CLI calls the purge use case), so this holds
    # whatever the use case's signature.
    a = audited
    site = await a.world.site()
    await a.world.bed(site["id"])
    booking = await a.hold(site["id"], notes=unique("NOTE"))
    await a.act(booking, "confirm", a.officer)
    await a.act(booking, "check-in", a.provider)
    await a.act(booking, "check-out", a.provider)
    await a.get_one(booking["id"], a.admin)
    async with a.db.acquire() as conn:
        await conn.execute(
            "UPDATE allocation SET updated_at = now() - interval '91 days',"
            " ended_at = ended_at - interval '91 days' WHERE id = $1::uuid",
            booking["id"],
        )
        earlier = {
            r["id"]: r["row"] for r in await conn.fetch("SELECT id, a::text AS row FROM audit a")
        }
    assert earlier

    code, out, err = await pos("purge", env=pos_env(DATABASE_URL=database_dsn))
    assert code == 0, (out, err)

    erased = await a.get_one(booking["id"], a.admin)
    assert [erased[name] for name in PERSONAL] == [None, None, None]
    async with a.db.acquire() as conn:
        now = {
            r["id"]: r["row"] for r in await conn.fetch("SELECT id, a::text AS row FROM audit a")
        }
        erasures = await conn.fetch(
            "SELECT * FROM audit WHERE action = 'erase' AND object_id = $1", booking["id"]
        )
    assert {i: now[i] for i in earlier} == earlier, "erasure left earlier audit rows alone"
    assert len(erasures) == 1
    (erasure,) = erasures
    assert (erasure["object_type"], erasure["role"], erasure["api_key_id"]) == (
        "booking",
        "cli",
        None,
    )
    assert "person_ref" in erasure["fields"] and set(erasure["fields"]) <= set(PERSONAL)
    await a.check_no_values()


async def test_head_on_an_audited_read_is_refused_and_audits_nothing(audited: Audited) -> None:
    """A HEAD shows nothing, so it is no read to audit; answered like a GET unaudited, its
    Content-Length would still tell the size of what a GET shows (notes, an address). So the
    routes whose GET is audited do not answer HEAD at all (issue 14 item 14)."""
    a = audited
    site = await a.world.site()
    await a.world.bed(site["id"])
    booking = await a.hold(site["id"], notes=unique("NOTE"))
    before = await a.counts()
    for who in (a.officer, a.provider, a.admin):
        for path in (f"/v1/bookings/{booking['id']}", "/v1/bookings"):
            reply, request_id = await a.call("HEAD", path, who, contract=False)
            assert reply.status == 405, (path, reply.status)
            allowed = reply.headers["Allow"].split(",")
            assert "GET" in allowed and "HEAD" not in allowed
            assert reply.raw == b""
            assert await a.rows(request_id) == []
    assert await a.counts() == before
