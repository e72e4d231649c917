"""One state change and everything it records, written by one call (issue 16 item 3): a
booking's step of history, the events it announces and its audit row, in the caller's
transaction and one round trip (sql/0022_record_change.sql).

The fields an audit row names are derived from the change, never listed beside it: for
something new, the fields it was given (those set); for a change, the fields whose value
differs from what was there (a PATCH's keys whose values changed, the fields a booking's step
wrote); for a removal, none. A booking's step also derives its event (from its action and the
state it entered) and whether its site's availability changed (from the fields it changed).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any
from uuid import UUID

from service.domain import lifecycle
from service.queries import records
from service.usecases.tx import Tx
from service.vocab import AuditAction, AvailabilityCause, BookingStatus, EventType, ObjectType

Values = Mapping[str, Any]

# A booking's fields whose change moves its claim on the bed's time.
PERIOD = frozenset({"start", "end"})


def given(values: Values) -> tuple[str, ...]:
    """The names of the fields set (not None), sorted."""
    return tuple(sorted(name for name, value in values.items() if value is not None))


def changed(before: Values, after: Values) -> tuple[str, ...]:
    """The names of the fields of `after` whose value differs from `before`'s (one `before`
    lacks was not set), sorted. Values compare as the API shows them (a location as
    {lat, lon}, enums as their text)."""
    return tuple(sorted(name for name, value in after.items() if before.get(name) != value))


@dataclass(frozen=True)
class Change:
    """What one change records. Audited when it names an object type; a step of the booking
    `booking_id` when it names the `status` entered; `event` is the booking's (or, with
    `alert_id`, the alert's); a `cause` announces that `site_id`'s availability changed."""

    action: AuditAction | None = None
    object_type: ObjectType | None = None
    object_id: UUID | str | None = None
    fields: tuple[str, ...] = ()
    booking_id: UUID | None = None
    status: BookingStatus | None = None
    reason: str | None = None
    reason_code: str | None = None
    event: EventType | None = None
    alert_id: UUID | None = None
    site_id: UUID | None = None
    cause: AvailabilityCause | None = None

    @classmethod
    def of(
        cls,
        action: AuditAction,
        object_type: ObjectType,
        object_id: UUID | str,
        after: Values | None = None,
        *,
        before: Values | None = None,
        site_id: UUID | None = None,
        cause: AvailabilityCause | None = None,
    ) -> Change:
        """`action` done to an object, leaving `after` (the fields it wrote, as the API names
        them; none for a removal), from `before` (None: there was nothing)."""
        fields = () if after is None else given(after) if before is None else changed(before, after)
        return cls(action, object_type, object_id, fields, site_id=site_id, cause=cause)

    @classmethod
    def step(
        cls,
        action: AuditAction,
        booking_id: UUID,
        site_id: UUID,
        status: BookingStatus,
        after: Values,
        *,
        before: Values | None = None,
        reason: str | None = None,
        reason_code: str | None = None,
    ) -> Change:
        """A booking's step into `status` (a hold, from nothing), writing `after`: its
        history, its event, its site's availability change when it took or gave back bed
        time, and its audit row under the action's name."""
        fields = given(after) if before is None else changed(before, after)
        cause = lifecycle.availability_cause(
            action, status, period_changed=not PERIOD.isdisjoint(fields)
        )
        return cls(
            action,
            ObjectType.BOOKING,
            booking_id,
            fields,
            booking_id=booking_id,
            status=status,
            reason=reason,
            reason_code=reason_code,
            event=lifecycle.event_type(action, status),
            site_id=site_id,
            cause=cause,
        )

    @classmethod
    def alert(cls, alert_id: UUID) -> Change:
        """A security alert raised: announced to admins (the alert is its own record)."""
        return cls(event=EventType.SECURITY_ALERT, alert_id=alert_id)

    def announcing(self, site_id: UUID, cause: AvailabilityCause) -> Change:
        """The same change, also announcing that the site's availability changed."""
        return replace(self, site_id=site_id, cause=cause)


def _row(tx: Tx, change: Change) -> records.ChangeRow:
    who = tx.who
    return records.ChangeRow(
        at=tx.at,
        actor=tx.actor,
        api_key_id=None if who is None else who.key_id,
        role=tx.on_behalf if who is None else who.role,
        scope=None if who is None else who.scope,
        request_id=tx.request_id,
        action=change.action,
        object_type=change.object_type,
        object_id=None if change.object_id is None else str(change.object_id),
        fields=list(change.fields),
        booking_id=change.booking_id,
        status=change.status,
        reason=change.reason,
        reason_code=change.reason_code,
        event_type=change.event,
        alert_id=change.alert_id,
        site_id=change.site_id,
        cause=change.cause,
    )


async def record(tx: Tx, change: Change) -> None:
    """Write what the change records, in one statement, dated `tx.at`, as `tx`'s caller (or
    the service it acts for) and request."""
    await records.record_change(tx.conn, _row(tx, change))


async def record_all(tx: Tx, changes: Iterable[Change]) -> None:
    """Several changes' records in one pipelined round trip (a key revoked disables its
    webhooks: one change each)."""
    await records.record_changes(tx.conn, [_row(tx, change) for change in changes])
