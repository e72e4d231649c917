"""Searching for free beds: which active sites could take a stay, best first."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from service.domain import capacity
from service.domain.access import require_role
from service.domain.ranking import shown_distance
from service.domain.stays import check_search_window
from service.queries import availability
from service.usecases.results import Found, SiteFound
from service.usecases.tx import Tx
from service.vocab import Gender, Role


@dataclass(frozen=True)
class Search:
    """What an officer asks for. `refused_before` takes how many of the key's searches the
    rate limiter refused since its last recorded one (the search log counts them); it is
    called only once the search is known to run, so a refused or invalid search keeps them.
    A site unconfirmed for `tx.policy.stale_after` is shown `stale` and ranked after fresh ones
    of the same language fit; a stay may start at most `tx.policy.max_lead` ahead, so nothing
    further is searched."""

    end: datetime
    start: datetime | None = None
    gender: Gender | None = None
    dependants: int = 0
    wheelchair: bool = False
    language: str | None = None
    near: tuple[float, float] | None = None
    max_km: float | None = None
    avoid: tuple[float, float, float] | None = None
    limit: int = 20
    refused_before: Callable[[], int] = lambda: 0


async def search(tx: Tx, query: Search) -> Found:
    """The page of matching sites (`items`, as the API names their fields, each with when its
    capacity was last confirmed and whether that is stale) and how many match in all
    (`total`). A search that finds nothing records which need emptied it.

    Not audited: it reads nothing personal. One statement that also records the search (its
    row in the search log), so it takes a writing unit's Tx.
    """
    who = tx.caller
    require_role(who, Role.OFFICER, Role.ADMIN)
    start = query.start or tx.at
    check_search_window(start, query.end, tx.at, tx.policy.max_lead)
    rows = await availability.search(
        tx.conn,
        start=start,
        end=query.end,
        at=tx.at,
        gender=query.gender,
        dependants=query.dependants,
        wheelchair=query.wheelchair,
        language=query.language,
        near=query.near,
        max_km=query.max_km,
        avoid=query.avoid,
        searcher=availability.Searcher(
            api_key_id=who.key_id,
            role=who.role,
            force_code=who.force_code,
            refused_before=query.refused_before(),
        ),
        limit=query.limit,
        stale_before=capacity.stale_before(tx.at, tx.policy.stale_after),
    )
    items = tuple(
        SiteFound.model_validate({**row, "distance_km": shown_distance(row["distance_km"])})
        for row in rows
    )
    return Found(items=items, total=rows[0]["total"] if rows else 0)
