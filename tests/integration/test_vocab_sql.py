"""One vocabulary: every fixed list the migrations spell out in SQL (CHECKs, the exclusion
constraint's WHERE, live_claims(), the event_type table) says exactly what service/vocab.py
says.

The lists are read back from the migrated database's catalog (what PostgreSQL enforces, as it
prints it), not from the .sql files, so a later migration that changes a CHECK is held too.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import asyncpg
import pytest

from service.db import Pool
from service.vocab import (
    ALL_REASON_CODES,
    ALLOCATION_STATUSES,
    LIVE_STATUSES,
    REASON_CODES,
    TERMINAL_STATUSES,
    AlertKind,
    AllocationKind,
    AuditAction,
    BookingMode,
    BookingStatus,
    DeliveryOutcome,
    EmptyCause,
    EventType,
    Gender,
    NeedsMet,
    ObjectType,
    Role,
    RoomType,
    SiteStatus,
    WebhookStatus,
)
from tests.support.world import bootstrap_admin

_LITERAL = re.compile(r"'((?:[^']|'')*)'")


def quoted_lists(text: str, column: str) -> list[list[str]]:
    """Every list of quoted literals `column` is tested against in `text`, in the forms
    PostgreSQL prints and people write: `column = ANY (ARRAY['a'::text, ...])`,
    `column <@ ARRAY[...]` and `column IN ('a', ...)` (a qualified `t.column` too)."""
    name = rf"(?<![\w.])(?:\w+\.)?\(?{re.escape(column)}\)?(?:::[\w\[\]]+)?"
    patterns = (
        rf"{name}\s*=\s*ANY\s*\(\s*\(?\s*ARRAY\[(?P<items>[^\]]*)\]",
        rf"{name}\s*<@\s*\(?\s*ARRAY\[(?P<items>[^\]]*)\]",
        rf"{name}\s+IN\s*\((?P<items>[^)]*)\)",
    )
    found: list[list[str]] = []
    for pattern in patterns:
        for match in re.finditer(pattern, text, flags=re.IGNORECASE):
            found.append([v.replace("''", "'") for v in _LITERAL.findall(match["items"])])
    return found


def check_same(where: str, lists: list[list[str]], expected: Iterable[str]) -> None:
    """At least one list was found, and each holds exactly the expected values, once each."""
    want = sorted(str(v) for v in expected)
    assert lists, f"{where}: no quoted list found"
    for values in lists:
        assert len(values) == len(set(values)), f"{where}: a value repeats in {values}"
        assert sorted(values) == want, (
            f"{where}: SQL says {sorted(values)}, service/vocab.py says {want}"
            f" (missing from SQL: {sorted(set(want) - set(values))},"
            f" not in vocab: {sorted(set(values) - set(want))})"
        )


# --- The parser and the comparison, on known text: proof the check below can fail. ---

PRINTED_CHECK = "CHECK ((role = ANY (ARRAY['admin'::text, 'officer'::text, 'provider'::text])))"


def test_the_parser_reads_each_form_postgresql_prints() -> None:
    assert quoted_lists(PRINTED_CHECK, "role") == [["admin", "officer", "provider"]]
    assert quoted_lists(
        "CHECK (((cardinality(genders_accepted) > 0) AND (genders_accepted <@ "
        "ARRAY['female'::text, 'male'::text, 'non_binary'::text])))",
        "genders_accepted",
    ) == [["female", "male", "non_binary"]]
    assert quoted_lists(
        "CHECK (((status)::text = ANY ((ARRAY['a'::character varying, 'b'])::text[])))",
        "status",
    ) == [["a", "b"]]
    assert quoted_lists("WHERE a.status IN ('blocked', 'it''s')", "status") == [["blocked", "it's"]]
    # Another column's list, or a comparison with one value, is not this column's list.
    assert quoted_lists("CHECK ((kind = 'block') = (status = 'blocked'))", "status") == []
    assert quoted_lists(PRINTED_CHECK, "ole") == []
    assert quoted_lists("CHECK ((api_role = ANY (ARRAY['x'::text])))", "role") == []


def test_a_list_missing_a_value_or_with_an_extra_one_fails() -> None:
    missing = "CHECK ((role = ANY (ARRAY['admin'::text, 'officer'::text])))"
    with pytest.raises(AssertionError, match=r"missing from SQL: \['provider'\]"):
        check_same("api_key.role", quoted_lists(missing, "role"), Role)
    extra = "CHECK ((role = ANY (ARRAY['admin'::text, 'officer'::text, 'provider', 'root'])))"
    with pytest.raises(AssertionError, match=r"not in vocab: \['root'\]"):
        check_same("api_key.role", quoted_lists(extra, "role"), Role)
    repeated = "CHECK ((role IN ('admin', 'officer', 'provider', 'admin')))"
    with pytest.raises(AssertionError, match="repeats"):
        check_same("api_key.role", quoted_lists(repeated, "role"), Role)
    with pytest.raises(AssertionError, match="no quoted list"):
        check_same("api_key.role", quoted_lists("CHECK (true)", "role"), Role)
    check_same("api_key.role", quoted_lists(PRINTED_CHECK, "role"), Role)


# --- The migrated database against service/vocab.py. ---

CHECKS = """
SELECT pg_get_constraintdef(c.oid)
FROM pg_constraint c
WHERE c.conrelid = $1::regclass AND c.contype = 'c'
"""

COLUMN_CHECKS: list[tuple[str, str, frozenset[str]]] = [
    ("api_key", "role", frozenset(Role)),
    ("site", "genders_accepted", frozenset(Gender)),
    ("booking", "gender", frozenset(Gender)),
    ("bed", "room_type", frozenset(RoomType)),
    ("site", "booking_mode", frozenset(BookingMode)),
    ("site", "status", frozenset(SiteStatus)),
    ("allocation", "kind", frozenset(AllocationKind)),
    ("allocation", "status", frozenset(ALLOCATION_STATUSES)),
    ("booking_transition", "status", frozenset(BookingStatus)),
    ("audit", "action", frozenset(AuditAction)),
    ("audit", "object_type", frozenset(ObjectType)),
    ("audit", "role", frozenset({*Role, "system", "cli"})),
    ("webhook", "role", frozenset(Role)),
    ("webhook", "status", frozenset(WebhookStatus)),
    ("webhook_delivery", "outcome", frozenset(DeliveryOutcome)),
    ("search", "empty_cause", frozenset(EmptyCause)),
    ("booking_transition", "reason_code", ALL_REASON_CODES),
    # The actions that carry a reason code (and only they).
    ("booking_transition", "action", frozenset(REASON_CODES)),
    ("feedback", "needs_met", frozenset(NeedsMet)),
    ("security_alert", "kind", frozenset(AlertKind)),
]


@pytest.mark.parametrize(
    ("table", "column", "expected"),
    COLUMN_CHECKS,
    ids=[f"{t}.{c}" for t, c, _ in COLUMN_CHECKS],
)
async def test_check_constraints_list_the_vocabulary(
    db: Pool, table: str, column: str, expected: frozenset[str]
) -> None:
    async with db.acquire() as conn:
        definitions = [r[0] for r in await conn.fetch(CHECKS, table)]
    lists = [values for d in definitions for values in quoted_lists(d, column)]
    check_same(f"{table}.{column} CHECK", lists, expected)


async def test_the_exclusion_constraint_covers_the_live_statuses(db: Pool) -> None:
    async with db.acquire() as conn:
        rows = await conn.fetch(
            "SELECT c.conname, pg_get_constraintdef(c.oid) AS definition,"
            " pg_get_expr(i.indpred, i.indrelid) AS predicate"
            " FROM pg_constraint c JOIN pg_index i ON i.indexrelid = c.conindid"
            " WHERE c.conrelid = 'allocation'::regclass AND c.contype = 'x'"
        )
    assert [r["conname"] for r in rows] == ["allocation_no_overlap"]
    (row,) = rows
    # The partial index's predicate is what the planner matches live_claims() against.
    check_same(
        "allocation_no_overlap WHERE", quoted_lists(row["predicate"], "status"), LIVE_STATUSES
    )
    where = row["definition"].split(" WHERE ", 1)[1]
    check_same("allocation_no_overlap definition", quoted_lists(where, "status"), LIVE_STATUSES)


async def test_live_claims_repeats_the_live_statuses(db: Pool) -> None:
    async with db.acquire() as conn:
        body = await conn.fetchval(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
            " WHERE p.proname = 'live_claims' AND p.pronamespace = 'public'::regnamespace"
        )
    assert body is not None, "live_claims() is missing"
    check_same("live_claims()", quoted_lists(body, "status"), LIVE_STATUSES)


async def test_allocation_is_live_covers_the_live_statuses(db: Pool) -> None:
    """Its CASE names the two states with a deadline and lists the rest that stay live."""
    async with db.acquire() as conn:
        body = await conn.fetchval(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
            " WHERE p.proname = 'allocation_is_live' AND p.pronamespace = 'public'::regnamespace"
        )
    assert body is not None, "allocation_is_live() is missing"
    with_deadline = set(re.findall(r"WHEN\s+'(\w+)'(?:::\w+)?\s+THEN", body, flags=re.IGNORECASE))
    assert with_deadline == {BookingStatus.HELD, BookingStatus.PENDING}
    check_same(
        "allocation_is_live() ELSE",
        quoted_lists(body, "status"),
        LIVE_STATUSES - with_deadline,
    )


async def test_allocation_has_ended_lists_the_terminal_statuses(db: Pool) -> None:
    """The CHECK that dates every ended stay names its states through this function."""
    async with db.acquire() as conn:
        body = await conn.fetchval(
            "SELECT pg_get_functiondef(p.oid) FROM pg_proc p"
            " WHERE p.proname = 'allocation_has_ended' AND p.pronamespace = 'public'::regnamespace"
        )
    assert body is not None, "allocation_has_ended() is missing"
    check_same("allocation_has_ended()", quoted_lists(body, "status"), TERMINAL_STATUSES)


# --- Event types: one table that the outbox's foreign key and the webhooks' trigger read
# (sql/0023_event_type_table.sql), so a new type is a row there and a name in vocab.py. ---


async def test_the_event_type_table_lists_the_event_types(db: Pool) -> None:
    async with db.acquire() as conn:
        names = [r["name"] for r in await conn.fetch("SELECT name FROM event_type")]
    check_same("event_type rows", [names], EventType)


async def test_an_event_of_a_type_not_in_the_table_is_refused(db: Pool) -> None:
    async with db.acquire() as conn:
        references = await conn.fetchval(
            "SELECT confrelid::regclass::text FROM pg_constraint"
            " WHERE conrelid = 'event'::regclass AND conname = 'event_type_known'"
            " AND contype = 'f'"
        )
        assert references == "event_type"
        for type_, refused in (("booking.unknown", True), (EventType.SECURITY_ALERT, False)):
            tr = conn.transaction()
            await tr.start()
            try:
                insert = conn.execute(
                    "INSERT INTO event (type, data, occurred_at) VALUES ($1, '{}', now())",
                    type_,
                )
                if refused:
                    with pytest.raises(asyncpg.ForeignKeyViolationError):
                        await insert
                else:
                    await insert
            finally:
                await tr.rollback()


async def test_a_webhook_for_a_type_not_in_the_table_is_refused(db: Pool) -> None:
    await bootstrap_admin(db)
    insert = """
    INSERT INTO webhook (id, url, event_types, secret, created_by, role, after_tx, created_at,
                         updated_at)
    SELECT gen_random_uuid(), 'https://example.org/hook', $1, 'whsec_x', k.id, 'admin',
           pg_current_xact_id(), now(), now()
    FROM api_key k WHERE k.role = 'admin' LIMIT 1
    RETURNING id
    """
    async with db.acquire() as conn:
        for types, refused in (
            ([*EventType], False),
            ([EventType.BOOKING_HELD, "booking.unknown"], True),
        ):
            tr = conn.transaction()
            await tr.start()
            try:
                if refused:
                    with pytest.raises(asyncpg.CheckViolationError) as error:
                        await conn.fetchval(insert, types)
                    assert error.value.constraint_name == "webhook_event_types_known"
                else:
                    assert await conn.fetchval(insert, types) is not None
                    with pytest.raises(asyncpg.CheckViolationError):
                        await conn.execute(
                            "UPDATE webhook SET event_types = array_append(event_types, 'x.y')"
                        )
            finally:
                await tr.rollback()
