"""The unit of work (service/usecases/uow.py): what a request sends to PostgreSQL, and an
Idempotency-Key's answer kept in the same unit as the change (issue 16 item 1)."""

from __future__ import annotations

import inspect
import re
from typing import Any

import asyncpg
import pytest

from service import db as service_db
from service.db import Pool
from service.usecases import changes
from service.usecases.tx import ReadTx, Tx
from tests.support.clock import ManualClock
from tests.support.world import World, booking_body, unique

_CONTROL = re.compile(r"^\s*(BEGIN|SAVEPOINT|RELEASE|ROLLBACK|COMMIT)\b", re.IGNORECASE)


class _Sent:
    """Every statement the app's pooled connections send, and every checkout of one."""

    def __init__(self) -> None:
        self.statements: list[str] = []
        self.checkouts = 0

    def log(self, record: Any) -> None:
        self.statements.append(record.query)

    def clear(self) -> None:
        self.statements.clear()
        self.checkouts = 0

    @property
    def control(self) -> list[str]:
        return [m.group(1).upper() for s in self.statements if (m := _CONTROL.match(s))]

    @property
    def work(self) -> list[str]:
        return [s for s in self.statements if not _CONTROL.match(s)]


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> _Sent:
    seen = _Sent()
    init = service_db._init_connection

    async def logged(conn: Any) -> None:
        await init(conn)
        conn.add_query_logger(seen.log)

    monkeypatch.setattr(service_db, "_init_connection", logged)
    acquire = asyncpg.pool.Pool.acquire

    def counted(self: Any, *args: Any, **kwargs: Any) -> Any:
        seen.checkouts += 1
        return acquire(self, *args, **kwargs)

    monkeypatch.setattr(asyncpg.pool.Pool, "acquire", counted)
    return seen


async def test_a_hold_with_an_idempotency_key_is_one_transaction_on_one_connection(
    make_api: Any, clock: ManualClock, db: Pool, sent: _Sent
) -> None:
    """The key's lock and lookup, the hold and the stored answer: one BEGIN, one COMMIT and
    the bed claim's savepoint; one checkout for the key's authentication, one for the unit.
    Before the unit of work owned the key: 18 statements, 8 of transaction control (three
    nested savepoints), the same 2 checkouts."""
    world = await World.create(await make_api(), db)
    site = await world.site()
    await world.bed(site["id"])
    body = booking_body(site["id"], clock.now())
    sent.clear()
    reply = await world.api.post(
        "/v1/bookings", body, key=world.officer, headers={"Idempotency-Key": unique("hold")}
    )
    assert reply.status == 201
    assert sent.control == ["BEGIN", "SAVEPOINT", "RELEASE", "COMMIT"]
    assert sent.checkouts == 2
    assert len(sent.work) <= 18
    assert "idempotency_key" in sent.work[-1]


async def test_a_refusal_by_the_use_case_is_kept_without_its_change(
    world: World, clock: ManualClock, db: Pool
) -> None:
    """A 4xx a retry cannot change (here 422, a stay longer than the site's longest) is the
    key's answer: replayed, while nothing of the refused hold is left."""
    site = await world.site(max_stay_hours=12)
    await world.bed(site["id"])
    body = booking_body(site["id"], clock.now(), hours=24)
    headers = {"Idempotency-Key": unique("hold")}
    first = await world.api.post("/v1/bookings", body, key=world.officer, headers=headers)
    again = await world.api.post("/v1/bookings", body, key=world.officer, headers=headers)
    assert first.status == again.status == 422
    assert first.problem_type == "stay-too-long"
    assert again.body == first.body
    assert again.headers["Idempotent-Replayed"] == "true"
    async with db.acquire() as conn:
        assert (
            await conn.fetchval("SELECT count(*) FROM booking WHERE site_id = $1::uuid", site["id"])
            == 0
        )


def test_a_reading_unit_has_no_way_to_record() -> None:
    """mypy refuses `ReadTx.audit(...)` (service/usecases/tx.py): the methods are not there;
    and `changes.record`, which writes a change's history, events and audit, takes a `Tx`."""
    recording = {"audit", "audit_many"}
    assert recording <= set(dir(Tx))
    assert not recording & set(dir(ReadTx))
    for write in (changes.record, changes.record_all):
        assert inspect.signature(write).parameters["tx"].annotation in ("Tx", Tx)
