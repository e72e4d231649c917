"""Pure rules: best fit, shown distances, the lifecycle table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from service.domain import lifecycle
from service.domain.beds import Bed, Needs, best_fit
from service.domain.ranking import shown_distance
from service.errors import Conflict, Forbidden
from service.vocab import TERMINAL_STATUSES


def bed(label: str, room: str = "single", wheelchair: bool = False, dependants: int = 0) -> Bed:
    return Bed(uuid4(), label, room, wheelchair, dependants)


def test_best_fit_wastes_least() -> None:
    family = bed("family", "family", dependants=3)
    access = bed("access", wheelchair=True)
    shared = bed("shared", "shared")
    single = bed("single")
    beds = [family, access, shared, single]
    assert best_fit(beds, Needs()) == [single, shared, access, family]
    assert best_fit(beds, Needs(wheelchair=True)) == [access]
    assert best_fit(beds, Needs(dependants=2)) == [family]
    assert best_fit(beds, Needs(dependants=4)) == []


def test_best_fit_prefers_the_smallest_room_that_fits_the_family() -> None:
    big, small = bed("big", "family", dependants=4), bed("small", "family", dependants=2)
    assert best_fit([big, small], Needs(dependants=1)) == [small, big]


def test_distances_are_whole_kilometres() -> None:
    assert (shown_distance(7.49), shown_distance(7.5), shown_distance(0.2)) == (7, 8, 0)
    assert shown_distance(None) is None


def test_the_lifecycle_table_matches_the_spec_diagram() -> None:
    a = lifecycle.ACTIONS
    assert lifecycle.target_status(a["confirm"], "held", "instant") == "confirmed"
    assert lifecycle.target_status(a["confirm"], "held", "request") == "pending"
    assert lifecycle.target_status(a["extend"], "arrived", "instant") == "arrived"
    assert {n: x.to for n, x in a.items() if x.to} == {
        "accept": "confirmed",
        "decline": "declined",
        "cancel": "cancelled",
        "check-in": "arrived",
        "check-out": "departed",
        "no-show": "no_show",
    }
    for action in a.values():
        assert not action.from_states & TERMINAL_STATUSES  # terminal states are final


def test_wrong_role_and_wrong_state() -> None:
    with pytest.raises(Forbidden):
        lifecycle.require_allowed(lifecycle.ACTIONS["accept"], "officer")
    with pytest.raises(Conflict) as caught:
        lifecycle.require_state(lifecycle.ACTIONS["check-out"], "confirmed")
    assert caught.value.extra == {"current_status": "confirmed"}


def test_timing_rules() -> None:
    start = datetime(2031, 1, 1, 12, tzinfo=UTC)
    grace = timedelta(hours=2)
    # Check-in has no timing rule of its own: an early one moves the start (domain.bookings).
    lifecycle.require_timing(lifecycle.ACTIONS["check-in"], start, start - grace, grace)
    with pytest.raises(Conflict):
        lifecycle.require_timing(lifecycle.ACTIONS["no-show"], start, start + grace / 2, grace)
    lifecycle.require_timing(lifecycle.ACTIONS["no-show"], start, start + grace, grace)


def test_event_types() -> None:
    assert lifecycle.event_type("hold", "held") == "booking.held"
    assert lifecycle.event_type("extend", "confirmed") == "booking.extended"
    assert lifecycle.event_type("no-show", "no_show") == "booking.no_show"
    assert lifecycle.event_type("confirm", "pending") == "booking.pending"
