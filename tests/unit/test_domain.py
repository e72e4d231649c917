"""Pure rules: best fit, ranking, the lifecycle table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest

from service.domain import lifecycle
from service.domain.beds import Bed, Needs, best_fit
from service.domain.ranking import SiteMatch, rank, shown_distance
from service.errors import Conflict, Forbidden


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


def site(
    name: str, km: float | None, languages: tuple[str, ...] = ("en",), interpreter: bool = False
) -> SiteMatch:
    return SiteMatch(uuid4(), name, "P", "A", km, 1, "instant", languages, interpreter)


def test_ranking_is_language_fit_then_distance() -> None:
    speaks_far = site("a", 30, ("en", "ro"))
    interpreter_near = site("b", 5, interpreter=True)
    nearest = site("c", 1)
    speaks_near = site("d", 10, ("ro",))
    everyone = [speaks_far, interpreter_near, nearest, speaks_near]
    assert rank(everyone, "ro") == [speaks_near, speaks_far, interpreter_near, nearest]
    assert rank(everyone, None) == [nearest, interpreter_near, speaks_near, speaks_far]
    no_distance = [site("z", None), site("y", None)]
    assert [s.name for s in rank(no_distance, None)] == ["y", "z"]


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
        assert not action.from_states & lifecycle.TERMINAL  # terminal states are final


def test_wrong_role_and_wrong_state() -> None:
    with pytest.raises(Forbidden):
        lifecycle.require_allowed(lifecycle.ACTIONS["accept"], "officer")
    with pytest.raises(Conflict) as caught:
        lifecycle.require_state(lifecycle.ACTIONS["check-out"], "confirmed")
    assert caught.value.extra == {"current_status": "confirmed"}


def test_timing_rules() -> None:
    start = datetime(2031, 1, 1, 12, tzinfo=UTC)
    grace = timedelta(hours=2)
    lifecycle.require_timing(lifecycle.ACTIONS["check-in"], start, start, grace)
    with pytest.raises(Conflict):
        lifecycle.require_timing(
            lifecycle.ACTIONS["check-in"], start, start - timedelta(seconds=1), grace
        )
    with pytest.raises(Conflict):
        lifecycle.require_timing(lifecycle.ACTIONS["no-show"], start, start + grace / 2, grace)
    lifecycle.require_timing(lifecycle.ACTIONS["no-show"], start, start + grace, grace)


def test_event_types() -> None:
    assert lifecycle.event_type("hold", "held") == "booking.held"
    assert lifecycle.event_type("extend", "confirmed") == "booking.extended"
    assert lifecycle.event_type("no-show", "no_show") == "booking.no_show"
    assert lifecycle.event_type("confirm", "pending") == "booking.pending"
