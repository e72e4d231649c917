"""Pure logic: timestamps, cursors, keys, settings, the contract checker itself."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta, timezone
from uuid import uuid4

import pytest
from multidict import CIMultiDict, CIMultiDictProxy
from pydantic import ValidationError

from service import paging
from service.auth import display_prefix, generate_key, hash_key
from service.domain.access import Principal
from service.errors import ValidationProblem
from service.models import BlockIn, SitePatch
from service.settings import Settings
from tests.support.api import ContractViolation, Reply, _check


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2031-01-01T00:00:00Z", datetime(2031, 1, 1, tzinfo=UTC)),
        ("2031-01-01t01:00:00+01:00", datetime(2031, 1, 1, tzinfo=UTC)),
        ("2031-01-01T00:00:00.123456789-00:30", datetime(2031, 1, 1, 0, 30, 0, 123456, UTC)),
    ],
)
def test_rfc3339_timestamps_become_utc(text: str, expected: datetime) -> None:
    body = {"bed_id": str(uuid4()), "start": text, "end": "2032-01-01T00:00:00Z", "reason": "r"}
    block = BlockIn.model_validate_json(json.dumps(body))
    assert block.start == expected and block.start.tzinfo == UTC


def test_naive_datetime_objects_are_refused_too() -> None:
    with pytest.raises(ValidationError, match="UTC offset"):
        BlockIn(bed_id=uuid4(), start=datetime(2031, 1, 1), end=datetime(2031, 1, 2), reason="r")  # noqa: DTZ001


def test_aware_datetimes_in_other_zones_are_converted() -> None:
    cet = timezone(timedelta(hours=1))
    block = BlockIn(
        bed_id=uuid4(),
        start=datetime(2031, 1, 1, 1, tzinfo=cet),
        end=datetime(2031, 1, 2, tzinfo=UTC),
        reason="r",
    )
    assert block.start == datetime(2031, 1, 1, tzinfo=UTC) and block.start.tzinfo == UTC


def test_patch_refuses_nulls_and_empty_patches() -> None:
    with pytest.raises(ValidationError, match="not null: name"):
        SitePatch.model_validate_json('{"name": null}')
    with pytest.raises(ValidationError, match="changes nothing"):
        SitePatch.model_validate_json("{}")
    assert SitePatch.model_validate_json('{"status": "paused"}').model_fields_set == {"status"}


def test_cursor_round_trip_and_tampering() -> None:
    at, ident = datetime(2031, 1, 1, tzinfo=UTC), uuid4()
    cursor = paging.encode(at, ident)
    assert paging.decode_position(cursor) == (at, ident)
    assert paging.decode_text(paging.encode("gmp")) == "gmp"
    for bad in ("", "abc", paging.encode("gmp"), paging.encode(at.replace(tzinfo=None), ident)):
        with pytest.raises(ValidationProblem):
            paging.decode_position(bad)


def test_keys_are_random_and_stored_only_as_hashes() -> None:
    first, second = generate_key(), generate_key()
    assert first != second and first.startswith("pos_") and len(first) >= 40
    assert hash_key(first) == hash_key(first) != hash_key(second)
    assert first.encode() not in hash_key(first)
    assert display_prefix(first) == first[:12]


def test_principal_names_the_actor_without_the_key() -> None:
    officer = Principal(key_id=uuid4(), role="officer", force_code="gmp")
    assert officer.actor == "officer:gmp"
    assert Principal(key_id=uuid4(), role="admin").actor == "admin"


def test_settings_refuse_unsafe_production_values() -> None:
    with pytest.raises(ValidationError, match="DATABASE_URL is required"):
        Settings(environment="production", seed_demo=False, database_url=None)
    with pytest.raises(ValidationError, match="SEED_DEMO must be false"):
        Settings(environment="production", database_url="postgresql://db/pos")
    with pytest.raises(ValidationError, match="postgresql://"):
        Settings(database_url="mysql://db/pos")
    ok = Settings(
        environment="production", database_url="postgresql://u@/pos?host=/run", seed_demo=False
    )
    assert ok.database_url == "postgresql://u@/pos?host=/run"


def test_the_contract_checker_catches_a_response_the_spec_does_not_allow() -> None:
    reply = Reply(
        status=200,
        headers=CIMultiDictProxy(CIMultiDict()),
        raw=b'{"status": "ok", "extra": 1}',
        content_type="application/json",
    )
    with pytest.raises(ContractViolation):
        _check("GET", "/healthz", {}, {}, None, reply)
    reply.status = 418
    reply.raw = b'{"status": "ok"}'
    with pytest.raises(ContractViolation):
        _check("GET", "/healthz", {}, {}, None, reply)


def test_sealed_cursors_open_only_as_issued() -> None:
    """Issue 14 item 8: a sealed cursor shows nothing, changes each time, and opens only for
    the purpose it was sealed for, untampered."""
    sealer = paging.Sealer(bytes(range(32)))
    first, second = sealer.seal("feed", 2**64 - 1, 7), sealer.seal("feed", 2**64 - 1, 7)
    assert first != second and len(first) == len(second)
    assert sealer.open("feed", first, 2) == (2**64 - 1, 7)
    assert sealer.open("feed", second, 2) == (2**64 - 1, 7)
    flipped = first[:-2] + ("A" if first[-2] != "A" else "B") + first[-1]
    for purpose, cursor, count in [
        ("webhook-deliveries", first, 2),
        ("feed", first, 1),
        ("feed", flipped, 2),
        ("feed", "", 2),
        ("feed", "abc", 2),
        ("feed", "A" * 600, 2),
        ("feed", paging.encode("1", "1"), 2),
    ]:
        with pytest.raises(ValueError, match="not a cursor"):
            sealer.open(purpose, cursor, count)
    with pytest.raises(ValueError, match="not a cursor"):
        paging.Sealer(bytes(32)).open("feed", first, 2)
