"""The per-key rate limiter's arithmetic, on a clock given by hand."""

from __future__ import annotations

from uuid import uuid4

from service.ratelimit import RateLimiter


def test_a_minutes_budget_at_once_then_evenly_spaced() -> None:
    limiter = RateLimiter({"searches": 6, "writes": 0})
    key = uuid4()
    assert [limiter.take("searches", key, 1000.0) for _ in range(6)] == [0.0] * 6
    assert limiter.take("searches", key, 1000.0) == 10.0
    assert limiter.take("searches", key, 1009.0) == 1.0
    assert limiter.take("searches", key, 1010.0) == 0.0
    assert limiter.take("searches", key, 1010.0) == 10.0
    # Writes have no budget (0): never refused; other keys are not affected.
    assert all(limiter.take("writes", key, 1010.0) == 0.0 for _ in range(100))
    assert limiter.take("searches", uuid4(), 1010.0) == 0.0
    assert limiter.refused_searches(key) == 3 and limiter.refused_searches(key) == 0


def test_a_clock_stepped_back_costs_at_most_one_window() -> None:
    limiter = RateLimiter({"searches": 2})
    key = uuid4()
    for _ in range(2):
        assert limiter.take("searches", key, 10_000.0) == 0.0
    # The wall clock steps back an hour: the key waits one spacing, not an hour.
    assert limiter.take("searches", key, 6_400.0) == 30.0
    assert limiter.take("searches", key, 6_430.0) == 0.0


def test_idle_keys_are_forgotten() -> None:
    limiter = RateLimiter({"writes": 60})
    for _ in range(5000):
        limiter.take("writes", uuid4(), 0.0)
    # A minute later those 5000 are stale: the next time the table grows past its mark they go.
    for _ in range(4000):
        limiter.take("writes", uuid4(), 120.0)
    assert len(limiter._due) == 4000  # only the live ones are left
