"""Naming the claim that stands in the way of a block or a booking change."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Protocol

from service.errors import Conflict


def _utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


class Row(Protocol):
    def __getitem__(self, key: str, /) -> Any: ...


def overlap(claim: Row | None, *, slug: str, detail: str, named: bool = True) -> Conflict:
    """A 409 that names what is in the way (kind, id, state and period), when it is known and
    the caller may see it (`named`): another scope's claim is only "not free"."""
    if claim is None or not named:
        return Conflict(detail, slug=slug)
    return Conflict(
        f"{detail}: a {claim['kind']} ({claim['status']}) holds it from "
        f"{_utc(claim['start'])} to {_utc(claim['end'])}",
        slug=slug,
        extra={
            "conflict": {
                "kind": claim["kind"],
                "id": str(claim["id"]),
                "status": claim["status"],
                "start": _utc(claim["start"]),
                "end": _utc(claim["end"]),
            }
        },
    )
