"""The service's units of work on a test's pool and clock, as the app builds them at start
(service/app.py): for running the jobs' rounds directly."""

from __future__ import annotations

from datetime import timedelta

from service.clock import Clock
from service.db import Pool
from service.domain.stays import Policy
from service.usecases.tx import DEFAULT_POLICY
from service.usecases.uow import Units

# IDEMPOTENCY_TTL_HOURS's default.
IDEMPOTENCY_TTL = timedelta(hours=24)


def units_of(
    db: Pool,
    clock: Clock,
    policy: Policy = DEFAULT_POLICY,
    *,
    idempotency_ttl: timedelta = IDEMPOTENCY_TTL,
) -> Units:
    return Units(db, clock, policy, idempotency_ttl=idempotency_ttl)
