"""New ids are UUIDv7 and strictly increasing, so lists ordered by (created_at, id) keep the
order rows were made in even when the clock stood still."""

from __future__ import annotations

import time

from service.ids import new_id


def test_ids_are_version_7_with_the_rfc_variant_and_the_time_in_front() -> None:
    before = time.time_ns() // 1_000_000
    made = new_id()
    after = time.time_ns() // 1_000_000
    assert made.version == 7
    assert made.variant == "specified in RFC 4122"
    assert before <= made.int >> 80 <= after


def test_ids_made_within_one_millisecond_still_increase() -> None:
    made = [new_id() for _ in range(20_000)]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    # PostgreSQL orders uuid by its bytes: the same order.
    assert [m.bytes for m in made] == sorted(m.bytes for m in made)
