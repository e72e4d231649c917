"""Best fit: the bed that meets the needs while wasting least (SPEC section 2)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from uuid import UUID

from service.vocab import Gender, RoomType

# A single room before a bed in a shared room; the family room last of all.
ROOM_WASTE = {RoomType.SINGLE: 0, RoomType.SHARED: 1, RoomType.FAMILY: 2}


@dataclass(frozen=True)
class Needs:
    gender: Gender | None = None
    dependants: int = 0
    wheelchair: bool = False
    language: str | None = None


@dataclass(frozen=True)
class Bed:
    id: UUID
    label: str
    room_type: RoomType
    wheelchair_accessible: bool
    max_dependants: int


def fits(bed: Bed, needs: Needs) -> bool:
    return bed.max_dependants >= needs.dependants and (
        bed.wheelchair_accessible or not needs.wheelchair
    )


def waste(bed: Bed, needs: Needs) -> tuple[int, bool, int, str]:
    """Smaller wastes less: spare dependant places first (keep family rooms for families),
    then an accessible room taken by someone who does not need it, then room type."""
    return (
        bed.max_dependants - needs.dependants,
        bed.wheelchair_accessible and not needs.wheelchair,
        ROOM_WASTE[bed.room_type],
        bed.label,
    )


def best_fit(beds: Iterable[Bed], needs: Needs) -> list[Bed]:
    """The beds that meet the needs, best first."""
    return sorted((b for b in beds if fits(b, needs)), key=lambda b: waste(b, needs))
