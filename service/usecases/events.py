"""Reading the event feed: committed events in feed order, as the caller's role may see them.

Officers read their force's booking events and every site's availability changes; providers
the events of their own sites; admins everything. An officer sees only which site a
`site.availability_changed` concerns, not its cause: the cause can give away another force's
booking at that site. Reading the feed is not audited: events hold no personal values.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from service.domain.webhooks import event_body
from service.errors import Unauthorized
from service.queries import api_keys, events
from service.usecases.results import EventShown
from service.usecases.tx import ReadTx
from service.vocab import EventType

# A feed position: (the writing transaction's id as text, the event's id).
Position = tuple[str, int]


@dataclass(frozen=True)
class FeedPage:
    """Events after the position asked for, and where the next read starts (the last event's
    position when the page is full, else the horizon the read was complete to)."""

    items: tuple[EventShown, ...]
    position: Position


async def check_key(tx: ReadTx) -> None:
    """401 when the caller's key was revoked since it was authenticated: a long poll reading
    again after its wait reads nothing more for a revoked key."""
    if not await api_keys.is_live_id(tx.conn, tx.caller.key_id):
        raise Unauthorized(
            "the API key is unknown or revoked",
            headers={"WWW-Authenticate": 'Bearer realm="places-of-safety", error="invalid_token"'},
        )


async def read_feed(
    tx: ReadTx, after: Position | None, limit: int, types: Sequence[EventType] | None
) -> FeedPage:
    """Up to `limit` events after `after` (None: from the oldest retained), of `types` (None:
    all), in the caller's scope."""
    who = tx.caller
    read = await events.page(
        tx.conn,
        after=after,
        limit=limit,
        force_code=who.force_filter,
        provider_id=who.provider_filter,
        types=None if types is None else [str(t) for t in types],
    )
    return FeedPage(
        tuple(EventShown.model_validate(event_body(row, who.role)) for row in read.rows),
        read.position,
    )
